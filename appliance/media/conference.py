"""Mixes the audio of several RTP endpoints of one call (asyncio edge of the mixer).

A two-party call is a :class:`~appliance.media.endpoint.Bridge`: packets are relayed as
they come. As soon as a third party joins (a supervisor listening, whispering to the
agent, or barging in) the call's legs are moved into a :class:`Conference`:

* every endpoint's received audio is decoded and cut into 20 ms frames, queued per
  participant (at most ``MAX_QUEUE`` frames: older ones are dropped, so a burst never
  builds up delay);
* a clock at absolute times ``t0 + k * 20 ms`` takes one frame per participant
  (silence for one whose frame did not come: a lost packet, a held phone), runs the
  :class:`~appliance.media.mixer.Mixer`, and sends each participant what it hears,
  encoded for its own codec. A participant hearing a prompt gets no mix meanwhile.

Who hears whom is the mixer's participant setting; :meth:`Conference.monitor` maps a
supervisor's mode onto it (listen: muted; whisper: heard by the agent only; barge:
heard by all). :meth:`Conference.play` mixes a prompt in as one more (deaf) participant
heard by the legs named: an IVR flow coaching a customer while the agent listens and
talks (R-4.8). RFC 4733 key presses are not mixed; the node still sees them (its own
listeners on each endpoint).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Literal

import numpy as np

from appliance.media import g711
from appliance.media.endpoint import (
    FRAME,
    PTIME,
    AudioHandler,
    MediaError,
    Recorder,
    RtpEndpoint,
)
from appliance.media.mixer import Mixer

__all__ = ["MAX_QUEUE", "Conference", "MonitorMode", "Playback"]

MonitorMode = Literal["listen", "whisper", "barge"]
MAX_QUEUE = 5  # frames kept per participant (100 ms)
MAX_LAG = 5  # ticks the clock may fall behind before it skips to now


class _Input:
    __slots__ = ("frames", "handler", "pending")

    def __init__(self) -> None:
        self.frames: deque[np.ndarray] = deque(maxlen=MAX_QUEUE)
        self.pending = np.zeros(0, dtype=np.int16)
        self.handler: AudioHandler | None = None


class Playback:
    """A prompt mixed into a conference (see :meth:`Conference.play`); ``done`` resolves
    True when played to the end, False when stopped (as a ``Player``'s)."""

    def __init__(self, conf: Conference, pid: str, samples: np.ndarray) -> None:
        self.conf, self.pid = conf, pid
        n = -(-samples.size // FRAME) * FRAME
        self.samples = np.zeros(max(n, FRAME), dtype=np.int16)
        self.samples[:samples.size] = samples
        self.pos = 0
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def next_frame(self) -> np.ndarray | None:
        if self.pos >= self.samples.size:
            return None
        frame = self.samples[self.pos:self.pos + FRAME]
        self.pos += FRAME
        return frame

    def stop(self) -> None:
        self.conf._end_playback(self, False)


class Conference:
    """The legs of one call mixed together (see the module docstring). ``pair`` names
    the two legs of the bridge this conference replaced, whose ``recorder`` goes on
    recording them (and is handed back when they are bridged again)."""

    def __init__(self, endpoints: Mapping[str, RtpEndpoint], *,
                 pair: tuple[str, str] | None = None,
                 recorder: Recorder | None = None) -> None:
        tenants = {ep.tenant_id for ep in endpoints.values() if ep.tenant_id is not None}
        if len(tenants) > 1:
            raise MediaError(f"refusing to mix tenants {sorted(tenants)!r}")
        if len(endpoints) < 2:
            raise MediaError("a conference needs two endpoints or more")
        self.endpoints = dict(endpoints)
        self.pair, self.recorder = pair, recorder
        self.assisting: str | None = None  # the leg whose prompts everyone hears
        self.mixer = Mixer(FRAME)
        self.closed = False
        self.ticks = 0
        self.frames_mixed = 0  # participant frames taken from the queues
        self._inputs: dict[str, _Input] = {}
        self._playbacks: dict[str, Playback] = {}
        self._prompts = 0
        for pid, ep in self.endpoints.items():
            self.mixer.add(pid)
            self._inputs[pid] = inp = _Input()
            inp.handler = self._receiver(pid, ep, inp)
            ep.add_audio_handler(inp.handler)
            ep.new_local_stream()
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._k = 0
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(
            self._t0 + PTIME, self._tick)

    def monitor(self, supervisor: str, agent: str, mode: MonitorMode) -> None:
        """Set what the ``supervisor`` participant says to whom (it hears everyone)."""
        if mode == "listen":
            self.mixer.set_listeners(supervisor, None)
            self.mixer.set_muted(supervisor, True)
        elif mode == "whisper":
            self.mixer.set_muted(supervisor, False)
            self.mixer.whisper(supervisor, agent)
        elif mode == "barge":
            self.mixer.barge(supervisor)
        else:
            raise MediaError(f"unknown monitor mode {mode!r}")

    def play(self, samples: np.ndarray, heard_by: tuple[str, ...]) -> Playback:
        """Mix ``samples`` (int16, 8 kHz) in from the next tick, heard by ``heard_by``
        only (with everything else they hear)."""
        self._prompts += 1
        pid = f"prompt-{self._prompts}"
        self.mixer.add(pid, deaf=True, listeners=heard_by)
        playback = self._playbacks[pid] = Playback(
            self, pid, np.asarray(samples, dtype=np.int16).ravel())
        return playback

    def _end_playback(self, playback: Playback, finished: bool) -> None:
        if self._playbacks.pop(playback.pid, None) is not None:
            self.mixer.remove(playback.pid)
        if not playback.done.done():
            playback.done.set_result(finished)

    @staticmethod
    def _receiver(pid: str, ep: RtpEndpoint, inp: _Input) -> AudioHandler:
        def audio(payload: bytes, seq: int, ts: int, marker: bool) -> None:
            samples = g711.decode(ep.codec, payload)
            if inp.pending.size:
                samples = np.concatenate((inp.pending, samples))
            whole = samples.size - samples.size % FRAME
            for start in range(0, whole, FRAME):
                inp.frames.append(samples[start:start + FRAME])
            inp.pending = samples[whole:]
        return audio

    def _tick(self) -> None:
        self._handle = None
        if self.closed:
            return
        now = self._loop.time()
        due = int((now - self._t0) / PTIME + 1e-6)
        if due - self._k > MAX_LAG:  # the loop stalled: no burst of stale mixes
            self._k = due
        while self._k < due:
            self._mix_once()
            self._k += 1
        self._handle = self._loop.call_at(self._t0 + (self._k + 1) * PTIME, self._tick)

    def _mix_once(self) -> None:
        frames: dict[str, np.ndarray | None] = {}
        for pid, inp in self._inputs.items():
            frames[pid] = inp.frames.popleft() if inp.frames else None
            if frames[pid] is not None:
                self.frames_mixed += 1
        for playback in list(self._playbacks.values()):
            frames[playback.pid] = frame = playback.next_frame()
            if frame is None:
                self._end_playback(playback, True)
                del frames[playback.pid]
        heard = self.mixer.mix(frames)
        self.ticks += 1
        for pid, ep in self.endpoints.items():
            if ep.closed or ep.players or not ep.can_send:
                continue
            ep.send_frame(ep.encode(heard[pid]), FRAME)

    def take_recorder(self) -> Recorder | None:
        recorder, self.recorder = self.recorder, None
        return recorder

    def close(self) -> None:
        """Stop mixing (the endpoints stay open); a recorder still held is finished."""
        if self.closed:
            return
        self.closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for pid, inp in self._inputs.items():
            if inp.handler is not None:
                self.endpoints[pid].remove_audio_handler(inp.handler)
        self._inputs.clear()
        for playback in list(self._playbacks.values()):
            self._end_playback(playback, False)
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
