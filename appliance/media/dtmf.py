"""DTMF: RFC 4733 telephone events and in-band (Goertzel) detection.

Theory of operation
-------------------
RFC 4733 (section 2.5) sends one key press as a run of packets that share
one RTP timestamp (the event's start): a first packet with the marker bit,
updates roughly every 50 ms with a growing duration, and the final packet
with the E bit, normally sent three times.  The RTP timestamp therefore
identifies the press.  ``Rfc4733Receiver`` keeps the press in progress and a
short memory of finished presses (by timestamp) and reports each press
exactly once, whichever of its packets arrive, in whatever order:

* ``report_on="start"`` (default): on the first packet seen of a press
  (start, update or end - so a lost start is reported on the next update or
  the end);
* ``report_on="end"``: on the first end packet, or ``timeout`` seconds after
  the last packet if every end packet was lost, or when a newer press
  starts.  The reported duration is then the full one.

Retransmitted starts, the redundant end packets and stragglers arriving
after the press is finished match a remembered timestamp and are ignored.
Time is passed in (``now``); ``next_deadline``/``tick`` expose the timeout.

``InbandDtmfDetector`` looks at 8 kHz audio in blocks of 102 samples
(12.75 ms), measures the eight DTMF frequencies with Goertzel and accepts a
block when (ITU-T Q.24 style): the strongest row and column tones are above
``min_level_dbm0`` each, their twist is within ``normal_twist_db`` (row
louder) / ``reverse_twist_db`` (column louder), each beats the other tones of
its group by ``peak_ratio_db``, and together they carry ``relative_power`` of
the block's energy (speech and noise spread their energy).  A digit is
reported once it holds for ``min_blocks`` consecutive blocks (about 25 ms,
so 40 ms tones are always caught and 20 ms blips are not) and released after
``release_blocks`` blocks without it (bridging dropouts of 10 ms).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from appliance.media.rtp import RtpPacket
from appliance.media.tones import goertzel_powers, tone

__all__ = [
    "DTMF_COLS",
    "DTMF_EVENTS",
    "DTMF_ROWS",
    "DtmfDigit",
    "DtmfError",
    "EventPacket",
    "InbandDtmfDetector",
    "Rfc4733Receiver",
    "Rfc4733Sender",
    "TelephoneEvent",
    "digit_to_event",
    "dtmf_tone",
    "event_to_digit",
]

DTMF_EVENTS: Final = "0123456789*#ABCD"
"""RFC 4733 event codes 0..15 in order; event 16 is hook flash, reported as "!"."""
FLASH: Final = "!"

DTMF_ROWS: Final = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD: Final = ("123A", "456B", "789C", "*0#D")


class DtmfError(ValueError):
    """A malformed telephone-event payload, or an unknown digit."""


def digit_to_event(digit: str) -> int:
    d = digit.upper()
    if d == FLASH:
        return 16
    i = DTMF_EVENTS.find(d) if len(d) == 1 else -1
    if i < 0:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    return i


def event_to_digit(event: int) -> str | None:
    """The digit for an event code, or None for events other than DTMF/flash."""
    if 0 <= event < 16:
        return DTMF_EVENTS[event]
    if event == 16:
        return FLASH
    return None


def _keypad_position(digit: str) -> tuple[int, int]:
    d = digit.upper()
    for r, row in enumerate(_KEYPAD):
        c = row.find(d)
        if c >= 0:
            return r, c
    raise DtmfError(f"not a DTMF digit: {digit!r}")


def dtmf_tone(
    digit: str, seconds: float, rate: int = 8000, amplitude: float = 6000.0
) -> npt.NDArray[np.int16]:
    """The dual tone for ``digit`` (each component at ``amplitude``)."""
    r, c = _keypad_position(digit)
    return tone((DTMF_ROWS[r], DTMF_COLS[c]), seconds, rate, amplitude)


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 section 2.3 event payload."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4 or len(payload) % 4:
            raise DtmfError(f"telephone-event payload of {len(payload)} bytes")
        flags = payload[1]
        return cls(
            event=payload[0],
            end=bool(flags & 0x80),
            volume=flags & 0x3F,
            duration=(payload[2] << 8) | payload[3],
        )

    def to_bytes(self) -> bytes:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= 63:
            raise DtmfError("event or volume out of range")
        duration = min(max(self.duration, 0), 0xFFFF)
        return bytes(
            (self.event, (0x80 if self.end else 0) | self.volume, duration >> 8, duration & 0xFF)
        )


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A key press, reported once."""

    digit: str
    duration: float
    """Seconds known when reported (the full duration with ``report_on="end"``)."""
    source: Literal["rfc4733", "inband"]
    at: float
    """The ``now`` at which it was reported."""
    rtp_timestamp: int | None = None


