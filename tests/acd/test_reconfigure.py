"""``Acd.reconfigure``: a new configuration applied in place, everything kept live
(docs/ACD.md, "Reconfiguring"). Time is a fake clock the tests move by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from appliance.acd import (
    Acd,
    AcdConfigError,
    AgentState,
    Announce,
    CancelOffer,
    ExitQueue,
    InvalidArgument,
    InvalidTransition,
    Offer,
    OverflowRule,
    PlaceCallback,
    TenantAcdConfig,
    UnknownAgent,
    UnknownQueue,
)
from appliance.acd.daily import DailyStats
from appliance.acd.events import (
    AcdReconfigured,
    AgentStateChanged,
    BreakApproved,
    BreakCancelled,
    BreakRefused,
    CallbackFailed,
    ContactEnded,
    ContactExited,
    ContactOverflowed,
    ContactQueued,
    NoAnswer,
    OfferCancelled,
)
from appliance.agents import event_doc
from tests.acd.helpers import agent, only, queue

S = AgentState


class Clock:
    """The fake clock: ``now`` only moves when a test moves it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self, dt: float = 0.0) -> float:
        self.now += dt
        return self.now


def config(queues: Any, agents: Any, **kw: Any) -> TenantAcdConfig:
    return TenantAcdConfig(tenant_id="acme", queues=tuple(queues), agents=tuple(agents), **kw)


def start(cfg: TenantAcdConfig, clock: Clock) -> Acd:
    return Acd(cfg, clock())


def drain(acd: Acd) -> tuple[list[Any], list[Any]]:
    return acd.commands(), acd.events()


def with_queue(cfg: TenantAcdConfig, name: str, **changes: Any) -> TenantAcdConfig:
    return dataclasses.replace(cfg, queues=tuple(
        dataclasses.replace(q, **changes) if q.name == name else q for q in cfg.queues))


def with_agent(cfg: TenantAcdConfig, agent_id: str, **changes: Any) -> TenantAcdConfig:
    return dataclasses.replace(cfg, agents=tuple(
        dataclasses.replace(a, **changes) if a.id == agent_id else a for a in cfg.agents))


def without_agent(cfg: TenantAcdConfig, agent_id: str) -> TenantAcdConfig:
    return dataclasses.replace(cfg, agents=tuple(a for a in cfg.agents if a.id != agent_id))


def without_queue(cfg: TenantAcdConfig, name: str) -> TenantAcdConfig:
    return dataclasses.replace(
        cfg, queues=tuple(q for q in cfg.queues if q.name != name),
        agents=tuple(dataclasses.replace(a, queues=tuple(x for x in a.queues if x != name))
                     for a in cfg.agents))


def fingerprint(acd: Acd, now: float) -> Any:
    snap = acd.snapshot(now)
    return (snap, [acd.contact(c) for c in acd.contact_ids()],
            [acd.agent_counters(a.id, now) for a in snap.agents], acd.next_deadline(),
            acd.config)


def offers(commands: list[Any]) -> list[tuple[str, str]]:
    return [(o.contact, o.agent) for o in only(commands, Offer)]


def reconfigured(events: list[Any]) -> AcdReconfigured:
    (event,) = only(events, AcdReconfigured)
    return event


# ----------------------------------------------------------------- refusals


def test_an_invalid_configuration_or_another_tenant_changes_nothing() -> None:
    clock = Clock()
    cfg = config([queue("q"), queue("r")], [agent("a"), agent("b", queues=("r",))])
    acd = start(cfg, clock)
    acd.login("a", clock(1), ready=True)
    acd.enqueue("c1", "r", clock(1))
    drain(acd)
    before = fingerprint(acd, clock())
    bad = [
        with_agent(cfg, "a", queues=("nope",)),  # no such queue
        with_queue(cfg, "q", ring_timeout=0),
        with_queue(with_queue(cfg, "q", overflow=(OverflowRule(after=1, to_queue="r"),)),
                   "r", overflow=(OverflowRule(after=1, to_queue="q"),)),  # a loop
        dataclasses.replace(cfg, tenant_id="other"),
    ]
    for new in bad:
        with pytest.raises(AcdConfigError) as err:
            acd.reconfigure(new, clock.now + 1)
        assert err.value.code == "acd_config_invalid"
        assert fingerprint(acd, clock()) == before
        assert drain(acd) == ([], [])
    with pytest.raises(AcdConfigError) as err:
        acd.reconfigure(dataclasses.replace(cfg, tenant_id="other"), clock())
    assert err.value.path == "tenant_id"
    with pytest.raises(InvalidArgument):
        acd.reconfigure(with_queue(cfg, "q", priority=3), float("nan"))
    with pytest.raises(InvalidArgument):
        acd.reconfigure({"tenant_id": "acme"}, clock())  # type: ignore[arg-type]
    assert fingerprint(acd, clock()) == before and drain(acd) == ([], [])


def test_the_same_configuration_changes_nothing() -> None:
    clock = Clock()
    cfg = config([queue("q")], [agent("a")])
    acd = start(cfg, clock)
    acd.login("a", clock(1), ready=True)
    drain(acd)
    before = fingerprint(acd, clock())
    acd.reconfigure(config([queue("q")], [agent("a")]), clock.now + 1)  # equal, not the same
    assert drain(acd) == ([], [])
    assert fingerprint(acd, clock()) == before


