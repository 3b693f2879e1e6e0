"""Voicemail end to end (R-4.10): a caller leaves a message and hangs up, the mailbox's
phone is told (MWI NOTIFY), the owner calls in, logs in with the PIN by RFC 4733 keys
and hears the caller's audio, then deletes it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import VM_PIN, NodeHandle, wait_for
from tests.e2e.test_calls import carrier
from tests.harness.audio import goertzel_power, read_wav

pytestmark = pytest.mark.e2e


def tone_seconds(samples: np.ndarray, rate: int, freq: float) -> float:
    """Seconds of audio (in 0.25 s windows) where ``freq`` carries most of the power."""
    win = rate // 4
    count = 0
    for i in range(0, len(samples) - win, win):
        chunk = samples[i:i + win].astype(np.float64)
        total = float(np.sum(chunk ** 2)) / len(chunk)
        # a sine of amplitude A has mean square A**2/2 and Goertzel power A**2/4
        if total > 1e4 and 2 * goertzel_power(chunk, freq, rate) > 0.8 * total:
            count += 1
    return count / 4


def messages(node: NodeHandle) -> list[dict[str, Any]]:
    box = Path(node.manifest["storage"]["path"]) / "acme" / "voicemail" / "1001"
    return [json.loads(p.read_text()) for p in sorted(box.glob("*.json"))] \
        if box.is_dir() else []


def test_leave_message_mwi_and_retrieve_by_phone_then_delete(
        node: NodeHandle, phones: Any, tones: dict[int, Path]) -> None:
    owner = node.ua("1001")
    try:
        assert owner.register().status == 200
        # 1. a caller whose phone sends a 700 Hz tone leaves a message, then hangs up
        caller = carrier(node, phones, tones[700])
        call = caller.dial(f"sip:+862088880044@127.0.0.1:{node.sip_port}")
        call.wait_established()
        node.wait_trace(lambda e: e["event"] == "ivr" and e["step"] == "capture"
                        and e["kind"] == "voicemail", timeout=15)
        time.sleep(3.0)  # the caller speaks for three seconds
        caller.hangup()
        call.wait_closed()
        caller.stop()  # frees the carrier's address for the next call
        [msg] = wait_for(lambda: messages(node), 10, "a voicemail message")
        assert msg["status"] == "new" and msg["caller"] == "carrier"
        assert 2.0 <= msg["seconds"] <= 4.5
        rate, audio = read_wav(Path(node.manifest["storage"]["path"]) /
                               f"acme/voicemail/1001/{msg['id']}.wav")
        assert tone_seconds(audio, rate, 700) >= 1.5  # the caller's own audio
        # the same message by API, with its WAV; another tenant cannot see the mailbox
        status, listing = node.api("GET", "/mailboxes/1001/messages")
        assert status == 200 and listing["new"] == 1
        assert [m["id"] for m in listing["messages"]] == [msg["id"]]
        status, wav = node.api("GET", f"/mailboxes/1001/messages/{msg['id']}/audio")
        assert status == 200
        (node.run_dir / "vm.wav").write_bytes(wav)
        rate, fetched = read_wav(node.run_dir / "vm.wav")
        assert np.array_equal(fetched, audio)
        assert node.api("GET", "/mailboxes/1001/messages", tenant="globex")[0] == 404
        assert node.api("GET", f"/mailboxes/1001/messages/{msg['id']}/audio",
                        tenant="globex")[0] == 404
        # 2. message waiting: the owner's phone is told
        notify = owner.wait_request("NOTIFY", timeout=5)
        assert notify.headers.get("Event") == "message-summary"
        assert b"Messages-Waiting: yes" in notify.body and b"Voice-Message: 1/0" in notify.body
    finally:
        owner.close()

    # 3. the owner calls in, types mailbox and PIN ahead, and hears the message
    retrieve = carrier(node, phones, tones[440], name="carrier2")
    listening = retrieve.dial(f"sip:+862088880033@127.0.0.1:{node.sip_port}")
    listening.wait_established()
    node.wait_trace(lambda e: e["event"] == "ivr" and e["step"] == "enter"
                    and e["node"] == "ask_box", timeout=10)
    retrieve.send_dtmf(f"1001#{VM_PIN}#")
    node.wait_trace(lambda e: e["event"] == "ivr" and e["step"] == "enter"
                    and e["node"] == "msg_menu", timeout=40)
    retrieve.send_dtmf("3")  # delete it

    def entered(name: str) -> list[dict[str, Any]]:
        return [e for e in node.trace() if e["event"] == "ivr" and e["step"] == "enter"
                and e["node"] == name]

    wait_for(lambda: entered("no_more"), 20, "the end of the messages")
    # 4. the owner records a personal greeting (its phone sends 440 Hz), then leaves
    retrieve.send_dtmf("9")
    node.wait_trace(lambda e: e.get("step") == "capture" and e.get("kind") == "record",
                    timeout=15)
    time.sleep(2.0)  # the greeting
    retrieve.send_dtmf("#")
    wait_for(lambda: len(entered("no_more")) == 2, 20, "the greeting saved")
    retrieve.send_dtmf("#")
    listening.wait_closed(timeout=15)  # "Goodbye."
    heard = retrieve.wait_recording(5.0, "dec")
    rate, samples = read_wav(heard)
    assert tone_seconds(samples, rate, 700) >= 1.5
    wait_for(lambda: not messages(node), 5, "the message deleted")
    [login] = [e for e in node.trace() if e["event"] == "ivr" and e.get("node") == "login"
               and e["step"] == "action_done"]
    assert login["ok"] == "true"
    # the PIN is a secret input: neither its keys nor its value are in the trace
    events = [e for e in node.trace() if e["call"] == login["call"]]
    assert [e["digit"] for e in events if e["event"] == "dtmf"][:5] == list("1001#")
    assert all(VM_PIN not in json.dumps(e) for e in events)
    assert {e.get("digit") for e in events if e["event"] == "dtmf"} >= {"*"}
    retrieve.stop()
    greeting = Path(node.manifest["storage"]["path"]) / "acme/voicemail/1001/greeting.wav"
    rate, recorded = read_wav(greeting)
    assert tone_seconds(recorded, rate, 440) >= 1.0

    # 5. the next caller hears that greeting instead of the default one; hanging up at
    # the beep leaves no message
    caller = carrier(node, phones, tones[1000], name="carrier3")
    call = caller.dial(f"sip:+862088880044@127.0.0.1:{node.sip_port}")
    call.wait_established()
    before = len([e for e in node.trace() if e.get("step") == "capture"])
    captures = wait_for(lambda: [e for e in node.trace() if e.get("step") == "capture"]
                        [before:], 15, "the capture after the greeting")
    call_id = captures[0]["call"]
    caller.hangup()
    call.wait_closed()
    rate, heard = read_wav(caller.wait_recording(1.0, "dec"))
    assert tone_seconds(heard, rate, 440) >= 1.0
    [dropped] = node.wait_trace(lambda e: e["call"] == call_id and e["event"] == "voicemail")
    assert dropped["kept"] == "false" and "too short" in dropped["error"]
    assert dropped["ended_by"] == "hangup" and messages(node) == []


def test_record_then_play_the_recording_back(node: NodeHandle, phones: Any,
                                             tones: dict[int, Path]) -> None:
    """The record node keeps three seconds of the caller in the tenant's recordings and
    the next node plays that file back: the caller hears its own 1000 Hz tone."""
    caller = carrier(node, phones, tones[1000], name="recorder")
    call = caller.dial(f"sip:+862088880022@127.0.0.1:{node.sip_port}")
    call.wait_established()
    call.wait_closed(timeout=30)  # recorded 3 s, played them back, hung up
    take = Path(node.manifest["storage"]["path"]) / "acme" / "recordings" / "take-carrier.wav"
    rate, recorded = read_wav(take)
    assert 2.5 <= len(recorded) / rate <= 3.5
    assert tone_seconds(recorded, rate, 1000) >= 2.0
    # baresip writes received frames only: "Speak." and the 3 s played back
    rate, heard = read_wav(caller.wait_recording(3.5, "dec"))
    assert tone_seconds(heard, rate, 1000) >= 2.0  # the caller's own voice, played back
    [captured] = [e for e in node.trace() if e.get("step") == "captured"
                  and e.get("flow") == "recorder"]
    assert captured["ok"] == "true" and "recordings/take-carrier.wav" in captured["value"]
