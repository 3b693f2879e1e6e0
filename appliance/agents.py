"""Agents at the node: desktop sign-in, state changes, the live view, and the event
stream (edge module; the ACD itself is the pure core in ``appliance/acd``, run inside
the call control, :class:`appliance.pbx.b2bua.B2bua`).

An agent signs in with its tenant's SIP domain, its agent id and its desktop password
(an scrypt hash in the plan). The session token is random, shown once, and kept here
only as a SHA-256 hash; signing in logs the agent into the tenant's ACD (not ready),
signing out or a plan that drops the agent logs it out. Every ACD event (agent and
queue changes, offers, no-answers, breaks) is appended to ``acd-events.jsonl`` (with
its tenant) and handed to the live subscribers of that tenant: the desktops and
wallboards reading ``GET /api/v1/acd/events``. A subscriber that does not keep up
loses its oldest events (it is told how many), never the node's memory.

Every published event is also counted in the tenant's daily statistics records
(:class:`appliance.daily.DailyRecords`, ``acd-daily/`` beside the event log).

Wrap-up (R-5.2a after-call work): the desk remembers, per agent, the last
``WRAP_UP_KEPT`` contacts the agent handled (``ContactEnded``, ``ContactTransferred``)
for ``WRAP_UP_WINDOW`` seconds after they ended; the agent files one of them under one of
the tenant's ``acd.wrap_up_codes`` with a note (:meth:`AgentDesk.wrap_up`), published
and stored like an ACD event as a node-level ``WrapUp`` document. The note may hold
customer data: it goes to the event log and the live subscribers only, never to the
node's log. The memory is the process's: after a restart, earlier contacts are gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from appliance.acd.core import Acd
from appliance.acd.events import AcdEvent, ContactEnded, ContactTransferred
from appliance.daily import FLUSH_EVERY, DailyRecords
from appliance.passwords import verify
from appliance.pbx.b2bua import AgentConference, Assist, B2bua, Monitor, MonitorError
from appliance.plan import Plan, token_hash

log = logging.getLogger("branchline.agents")
QUEUE_DEPTH = 1000  # events kept per slow subscriber
DAILY_DIR = "acd-daily"  # next to acd-events.jsonl

STATES = ("ready", "not_ready", "break", "logged_out")
_T = TypeVar("_T")
WRAP_UP_WINDOW = 3600.0  # seconds after its end a contact can still be wrapped up
WRAP_UP_KEPT = 20  # ended contacts remembered per agent
MAX_NOTE = 500  # characters of a wrap-up note


@dataclasses.dataclass(frozen=True)
class AgentSession:
    tenant_id: str
    agent_id: str
    supervisor: bool = False  # as the plan says now (see ``session``)


class WrapUpError(Exception):
    """A wrap-up refused: HTTP status, stable id, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclasses.dataclass
class _Handled:
    """A contact an agent handled: its queue, when it ended (wall clock), its code."""

    queue: str
    ended: float
    code: str | None = None


def assist_doc(job: Assist) -> dict[str, Any]:
    return {"id": job.id, "agent": job.agent, "flow": job.flow, "state": job.state,
            "results": dict(job.results)}


def conference_doc(conf: AgentConference) -> dict[str, Any]:
    """An agent's three-way conference: its parties (role and number), while it lasts."""
    roles = (("customer", conf.customer), ("agent", conf.talker), ("third", conf.third))
    return {"id": conf.id, "agent": conf.agent,
            "parties": [{"role": role, "number": leg.number} for role, leg in roles]}


def monitor_doc(mon: Monitor) -> dict[str, str]:
    return {"id": mon.id, "agent": mon.agent, "supervisor": mon.supervisor,
            "mode": mon.mode, "state": mon.state}


def event_doc(ev: AcdEvent) -> dict[str, Any]:
    """An event as JSON: its type and fields."""
    return {"type": type(ev).__name__, **{
        f.name: (dict(v) if isinstance(v := getattr(ev, f.name), dict) else v)
        for f in dataclasses.fields(ev)}}


class Subscription:
    """One live reader of a tenant's events (``agent``: only that agent's own events
    and the queue events)."""

    def __init__(self, tenant_id: str, agent: str | None) -> None:
        self.tenant_id, self.agent = tenant_id, agent
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_DEPTH)
        self.dropped = 0

    def offer(self, doc: dict[str, Any]) -> None:
        if self.agent is not None and doc.get("agent") not in (None, self.agent):
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(doc)