def test_the_event_lists_what_changed() -> None:
    clock = Clock()
    cfg = config([queue("q"), queue("r"), queue("s")],
                 [agent("a"), agent("b"), agent("c", queues=("r",))], max_on_break=1)
    acd = start(cfg, clock)
    drain(acd)
    new = config([queue("q", strategy="round_robin"), queue("s"), queue("t")],
                 [agent("a"), agent("c", queues=("t",)), agent("d")],
                 max_on_break=2, night_hours=("22:00", "06:00"))
    acd.reconfigure(new, clock(5))
    event = reconfigured(acd.events())
    assert (event.tenant_id, event.at, event.cause) == ("acme", 5, "reconfigured")
    assert event.queues_added == ("t",) and event.queues_removed == ("r",)
    assert event.queues_changed == ("q",)
    assert event.agents_added == ("d",) and event.agents_removed == ("b",)
    assert event.agents_changed == ("c",)
    assert event.settings_changed == ("max_on_break", "night_hours")
    assert acd.config is new
    assert [q.name for q in acd.snapshot(clock()).queues] == ["q", "s", "t"]
    assert [a.id for a in acd.snapshot(clock()).agents] == ["a", "c", "d"]
    assert acd.agent("d", clock()).state is S.LOGGED_OUT
    assert acd.audit() == []


# ----------------------------------------------------------------- agents


def test_agents_keep_their_state_reason_timers_counters_and_contact() -> None:
    clock = Clock()
    cfg = config([queue("q", wrap_up=30), queue("r")],
                 [agent("a"), agent("b"), agent("c"), agent("d"), agent("e")],
                 max_on_break=2, not_ready_reasons=("lunch",))
    acd = start(cfg, clock)
    for a in "abcde":
        acd.login(a, clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))
    acd.answered("c1", "a", clock(2))  # a talks
    acd.enqueue("c2", "q", clock(1))
    acd.answered("c2", "b", clock(1))
    acd.ended("c2", clock(1))  # b in after-call work until 5 + 30
    acd.set_not_ready("c", "lunch", clock(1))
    acd.request_break("d", clock(1))
    acd.enqueue("c3", "q", clock(1))  # rings e
    drain(acd)
    now = clock(3)
    before = (acd.snapshot(now).agents, [acd.agent_counters(x, now) for x in "abcde"],
              acd.contact("c1"), acd.contact("c3"), acd.next_deadline())
    acd.reconfigure(with_queue(cfg, "r", priority=5), clock())
    commands, events = drain(acd)
    assert commands == [] and only(events, AgentStateChanged) == []
    after = (acd.snapshot(now).agents, [acd.agent_counters(x, now) for x in "abcde"],
             acd.contact("c1"), acd.contact("c3"), acd.next_deadline())
    assert after == before
    states = {a.id: (a.state, a.reason) for a in acd.snapshot(now).agents}
    assert states == {"a": (S.TALKING, ""), "b": (S.WRAP_UP, ""), "c": (S.NOT_READY, "lunch"),
                      "d": (S.BREAK, ""), "e": (S.RESERVED, "")}
    # c3's ring (to 24) and b's after-call work (to 36) go on as before
    assert acd.next_deadline() == 24
    acd.tick(24)
    assert [(e.contact, e.agent) for e in only(acd.events(), NoAnswer)] == [("c3", "e")]
    assert acd.next_deadline() == 36
    acd.tick(36)
    wrap_end = [e for e in only(acd.events(), AgentStateChanged) if e.previous is S.WRAP_UP]
    assert [(e.agent, e.cause) for e in wrap_end] == [("b", "wrap_up_ended")]
    assert acd.audit() == []


def test_a_removed_idle_agent_is_logged_out_and_forgotten() -> None:
    clock = Clock()
    cfg = config([queue("q", wrap_up=60)], [agent(x) for x in "abcd"],
                 not_ready_reasons=("lunch",), max_on_break=3)
    acd = start(cfg, clock)
    for a in "abcd":
        acd.login(a, clock(), ready=True)
    acd.set_not_ready("b", "lunch", clock(1))
    acd.request_break("c", clock(1))
    acd.enqueue("c1", "q", clock(1))
    acd.answered("c1", "a", clock(1))
    acd.ended("c1", clock(1))  # a in after-call work
    drain(acd)
    new = config([queue("q", wrap_up=60)], [agent("d")], not_ready_reasons=("lunch",),
                 max_on_break=3)
    acd.reconfigure(new, clock(1))
    commands, events = drain(acd)
    assert commands == []
    assert reconfigured(events).agents_removed == ("a", "b", "c")
    changes = [(e.agent, e.previous, e.state, e.cause) for e in only(events, AgentStateChanged)]
    assert changes == [("a", S.WRAP_UP, S.LOGGED_OUT, "removed"),
                       ("b", S.NOT_READY, S.LOGGED_OUT, "removed"),
                       ("c", S.BREAK, S.LOGGED_OUT, "removed")]
    for gone in "abc":
        with pytest.raises(UnknownAgent):
            acd.agent(gone, clock())
    assert [a.id for a in acd.snapshot(clock()).agents] == ["d"]
    assert acd.snapshot(clock()).queues[0].staffed == 1
    assert acd.next_deadline() is None  # a's after-call timer went with it
    assert acd.request_break("d", clock())  # c's break no longer counts
    assert acd.audit() == []


