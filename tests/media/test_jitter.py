"""Jitter buffer: ordering, wraparound, loss concealment, late packets, adaptation."""

from __future__ import annotations

import pytest

from appliance.media.jitter import JitterBuffer
from appliance.media.rtp import RtpPacket

SIL = b"\xff" * 160


def pkt(seq: int, ssrc: int = 1, payload: bytes | None = None) -> RtpPacket:
    seq &= 0xFFFF
    data = payload if payload is not None else bytes([seq % 251]) * 160
    return RtpPacket(0, seq, seq * 160, ssrc, False, data)


def ids(payloads: list[bytes | None]) -> list[int | None]:
    """Payloads by the sequence number they carry (mod 251); -1 for silence."""
    return [None if p is None else (-1 if p == SIL else p[0]) for p in payloads]


def test_buffers_target_delay_then_plays_in_order() -> None:
    jb = JitterBuffer(target_delay=0.04)
    jb.push(pkt(10), 0.0)
    assert jb.pop(0.0) is None and jb.pop(0.02) is None
    jb.push(pkt(12), 0.021)
    jb.push(pkt(11), 0.035)  # reordered
    out = [jb.pop(0.04), jb.pop(0.06), jb.pop(0.08)]
    assert ids(out) == [10, 11, 12]
    assert jb.stats.played == 3 and jb.stats.received == 3


def test_reorders_across_sequence_wraparound() -> None:
    jb = JitterBuffer(target_delay=0.06)
    for s in (65534, 0, 65535, 1):
        jb.push(pkt(s), 0.0)
    out = [jb.pop(0.06 + i * 0.02) for i in range(4)]
    assert ids(out) == [65534 % 251, 65535 % 251, 0, 1]


def test_early_packet_before_start_becomes_first() -> None:
    jb = JitterBuffer(target_delay=0.04)
    jb.push(pkt(21), 0.0)
    jb.push(pkt(20), 0.01)
    assert ids([jb.pop(0.04), jb.pop(0.06)]) == [20, 21]


def test_loss_is_concealed_by_repeat_then_silence() -> None:
    jb = JitterBuffer(target_delay=0.1, max_repeats=1)
    jb.push(pkt(1), 0.0)
    for s in (5, 6):
        jb.push(pkt(s), 0.01)
    out = [jb.pop(0.1 + i * 0.02) for i in range(6)]
    # 1, then 2 lost (repeat 1), 3 lost (silence), 4 lost (silence), 5, 6
    assert ids(out) == [1, 1, -1, -1, 5, 6]
    assert jb.stats.concealed == 3


def test_late_packet_is_dropped() -> None:
    jb = JitterBuffer(target_delay=0.02)
    jb.push(pkt(1), 0.0)
    jb.push(pkt(3), 0.01)
    assert ids([jb.pop(0.02), jb.pop(0.04)]) == [1, 1]  # 2 missing -> concealed
    assert not jb.push(pkt(2), 0.05)
    assert jb.stats.late == 1
    assert ids([jb.pop(0.06)]) == [3]


def test_duplicates_are_dropped() -> None:
    jb = JitterBuffer()
    assert jb.push(pkt(1), 0.0)
    assert not jb.push(pkt(1), 0.001)
    assert jb.stats.duplicates == 1


def test_underrun_conceals_without_skipping_and_delay_drains_again() -> None:
    jb = JitterBuffer(target_delay=0.04)
    jb.push(pkt(1), 0.0)
    jb.push(pkt(2), 0.02)
    assert ids([jb.pop(0.04), jb.pop(0.06)]) == [1, 2]
    assert ids([jb.pop(0.08)]) == [2]  # nothing there: underrun, repeat
    assert jb.stats.underruns == 1
    # a burst arrives: 3..8; playout resumes at 3 and skips frames to get back to target
    for s in range(3, 9):
        jb.push(pkt(s), 0.09)
    out = ids([jb.pop(0.10 + i * 0.02) for i in range(4)])
    assert out == [3, 5, 6, 7]  # frame 4 skipped to drain the extra delay
    assert jb.stats.dropped == 1
    assert jb.delay <= 0.04 + 0.02


def test_idle_stream_stops_and_restarts() -> None:
    jb = JitterBuffer(target_delay=0.02, idle_reset=0.5)
    jb.push(pkt(1), 0.0)
    assert ids([jb.pop(0.02)]) == [1]
    t = 0.04
    while t < 0.6:
        jb.pop(t)
        t += 0.02
    assert jb.pop(t) is None
    jb.push(pkt(100), 1.0)
    assert jb.pop(1.0) is None and ids([jb.pop(1.02)]) == [100]


def test_ssrc_change_and_big_jump_reset() -> None:
    jb = JitterBuffer(target_delay=0.02)
    jb.push(pkt(1), 0.0)
    jb.push(pkt(5000, ssrc=2), 0.01)
    assert jb.stats.resets == 1
    assert jb.pop(0.01) is None and ids([jb.pop(0.04)]) == [5000 % 251]
    jb.push(pkt(30000, ssrc=2), 0.05)
    assert jb.stats.resets == 2


def test_capacity_overflow() -> None:
    jb = JitterBuffer(capacity=4, target_delay=0.02)
    for s in range(10):
        jb.push(pkt(s), 0.0)
    assert len(jb._frames) <= 4 and jb.stats.dropped == 6


def test_adaptive_target_follows_jitter() -> None:
    jb = JitterBuffer(adaptive=True, target_delay=0.04, max_delay=0.2)
    for i in range(200):
        jb.push(pkt(i), i * 0.02 + (0.03 if i % 2 else 0.0))
        jb.pop(i * 0.02)
    # |D| = 30 ms every packet -> jitter ~ 30 ms -> target 3 * 30 + 20 = 110 ms
    assert jb.stats.jitter == pytest.approx(0.03, rel=0.05)
    assert jb.stats.target_delay == pytest.approx(0.11, rel=0.05)
    calm = JitterBuffer(adaptive=True, min_delay=0.03)
    for i in range(50):
        calm.push(pkt(i), i * 0.02)
    assert calm.stats.target_delay == pytest.approx(0.03)
