"""Transfers from the agent desktop on a real node: the browser agent alice (acme,
extension 1001, Chromium driving the page at ``/desk/``) answers a carrier call from the
sales queue and hands it to bob from the page's transfer panel.

bob is a scripted UA registered as extension 1002 (it answers at once) and signed in on
the node's API, not ready, so the queue offers the call to alice only. A blind transfer
to the agent id ``bob`` with a note rings bob's phone with the call's data (the queue,
who transferred it, the note) in ``X-BL-Data``; a consult calls bob's extension while
the caller waits on hold, then completes the transfer (REFER with Replaces). Either
way alice's contact ends (the queue has no after-call work: she is ready again), and
the carrier and bob hear each other (Goertzel analysis of the RTP each received).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest

from appliance.sip.message import Request
from tests.e2e.conftest import PASSWORDS, NodeHandle
from tests.e2e.test_acd import received, send_tone, sign_in, tone
from tests.e2e.test_desk import (
    BROWSER_TONE,
    QUEUE_DID,
    Desk,
    carrier_phone,
    desk_browser,
    drain,
    snapshot_agent,
)
from tests.e2e.test_desk import desk_node as desk_node_fixture  # noqa: F401  (a fixture)
from tests.e2e.test_tenancy import Phone
from tests.harness.audio import goertzel_power
from tests.harness.sipua import SipUa, media_of

pytestmark = pytest.mark.e2e
CALLER_TONE, BOB_TONE = 700, 1400


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest) -> NodeHandle:
    """test_desk's node: SIP over WebSocket and rtpengine (one for this module)."""
    handle: NodeHandle = request.getfixturevalue("desk_node_fixture")
    return handle


@pytest.fixture(scope="module")
def bob(node: NodeHandle) -> Iterator[SipUa]:
    """bob's phone (extension 1002, answers at once), bob signed in and not ready."""
    ua = SipUa("1002", "acme.example", PASSWORDS["1002"], ("127.0.0.1", node.sip_port))
    try:
        assert ua.register().status == 200
        status, session = sign_in(node, "bob")
        assert status == 201, session
        yield ua
    finally:
        ua.close()


def alice_answers_a_queue_call(node: NodeHandle, desk: Desk, carrier: Phone) -> Any:
    desk.sign_in("alice", "1001")
    desk.go_ready()
    call = carrier.answered(QUEUE_DID)
    assert desk.wait_pop()["queue"] == "sales"
    desk.answer()
    desk.wait_own("talking")
    assert desk.page.is_visible("#transfer")
    return call


def wait_transfer(desk: Desk, state: str, timeout: float = 10.0) -> str:
    desk.wait("s => document.getElementById('transfer-status').dataset.state === s", state,
              timeout)
    return desk.text("#transfer-status")


def two_way_audio(carrier: Phone, call: Any, bob: SipUa, invite: Request) -> None:
    """The carrier and bob each hear the other's tone and not their own."""
    drain(bob.rtp)
    drain(carrier.rtp)
    senders = [
        threading.Thread(target=send_tone, daemon=True, args=(
            bob.rtp, media_of(invite), BOB_TONE, 2.5)),
        threading.Thread(target=carrier.send_audio, daemon=True,
                         args=(call, tone(CALLER_TONE, 2.5)))]
    for sender in senders:
        sender.start()
    at_carrier: list[np.ndarray[Any, np.dtype[np.int16]]] = []
    listener = threading.Thread(target=lambda: at_carrier.append(received(carrier.rtp, 2.0)),
                                daemon=True)
    listener.start()
    at_bob = received(bob.rtp, 2.0)
    for thread in (listener, *senders):
        thread.join(5)
    [at_caller] = at_carrier
    assert at_bob.size > 8000 and at_caller.size > 8000, (at_bob.size, at_caller.size)
    bob_hears = {f: goertzel_power(at_bob, f, 8000, block=160) for f in (CALLER_TONE, BOB_TONE)}
    caller_hears = {f: goertzel_power(at_caller, f, 8000, block=160)
                    for f in (CALLER_TONE, BOB_TONE, BROWSER_TONE)}
    print(f"bob hears {bob_hears}; the caller hears {caller_hears}")
    assert bob_hears[CALLER_TONE] > 100 * bob_hears[BOB_TONE], bob_hears
    assert caller_hears[BOB_TONE] > 100 * caller_hears[CALLER_TONE], caller_hears
    assert caller_hears[BOB_TONE] > 100 * caller_hears[BROWSER_TONE], caller_hears