def test_a_removed_ringing_agent_loses_its_offer_and_the_contact_goes_on() -> None:
    clock = Clock()
    cfg = config([queue("q")], [agent("a"), agent("b")])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))
    acd.enqueue("c2", "q", clock(1))
    assert offers(acd.commands()) == [("c1", "a")]
    acd.events()
    acd.reconfigure(without_agent(cfg, "a"), clock(1))
    commands, events = drain(acd)
    assert [(c.contact, c.agent, c.reason) for c in only(commands, CancelOffer)] == [
        ("c1", "a", "agent_removed")]
    assert [(e.contact, e.cause) for e in only(events, OfferCancelled)] == [
        ("c1", "agent_removed")]
    queued = only(events, ContactQueued)
    assert [(e.contact, e.cause, e.position) for e in queued] == [("c1", "withdrawn", 1)]
    assert [e.state for e in only(events, AgentStateChanged)] == [S.LOGGED_OUT]
    view = acd.contact("c1")
    assert view is not None and view.state == "waiting" and view.enqueued_at == 1
    acd.login("b", clock(1), ready=True)
    assert offers(acd.commands()) == [("c1", "b")]  # still first in line
    assert acd.audit() == []


def test_a_removed_ring_all_agent_leaves_the_others_ringing() -> None:
    clock = Clock()
    cfg = config([queue("q", strategy="ring_all")], [agent("a"), agent("b")])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.login("b", clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))
    assert offers(acd.commands()) == [("c1", "a"), ("c1", "b")]
    acd.reconfigure(without_agent(cfg, "a"), clock(1))
    assert [c.agent for c in only(acd.commands(), CancelOffer)] == ["a"]
    assert acd.contact("c1").offered_to == ("b",)  # type: ignore[union-attr]
    acd.answered("c1", "b", clock(1))
    assert acd.audit() == []


def test_a_removed_agent_in_a_call_keeps_it_then_is_logged_out() -> None:
    clock = Clock()
    cfg = config([queue("q", wrap_up=30)], [agent("a"), agent("b")], max_on_break=1)
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))
    acd.answered("c1", "a", clock(1))
    assert acd.request_break("a", clock(1))  # pending until the call ends
    drain(acd)
    acd.reconfigure(without_agent(cfg, "a"), clock(1))
    commands, events = drain(acd)
    assert commands == [] and only(events, AgentStateChanged) == []
    assert [(e.agent, e.cause) for e in only(events, BreakCancelled)] == [("a", "removed")]
    snap = acd.agent("a", clock())
    assert (snap.state, snap.contact, snap.break_pending) == (S.TALKING, "c1", False)
    assert acd.contact("c1").state == "connected"  # type: ignore[union-attr]
    assert acd.audit() == []
    # its desktop still works for the call; no break, no offer reaches it
    acd.hold("a", clock(1))
    acd.resume("a", clock(1))
    with pytest.raises(InvalidTransition):
        acd.request_break("a", clock())
    with pytest.raises(InvalidTransition):
        acd.logout("a", clock())
    acd.login("b", clock(), ready=True)
    assert acd.request_break("b", clock(1))  # a's cancelled break no longer counts
    acd.enqueue("c2", "q", clock(1))
    assert offers(acd.commands()) == []
    drain(acd)
    acd.ended("c1", clock(10))
    commands, events = drain(acd)
    assert commands == []
    (ended,) = only(events, ContactEnded)
    assert (ended.contact, ended.agent, ended.queue) == ("c1", "a", "q")
    changes = [(e.agent, e.previous, e.state, e.cause) for e in only(events, AgentStateChanged)]
    assert changes == [("a", S.TALKING, S.LOGGED_OUT, "removed")]  # no after-call work
    with pytest.raises(UnknownAgent):
        acd.agent("a", clock())
    assert acd.next_deadline() is None
    assert acd.audit() == []


def test_a_removed_agent_transferring_its_contact_is_logged_out() -> None:
    clock = Clock()
    cfg = config([queue("q"), queue("r")], [agent("a"), agent("b", queues=("r",))])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.login("b", clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))
    acd.answered("c1", "a", clock(1))
    acd.reconfigure(without_agent(cfg, "a"), clock(1))
    drain(acd)
    acd.transfer_to_queue("c1", "r", clock(1))
    commands, events = drain(acd)
    assert offers(commands) == [("c1", "b")]
    changes = [(e.agent, e.previous, e.state) for e in only(events, AgentStateChanged)]
    assert changes[0] == ("a", S.TALKING, S.LOGGED_OUT)  # then b rings
    assert acd.audit() == []


def test_a_removed_agent_on_an_outbound_call_is_logged_out_when_it_ends() -> None:
    clock = Clock()
    cfg = config([queue("q")], [agent("a"), agent("b")])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.start_outbound("a", clock(1))
    acd.reconfigure(without_agent(cfg, "a"), clock(1))
    assert acd.agent("a", clock()).state is S.TALKING
    drain(acd)
    acd.end_outbound("a", clock(5))
    changes = only(acd.events(), AgentStateChanged)
    assert [(e.previous, e.state, e.cause) for e in changes] == [
        (S.TALKING, S.LOGGED_OUT, "removed")]
    with pytest.raises(UnknownAgent):
        acd.agent("a", clock())
    assert acd.audit() == []


