"""RFC 4733 events (each press reported exactly once) and in-band Goertzel detection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media.dtmf import (
    DtmfError,
    InbandDtmfDetector,
    Rfc4733Receiver,
    Rfc4733Sender,
    TelephoneEvent,
    digit_to_event,
    dtmf_tone,
    event_to_digit,
)
from appliance.media.rtp import RtpPacket
from appliance.media.tones import silence, tone, white_noise

DIGITS = "0123456789*#ABCD"


# -- payload ---------------------------------------------------------------------------


def test_payload_roundtrip_and_layout() -> None:
    ev = TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert ev.to_bytes() == bytes([5, 0x80 | 10, 0x03, 0x20])
    assert TelephoneEvent.parse(ev.to_bytes()) == ev
    # R bit is ignored; a redundant second event block is tolerated
    assert TelephoneEvent.parse(bytes([1, 0x4A, 0, 160, 2, 0, 0, 0])).event == 1


@pytest.mark.parametrize("data", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_payload_garbage(data: bytes) -> None:
    with pytest.raises(DtmfError):
        TelephoneEvent.parse(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=12))
def test_payload_parse_or_dtmf_error(data: bytes) -> None:
    try:
        TelephoneEvent.parse(data)
    except DtmfError:
        pass


def test_digit_mapping() -> None:
    assert [digit_to_event(d) for d in DIGITS] == list(range(16))
    assert digit_to_event("a") == 12 and digit_to_event("!") == 16
    assert event_to_digit(11) == "#" and event_to_digit(16) == "!" and event_to_digit(40) is None
    for bad in ("", "E", "12"):
        with pytest.raises(DtmfError):
            digit_to_event(bad)


# -- sender ----------------------------------------------------------------------------


def test_sender_plan_for_100ms() -> None:
    plan = Rfc4733Sender().packets("7", 0.1)
    events = [TelephoneEvent.parse(p.payload) for p in plan]
    assert [p.offset for p in plan] == pytest.approx([0.0, 0.05, 0.1, 0.12, 0.14])
    assert [p.marker for p in plan] == [True, False, False, False, False]
    assert all(e.event == 7 for e in events)
    assert [e.end for e in events] == [False, False, True, True, True]
    assert [e.duration for e in events] == [160, 400, 800, 800, 800]


def test_sender_rtp_packets_share_one_timestamp() -> None:
    plan = Rfc4733Sender().rtp_packets("2", 0.1, ssrc=9, sequence=65534, timestamp=123)
    assert [p.sequence for _, p in plan] == [65534, 65535, 0, 1, 2]
    assert {p.timestamp for _, p in plan} == {123} and {p.ssrc for _, p in plan} == {9}
    assert [p.marker for _, p in plan] == [True, False, False, False, False]
    assert run(Rfc4733Receiver(), plan) == "2"


def test_sender_long_press_updates_every_50ms() -> None:
    plan = Rfc4733Sender().packets("#", 0.26)
    updates = [p for p in plan if not TelephoneEvent.parse(p.payload).end]
    assert [round(p.offset, 3) for p in updates] == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25]
    durations = [TelephoneEvent.parse(p.payload).duration for p in plan]
    assert durations == sorted(durations) and durations[-1] == 2080


# -- receiver: exactly once ------------------------------------------------------------


def packets_for(
    digit: str, duration: float, ts: int, seq0: int = 0
) -> list[tuple[float, RtpPacket]]:
    plan = Rfc4733Sender().packets(digit, duration)
    return [
        (p.offset, RtpPacket(101, (seq0 + i) & 0xFFFF, ts, 0x1234, p.marker, p.payload))
        for i, p in enumerate(plan)
    ]


def run(rx: Rfc4733Receiver, timeline: list[tuple[float, RtpPacket]], until: float = 5.0) -> str:
    out = []
    for now, packet in timeline:
        out += rx.feed(packet, now)
    out += rx.tick(until)
    return "".join(d.digit for d in out)


@pytest.mark.parametrize("report_on", ["start", "end"])
def test_each_press_once_with_redundant_end_packets(report_on: str) -> None:
    rx = Rfc4733Receiver(report_on=report_on)  # type: ignore[arg-type]
    timeline = packets_for("1", 0.1, 1000) + [
        (t + 0.5, p) for t, p in packets_for("1", 0.1, 9000, seq0=5)
    ]
    assert run(rx, timeline) == "11"
    assert rx.ignored == 4  # 2 x 2 redundant end packets


@pytest.mark.parametrize("report_on", ["start", "end"])
def test_retransmitted_start_and_reordering(report_on: str) -> None:
    rx = Rfc4733Receiver(report_on=report_on)  # type: ignore[arg-type]
    pk = packets_for("5", 0.1, 4000)
    start = pk[0]
    shuffled = [pk[1], start, start, pk[3], pk[2], pk[4], start]
    assert run(rx, [(i * 0.02, p) for i, (_, p) in enumerate(shuffled)]) == "5"


@pytest.mark.parametrize("report_on", ["start", "end"])
def test_lost_start_reported_on_end(report_on: str) -> None:
    rx = Rfc4733Receiver(report_on=report_on)  # type: ignore[arg-type]
    pk = packets_for("9", 0.1, 4000)
    digits = []
    for t, p in pk:
        if TelephoneEvent.parse(p.payload).end:
            digits += rx.feed(p, t)
    assert [d.digit for d in digits] == ["9"]
    assert digits[0].duration == pytest.approx(0.1)
    assert digits[0].rtp_timestamp == 4000 and digits[0].source == "rfc4733"


def test_lost_end_reported_on_start_then_timeout() -> None:
    rx = Rfc4733Receiver(report_on="start", timeout=0.3)
    pk = [(t, p) for t, p in packets_for("3", 0.1, 4000) if not TelephoneEvent.parse(p.payload).end]
    out = []
    for t, p in pk:
        out += rx.feed(p, t)
    assert [d.digit for d in out] == ["3"]
    assert rx.next_deadline() == pytest.approx(0.05 + 0.3)
    assert rx.tick(0.36) == [] and rx.next_deadline() is None
    # the lost end packets arriving very late are still not a second press
    late = [p for _, p in packets_for("3", 0.1, 4000) if TelephoneEvent.parse(p.payload).end]
    assert rx.feed(late[0], 2.0) == []


def test_lost_end_in_end_mode_reported_at_timeout_with_known_duration() -> None:
    rx = Rfc4733Receiver(report_on="end", timeout=0.3)
    pk = [(t, p) for t, p in packets_for("3", 0.2, 4000) if not TelephoneEvent.parse(p.payload).end]
    out = []
    for t, p in pk:
        out += rx.feed(p, t)
    assert out == []
    assert rx.tick(0.3) == []
    (digit,) = rx.tick(0.46)
    assert digit.digit == "3" and digit.duration == pytest.approx(0.15) and digit.at == 0.46


def test_new_press_finishes_previous_one_without_end() -> None:
    rx = Rfc4733Receiver(report_on="end")
    a = [(t, p) for t, p in packets_for("1", 0.1, 100) if not TelephoneEvent.parse(p.payload).end]
    b = [(t + 0.15, p) for t, p in packets_for("2", 0.1, 1300, seq0=10)]
    assert run(rx, a + b) == "12"


def test_straggler_of_an_older_press_is_reported_once() -> None:
    rx = Rfc4733Receiver()
    new = packets_for("2", 0.1, 5000)
    old = packets_for("8", 0.1, 3000)
    timeline = [new[0], new[1], (0.06, old[3][1]), (0.07, old[4][1]), new[2]]
    assert run(rx, timeline) == "28"


def test_sequence_of_all_digits_with_loss_pattern() -> None:
    rx = Rfc4733Receiver()
    timeline: list[tuple[float, RtpPacket]] = []
    rng = np.random.default_rng(7)
    for i, d in enumerate(DIGITS):
        pk = packets_for(d, 0.08, 10_000 + i * 2000, seq0=i * 10)
        keep = [x for x in pk if rng.random() > 0.3] or [pk[-1]]
        timeline += [(i * 0.2 + t, p) for t, p in keep]
    assert run(rx, timeline) == DIGITS


def test_ignores_non_dtmf_events_and_garbage() -> None:
    rx = Rfc4733Receiver()
    assert rx.feed(RtpPacket(101, 1, 1, 1, True, bytes([40, 0x8A, 0, 160])), 0.0) == []
    assert rx.feed(RtpPacket(101, 2, 2, 1, True, b"\x01"), 0.0) == []
    with pytest.raises(ValueError):
        Rfc4733Receiver(report_on="middle")  # type: ignore[arg-type]


def test_long_event_continued_in_new_segment_is_one_press() -> None:
    rx = Rfc4733Receiver(report_on="end")
    ev = lambda end, dur: TelephoneEvent(4, end, 10, dur).to_bytes()  # noqa: E731
    out = rx.feed(RtpPacket(101, 1, 1000, 1, True, ev(False, 0xFFFF)), 0.0)
    out += rx.feed(RtpPacket(101, 2, 1000 + 0xFFFF, 1, False, ev(False, 800)), 0.1)
    out += rx.feed(RtpPacket(101, 3, 1000 + 0xFFFF, 1, False, ev(True, 1600)), 0.2)
    assert [d.digit for d in out] == ["4"]
    assert out[0].duration == pytest.approx((0xFFFF + 1600) / 8000)


# -- in-band ---------------------------------------------------------------------------


def dial(digits: str, on: float, off: float, amplitude: float = 3000.0) -> np.ndarray:
    parts = []
    for d in digits:
        parts += [dtmf_tone(d, on, amplitude=amplitude), silence(off)]
    return np.concatenate([silence(0.05), *parts, silence(0.1)])


def detect(samples: np.ndarray, frame: int = 160) -> str:
    det = InbandDtmfDetector()
    out = []
    for i in range(0, len(samples), frame):
        out += det.feed(samples[i : i + frame])
    assert all(d.source == "inband" for d in out)
    return "".join(d.digit for d in out)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(a.astype(np.int32) + b[: len(a)], -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("frame", [160, 80, 37, 1000])
def test_inband_detects_all_digits_any_frame_size(frame: int) -> None:
    assert detect(dial(DIGITS, 0.05, 0.05), frame) == DIGITS


def test_inband_40ms_on_40ms_off_every_alignment() -> None:
    sig = dial(DIGITS, 0.04, 0.04)
    for offset in range(0, 52, 7):
        assert detect(np.concatenate([silence(offset / 8000), sig])) == DIGITS


def test_inband_same_digit_repeated_is_reported_per_press() -> None:
    assert detect(dial("5555", 0.05, 0.05)) == "5555"


def test_inband_short_dropout_does_not_split_a_press() -> None:
    t = dtmf_tone("8", 0.1, amplitude=3000)
    sig = np.concatenate([t, silence(0.01), t, silence(0.1)])
    for offset in range(0, 52, 9):
        assert detect(np.concatenate([silence(offset / 8000), sig])) == "8"


def test_inband_rejects_20ms_blips() -> None:
    for offset in range(0, 52, 7):
        sig = np.concatenate([silence(offset / 8000), dial(DIGITS, 0.02, 0.06)])
        assert detect(sig) == ""


@pytest.mark.parametrize("noise_rms", [300, 600, 1000])
def test_inband_with_white_noise(noise_rms: float) -> None:
    sig = dial(DIGITS, 0.06, 0.06)
    noisy = add(sig, white_noise(len(sig) / 8000, amplitude=noise_rms, seed=11))
    assert detect(noisy) == DIGITS


def test_inband_twist_limits() -> None:
    def dual(row_amp: float, col_amp: float) -> np.ndarray:
        t = tone(770, 0.1, amplitude=row_amp).astype(np.int32) + tone(1336, 0.1, amplitude=col_amp)
        return np.concatenate([t.astype(np.int16), silence(0.1)])

    assert detect(dual(3000, 3000)) == "5"
    assert detect(dual(3000, 3000 / 10 ** (6 / 20))) == "5"  # 6 dB normal twist: ok
    assert detect(dual(3000, 3000 / 10 ** (12 / 20))) == ""  # 12 dB: rejected
    assert detect(dual(3000 / 10 ** (6 / 20), 3000)) == ""  # 6 dB reverse twist: rejected


def test_inband_level_threshold() -> None:
    assert detect(dial("1", 0.1, 0.1, amplitude=1000)) == "1"  # about -27 dBm0 per tone
    assert detect(dial("1", 0.1, 0.1, amplitude=300)) == ""  # about -38 dBm0


def test_inband_no_detection_on_440hz_tone_or_white_noise() -> None:
    assert detect(tone(440, 3, amplitude=10000)) == ""
    assert detect(tone((350, 440), 3, amplitude=6000)) == ""  # dial tone
    assert detect(tone((480, 620), 3, amplitude=6000)) == ""  # busy tone
    assert detect(white_noise(10, amplitude=4000, seed=3)) == ""


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Voiced-speech stand-in: gliding pitch, harmonics shaped by moving formants."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    t = np.arange(n) / 8000
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 8000
    seg = int(0.15 * 8000)
    formants = rng.uniform((300, 900, 2200), (900, 2200, 3200), size=(n // seg + 1, 3))
    f = np.repeat(formants, seg, axis=0)[:n]
    out = np.zeros(n)
    for k in range(1, 25):
        fk = k * f0
        amp = (
            1 / (1 + ((fk - f[:, 0]) / 90) ** 2)
            + 0.6 / (1 + ((fk - f[:, 1]) / 110) ** 2)
            + 0.3 / (1 + ((fk - f[:, 2]) / 150) ** 2)
        ) * (fk < 3800)
        out += amp * np.sin(k * phase)
    out *= 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2  # syllable rhythm
    return (out / np.abs(out).max() * 12000).astype(np.int16)


def test_inband_talk_off_on_speech_like_signal() -> None:
    hits = sum(len(detect(speech_like(5, seed))) for seed in range(12))
    assert hits == 0


def test_inband_digits_over_speech_like_background() -> None:
    sig = dial("159#", 0.08, 0.08, amplitude=5000)
    background = (speech_like(len(sig) / 8000 + 0.1, 99) // 8).astype(np.int16)
    assert detect(add(sig, background)) == "159#"


def test_inband_reports_time_and_reset() -> None:
    det = InbandDtmfDetector()
    (d,) = det.feed(dial("7", 0.1, 0.1), now=12.5)
    assert d.digit == "7" and d.at == 12.5 and d.duration > 0.03
    det.reset()
    (d,) = det.feed(dial("7", 0.1, 0.1))
    assert 0.05 < d.at < 0.11  # stream position: within the tone
