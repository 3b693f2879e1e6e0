"""End-to-end calls through a real node: Kamailio edge, feature server, media.

Phones and the carrier are real baresip instances; audio is checked by analysing
what each side recorded (each side sends its own tone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CARRIER_IP, NodeHandle
from tests.harness.audio import dominant_tone_check, read_wav, rms
from tests.harness.baresip import Account, BaresipPhone

pytestmark = pytest.mark.e2e


def carrier(node: NodeHandle, phones: Any, tone: Path, user: str = "carrier",
            **kw: Any) -> BaresipPhone:
    """A carrier trunk peer at 127.0.0.2; baresip answers only the R-URI user ``user``."""
    acc = Account(user=user, domain=CARRIER_IP, password=None, outbound=node.outbound)
    return phones(acc, tone=tone, listen_host=CARRIER_IP, sip_port=node.carrier_port,
                  name=kw.pop("name", "carrier"), register=False, **kw)


def assert_hears(phone: BaresipPhone, expected: int, other: int) -> None:
    """The phone's received audio carries ``expected`` Hz, not ``other`` Hz."""
    wav = phone.wait_recording(2.0, "dec")
    rate, samples = read_wav(wav)
    ratio = dominant_tone_check((rate, samples), expected, other, skip_seconds=0.5)
    assert ratio > 10, f"{phone.name} heard {expected} Hz only {ratio:.1f}x over {other} Hz"
    assert rms(samples[int(0.5 * rate):]) > 500


def test_trunk_call_to_did_two_way_audio_and_cdr(node: NodeHandle, phones: Any,
                                                  tones: dict[int, Path]) -> None:
    alice = phones(node.account("1001"), tone=tones[1000])
    pstn = carrier(node, phones, tones[440])
    call = pstn.dial(f"sip:+862088880001@127.0.0.1:{node.sip_port}")
    call.wait_established()
    alice.wait_for_event("CALL_ESTABLISHED")
    assert_hears(alice, 440, 1000)
    assert_hears(pstn, 1000, 440)
    pstn.hangup()
    call.wait_closed()
    alice.wait_for_event("CALL_CLOSED")
    cdr = node.wait_cdr(lambda c: c["callee"] == "+862088880001" and c["tenant_id"] == "acme")
    assert cdr["disposition"] == "answered"
    assert cdr["origin"] == "trunk:carrier" and cdr["destination"] == "ext:1001"
    assert cdr["hangup_side"] == "caller" and cdr["codec"] in ("PCMU", "PCMA")
    assert cdr["answer"] is not None and cdr["duration"] > 1.5
    assert cdr["caller"] == "carrier"


def test_recording_on_the_node_has_both_sides(node: NodeHandle, phones: Any,
                                              tones: dict[int, Path]) -> None:
    alice = phones(node.account("1001"), tone=tones[1000])
    pstn = carrier(node, phones, tones[440])
    call = pstn.dial(f"sip:+862088880001@127.0.0.1:{node.sip_port}")
    call.wait_established()
    alice.wait_recording(2.0, "dec")
    alice.hangup()  # BYE from the callee side this time
    call.wait_closed()
    cdr = node.wait_cdr(lambda c: c["callee"] == "+862088880001" and c["hangup_side"] == "callee")
    rec_dir = node.run_dir / "demo" / "node" / "recordings" / "acme"
    wav = next(p for p in rec_dir.glob(f"{cdr['call_id']}*.wav"))
    rate, samples = read_wav_stereo(wav)
    left, right = samples[:, 0], samples[:, 1]
    assert dominant_tone_check((rate, left), 440, 1000, skip_seconds=0.5) > 10
    assert dominant_tone_check((rate, right), 1000, 440, skip_seconds=0.5) > 10


def read_wav_stereo(path: Path) -> tuple[int, Any]:
    import wave

    import numpy as np

    with wave.open(str(path)) as w:
        rate, n, ch = w.getframerate(), w.getnframes(), w.getnchannels()
        data = np.frombuffer(w.readframes(n), dtype="<i2").reshape(-1, ch)
    return rate, data