def test_an_agent_added_back_during_its_call_is_kept() -> None:
    clock = Clock()
    cfg = config([queue("q", wrap_up=0)], [agent("a")])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))
    acd.answered("c1", "a", clock(1))
    acd.reconfigure(config([queue("q", wrap_up=0)], []), clock(1))
    assert acd.snapshot(clock()).queues[0].staffed == 0
    drain(acd)
    acd.reconfigure(cfg, clock(1))
    assert reconfigured(acd.events()).agents_added == ("a",)
    assert acd.snapshot(clock()).queues[0].staffed == 1
    acd.ended("c1", clock(1))
    assert acd.agent("a", clock()).state is S.READY  # served its queue again
    assert acd.audit() == []


def test_a_removed_agent_whose_callback_is_being_dialled() -> None:
    clock = Clock()
    q = queue("q", callback_allowed=True, callback_timeout=30)
    cfg = config([q], [agent("a"), agent("b")])
    acd = start(cfg, clock)
    acd.enqueue("c1", "q", clock(1))
    acd.request_callback("c1", "+1555", clock(1))
    acd.login("a", clock(1), ready=True)
    assert [p.agent for p in only(acd.commands(), PlaceCallback)] == ["a"]
    acd.reconfigure(without_agent(cfg, "a"), clock(1))
    assert acd.contact("c1").state == "calling_back"  # type: ignore[union-attr]
    acd.callback_answered("c1", clock(1))  # the customer is back in line, live
    view = acd.contact("c1")
    assert view is not None and view.state == "waiting" and view.live
    acd.login("b", clock(1), ready=True)
    assert offers(acd.commands()) == [("c1", "b")]
    assert acd.audit() == []


def test_new_skills_and_queues_apply_to_the_next_routing_decision() -> None:
    clock = Clock()
    cfg = config([queue("q"), queue("r")],
                 [agent("a", {"x": 2}), agent("b", queues=("q",))])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.login("b", clock(), ready=True)
    acd.enqueue("c1", "q", clock(1), skills={"x": 5})  # nobody has x 5
    acd.enqueue("c2", "r", clock(1))  # nobody serves r
    assert offers(acd.commands()) == []
    drain(acd)
    acd.reconfigure(with_agent(with_agent(cfg, "a", skills={"x": 6}), "b",
                               queues=("q", "r")), clock(1))
    commands, _ = drain(acd)
    assert sorted(offers(commands)) == [("c1", "a"), ("c2", "b")]
    assert acd.audit() == []
    # out of a queue: no more offers from it; skills lowered: no more such contacts
    for cid, a in (("c1", "a"), ("c2", "b")):
        acd.answered(cid, a, clock(1))
        acd.ended(cid, clock(1))
    acd.reconfigure(config([queue("q"), queue("r")],
                           [agent("a", {"x": 1}), agent("b", queues=("q",))]), clock(1))
    acd.enqueue("c3", "r", clock(1))
    acd.enqueue("c4", "q", clock(1), skills={"x": 5})
    assert offers(acd.commands()) == []
    acd.enqueue("c5", "q", clock(1))
    assert offers(acd.commands()) == [("c5", "a")]
    assert acd.audit() == []


def test_auto_answer_applies_to_the_next_offer() -> None:
    clock = Clock()
    cfg = config([queue("q")], [agent("a")])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))
    assert [o.auto_answer for o in only(acd.commands(), Offer)] == [False]
    acd.reconfigure(with_agent(cfg, "a", auto_answer=True), clock(1))
    assert acd.commands() == []  # the ringing offer is not sent again
    acd.answered("c1", "a", clock(1))
    acd.ended("c1", clock(1))
    acd.enqueue("c2", "q", clock(1))
    assert [o.auto_answer for o in only(acd.commands(), Offer)] == [True]


def test_a_new_break_group_counts_the_break_from_now() -> None:
    clock = Clock()
    cfg = config([queue("q")], [agent("a"), agent("b"), agent("c", break_group="late")],
                 max_on_break=1, break_groups={"late": 1})
    acd = start(cfg, clock)
    for a in "abc":
        acd.login(a, clock(), ready=True)
    assert acd.request_break("a", clock(1))
    acd.reconfigure(with_agent(cfg, "a", break_group="late"), clock(1))
    assert acd.audit() == []
    assert acd.request_break("b", clock(1))  # the default group is free now
    assert not acd.request_break("c", clock(1))  # a's break counts in "late"
    refused = only(acd.events(), BreakRefused)[-1]
    assert (refused.group, refused.on_break, refused.maximum) == ("late", 1, 1)
    acd.set_ready("a", clock(1))
    assert acd.request_break("c", clock(1))
    assert acd.audit() == []


# ----------------------------------------------------------------- queues


def test_waiting_contacts_keep_their_order_and_enqueue_times() -> None:
    clock = Clock()
    cfg = config([queue("q"), queue("r")], [agent("a"), agent("b", queues=("r",))])
    acd = start(cfg, clock)
    for i in range(5):
        acd.enqueue(f"c{i}", "q", clock(1), priority=1 if i == 3 else 0)
    before = [(acd.position(f"c{i}"), acd.contact(f"c{i}").enqueued_at)  # type: ignore[union-attr]
              for i in range(5)]
    assert [p for p, _ in before] == [2, 3, 4, 1, 5]
    drain(acd)
    new = config([queue("q", strategy="best_skill", priority=3, ring_timeout=5,
                        max_wait=500, overflow=(OverflowRule(after=100, also_match={}),)),
                  queue("r")],
                 [agent("b", queues=("r",)), agent("a", queues=("q", "r"))])
    acd.reconfigure(new, clock(1))
    after = [(acd.position(f"c{i}"), acd.contact(f"c{i}").enqueued_at)  # type: ignore[union-attr]
             for i in range(5)]
    assert after == before
    assert only(acd.events(), ContactQueued) == []  # nobody entered the line again
    acd.login("a", clock(1), ready=True)
    taken = []
    for _ in range(5):
        (offer,) = only(acd.commands(), Offer)
        taken.append(offer.contact)
        acd.answered(offer.contact, "a", clock(1))
        acd.ended(offer.contact, clock(1))
    assert taken == ["c3", "c0", "c1", "c2", "c4"]
    assert acd.audit() == []


