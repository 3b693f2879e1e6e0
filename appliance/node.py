"""The node runtime: composition root of one Branchline node (edge + feature server).

Wires the sans-I/O call-control core (:class:`appliance.pbx.b2bua.B2bua`) to an
asyncio UDP socket, the media plane (:mod:`appliance.media.endpoint`), the CDR store
and the call trace, and runs Kamailio as the SIP edge in front of it.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import json
import logging
import os
import time
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from appliance.agents import AgentDesk
from appliance.api import Principal, start_api
from appliance.cdr import CdrWriter
from appliance.edge.kamailio import EdgeConfig, KamailioEdge
from appliance.edge.rtpengine import Rtpengine, RtpengineConfig
from appliance.ivr.plugins import PluginHost
from appliance.ivr.prompts import PromptStore
from appliance.ivr.runtime import IvrRuntime
from appliance.ivr.voicemail import VoicemailStore
from appliance.media.plane import MediaPlane
from appliance.media.ports import PortPool
from appliance.pbx.b2bua import (
    AcdNotice,
    B2bua,
    CaptureAudio,
    RunIvrAction,
    TraceEvent,
    WriteCdr,
)
from appliance.plan import Limits, Plan, token_hash
from appliance.storage import MB, used_bytes

log = logging.getLogger("branchline.node")
FACTS_INTERVAL = 5.0  # seconds between reads of registrations and storage used
LOCAL_TIME_INTERVAL = 60.0  # seconds between two readings of the local time of day


@dataclass(frozen=True)
class NodeConfig:
    run_dir: Path
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    fs_port: int = 5080
    media_ip: str = "127.0.0.1"
    rtp_low: int = 20000
    rtp_high: int = 29999
    flood_requests_per_2s: int = 100
    record_calls: bool = False
    ring_timeout: float = 60.0
    edge_children: int = 2
    api_host: str = "127.0.0.1"
    api_port: int = 8088  # 0: no API
    # Browsers (docs/WEBRTC.md): SIP over WebSocket on sip_host (0 = off), wss needs
    # the PEM certificate and key; their media goes through rtpengine (ng control on
    # loopback, its own RTP ports on webrtc_media_ip, "" = media_ip).
    ws_port: int = 0
    wss_port: int = 0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    rtpengine_port: int = 2223
    webrtc_rtp_low: int = 30000
    webrtc_rtp_high: int = 30999
    webrtc_media_ip: str = ""
    # the local time of the ACD's night hours, midnight and daily records (IANA name)
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        time_zone(self.timezone)

    @property
    def ws_url(self) -> str | None:
        """Where browsers reach the edge over SIP/WebSocket (None: off)."""
        return f"ws://{self.sip_host}:{self.ws_port}" if self.ws_port else None

    @property
    def wss_url(self) -> str | None:
        return f"wss://{self.sip_host}:{self.wss_port}" if self.wss_port else None

    @property
    def cdr_path(self) -> Path:
        return self.run_dir / "cdr.sqlite"

    @property
    def status_path(self) -> Path:
        """Live status (calls and IVR ports per tenant), rewritten every second."""
        return self.run_dir / "status.json"

    @property
    def trace_path(self) -> Path:
        return self.run_dir / "trace.jsonl"

    @property
    def storage_dir(self) -> Path:
        """Per-tenant files: ``<tenant>/prompts/<language>/<name>.wav`` and the like."""
        return self.run_dir / "storage"

    @property
    def recordings_dir(self) -> Path:
        return self.run_dir / "recordings"


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name`` (ValueError saying so when there is none)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (an IANA name such as "
                         "Asia/Shanghai)") from None


@functools.lru_cache(maxsize=1024)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _SipProtocol(asyncio.DatagramProtocol):
    def __init__(self, node: Node) -> None:
        self.node = node

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.node._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.warning("SIP socket error: %s", exc)


class Node:
    """One node: start() brings up the edge and the feature server; stop() ends both."""

    def __init__(self, cfg: NodeConfig, plan: Plan) -> None:
        self.cfg = cfg
        self.plan = plan
        self.edge = KamailioEdge(EdgeConfig(
            run_dir=cfg.run_dir / "edge", listen_ip=cfg.sip_host, sip_port=cfg.sip_port,
            fs_ip="127.0.0.1", fs_port=cfg.fs_port, children=cfg.edge_children,
            flood_requests_per_2s=cfg.flood_requests_per_2s, ws_port=cfg.ws_port,
            wss_port=cfg.wss_port, tls_cert=cfg.tls_cert, tls_key=cfg.tls_key,
            rtpengine_ng=("127.0.0.1", cfg.rtpengine_port),
        ))
        self.rtpengine = Rtpengine(RtpengineConfig(
            run_dir=cfg.run_dir / "rtpengine", media_ip=cfg.webrtc_media_ip or cfg.media_ip,
            ng_port=cfg.rtpengine_port, port_min=cfg.webrtc_rtp_low,
            port_max=cfg.webrtc_rtp_high,
        )) if cfg.ws_port or cfg.wss_port else None
        self.core = B2bua(
            plan=plan, local_ip="127.0.0.1", local_port=cfg.fs_port,
            edge=(cfg.sip_host, cfg.sip_port), media_ip=cfg.media_ip,
            ports=PortPool(cfg.rtp_low, cfg.rtp_high),
            wall_offset=time.time() - time.monotonic(), ring_timeout=cfg.ring_timeout,
        )
        self.cdrs: CdrWriter | None = None
        self.ivr: IvrRuntime | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._status_timer: asyncio.TimerHandle | None = None
        self._local_timer: asyncio.TimerHandle | None = None
        self.media: MediaPlane | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._trace_fh: TextIO | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: Any = None  # aiohttp AppRunner
        self.agents = AgentDesk(self.core, lambda: self.plan, self._flush,
                                cfg.run_dir / "acd-events.jsonl", timezone=cfg.timezone)
        self._started = 0.0  # time.monotonic() when up
        self._registered = 0
        self._storage_used: dict[str, int] = {}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.cdrs = CdrWriter(self.cfg.cdr_path)
        self.ivr = IvrRuntime(self.cfg.storage_dir, lambda: self.plan,
                              self._messages_waiting)
        self._trace_fh = open(self.cfg.trace_path, "a", encoding="utf-8")
        self.media = MediaPlane(
            ip=self.cfg.media_ip,
            on_dtmf=self._on_media_dtmf,
            on_playback_done=self._on_playback_done,
            on_failure=self._on_media_failure,
            on_capture=self._on_capture,
            storage_dir=self.cfg.storage_dir,
            recordings_dir=self.cfg.recordings_dir if self.cfg.record_calls else None,
            cache_dir=self.cfg.run_dir / "tts-cache",
        )
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _SipProtocol(self), local_addr=("127.0.0.1", self.cfg.fs_port)
        )
        self._transport = transport
        self.edge.prepare(self.plan)
        try:
            if self.rtpengine is not None:
                await self.rtpengine.start()
            await self.edge.start()
        except BaseException:
            await self.stop()
            raise
        if self.cfg.api_port:
            self._api = await start_api(self, self.cfg.api_host, self.cfg.api_port)
        self._started = time.monotonic()
        self._spawn(self._refresh_facts())
        self._follow_local_time()
        self._write_status()
        log.info("node %s up: edge %s:%d, feature server 127.0.0.1:%d", self.plan.node_id,
                 self.cfg.sip_host, self.cfg.sip_port, self.cfg.fs_port)

    async def apply_plan(self, plan: Plan) -> None:
        """Apply a new plan: the edge reloads its tables, new calls use the new routes."""
        await self.edge.reload(plan)
        self.plan = plan
        self.core.set_plan(plan, time.monotonic())
        self._flush()  # what the ACDs' reconfiguration decided

    def status_doc(self) -> dict[str, Any]:
        """What the NOC and tenants see as live use of this node: calls, IVR ports busy
        and PSTN calls per tenant, each next to the tenant's limits and status (calls
        of no tenant, to an unknown number, appear under "")."""
        tenants: dict[str, dict[str, Any]] = {
            tid: dict(live) for tid, live in self.core.usage().items()}
        for tenant in self.plan.tenants:
            entry = tenants.setdefault(tenant.id, {"calls": 0, "ivr_busy": 0,
                                                   "pstn_calls": 0})
            entry["limits"] = tenant.limits.to_dict()
            entry["status"] = tenant.status
        for tid, used in self._storage_used.items():
            if tid in tenants:
                tenants[tid]["storage_mb"] = round(used / MB, 1)
        return {
            "node": self.plan.node_id, "plan_version": self.plan.version,
            "time": round(time.time(), 3), "calls": self.core.active_calls,
            "uptime": round(time.monotonic() - self._started, 1) if self._started else 0.0,
            "load": round(os.getloadavg()[0], 2), "registered": self._registered,
            "tenants": tenants,
        }

    def _follow_local_time(self) -> None:
        """Now and every minute: the call control's ACDs learn the local time of day
        (night hours, midnight), so clock steps and daylight-saving changes are followed."""
        local = datetime.datetime.now(time_zone(self.cfg.timezone))
        seconds = local.hour * 3600 + local.minute * 60 + local.second \
            + local.microsecond / 1e6
        self.core.set_local_time(time.monotonic(), seconds)
        self._flush()
        if self._loop is not None:
            self._local_timer = self._loop.call_later(LOCAL_TIME_INTERVAL,
                                                      self._follow_local_time)

    async def _refresh_facts(self) -> None:
        """Every few seconds: what is too slow to measure every second (registered
        phones, from Kamailio; storage used per tenant, from the disk)."""
        while True:
            try:
                self._registered = await self.edge.registered()
            except (RuntimeError, OSError) as exc:
                log.warning("cannot read the registrations: %s", exc)
            self._storage_used = await asyncio.to_thread(
                self._measure_storage, [t.id for t in self.plan.tenants])
            await asyncio.sleep(FACTS_INTERVAL)

    def _measure_storage(self, tenants: list[str]) -> dict[str, int]:
        return {tid: used_bytes(self.cfg.storage_dir, tid) for tid in tenants}

    def _write_status(self) -> None:
        """Every second: ``status_doc`` to ``status.json`` (replaced atomically)."""
        tmp = self.cfg.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status_doc(), sort_keys=True))
        tmp.replace(self.cfg.status_path)
        if self._loop is not None:
            self._status_timer = self._loop.call_later(1.0, self._write_status)

    async def stop(self) -> None:
        if self._api is not None:
            await self._api.cleanup()
            self._api = None
        if self._status_timer is not None:
            self._status_timer.cancel()
            self._status_timer = None
        if self._local_timer is not None:
            self._local_timer.cancel()
            self._local_timer = None
        await self.edge.stop()
        if self.rtpengine is not None:
            await self.rtpengine.stop()
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self.media is not None:
            await self.media.close()
            self.media = None
        for task in list(self._tasks):
            task.cancel()
        if self.ivr is not None:
            await self.ivr.close()
            self.ivr = None
        if self.cdrs is not None:
            self.cdrs.close()
            self.cdrs = None
        self.agents.close()
        if self._trace_fh is not None:
            self._trace_fh.close()
            self._trace_fh = None

    # ----------------------------------------------------------------- API backend
    # (appliance.api.ApiBackend: what the node's HTTP API reads and asks for)

    @property
    def voicemail(self) -> VoicemailStore:
        assert self.ivr is not None, "the API starts after the IVR runtime"
        return self.ivr.voicemail

    @property
    def plugins(self) -> PluginHost:
        assert self.ivr is not None, "the API starts after the IVR runtime"
        return self.ivr.plugins

    @property
    def prompts(self) -> PromptStore:
        assert self.media is not None, "the API starts after the media plane"
        return self.media.prompts

    @property
    def trace_path(self) -> Path:
        return self.cfg.trace_path

    def usage(self) -> dict[str, dict[str, int]]:
        return self.core.usage()

    def node_status(self) -> dict[str, Any]:
        return {"node": self.plan.node_id, "plan_version": self.plan.version}

    def desk_config(self) -> dict[str, str | None]:
        """What the agent desktop page needs before sign-in: the edge's WebSocket URLs."""
        return {"ws_url": self.cfg.ws_url, "wss_url": self.cfg.wss_url}

    def authenticate(self, token: str) -> Principal | None:
        hashed = token_hash(token)
        if hashed in self.plan.api_tokens:
            return Principal(None, "operator")
        session = self.agents.session(hashed)
        if session is not None:
            return Principal(session.tenant_id, f"agent {session.agent_id}",
                             agent=session.agent_id, supervisor=session.supervisor)
        for tenant in self.plan.tenants:
            if hashed in tenant.api_tokens:
                return Principal(tenant.id, f"{tenant.id} admin", suspended=tenant.suspended)
        return None

    def mailbox_exists(self, tenant_id: str, mailbox: str) -> bool:
        return self.ivr is not None and self.ivr.pin_hash(tenant_id, mailbox) is not None

    def mailbox_changed(self, tenant_id: str, mailbox: str) -> None:
        if self.ivr is not None:
            self._spawn(asyncio.to_thread(self.ivr.mailbox_changed, tenant_id, mailbox))

    def limits(self, tenant_id: str) -> dict[str, int]:
        """The tenant's limits from the plan (0: no limit; all 0 for an unknown one)."""
        tenant = self.plan.tenant(tenant_id)
        return (tenant.limits if tenant is not None else Limits()).to_dict()

    def ivr_ports(self, tenant_id: str | None) -> int:
        """The IVR port limit of a tenant, or of the node (None); 0: no limit."""
        if tenant_id is None:
            return self.plan.ivr_ports
        tenant = self.plan.tenant(tenant_id)
        return tenant.limits.ivr_ports if tenant is not None else 0

    def originate(self, tenant_id: str, number: str, flow: str, *, caller_id: str | None,
                  ring_seconds: float | None, variables: Mapping[str, str]) -> str:
        call = self.core.originate(tenant_id, number, flow, time.monotonic(),
                                   caller_id=caller_id, ring_seconds=ring_seconds,
                                   variables=variables)
        self._flush()
        return call

    # ----------------------------------------------------------------- plumbing

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self._into_core(self.core.receive, data, addr)

    def _on_timer(self) -> None:
        self._timer = None
        self._into_core(self.core.tick)

    def _on_media_dtmf(self, leg: str, digit: str, method: str) -> None:
        self._into_core(self.core.media_dtmf, leg, digit, method)

    def _on_media_failure(self, leg: str) -> None:
        self._into_core(self.core.media_failed, leg)

    def _on_playback_done(self, leg: str) -> None:
        self._into_core(self.core.playback_finished, leg)

    def _into_core(self, entry: Callable[..., None], *args: Any) -> None:
        """Feed the core one input (with ``now``), then carry out what it produced. A
        bug is logged with its traceback; the node goes on serving the other calls."""
        try:
            entry(*args, time.monotonic())
        except Exception:
            log.exception("call control failed on %s", entry.__name__)
        self._flush()

    def _run_action(self, cmd: RunIvrAction) -> None:
        """Run a flow's data action off the call path; its result goes back to the core."""
        ivr = self.ivr
        if ivr is None:
            return

        async def run() -> None:
            ok, value, error = await ivr.run_action(cmd.tenant_id or "", cmd.kind,
                                                    cmd.params, cmd.timeout)
            self._into_core(self.core.ivr_action_done, cmd.leg, ok, value, error)

        self._spawn(run())

    def _spawn(self, coro: Any) -> None:
        if self._loop is None:
            return
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_capture(self, cmd: CaptureAudio, audio: Any, reason: str, speech: bool) -> None:
        """A capture ended: keep the recording or message (even if the caller has hung
        up: traced here, since the call may be over), or recognise the speech; then
        tell the flow."""
        ivr = self.ivr
        if ivr is None:
            return

        async def finish() -> None:
            result = await ivr.finish_capture(cmd, audio, reason, speech)
            trace = ivr.capture_trace(cmd, audio, reason, result)
            if trace is not None:
                self._write_trace(TraceEvent(cmd.tenant_id, cmd.call_id, cmd.capture.kind,
                                             trace))
            self._into_core(self.core.capture_finished, cmd.leg, cmd.capture.seq, *result)

        self._spawn(finish())

    def _messages_waiting(self, tenant_id: str, extension: str, mailbox: str, new: int,
                          saved: int) -> None:
        """From a worker thread: the core sends the message-waiting NOTIFY."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._into_core, self.core.notify_messages,
                                            tenant_id, extension, mailbox, new, saved)

    def _send_sip(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data, addr in self.core.outgoing():
            if _is_ip(addr[0]):
                transport.sendto(data, addr)
            else:  # never resolve names on the event loop; our peers are addresses
                log.warning("dropping SIP message to unresolved host %s", addr[0])

    def _flush(self) -> None:
        while self.core.errors:
            exc = self.core.errors.pop(0)
            log.error("call control error (answered 500, still serving)",
                      exc_info=(type(exc), exc, exc.__traceback__))
        self._send_sip()
        for cmd in self.core.commands():
            if isinstance(cmd, WriteCdr):
                if self.cdrs is not None:
                    self.cdrs.write(cmd.cdr)
            elif isinstance(cmd, TraceEvent):
                self._write_trace(cmd)
            elif isinstance(cmd, AcdNotice):
                self.agents.publish(cmd.event)
            elif isinstance(cmd, RunIvrAction):
                self._run_action(cmd)
            elif self.media is not None:
                self.media.execute(cmd)
        self._send_sip()  # media commands may have produced SIP
        self._schedule()

    def _schedule(self) -> None:
        deadline = self.core.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._loop is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _write_trace(self, ev: TraceEvent) -> None:
        record = {"ts": round(time.time(), 3), "tenant": ev.tenant_id, "call": ev.call_id,
                  "event": ev.kind, **dict(ev.data)}
        if self._trace_fh is not None:
            self._trace_fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._trace_fh.flush()
        log.info("call %s tenant=%s %s %s", ev.call_id, ev.tenant_id, ev.kind,
                 " ".join(f"{k}={v}" for k, v in ev.data))

