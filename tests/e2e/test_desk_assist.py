"""Agent-assisted IVR (R-4.8) from the desk: the browser agent alice answers a queue
call, starts acme's ``account`` flow for the caller from the page, and stays on the
line: her page hears the flow's prompt (a 1800 Hz chime uploaded as acme's prompt) over
the caller's 700 Hz, the caller keys the account number (SIP INFO), and the page shows
the flow's result while alice and the caller talk on, each hearing the other again.
"""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import pytest

from tests.e2e.conftest import API_TOKENS, NodeHandle
from tests.e2e.test_acd import tone
from tests.e2e.test_desk import (
    BROWSER_TONE,
    CALLER_TONE,
    MEASURE_JS,
    QUEUE_DID,
    carrier_phone,
    desk_browser,
    desk_node,
)
from tests.harness.http import http_json

pytestmark = pytest.mark.e2e
CHIME = 1800
__all__ = ["desk_node"]  # the module's fixture, shared with test_desk


def chime_wav(path: Path) -> bytes:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone(CHIME, 3.0).astype("<i2").tobytes())
    return path.read_bytes()


def test_the_agent_runs_a_flow_for_the_caller_and_stays_on_the_line(
        desk_node: NodeHandle, tones: dict[int, Path], tmp_path: Path) -> None:
    node = desk_node
    status, stored = http_json("PUT", node.manifest["api"]["url"] + "/prompts/en-us/chime",
                               API_TOKENS["acme"], chime_wav(tmp_path / "chime.wav"),
                               content_type="audio/wav")
    assert status in (200, 201), stored
    carrier = carrier_phone(node)
    try:
        with desk_browser(node, tones[BROWSER_TONE]) as alice:
            alice.sign_in("alice", "1001")
            alice.go_ready()
            call = carrier.answered(QUEUE_DID)
            alice.wait_pop()
            alice.answer()
            alice.wait("() => !document.getElementById('assist').hidden")
            alice.page.select_option("#assist-flow", "account")

            sender = threading.Thread(target=carrier.send_audio,
                                      args=(call, tone(CALLER_TONE, 6.0)), daemon=True)
            sender.start()
            alice.page.click("#assist-start")
            alice.wait("() => document.getElementById('assist-status').dataset.state"
                       " === 'running'")
            node.wait_trace(lambda e: e["event"] == "assist_started")
            assist = "/assists/" + alice.page.evaluate(
                "() => document.getElementById('assist-status').dataset.assist")
            # another tenant's token knows nothing of it; acme's sees it running
            assert node.api("GET", assist, "globex")[0] == 404
            assert node.api("DELETE", assist, "globex")[0] == 404
            assert node.api("GET", assist)[1]["state"] == "running"
            heard = alice.page.evaluate(MEASURE_JS, [[CHIME, CALLER_TONE, BROWSER_TONE], 1.5])
            print("during the flow:", heard)
            power = {int(f): p for f, p in heard["power"].items()}
            assert power[CHIME] > 1e-4, power  # alice hears the flow's prompt ...
            assert power[CHIME] > 10 * power[BROWSER_TONE], power
            assert power[CALLER_TONE] > 1e-4, power  # ... and the caller, at once
            sender.join(8)

            for digit in "4711":  # the caller answers the flow
                assert carrier.in_dialog(call, "INFO", f"Signal={digit}\r\nDuration=160\r\n"
                                         .encode(), "application/dtmf-relay").status == 200
            alice.wait("() => document.getElementById('assist-status').dataset.state"
                       " === 'done'", timeout=15)
            result = alice.text("#assist-results dd[data-key='account']")
            assert result == "4711"
            [ended] = node.wait_trace(lambda e: e["event"] == "assist_ended")
            assert ended.get("result.account") == "4711"

            # back to talking: alice hears the caller again, without the chime
            sender = threading.Thread(target=carrier.send_audio,
                                      args=(call, tone(CALLER_TONE, 3.0)), daemon=True)
            sender.start()
            heard = alice.page.evaluate(MEASURE_JS, [[CHIME, CALLER_TONE], 1.5])
            sender.join(5)
            power = {int(f): p for f, p in heard["power"].items()}
            assert power[CALLER_TONE] > 10 * max(power[CHIME], 1e-9), power
            carrier.hang_up(call)
            alice.wait_call("idle")
            assert alice.page.evaluate("() => document.getElementById('assist').hidden")
    finally:
        carrier.hang_up_all()
        carrier.close()