def test_a_new_strategy_and_priority_apply_to_the_next_decision() -> None:
    clock = Clock()
    cfg = config([queue("q"), queue("r")],
                 [agent("a", {"x": 2}, queues=("q", "r")), agent("b", {"x": 9})])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.login("b", clock(1), ready=True)
    acd.reconfigure(with_queue(cfg, "q", strategy="best_skill"), clock(1))
    acd.enqueue("c1", "q", clock(1), skills={"x": 1})
    assert offers(acd.commands()) == [("c1", "b")]  # longest idle would be a
    acd.answered("c1", "b", clock(1))
    acd.set_not_ready("a", "", clock(1))
    acd.enqueue("c2", "q", clock(1))
    acd.enqueue("c3", "r", clock(1))
    drain(acd)
    acd.reconfigure(with_queue(with_queue(cfg, "q", strategy="best_skill"), "r", priority=2),
                    clock(1))
    acd.set_ready("a", clock(1))
    assert offers(acd.commands()) == [("c3", "a")]  # r is served first now
    assert acd.audit() == []


def test_ties_follow_the_new_order_of_the_agents() -> None:
    clock = Clock()
    cfg = config([queue("q"), queue("r", strategy="round_robin")],
                 [agent("a", queues=("q", "r")), agent("b", queues=("q", "r")), agent("c")])
    acd = start(cfg, clock)
    for a in "ab":
        acd.login(a, clock(), ready=True)  # ready at the same time: a first by order
    acd.reconfigure(dataclasses.replace(cfg, agents=(cfg.agents[2], cfg.agents[1],
                                                     cfg.agents[0])), clock(1))
    assert acd.audit() == []
    acd.enqueue("c1", "q", clock(1))
    acd.enqueue("c2", "r", clock(1))
    assert offers(acd.commands()) == [("c1", "b"), ("c2", "a")]
    assert acd.audit() == []


def test_a_shorter_ring_timeout_ends_an_offer_already_over_it() -> None:
    clock = Clock()
    cfg = config([queue("q", ring_timeout=20)], [agent("a"), agent("b")])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))  # rings a from 1 to 21
    acd.enqueue("c2", "q", clock(1))
    drain(acd)
    acd.login("b", clock(1), ready=True)  # rings b from 3 to 23
    drain(acd)
    acd.reconfigure(with_queue(cfg, "q", ring_timeout=5), clock(4))  # now 7
    commands, events = drain(acd)
    assert [(c.contact, c.agent, c.reason) for c in only(commands, CancelOffer)] == [
        ("c1", "a", "timeout")]
    assert [(e.contact, e.cause) for e in only(events, NoAnswer)] == [("c1", "timeout")]
    assert acd.agent("a", clock()).reason == "no_answer"
    assert acd.next_deadline() == 8  # b's ring: from 3, 5 seconds
    acd.reconfigure(with_queue(cfg, "q", ring_timeout=10), clock())
    assert acd.next_deadline() == 13
    acd.tick(13)
    assert [c.agent for c in only(acd.commands(), CancelOffer)] == ["b"]
    acd.set_ready("a", clock(10))
    (offer,) = only(acd.commands(), Offer)
    assert offer.timeout == 10
    assert acd.audit() == []


def test_wrap_up_changes_apply_to_after_call_work_running() -> None:
    clock = Clock()
    cfg = config([queue("q", wrap_up=60)], [agent("a"), agent("b"), agent("c")])
    acd = start(cfg, clock)
    for a in "abc":
        acd.login(a, clock(), ready=True)
    for i, a in enumerate("abc"):
        acd.enqueue(f"c{i}", "q", clock(1))
        acd.answered(f"c{i}", a, clock())
    acd.ended("c0", clock(1))  # a in after-call work from 4
    acd.ended("c1", clock(10))  # b from 14
    assert acd.next_deadline() == 64
    acd.reconfigure(with_queue(cfg, "q", wrap_up=15), clock(6))  # now 20
    assert acd.agent("a", clock()).state is S.READY  # 16 s in: over 15
    assert acd.agent("b", clock()).state is S.WRAP_UP
    assert acd.next_deadline() == 29
    acd.reconfigure(with_queue(cfg, "q", wrap_up=None), clock(1))
    assert acd.next_deadline() is None  # until b says it is done
    acd.ended("c2", clock(1))
    assert acd.agent("c", clock()).state is S.WRAP_UP and acd.next_deadline() is None
    acd.reconfigure(with_queue(cfg, "q", wrap_up=0), clock(1))
    assert acd.agent("b", clock()).state is S.READY
    assert acd.agent("c", clock()).state is S.READY
    assert acd.audit() == []


