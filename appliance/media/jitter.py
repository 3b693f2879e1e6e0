"""A playout (jitter) buffer for fixed-frame audio such as G.711 at 20 ms.

Theory of operation
-------------------
Packets are stored by *extended* sequence number (the 16-bit number unwrapped
against the next one to play), so wraparound at 65535 -> 0 is invisible.
Playout is clocked by the caller: ``pop(now)`` is called once per frame
(every 20 ms) and returns exactly one payload or ``None``:

* before the first packet, or after ``idle_reset`` seconds without any:
  ``None`` (nothing to play; the caller sends nothing);
* buffering: the first packet of a stream is held until ``target_delay``
  after its arrival, then playout starts with the lowest sequence number
  received by then;
* the next packet is present: it is returned;
* it is missing but later ones are buffered: it is lost, the frame is
  concealed (the previous payload repeated up to ``max_repeats`` times, then
  ``silence``) and playout moves on; if it shows up later it is too late
  and is dropped;
* the buffer is empty (underrun): the frame is concealed without advancing,
  which adds one frame of delay.

The buffer keeps its depth near the target: when more than
``target + frame`` is queued, the head slot is skipped at each ``pop`` (a
frame, or a gap that is no longer waited for), so delay added by underruns
or bursts drains again.  On overflow (``capacity`` frames) the oldest
buffered frame is discarded.  With ``adaptive=True``
the target follows the RFC 3550 interarrival jitter estimate,
``clamp(jitter_factor * jitter + frame, min_delay, max_delay)``.

A sequence jump of more than ``max_jump`` frames (a new sender behind the
same SSRC, or a restarted stream) resets the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from appliance.media.rtp import RtpPacket, seq_delta

__all__ = ["JitterBuffer", "JitterStats"]

_MOD16: Final = 1 << 16


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    played: int = 0
    concealed: int = 0
    late: int = 0
    duplicates: int = 0
    dropped: int = 0
    """Frames skipped to reduce delay, or discarded on overflow."""
    underruns: int = 0
    resets: int = 0
    jitter: float = 0.0
    """Interarrival jitter estimate in seconds (RFC 3550 A.8)."""
    target_delay: float = 0.0


class JitterBuffer:
    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        frame: float = 0.02,
        target_delay: float = 0.04,
        adaptive: bool = False,
        min_delay: float = 0.02,
        max_delay: float = 0.3,
        jitter_factor: float = 3.0,
        capacity: int = 64,
        max_repeats: int = 2,
        silence: bytes = b"\xff" * 160,
        idle_reset: float = 1.0,
        max_jump: int = 500,
    ) -> None:
        self.clock_rate = clock_rate
        self.frame = frame
        self.adaptive = adaptive
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.jitter_factor = jitter_factor
        self.capacity = capacity
        self.max_repeats = max_repeats
        self.silence = silence
        self.idle_reset = idle_reset
        self.max_jump = max_jump
        self.stats = JitterStats(target_delay=target_delay)
        self._fixed_target = target_delay
        self._frames: dict[int, bytes] = {}
        self._next: int | None = None  # extended seq of the next frame to play
        self._next16 = 0
        self._start_at: float | None = None
        self._playing = False
        self._last_payload: bytes | None = None
        self._repeats = 0
        self._last_arrival = 0.0
        self._transit: float | None = None
        self._ssrc: int | None = None

    # -- input ---------------------------------------------------------------

    def push(self, packet: RtpPacket, now: float) -> bool:
        """Queue a packet; False if it was dropped (late, duplicate, overflow)."""
        if self._ssrc is not None and packet.ssrc != self._ssrc:
            self._reset()
        self._ssrc = packet.ssrc
        self._update_jitter(packet.timestamp, now)
        if self._next is None:
            self._next, self._next16 = 0, packet.sequence
            self._start_at = now + self.stats.target_delay
        delta = seq_delta(packet.sequence, self._next16)
        if abs(delta) > self.max_jump:
            self._reset()
            self._next, self._next16 = 0, packet.sequence
            self._start_at = now + self.stats.target_delay
            delta = 0
        self._last_arrival = now
        if delta < 0 and self._playing:
            self.stats.late += 1
            return False
        ext = self._next + delta
        if ext in self._frames:
            self.stats.duplicates += 1
            return False
        if len(self._frames) >= self.capacity:
            if ext < max(self._frames):
                self.stats.dropped += 1
                return False
            self._skip_oldest()
        self._frames[ext] = packet.payload
        self.stats.received += 1
        return True

    def _update_jitter(self, timestamp: int, now: float) -> None:
        transit = now - timestamp / self.clock_rate
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < 10.0:  # ignore timestamp jumps
                self.stats.jitter += (d - self.stats.jitter) / 16.0
        self._transit = transit
        if self.adaptive:
            target = self.jitter_factor * self.stats.jitter + self.frame
            self.stats.target_delay = min(max(target, self.min_delay), self.max_delay)

    # -- output --------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Frames between the next one to play and the newest one buffered."""
        if self._next is None or not self._frames:
            return 0
        return max(self._frames) - self._next + 1

    @property
    def delay(self) -> float:
        return self.depth * self.frame

    def pop(self, now: float) -> bytes | None:
        """The payload to play for this frame slot (see the module docstring)."""
        if self._next is None:
            return None
        if not self._playing:
            if not self._frames and now - self._last_arrival >= self.idle_reset:
                self._reset()
                return None
            if self._start_at is None or now < self._start_at or not self._frames:
                return None
            self._playing = True
            first = min(self._frames)
            self._advance_to(first)
        payload = self._frames.pop(self._next, None)
        if payload is not None:
            self._advance_to(self._next + 1)
            self._last_payload, self._repeats = payload, 0
            self.stats.played += 1
            self._trim()
            return payload
        if self._frames:
            self._advance_to(self._next + 1)  # lost: conceal and move on
        else:
            self.stats.underruns += 1
            if now - self._last_arrival >= self.idle_reset:
                self._reset()
                return None
        self.stats.concealed += 1
        return self._conceal()

    def _conceal(self) -> bytes:
        if self._last_payload is not None and self._repeats < self.max_repeats:
            self._repeats += 1
            return self._last_payload
        return self.silence

    def _trim(self) -> None:
        limit = round(self.stats.target_delay / self.frame) + 1
        if self.depth > limit and self._next is not None:
            # drop the head slot: a buffered frame, or a gap we no longer wait for
            if self._frames.pop(self._next, None) is not None:
                self.stats.dropped += 1
            self._advance_to(self._next + 1)

    def _skip_oldest(self) -> None:
        if self._frames:
            del self._frames[min(self._frames)]
            self.stats.dropped += 1

    def _advance_to(self, ext: int) -> None:
        assert self._next is not None
        self._next16 = (self._next16 + ext - self._next) % _MOD16
        self._next = ext

    def _reset(self) -> None:
        self._frames.clear()
        self._next = None
        self._start_at = None
        self._playing = False
        self._last_payload = None
        self._repeats = 0
        self._transit = None
        self.stats.resets += 1
