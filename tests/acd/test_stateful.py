"""Random sequences of everything agents, callers, the edge and the clock can do, over
several queues and agents with every strategy, and new configurations applied on the
way (``reconfigure`` with strategies, ring and wrap-up times, limits, overflow rules,
skills, queues and tenant settings perturbed, an agent or a queue added or removed, now
and then an invalid one); after every step:

- no agent holds two offers; a contact is offered to one agent at a time, except in a
  ring-all queue, where the first answer cancels every other offer of that contact;
- no contact is lost: each one enqueued is still in the core or had exactly one final
  event (ended, abandoned, exited, callback dropped), and never both; a contact of a
  removed queue is never left waiting (it left, or is ringing, called back or connected);
- the core is settled: no waiting contact could go to a ready agent (checked from the
  public views with the configuration, not from the core's indexes), and ``audit()``
  finds its indexes consistent;
- a refused input changed nothing and produced no output.

The offers are tracked from the commands the edge would get (Offer, CancelOffer) and
the inputs the test gave, not from the core's own state.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from appliance.acd import (
    Acd,
    AcdError,
    AgentConfig,
    Announce,
    CancelCallback,
    CancelOffer,
    ExitQueue,
    Offer,
    OverflowRule,
    PlaceCallback,
    QueueConfig,
    TenantAcdConfig,
    is_final,
)
from appliance.acd.events import (
    AcdReconfigured,
    CallbackFailed,
    ContactAbandoned,
    ContactEnded,
    ContactExited,
)
from appliance.acd.model import STRATEGIES, matches

AGENTS = [f"a{i}" for i in range(7)]
QUEUES = ["q0", "q1", "q2"]
ALL_AGENTS = [*AGENTS, "a7"]  # a7 only comes with a new configuration
ALL_QUEUES = [*QUEUES, "q3"]  # so does q3
SKILLS = ["x", "y", "z"]
AGENT_SKILLS = [
    {"x": 8, "y": 3}, {"x": 2}, {"y": 9, "z": 4}, {"z": 6}, {"x": 5, "y": 5, "z": 5},
    {}, {"x": 10, "lang:fr": 3},
]
AGENT_QUEUES = [("q0", "q1"), ("q0",), ("q1", "q2"), ("q2",), ("q0", "q1", "q2"), ("q0",),
                ("q1",)]
REASONS = ["", "lunch", "training"]
CONTACT_SKILLS = [{}, {}, {"x": 1}, {"x": 5}, {"y": 2}, {"z": 3}, {"x": 3, "y": 3}, {"y": 9}]
# overflow rules a new configuration may give a queue (moves to a queue that is not there
# any more, or to itself, are left out; some combinations loop and are refused)
OVERFLOWS = [
    (),
    (OverflowRule(after=10, also_match={}),),
    (OverflowRule(after=5, lower_levels_by=3), OverflowRule(after=20, to_queue="q1")),
    (OverflowRule(after=15, also_match={"z": 1}), OverflowRule(after=40, to_queue="q2")),
    (OverflowRule(after=0, to_queue="q0"),),
    (OverflowRule(after=8, to_queue="q3"),),
]
QUEUE_CHANGES: dict[str, st.SearchStrategy[Any]] = {
    "strategy": st.sampled_from(STRATEGIES),
    "priority": st.integers(0, 2),
    "ring_timeout": st.sampled_from([3.0, 5.0, 10.0, 20.0]),
    "wrap_up": st.sampled_from([0.0, 4.0, None]),
    "max_wait": st.sampled_from([None, 20.0, 60.0, 100.0]),
    "max_length": st.sampled_from([None, 1, 4]),
    "announce_position_every": st.sampled_from([None, 5.0, 12.0]),
    "match_language": st.booleans(),
    "overflow": st.sampled_from(OVERFLOWS),
    "callback_allowed": st.booleans(),
    "callback_attempts": st.integers(1, 3),
    "callback_retry_delay": st.sampled_from([0.0, 10.0, 40.0]),
    "callback_timeout": st.sampled_from([5.0, 20.0]),
}
AGENT_CHANGES: dict[str, st.SearchStrategy[Any]] = {
    "skills": st.sampled_from(AGENT_SKILLS),
    "queues": st.lists(st.sampled_from(ALL_QUEUES), unique=True, max_size=3).map(tuple),
    "break_group": st.sampled_from(["", "team"]),
    "auto_answer": st.booleans(),
}
SETTINGS_CHANGES: dict[str, st.SearchStrategy[Any]] = {
    "max_on_break": st.integers(0, 2),
    "break_groups": st.sampled_from([{"team": 0}, {"team": 1}, {"team": 2}]),
    "not_ready_reasons": st.sampled_from([("lunch", "training"), ("lunch",), ()]),
    "night_hours": st.sampled_from([None, ("22:00", "06:00"), ("00:00", "23:59")]),
}


def build(strategies: list[str], wraps: list[float | None]) -> TenantAcdConfig:
    queues = (
        QueueConfig(name="q0", strategy=strategies[0],  # type: ignore[arg-type]
                    ring_timeout=10, wrap_up=wraps[0], max_wait=90, max_wait_route="vm",
                    overflow=(OverflowRule(after=15, also_match={"z": 1}),
                              OverflowRule(after=30, lower_levels_by=4),
                              OverflowRule(after=45, to_queue="q1")),
                    announce_position_every=12, callback_allowed=True, callback_attempts=2,
                    callback_retry_delay=10, callback_timeout=20, short_abandon=3),
        QueueConfig(name="q1", priority=2, strategy=strategies[1],  # type: ignore[arg-type]
                    ring_timeout=7, wrap_up=wraps[1], max_length=4, max_length_route="busy",
                    max_wait=100,
                    overflow=(OverflowRule(after=20, also_match={}),),
                    match_language=True, callback_allowed=True, callback_attempts=2,
                    callback_retry_delay=0),
        QueueConfig(name="q2", priority=1, strategy=strategies[2],  # type: ignore[arg-type]
                    ring_timeout=5, wrap_up=wraps[2],
                    max_wait=60, overflow=(OverflowRule(after=25, to_queue="q1"),)),
    )
    agents = tuple(
        AgentConfig(id=a, skills=AGENT_SKILLS[i], queues=AGENT_QUEUES[i],
                    break_group="team" if i % 2 else "", auto_answer=i == 3)
        for i, a in enumerate(AGENTS))
    return TenantAcdConfig(tenant_id="acme", queues=queues, agents=agents, max_on_break=1,
                           break_groups={"team": 2}, not_ready_reasons=("lunch", "training"),
                           night_hours=("22:00", "06:00"))


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.offers: dict[str, str] = {}  # agent -> contact, from Offer / CancelOffer
        self.reserved: dict[str, str] = {}  # agent -> contact, from PlaceCallback
        self.enqueued: list[str] = []
        self.finals: dict[str, int] = {}
        self.next_id = 0
        self.ring_all: dict[str, bool] = {}  # agent -> its offer was made ring-all
        self.last_events: list[Any] = []

    @initialize(  # q0 and q1 get any strategy, q2 is always a ring-all team
        strategies=st.lists(st.sampled_from(STRATEGIES), min_size=2, max_size=2).map(
            lambda two: [*two, "ring_all"]),
        wraps=st.lists(st.sampled_from([0.0, 4.0, None]), min_size=3, max_size=3),
        clock=st.floats(0, 86399))
    def setup(self, strategies: list[str], wraps: list[float | None], clock: float) -> None:
        self.config = build(strategies, wraps)
        self.strategies = {q.name: q.strategy for q in self.config.queues}
        self.acd = Acd(self.config)
        self.acd.set_local_time(0.0, clock)
        self.collect()

    # ----------------------------------------------------------------- plumbing

    def present(self) -> list[str]:
        """The agents the core knows (those of the configuration, and removed ones still
        in their call)."""
        return [a.id for a in self.acd.snapshot(self.now).agents]

    def fingerprint(self) -> Any:
        snap = self.acd.snapshot(self.now)
        return (snap, [self.acd.contact(c) for c in self.enqueued],
                [self.acd.agent_counters(a, self.now) for a in self.present()],
                self.acd.next_deadline(), self.acd.config)

    def attempt(self, fn: Any, *args: Any, **kw: Any) -> bool:
        """Call an input; a refusal must leave everything as it was."""
        before = self.fingerprint()
        try:
            fn(*args, **kw)
        except AcdError:
            assert self.fingerprint() == before
            assert self.acd.commands() == [] and self.acd.events() == []
            return False
        self.collect()
        return True

    def collect(self) -> None:
        commands = self.acd.commands()
        for cmd in commands:
            if isinstance(cmd, Offer):
                assert cmd.agent not in self.offers, f"{cmd.agent} holds two offers"
                others = [a for a, c in self.offers.items() if c == cmd.contact]
                if others:
                    assert cmd.ring_all, f"{cmd.contact} offered to {others} and {cmd.agent}"
                    assert all(self.ring_all[a] for a in others)
                if cmd.ring_all:
                    assert self.strategy_of(cmd.queue) == "ring_all"
                self.offers[cmd.agent] = cmd.contact
                self.ring_all[cmd.agent] = cmd.ring_all
            elif isinstance(cmd, CancelOffer):
                assert self.offers.pop(cmd.agent, None) == cmd.contact
            elif isinstance(cmd, PlaceCallback):
                assert cmd.agent not in self.offers and cmd.agent not in self.reserved
                assert cmd.contact not in self.reserved.values()
                self.reserved[cmd.agent] = cmd.contact
            elif isinstance(cmd, CancelCallback):
                self.unreserve(cmd.contact)
            else:
                assert isinstance(cmd, ExitQueue | PlaceCallback | CancelCallback | Announce)
        self.last_events = self.acd.events()
        for event in self.last_events:
            assert event.tenant_id == "acme"
            assert event.at <= self.now or event.at == 0.0
            if is_final(event):
                assert isinstance(event, ContactEnded | ContactAbandoned | ContactExited
                                  | CallbackFailed)
                self.finals[event.contact] = self.finals.get(event.contact, 0) + 1
                self.unreserve(event.contact)

    def unreserve(self, contact: str) -> None:
        self.reserved = {a: c for a, c in self.reserved.items() if c != contact}

    def strategy_of(self, queue: str) -> str:
        """The queue's strategy in the configuration applied (its last one, for a queue
        removed since)."""
        current = {q.name: q.strategy for q in self.acd.config.queues}
        return current.get(queue) or self.strategies[queue]

    def pick(self, items: list[str], index: int) -> str | None:
        return items[index % len(items)] if items else None

    def contacts_in(self, *states: str) -> list[str]:
        out = []
        for cid in self.enqueued:
            view = self.acd.contact(cid)
            if view is not None and view.state in states:
                out.append(cid)
        return out

    # ----------------------------------------------------------------- rules

    @rule(agent=st.sampled_from(ALL_AGENTS), action=st.sampled_from(
        ["login_ready", "login_ready", "login", "logout", "ready", "ready", "ready", "ready",
         "not_ready",
         "not_ready_bogus", "break", "cancel_break", "hold", "resume", "start_outbound",
         "end_outbound"]), reason=st.sampled_from(REASONS))
    def agent_action(self, agent: str, action: str, reason: str) -> None:
        acd, now = self.acd, self.now
        if action == "login_ready":
            self.attempt(acd.login, agent, now, ready=True)
        elif action == "logout":
            if self.attempt(acd.logout, agent, now):
                self.reserved.pop(agent, None)
        elif action == "login":
            self.attempt(acd.login, agent, now)
        elif action == "ready":
            self.attempt(acd.set_ready, agent, now)
        elif action == "not_ready":
            self.attempt(acd.set_not_ready, agent, reason, now)
        elif action == "not_ready_bogus":
            assert not self.attempt(acd.set_not_ready, agent, "bogus", now)
        elif action == "break":
            self.attempt(acd.request_break, agent, now)
        else:
            self.attempt(getattr(acd, action), agent, now)

    @rule()
    def everyone_ready(self) -> None:
        for agent in ALL_AGENTS:
            self.attempt(self.acd.login, agent, self.now, ready=True)
            self.attempt(self.acd.set_ready, agent, self.now)

    @rule(queue=st.sampled_from([*ALL_QUEUES, QUEUES[0], "nope"]), priority=st.integers(0, 2),
          skills=st.sampled_from(CONTACT_SKILLS) | st.dictionaries(
              st.sampled_from(SKILLS), st.integers(1, 10), max_size=2),
          language=st.sampled_from(["", "", "fr"]))
    def enqueue(self, queue: str, priority: int, skills: dict[str, int], language: str) -> None:
        cid = f"c{self.next_id}"
        self.next_id += 1
        if self.attempt(self.acd.enqueue, cid, queue, self.now, priority=priority,
                        skills=skills, language=language, data={"k": cid}):
            self.enqueued.append(cid)

    @rule(index=st.integers(0, 99),
          how=st.sampled_from(["answer", "answer", "answer", "decline", "fail"]))
    def respond(self, index: int, how: str) -> None:
        pairs = sorted(self.offers.items())
        if not pairs:
            return
        agent, contact = pairs[index % len(pairs)]
        others = [a for a, c in self.offers.items() if c == contact and a != agent]
        fn = {"answer": self.acd.answered, "decline": self.acd.declined,
              "fail": self.acd.no_answer}[how]
        del self.offers[agent]
        assert self.attempt(fn, contact, agent, self.now)
        if how == "answer":  # the first answer wins: every other offer was cancelled
            for other in others:
                assert self.offers.get(other) != contact

    @rule(index=st.integers(0, 99), action=st.sampled_from(
        ["abandon", "end", "end", "transfer", "request_callback", "callback_answered",
         "callback_failed", "stale_answer", "any"]),
        queue=st.sampled_from(ALL_QUEUES), agent=st.sampled_from(ALL_AGENTS),
        any_action=st.sampled_from(["abandon", "ended", "callback_answered",
                                    "callback_failed", "request_callback"]))
    def contact_action(self, index: int, action: str, queue: str, agent: str,
                       any_action: str) -> None:
        acd, now = self.acd, self.now
        if action == "abandon":
            cid = self.pick(self.contacts_in("waiting", "offered", "calling_back", "parked"),
                            index)
            if cid is not None:
                assert self.attempt(acd.abandon, cid, now)
        elif action == "end":
            cid = self.pick(self.contacts_in("connected"), index)
            if cid is not None:
                assert self.attempt(acd.ended, cid, now)
        elif action == "transfer":
            cid = self.pick(self.contacts_in("connected"), index)
            if cid is not None:
                known = queue in {q.name for q in self.config.queues}
                assert self.attempt(acd.transfer_to_queue, cid, queue, now,
                                    priority=index % 3) == known
        elif action == "request_callback":
            cid = self.pick(self.contacts_in("waiting"), index)
            if cid is not None:
                self.attempt(acd.request_callback, cid, "+15550100", now)
        elif action in ("callback_answered", "callback_failed"):
            cid = self.pick(self.contacts_in("calling_back"), index)
            if cid is not None:
                agent_of = [a for a, c in self.reserved.items() if c == cid]
                self.unreserve(cid)
                assert self.attempt(getattr(acd, action), cid, now)
                if action == "callback_answered" and agent_of:  # rings the reserved agent
                    assert self.offers.get(agent_of[0]) == cid
        elif action == "stale_answer":
            # an answer for an offer that is not (or no longer) the agent's is refused
            cid = self.pick(self.enqueued, index)
            if cid is not None and self.offers.get(agent) != cid:
                assert not self.attempt(acd.answered, cid, agent, now)
        else:  # any input on any contact, valid or not
            cid = self.pick(self.enqueued, index)
            if cid is None:
                return
            view = acd.contact(cid)
            if any_action.startswith("callback") and view is not None \
                    and view.state == "calling_back":
                self.unreserve(cid)  # the reservation ends (or becomes an offer)
            if any_action == "request_callback":
                self.attempt(acd.request_callback, cid, "+15550100", now)
            else:
                self.attempt(getattr(acd, any_action), cid, now)

    @rule(action=st.sampled_from(["tick", "tick", "deadline", "deadline", "deadline",
                                  "reset"]),
          dt=st.floats(0, 30))
    def clock(self, action: str, dt: float) -> None:
        if action == "tick":
            self.now += dt
        elif action == "deadline":
            deadline = self.acd.next_deadline()
            if deadline is not None:
                self.now = max(self.now, deadline)
        if action == "reset":
            self.acd.reset_day(self.now)
            self.collect()
            return
        self.acd.tick(self.now)
        self.collect()
        deadline = self.acd.next_deadline()
        assert deadline is None or deadline > self.now, "tick left a due timer"

    @rule(data=st.data())
    def reconfigure(self, data: st.DataObject) -> None:
        """A new configuration: the current one perturbed."""
        draw, old = data.draw, self.config
        names = [q.name for q in old.queues]
        removed = set()
        if len(names) > 1 and draw(st.integers(0, 3)) == 0:
            removed.add(draw(st.sampled_from(names)))
        spare = [n for n in ALL_QUEUES if n not in names]
        added = [draw(st.sampled_from(spare))] if spare and draw(st.integers(0, 3)) == 0 \
            else []
        queues = [dataclasses.replace(q, **draw(st.fixed_dictionaries({}, optional={
            k: v for k, v in QUEUE_CHANGES.items()})))
            for q in old.queues if q.name not in removed]
        queues += [QueueConfig(name=n, **draw(st.fixed_dictionaries({}, optional={
            k: v for k, v in QUEUE_CHANGES.items()}))) for n in added]
        known = {q.name for q in queues}
        queues = [dataclasses.replace(q, overflow=tuple(
            r for r in q.overflow if r.to_queue is None
            or (r.to_queue in known and r.to_queue != q.name))) for q in queues]
        gone = draw(st.sampled_from([None, None, *(a.id for a in old.agents)]))
        agents = [dataclasses.replace(a, **draw(st.fixed_dictionaries({}, optional={
            k: v for k, v in AGENT_CHANGES.items()})))
            for a in old.agents if a.id != gone]
        have = {a.id for a in old.agents}
        new_agents = [a for a in ALL_AGENTS if a not in have and a != gone]
        if new_agents and draw(st.integers(0, 2)) == 0:
            agents.append(AgentConfig(id=draw(st.sampled_from(new_agents)), **draw(
                st.fixed_dictionaries({k: v for k, v in AGENT_CHANGES.items()}))))
        agents = [dataclasses.replace(a, queues=tuple(n for n in a.queues if n in known))
                  for a in agents]
        if draw(st.integers(0, 4)) == 0:
            agents = draw(st.permutations(agents))
        settings = draw(st.fixed_dictionaries({}, optional={
            k: v for k, v in SETTINGS_CHANGES.items()}))
        tenant = draw(st.sampled_from(["acme"] * 15 + ["other"]))
        new = dataclasses.replace(old, tenant_id=tenant, queues=tuple(queues),
                                  agents=tuple(agents), **settings)
        if not self.attempt(self.acd.reconfigure, new, self.now):
            return
        assert tenant == "acme"
        changes = [e for e in self.last_events if isinstance(e, AcdReconfigured)]
        assert len(changes) == (new != old)
        self.config = new
        self.strategies.update({q.name: q.strategy for q in new.queues})
        for agent in have - {a.id for a in new.agents}:
            self.reserved.pop(agent, None)  # a callback dialled for it goes on without it
        deadline = self.acd.next_deadline()
        assert deadline is None or deadline > self.now, "reconfigure left a due timer"

    # ----------------------------------------------------------------- invariants

    @invariant()
    def offers_match_the_core(self) -> None:
        if not hasattr(self, "acd"):
            return
        per_contact: dict[str, set[str]] = {}
        for agent, contact in self.offers.items():
            per_contact.setdefault(contact, set()).add(agent)
        present = self.present()
        for agent in ALL_AGENTS:
            if agent not in present:
                assert agent not in self.offers and agent not in self.reserved, agent
                continue
            reserved = agent in self.offers or agent in self.reserved
            assert (self.acd.agent(agent, self.now).state == "reserved") == reserved, agent
            assert not (agent in self.offers and agent in self.reserved
                        and self.offers[agent] != self.reserved[agent])
        for cid in self.enqueued:
            view = self.acd.contact(cid)
            offered = set() if view is None else set(view.offered_to)
            assert offered == per_contact.get(cid, set()), cid
            assert (view is not None and view.state == "offered") == bool(offered), cid
            if len(offered) > 1:  # made ring-all (the queue's strategy may have changed)
                assert view is not None and all(self.ring_all[a] for a in offered)

    @invariant()
    def no_contact_lost(self) -> None:
        if not hasattr(self, "acd"):
            return
        for cid in self.enqueued:
            alive = self.acd.contact(cid) is not None
            finals = self.finals.get(cid, 0)
            assert finals <= 1, f"{cid} ended {finals} times"
            assert alive != (finals == 1), f"{cid}: in the core {alive}, finals {finals}"
        assert set(self.acd.contact_ids()) <= set(self.enqueued)
        queues = {q.name for q in self.config.queues}
        for cid in self.acd.contact_ids():
            view = self.acd.contact(cid)
            assert view is not None
            if view.queue not in queues:
                assert view.state in ("offered", "calling_back", "connected"), (cid, view)

    @invariant()
    def settled(self) -> None:
        if not hasattr(self, "acd"):
            return
        agents = {a.id: a for a in self.config.agents}
        ready = {a for a in self.present() if self.acd.agent(a, self.now).state == "ready"}
        assert ready <= set(agents), "a removed agent is ready"
        for cid in self.contacts_in("waiting"):
            view = self.acd.contact(cid)
            assert view is not None
            for a in ready:
                if view.queue in agents[a].queues:
                    assert not any(matches(agents[a].skills, req)
                                   for req in view.requirements), (cid, a)
        assert self.acd.audit() == []


AcdMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("ACD_EXAMPLES", "150")),
    stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestAcdMachine = AcdMachine.TestCase