def test_a_shorter_max_wait_sends_contacts_over_it_out_at_once() -> None:
    clock = Clock()
    cfg = config([queue("q", max_wait=300, max_wait_route="vm", ring_timeout=50)],
                 [agent("a")])
    acd = start(cfg, clock)
    acd.enqueue("c1", "q", clock(0))
    acd.enqueue("c2", "q", clock(50))
    acd.enqueue("c3", "q", clock(50))
    acd.login("a", clock(), ready=True)  # c1 rings a
    drain(acd)
    acd.reconfigure(with_queue(cfg, "q", max_wait=60, max_wait_route="later"), clock(20))
    commands, events = drain(acd)  # now 120: c2 waited 70
    assert [(c.contact, c.route, c.reason) for c in only(commands, ExitQueue)] == [
        ("c2", "later", "max_wait")]
    exited = only(events, ContactExited)
    assert [(e.contact, e.cause, e.waited) for e in exited] == [("c2", "max_wait", 70)]
    assert acd.contact("c1").state == "offered"  # type: ignore[union-attr]
    assert acd.position("c3") == 1
    assert acd.next_deadline() == 150  # a's ring (50 s from 100) before c3's 160
    acd.declined("c1", "a", clock())  # not answered: c1 is over the new maximum
    commands, _ = drain(acd)
    assert [c.contact for c in only(commands, ExitQueue)] == ["c1"]
    acd.reconfigure(with_queue(cfg, "q", max_wait=None), clock())
    assert acd.next_deadline() is None
    assert acd.audit() == []


def test_new_overflow_rules_apply_as_if_they_always_had() -> None:
    clock = Clock()
    cfg = config([queue("q", overflow=(OverflowRule(after=10, also_match={"y": 1}),)),
                  queue("r")],
                 [agent("a", {"x": 5}), agent("b", {"y": 1}),
                  agent("c", {"z": 1}, queues=("r",))])
    acd = start(cfg, clock)
    acd.enqueue("c1", "q", clock(), skills={"z": 1})
    acd.enqueue("c2", "q", clock(15), skills={"z": 1})
    acd.tick(clock(5))  # c1 widened to y at 10
    assert acd.contact("c1").requirements == ((("z", 1),), (("y", 1),))  # type: ignore[union-attr]
    drain(acd)
    new = with_queue(cfg, "q", overflow=(OverflowRule(after=5, also_match={"x": 1}),
                                         OverflowRule(after=30, to_queue="r")))
    acd.reconfigure(new, clock(5))  # now 25: c1 waited 25, c2 10
    events = acd.events()
    assert [(e.contact, e.requirement) for e in only(events, ContactOverflowed)] == [
        ("c1", (("x", 1),)), ("c2", (("x", 1),))]
    assert acd.contact("c1").requirements == ((("z", 1),), (("x", 1),))  # type: ignore[union-attr]
    assert acd.next_deadline() == 30  # c1 moves to r at 30
    acd.tick(clock(5))
    assert acd.contact("c1").queue == "r"  # type: ignore[union-attr]
    acd.login("c", clock(), ready=True)
    assert offers(acd.commands()) == [("c1", "c")]
    acd.login("a", clock(), ready=True)
    assert offers(acd.commands()) == [("c2", "a")]
    assert acd.audit() == []


def test_a_due_move_applies_at_once_and_match_language_changes() -> None:
    clock = Clock()
    cfg = config([queue("q"), queue("r")],
                 [agent("a", {"lang:fr": 1}, queues=("r",)), agent("b", queues=("q",))])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.enqueue("c1", "q", clock(), language="de")
    acd.enqueue("c2", "q", clock(1), language="fr")
    acd.reconfigure(with_queue(cfg, "q", overflow=(OverflowRule(after=0, to_queue="r"),)),
                    clock(1))
    events = acd.events()
    assert [(e.contact, e.to_queue) for e in only(events, ContactOverflowed)] == [
        ("c1", "r"), ("c2", "r")]
    assert offers(acd.commands()) == [("c1", "a")]  # r does not match languages yet
    acd.declined("c1", "a", clock(1))
    acd.reconfigure(with_queue(with_queue(cfg, "q", overflow=(
        OverflowRule(after=0, to_queue="r"),)), "r", match_language=True), clock(1))
    acd.set_ready("a", clock(1))
    assert offers(acd.commands()) == [("c2", "a")]  # c1 (de) is not a's any more
    assert acd.contact("c1").requirements == ((("lang:de", 1),),)  # type: ignore[union-attr]
    assert acd.audit() == []


def test_announcements_start_stop_and_take_the_new_period() -> None:
    clock = Clock()
    cfg = config([queue("q")], [agent("a")])
    acd = start(cfg, clock)
    acd.enqueue("c1", "q", clock())
    assert acd.next_deadline() is None
    acd.reconfigure(with_queue(cfg, "q", announce_position_every=30), clock(10))
    assert acd.next_deadline() == 40
    acd.tick(clock(30))
    assert [(c.contact, c.position) for c in only(acd.commands(), Announce)] == [("c1", 1)]
    acd.reconfigure(with_queue(cfg, "q", announce_position_every=20), clock(5))
    assert acd.next_deadline() == 60  # 20 after the last one, at 40
    acd.reconfigure(with_queue(cfg, "q", announce_position_every=None), clock(5))
    assert acd.next_deadline() is None
    assert acd.audit() == []