@dataclass(slots=True)
class _Press:
    timestamp: int
    event: int
    duration: int
    last_seen: float
    reported: bool = False
    base: int = 0  # units of earlier segments of a long event


class Rfc4733Receiver:
    """Turns telephone-event packets into one ``DtmfDigit`` per press."""

    def __init__(
        self,
        clock_rate: int = 8000,
        *,
        timeout: float = 0.3,
        report_on: Literal["start", "end"] = "start",
        memory: int = 32,
    ) -> None:
        if report_on not in ("start", "end"):
            raise ValueError(f"report_on must be 'start' or 'end', not {report_on!r}")
        self.clock_rate = clock_rate
        self.timeout = timeout
        self.report_on = report_on
        self._press: _Press | None = None
        self._done: deque[int] = deque(maxlen=memory)
        self.ignored = 0
        """Packets that belonged to an already reported/finished press."""

    def next_deadline(self) -> float | None:
        if self._press is None:
            return None
        return self._press.last_seen + self.timeout

    def tick(self, now: float) -> list[DtmfDigit]:
        """Finish a press whose end packets never came."""
        press = self._press
        if press is not None and now >= press.last_seen + self.timeout:
            return self._finish(press, now)
        return []

    def feed(self, packet: RtpPacket, now: float) -> list[DtmfDigit]:
        out = self.tick(now)
        try:
            ev = TelephoneEvent.parse(packet.payload)
        except DtmfError:
            return out
        ts = packet.timestamp
        if ts in self._done:
            self.ignored += 1
            return out
        press = self._press
        if press is not None and press.timestamp == ts:
            press.duration = max(press.duration, ev.duration)
            press.last_seen = now
            if ev.end:
                out += self._finish(press, now)
            return out
        if press is not None:
            if (ts - press.timestamp) & 0xFFFFFFFF >= 0x80000000:
                # a straggler of an older press none of whose packets we saw
                self._done.append(ts)
                out += self._report(ev.event, ev.duration, ts, now)
                return out
            if (
                not packet.marker
                and ev.event == press.event
                and ts == (press.timestamp + press.duration) & 0xFFFFFFFF
                and press.duration >= 0xFFFF - self.clock_rate // 5
            ):
                # RFC 4733 2.5.1.3: a long event continues in a new segment
                self._done.append(press.timestamp)
                press.base += press.duration
                press.timestamp, press.duration, press.last_seen = ts, ev.duration, now
                if ev.end:
                    out += self._finish(press, now)
                return out
            out += self._finish(press, now)
        press = _Press(ts, ev.event, ev.duration, now)
        self._press = press
        if self.report_on == "start":
            press.reported = True
            out += self._report(ev.event, ev.duration, ts, now)
        if ev.end:
            out += self._finish(press, now)
        return out

    def _finish(self, press: _Press, now: float) -> list[DtmfDigit]:
        self._press = None
        self._done.append(press.timestamp)
        if press.reported:
            return []
        return self._report(press.event, press.base + press.duration, press.timestamp, now)

    def _report(self, event: int, duration: int, ts: int, now: float) -> list[DtmfDigit]:
        digit = event_to_digit(event)
        if digit is None:
            return []
        return [DtmfDigit(digit, duration / self.clock_rate, "rfc4733", now, ts)]


@dataclass(frozen=True, slots=True)
class EventPacket:
    """One packet of a planned RFC 4733 event: send ``payload`` at ``offset`` s."""

    offset: float
    marker: bool
    payload: bytes


