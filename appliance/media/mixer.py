"""N-party audio mixer on fixed frames (20 ms of 8 kHz int16 by default).

Theory of operation
-------------------
Each participant contributes ``frame * gain`` (nothing if muted or silent
this tick).  A contribution is either *public* (heard by everyone else) or
*private* (heard only by the listeners named for it: a whisper, e.g. a
supervisor coaching an agent, is a participant whose listeners are just
that agent).  A *muted* participant is heard by nobody (listen-only
monitoring); a *deaf* one hears nothing (a pure source such as a prompt or
music-on-hold feed).

For every listener ``j`` the output is::

    sum(public contributions) - own public contribution
        + sum(private contributions whose listeners include j, except j's own)

computed in int32/float32 with one vector sum for the public part, then
clipped to int16.  So conference = all public; whisper = one private
participant with one listener; barge = the supervisor turned public;
listen-only monitoring = a muted participant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Mixer", "MixerError", "Participant"]

Int16Array = npt.NDArray[np.int16]


class MixerError(ValueError):
    """Unknown participant, bad frame shape, or a listener set naming strangers."""


@dataclass(slots=True)
class Participant:
    id: str
    gain: float = 1.0
    muted: bool = False
    """Nobody hears a muted participant (listen-only / monitor)."""
    deaf: bool = False
    """A deaf participant hears nothing (a pure source, e.g. a prompt)."""
    listeners: frozenset[str] | None = None
    """None = heard by all; otherwise only by these (whisper)."""


class Mixer:
    def __init__(self, frame_samples: int = 160) -> None:
        self.frame_samples = frame_samples
        self._parts: dict[str, Participant] = {}
        self._silence = np.zeros(frame_samples, dtype=np.int16)
        self._silence.setflags(write=False)

    # -- membership and controls ---------------------------------------------

    def add(
        self,
        pid: str,
        *,
        gain: float = 1.0,
        muted: bool = False,
        deaf: bool = False,
        listeners: Iterable[str] | None = None,
    ) -> Participant:
        if pid in self._parts:
            raise MixerError(f"participant {pid!r} already in the mix")
        part = Participant(pid, gain, muted, deaf)
        self._parts[pid] = part
        if listeners is not None:
            self.set_listeners(pid, listeners)
        return part

    def remove(self, pid: str) -> None:
        self._get(pid)
        del self._parts[pid]
        for part in self._parts.values():
            if part.listeners is not None and pid in part.listeners:
                part.listeners = part.listeners - {pid}

    def __contains__(self, pid: object) -> bool:
        return pid in self._parts

    def __len__(self) -> int:
        return len(self._parts)

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(self._parts)

    def participant(self, pid: str) -> Participant:
        return self._get(pid)

    def set_gain(self, pid: str, gain: float) -> None:
        if gain < 0:
            raise MixerError("gain must be >= 0")
        self._get(pid).gain = gain

    def set_muted(self, pid: str, muted: bool) -> None:
        self._get(pid).muted = muted

    def set_deaf(self, pid: str, deaf: bool) -> None:
        self._get(pid).deaf = deaf

    def set_listeners(self, pid: str, listeners: Iterable[str] | None) -> None:
        """Restrict who hears ``pid`` (None: everybody)."""
        part = self._get(pid)
        if listeners is None:
            part.listeners = None
            return
        names = frozenset(listeners)
        unknown = names - self._parts.keys()
        if unknown:
            raise MixerError(f"unknown listeners {sorted(unknown)!r} for {pid!r}")
        part.listeners = names - {pid}

    def whisper(self, pid: str, to: str) -> None:
        """``pid`` is heard only by ``to`` (coaching)."""
        self.set_listeners(pid, (to,))

    def barge(self, pid: str) -> None:
        """``pid`` is heard by everyone, unmuted."""
        part = self._get(pid)
        part.listeners = None
        part.muted = False

    def _get(self, pid: str) -> Participant:
        try:
            return self._parts[pid]
        except KeyError:
            raise MixerError(f"unknown participant {pid!r}") from None

    # -- mixing ---------------------------------------------------------------

    def mix(self, frames: Mapping[str, npt.ArrayLike | None]) -> dict[str, Int16Array]:
        """One tick: each participant's frame in, what each one hears out.

        Participants missing from ``frames`` (or given None) are silent this
        tick; frames for unknown ids are an error.
        """
        n = self.frame_samples
        unknown = frames.keys() - self._parts.keys()
        if unknown:
            raise MixerError(f"frames for unknown participants {sorted(unknown)!r}")
        contrib: dict[str, npt.NDArray[np.float32]] = {}
        public = np.zeros(n, dtype=np.float32)
        for pid, part in self._parts.items():
            raw = frames.get(pid)
            if raw is None or part.muted or part.gain == 0:
                continue
            arr = np.asarray(raw)
            if arr.shape != (n,):
                raise MixerError(f"frame for {pid!r} has shape {arr.shape}, expected ({n},)")
            c = arr.astype(np.float32)
            if part.gain != 1.0:
                c *= np.float32(part.gain)
            contrib[pid] = c
            if part.listeners is None:
                public += c
        out: dict[str, Int16Array] = {}
        for pid, part in self._parts.items():
            if part.deaf:
                out[pid] = self._silence.copy()
                continue
            acc = public
            own = contrib.get(pid)
            if own is not None and part.listeners is None:
                acc = acc - own
            for other, c in contrib.items():
                listeners = self._parts[other].listeners
                if other != pid and listeners is not None and pid in listeners:
                    acc = acc + c
            out[pid] = np.clip(np.rint(acc), -32768, 32767).astype(np.int16)
        return out
