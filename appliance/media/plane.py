"""Executes the call-control core's media commands on RTP endpoints (asyncio edge).

The core (:mod:`appliance.pbx.b2bua`) allocates ports and emits commands in order; the
plane applies them at once (only TTS synthesis and DTMF sending run as tasks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.ivr.prompts import PromptError, PromptStore
from appliance.media import tones
from appliance.media.capture import Capture
from appliance.media.conference import Conference, Playback
from appliance.media.dtmf import DtmfDigit
from appliance.media.endpoint import Bridge, Echo, Player, RtpEndpoint
from appliance.media.tts import Tts, TtsError
from appliance.pbx.b2bua import (
    AssistMedia,
    BridgeMedia,
    CaptureAudio,
    CloseMedia,
    Command,
    ConfigureMedia,
    MixMedia,
    OpenMedia,
    PlayPrompts,
    SendDtmf,
    StartEcho,
    StopCaptureAudio,
    StopPlayback,
    UnbridgeMedia,
)

log = logging.getLogger("branchline.media")
BEEP = tones.tone(1000.0, 0.25, amplitude=6000.0)

# what the node does with a capture that ended: (command, audio, reason, speech heard)
CaptureDone = Callable[[CaptureAudio, np.ndarray, str, bool], None]


@dataclass(eq=False)
class _LegMedia:
    leg: str
    tenant_id: str | None
    endpoint: RtpEndpoint
    bridge: Bridge | Conference | None = None
    echo: Echo | None = None
    player: Player | Playback | None = None
    playing: asyncio.Task[None] | None = None  # resolving and playing prompts
    capture: Capture | None = None
    capture_seq: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    closed: bool = False


class MediaPlane:
    """One per node: maps leg ids to endpoints, bridges, players and echoes.

    Endpoints are bound synchronously when the core opens a leg
    (:meth:`RtpEndpoint.bind`), so every later command of the call applies at once,
    in order, and no packet arrives before its bridge exists.
    """

    def __init__(
        self,
        *,
        ip: str,
        on_dtmf: Callable[[str, str, str], None],
        on_playback_done: Callable[[str], None],
        on_failure: Callable[[str], None],
        storage_dir: Path,
        on_capture: CaptureDone | None = None,
        recordings_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.ip = ip
        self._on_dtmf = on_dtmf
        self._on_playback_done = on_playback_done
        self._on_failure = on_failure
        self._on_capture = on_capture
        self.recordings_dir = recordings_dir
        self.tts = Tts(cache_dir)
        self.prompts = PromptStore(storage_dir, self.tts)
        self._legs: dict[str, _LegMedia] = {}
        self._loop = asyncio.get_running_loop()

    # ----------------------------------------------------------------- commands

    def execute(self, cmd: Command) -> None:
        if isinstance(cmd, OpenMedia):
            self._open(cmd)
            return
        if isinstance(cmd, CloseMedia):
            self._close(cmd.leg)
            return
        if isinstance(cmd, BridgeMedia):
            self._bridge(cmd)
            return
        if isinstance(cmd, MixMedia):
            self._mix(cmd)
            return
        if isinstance(cmd, AssistMedia):
            self._assist(cmd)
            return
        state = self._legs.get(cmd.leg)  # type: ignore[union-attr]
        if state is None:
            return  # the leg failed to open or is gone; the core was told
        if isinstance(cmd, ConfigureMedia):
            state.endpoint.set_remote(cmd.remote[0], cmd.remote[1], cmd.payload_type,
                                      cmd.codec, cmd.dtmf_payload_type)
            state.endpoint.set_direction(cmd.direction)
            # no telephone-event negotiated: key presses can only come as tones
            state.endpoint.enable_inband_dtmf(cmd.dtmf_payload_type is None)
        elif isinstance(cmd, UnbridgeMedia):
            self._unbridge(state)
        elif isinstance(cmd, StartEcho):
            if state.echo is None:
                state.echo = Echo(state.endpoint)
        elif isinstance(cmd, PlayPrompts):
            self._stop_playback(state)  # a new prompt replaces the one playing
            state.playing = self._spawn(state, self._play_prompts(state, cmd))
        elif isinstance(cmd, StopPlayback):
            self._stop_playback(state)
        elif isinstance(cmd, CaptureAudio):
            self._stop_capture(state, "replaced")
            state.capture_seq = cmd.capture.seq
            self._spawn(state, self._capture(state, cmd))
        elif isinstance(cmd, StopCaptureAudio):
            if cmd.seq == state.capture_seq:
                self._stop_capture(state, "key")
        elif isinstance(cmd, SendDtmf):
            self._spawn(state, state.endpoint.send_dtmf(cmd.digit))
        else:
            raise TypeError(f"not a media command: {cmd!r}")

    def _open(self, cmd: OpenMedia) -> None:
        try:
            ep = RtpEndpoint.bind(self.ip, cmd.port, latching=True, tenant_id=cmd.tenant_id)
        except OSError as exc:
            log.error("leg %s tenant=%s: cannot bind RTP port %d: %s", cmd.leg,
                      cmd.tenant_id, cmd.port, exc)
            self._loop.call_soon(self._on_failure, cmd.leg)
            return
        ep.add_dtmf_listener(lambda d: self._digit(cmd.leg, d))
        self._legs[cmd.leg] = _LegMedia(cmd.leg, cmd.tenant_id, ep)

    def _bridge(self, cmd: BridgeMedia) -> None:
        a, b = self._legs.get(cmd.a), self._legs.get(cmd.b)
        if a is None or b is None:
            return
        # the pair leaves a conference: its recording goes on in the same file
        conf = a.bridge if isinstance(a.bridge, Conference) else None
        kept = conf.take_recorder() if conf is not None and conf.pair == (cmd.a, cmd.b) \
            else None
        self._unbridge(a)
        self._unbridge(b)
        path = None
        if kept is None and self.recordings_dir is not None:
            folder = self.recordings_dir / (cmd.tenant_id or "_unrouted")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{cmd.call_id}-{cmd.a.rsplit('-', 1)[-1]}-{cmd.b}.wav"
        bridge = Bridge(a.endpoint, b.endpoint, recorder=path)
        if kept is not None:
            bridge.recorder = kept  # already attached to both endpoints
        a.bridge = b.bridge = bridge

    def _conference(self, legs: list[_LegMedia], pair: tuple[str, str]) -> Conference:
        """The pair's bridge replaced by a conference of ``legs`` (the pair first), whose
        recorder keeps recording the pair; an existing conference of these legs stays."""
        a, b = legs[0], legs[1]
        conf = a.bridge
        if isinstance(conf, Conference) and conf.endpoints.keys() == {x.leg for x in legs}:
            return conf
        bridge = a.bridge if isinstance(a.bridge, Bridge) and b.bridge is a.bridge else None
        recorder = None
        if bridge is not None:
            recorder, bridge.recorder = bridge.recorder, None
        for x in legs:
            self._unbridge(x)
        conf = Conference({x.leg: x.endpoint for x in legs}, pair=pair, recorder=recorder)
        for x in legs:
            x.bridge = conf
        return conf

    def _assist(self, cmd: AssistMedia) -> None:
        """A flow runs beside the agent: the pair mixed, the customer's prompts played
        into the mix for both (see ``_play_prompts``)."""
        legs = [self._legs.get(x) for x in cmd.pair]
        if legs[0] is None or legs[1] is None:
            return
        self._conference([legs[0], legs[1]], cmd.pair).assisting = cmd.customer

    def _mix(self, cmd: MixMedia) -> None:
        """A supervisor joins the pair (or changes mode): the pair's bridge becomes a
        conference of the three legs, whose recorder keeps recording the pair."""
        legs = [self._legs.get(x) for x in (*cmd.pair, cmd.supervisor)]
        if any(x is None for x in legs):
            return
        a, b, sup = legs
        assert a is not None and b is not None and sup is not None
        self._conference([a, b, sup], cmd.pair).monitor(sup.leg, cmd.agent, cmd.mode)

    def _unbridge(self, state: _LegMedia) -> None:
        bridge = state.bridge
        if bridge is None:
            return
        bridge.close()
        for other in self._legs.values():
            if other.bridge is bridge:
                other.bridge = None

    def _spawn(self, state: _LegMedia, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    async def _play_prompts(self, state: _LegMedia, cmd: PlayPrompts) -> None:
        """Resolve the prompts in the tenant's store, play them back to back, and
        report the end (not when stopped: barge-in or a newer prompt)."""
        parts = []
        for ref in cmd.prompts:
            try:
                parts.append(await self.prompts.resolve(cmd.tenant_id or "", ref,
                                                        cmd.language))
            except (PromptError, TtsError) as exc:
                log.error("leg %s tenant=%s: prompt %s unavailable: %s", cmd.leg,
                          cmd.tenant_id, dict(ref), exc)
        if state.closed:
            return
        samples = np.concatenate(parts) if parts else np.zeros(160, dtype=np.int16)
        conf = state.bridge
        if isinstance(conf, Conference) and conf.assisting == state.leg:
            state.player = conf.play(samples, tuple(conf.endpoints))  # agent listens in
        else:
            state.player = state.endpoint.play(samples)
        finished = await state.player.done
        state.player = None
        if finished and not state.closed:
            self._on_playback_done(cmd.leg)

    async def _capture(self, state: _LegMedia, cmd: CaptureAudio) -> None:
        """Beep if asked, then capture until the capture ends by itself or is stopped;
        the node gets the audio (also when the leg closes: ``hangup``)."""
        spec = cmd.capture
        try:
            if spec.beep:
                state.player = state.endpoint.play(BEEP)
                await state.player.done
                state.player = None
        except asyncio.CancelledError:  # the leg closed during the beep
            self._capture_unstarted(cmd)
            raise
        if state.closed:
            self._capture_unstarted(cmd)
            return
        if state.capture_seq != spec.seq:
            return  # a newer capture replaced this one

        def done(audio: np.ndarray, reason: str, speech: bool) -> None:
            if state.capture is capture:
                state.capture = None
            if self._on_capture is not None:
                self._on_capture(cmd, audio, reason, speech)

        capture = Capture(
            state.endpoint, mode="speech" if spec.kind == "recognise" else "record",
            max_seconds=spec.max_seconds, silence_seconds=spec.silence_seconds, on_done=done)
        state.capture = capture

    def _capture_unstarted(self, cmd: CaptureAudio) -> None:
        """Every capture ends once for the node, even one whose leg closed first."""
        if self._on_capture is not None:
            self._on_capture(cmd, np.zeros(0, np.int16), "hangup", False)

    @staticmethod
    def _stop_capture(state: _LegMedia, reason: str) -> None:
        if state.capture is not None:
            state.capture.stop(reason)
            state.capture = None

    @staticmethod
    def _stop_playback(state: _LegMedia) -> None:
        if state.playing is not None and not state.playing.done():
            state.playing.cancel()
        state.playing = None
        if state.player is not None:
            state.player.stop()
            state.player = None

    def _close(self, leg: str) -> None:
        state = self._legs.pop(leg, None)
        if state is None:
            return
        state.closed = True
        self._unbridge(state)
        if state.echo is not None:
            state.echo.close()
        self._stop_capture(state, "hangup")
        self._stop_playback(state)
        for task in list(state.tasks):
            task.cancel()
        state.endpoint.close()

    def _digit(self, leg: str, digit: DtmfDigit) -> None:
        self._on_dtmf(leg, digit.digit, digit.source)

    async def close(self) -> None:
        endpoints = [state.endpoint for state in self._legs.values()]
        for leg in list(self._legs):
            self._close(leg)
        await asyncio.gather(*(ep.aclose() for ep in endpoints), return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("media task failed", exc_info=task.exception())
