"""Executes the call-control core's media commands on RTP endpoints (asyncio edge).

The core (:mod:`appliance.pbx.b2bua`) allocates ports and emits commands in order;
opening an endpoint is asynchronous, so each leg's commands wait for its endpoint
(``_LegMedia.ready``) and then run in the order they were issued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.media.dtmf import DtmfDigit
from appliance.media.endpoint import Bridge, Echo, Player, RtpEndpoint
from appliance.media.tts import Tts
from appliance.pbx.b2bua import (
    BridgeMedia,
    CloseMedia,
    Command,
    ConfigureMedia,
    OpenMedia,
    PlayAnnouncement,
    SendDtmf,
    StartEcho,
    UnbridgeMedia,
)

log = logging.getLogger("branchline.media")


@dataclass(eq=False)
class _LegMedia:
    leg: str
    tenant_id: str | None
    ready: asyncio.Future[RtpEndpoint]
    bridge: Bridge | None = None
    echo: Echo | None = None
    player: Player | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    closed: bool = False


class MediaPlane:
    """One per node: maps leg ids to endpoints, bridges, players and echoes."""

    def __init__(
        self,
        *,
        ip: str,
        on_dtmf: Callable[[str, str, str], None],
        on_playback_done: Callable[[str], None],
        recordings_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.ip = ip
        self._on_dtmf = on_dtmf
        self._on_playback_done = on_playback_done
        self.recordings_dir = recordings_dir
        self.tts = Tts(cache_dir)
        self._legs: dict[str, _LegMedia] = {}
        self._opening: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    # ----------------------------------------------------------------- commands

    def execute(self, cmd: Command) -> None:
        if isinstance(cmd, OpenMedia):
            self._open(cmd)
        elif isinstance(cmd, ConfigureMedia):
            self._with(cmd.leg, lambda ep: self._configure(ep, cmd))
        elif isinstance(cmd, BridgeMedia):
            self._bridge(cmd)
        elif isinstance(cmd, UnbridgeMedia):
            self._with(cmd.leg, lambda ep: self._unbridge(cmd.leg))
        elif isinstance(cmd, StartEcho):
            self._with(cmd.leg, lambda ep: self._echo(cmd.leg, ep))
        elif isinstance(cmd, PlayAnnouncement):
            self._spawn(cmd.leg, self._announce(cmd))
        elif isinstance(cmd, SendDtmf):
            self._spawn(cmd.leg, self._send_dtmf(cmd))
        elif isinstance(cmd, CloseMedia):
            self._close(cmd.leg)
        else:
            raise TypeError(f"not a media command: {cmd!r}")

    def _open(self, cmd: OpenMedia) -> None:
        state = _LegMedia(cmd.leg, cmd.tenant_id, self._loop.create_future())
        self._legs[cmd.leg] = state

        async def open_endpoint() -> None:
            try:
                ep = await RtpEndpoint.open(self.ip, cmd.port, latching=True,
                                            tenant_id=cmd.tenant_id)
            except OSError as exc:
                log.error("leg %s tenant=%s: cannot bind RTP port %d: %s", cmd.leg,
                          cmd.tenant_id, cmd.port, exc)
                state.ready.cancel()
                return
            if state.closed:
                ep.close()
                state.ready.cancel()
                return
            ep.add_dtmf_listener(lambda d: self._digit(cmd.leg, d))
            state.ready.set_result(ep)

        # not in state.tasks: closing the leg must not cancel a bind half-way (the
        # task closes the endpoint itself when it finds the leg closed)
        task = self._loop.create_task(open_endpoint())
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)
        task.add_done_callback(_log_failure)

    def _with(self, leg: str, action: Callable[[RtpEndpoint], None]) -> None:
        """Run ``action`` on the leg's endpoint now if it is open, else once it is."""
        state = self._legs.get(leg)
        if state is None or state.closed:
            return
        if state.ready.done():
            if not state.ready.cancelled():
                action(state.ready.result())
            return

        async def later() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                ep = await state.ready
                if not state.closed:
                    action(ep)

        self._track(state, self._loop.create_task(later()))

    def _spawn(self, leg: str, coro: Coroutine[Any, Any, None]) -> None:
        state = self._legs.get(leg)
        if state is None or state.closed:
            coro.close()
            return
        self._track(state, self._loop.create_task(coro))

    def _track(self, state: _LegMedia, task: asyncio.Task[None]) -> None:
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        task.add_done_callback(_log_failure)

    # ----------------------------------------------------------------- actions

    @staticmethod
    def _configure(ep: RtpEndpoint, cmd: ConfigureMedia) -> None:
        ep.set_remote(cmd.remote[0], cmd.remote[1], cmd.payload_type, cmd.codec,
                      cmd.dtmf_payload_type)
        ep.set_direction(cmd.direction)

    def _bridge(self, cmd: BridgeMedia) -> None:
        a, b = self._legs.get(cmd.a), self._legs.get(cmd.b)
        if a is None or b is None:
            return

        def connect(_: RtpEndpoint) -> None:
            if a.closed or b.closed or a.ready.cancelled() or b.ready.cancelled():
                return
            if not (a.ready.done() and b.ready.done()):
                return
            self._unbridge(cmd.a)
            self._unbridge(cmd.b)
            recorder = None
            if self.recordings_dir is not None:
                folder = self.recordings_dir / (cmd.tenant_id or "_unrouted")
                folder.mkdir(parents=True, exist_ok=True)
                recorder = folder / f"{cmd.call_id}-{cmd.a}-{cmd.b}.wav"
            bridge = Bridge(a.ready.result(), b.ready.result(), recorder=recorder)
            a.bridge = b.bridge = bridge

        # whichever endpoint opens last completes the bridge
        self._with(cmd.a, connect)
        self._with(cmd.b, connect)

    def _unbridge(self, leg: str) -> None:
        state = self._legs.get(leg)
        if state is None or state.bridge is None:
            return
        bridge = state.bridge
        bridge.close()
        for other in self._legs.values():
            if other.bridge is bridge:
                other.bridge = None

    def _echo(self, leg: str, ep: RtpEndpoint) -> None:
        state = self._legs[leg]
        if state.echo is None:
            state.echo = Echo(ep)

    async def _announce(self, cmd: PlayAnnouncement) -> None:
        state = self._legs[cmd.leg]
        samples = await self.tts.synthesize_async(cmd.text, cmd.voice)
        ep = await state.ready
        if state.closed:
            return
        state.player = ep.play(samples)
        finished = await state.player.done
        state.player = None
        if finished and not state.closed:
            self._on_playback_done(cmd.leg)

    async def _send_dtmf(self, cmd: SendDtmf) -> None:
        ep = await self._legs[cmd.leg].ready
        await ep.send_dtmf(cmd.digit)

    def _close(self, leg: str) -> None:
        state = self._legs.pop(leg, None)
        if state is None:
            return
        state.closed = True
        self._unbridge(leg)
        if state.echo is not None:
            state.echo.close()
        if state.player is not None:
            state.player.stop()
        for task in list(state.tasks):
            task.cancel()
        if state.ready.done() and not state.ready.cancelled():
            state.ready.result().close()
        else:
            state.ready.cancel()

    def _digit(self, leg: str, digit: DtmfDigit) -> None:
        self._on_dtmf(leg, digit.digit, digit.source)

    async def close(self) -> None:
        for leg in list(self._legs):
            self._close(leg)
        if self._opening:
            await asyncio.gather(*self._opening, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("media task failed", exc_info=task.exception())