def test_blind_transfer_from_the_page_to_a_signed_in_agent(
        node: NodeHandle, bob: SipUa, tones: dict[int, Path]) -> None:
    carrier = carrier_phone(node)
    started = time.monotonic()
    try:
        with desk_browser(node, tones[BROWSER_TONE]) as desk:
            call = alice_answers_a_queue_call(node, desk, carrier)
            # the agent ids of the team are offered as choices
            desk.wait("() => [...document.querySelectorAll('#transfer-choices option')]"
                      ".some((o) => o.value === 'bob')")
            assert desk.page.is_disabled("#transfer-consult")  # consult: numbers only
            desk.page.select_option("#transfer-kind", "agent")
            desk.page.fill("#transfer-target", "bob")
            desk.page.fill("#transfer-note", "wants the red shoes")
            desk.page.click("#transfer-blind")
            invite = bob.wait_request("INVITE", timeout=10)  # bob's phone answers at once
            data = parse_qs(invite.headers.get("X-BL-Data") or "")
            assert data["queue"] == ["sales"] and data["agent"] == ["bob"], data
            assert data["transferred_by"] == ["alice"], data
            assert data["note"] == ["wants the red shoes"], data
            assert wait_transfer(desk, "done") == "Transferred to bob."
            desk.wait_call("idle")  # alice's call leaves once the node says it worked
            assert desk.wait_own("ready")["text"] == "Ready"  # her contact ended
            assert snapshot_agent(node, "bob")["state"] == "talking"
            node.wait_trace(lambda e: e["event"] == "transfer" and e.get("to") == "bob")
            node.wait_trace(lambda e: e["event"] == "transferred"
                            and e.get("agent") == "alice")
            two_way_audio(carrier, call, bob, invite)
            carrier.hang_up(call)
            bob.wait_request("BYE", timeout=5)
            wait_for_state(node, "bob", "not_ready")
            desk.sign_out()
        print(f"blind transfer test took {time.monotonic() - started:.1f} s")
    finally:
        carrier.hang_up_all()
        carrier.close()


def test_consult_then_complete_the_transfer_from_the_page(
        node: NodeHandle, bob: SipUa, tones: dict[int, Path]) -> None:
    carrier = carrier_phone(node)
    try:
        with desk_browser(node, tones[BROWSER_TONE]) as desk:
            call = alice_answers_a_queue_call(node, desk, carrier)
            desk.page.select_option("#transfer-kind", "number")
            desk.page.fill("#transfer-target", "1002")
            desk.page.click("#transfer-consult")
            desk.wait_call("held")  # the caller waits on hold ...
            node.wait_trace(lambda e: e["event"] == "hold")
            invite = bob.wait_request("INVITE", timeout=10)  # ... while alice calls bob
            assert wait_transfer(desk, "consultReady") == \
                "Talking to 1002: complete the transfer or cancel the consult."
            desk.page.click("#transfer-complete")
            assert wait_transfer(desk, "done") == "Transferred to 1002."
            desk.wait_call("idle")
            node.wait_trace(lambda e: e["event"] == "transfer"
                            and e.get("mode") == "attended")
            assert desk.wait_own("ready")["text"] == "Ready"  # her contact ended
            two_way_audio(carrier, call, bob, invite)  # the caller was resumed for bob
            carrier.hang_up(call)
            bob.wait_request("BYE", timeout=5)
            desk.sign_out()
    finally:
        carrier.hang_up_all()
        carrier.close()


def wait_for_state(node: NodeHandle, agent: str, state: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while snapshot_agent(node, agent)["state"] != state:
        assert time.monotonic() < deadline, snapshot_agent(node, agent)
        time.sleep(0.1)