def test_a_new_queue_is_empty_and_takes_contacts() -> None:
    clock = Clock()
    cfg = config([queue("q")], [agent("a")])
    acd = start(cfg, clock)
    with pytest.raises(UnknownQueue):
        acd.enqueue("c1", "new", clock())
    acd.login("a", clock(), ready=True)
    acd.reconfigure(config([queue("q"), queue("new")], [agent("a", queues=("q", "new"))]),
                    clock(1))
    snap = acd.snapshot(clock()).queues[1]
    assert (snap.name, snap.waiting, snap.staffed, snap.ready) == ("new", 0, 1, 1)
    acd.enqueue("c1", "new", clock(1))
    assert offers(acd.commands()) == [("c1", "a")]
    assert acd.audit() == []


def test_a_removed_queue_sends_its_waiting_contacts_out_and_finishes_the_others() -> None:
    clock = Clock()
    cfg = config([queue("q", callback_allowed=True, wrap_up=20, callback_retry_delay=100),
                  queue("r")],
                 [agent("a"), agent("b"), agent("c", queues=("q", "r"))])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.login("b", clock(), ready=True)
    acd.enqueue("talk", "q", clock(1))
    acd.answered("talk", "a", clock(1))  # connected, in q
    acd.enqueue("ring", "q", clock(1))  # rings b
    for cid in ("w1", "w2", "cb", "w3"):
        acd.enqueue(cid, "q", clock(1))
    acd.request_callback("cb", "+1555", clock(1))
    drain(acd)
    acd.reconfigure(without_queue(cfg, "q"), clock(1))
    commands, events = drain(acd)
    assert reconfigured(events).queues_removed == ("q",)
    assert [(c.contact, c.route, c.reason) for c in only(commands, ExitQueue)] == [
        ("w1", "", "queue_removed"), ("w2", "", "queue_removed"),
        ("w3", "", "queue_removed")]  # nobody on the line for the callback entry
    assert [(e.contact, e.cause, e.route) for e in only(events, ContactExited)] == [
        ("w1", "queue_removed", ""), ("w2", "queue_removed", ""),
        ("cb", "queue_removed", ""), ("w3", "queue_removed", "")]
    assert acd.contact_ids() == ["talk", "ring"]
    assert [q.name for q in acd.snapshot(clock()).queues] == ["r"]
    with pytest.raises(UnknownQueue):
        acd.enqueue("new", "q", clock())
    with pytest.raises(UnknownQueue):
        acd.queue_counters("q")
    assert acd.audit() == []
    # the connected contact ends normally, with its queue's after-call work
    acd.ended("talk", clock(1))
    assert acd.agent("a", clock()).state is S.WRAP_UP
    # the ringing one: not answered, it has no line to come back to
    acd.declined("ring", "b", clock(1))
    commands, events = drain(acd)
    assert [(c.contact, c.reason) for c in only(commands, ExitQueue)] == [
        ("ring", "queue_removed")]
    assert [e.contact for e in only(events, ContactExited)] == ["ring"]
    assert acd.contact_ids() == []
    assert acd.audit() == []


def test_a_removed_queue_lets_an_answered_offer_and_callbacks_finish() -> None:
    clock = Clock()
    cfg = config([queue("q", callback_allowed=True, callback_attempts=3), queue("r")],
                 [agent("a"), agent("b"), agent("c", queues=("r",))])
    acd = start(cfg, clock)
    acd.enqueue("ring", "q", clock())
    acd.enqueue("cb1", "q", clock(1))
    acd.enqueue("cb2", "q", clock(1))
    acd.request_callback("cb1", "+1", clock())
    acd.request_callback("cb2", "+2", clock())
    acd.login("a", clock(), ready=True)  # rings "ring"
    acd.login("b", clock(), ready=True)  # calls cb1 back
    acd.answered("ring", "a", clock(1))
    acd.ended("ring", clock(1))  # a takes cb2
    assert [p.contact for p in only(acd.commands(), PlaceCallback)] == ["cb1", "cb2"]
    acd.enqueue("ring2", "q", clock(1))
    drain(acd)
    acd.reconfigure(without_queue(cfg, "q"), clock(1))
    drain(acd)
    assert sorted(acd.contact_ids()) == ["cb1", "cb2"]  # ring2 was waiting: out
    snap = acd.snapshot(clock())
    assert [q.name for q in snap.queues] == ["r"]  # (the callbacks are q's, not shown)
    acd.callback_failed("cb1", clock(1))  # no retry: its queue is gone
    (failed,) = only(acd.events(), CallbackFailed)
    assert (failed.contact, failed.attempt, failed.final) == ("cb1", 1, True)
    acd.callback_answered("cb2", clock(1))  # rings the agent reserved for it
    assert offers(acd.commands()) == [("cb2", "a")]
    acd.answered("cb2", "a", clock(1))
    acd.ended("cb2", clock(1))
    assert [e.contact for e in only(acd.events(), ContactEnded)] == ["cb2"]
    assert acd.contact_ids() == []
    assert acd.audit() == []


def test_a_parked_callback_of_a_removed_queue_leaves_at_once() -> None:
    clock = Clock()
    cfg = config([queue("q", callback_allowed=True, callback_retry_delay=60), queue("r")],
                 [agent("a"), agent("b", queues=("r",))])
    acd = start(cfg, clock)
    acd.enqueue("cb", "q", clock())
    acd.request_callback("cb", "+1", clock())
    acd.login("a", clock(), ready=True)
    acd.callback_failed("cb", clock(1))
    assert acd.contact("cb").state == "parked"  # type: ignore[union-attr]
    drain(acd)
    acd.reconfigure(without_queue(cfg, "q"), clock(1))
    commands, events = drain(acd)
    assert only(commands, ExitQueue) == []
    assert [(e.contact, e.cause) for e in only(events, ContactExited)] == [
        ("cb", "queue_removed")]
    assert acd.next_deadline() is None
    assert acd.audit() == []


