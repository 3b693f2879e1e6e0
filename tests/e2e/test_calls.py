"""End-to-end calls through a real node: Kamailio edge, feature server, media.

Phones and the carrier are real baresip instances; audio is checked by analysing
what each side recorded (each side sends its own tone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CARRIER_IP, NodeHandle
from tests.harness.audio import dominant_tone_check, rms, read_wav
from tests.harness.baresip import Account, BaresipPhone

pytestmark = pytest.mark.e2e


def carrier(node: NodeHandle, phones: Any, tone: Path, **kw: Any) -> BaresipPhone:
    acc = Account(user="carrier", domain=CARRIER_IP, password=None, outbound=node.outbound)
    return phones(acc, tone=tone, listen_host=CARRIER_IP, sip_port=node.carrier_port,
                  name="carrier", register=False, **kw)


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