class Rfc4733Sender:
    """Plans the packet sequence for one key press (RFC 4733 section 2.5.1).

    All packets of a press carry the same RTP timestamp (the caller's, at the
    start); the caller assigns consecutive sequence numbers and sends each
    packet at its ``offset``.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        *,
        volume: int = 10,
        update_interval: float = 0.05,
        frame: float = 0.02,
        end_repeats: int = 3,
    ) -> None:
        self.clock_rate = clock_rate
        self.volume = volume
        self.update_interval = update_interval
        self.frame = frame
        self.end_repeats = end_repeats

    def packets(self, digit: str, duration: float = 0.1) -> list[EventPacket]:
        event = digit_to_event(digit)
        units = min(round(duration * self.clock_rate), 0xFFFF)
        first = min(round(self.frame * self.clock_rate), units)
        plan = [EventPacket(0.0, True, TelephoneEvent(event, False, self.volume, first).to_bytes())]
        k = 1
        while k * self.update_interval < duration - 1e-9:
            t = k * self.update_interval
            ev = TelephoneEvent(event, False, self.volume, round(t * self.clock_rate))
            plan.append(EventPacket(t, False, ev.to_bytes()))
            k += 1
        end = TelephoneEvent(event, True, self.volume, units).to_bytes()
        for i in range(self.end_repeats):
            plan.append(EventPacket(duration + i * self.frame, False, end))
        return plan

    def rtp_packets(
        self,
        digit: str,
        duration: float = 0.1,
        *,
        payload_type: int = 101,
        ssrc: int,
        sequence: int,
        timestamp: int,
    ) -> list[tuple[float, RtpPacket]]:
        """The same plan as RTP packets: consecutive sequence numbers, one timestamp."""
        return [
            (
                p.offset,
                RtpPacket(
                    payload_type, (sequence + i) & 0xFFFF, timestamp, ssrc, p.marker, p.payload
                ),
            )
            for i, p in enumerate(self.packets(digit, duration))
        ]


def _db(value: float) -> float:
    return float(10 ** (value / 10))


class InbandDtmfDetector:
    """Goertzel DTMF detector for int16 audio, fed frames of any size."""

    _FREQS: Final = DTMF_ROWS + DTMF_COLS

    def __init__(
        self,
        rate: int = 8000,
        *,
        window: float = 0.0256,
        hop: float = 0.0064,
        min_level_dbm0: float = -30.0,
        normal_twist_db: float = 8.0,
        reverse_twist_db: float = 4.0,
        peak_ratio_db: float = 8.0,
        relative_power: float = 0.7,
        min_hits: int = 3,
        release_misses: int = 5,
    ) -> None:
        self.rate = rate
        self.window = round(window * rate)
        self.hop = round(hop * rate)
        ref = (32768.0 / 10 ** (3.14 / 20)) ** 2 / 2  # 0 dBm0, mean square
        self._min_level = ref * _db(min_level_dbm0)
        self._normal_twist = _db(normal_twist_db)
        self._reverse_twist = _db(reverse_twist_db)
        self._peak_ratio = _db(peak_ratio_db)
        self._relative = relative_power
        self.min_hits = min_hits
        self.release_misses = release_misses
        self.reset()

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float64)
        self._candidate: str | None = None
        self._count = 0
        self._down: str | None = None
        self._miss = 0
        self._windows = 0

    def _classify(self, windows: npt.NDArray[np.float64]) -> list[str | None]:
        powers = goertzel_powers(windows, self._FREQS, self.rate)
        energy = np.einsum("ij,ij->i", windows, windows) / windows.shape[1]
        rows, cols = powers[:, :4], powers[:, 4:]
        r = rows.argmax(axis=1)
        c = cols.argmax(axis=1)
        idx = np.arange(len(windows))
        pr = rows[idx, r]
        pc = cols[idx, c]
        rows_other = rows.copy()
        rows_other[idx, r] = 0.0
        cols_other = cols.copy()
        cols_other[idx, c] = 0.0
        ok = (
            (pr >= self._min_level)
            & (pc >= self._min_level)
            & (pr <= pc * self._normal_twist)
            & (pc <= pr * self._reverse_twist)
            & (pr >= rows_other.max(axis=1) * self._peak_ratio)
            & (pc >= cols_other.max(axis=1) * self._peak_ratio)
            & (pr + pc >= energy * self._relative)
        )
        return [_KEYPAD[r[i]][c[i]] if ok[i] else None for i in range(len(windows))]

    def feed(self, samples: npt.ArrayLike, now: float | None = None) -> list[DtmfDigit]:
        """Feed audio; returns the presses recognised in it.

        ``now`` stamps the reports; without it the time is the stream
        position in seconds.
        """
        x = np.asarray(samples, dtype=np.float64).ravel()
        data = np.concatenate((self._pending, x)) if self._pending.size else x
        if len(data) < self.window:
            self._pending = data.copy()
            return []
        n = (len(data) - self.window) // self.hop + 1
        windows = np.lib.stride_tricks.sliding_window_view(data, self.window)[:: self.hop][:n]
        self._pending = data[n * self.hop :].copy()
        out: list[DtmfDigit] = []
        for hit in self._classify(windows):
            self._windows += 1
            if self._down is not None:
                if hit == self._down:
                    self._miss = 0
                else:
                    self._miss += 1
                    if self._miss >= self.release_misses:
                        self._down = None
            if hit is None or hit == self._down:
                self._candidate, self._count = None, 0
                continue
            if hit == self._candidate:
                self._count += 1
            else:
                self._candidate, self._count = hit, 1
            if self._count >= self.min_hits and self._down is None:
                self._down, self._miss = hit, 0
                self._candidate, self._count = None, 0
                at = (
                    now
                    if now is not None
                    else (((self._windows - 1) * self.hop + self.window) / self.rate)
                )
                seen = (self.window + (self.min_hits - 1) * self.hop) / self.rate
                out.append(DtmfDigit(hit, seen, "inband", at))
        return out
