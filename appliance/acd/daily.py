"""The daily statistics record per agent and per queue, kept for reports.

:class:`DailyStats` folds the ACD's events, as the JSON documents the node publishes
(``appliance.agents.event_doc`` plus ``wall``, the epoch seconds it was published at),
into one record per (tenant, local date, agent) and one per (tenant, local date, queue).
It is pure: no I/O, no clock; the time is each event's ``wall`` (or the ``now``/``wall``
passed in), and the local date is by the timezone given (a zoneinfo name, UTC by
default). The same documents in the same order give the same records.

Counts go to the day of the event that makes them (a contact that waited from 23:59 and
was answered at 00:01 is answered on the new day). Times in a state are measured from
one ``AgentStateChanged`` of the agent to its next, and a state that spans local
midnight is split across the days (also with no event at midnight: the first event or
:meth:`DailyStats.advance` of a later day closes the spans still open). A day is
*closed* (final) once time reached the next day; nothing is added to it afterwards:
a ``wall`` older than one already seen counts as that one (as the core does with
``now``), so a clock stepped back never reopens a day.

Agents (``AgentDay``): ``logins``; ``offers`` (``OfferMade``), ``answered``,
``no_answers`` (``NoAnswer`` by ring timeout or failure), ``declined``, ``transferred``
(to a queue), ``outbound_calls``, ``not_ready_periods`` (entered not ready from another
state: a new reason alone is the same period), ``breaks`` taken and ``breaks_refused``;
seconds ``logged_in`` (every state but ``logged_out``) = ``ready`` + ``not_ready`` +
``break`` + ``ringing`` (reserved) + ``talk`` (talking and hold on contacts) +
``wrap_up`` (after-call work) + ``outbound`` (talking and hold on outbound calls);
``hold`` (part of ``talk`` or ``outbound``); ``not_ready_by_reason`` splits
``not_ready`` by reason code; ``wrap_up_codes``: the contacts the agent filed under each
wrap-up code (the node's ``WrapUp`` documents; one with ``replaces`` moves its contact
from the old code to the new one, on that day).

Queues (``QueueDay``): ``entered`` (``ContactQueued`` as a new arrival: cause
``enqueued`` or ``transfer``; ``transferred_in`` of those by a transfer), ``offers``,
``no_answers``, ``answered`` (callbacks included), ``answered_in_target`` (live callers
answered with ``waited`` at most the queue's service level target, looked up when the
answer is counted: ``service_level_target``), ``abandoned`` (callers who hung up),
``exited`` by reason (``max_wait``, ``max_length``: the queue was full),
``overflowed`` (moved to another queue by an overflow rule), ``overflowed_in``,
``widened`` (an overflow rule added a requirement), ``transferred_out``, callbacks
``requested``/``placed``/``failed``/``dropped`` (final failure)/``cancelled``/
``connected``; ``wait_seconds`` the total wait of the answered contacts (so
``average_wait_seconds`` = ``wait_seconds / answered``) and ``longest_wait_seconds``
among the contacts answered, abandoned or exited; ``wrap_up_codes`` as the agents'.

Missed events. The core never logs an agent out without an event, so an agent that
comes back from ``logged_out`` while it is held logged in means the tenant's ACD
started afresh (a node restart, a new ACD configuration): every agent of that tenant
held logged in is then logged out as of the tenant's last event before. Otherwise the
accumulator's own idea of an agent's state wins over an event's ``previous``; an agent
first seen leaving another state than ``logged_out`` was in it since ``origin`` (when
given, e.g. the start of the events replayed after a restart; its reason unknown:
``""``), but only days not yet closed are credited.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.acd.states import AgentState

# QueueConfig.service_level_target's default, for a queue the lookup does not know
DEFAULT_SERVICE_LEVEL_TARGET: Final = 20.0
# (tenant, queue) -> the queue's service level target in seconds (None: unknown)
TargetLookup = Callable[[str, str], float | None]
DayKey = tuple[str, dt.date]  # (tenant, local date)

_OUT: Final = AgentState.LOGGED_OUT.value
_ONE_DAY: Final = dt.timedelta(days=1)
_NEW_ARRIVALS: Final = frozenset({"enqueued", "transfer"})
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_date(text: str) -> dt.date:
    """A local date written ``YYYY-MM-DD`` (ValueError otherwise, also for 2024-02-30)."""
    if not _DATE_RE.fullmatch(text):
        raise ValueError(f"a date is YYYY-MM-DD, not {text[:40]!r}")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"no such date {text!r}") from None


def _seconds(x: float) -> float:
    return round(x, 3)


def _record_dict(record: AgentDay | QueueDay) -> dict[str, Any]:
    """A record's fields: seconds rounded to the millisecond, mappings sorted by key."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, float):
            value = _seconds(value)
        elif isinstance(value, dict):
            value = {k: _seconds(v) if isinstance(v, float) else v
                     for k, v in sorted(value.items())}
        out[f.name] = value
    return out


