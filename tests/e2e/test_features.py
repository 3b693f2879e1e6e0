"""In-call features between real peers: hold/resume, transfers, DTMF, services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PASSWORDS, NodeHandle
from tests.e2e.test_calls import assert_hears, carrier
from tests.harness.audio import dominant_tone_check, read_wav, rms
from tests.harness.sipua import SipUa

pytestmark = pytest.mark.e2e


def call_events(node: NodeHandle, call: str) -> list[dict[str, Any]]:
    return [e for e in node.trace() if e["call"] == call]


def test_hold_and_resume(node: NodeHandle, phones: Any, tones: dict[int, Path]) -> None:
    alice = phones(node.account("1001"), tone=tones[440])
    bob = phones(node.account("1002"), tone=tones[1000])
    call = alice.dial("sip:1002@acme.example")
    call.wait_established()
    bob.wait_for_event("CALL_ESTABLISHED")
    assert_hears(alice, 1000, 440)
    mark = bob.mark()
    alice.hold()
    # the node mirrors the hold to the other side as a re-INVITE of its own
    bob.wait_for_event("CALL_REMOTE_SDP", since=mark)
    held = node.wait_trace(lambda e: e["event"] == "hold")
    call_id = held[-1]["call"]
    mark = bob.mark()
    alice.resume()
    bob.wait_for_event("CALL_REMOTE_SDP", since=mark)
    node.wait_trace(lambda e: e["event"] == "resume" and e["call"] == call_id)
    alice.hangup()
    call.wait_closed()
    cdr = node.wait_cdr(lambda c: c["call_id"] == call_id)
    assert cdr["disposition"] == "answered" and cdr["hangup_side"] == "caller"


def test_blind_transfer(node: NodeHandle, phones: Any, tones: dict[int, Path]) -> None:
    alice = phones(node.account("1001"), tone=tones[1000])
    bob = phones(node.account("1002"), tone=tones[1400])
    pstn = carrier(node, phones, tones[440])
    call = pstn.dial(f"sip:+862088880001@127.0.0.1:{node.sip_port}")
    call.wait_established()
    alice.wait_for_event("CALL_ESTABLISHED")
    alice.transfer("sip:1002@acme.example")
    bob.wait_for_event("CALL_ESTABLISHED")
    alice.wait_for_event("CALL_CLOSED")
    # the caller now talks to bob: bob's first recording carries the caller's tone and
    # the caller's recording ends with bob's tone
    assert_hears(bob, 440, 1400)
    _, heard = read_wav(pstn.wait_recording(4.0, "dec"))
    tail = heard[-8000:]
    assert dominant_tone_check((8000, tail), 1400, 1000) > 10
    ev = node.wait_trace(lambda e: e["event"] == "transfer" and e.get("mode") == "blind")
    pstn.hangup()
    bob.wait_for_event("CALL_CLOSED")
    cdr = node.wait_cdr(lambda c: c["call_id"] == ev[-1]["call"])
    assert cdr["disposition"] == "answered"


def test_attended_transfer(node: NodeHandle, phones: Any, tones: dict[int, Path]) -> None:
    """1003 talks to 1001 and to 1002, then joins them (REFER with Replaces)."""
    alice = phones(node.account("1001"), tone=tones[440])
    bob = phones(node.account("1002"), tone=tones[1000])
    ua = SipUa("1003", "acme.example", PASSWORDS["1003"], ("127.0.0.1", node.sip_port))
    try:
        assert ua.register().status == 200
        first = ua.call("1001")
        alice.wait_for_event("CALL_ESTABLISHED")
        second = ua.call("1002")
        bob.wait_for_event("CALL_ESTABLISHED")
        resp = ua.in_dialog(first, "REFER",
                            headers=[("Refer-To", ua.replaces_uri(second, "1002")),
                                     ("Referred-By", "<sip:1003@acme.example>")])
        assert resp.status == 202
        ua.wait_request("NOTIFY", body="200 OK")
        ua.wait_request("BYE")  # the node releases the replaced dialog
        ua.in_dialog(first, "BYE")
        # 1001 and 1002 now hear each other (the UA sent them silence before)
        for phone, tone, other in ((alice, 1000, 440), (bob, 440, 1000)):
            _, heard = read_wav(phone.wait_recording(3.0, "dec"))
            tail = heard[-8000:]
            assert rms(tail) > 500
            assert dominant_tone_check((8000, tail), tone, other) > 10
        assert node.wait_trace(lambda e: e.get("mode") == "attended")
        alice.hangup()
        bob.wait_for_event("CALL_CLOSED")
    finally:
        ua.close()


def test_dtmf_rfc4733_and_info_reported_once(node: NodeHandle, phones: Any,
                                             tones: dict[int, Path]) -> None:
    # The UA sends no audio, so the events relayed to baresip are its only RTP: a small
    # jitter buffer lets them out without audio behind them.
    alice = phones(node.account("1001"), tone=tones[440], jitter_buffer="1-4")
    ua = SipUa("1003", "acme.example", PASSWORDS["1003"], ("127.0.0.1", node.sip_port))
    try:
        assert ua.register().status == 200
        call = ua.call("1001")
        alice.wait_for_event("CALL_ESTABLISHED")
        # RFC 4733 from baresip
        alice.send_dtmf("4")
        alice.send_dtmf("7")
        # SIP INFO from the UA; relayed to baresip as RFC 4733
        resp = ua.in_dialog(call, "INFO", b"Signal=9\r\nDuration=160\r\n",
                            "application/dtmf-relay")
        assert resp.status == 200
        got = alice.wait_for_event("CALL_DTMF_START")
        assert got["param"] == "9"
        events = node.wait_trace(lambda e: e["event"] == "dtmf" and e["digit"] == "7")
        call_id = events[0]["call"]
        dtmf = [e for e in call_events(node, call_id) if e["event"] == "dtmf"]
        digits = sorted((e["digit"], e["method"]) for e in dtmf)
        assert digits == [("4", "rfc4733"), ("7", "rfc4733"), ("9", "info")], dtmf
        ua.in_dialog(call, "BYE")
        alice.wait_for_event("CALL_CLOSED")
    finally:
        ua.close()


def test_echo_service_returns_the_callers_audio(node: NodeHandle, phones: Any,
                                               tones: dict[int, Path]) -> None:
    pstn = carrier(node, phones, tones[700])
    call = pstn.dial(f"sip:+862088880099@127.0.0.1:{node.sip_port}")
    call.wait_established()
    assert_hears(pstn, 700, 1000)
    pstn.hangup()
    call.wait_closed()
    cdr = node.wait_cdr(lambda c: c["callee"] == "+862088880099")
    assert cdr["destination"] == "service:echo" and cdr["disposition"] == "answered"


def test_hunt_group_rings_next_member_after_timeout(node: NodeHandle, phones: Any,
                                                   tones: dict[int, Path]) -> None:
    # 1002 (first member) does not answer; after the group's 3 s ring time 1001 rings
    bob = phones(node.account("1002", answermode="manual"))
    alice = phones(node.account("1001"), tone=tones[1000])
    pstn = carrier(node, phones, tones[440])
    call = pstn.dial(f"sip:+862088880060@127.0.0.1:{node.sip_port}")
    bob.wait_for_event("CALL_INCOMING")
    call.wait_established(timeout=10)
    alice.wait_for_event("CALL_ESTABLISHED")
    bob.wait_for_event("CALL_CLOSED")
    assert_hears(pstn, 1000, 440)
    pstn.hangup()
    call.wait_closed()
    cdr = node.wait_cdr(lambda c: c["callee"] == "+862088880060")
    assert cdr["destination"] == "hunt:600" and cdr["disposition"] == "answered"


def test_caller_cancel_before_answer(node: NodeHandle, phones: Any) -> None:
    bob = phones(node.account("1002", answermode="manual"))
    alice = phones(node.account("1001"))
    call = alice.dial("sip:1002@acme.example")
    bob.wait_for_event("CALL_INCOMING")
    alice.hangup()
    call.wait_closed()
    bob.wait_for_event("CALL_CLOSED")
    cdr = node.wait_cdr(lambda c: c["callee"] == "1002" and c["disposition"] == "cancelled")
    assert cdr["hangup_side"] == "caller" and cdr["answer"] is None


@pytest.mark.parametrize(("number", "domain", "tenant"), [("1001", "acme.example", "acme"),
                                                        ("2001", "globex.example", "globex")])
def test_announcement_plays_tts_then_the_node_hangs_up(node: NodeHandle, phones: Any,
                                                       number: str, domain: str,
                                                       tenant: str) -> None:
    caller = phones(node.account(number))
    call = caller.dial(f"sip:700@{domain}")
    call.wait_established()
    closed = call.wait_closed(timeout=20)  # the node sends BYE when the prompt ends
    assert "peer" in closed["param"].lower() or "bye" in closed["param"].lower(), closed
    rate, heard = read_wav(caller.recordings("dec")[-1])
    speech = heard[int(0.2 * rate):]
    assert len(speech) > rate // 2 and rms(speech) > 300  # speech, not silence
    cdr = node.wait_cdr(lambda c: c["callee"] == "700" and c["tenant_id"] == tenant)
    assert (cdr["destination"], cdr["hangup_side"]) == ("announcement:700", "node")


def test_inband_dtmf_detected_when_no_telephone_event(node: NodeHandle, phones: Any) -> None:
    """A caller that offers no telephone-event can only send tones: the node hears them."""
    import numpy as np

    from appliance.media.dtmf import dtmf_tone

    alice = phones(node.account("1001"))
    ua = SipUa("1003", "acme.example", PASSWORDS["1003"], ("127.0.0.1", node.sip_port))
    try:
        assert ua.register().status == 200
        call = ua.call("1001", telephone_event=None)
        alice.wait_for_event("CALL_ESTABLISHED")
        gap = np.zeros(800, dtype=np.int16)  # 100 ms
        ua.send_audio(call, np.concatenate([gap, dtmf_tone("5", 0.12), gap,
                                            dtmf_tone("8", 0.12), gap, gap]))
        found = node.wait_trace(lambda e: e["event"] == "dtmf" and e["digit"] == "8")
        call_id = found[0]["call"]
        dtmf = [(e["digit"], e["method"]) for e in call_events(node, call_id)
                if e["event"] == "dtmf"]
        assert dtmf == [("5", "inband"), ("8", "inband")], dtmf
        ua.in_dialog(call, "BYE")
        alice.wait_for_event("CALL_CLOSED")
    finally:
        ua.close()
