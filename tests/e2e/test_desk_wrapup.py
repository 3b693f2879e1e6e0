"""Wrap-up codes and notes on the agent desktop (R-5.2a after-call work), on test_desk's
node: alice answers a sales queue call in her page, the caller hangs up, and the phone
panel asks for a wrap-up: the tenant's codes in a list (labels in Chinese too), a note.
She picks a code, types a note and saves; the page says so and the form goes. The node's
``acd-events.jsonl`` then holds the ``WrapUp`` line for that call (its id came with the
offer's X-BL-Data, not shown in the screen pop) and her daily record counts the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import API_TOKENS, WRAP_UP_CODES, NodeHandle, wait_for
from tests.e2e.test_acd import call_api
from tests.e2e.test_desk import (
    BROWSER_TONE,
    QUEUE_DID,
    carrier_phone,
    desk_browser,
    desk_node,
)

pytestmark = pytest.mark.e2e
__all__ = ["desk_node"]  # the module's fixture, shared with test_desk
NOTE = "Call back after 5 pm about the red shoes"


def stored(node: NodeHandle, kind: str) -> list[dict[str, Any]]:
    path = node.run_dir / "demo" / "node" / "acd-events.jsonl"
    docs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [d for d in docs if d["type"] == kind]


def form_shown(desk: Any) -> bool:
    return not desk.page.evaluate("() => document.getElementById('wrapup').hidden")


def test_the_agent_files_the_call_that_ended_under_a_code_with_a_note(
        desk_node: NodeHandle, tones: dict[int, Path]) -> None:
    node = desk_node
    carrier = carrier_phone(node)
    try:
        with desk_browser(node, tones[BROWSER_TONE]) as desk:
            desk.sign_in("alice", "1001")
            desk.go_ready()
            assert not form_shown(desk)

            call = carrier.answered(QUEUE_DID)
            pop = desk.wait_pop()
            assert pop["queue"] == "sales" and "contact" not in pop, pop  # not for the eye
            desk.wait_call("ringing")
            desk.answer()
            [answered] = wait_for(lambda: [e for e in stored(node, "ContactAnswered")
                                           if e["agent"] == "alice"], 5, "the answer")
            contact = answered["contact"]
            assert not form_shown(desk)  # during the call: nothing to file yet

            carrier.hang_up(call)  # the caller hangs up: the page asks for the wrap-up
            desk.wait_call("idle")
            desk.wait("() => !document.getElementById('wrapup').hidden")
            assert desk.page.get_attribute("#wrapup-form", "data-contact") == contact
            options = desk.page.eval_on_selector_all(
                "#wrapup-code option", "(os) => os.map((o) => [o.value, o.textContent])")
            assert options == [["", "Choose a code"], *([c, c] for c in WRAP_UP_CODES)]
            assert desk.text("label[for='wrapup-note']") == "Note"

            # saving without a code is refused on the page; the labels in Chinese
            desk.page.click("#wrapup-save")
            desk.wait("() => document.getElementById('wrapup-status').dataset.state"
                      " === 'invalid'")
            assert stored(node, "WrapUp") == []
            desk.page.select_option("#language", "zh-Hant")
            desk.wait("() => document.documentElement.lang === 'zh-Hant'")
            assert desk.text("#wrapup-title") == "話後小結"
            assert desk.page.text_content("#wrapup-code option[value='']") == "請選擇代碼"
            desk.page.select_option("#language", "zh-Hans")
            desk.wait("() => document.documentElement.lang === 'zh-Hans'")
            assert desk.text("#wrapup-title") == "话后小结"
            assert desk.text("#wrapup-save") == "保存"
            desk.page.select_option("#language", "en")
            desk.wait("() => document.documentElement.lang === 'en'")

            desk.page.select_option("#wrapup-code", "callback")
            desk.page.fill("#wrapup-note", NOTE)
            desk.page.click("#wrapup-save")
            desk.wait("() => document.getElementById('wrapup-status').dataset.state"
                      " === 'saved'")
            assert desk.text("#wrapup-status") == "Saved"
            assert not form_shown(desk)

            [line] = wait_for(lambda: stored(node, "WrapUp"), 5, "the WrapUp line")
            assert {k: line[k] for k in ("tenant_id", "agent", "contact", "queue", "code",
                                         "note", "replaces")} == {
                "tenant_id": "acme", "agent": "alice", "contact": contact, "queue": "sales",
                "code": "callback", "note": NOTE, "replaces": None}
            assert isinstance(line["wall"], float)

            # her day counts the code, and so does the queue's
            status, day = call_api(node, "GET", "/acd/daily", API_TOKENS["acme"])
            assert status == 200, day
            alice = next(a for a in day["agents"] if a["agent"] == "alice")
            sales = next(q for q in day["queues"] if q["queue"] == "sales")
            assert alice["wrap_up_codes"] == {"callback": 1}, alice
            assert sales["wrap_up_codes"] == {"callback": 1}, sales

            # another tenant's token cannot file acme's call
            status, _ = call_api(node, "PUT", "/agents/alice/wrap-up", API_TOKENS["globex"],
                                 {"contact": contact, "code": "sale"})
            assert status == 404
            desk.sign_out()
    finally:
        carrier.hang_up_all()
        carrier.close()