@dataclass(slots=True)
class AgentDay:
    """One agent's day (see the module docstring); seconds are floats."""

    agent: str
    logins: int = 0
    offers: int = 0
    answered: int = 0
    no_answers: int = 0
    declined: int = 0
    transferred: int = 0
    outbound_calls: int = 0
    not_ready_periods: int = 0
    breaks: int = 0
    breaks_refused: int = 0
    logged_in_seconds: float = 0.0
    ready_seconds: float = 0.0
    not_ready_seconds: float = 0.0
    not_ready_by_reason: dict[str, float] = field(default_factory=dict)
    break_seconds: float = 0.0
    ringing_seconds: float = 0.0
    talk_seconds: float = 0.0
    hold_seconds: float = 0.0
    wrap_up_seconds: float = 0.0
    outbound_seconds: float = 0.0
    wrap_up_codes: dict[str, int] = field(default_factory=dict)

    def copy(self) -> AgentDay:
        return replace(self, not_ready_by_reason=dict(self.not_ready_by_reason),
                       wrap_up_codes=dict(self.wrap_up_codes))

    def to_dict(self) -> dict[str, Any]:
        """Seconds rounded to the millisecond, reasons sorted."""
        return _record_dict(self)


@dataclass(slots=True)
class QueueDay:
    """One queue's day (see the module docstring)."""

    queue: str
    entered: int = 0
    transferred_in: int = 0
    offers: int = 0
    no_answers: int = 0
    answered: int = 0
    answered_in_target: int = 0
    service_level_target: float | None = None
    abandoned: int = 0
    exited: dict[str, int] = field(default_factory=dict)
    overflowed: int = 0
    overflowed_in: int = 0
    widened: int = 0
    transferred_out: int = 0
    callbacks_requested: int = 0
    callbacks_placed: int = 0
    callbacks_failed: int = 0
    callbacks_dropped: int = 0
    callbacks_cancelled: int = 0
    callbacks_connected: int = 0
    wait_seconds: float = 0.0
    longest_wait_seconds: float = 0.0
    wrap_up_codes: dict[str, int] = field(default_factory=dict)

    def copy(self) -> QueueDay:
        return replace(self, exited=dict(self.exited), wrap_up_codes=dict(self.wrap_up_codes))

    @property
    def average_wait_seconds(self) -> float | None:
        return self.wait_seconds / self.answered if self.answered else None

    def to_dict(self) -> dict[str, Any]:
        """Seconds rounded to the millisecond, exit reasons sorted, plus the average."""
        out = _record_dict(self)
        average = self.average_wait_seconds
        out["average_wait_seconds"] = None if average is None else _seconds(average)
        return out


@dataclass(frozen=True, slots=True)
class DayRecords:
    """A tenant's records of one local date, agents and queues sorted by name.
    ``final``: the day is closed; ``until``: the time the records cover up to."""

    tenant_id: str
    date: dt.date
    timezone: str
    final: bool
    until: float | None
    agents: tuple[AgentDay, ...]
    queues: tuple[QueueDay, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "date": self.date.isoformat(),
                "timezone": self.timezone, "final": self.final,
                "until": None if self.until is None else _seconds(self.until),
                "agents": [a.to_dict() for a in self.agents],
                "queues": [q.to_dict() for q in self.queues]}


