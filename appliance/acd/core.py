"""The ACD core: one tenant's queues, agents and routing, sans-I/O.

Theory of operation
-------------------
One :class:`Acd` per tenant, built from its :class:`~appliance.acd.model.TenantAcdConfig`.
Nothing is shared between instances, so tenants cannot see or disturb each other.
Inputs are method calls, each with ``now`` (monotonic seconds; an older ``now`` than
one already seen counts as that one): agent actions (``login``, ``set_ready``,
``request_break``...), contact events from the edge (``enqueue``, ``answered``,
``no_answer``, ``ended``, ``abandon``...) and the clock (``tick``). Outputs are drained
by the edge: ``commands()`` (what it must do: ring an agent, cancel a ring, announce,
send a caller out of the queue, call a customer back), ``events()`` (what happened, to
publish) and ``next_deadline()`` (when to call ``tick``). An input that is not valid
in the current state raises an :class:`~appliance.acd.errors.AcdError` and changes
nothing.

Routing is indexed. A contact needs one of its *requirements* (its own skills; an
overflow rule may add more ways to match). For each queue and each requirement met so
far there is a *pool*: the queue's agents whose skills meet it (fixed by the
configuration), with two indexed heaps, the pool's ready agents ordered by the queue's
strategy key and the pool's waiting contacts ordered by (queue priority, contact
priority, first enqueue time). An agent is in the ready heap of every pool it belongs
to while it is ready; a waiting contact is in the heap of the pool of each of its
requirements. So:

- a contact that starts waiting takes the top of the first of its pools that has a
  ready agent (ring-all: every ready agent of its pools);
- an agent that becomes ready takes the best of the tops of its pools' waiting heaps.

Both are a few heap peeks, whatever the number of agents and waiting contacts. After
every input the core is *settled*: no waiting contact has a ready agent in any of its
pools (``audit`` checks it). Pools are made when a requirement first appears in a
queue (one pass over that queue's agents) and kept, up to ``POOL_LIMIT`` per queue,
after which those without waiting contacts are dropped, least recently used first.

Strategy keys (smallest first; ties by the agent's order in the configuration):
``longest_idle`` (ready since), ``least_occupied`` (contacts answered today, talk time
today, ready since), ``round_robin`` (the last time this queue gave the agent a
contact), ``best_skill`` (minus the sum of the agent's levels in the pool's
requirement, ready since), ``ring_all`` (ready since; all are offered at once).

A contact's place is its key (priority, first enqueue time, a sequence number), which
never changes: an offer not answered, declined, or withdrawn puts it back exactly where
it was; an overflow to another queue keeps its enqueue time; a callback entry keeps it.
A transfer to a queue is a new arrival there.

``reconfigure`` applies a new configuration of the tenant in place: agents, contacts,
counters and timers stay; only the indexes of what changed are updated (docs/ACD.md,
"Reconfiguring"). An agent it removes while in a call stays, in no queue, until the
call ends; a queue it removes is kept aside for its contacts still ringing or
connected, which finish there, and none of them comes back to a line.

Agent and contact states and what moves them are the tables of
:mod:`appliance.acd.states`; docs/ACD.md has the full story.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from appliance.acd.commands import (
    Announce,
    CancelCallback,
    CancelOffer,
    Command,
    ExitQueue,
    Offer,
    PlaceCallback,
)
from appliance.acd.errors import (
    AcdConfigError,
    CallbackNotAllowed,
    ContactStateError,
    DuplicateContact,
    InvalidArgument,
    InvalidTransition,
    UnknownAgent,
    UnknownContact,
    UnknownQueue,
)
from appliance.acd.events import (
    AcdEvent,
    AcdReconfigured,
    AgentStateChanged,
    BreakApproved,
    BreakCancelled,
    BreakRefused,
    CallbackFailed,
    CallbackPlaced,
    CallbackRequested,
    ContactAbandoned,
    ContactAnswered,
    ContactEnded,
    ContactExited,
    ContactOverflowed,
    ContactQueued,
    ContactTransferred,
    DayReset,
    NoAnswer,
    OfferCancelled,
    OfferMade,
)
from appliance.acd.heap import IndexedHeap, Key
from appliance.acd.line import Line
from appliance.acd.model import (
    MAX_LEVEL,
    MIN_LEVEL,
    AgentConfig,
    OverflowRule,
    QueueConfig,
    Requirement,
    TenantAcdConfig,
    check_skills,
    matches,
    minutes,
    requirement,
)
from appliance.acd.states import (
    AGENT_TRANSITIONS,
    BUSY,
    CONTACT_TRANSITIONS,
    IN_QUEUE,
    STAFFED,
    AgentState,
    ContactState,
)
from appliance.acd.stats import (
    AcdSnapshot,
    AgentCounters,
    AgentSnapshot,
    ContactView,
    QueueCounters,
    QueueSnapshot,
    TeamSnapshot,
    service_level,
)

A = AgentState
C = ContactState
POOL_LIMIT = 64  # pools kept per queue before unused ones are dropped
AHT_WINDOW = 50  # handled contacts in a queue's recent average handle time
DAY = 86400.0
_AGENT_TIMERS = frozenset({"wrap"})
# The tenant settings an AcdReconfigured event names when they change.
_SETTINGS = ("max_on_break", "break_groups", "not_ready_reasons", "night_hours")


# --------------------------------------------------------------------------- internals


@dataclass(eq=False, slots=True)
class _Pool:
    pid: int
    queue: _Queue
    req: Requirement
    members: set[str] = field(default_factory=set)
    ready: IndexedHeap = field(default_factory=IndexedHeap)
    waiting: IndexedHeap = field(default_factory=IndexedHeap)


@dataclass(eq=False, slots=True)
class _Queue:
    cfg: QueueConfig
    name: str
    agents: list[_Agent] = field(default_factory=list)
    pools: dict[Requirement, _Pool] = field(default_factory=dict)
    line: Line = field(default_factory=Line)
    ages: IndexedHeap = field(default_factory=IndexedHeap)
    counts: dict[ContactState, int] = field(default_factory=lambda: dict.fromkeys(C, 0))
    staffed: int = 0
    ready: int = 0
    counters: QueueCounters = field(default_factory=QueueCounters)
    aht: deque[float] = field(default_factory=lambda: deque(maxlen=AHT_WINDOW))
    aht_sum: float = 0.0
    removed: bool = False  # dropped by a new configuration; its contacts still offered
    # or connected finish here, none comes back to its line

    def in_queue(self) -> int:
        return sum(self.counts[s] for s in IN_QUEUE)


@dataclass(eq=False, slots=True)
class _Agent:
    cfg: AgentConfig
    id: str
    order: int
    queues: list[_Queue] = field(default_factory=list)
    pools: dict[int, _Pool] = field(default_factory=dict)
    state: AgentState = A.LOGGED_OUT
    reason: str = ""
    since: float = 0.0  # entered the current state
    acct: float = 0.0  # counters hold the time up to here
    idle_since: float = 0.0
    contact: _Contact | None = None
    medium: str = ""
    outbound: bool = False
    outbound_return: tuple[AgentState, str] = (A.NOT_READY, "")
    break_pending: bool = False
    rr: dict[str, int] = field(default_factory=dict)
    timers: dict[str, tuple[int, float]] = field(default_factory=dict)
    counters: AgentCounters = field(default_factory=AgentCounters)
    wrap_queue: _Queue | None = None
    handle_talk: float = 0.0
    removed: bool = False  # dropped by a new configuration while in a call: in no queue,
    # logged out (and forgotten) when the call ends


@dataclass(eq=False, slots=True)
class _Contact:
    id: str
    queue: _Queue
    priority: int
    skills: dict[str, int]
    language: str
    medium: str
    data: Mapping[str, str]
    enqueued_at: float
    seq: int
    state: ContactState = C.GONE
    alts: list[Requirement] = field(default_factory=list)
    pools: list[_Pool] = field(default_factory=list)
    offers: dict[str, None] = field(default_factory=dict)
    agent: _Agent | None = None
    live: bool = True  # the caller is on the line
    was_callback: bool = False
    callback_number: str = ""
    callback_attempts: int = 0
    next_rule: int = 0
    answered_at: float = 0.0
    ring_all: bool = False  # the current offers were made ring-all
    timers: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def line_key(self) -> Key:
        return (-self.priority, self.enqueued_at, self.seq)

    @property
    def pool_key(self) -> Key:
        return (-self.queue.cfg.priority, -self.priority, self.enqueued_at, self.seq)


# --------------------------------------------------------------------------- the core


class Acd:
    """One tenant's ACD (see the module docstring)."""

    def __init__(self, config: TenantAcdConfig, now: float = 0.0) -> None:
        config.validate()
        self.config = config
        self.tenant_id = config.tenant_id
        self._now = now
        self._queues: dict[str, _Queue] = {q.name: _Queue(q, q.name) for q in config.queues}
        self._agents: dict[str, _Agent] = {}
        for order, ac in enumerate(config.agents):
            a = _Agent(ac, ac.id, order, since=now, acct=now, idle_since=now)
            self._agents[ac.id] = a
            for name in ac.queues:
                q = self._queues[name]
                q.agents.append(a)
                a.queues.append(q)
        self._contacts: dict[str, _Contact] = {}
        self._timers: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count(1)
        self._pids = itertools.count(1)
        self._rr = itertools.count(1)
        self._commands: list[Command] = []
        self._events: list[AcdEvent] = []
        self._pending_agents: deque[_Agent] = deque()
        self._pending_contacts: deque[_Contact] = deque()
        self._breaks: dict[str, int] = {}
        self._local: tuple[float, float] | None = None  # (now, local seconds of day)
        self._midnight = 0  # the live midnight timer's sequence number
        self._night = None if config.night_hours is None else (
            minutes(config.night_hours[0]), minutes(config.night_hours[1]))
        self._reasons = frozenset(("", *config.not_ready_reasons))

    # ----------------------------------------------------------------- outputs

    def commands(self) -> list[Command]:
        out, self._commands = self._commands, []
        return out

    def events(self) -> list[AcdEvent]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        timers = self._timers
        while timers:
            when, seq, kind, ident = timers[0]
            if self._timer_live(seq, kind, ident):
                return when
            heapq.heappop(timers)
        return None

    # ----------------------------------------------------------------- agent inputs

    def login(self, agent_id: str, now: float, *, ready: bool = False) -> None:
        a = self._agent(agent_id)
        now = self._clock(now)
        self._require(a, "login")
        if ready:
            self._set(a, A.READY, now, "login", action="login")
        else:
            self._set(a, A.NOT_READY, now, "login", action="login", reason="login")
        self._settle(now)

    def logout(self, agent_id: str, now: float) -> None:
        """Log out from ready, not ready, break, after-call work, or while an offer rings
        (the offer is withdrawn and the contact goes back to its place)."""
        a = self._agent(agent_id)
        now = self._clock(now)
        self._require(a, "logout")
        if a.state is A.RESERVED:
            self._withdraw(a, now, "logout")
        if a.break_pending:
            self._drop_break(a, now, "logout")
        self._set(a, A.LOGGED_OUT, now, "logout", action="logout")
        a.timers.clear()
        self._settle(now)

    def set_ready(self, agent_id: str, now: float) -> None:
        """Ready from not ready, break, or after-call work ("done"; a break approved
        during the call starts instead)."""
        a = self._agent(agent_id)
        now = self._clock(now)
        self._require(a, "ready")
        target = A.BREAK if a.state is A.WRAP_UP and a.break_pending else A.READY
        self._set(a, target, now, "ready", action="ready")
        self._settle(now)

    def set_not_ready(self, agent_id: str, reason: str, now: float, *,
                      forced: bool = False) -> None:
        """Not ready ("busy") with one of the tenant's reason codes, or ``""``; ``forced``
        (a supervisor's doing) always has the reason ``supervisor``."""
        a = self._agent(agent_id)
        now = self._clock(now)
        if forced:
            reason = "supervisor"
        elif reason not in self._reasons:
            raise InvalidArgument(f"unknown not-ready reason {reason!r}", reason=reason)
        self._require(a, "not_ready")
        if a.state is A.WRAP_UP and a.break_pending:
            self._set(a, A.BREAK, now, "not_ready", action="not_ready")
        else:
            self._set(a, A.NOT_READY, now, "not_ready", action="not_ready", reason=reason)
        self._settle(now)

    def request_break(self, agent_id: str, now: float, *, forced: bool = False) -> bool:
        """Approve a break while fewer than the maximum of the agent's break group are on
        break or approved (R-5.2d): from ready or not ready the break starts now, during
        a contact or its after-call work it starts when they end. Refused otherwise,
        with ``BreakRefused``. ``forced``: a supervisor grants it whatever the maximum
        (cause ``supervisor``). Returns whether it was approved."""
        a = self._agent(agent_id)
        now = self._clock(now)
        if a.removed:
            raise InvalidTransition(a.id, a.state, "break", "removed from the configuration")
        now_ok = (a.state, "break") in AGENT_TRANSITIONS
        later_ok = (a.state, "break_request") in AGENT_TRANSITIONS
        if a.break_pending or not (now_ok or later_ok):
            raise InvalidTransition(a.id, a.state, "break",
                                    "a break is already approved" if a.break_pending else "")
        group = a.cfg.break_group
        maximum = self._break_max(group)
        on_break = self._breaks.get(group, 0)
        if on_break >= maximum and not forced:
            self._event(BreakRefused(tenant_id=self.tenant_id, at=now, cause="maximum_on_break",
                                     agent=a.id, group=group, on_break=on_break,
                                     maximum=maximum))
            self._settle(now)
            return False
        self._breaks[group] = on_break + 1
        self._event(BreakApproved(tenant_id=self.tenant_id, at=now,
                                  cause="supervisor" if forced else "auto_approved",
                                  agent=a.id, group=group, pending=not now_ok))
        if now_ok:
            self._set(a, A.BREAK, now, "break", action="break")
        else:
            a.break_pending = True
        self._settle(now)
        return True

    def cancel_break(self, agent_id: str, now: float) -> None:
        """Withdraw a break approved to start after the current contact."""
        a = self._agent(agent_id)
        now = self._clock(now)
        if not a.break_pending:
            raise InvalidTransition(a.id, a.state, "cancel_break", "no break is pending")
        self._drop_break(a, now, "cancelled")
        self._settle(now)

    def hold(self, agent_id: str, now: float) -> None:
        a = self._agent(agent_id)
        now = self._clock(now)
        self._require(a, "hold")
        self._set(a, A.HOLD, now, "hold", action="hold")
        self._settle(now)

    def resume(self, agent_id: str, now: float) -> None:
        a = self._agent(agent_id)
        now = self._clock(now)
        self._require(a, "resume")
        self._set(a, A.TALKING, now, "resume", action="resume")
        self._settle(now)

    def start_outbound(self, agent_id: str, now: float) -> None:
        """The agent places an outbound or internal call (from ready or not ready); it
        gets no offers until ``end_outbound``."""
        a = self._agent(agent_id)
        now = self._clock(now)
        self._require(a, "outbound")
        a.outbound_return = (a.state, a.reason)
        a.outbound = True
        a.medium = "voice"
        a.counters.outbound_calls += 1
        self._set(a, A.TALKING, now, "outbound", action="outbound")
        self._settle(now)

    def end_outbound(self, agent_id: str, now: float) -> None:
        """Back to the state before the outbound call (a pending break starts)."""
        a = self._agent(agent_id)
        now = self._clock(now)
        if not a.outbound:
            raise InvalidTransition(a.id, a.state, "outbound_end", "no outbound call")
        self._require(a, "outbound_end")
        state, reason = a.outbound_return
        cause = "outbound_ended"
        if a.removed:
            state, reason, cause = A.LOGGED_OUT, "", "removed"
        elif a.break_pending:
            state, reason = A.BREAK, ""
        self._set(a, state, now, cause, action="outbound_end", reason=reason)
        a.outbound = False
        if a.removed:
            self._forget_agent(a)
        self._settle(now)

    # ----------------------------------------------------------------- contact inputs

    def enqueue(self, contact_id: str, queue: str, now: float, *, priority: int = 0,
                skills: Mapping[str, int] | None = None, language: str = "",
                data: Mapping[str, str] | None = None, medium: str = "voice") -> None:
        """A contact (a call, chat, e-mail...: ``medium``) asks for an agent of ``queue``
        with ``skills`` (``{skill: minimum level}``). Higher ``priority`` first."""
        if not isinstance(contact_id, str) or not contact_id:
            raise InvalidArgument("a contact id is a non-empty string")
        if contact_id in self._contacts:
            raise DuplicateContact(f"contact {contact_id!r} is already in the ACD",
                                   contact=contact_id)
        q = self._queue(queue)
        now = self._clock(now)
        own = self._skills_arg(skills)
        priority = self._priority_arg(priority)
        if not isinstance(language, str) or not isinstance(medium, str) or not medium:
            raise InvalidArgument("language and medium are strings (medium not empty)")
        payload = MappingProxyType(dict(data or {}))  # read-only: offers share it
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in payload.items()):
            raise InvalidArgument("contact data maps strings to strings")
        c = _Contact(contact_id, q, priority, own, language, medium, payload, now,
                     next(self._seq))
        self._contacts[c.id] = c
        self._admit(c, now, "enqueued")
        self._settle(now)

    def abandon(self, contact_id: str, now: float) -> None:
        """The caller hung up before an answer (or cancelled its callback)."""
        c = self._contact(contact_id)
        now = self._clock(now)
        self._require_contact(c, "abandon")
        q = c.queue
        waited = now - c.enqueued_at
        if c.state is C.WAITING:
            self._leave_line(c)
        elif c.state is C.OFFERED:
            self._cancel_timer(c, "ring")
            for agent_id in list(c.offers):
                a = self._agents[agent_id]
                self._cancel_offer(c, a, "abandoned", now)
                self._release(a, now, "abandoned")
            c.offers.clear()
        elif c.state is C.CALLING_BACK:
            self._command(CancelCallback(tenant_id=self.tenant_id, contact=c.id,
                                         reason="cancelled"))
            if c.agent is not None:
                self._release(c.agent, now, "callback_cancelled")
                c.agent = None
        if c.was_callback:
            cause = "callback_cancelled"
            q.counters.callbacks_dropped += 1
        else:
            cause = "abandoned"
            self._count_abandon(q, waited)
        self._event(ContactAbandoned(tenant_id=self.tenant_id, at=now, cause=cause,
                                     contact=c.id, queue=q.name, waited=waited))
        self._drop(c)
        self._settle(now)

    def answered(self, contact_id: str, agent_id: str, now: float) -> None:
        """The agent answered the offer (ring-all: the first answer wins, the others get
        ``CancelOffer``). Refused when the offer is gone: the edge releases that leg."""
        c = self._contact(contact_id)
        a = self._agent(agent_id)
        now = self._clock(now)
        self._require_offer(c, a, "answer")
        q = c.queue
        others = [self._agents[x] for x in c.offers if x != a.id]
        c.offers.clear()
        self._cancel_timer(c, "ring")
        self._cstate(c, C.CONNECTED)
        c.agent = a
        c.answered_at = now
        a.medium = c.medium
        self._set(a, A.TALKING, now, "answered", action="answer")
        waited = now - c.enqueued_at
        a.counters.answered += 1
        q.counters.answered += 1
        q.counters.wait_time_answered += waited
        if c.was_callback:
            q.counters.callbacks_connected += 1
        elif waited <= q.cfg.service_level_target:
            q.counters.answered_in_target += 1
        self._event(ContactAnswered(tenant_id=self.tenant_id, at=now, cause="answered",
                                    contact=c.id, agent=a.id, queue=q.name, waited=waited,
                                    callback=c.was_callback))
        for other in others:
            self._cancel_offer(c, other, "answered_elsewhere", now)
            self._release(other, now, "answered_elsewhere")
        self._settle(now)

    def declined(self, contact_id: str, agent_id: str, now: float) -> None:
        """The agent refused the offer: like no answer (R-5.2e), reason ``declined``."""
        c = self._contact(contact_id)
        a = self._agent(agent_id)
        now = self._clock(now)
        self._require_offer(c, a, "decline")
        self._not_taken(c, a, now, "declined")
        self._settle(now)

    def no_answer(self, contact_id: str, agent_id: str, now: float) -> None:
        """The edge could not ring the agent or it stopped ringing unanswered (busy,
        unreachable, its own timeout): the same as the core's ring timeout."""
        c = self._contact(contact_id)
        a = self._agent(agent_id)
        now = self._clock(now)
        self._require_offer(c, a, "no_answer")
        self._not_taken(c, a, now, "failed")
        self._settle(now)

    def ended(self, contact_id: str, now: float) -> None:
        """The answered contact ended; the agent goes to the queue's after-call work."""
        c = self._contact(contact_id)
        now = self._clock(now)
        self._require_contact(c, "end")
        a = c.agent
        assert a is not None
        q = c.queue
        talked = now - c.answered_at
        q.counters.talk_time += talked
        self._event(ContactEnded(tenant_id=self.tenant_id, at=now, cause="ended",
                                 contact=c.id, agent=a.id, queue=q.name, talked=talked))
        self._drop(c)
        self._after_call(a, q, talked, now, "ended")
        self._settle(now)

    def transfer_to_queue(self, contact_id: str, queue: str, now: float, *,
                          priority: int | None = None,
                          skills: Mapping[str, int] | None = None) -> None:
        """The agent transfers the answered contact to a queue (R-5.2b): the agent goes to
        after-call work, the contact arrives in ``queue`` as a new contact there (same
        id, data and language; its priority and skills unless given)."""
        c = self._contact(contact_id)
        target = self._queue(queue)
        now = self._clock(now)
        self._require_contact(c, "transfer")
        own = c.skills if skills is None else self._skills_arg(skills)
        prio = c.priority if priority is None else self._priority_arg(priority)
        a = c.agent
        assert a is not None
        old = c.queue
        talked = now - c.answered_at
        old.counters.talk_time += talked
        self._event(ContactTransferred(tenant_id=self.tenant_id, at=now, cause="transfer",
                                       contact=c.id, agent=a.id, from_queue=old.name,
                                       to_queue=target.name))
        old.counts[c.state] -= 1
        target.counts[c.state] += 1
        c.queue = target
        c.agent = None
        c.priority = prio
        c.skills = own
        c.enqueued_at = now
        c.seq = next(self._seq)
        c.next_rule = 0
        c.timers.clear()
        c.was_callback = False
        c.callback_number = ""
        c.callback_attempts = 0
        target.counters.transferred_in += 1
        self._after_call(a, old, talked, now, "transferred")
        self._admit(c, now, "transfer")
        self._settle(now)

    def request_callback(self, contact_id: str, number: str, now: float) -> None:
        """The waiting caller asks to be called back at ``number``, keeping its place: the
        edge releases the caller's line; the entry stays where it was and, when an agent
        is free for it, that agent is reserved and ``PlaceCallback`` is sent."""
        c = self._contact(contact_id)
        now = self._clock(now)
        if not c.queue.cfg.callback_allowed:
            raise CallbackNotAllowed(f"queue {c.queue.name!r} does not offer callbacks",
                                     queue=c.queue.name)
        self._require_contact(c, "request_callback")
        if not c.live:
            raise ContactStateError(c.id, c.state, "request_callback", "already a callback")
        if not isinstance(number, str) or not number:
            raise InvalidArgument("a callback number is a non-empty string")
        c.live = False
        c.was_callback = True
        c.callback_number = number
        c.timers.pop("announce", None)
        c.timers.pop("max_wait", None)
        c.queue.counters.callbacks_requested += 1
        self._event(CallbackRequested(tenant_id=self.tenant_id, at=now, cause="requested",
                                      contact=c.id, queue=c.queue.name, number=number))
        self._settle(now)

    def callback_answered(self, contact_id: str, now: float) -> None:
        """The customer answered the callback: it is offered to the agent reserved for it
        (or, if that agent logged out meanwhile, goes back to its place in line)."""
        c = self._contact(contact_id)
        now = self._clock(now)
        self._require_contact(c, "callback_answered")
        self._cancel_timer(c, "callback")
        c.live = True
        a = c.agent
        c.agent = None
        if a is None:
            self._requeue(c, now, "callback_answered")
        else:
            self._cstate(c, C.OFFERED)
            c.offers[a.id] = None
            c.ring_all = False
            self._make_offer(c, a, now, ring_all=False)
            self._timer(c, "ring", now + c.queue.cfg.ring_timeout)
        self._settle(now)

    def callback_failed(self, contact_id: str, now: float) -> None:
        """The callback was not answered: retried after the queue's delay, or dropped
        (``CallbackFailed`` with ``final``) after its last attempt."""
        c = self._contact(contact_id)
        now = self._clock(now)
        self._require_contact(c, "callback_failed")
        self._callback_fail(c, now, "failed")
        self._settle(now)

    # ----------------------------------------------------------------- clock inputs

    def tick(self, now: float) -> None:
        now = self._clock(now)
        self._run_timers(now)
        self._settle(now)

    def _run_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, seq, kind, ident = heapq.heappop(timers)
            if self._timer_live(seq, kind, ident):
                self._fire(kind, ident, now)
                self._settle(now)

    def set_local_time(self, now: float, seconds_of_day: float) -> None:
        """Tell the core the tenant's local time of day at ``now`` (at start, and again
        when the clock changes): night hours apply, and the daily counters restart at
        local midnight."""
        now = self._clock(now)
        if not isinstance(seconds_of_day, int | float) or not 0 <= seconds_of_day < DAY:
            raise InvalidArgument("seconds of the day are in [0, 86400)")
        self._local = (now, float(seconds_of_day))
        seq = next(self._seq)
        self._midnight = seq
        heapq.heappush(self._timers, (now + DAY - seconds_of_day, seq, "midnight", ""))
        self._settle(now)

    def reset_day(self, now: float) -> None:
        """Start the daily counters again (done by itself at local midnight once
        ``set_local_time`` was called)."""
        now = self._clock(now)
        self._reset_day(now, "reset")
        self._settle(now)

    # ----------------------------------------------------------------- configuration

    def reconfigure(self, config: TenantAcdConfig, now: float) -> None:
        """Apply a new configuration of this tenant in place, everything kept live
        (docs/ACD.md, "Reconfiguring"). In short: agents keep their state, timers,
        counters and contact; a removed agent is logged out (its offer withdrawn), or,
        in a call, when that call ends; queues keep their waiting contacts in place; a
        removed queue's waiting contacts leave (``ExitQueue``, reason
        ``queue_removed``), its offered and connected ones finish; new parameters apply
        to the next decision, and running timers whose parameter changed are counted
        again from their start (firing now if already due). An invalid configuration,
        or one of another tenant, raises ``AcdConfigError`` and changes nothing; the
        same configuration changes nothing. Announced by ``AcdReconfigured``."""
        if not isinstance(config, TenantAcdConfig):
            raise InvalidArgument("a configuration is a TenantAcdConfig")
        config.validate()
        if config.tenant_id != self.tenant_id:
            raise AcdConfigError("tenant_id", f"a configuration of tenant "
                                 f"{config.tenant_id!r}, not {self.tenant_id!r}")
        now = self._clock(now)
        old = self.config
        if config == old:
            return
        # ---- what changed
        new_q = {qc.name: qc for qc in config.queues}
        old_a = {ac.id: ac for ac in old.agents}
        new_a = {ac.id: ac for ac in config.agents}
        kept = [n for n in new_q if n in self._queues]
        removed_q = {n for n in self._queues if n not in new_q}
        changed_q = {n for n in kept if self._queues[n].cfg != new_q[n]}
        removed_a = [i for i in old_a if i not in new_a]
        self._event(AcdReconfigured(
            tenant_id=self.tenant_id, at=now, cause="reconfigured",
            queues_added=tuple(n for n in new_q if n not in self._queues),
            queues_removed=tuple(n for n in self._queues if n in removed_q),
            queues_changed=tuple(n for n in kept if n in changed_q),
            agents_added=tuple(i for i in new_a if i not in old_a),
            agents_removed=tuple(removed_a),
            agents_changed=tuple(i for i, ac in new_a.items()
                                 if i in old_a and old_a[i] != ac),
            settings_changed=tuple(name for name in _SETTINGS
                                   if getattr(old, name) != getattr(config, name))))
        members: dict[str, list[str]] = {n: [] for n in new_q}
        reskilled: set[str] = set()  # agents with other skills
        reordered: set[str] = set()  # agents at another place in the configuration
        for order, ac in enumerate(config.agents):
            for n in ac.queues:
                members[n].append(ac.id)
            found = self._agents.get(ac.id)
            if found is not None and found.cfg.skills != ac.skills:
                reskilled.add(ac.id)
            elif found is not None and found.order != order:
                reordered.add(ac.id)
        # Which indexes change, by queue: the contacts' requirements (taken out of line
        # and put back), pool members (who, skills), ready heaps (strategy, agents'
        # order), waiting heaps (priority), the max_wait timers.
        rules: set[str] = set()
        members_changed: set[str] = set()
        ready_keys: set[str] = set()
        waiting_keys: set[str] = set()
        max_wait: set[str] = set()
        for n in kept:
            q, qc = self._queues[n], new_q[n]
            if (q.cfg.overflow, q.cfg.match_language) != (qc.overflow, qc.match_language):
                rules.add(n)
            elif q.cfg.max_wait != qc.max_wait:
                max_wait.add(n)
            if [a.id for a in q.agents] != members[n] or not reskilled.isdisjoint(members[n]):
                members_changed.add(n)
            elif q.cfg.strategy != qc.strategy or not reordered.isdisjoint(members[n]):
                ready_keys.add(n)
            if q.cfg.priority != qc.priority:
                waiting_keys.add(n)
        # ---- out of line: the waiting contacts of removed queues and of new rules
        touched: list[_Contact] = []  # in line, ringing or in a callback, of such queues
        pulled: list[_Contact] = []  # taken out of their line, put back below
        for c in self._contacts.values():
            if c.queue.removed or c.state not in IN_QUEUE:
                continue
            name = c.queue.name
            if name in changed_q or name in removed_q:
                touched.append(c)
            if c.state is C.WAITING and (name in rules or name in removed_q):
                self._leave_line(c)
                pulled.append(c)
        for n in removed_q:
            q = self._queues[n]
            for pool in q.pools.values():
                for agent_id in pool.members:
                    del self._agents[agent_id].pools[pool.pid]
            q.pools.clear()
        # ---- the new configuration
        self.config = config
        self._night = None if config.night_hours is None else (
            minutes(config.night_hours[0]), minutes(config.night_hours[1]))
        self._reasons = frozenset(("", *config.not_ready_reasons))
        old_cfg = {n: self._queues[n].cfg for n in kept}
        queues: dict[str, _Queue] = {}
        for qc in config.queues:
            q = self._queues.get(qc.name) or _Queue(qc, qc.name)
            q.cfg = qc
            q.agents = []
            queues[qc.name] = q
        for n in removed_q:
            self._queues[n].removed = True
            self._queues[n].agents = []
        self._queues = queues
        agents: dict[str, _Agent] = {}
        for order, ac in enumerate(config.agents):
            found = self._agents.get(ac.id)
            if found is None:
                a = _Agent(ac, ac.id, order, since=now, acct=now, idle_since=now)
            else:
                a = found
                group = a.cfg.break_group
                if ac.break_group != group and (a.state is A.BREAK or a.break_pending):
                    self._breaks[group] -= 1  # its break counts in its new group now
                    self._breaks[ac.break_group] = self._breaks.get(ac.break_group, 0) + 1
                a.cfg, a.order, a.removed = ac, order, False
            a.queues = [queues[n] for n in ac.queues]
            for q in a.queues:
                q.agents.append(a)
            agents[ac.id] = a
        for a in self._agents.values():  # removed now (or before, still in a call)
            if a.id not in agents:
                a.removed = True
                a.queues = []
                agents[a.id] = a
        self._agents = agents
        for q in queues.values():
            q.staffed = sum(a.state in STAFFED for a in q.agents)
            q.ready = sum(a.state is A.READY for a in q.agents)
        # ---- the indexes of the queues kept
        for n in members_changed:
            for pool in queues[n].pools.values():
                self._repool(pool)
            for a in queues[n].agents:
                if a.state is A.READY:  # it may match contacts waiting there now
                    self._pending_agents.append(a)
        for n in ready_keys:
            for pool in queues[n].pools.values():
                self._rekey_ready(pool)
        for n in waiting_keys:
            for pool in queues[n].pools.values():
                waiting, pool.waiting = pool.waiting, IndexedHeap()
                for contact_id in waiting:
                    pool.waiting.push(contact_id, self._contacts[contact_id].pool_key)
        # ---- running timers whose parameter changed; requirements by the new rules
        for c in touched:
            q = c.queue
            if q.removed:
                continue
            was, cfg = old_cfg[q.name], q.cfg
            if c.state is C.OFFERED:
                self._retime(c, "ring", was.ring_timeout, cfg.ring_timeout, now)
            elif c.state is C.CALLING_BACK:
                self._retime(c, "callback", was.callback_timeout, cfg.callback_timeout, now)
            elif c.state is C.PARKED:
                self._retime(c, "retry", was.callback_retry_delay, cfg.callback_retry_delay,
                             now)
            every = cfg.announce_position_every
            if c.live and c.state in (C.WAITING, C.OFFERED):
                if "announce" in c.timers:
                    self._retime(c, "announce", was.announce_position_every, every, now)
                elif every is not None:
                    self._timer(c, "announce", now + every)
            if q.name in rules:
                self._rederive(c, now)
        for a in agents.values():
            wq = a.wrap_queue
            if a.state is A.WRAP_UP and wq is not None and not wq.removed \
                    and wq.name in changed_q and old_cfg[wq.name].wrap_up != wq.cfg.wrap_up:
                if wq.cfg.wrap_up is None:
                    a.timers.pop("wrap", None)
                else:
                    self._timer(a, "wrap", max(now, a.since + wq.cfg.wrap_up))
        # ---- removed agents: logged out now, or when their call ends
        for agent_id in removed_a:
            a = agents[agent_id]
            if a.state is A.RESERVED:
                self._withdraw(a, now, "agent_removed")
            if a.break_pending:
                self._drop_break(a, now, "removed")
            if a.state in (A.TALKING, A.HOLD):
                continue
            if a.state is not A.LOGGED_OUT:
                self._set(a, A.LOGGED_OUT, now, "removed", action="logout")
            self._forget_agent(a)
        # ---- a new max_wait: those waiting over it leave, the others' timers move
        for n in max_wait:
            q = queues[n]
            limit = q.cfg.max_wait
            line = sorted((self._contacts[cid] for cid in q.ages), key=lambda c: c.line_key)
            for c in line:
                if c.was_callback:
                    continue
                if limit is None:
                    c.timers.pop("max_wait", None)
                elif now - c.enqueued_at >= limit:
                    self._exit(c, "max_wait", now)
                else:
                    self._timer(c, "max_wait", c.enqueued_at + limit)
        # ---- back in line in place (or out, from a removed queue)
        leaving = sorted((c for c in touched if c.queue.removed and c.state is C.PARKED),
                         key=lambda c: c.line_key)
        for c in sorted(pulled, key=lambda c: c.line_key):
            if c.queue.removed:
                self._exit(c, "queue_removed", now)
            elif self._catch_up(c, now):
                self._enter_line(c, now, "")
        for c in leaving:
            self._exit(c, "queue_removed", now)
        self._settle(now)
        self._run_timers(now)
        self._settle(now)

    # ----------------------------------------------------------------- views

    def agent(self, agent_id: str, now: float) -> AgentSnapshot:
        return self._agent_snapshot(self._agent(agent_id), max(now, self._now))

    def contact(self, contact_id: str) -> ContactView | None:
        """The contact while it is in the core, None after its final event."""
        c = self._contacts.get(contact_id)
        if c is None:
            return None
        return ContactView(
            id=c.id, queue=c.queue.name, state=c.state.value, priority=c.priority,
            enqueued_at=c.enqueued_at, offered_to=tuple(c.offers),
            agent=None if c.agent is None else c.agent.id, live=c.live,
            callback_number=c.callback_number, requirements=tuple(c.alts),
            language=c.language, medium=c.medium)

    def contact_ids(self) -> list[str]:
        return list(self._contacts)

    def position(self, contact_id: str) -> int | None:
        """1 at the head of its queue's line; None when not in line."""
        c = self._contact(contact_id)
        if c.state is not C.WAITING:
            return None
        return c.queue.line.rank(c.line_key) + 1

    def estimated_wait(self, queue: str, position: int) -> int | None:
        """Seconds until a contact at ``position`` is answered: the queue's recent
        average handle time (the last ``AHT_WINDOW`` contacts, talk and after-call
        work; ``initial_aht`` before any) times the position, shared by the agents
        staffing the queue. None when nobody staffs it."""
        q = self._queue(queue)
        if q.staffed == 0:
            return None
        aht = q.aht_sum / len(q.aht) if q.aht else q.cfg.initial_aht
        return math.ceil(aht * position / q.staffed)

    def agent_counters(self, agent_id: str, now: float) -> AgentCounters:
        """The agent's day so far, including the current state up to ``now``."""
        a = self._agent(agent_id)
        out = replace(a.counters)
        self._add_time(a, max(now, self._now) - a.acct, out)
        return out

    def queue_counters(self, queue: str) -> QueueCounters:
        return replace(self._queue(queue).counters)

    def service_level(self, queue: str) -> float | None:
        q = self._queue(queue)
        return service_level(q.cfg, q.counters)

    def snapshot(self, now: float) -> AcdSnapshot:
        """The wallboard: per queue, per agent and for the team."""
        now = max(now, self._now)
        callbacks = dict.fromkeys(self._queues, 0)
        for c in self._contacts.values():
            if c.was_callback and not c.live and not c.queue.removed:
                callbacks[c.queue.name] += 1
        queues = []
        for q in self._queues.values():
            top = q.ages.peek()
            sl = service_level(q.cfg, q.counters)
            queues.append(QueueSnapshot(
                name=q.name, waiting=len(q.line), ringing=q.counts[C.OFFERED],
                callbacks=callbacks[q.name],
                longest_wait=0.0 if top is None else now - top[0][0], service_level=sl,
                service_level_met=None if sl is None else sl >= q.cfg.service_level_share,
                answered=q.counters.answered, abandoned=q.counters.abandoned,
                staffed=q.staffed, ready=q.ready))
        agents = tuple(self._agent_snapshot(a, now) for a in self._agents.values())
        states = [a.state for a in self._agents.values()]
        team = TeamSnapshot(
            logged_in=sum(s is not A.LOGGED_OUT for s in states),
            ready=states.count(A.READY), busy=sum(s in BUSY for s in states),
            not_ready=states.count(A.NOT_READY), on_break=states.count(A.BREAK))
        return AcdSnapshot(tenant_id=self.tenant_id, at=now, queues=tuple(queues),
                           agents=agents, team=team)

    # ----------------------------------------------------------------- argument checks

    def _agent(self, agent_id: str) -> _Agent:
        a = self._agents.get(agent_id)
        if a is None:
            raise UnknownAgent(f"no agent {agent_id!r}", agent=agent_id)
        return a

    def _queue(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            raise UnknownQueue(f"no queue {name!r}", queue=name)
        return q

    def _contact(self, contact_id: str) -> _Contact:
        c = self._contacts.get(contact_id)
        if c is None:
            raise UnknownContact(f"no contact {contact_id!r}", contact=contact_id)
        return c

    def _clock(self, now: float) -> float:
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise InvalidArgument("now is a finite number of seconds")
        return max(float(now), self._now)

    @staticmethod
    def _skills_arg(skills: Mapping[str, int] | None) -> dict[str, int]:
        own = dict(skills or {})
        try:
            check_skills(own, "skills")
        except AcdConfigError as exc:
            raise InvalidArgument(f"{exc.message} (levels {MIN_LEVEL}-{MAX_LEVEL})") from None
        return own

    @staticmethod
    def _priority_arg(priority: int) -> int:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidArgument("a priority is an integer")
        return priority

    @staticmethod
    def _require(a: _Agent, action: str) -> None:
        if (a.state, action) not in AGENT_TRANSITIONS:
            raise InvalidTransition(a.id, a.state, action)

    @staticmethod
    def _require_contact(c: _Contact, action: str) -> None:
        if (c.state, action) not in CONTACT_TRANSITIONS:
            raise ContactStateError(c.id, c.state, action)

    def _require_offer(self, c: _Contact, a: _Agent, action: str) -> None:
        self._require_contact(c, action)
        if a.id not in c.offers:
            raise ContactStateError(c.id, c.state, action, f"not offered to agent {a.id!r}")

    # ----------------------------------------------------------------- agent moves

    def _set(self, a: _Agent, new: AgentState, now: float, cause: str, *, action: str,
             reason: str = "", keep_idle: bool = False) -> None:
        old = a.state
        allowed = AGENT_TRANSITIONS.get((old, action))
        if allowed is None or new not in allowed:  # a bug in the core, not a bad input
            raise InvalidTransition(a.id, old, action, f"(internal) to {new}")
        self._account(a, now)
        if old is A.READY:
            for pool in a.pools.values():
                pool.ready.remove(a.id)
        if old is A.WRAP_UP:
            self._handle_done(a, now)
        if old is A.BREAK and new is not A.BREAK:
            self._breaks[a.cfg.break_group] -= 1
        if (old in STAFFED) != (new in STAFFED):
            step = 1 if new in STAFFED else -1
            for q in a.queues:
                q.staffed += step
        if (old is A.READY) != (new is A.READY):
            step = 1 if new is A.READY else -1
            for q in a.queues:
                q.ready += step
        if new is A.NOT_READY and old is not A.NOT_READY:
            a.counters.not_ready_periods += 1
        if new is A.BREAK and old is not A.BREAK:
            a.counters.break_periods += 1
            a.break_pending = False
        a.state = new
        a.reason = reason if new is A.NOT_READY else ""
        a.since = now
        if new not in (A.TALKING, A.HOLD):
            a.medium = ""
        if new is A.READY:
            if not keep_idle:
                a.idle_since = now
            for pool in a.pools.values():
                pool.ready.push(a.id, self._agent_key(a, pool))
            self._pending_agents.append(a)
        c = a.contact
        self._event(AgentStateChanged(
            tenant_id=self.tenant_id, at=now, cause=cause, agent=a.id, state=new,
            previous=old, reason=a.reason, contact=None if c is None else c.id,
            medium=a.medium))

    def _release(self, a: _Agent, now: float, cause: str) -> None:
        """An offer or a callback reservation ends without the agent at fault: ready
        again with its place among the idle agents kept (or a pending break)."""
        a.contact = None
        target = A.BREAK if a.break_pending else A.READY
        self._set(a, target, now, cause, action="withdraw", keep_idle=True)

    def _withdraw(self, a: _Agent, now: float, reason: str) -> None:
        """The reserved agent leaves (logout, removed): its offer is cancelled and the
        contact goes on ringing its other agents (ring-all) or back to its place; a
        callback being dialled goes on without this agent. The agent stays reserved
        (the caller moves it on)."""
        c = a.contact
        if c is None:
            return
        a.contact = None
        if c.state is C.OFFERED:
            del c.offers[a.id]
            self._cancel_offer(c, a, reason, now)
            if not c.offers:
                self._cancel_timer(c, "ring")
                self._requeue(c, now, "withdrawn")
        else:
            c.agent = None

    def _forget_agent(self, a: _Agent) -> None:
        """A removed agent is logged out: the core no longer knows it."""
        a.timers.clear()
        del self._agents[a.id]

    def _after_call(self, a: _Agent, q: _Queue, talked: float, now: float,
                    cause: str) -> None:
        a.contact = None
        if a.removed:  # no after-call work for queues it no longer serves: logged out
            self._record_aht(q, talked)
            a.wrap_queue = None
            self._set(a, A.LOGGED_OUT, now, "removed", action="end")
            self._forget_agent(a)
            return
        a.wrap_queue = q
        a.handle_talk = talked
        wrap = q.cfg.wrap_up
        if wrap == 0:
            self._record_aht(q, talked)
            a.wrap_queue = None
            target = A.BREAK if a.break_pending else A.READY
        else:
            target = A.WRAP_UP
        self._set(a, target, now, cause, action="end")
        if target is A.WRAP_UP and wrap is not None:
            self._timer(a, "wrap", now + wrap)

    def _handle_done(self, a: _Agent, now: float) -> None:
        a.timers.pop("wrap", None)
        if a.wrap_queue is not None:
            self._record_aht(a.wrap_queue, a.handle_talk + (now - a.since))
            a.wrap_queue = None

    @staticmethod
    def _record_aht(q: _Queue, handle: float) -> None:
        if len(q.aht) == q.aht.maxlen:
            q.aht_sum -= q.aht[0]
        q.aht.append(handle)
        q.aht_sum += handle

    def _account(self, a: _Agent, now: float) -> None:
        self._add_time(a, now - a.acct, a.counters)
        a.acct = now

    @staticmethod
    def _add_time(a: _Agent, dt: float, c: AgentCounters) -> None:
        s = a.state
        if s is A.READY:
            c.ready_time += dt
        elif s is A.NOT_READY:
            c.not_ready_time += dt
        elif s is A.BREAK:
            c.break_time += dt
        elif s is A.RESERVED:
            c.ringing_time += dt
        elif s is A.WRAP_UP:
            c.wrap_time += dt
        elif s in (A.TALKING, A.HOLD):
            if a.outbound:
                c.outbound_time += dt
            else:
                c.talk_time += dt
            if s is A.HOLD:
                c.hold_time += dt

    def _break_max(self, group: str) -> int:
        return self.config.break_groups[group] if group else self.config.max_on_break

    def _drop_break(self, a: _Agent, now: float, cause: str) -> None:
        a.break_pending = False
        self._breaks[a.cfg.break_group] -= 1
        self._event(BreakCancelled(tenant_id=self.tenant_id, at=now, cause=cause, agent=a.id,
                                   group=a.cfg.break_group))

    @staticmethod
    def _agent_key(a: _Agent, pool: _Pool) -> Key:
        strategy = pool.queue.cfg.strategy
        if strategy == "round_robin":
            return (a.rr.get(pool.queue.name, 0), a.order)
        if strategy == "least_occupied":
            return (a.counters.answered, a.counters.talk_time, a.idle_since, a.order)
        if strategy == "best_skill":
            skills = a.cfg.skills
            return (-sum(skills.get(name, 0) for name, _ in pool.req), a.idle_since, a.order)
        return (a.idle_since, a.order)

    # ----------------------------------------------------------------- contact moves

    def _cstate(self, c: _Contact, new: ContactState) -> None:
        counts = c.queue.counts
        counts[c.state] -= 1
        counts[new] += 1
        c.state = new

    def _drop(self, c: _Contact) -> None:
        self._cstate(c, C.GONE)
        c.timers.clear()
        del self._contacts[c.id]

    def _admit(self, c: _Contact, now: float, cause: str) -> None:
        """A new arrival in ``c.queue`` (enqueue or transfer)."""
        q = c.queue
        q.counters.arrived += 1
        if q.cfg.max_length is not None and q.in_queue() >= q.cfg.max_length:
            self._exit(c, "max_length", now)
            return
        c.alts = [self._base_requirement(c, q)]
        if q.cfg.announce_position_every is not None:
            self._timer(c, "announce", now + q.cfg.announce_position_every)
        if self._catch_up(c, now):
            self._enter_line(c, now, cause)

    def _base_requirement(self, c: _Contact, q: _Queue) -> Requirement:
        return requirement(c.skills, c.language if q.cfg.match_language else "")

    def _catch_up(self, c: _Contact, now: float) -> bool:
        """Apply the overflow rules due by now and the maximum wait (``c`` is not in line).
        False when the contact left."""
        while True:
            q = c.queue
            if not c.was_callback and q.cfg.max_wait is not None \
                    and now - c.enqueued_at >= q.cfg.max_wait:
                self._exit(c, "max_wait", now)
                return False
            rules = q.cfg.overflow
            if c.next_rule >= len(rules) or c.enqueued_at + rules[c.next_rule].after > now:
                break
            rule = rules[c.next_rule]
            c.next_rule += 1
            self._apply_rule(c, rule, now)
        q = c.queue
        if c.next_rule < len(q.cfg.overflow):
            self._timer(c, "overflow", c.enqueued_at + q.cfg.overflow[c.next_rule].after)
        else:
            c.timers.pop("overflow", None)
        if not c.was_callback and q.cfg.max_wait is not None:
            self._timer(c, "max_wait", c.enqueued_at + q.cfg.max_wait)
        else:
            c.timers.pop("max_wait", None)
        return True

    def _apply_rule(self, c: _Contact, rule: OverflowRule, now: float,
                    known: frozenset[Requirement] = frozenset()) -> None:
        """Apply one overflow rule (``known``: requirements the contact already had, added
        again without an event, see ``_rederive``)."""
        q = c.queue
        if rule.to_queue is not None:
            target = self._queues[rule.to_queue]
            q.counts[c.state] -= 1
            target.counts[c.state] += 1
            q.counters.overflowed_out += 1
            target.counters.overflowed_in += 1
            c.queue = target
            c.next_rule = 0
            c.alts = [self._base_requirement(c, target)]
            if c.live and target.cfg.announce_position_every is not None \
                    and "announce" not in c.timers:
                self._timer(c, "announce", now + target.cfg.announce_position_every)
            self._event(ContactOverflowed(tenant_id=self.tenant_id, at=now, cause="overflow",
                                          contact=c.id, queue=q.name, to_queue=target.name,
                                          requirement=None))
            return
        language = c.language if q.cfg.match_language else ""
        if rule.also_match is not None:
            req = requirement(rule.also_match, language)
        else:
            lowered = {k: max(MIN_LEVEL, v - rule.lower_levels_by) for k, v in c.skills.items()}
            req = requirement(lowered, language)
        if req not in c.alts:
            c.alts.append(req)
        if req in known:
            return
        self._event(ContactOverflowed(tenant_id=self.tenant_id, at=now, cause="overflow",
                                      contact=c.id, queue=q.name, to_queue=None,
                                      requirement=req))

    def _enter_line(self, c: _Contact, now: float, cause: str) -> None:
        q = c.queue
        self._cstate(c, C.WAITING)
        key = c.pool_key
        c.pools = []
        for req in c.alts:  # one at a time: a pool with this contact is never dropped
            pool = self._pool(q, req)
            pool.waiting.push(c.id, key)
            c.pools.append(pool)
        q.line.add(c.line_key)
        q.ages.push(c.id, (c.enqueued_at, c.seq))
        self._pending_contacts.append(c)
        if cause:
            self._event(ContactQueued(tenant_id=self.tenant_id, at=now, cause=cause,
                                      contact=c.id, queue=q.name, priority=c.priority,
                                      position=q.line.rank(c.line_key) + 1))

    def _leave_line(self, c: _Contact) -> None:
        q = c.queue
        for pool in c.pools:
            pool.waiting.remove(c.id)
        c.pools = []
        q.line.remove(c.line_key)
        q.ages.remove(c.id)

    def _requeue(self, c: _Contact, now: float, cause: str) -> None:
        """Back to its place in line (an offer or callback that did not connect)."""
        c.offers.clear()
        c.agent = None
        if c.queue.removed:  # its queue is gone: no place to come back to
            self._exit(c, "queue_removed", now)
        elif self._catch_up(c, now):
            self._enter_line(c, now, cause)

    def _exit(self, c: _Contact, reason: str, now: float) -> None:
        """The contact leaves by ``reason`` (``max_wait``, ``max_length``,
        ``queue_removed``): ``ExitQueue`` for a caller on the line, ``ContactExited``."""
        q = c.queue
        if c.state is C.WAITING and c.id in q.ages:  # (a contact being moved is not)
            self._leave_line(c)
        if reason == "max_wait":
            route = q.cfg.max_wait_route
            q.counters.exited_max_wait += 1
        elif reason == "max_length":
            route = q.cfg.max_length_route
            q.counters.exited_max_length += 1
        else:
            route = ""
        waited = now - c.enqueued_at
        if c.live:  # a callback entry has nobody on the line to take out
            self._command(ExitQueue(tenant_id=self.tenant_id, contact=c.id, queue=q.name,
                                    route=route, reason=reason))
        self._event(ContactExited(tenant_id=self.tenant_id, at=now, cause=reason,
                                  contact=c.id, queue=q.name, route=route, waited=waited))
        self._drop(c)

    def _count_abandon(self, q: _Queue, waited: float) -> None:
        q.counters.abandoned += 1
        if waited < q.cfg.short_abandon:
            q.counters.abandoned_short += 1
        elif waited <= q.cfg.service_level_target:
            q.counters.abandoned_in_target += 1

    def _not_taken(self, c: _Contact, a: _Agent, now: float, cause: str) -> None:
        """An offer ended by the agent not taking it (R-5.2e): the agent is set not ready,
        the contact goes on to the next agent or back to its place."""
        q = c.queue
        del c.offers[a.id]
        a.contact = None
        declined = cause == "declined"
        if declined:
            a.counters.declined += 1
        else:
            a.counters.no_answer += 1
        q.counters.no_answer += 1
        self._event(NoAnswer(tenant_id=self.tenant_id, at=now, cause=cause, contact=c.id,
                             agent=a.id, queue=q.name))
        action = "decline" if declined else "no_answer"
        if a.break_pending:
            self._set(a, A.BREAK, now, cause, action=action)
        else:
            self._set(a, A.NOT_READY, now, cause, action=action,
                      reason="declined" if declined else "no_answer")
        if not c.offers:
            self._cancel_timer(c, "ring")
            self._requeue(c, now, cause)

    def _callback_fail(self, c: _Contact, now: float, cause: str) -> None:
        q = c.queue
        self._cancel_timer(c, "callback")
        if c.agent is not None:
            self._release(c.agent, now, f"callback_{cause}")
            c.agent = None
        c.callback_attempts += 1
        q.counters.callbacks_failed += 1
        final = c.callback_attempts >= q.cfg.callback_attempts or q.removed
        self._event(CallbackFailed(tenant_id=self.tenant_id, at=now, cause=cause,
                                   contact=c.id, queue=q.name, attempt=c.callback_attempts,
                                   final=final))
        if final:
            q.counters.callbacks_dropped += 1
            self._drop(c)
        else:
            self._cstate(c, C.PARKED)
            self._timer(c, "retry", now + q.cfg.callback_retry_delay)

    # ----------------------------------------------------------------- routing

    def _pool(self, q: _Queue, req: Requirement) -> _Pool:
        pool = q.pools.pop(req, None)
        if pool is None:
            if len(q.pools) >= POOL_LIMIT:
                self._evict_pools(q)
            pool = _Pool(next(self._pids), q, req)
            for a in q.agents:
                if matches(a.cfg.skills, req):
                    pool.members.add(a.id)
                    a.pools[pool.pid] = pool
                    if a.state is A.READY:
                        pool.ready.push(a.id, self._agent_key(a, pool))
        q.pools[req] = pool  # most recently used last
        return pool

    def _repool(self, pool: _Pool) -> None:
        """The pool's members and ready heap again, from its queue's agents now (the
        waiting contacts stay: they depend on the requirement only)."""
        members = {a.id for a in pool.queue.agents if matches(a.cfg.skills, pool.req)}
        for agent_id in pool.members - members:  # (a removed agent is still known here)
            self._agents[agent_id].pools.pop(pool.pid, None)
        for agent_id in members - pool.members:
            self._agents[agent_id].pools[pool.pid] = pool
        pool.members = members
        self._rekey_ready(pool)

    def _rekey_ready(self, pool: _Pool) -> None:
        """The pool's ready heap again, with the keys of its queue's strategy now."""
        pool.ready = IndexedHeap()
        for agent_id in pool.members:
            a = self._agents[agent_id]
            if a.state is A.READY:
                pool.ready.push(a.id, self._agent_key(a, pool))

    def _evict_pools(self, q: _Queue) -> None:
        for req, pool in list(q.pools.items()):
            if len(q.pools) < POOL_LIMIT:
                break
            if pool.waiting:
                continue
            for agent_id in pool.members:
                del self._agents[agent_id].pools[pool.pid]
            del q.pools[req]

    def _settle(self, now: float) -> None:
        """Route until no waiting contact has a ready agent in one of its pools."""
        self._now = now
        contacts, agents = self._pending_contacts, self._pending_agents
        while contacts or agents:
            while contacts:
                c = contacts.popleft()
                if c.state is C.WAITING and self._contacts.get(c.id) is c:
                    self._route_contact(c, now)
            while agents and not contacts:
                a = agents.popleft()
                if a.state is A.READY:
                    self._route_agent(a, now)

    def _route_contact(self, c: _Contact, now: float) -> None:
        if c.live and c.queue.cfg.strategy == "ring_all":
            chosen: dict[str, _Agent] = {}
            for pool in c.pools:
                for _, agent_id in pool.ready.ordered():
                    chosen.setdefault(agent_id, self._agents[agent_id])
            if chosen:
                self._offer(c, list(chosen.values()), now)
            return
        for pool in c.pools:
            top = pool.ready.peek()
            if top is not None:
                a = self._agents[top[1]]
                if c.live:
                    self._offer(c, [a], now)
                else:
                    self._place_callback(c, a, now)
                return

    def _route_agent(self, a: _Agent, now: float) -> None:
        best: tuple[Key, str] | None = None
        for pool in a.pools.values():
            top = pool.waiting.peek()
            if top is not None and (best is None or top[0] < best[0]):
                best = top
        if best is None:
            return
        # The contact picks among the agents ready now by its queue's strategy (usually
        # this one: any other would have taken it already); if that was another agent,
        # this one looks again.
        self._route_contact(self._contacts[best[1]], now)
        if a.state is A.READY:
            self._pending_agents.appendleft(a)

    def _offer(self, c: _Contact, agents: Iterable[_Agent], now: float) -> None:
        q = c.queue
        self._leave_line(c)
        self._cstate(c, C.OFFERED)
        chosen = list(agents)
        ring_all = q.cfg.strategy == "ring_all"
        c.ring_all = ring_all
        for a in chosen:
            c.offers[a.id] = None
        for a in chosen:
            a.contact = c
            if q.cfg.strategy == "round_robin":
                a.rr[q.name] = next(self._rr)
            self._set(a, A.RESERVED, now, "offer", action="offer")
            self._make_offer(c, a, now, ring_all=ring_all)
        self._timer(c, "ring", now + q.cfg.ring_timeout)

    def _make_offer(self, c: _Contact, a: _Agent, now: float, *, ring_all: bool) -> None:
        q = c.queue
        night = self._is_night(now)
        a.counters.offered += 1
        q.counters.offered += 1
        self._command(Offer(
            tenant_id=self.tenant_id, contact=c.id, agent=a.id, queue=q.name,
            timeout=q.cfg.ring_timeout, auto_answer=a.cfg.auto_answer, language=c.language,
            medium=c.medium, data=c.data, night_alert=night,
            announce_agent=q.cfg.announce_agent, ring_all=ring_all, callback=c.was_callback))
        self._event(OfferMade(tenant_id=self.tenant_id, at=now, cause="routed", contact=c.id,
                              agent=a.id, queue=q.name, ring_all=ring_all, night_alert=night))

    def _cancel_offer(self, c: _Contact, a: _Agent, reason: str, now: float) -> None:
        self._command(CancelOffer(tenant_id=self.tenant_id, contact=c.id, agent=a.id,
                                  reason=reason))
        self._event(OfferCancelled(tenant_id=self.tenant_id, at=now, cause=reason,
                                   contact=c.id, agent=a.id, queue=c.queue.name))

    def _place_callback(self, c: _Contact, a: _Agent, now: float) -> None:
        q = c.queue
        self._leave_line(c)
        self._cstate(c, C.CALLING_BACK)
        c.agent = a
        a.contact = c
        if q.cfg.strategy == "round_robin":
            a.rr[q.name] = next(self._rr)
        self._set(a, A.RESERVED, now, "callback", action="offer")
        attempt = c.callback_attempts + 1
        q.counters.callbacks_placed += 1
        self._command(PlaceCallback(tenant_id=self.tenant_id, contact=c.id, queue=q.name,
                                    agent=a.id, number=c.callback_number,
                                    timeout=q.cfg.callback_timeout, attempt=attempt,
                                    data=c.data))
        self._event(CallbackPlaced(tenant_id=self.tenant_id, at=now, cause="agent_free",
                                   contact=c.id, queue=q.name, agent=a.id, attempt=attempt))
        self._timer(c, "callback", now + q.cfg.callback_timeout)

    # ----------------------------------------------------------------- timers

    def _timer(self, owner: _Agent | _Contact, kind: str, when: float) -> None:
        current = owner.timers.get(kind)
        if current is not None and current[1] == when:
            return
        seq = next(self._seq)
        owner.timers[kind] = (seq, when)
        heapq.heappush(self._timers, (when, seq, kind, owner.id))

    def _retime(self, owner: _Agent | _Contact, kind: str, old: float | None,
                new: float | None, now: float) -> None:
        """A running timer whose period went from ``old`` to ``new``: counted again from
        its start (at ``now`` when that is already past); none when ``new`` is None."""
        current = owner.timers.get(kind)
        if current is None or old == new:
            return
        if new is None:
            del owner.timers[kind]
        elif old is not None:  # (else started by another queue: it re-arms by the new one)
            self._timer(owner, kind, max(now, current[1] - old + new))

    def _rederive(self, c: _Contact, now: float) -> None:
        """The contact's requirements as if its queue's new rules had always applied:
        its own, plus those of the widening rules due by its waiting time up to the
        first due move (which ``_catch_up`` applies when the contact is in line).
        ``ContactOverflowed`` only for a requirement it did not have."""
        known = frozenset(c.alts)
        rules = c.queue.cfg.overflow
        c.alts = [self._base_requirement(c, c.queue)]
        c.next_rule = 0
        while c.next_rule < len(rules):
            rule = rules[c.next_rule]
            if rule.to_queue is not None or c.enqueued_at + rule.after > now:
                break
            c.next_rule += 1
            self._apply_rule(c, rule, now, known)
        c.timers.pop("overflow", None)  # set again when it is back in line

    @staticmethod
    def _cancel_timer(owner: _Agent | _Contact, kind: str) -> None:
        owner.timers.pop(kind, None)

    def _timer_live(self, seq: int, kind: str, ident: str) -> bool:
        if kind == "midnight":
            return seq == self._midnight
        owner: _Agent | _Contact | None
        if kind in _AGENT_TIMERS:
            owner = self._agents.get(ident)
        else:
            owner = self._contacts.get(ident)
        if owner is None:
            return False
        current = owner.timers.get(kind)
        return current is not None and current[0] == seq

    def _fire(self, kind: str, ident: str, now: float) -> None:
        if kind == "midnight":
            self._reset_day(now, "midnight")
            seq = next(self._seq)
            self._midnight = seq
            heapq.heappush(self._timers, (now + DAY, seq, "midnight", ""))
            return
        if kind == "wrap":
            a = self._agents[ident]
            del a.timers[kind]
            target = A.BREAK if a.break_pending else A.READY
            self._set(a, target, now, "wrap_up_ended", action="wrap_timeout")
            return
        c = self._contacts[ident]
        del c.timers[kind]
        q = c.queue
        if kind == "ring":
            for agent_id in list(c.offers):
                a = self._agents[agent_id]
                self._cancel_offer(c, a, "timeout", now)
                self._not_taken(c, a, now, "timeout")
        elif kind == "max_wait":
            if c.state is C.WAITING and not c.was_callback:
                self._exit(c, "max_wait", now)
        elif kind == "overflow":
            if c.state is C.WAITING:
                self._leave_line(c)
                if self._catch_up(c, now):
                    self._enter_line(c, now, "")
        elif kind == "announce":
            every = q.cfg.announce_position_every
            if c.live and every is not None and c.state in (C.WAITING, C.OFFERED):
                if c.state is C.WAITING:
                    position = q.line.rank(c.line_key) + 1
                    self._command(Announce(tenant_id=self.tenant_id, contact=c.id,
                                           queue=q.name, position=position,
                                           ewt_seconds=self.estimated_wait(q.name, position)))
                self._timer(c, "announce", now + every)
        elif kind == "callback":
            self._command(CancelCallback(tenant_id=self.tenant_id, contact=c.id,
                                         reason="timeout"))
            self._callback_fail(c, now, "timeout")
        elif kind == "retry":
            self._requeue(c, now, "callback_retry")

    def _is_night(self, now: float) -> bool:
        if self._night is None or self._local is None:
            return False
        ref, seconds = self._local
        minute = ((seconds + now - ref) % DAY) / 60.0
        start, end = self._night
        if start <= end:
            return start <= minute < end
        return minute >= start or minute < end

    def _reset_day(self, now: float, cause: str) -> None:
        for a in self._agents.values():
            self._account(a, now)
            a.counters = AgentCounters()
        for q in self._queues.values():
            q.counters = QueueCounters()
            if q.cfg.strategy == "least_occupied":  # its keys count today's contacts
                for pool in q.pools.values():
                    for agent_id in list(pool.ready):
                        pool.ready.remove(agent_id)
                        pool.ready.push(agent_id, self._agent_key(self._agents[agent_id], pool))
        self._event(DayReset(tenant_id=self.tenant_id, at=now, cause=cause))

    # ----------------------------------------------------------------- output helpers

    def _command(self, command: Command) -> None:
        self._commands.append(command)

    def _event(self, event: AcdEvent) -> None:
        self._events.append(event)

    def _agent_snapshot(self, a: _Agent, now: float) -> AgentSnapshot:
        c = a.contact
        return AgentSnapshot(
            id=a.id, state=a.state, reason=a.reason, in_state=now - a.since,
            contact=None if c is None else c.id, queue=None if c is None else c.queue.name,
            medium=a.medium, outbound=a.outbound, break_pending=a.break_pending)

    # ----------------------------------------------------------------- self-check

    def audit(self) -> list[str]:
        """Every broken internal invariant, as text (O(everything): for tests)."""
        out: list[str] = []
        waiting = [c for c in self._contacts.values() if c.state is C.WAITING]
        for q in self._queues.values():
            for req, pool in q.pools.items():
                pool.ready.check()
                pool.waiting.check()
                members = {a.id for a in q.agents if matches(a.cfg.skills, req)}
                if pool.members != members:
                    out.append(f"pool {q.name}{req}: members {pool.members} != {members}")
                for agent_id in pool.ready:
                    if self._agents[agent_id].state is not A.READY:
                        out.append(f"pool {q.name}{req}: {agent_id} not ready")
                for contact_id in pool.waiting:
                    c = self._contacts.get(contact_id)
                    if c is None or c.state is not C.WAITING or c.queue is not q \
                            or pool not in c.pools:
                        out.append(f"pool {q.name}{req}: stale contact {contact_id}")
            mine = [c for c in waiting if c.queue is q]
            if len(q.line) != len(mine) or len(q.ages) != len(mine):
                out.append(f"queue {q.name}: line {len(q.line)}/{len(q.ages)} != {len(mine)}")
            counts = dict.fromkeys(C, 0)
            for c in self._contacts.values():
                if c.queue is q:
                    counts[c.state] += 1
            for state in IN_QUEUE | {C.CONNECTED}:
                if counts[state] != q.counts[state]:
                    out.append(f"queue {q.name}: {state} count {q.counts[state]} != "
                               f"{counts[state]}")
            staffed = sum(a.state in STAFFED for a in q.agents)
            ready = sum(a.state is A.READY for a in q.agents)
            if (staffed, ready) != (q.staffed, q.ready):
                out.append(f"queue {q.name}: staffed/ready {q.staffed}/{q.ready} != "
                           f"{staffed}/{ready}")
        for c in waiting:
            if [p.req for p in c.pools] != c.alts:
                out.append(f"contact {c.id}: pools do not match its requirements")
            for pool in c.pools:
                if c.id not in pool.waiting:
                    out.append(f"contact {c.id}: missing from pool {pool.req}")
                if pool.ready:
                    out.append(f"contact {c.id} waits while {pool.ready.peek()} is ready")
            try:
                c.queue.line.rank(c.line_key)
            except KeyError:
                out.append(f"contact {c.id}: not in its line")
        for c in self._contacts.values():
            if c.queue.removed and c.state in (C.WAITING, C.PARKED):
                out.append(f"contact {c.id} in {c.state} in removed queue {c.queue.name}")
            if not c.queue.removed and self._queues.get(c.queue.name) is not c.queue:
                out.append(f"contact {c.id}: queue {c.queue.name} unknown")
            if c.state is C.OFFERED:
                if not c.offers:
                    out.append(f"contact {c.id}: offered to nobody")
                if len(c.offers) > 1 and not c.ring_all:
                    out.append(f"contact {c.id}: offered to {list(c.offers)}")
                for agent_id in c.offers:
                    a = self._agents[agent_id]
                    if a.state is not A.RESERVED or a.contact is not c:
                        out.append(f"contact {c.id}: offer to {agent_id} in {a.state}")
            elif c.offers:
                out.append(f"contact {c.id} in {c.state} has offers")
            if c.state is C.CONNECTED and (c.agent is None or c.agent.contact is not c):
                out.append(f"contact {c.id}: connected without its agent")
        configured = {ac.id for ac in self.config.agents}
        if [q.name for q in self._queues.values()] != [qc.name for qc in self.config.queues] \
                or any(q.removed or q.cfg is not qc
                       for q, qc in zip(self._queues.values(), self.config.queues, strict=True)):
            out.append("queues differ from the configuration")
        breaks: dict[str, int] = {}
        for a in self._agents.values():
            if a.removed:
                if a.state not in (A.TALKING, A.HOLD) or a.queues or a.pools \
                        or a.break_pending:
                    out.append(f"removed agent {a.id} in {a.state} still takes part")
            elif a.id not in configured or a.cfg is not self.config.agents[a.order]:
                out.append(f"agent {a.id}: not the configuration's")
            if a.state is A.BREAK or a.break_pending:
                breaks[a.cfg.break_group] = breaks.get(a.cfg.break_group, 0) + 1
            if a.break_pending and a.state not in BUSY:
                out.append(f"agent {a.id}: break pending in {a.state}")
            expected = {p.pid for q in a.queues for p in q.pools.values()
                        if matches(a.cfg.skills, p.req)}
            if set(a.pools) != expected:
                out.append(f"agent {a.id}: in pools {set(a.pools)} != {expected}")
            for pool in a.pools.values():
                if (a.state is A.READY) != (a.id in pool.ready):
                    out.append(f"agent {a.id} in {a.state}: ready heap of {pool.req} wrong")
            c = a.contact
            if a.state is A.RESERVED:
                ok = c is not None and self._contacts.get(c.id) is c and (
                    (c.state is C.OFFERED and a.id in c.offers)
                    or (c.state is C.CALLING_BACK and c.agent is a))
                if not ok:
                    out.append(f"agent {a.id}: reserved for nothing")
            elif a.state in (A.TALKING, A.HOLD) and not a.outbound:
                if c is None or c.state is not C.CONNECTED or c.agent is not a:
                    out.append(f"agent {a.id}: talking without its contact")
            elif c is not None:
                out.append(f"agent {a.id} in {a.state} holds contact {c.id}")
        for group, count in self._breaks.items():
            if breaks.get(group, 0) != count:
                out.append(f"break group {group!r}: {count} != {breaks.get(group, 0)}")
        return out
