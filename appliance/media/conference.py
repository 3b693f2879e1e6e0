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
heard by all). RFC 4733 key presses are not mixed; the node still sees them (its own
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

__all__ = ["MAX_QUEUE", "Conference", "MonitorMode"]

MonitorMode = Literal["listen", "whisper", "barge"]
MAX_QUEUE = 5  # frames kept per participant (100 ms)
MAX_LAG = 5  # ticks the clock may fall behind before it skips to now


class _Input:
    __slots__ = ("frames", "handler", "pending")

    def __init__(self) -> None:
        self.frames: deque[np.ndarray] = deque(maxlen=MAX_QUEUE)
        self.pending = np.zeros(0, dtype=np.int16)
        self.handler: AudioHandler | None = None


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
        self.mixer = Mixer(FRAME)
        self.closed = False
        self.ticks = 0
        self.frames_mixed = 0  # participant frames taken from the queues
        self._inputs: dict[str, _Input] = {}
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
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