@dataclass(slots=True)
class _Held:
    """What the accumulator knows of an agent now: its state since ``since``."""

    state: str
    reason: str
    outbound: bool
    since: float


@dataclass(slots=True)
class _Day:
    agents: dict[str, AgentDay] = field(default_factory=dict)
    queues: dict[str, QueueDay] = field(default_factory=dict)
    final: bool = False

    def agent(self, agent: str) -> AgentDay:
        rec = self.agents.get(agent)
        if rec is None:
            rec = self.agents[agent] = AgentDay(agent)
        return rec

    def queue(self, queue: str) -> QueueDay:
        rec = self.queues.get(queue)
        if rec is None:
            rec = self.queues[queue] = QueueDay(queue)
        return rec


def _credit(rec: AgentDay, held: _Held, seconds: float) -> None:
    """``seconds`` spent in ``held``'s state go to the agent's day."""
    rec.logged_in_seconds += seconds
    s = held.state
    if s == AgentState.READY:
        rec.ready_seconds += seconds
    elif s == AgentState.NOT_READY:
        rec.not_ready_seconds += seconds
        rec.not_ready_by_reason[held.reason] = \
            rec.not_ready_by_reason.get(held.reason, 0.0) + seconds
    elif s == AgentState.BREAK:
        rec.break_seconds += seconds
    elif s == AgentState.RESERVED:
        rec.ringing_seconds += seconds
    elif s == AgentState.WRAP_UP:
        rec.wrap_up_seconds += seconds
    elif s in (AgentState.TALKING, AgentState.HOLD):
        if held.outbound:
            rec.outbound_seconds += seconds
        else:
            rec.talk_seconds += seconds
        if s == AgentState.HOLD:
            rec.hold_seconds += seconds


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    return "" if value is None else str(value)


def _number(doc: Mapping[str, Any], key: str) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        return 0.0
    return max(0.0, float(value))