def test_a_queue_added_back_under_its_name_is_a_new_one() -> None:
    clock = Clock()
    cfg = config([queue("q"), queue("r")], [agent("a"), agent("b")])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))
    acd.answered("c1", "a", clock(1))
    acd.reconfigure(without_queue(cfg, "q"), clock(1))
    acd.reconfigure(cfg, clock(1))
    drain(acd)
    assert acd.snapshot(clock()).queues[0].answered == 0
    acd.ended("c1", clock(1))
    acd.enqueue("c2", "q", clock(1))
    assert offers(acd.commands()) == [("c2", "a")]
    assert acd.audit() == []


# ----------------------------------------------------------------- tenant settings


def test_a_lower_maximum_keeps_breaks_already_approved() -> None:
    clock = Clock()
    cfg = config([queue("q")], [agent(x) for x in "abcd"], max_on_break=3)
    acd = start(cfg, clock)
    for a in "abcd":
        acd.login(a, clock(), ready=True)
    acd.enqueue("c1", "q", clock(1))
    acd.answered("c1", "a", clock(1))
    assert acd.request_break("a", clock(1))  # pending: a is in a call
    assert acd.request_break("b", clock(1))
    assert acd.request_break("c", clock(1))
    acd.reconfigure(dataclasses.replace(cfg, max_on_break=1), clock(1))
    drain(acd)
    assert acd.agent("a", clock()).break_pending
    assert not acd.request_break("d", clock(1))
    (refused,) = only(acd.events(), BreakRefused)
    assert (refused.on_break, refused.maximum) == (3, 1)
    acd.ended("c1", clock(1))  # the approved break starts
    assert acd.agent("a", clock()).state is S.BREAK
    acd.set_ready("a", clock(1))
    acd.set_ready("b", clock(1))
    assert not acd.request_break("d", clock(1))  # c is still on break: 1 of 1
    acd.set_ready("c", clock(1))
    assert acd.request_break("d", clock(1))
    assert [e.agent for e in only(acd.events(), BreakApproved)] == ["d"]
    assert acd.audit() == []


def test_reasons_and_night_hours_apply_from_now() -> None:
    clock = Clock()
    cfg = config([queue("q")], [agent("a"), agent("b")], not_ready_reasons=("lunch",))
    acd = start(cfg, clock)
    acd.set_local_time(clock(), 23 * 3600)  # 23:00 local
    acd.login("a", clock(), ready=True)
    acd.login("b", clock())
    acd.set_not_ready("b", "lunch", clock(1))
    acd.reconfigure(dataclasses.replace(cfg, not_ready_reasons=("training",),
                                        night_hours=("22:00", "06:00")), clock(1))
    assert acd.agent("b", clock()).reason == "lunch"  # kept
    with pytest.raises(InvalidArgument):
        acd.set_not_ready("a", "lunch", clock())
    acd.set_not_ready("a", "training", clock())
    acd.set_ready("a", clock(1))
    acd.enqueue("c1", "q", clock(1))
    assert [o.night_alert for o in only(acd.commands(), Offer)] == [True]


# ----------------------------------------------------------------- the daily record


def test_the_daily_record_folds_a_reconfiguration() -> None:
    t0 = dt.datetime(2024, 3, 5, tzinfo=dt.UTC).timestamp()
    clock = Clock()
    cfg = config([queue("q"), queue("r")], [agent("a"), agent("b", queues=("r",))])
    acd = start(cfg, clock)
    acd.login("a", clock(), ready=True)
    acd.enqueue("c1", "q", clock(10))
    acd.answered("c1", "a", clock(5))
    acd.enqueue("c2", "q", clock(5))
    acd.enqueue("c3", "q", clock(5))
    acd.reconfigure(config([queue("r")], [agent("b", queues=("r",))]), clock(5))
    acd.ended("c1", clock(30))  # a is logged out now, at 60
    stats = DailyStats()
    for event in acd.events():
        stats.add({**event_doc(event), "wall": t0 + event.at})
    records = stats.records("acme", dt.date(2024, 3, 5), t0 + 100)
    assert records is not None
    (q,) = [x for x in records.queues if x.queue == "q"]
    assert q.exited == {"queue_removed": 2} and q.answered == 1
    (a,) = [x for x in records.agents if x.agent == "a"]
    assert (a.logged_in_seconds, a.talk_seconds) == (60, 45)
    assert list(stats.held_agents("acme")) == []


# ----------------------------------------------------------------- a late timer


def test_an_overflow_timer_run_late_past_max_wait_exits_the_contact() -> None:
    # (a tick long after both the overflow and max_wait deadlines; used to crash)
    acd = Acd(config([queue("q", max_wait=100,
                            overflow=(OverflowRule(after=20, also_match={}),))],
                     [agent("a")]))
    acd.enqueue("c1", "q", 0)
    acd.tick(150)
    assert [c.reason for c in only(acd.commands(), ExitQueue)] == ["max_wait"]
    assert acd.contact("c1") is None and acd.audit() == []