class AgentDesk:
    """``timezone``: the zoneinfo name the daily records' dates are in; ``clock``: the
    wall clock (epoch seconds) stamped on events as ``wall``. Building the desk replays
    the day's events (blocking: run it before serving)."""

    def __init__(self, core: B2bua, plan: Callable[[], Plan], flush: Callable[[], None],
                 events_path: Path, *, timezone: str = "UTC", daily_dir: Path | None = None,
                 clock: Callable[[], float] = time.time,
                 flush_every: int = FLUSH_EVERY) -> None:
        self.core, self._plan, self._flush = core, plan, flush
        self.events_path = events_path
        self._clock = clock
        self._sessions: dict[str, AgentSession] = {}  # sha256 of the token -> session
        self._subscribers: set[Subscription] = set()
        self._fh: TextIO | None = None
        # (tenant, agent) -> contact -> what the agent may wrap up, oldest first
        self._handled: dict[tuple[str, str], OrderedDict[str, _Handled]] = {}
        self.records = DailyRecords(
            events_path, daily_dir if daily_dir is not None else events_path.parent / DAILY_DIR,
            target=self._target, timezone=timezone, clock=clock, flush_every=flush_every)

    # ----------------------------------------------------------------- sessions
    def check_password(self, domain: str, agent_id: str, password: str) -> str | None:
        """The tenant id when ``agent_id`` of the tenant at ``domain`` has that desktop
        password (blocking: scrypt, about 65 ms; run it off the event loop), else None.
        Unknown agents take the same time."""
        tenant = self._plan().tenant_by_domain(domain)
        agent = next((a for a in tenant.agents if a.id == agent_id), None) \
            if tenant is not None else None
        hashed = agent.password if agent is not None and agent.password else None
        if not verify(password, hashed or _DUMMY_HASH) or hashed is None \
                or tenant is None or tenant.suspended:
            return None
        return tenant.id

    def open_session(self, tenant_id: str, agent_id: str) -> str | None:
        """A session token for an agent whose password was checked; the agent is logged
        into the ACD (not ready) if it was not. None: the tenant has no queues."""
        if tenant_id not in self.core.acd:
            return None
        token = secrets.token_urlsafe(32)
        self._sessions[token_hash(token)] = AgentSession(tenant_id, agent_id)
        acd = self.core.acd[tenant_id]
        if acd.agent(agent_id, time.monotonic()).state == "logged_out":
            self.act(tenant_id, lambda a: a.login(agent_id, time.monotonic()))
        return token

    def profile(self, tenant_id: str, agent_id: str) -> dict[str, Any]:
        """What the agent's desktop shows and registers as: its extension (the phone or
        the desktop's softphone) and its name ({} for an agent the plan does not have)."""
        tenant = self._plan().tenant(tenant_id)
        agent = next((a for a in tenant.agents if a.id == agent_id), None) \
            if tenant is not None else None
        if tenant is None or agent is None:
            return {}
        return {"extension": agent.extension, "name": agent.name,
                "supervisor": agent.supervisor, "crm_url": tenant.crm_url,
                # flows the agent may run beside a call: the tenant's own
                "assist_flows": sorted(n for n in tenant.flows if not n.startswith("sys-"))}

    def session(self, hashed: str) -> AgentSession | None:
        """The session of a token, by its ``token_hash`` (the caller has it already),
        with the agent's supervisor flag as the current plan has it."""
        found = self._sessions.get(hashed)
        if found is None:
            return None
        tenant = self._plan().tenant(found.tenant_id)
        agent = next((a for a in tenant.agents if a.id == found.agent_id), None) \
            if tenant is not None else None
        if agent is None or found.tenant_id not in self.core.acd:
            self._sessions.pop(hashed, None)  # the plan dropped the agent
            return None
        return dataclasses.replace(found, supervisor=agent.supervisor)

    def sign_out(self, token: str) -> None:
        found = self._sessions.pop(token_hash(token), None)
        if found is not None and not any(s == found for s in self._sessions.values()):
            self.core.set_agent_phone(found.tenant_id, found.agent_id, None)
            self.set_state(found.tenant_id, found.agent_id, "logged_out", "")

    def set_phone(self, tenant_id: str, agent_id: str, number: str | None) -> None:
        """PC + phone mode: the agent's offers ring ``number`` (None: its extension);
        ``ValueError`` when the tenant cannot call it."""
        self.core.set_agent_phone(tenant_id, agent_id, number)

    # ----------------------------------------------------------------- actions
    def act(self, tenant_id: str, action: Callable[[Acd], Any]) -> Any:
        """Run ``action`` on the tenant's ACD at the current time; what it decided is
        carried out (offers rung, events published) before this returns."""
        return self._in_core(lambda now: self.core.agent_action(tenant_id, action, now))

    def _in_core(self, step: Callable[[float], _T]) -> _T:
        """Run ``step(now)`` on the call control; what it decided (SIP, media, events) is
        carried out before this returns, also when it raises."""
        try:
            return step(time.monotonic())
        finally:
            self._flush()

    def set_state(self, tenant_id: str, agent_id: str, state: str, reason: str, *,
                  forced: bool = False) -> bool:
        """An agent's own change (or, ``forced``, a supervisor's: not ready then has the
        reason ``supervisor``, a break is granted over the tenant's maximum): ready,
        not_ready (with a reason code), break (a request: False when refused), logged_out.
        ACD errors (unknown agent, a change its state does not allow) propagate."""
        now = time.monotonic
        if state == "ready":
            self.act(tenant_id, lambda a: a.set_ready(agent_id, now()))
        elif state == "not_ready":
            self.act(tenant_id, lambda a: a.set_not_ready(agent_id, reason, now(),
                                                          forced=forced))
        elif state == "break":
            return bool(self.act(tenant_id, lambda a: a.request_break(agent_id, now(),
                                                                      forced=forced)))
        elif state == "logged_out":
            self.act(tenant_id, lambda a: a.logout(agent_id, now()))
        else:
            raise ValueError(f"state among {', '.join(STATES)}")
        return True

    # ----------------------------------------------------------------- monitoring
    def monitor(self, tenant_id: str, agent_id: str, supervisor_id: str, mode: str
                ) -> dict[str, str]:
        """A supervisor joins an agent's call (``MonitorError`` when refused)."""
        return monitor_doc(self._in_core(
            lambda now: self.core.monitor(tenant_id, agent_id, supervisor_id, mode, now)))

    def monitors(self, tenant_id: str) -> list[dict[str, str]]:
        return [monitor_doc(m) for m in self.core.monitors.values()
                if m.tenant_id == tenant_id]

    def set_monitor_mode(self, tenant_id: str, monitor_id: str, mode: str) -> dict[str, str]:
        self._own_monitor(tenant_id, monitor_id)
        return monitor_doc(self._in_core(
            lambda now: self.core.set_monitor_mode(monitor_id, mode, now)))

    def stop_monitor(self, tenant_id: str, monitor_id: str) -> None:
        self._own_monitor(tenant_id, monitor_id)
        self._in_core(lambda now: self.core.stop_monitor(monitor_id, now))

    # ----------------------------------------------------------------- assisted IVR
    def assist(self, tenant_id: str, agent_id: str, flow: str) -> dict[str, Any]:
        """Run ``flow`` for the customer of the agent's call, the agent listening in."""
        return assist_doc(self._in_core(
            lambda now: self.core.assist(tenant_id, agent_id, flow, now)))

    def assisted(self, tenant_id: str, assist_id: str, agent: str | None) -> dict[str, Any]:
        """An assisted flow of the tenant (``agent``: only that agent's)."""
        return assist_doc(self._own_assist(tenant_id, assist_id, agent))

    def stop_assist(self, tenant_id: str, assist_id: str, agent: str | None
                    ) -> dict[str, Any]:
        self._own_assist(tenant_id, assist_id, agent)
        return assist_doc(self._in_core(lambda now: self.core.stop_assist(assist_id, now)))

    # ----------------------------------------------------------------- conferences
    def conference(self, tenant_id: str, agent_id: str) -> dict[str, Any]:
        """The agent's call and its consultation become one three-way conference."""
        return conference_doc(self._in_core(
            lambda now: self.core.conference(tenant_id, agent_id, now)))

    def conferenced(self, tenant_id: str, conference_id: str, agent: str | None
                    ) -> dict[str, Any]:
        """A conference of the tenant while it lasts (``agent``: only that agent's)."""
        found = self.core.conferences.get(conference_id)
        if found is None or found.tenant_id != tenant_id or agent not in (None, found.agent):
            raise MonitorError(404, "not_found", f"no conference {conference_id}")
        return conference_doc(found)

    def _own_assist(self, tenant_id: str, assist_id: str, agent: str | None) -> Assist:
        found = self.core.assists.get(assist_id)
        if found is None or found.tenant_id != tenant_id or agent not in (None, found.agent):
            raise MonitorError(404, "not_found", f"no assisted flow {assist_id}")
        return found

    def _own_monitor(self, tenant_id: str, monitor_id: str) -> None:
        found = self.core.monitors.get(monitor_id)
        if found is None or found.tenant_id != tenant_id:  # another tenant's: none
            raise MonitorError(404, "not_found", f"no monitoring {monitor_id}")

    def snapshot(self, tenant_id: str) -> dict[str, Any] | None:
        acd = self.core.acd.get(tenant_id)
        if acd is None:
            return None
        tenant = self._plan().tenant(tenant_id)
        return {**dataclasses.asdict(acd.snapshot(time.monotonic())),
                "not_ready_reasons": list(acd.config.not_ready_reasons),
                "wrap_up_codes": list(tenant.wrap_up_codes) if tenant is not None else []}

    # ----------------------------------------------------------------- wrap-up
    def wrap_up(self, tenant_id: str, agent_id: str, contact: str, code: str,
                note: str) -> dict[str, Any]:
        """File a contact the agent handled (ended within ``WRAP_UP_WINDOW``) under one
        of the tenant's wrap-up codes, with a note; a later one for the same contact
        replaces it (``replaces``: the code it had). The ``WrapUp`` document published
        is returned. ``WrapUpError``: 400 a code the tenant does not have or a note too
        long, 404 an unknown agent or contact."""
        tenant = self._plan().tenant(tenant_id)
        if tenant is None or tenant_id not in self.core.acd:
            raise WrapUpError(404, "not_found", f"{tenant_id} has no queues")
        if not any(a.id == agent_id for a in tenant.agents):
            raise WrapUpError(404, "not_found", f"no agent {agent_id}")
        if code not in tenant.wrap_up_codes:
            raise WrapUpError(400, "bad_request", "code: one of the tenant's wrap-up codes ("
                              + (", ".join(tenant.wrap_up_codes) or "it has none") + ")")
        if len(note) > MAX_NOTE:
            raise WrapUpError(400, "bad_request", f"note: at most {MAX_NOTE} characters")
        now = self._clock()
        handled = self._handled.get((tenant_id, agent_id))
        found = handled.get(contact) if handled is not None else None
        if found is None or now - found.ended > WRAP_UP_WINDOW:
            raise WrapUpError(404, "not_found",
                              f"{agent_id} handled no contact {contact[:80]!r} in the last hour")
        doc: dict[str, Any] = {
            "type": "WrapUp", "wall": round(now, 3), "tenant_id": tenant_id,
            "agent": agent_id, "contact": contact, "queue": found.queue, "code": code,
            "note": note, "replaces": found.code}
        found.code = code
        log.info("wrap-up of %s by %s of %s: %s%s", contact, agent_id, tenant_id, code,
                 "" if doc["replaces"] is None else f" (was {doc['replaces']})")
        self._publish_doc(tenant_id, doc)
        return doc

    def _handled_contact(self, tenant_id: str, agent_id: str, contact: str, queue: str,
                         wall: float) -> None:
        """Remember a contact the agent just handled (the newest ``WRAP_UP_KEPT``)."""
        handled = self._handled.setdefault((tenant_id, agent_id), OrderedDict())
        handled.pop(contact, None)
        handled[contact] = _Handled(queue, wall)
        while len(handled) > WRAP_UP_KEPT or \
                wall - next(iter(handled.values())).ended > WRAP_UP_WINDOW:
            handled.popitem(last=False)

    # ----------------------------------------------------------------- events
    def publish(self, ev: AcdEvent) -> None:
        doc = {"wall": round(self._clock(), 3), **event_doc(ev)}
        if isinstance(ev, ContactEnded):
            self._handled_contact(ev.tenant_id, ev.agent, ev.contact, ev.queue, doc["wall"])
        elif isinstance(ev, ContactTransferred):
            self._handled_contact(ev.tenant_id, ev.agent, ev.contact, ev.from_queue,
                                  doc["wall"])
        self._publish_doc(ev.tenant_id, doc)

    def _publish_doc(self, tenant_id: str, doc: dict[str, Any]) -> None:
        """Store an event document (an ACD event's, or a node-level one such as
        ``WrapUp``), count it in the daily records and hand it to the subscribers."""
        try:
            if self._fh is None:
                self._fh = open(self.events_path, "a", encoding="utf-8")
            self._fh.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
            self._fh.flush()
        except OSError as exc:
            log.error("cannot store ACD event: %s", exc)
        try:
            self.records.count(tenant_id, doc)
        except Exception:  # the statistics never stop the live events
            log.exception("ACD event not counted in the daily statistics")
        for sub in list(self._subscribers):
            if sub.tenant_id == tenant_id:
                sub.offer(doc)

    def subscribe(self, tenant_id: str, agent: str | None) -> Subscription:
        sub = Subscription(tenant_id, agent)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """Stop: the days held are written (open states counted up to now)."""
        self.records.write(everything=True)
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    # ----------------------------------------------------------------- daily records
    async def daily(self, tenant_id: str, day: dt.date | str | None = None,
                    agent: str | None = None) -> dict[str, Any] | None:
        """The tenant's daily records (``DailyRecords.day``); None: it has no queues."""
        if tenant_id not in self.core.acd:
            return None
        return await self.records.day(tenant_id, day, agent)

    def _target(self, tenant_id: str, queue: str) -> float | None:
        """A queue's service level target, from the tenant's ACD configuration now."""
        acd = self.core.acd.get(tenant_id)
        if acd is None:
            return None
        cfg = next((q for q in acd.config.queues if q.name == queue), None)
        return None if cfg is None else cfg.service_level_target


# verified against when the agent is unknown, so both answers take the same time
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="