class DailyStats:
    """The accumulator. Feed it every event document in publishing order with
    :meth:`add`; it returns the days that closed (so the caller can store them), read a
    day with :meth:`records`, and :meth:`forget` the days stored."""

    def __init__(self, timezone: str = "UTC", *,
                 service_level_target: TargetLookup | None = None,
                 origin: float | None = None) -> None:
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {timezone!r}") from None
        self._tz_name = timezone
        self._target = service_level_target
        self._origin = origin
        self._days: dict[DayKey, _Day] = {}
        self._held: dict[str, dict[str, _Held]] = {}  # tenant -> agent -> held
        self._tenant_last: dict[str, float] = {}  # tenant -> wall of its last event
        self._last: float | None = None  # the latest wall seen
        self._today: dt.date | None = None  # the local date of _last
        self._next_start = 0.0  # when the day after _today starts

    # ----------------------------------------------------------------- the calendar
    @property
    def timezone(self) -> str:
        return self._tz_name

    @property
    def last_wall(self) -> float | None:
        """The latest time seen (an event's ``wall``, ``advance`` or ``restart``)."""
        return self._last

    @property
    def today(self) -> dt.date | None:
        """The local date of :attr:`last_wall` (None before any)."""
        return self._today

    def day_of(self, wall: float) -> dt.date:
        """The local date at epoch seconds ``wall``."""
        return dt.datetime.fromtimestamp(wall, self._tz).date()

    def day_start(self, day: dt.date) -> float:
        """The epoch seconds at which local ``day`` starts (its first instant, also
        where a DST change skips or repeats midnight)."""
        return dt.datetime.combine(day, dt.time(0), self._tz).timestamp()

    # ----------------------------------------------------------------- input
    def add(self, doc: Mapping[str, Any]) -> list[DayKey]:
        """Fold one event document in; the (tenant, date) days this closed, oldest first.
        A document without a ``type``, a ``tenant_id`` or a finite ``wall`` is ignored."""
        wall, tenant, kind = doc.get("wall"), doc.get("tenant_id"), doc.get("type")
        if isinstance(wall, bool) or not isinstance(wall, int | float) \
                or not math.isfinite(wall) or not isinstance(tenant, str) or not tenant \
                or not isinstance(kind, str):
            return []
        closed = self.advance(float(wall))
        now = self._last
        assert now is not None and self._today is not None
        day = self._day(tenant, self._today)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, doc, tenant, now, day)
        self._tenant_last[tenant] = now
        return closed

    def advance(self, wall: float) -> list[DayKey]:
        """Time reached ``wall`` (no event needed): when it is on a later local date, the
        agents' open states are split at midnight and the earlier days close. Returns
        the (tenant, date) days closed, oldest first."""
        if not math.isfinite(wall):
            raise ValueError("a time is finite epoch seconds")
        if self._last is not None and wall < self._last:
            wall = self._last
        self._last = wall
        if self._today is not None and wall < self._next_start:
            return []
        today = self.day_of(wall)
        if self._today is not None:
            start = self.day_start(today)
            for tenant, agents in self._held.items():
                for agent, held in agents.items():
                    if held.state != _OUT and held.since < start:
                        self._span(tenant, agent, held, start)
        self._today = today
        self._next_start = self.day_start(today + _ONE_DAY)
        closed = sorted(k for k, d in self._days.items() if k[1] < today and not d.final)
        for key in closed:
            self._days[key].final = True
        return closed

    def restart(self, wall: float) -> list[DayKey]:
        """The ACD started afresh at ``wall`` (the node restarted: every agent logged
        out, without events): every agent held logged in is logged out then. Returns
        the days closed, as :meth:`advance`."""
        closed = self.advance(wall)
        for tenant in self._held:
            self._fresh_core(tenant, self._last or wall)
        return closed

    def forget(self, tenant: str, day: dt.date) -> None:
        """Drop a day's records (stored elsewhere); only a closed day stays forgotten."""
        self._days.pop((tenant, day), None)

    # ----------------------------------------------------------------- output
    def days(self) -> list[DayKey]:
        """The (tenant, date) days held, in order."""
        return sorted(self._days)

    def is_final(self, tenant: str, day: dt.date) -> bool:
        found = self._days.get((tenant, day))
        return found is not None and found.final

    def records(self, tenant: str, day: dt.date, now: float | None = None) -> DayRecords | None:
        """A copy of the tenant's records of ``day``; with ``now``, the agents' states
        still open are counted up to ``now`` (not kept: a view). None when nothing of
        that day is held (never seen, or forgotten)."""
        found = self._days.get((tenant, day))
        start, end = self.day_start(day), self.day_start(day + _ONE_DAY)
        agents = {} if found is None else {k: v.copy() for k, v in found.agents.items()}
        queues = {} if found is None else {k: v.copy() for k, v in found.queues.items()}
        if now is not None and self._last is not None:
            now = max(now, self._last)
        if now is not None and (found is None or not found.final):
            for agent, held in self._held.get(tenant, {}).items():
                lo, hi = max(held.since, start), min(now, end)
                if held.state != _OUT and hi > lo:
                    rec = agents.get(agent)
                    if rec is None:
                        rec = agents[agent] = AgentDay(agent)
                    _credit(rec, held, hi - lo)
        if found is None and not agents:
            return None
        final = found is not None and found.final
        covered = now if now is not None else self._last
        until: float | None = end
        if not final:
            until = None if covered is None else min(covered, end)
        return DayRecords(tenant_id=tenant, date=day, timezone=self._tz_name, final=final,
                          until=until, agents=tuple(agents[k] for k in sorted(agents)),
                          queues=tuple(queues[k] for k in sorted(queues)))

    def held_agents(self, tenant: str) -> Iterator[tuple[str, str, float]]:
        """(agent, state, since) of the tenant's agents held logged in (for tests and
        diagnostics)."""
        for agent, held in sorted(self._held.get(tenant, {}).items()):
            if held.state != _OUT:
                yield agent, held.state, held.since

    # ----------------------------------------------------------------- internals
    def _day(self, tenant: str, day: dt.date) -> _Day:
        found = self._days.get((tenant, day))
        if found is None:
            found = self._days[(tenant, day)] = _Day()
        return found

    def _span(self, tenant: str, agent: str, held: _Held, end: float) -> None:
        """Credit ``held``'s state from its ``since`` to ``end``, split by local date
        (days already closed are skipped); ``since`` moves to ``end``."""
        start = held.since
        while start < end:
            day = self.day_of(start)
            stop = min(end, self.day_start(day + _ONE_DAY))
            if stop <= start:  # cannot happen with a sane zone; never loop forever
                break
            if self._today is None or day >= self._today:
                _credit(self._day(tenant, day).agent(agent), held, stop - start)
            start = stop
        held.since = max(held.since, end)

    def _fresh_core(self, tenant: str, at: float) -> None:
        """The tenant's ACD started again: its agents held logged in leave at ``at``."""
        for agent, held in self._held.get(tenant, {}).items():
            if held.state != _OUT:
                self._span(tenant, agent, held, at)
                held.state, held.reason, held.outbound = _OUT, "", False
                held.since = max(held.since, at)

    def _target_of(self, tenant: str, queue: str) -> float:
        found = None if self._target is None else self._target(tenant, queue)
        return DEFAULT_SERVICE_LEVEL_TARGET if found is None else float(found)

    # one method per event type (see _HANDLERS)
    def _state_changed(self, doc: Mapping[str, Any], tenant: str, now: float,
                       day: _Day) -> None:
        agent, state = _text(doc, "agent"), _text(doc, "state")
        previous, cause = _text(doc, "previous"), _text(doc, "cause")
        agents = self._held.setdefault(tenant, {})
        held = agents.get(agent)
        if held is None:
            if previous != _OUT and self._origin is not None:
                held = _Held(previous, "", False, min(self._origin, now))
        elif held.state != _OUT and previous == _OUT:
            self._fresh_core(tenant, self._tenant_last.get(tenant, now))
        if held is not None and held.state != _OUT:
            self._span(tenant, agent, held, now)
        rec = day.agent(agent)
        if previous == _OUT and state != _OUT:
            rec.logins += 1
        if state == AgentState.NOT_READY and previous != AgentState.NOT_READY:
            rec.not_ready_periods += 1
        if state == AgentState.BREAK and previous != AgentState.BREAK:
            rec.breaks += 1
        busy = (AgentState.TALKING, AgentState.HOLD)
        if state == AgentState.TALKING and cause == "outbound":
            rec.outbound_calls += 1
            outbound = True
        else:
            outbound = state in busy and previous in busy and held is not None \
                and held.outbound
        reason = _text(doc, "reason") if state == AgentState.NOT_READY else ""
        agents[agent] = _Held(state, reason, outbound, now)

    def _offer_made(self, doc: Mapping[str, Any], tenant: str, now: float, day: _Day) -> None:
        day.agent(_text(doc, "agent")).offers += 1
        day.queue(_text(doc, "queue")).offers += 1

    def _no_answer(self, doc: Mapping[str, Any], tenant: str, now: float, day: _Day) -> None:
        rec = day.agent(_text(doc, "agent"))
        if _text(doc, "cause") == "declined":
            rec.declined += 1
        else:
            rec.no_answers += 1
        day.queue(_text(doc, "queue")).no_answers += 1

    def _answered(self, doc: Mapping[str, Any], tenant: str, now: float, day: _Day) -> None:
        name, waited = _text(doc, "queue"), _number(doc, "waited")
        day.agent(_text(doc, "agent")).answered += 1
        q = day.queue(name)
        q.answered += 1
        q.wait_seconds += waited
        q.longest_wait_seconds = max(q.longest_wait_seconds, waited)
        if doc.get("callback"):
            q.callbacks_connected += 1
        else:
            target = q.service_level_target = self._target_of(tenant, name)
            if waited <= target:
                q.answered_in_target += 1

    def _abandoned(self, doc: Mapping[str, Any], tenant: str, now: float, day: _Day) -> None:
        q = day.queue(_text(doc, "queue"))
        if _text(doc, "cause") == "callback_cancelled":
            q.callbacks_cancelled += 1
            return
        q.abandoned += 1
        q.longest_wait_seconds = max(q.longest_wait_seconds, _number(doc, "waited"))

    def _exited(self, doc: Mapping[str, Any], tenant: str, now: float, day: _Day) -> None:
        q = day.queue(_text(doc, "queue"))
        reason = _text(doc, "cause")
        q.exited[reason] = q.exited.get(reason, 0) + 1
        q.longest_wait_seconds = max(q.longest_wait_seconds, _number(doc, "waited"))

    def _queued(self, doc: Mapping[str, Any], tenant: str, now: float, day: _Day) -> None:
        cause = _text(doc, "cause")
        if cause in _NEW_ARRIVALS:
            q = day.queue(_text(doc, "queue"))
            q.entered += 1
            if cause == "transfer":
                q.transferred_in += 1

    def _overflowed(self, doc: Mapping[str, Any], tenant: str, now: float, day: _Day) -> None:
        q = day.queue(_text(doc, "queue"))
        to_queue = doc.get("to_queue")
        if isinstance(to_queue, str) and to_queue:
            q.overflowed += 1
            day.queue(to_queue).overflowed_in += 1
        else:
            q.widened += 1

    def _transferred(self, doc: Mapping[str, Any], tenant: str, now: float,
                     day: _Day) -> None:
        day.agent(_text(doc, "agent")).transferred += 1
        day.queue(_text(doc, "from_queue")).transferred_out += 1

    def _callback(self, doc: Mapping[str, Any], tenant: str, now: float, day: _Day) -> None:
        q = day.queue(_text(doc, "queue"))
        kind = doc.get("type")
        if kind == "CallbackRequested":
            q.callbacks_requested += 1
        elif kind == "CallbackPlaced":
            q.callbacks_placed += 1
        else:
            q.callbacks_failed += 1
            if doc.get("final"):
                q.callbacks_dropped += 1

    def _break_refused(self, doc: Mapping[str, Any], tenant: str, now: float,
                       day: _Day) -> None:
        day.agent(_text(doc, "agent")).breaks_refused += 1

    def _wrap_up(self, doc: Mapping[str, Any], tenant: str, now: float, day: _Day) -> None:
        code, agent, queue = _text(doc, "code"), _text(doc, "agent"), _text(doc, "queue")
        if not code or not agent:
            return
        old = _text(doc, "replaces")
        for counts in [day.agent(agent).wrap_up_codes] + \
                ([day.queue(queue).wrap_up_codes] if queue else []):
            if old and counts.get(old, 0) > 0:  # filed under the old code that day
                counts[old] -= 1
                if not counts[old]:
                    del counts[old]
            counts[code] = counts.get(code, 0) + 1


_Handler = Callable[[DailyStats, Mapping[str, Any], str, float, _Day], None]
_HANDLERS: Final[Mapping[str, _Handler]] = {
    "AgentStateChanged": DailyStats._state_changed,
    "OfferMade": DailyStats._offer_made,
    "NoAnswer": DailyStats._no_answer,
    "ContactAnswered": DailyStats._answered,
    "ContactAbandoned": DailyStats._abandoned,
    "ContactExited": DailyStats._exited,
    "ContactQueued": DailyStats._queued,
    "ContactOverflowed": DailyStats._overflowed,
    "ContactTransferred": DailyStats._transferred,
    "CallbackRequested": DailyStats._callback,
    "CallbackPlaced": DailyStats._callback,
    "CallbackFailed": DailyStats._callback,
    "BreakRefused": DailyStats._break_refused,
    "WrapUp": DailyStats._wrap_up,  # the node's, not the core's (appliance/agents.py)
}
