"""The supervisor's desk in a second browser: acme's agent alice (1000 Hz microphone)
answers a carrier call (700 Hz) from the sales queue in her page's softphone; the
supervisor sue (1400 Hz microphone) sees the call on her wallboard and barges in from her
own page, whose softphone answers the node's call by itself. Both parties then hear
sue's tone (the carrier's received RTP analysed in Python, alice's page measured with
WebAudio); switched to listen, the caller no longer hears her; when she stops, alice and
the caller go on. Then sue forces alice not ready, and grants the break request the
tenant's maximum on break refused (R-5.2d).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import NodeHandle
from tests.e2e.test_acd import call_api, received, sign_in, tone
from tests.e2e.test_desk import (
    BROWSER_TONE,
    CALLER_TONE,
    QUEUE_DID,
    UNUSED,
    carrier_phone,
    desk_browsers,
    desk_node,
    drain,
    snapshot_agent,
)
from tests.harness.audio import goertzel_power

pytestmark = pytest.mark.e2e
SUPERVISOR_TONE = UNUSED  # 1400 Hz: what nobody else sends
__all__ = ["desk_node"]  # the module's fixture, shared with test_desk


def carrier_hears(carrier: Any, call: Any, seconds: float = 2.0) -> dict[int, float]:
    """The carrier sends its tone and analyses what it receives meanwhile."""
    got: list[np.ndarray[Any, np.dtype[np.int16]]] = []

    def listen() -> None:
        drain(carrier.rtp)
        received(carrier.rtp, 0.4)
        got.append(received(carrier.rtp, seconds))

    sender = threading.Thread(target=carrier.send_audio,
                              args=(call, tone(CALLER_TONE, seconds + 1.5)), daemon=True)
    listener = threading.Thread(target=listen, daemon=True)
    sender.start()
    listener.start()
    listener.join(seconds + 3)
    sender.join(seconds + 3)
    [audio] = got
    assert audio.size > 8000, "the carrier received under 1 s of audio"
    return {f: goertzel_power(audio, f, 8000, block=160)
            for f in (CALLER_TONE, BROWSER_TONE, SUPERVISOR_TONE)}


def test_a_supervisor_in_a_second_browser_barges_in_and_both_parties_hear_her(
        desk_node: NodeHandle, tones: dict[int, Path]) -> None:
    node = desk_node
    carrier = carrier_phone(node)
    try:
        with desk_browsers(node, [tones[BROWSER_TONE], tones[SUPERVISOR_TONE]]) as (alice, sue):
            alice.sign_in("alice", "1001")
            sue.sign_in("sue", "1003")
            assert sue.wait("() => !document.getElementById('supervisor-panel').hidden")
            assert alice.page.evaluate(
                "() => document.getElementById('supervisor-panel').hidden")
            alice.go_ready()

            call = carrier.answered(QUEUE_DID)
            alice.wait_pop()
            alice.answer()
            # sue's wallboard shows alice talking and the queue's answered call
            sue.wait("""() => {
                const row = document.querySelector('#sup-agents tr[data-agent="alice"]');
                return row !== null && row.dataset.state === 'talking';
            }""")
            sue.wait("""() => {
                const cell = document.querySelector(
                    '#wallboard tr[data-queue="sales"] td.answered');
                return cell !== null && cell.textContent === '1';
            }""")

            sue.page.click('#sup-agents button[data-monitor="barge"][data-agent="alice"]')
            sue.wait_call("talking")  # her softphone answered the node's call by itself
            sue.wait("() => document.getElementById('sup-monitor-status').dataset.state"
                     " === 'active'")
            node.wait_trace(lambda e: e["event"] == "monitor_started")

            # barge: the caller and alice hear sue; sue hears both
            results: dict[str, dict[int, float]] = {}

            def at_carrier() -> None:
                results["carrier"] = carrier_hears(carrier, call)

            thread = threading.Thread(target=at_carrier, daemon=True)
            thread.start()
            results["alice"] = alice.levels(2.0)
            results["sue"] = sue.levels(2.0)
            thread.join(8)
            print("barge:", results)
            heard = results["carrier"]
            assert heard[SUPERVISOR_TONE] > 1e4, heard
            assert heard[BROWSER_TONE] > 1e4, heard
            assert heard[SUPERVISOR_TONE] > 10 * heard[CALLER_TONE], heard
            assert results["alice"][SUPERVISOR_TONE] > 1e-4, results["alice"]
            assert results["alice"][SUPERVISOR_TONE] > 10 * results["alice"][BROWSER_TONE]
            assert results["sue"][BROWSER_TONE] > 5e-5, results["sue"]
            assert results["sue"][BROWSER_TONE] > 10 * results["sue"][SUPERVISOR_TONE]

            # listen: the caller hears alice only
            sue.page.click("#sup-mode-listen")
            sue.wait("() => document.getElementById('sup-monitor-status').dataset.mode"
                     " === 'listen'")
            node.wait_trace(lambda e: e["event"] == "monitor_mode" and e.get("mode") == "listen")
            heard = carrier_hears(carrier, call)
            print("listen:", heard)
            assert heard[BROWSER_TONE] > 100 * heard[SUPERVISOR_TONE], heard

            # sue stops: her call ends, alice and the caller still talk
            sue.page.click("#sup-stop")
            sue.wait_call("idle")
            sue.wait("() => document.getElementById('sup-monitor').hidden")
            node.wait_trace(lambda e: e["event"] == "monitor_ended")
            heard = carrier_hears(carrier, call)
            assert heard[BROWSER_TONE] > 100 * heard[SUPERVISOR_TONE], heard
            alice.wait_call("talking")

            carrier.hang_up(call)
            alice.wait_call("idle")
            alice.wait_own("ready")
            # the supervisor forces alice not ready from the wallboard
            sue.wait("""() => {
                const b = document.querySelector(
                    '#sup-agents button[data-force="not_ready"][data-agent="alice"]');
                return b !== null && !b.disabled;
            }""")
            sue.page.click('#sup-agents button[data-force="not_ready"][data-agent="alice"]')
            assert alice.wait_own("not_ready", "supervisor")["state"] == "not_ready"
            assert snapshot_agent(node, "alice")["reason"] == "supervisor"

            # breaks (R-5.2d): bob takes the one place; alice's request is refused, sue
            # sees it among her alerts and grants it
            status, bob = sign_in(node, "bob")
            assert status == 201
            assert call_api(node, "PUT", "/agents/bob/state", bob["token"],
                            {"state": "break"})[1]["approved"] is True
            alice.page.click("#break")
            alice.wait("() => document.getElementById('break-result').dataset.result"
                       " === 'refused'")
            approve = '#sup-alerts li[data-break-request="alice"] button[data-approve="alice"]'
            sue.wait(f"() => document.querySelector('{approve}') !== null")
            sue.page.click(approve)
            alice.wait_own("break")
            sue.wait(f"() => document.querySelector('{approve}') === null")
            assert snapshot_agent(node, "bob")["state"] == "break"  # both on break now
            assert call_api(node, "DELETE", "/agent-sessions/current", bob["token"])[0] == 204
    finally:
        carrier.hang_up_all()
        carrier.close()