def test_extension_to_extension_over_tcp_and_udp(node: NodeHandle, phones: Any,
                                                 tones: dict[int, Path]) -> None:
    alice = phones(node.account("1001", transport="tcp"), tone=tones[440])
    bob = phones(node.account("1002"), tone=tones[1000])
    call = alice.dial("sip:1002@acme.example")
    call.wait_established()
    bob.wait_for_event("CALL_ESTABLISHED")
    assert_hears(alice, 1000, 440)
    assert_hears(bob, 440, 1000)
    bob.hangup()
    call.wait_closed()
    cdr = node.wait_cdr(lambda c: c["origin"] == "ext:1001" and c["callee"] == "1002")
    assert (cdr["disposition"], cdr["hangup_side"], cdr["tenant_id"]) == (
        "answered", "callee", "acme")


def test_outbound_through_trunk_presents_the_did(node: NodeHandle, phones: Any,
                                                 tones: dict[int, Path]) -> None:
    alice = phones(node.account("1001"), tone=tones[440])
    pstn = carrier(node, phones, tones[1000], user="+8613800138000")
    call = alice.dial("sip:013800138000@acme.example")
    call.wait_established()
    incoming = pstn.wait_for_event("CALL_ESTABLISHED")
    assert "+862088880001@" in incoming["peeruri"]  # the caller's own DID is presented
    assert_hears(pstn, 440, 1000)
    assert_hears(alice, 1000, 440)
    alice.hangup()
    call.wait_closed()
    cdr = node.wait_cdr(lambda c: c["callee"] == "013800138000")
    assert (cdr["destination"], cdr["disposition"]) == ("trunk:carrier", "answered")


def test_wrong_password_is_refused_and_not_registered(node: NodeHandle, phones: Any) -> None:
    bad = phones(node.account("1003", password="not-the-password"), register=False)
    fail = bad.wait_for_event("REGISTER_FAIL")
    assert fail["param"].startswith(("401", "403")), fail
    # 1003 has no contact: a call to it is refused as unavailable, nothing rings
    alice = phones(node.account("1001"))
    call = alice.dial("sip:1003@acme.example")
    closed = call.wait_closed()
    assert "480" in closed["param"], closed
    node.wait_cdr(lambda c: c["callee"] == "1003" and c["disposition"] == "unavailable")


def test_unknown_number_gets_404_and_cdr(node: NodeHandle, phones: Any) -> None:
    alice = phones(node.account("1001"))
    closed = alice.dial("sip:1999@acme.example").wait_closed()
    assert "404" in closed["param"], closed
    cdr = node.wait_cdr(lambda c: c["callee"] == "1999")
    assert (cdr["disposition"], cdr["sip_status"], cdr["tenant_id"]) == ("not_found", 404,
                                                                          "acme")


def test_other_tenants_extensions_are_unreachable(node: NodeHandle, phones: Any) -> None:
    carol = phones(node.account("2001"))
    alice = phones(node.account("1001"))
    # acme's 1001 dials globex's extension number, in either domain
    for uri in ("sip:2001@acme.example", "sip:2001@globex.example"):
        closed = alice.dial(uri).wait_closed()
        assert "404" in closed["param"], (uri, closed)
    # globex's 2001 dials acme's 1001
    closed = carol.dial("sip:1001@acme.example").wait_closed()
    assert "404" in closed["param"], closed
    assert not alice.find_event("CALL_INCOMING") and not carol.find_event("CALL_INCOMING")
    assert not any(e["type"] == "CALL_ESTABLISHED" for e in alice.events)
    cdrs = node.cdrs("globex")
    assert any(c["callee"] == "1001" and c["disposition"] == "not_found" for c in cdrs)
    assert all(c["tenant_id"] == "globex" for c in cdrs)
