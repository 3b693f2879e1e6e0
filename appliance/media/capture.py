"""Capturing what a caller says: recordings, voicemail and speech for recognition.

A :class:`Capture` listens to one endpoint's decoded audio (8 kHz) and keeps it in
memory until it ends, for one of these reasons:

``max``       ``max_seconds`` of wall time have passed;
``silence``   (``record`` mode) nothing louder than the threshold for
              ``silence_seconds`` (0 turns this off); the silent tail is cut;
``no_speech`` (``speech`` mode) no speech began within ``silence_seconds``;
``end_of_speech`` (``speech`` mode) speech began and then ``SPEECH_TAIL`` seconds
              of silence followed;
``stopped``   :meth:`stop` was called (an end key, the leg closing: ``hangup``).

Loudness is the RMS of each 20 ms frame against ``threshold_dbfs``. Time is the
event loop's clock, checked every ``CHECK`` seconds, so a caller whose phone sends
no RTP at all still ends by silence or at the maximum. ``on_done(samples, reason,
speech)`` is called exactly once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from appliance.media import g711

RATE = 8000
CHECK = 0.1
SPEECH_TAIL = 0.8
THRESHOLD_DBFS = -42.0

Done = Callable[[npt.NDArray[np.int16], str, bool], None]


class Capture:
    def __init__(self, endpoint: Any, *, mode: str, max_seconds: float,
                 silence_seconds: float, on_done: Done,
                 threshold_dbfs: float = THRESHOLD_DBFS) -> None:
        if mode not in ("record", "speech"):
            raise ValueError(f"unknown capture mode {mode!r}")
        self.endpoint = endpoint
        self.mode = mode
        self.max_seconds = max_seconds
        self.silence_seconds = silence_seconds
        self._on_done = on_done
        self._threshold = 32768.0 * 10 ** (threshold_dbfs / 20)
        self._chunks: list[npt.NDArray[np.int16]] = []
        self._samples = 0
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._last_loud: float | None = None  # loop time of the last loud frame
        self._loud_end = 0  # samples up to the end of the last loud frame
        self.done = False
        endpoint.add_audio_handler(self._audio)
        self._timer = self._loop.call_later(CHECK, self._check)

    @property
    def speech(self) -> bool:
        return self._last_loud is not None

    def _audio(self, payload: bytes, seq: int, ts: int, marker: bool) -> None:
        samples = g711.decode(self.endpoint.codec, payload)
        self._chunks.append(samples)
        self._samples += len(samples)
        rms = math.sqrt(float(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0
        if rms >= self._threshold:
            self._last_loud = self._loop.time()
            self._loud_end = self._samples

    def _check(self) -> None:
        now = self._loop.time()
        quiet_since = self._last_loud if self._last_loud is not None else self._start
        if now - self._start >= self.max_seconds:
            self._finish("max")
        elif self.mode == "record":
            if self.silence_seconds > 0 and now - quiet_since >= self.silence_seconds:
                self._finish("silence", trim=True)
            else:
                self._timer = self._loop.call_later(CHECK, self._check)
        elif self._last_loud is None and now - self._start >= self.silence_seconds:
            self._finish("no_speech")
        elif self._last_loud is not None and now - self._last_loud >= SPEECH_TAIL:
            self._finish("end_of_speech")
        else:
            self._timer = self._loop.call_later(CHECK, self._check)

    def stop(self, reason: str = "stopped") -> None:
        self._finish(reason)

    def _finish(self, reason: str, trim: bool = False) -> None:
        if self.done:
            return
        self.done = True
        self._timer.cancel()
        self.endpoint.remove_audio_handler(self._audio)
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        if trim:  # keep a short tail after the last sound, not the whole silence
            audio = audio[: min(len(audio), self._loud_end + RATE // 2)]
        self._chunks = []
        self._on_done(audio.astype(np.int16, copy=False), reason, self.speech)
