"""Strategies, priorities, skills, ring-all, and what an offer carries."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.acd import (
    Acd,
    AgentState,
    CancelOffer,
    ContactStateError,
    DuplicateContact,
    InvalidArgument,
    Offer,
    UnknownQueue,
)
from appliance.acd import core as acd_core
from appliance.acd.events import AgentStateChanged, NoAnswer, OfferMade
from tests.acd.helpers import agent, make, only, queue, ready_all


def offered(acd: Acd) -> list[tuple[str, str]]:
    return [(o.contact, o.agent) for o in only(acd.commands(), Offer)]


def serve(acd: Acd, contact: str, now: float) -> str:
    """Answer and end the contact's offer; returns the agent."""
    view = acd.contact(contact)
    assert view is not None and len(view.offered_to) == 1
    who = view.offered_to[0]
    acd.answered(contact, who, now)
    acd.ended(contact, now + 1)
    return who


def test_longest_idle() -> None:
    acd = make([queue("q", strategy="longest_idle")], [agent("a"), agent("b"), agent("c")])
    acd.login("b", 1, ready=True)
    acd.login("a", 2, ready=True)
    acd.login("c", 3, ready=True)
    acd.enqueue("c1", "q", 4)
    assert offered(acd) == [("c1", "b")]
    serve(acd, "c1", 5)  # b ready again at 6: now the most recently idle
    acd.enqueue("c2", "q", 7)
    acd.enqueue("c3", "q", 7)
    acd.enqueue("c4", "q", 7)
    assert offered(acd) == [("c2", "a"), ("c3", "c"), ("c4", "b")]


def test_least_occupied() -> None:
    acd = make([queue("q", strategy="least_occupied")], [agent("a"), agent("b"), agent("c")])
    ready_all(acd, "abc", 0)
    acd.enqueue("c1", "q", 1)  # all at 0 calls: the longest idle (config order) a
    acd.answered("c1", "a", 2)
    acd.ended("c1", 100)  # a: 1 call, 98 s
    acd.enqueue("c2", "q", 101)  # b and c at 0 calls: b (idle since 0, before c by order)
    acd.answered("c2", "b", 102)
    acd.ended("c2", 110)  # b: 1 call, 8 s
    assert offered(acd) == [("c1", "a"), ("c2", "b")]
    acd.enqueue("c3", "q", 111)
    acd.enqueue("c4", "q", 111)
    acd.enqueue("c5", "q", 111)
    # c: no call; then b (1 call, 8 s) before a (1 call, 98 s)
    assert offered(acd) == [("c3", "c"), ("c4", "b"), ("c5", "a")]


def test_least_occupied_counts_restart_with_the_day() -> None:
    acd = make([queue("q", strategy="least_occupied")], [agent("a"), agent("b")])
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "q", 1)
    acd.answered("c1", "a", 2)
    acd.ended("c1", 3)  # a: 1 call today, ready since 3
    acd.login("b", 4, ready=True)
    acd.reset_day(5)  # both at 0: a has been idle longer
    acd.commands()
    acd.enqueue("c2", "q", 6)
    assert offered(acd) == [("c2", "a")]


def test_round_robin_cycles_through_the_agents() -> None:
    acd = make([queue("q", strategy="round_robin")], [agent("a"), agent("b"), agent("c")])
    ready_all(acd, "cba", 0)  # readiness order does not matter, the rotation does
    got = []
    for i in range(7):
        acd.enqueue(f"c{i}", "q", 1 + i)
        got.append(serve(acd, f"c{i}", 1 + i))
    assert got == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_skips_agents_not_ready_and_keeps_the_turn_per_queue() -> None:
    acd = make([queue("q", strategy="round_robin"), queue("r", strategy="round_robin")],
               [agent("a", queues=("q", "r")), agent("b", queues=("q", "r")),
                agent("c", queues=("q",))])
    ready_all(acd, "abc", 0)
    acd.set_not_ready("b", "", 0)
    got = []
    for i in range(3):
        acd.enqueue(f"q{i}", "q", 1 + i)
        got.append(serve(acd, f"q{i}", 1 + i))
    assert got == ["a", "c", "a"]
    acd.set_ready("b", 10)
    got = []
    for i in range(3):  # r has its own turn: it starts with a, then b
        acd.enqueue(f"r{i}", "r", 11 + i)
        got.append(serve(acd, f"r{i}", 11 + i))
    assert got == ["a", "b", "a"]


def test_best_skill_match() -> None:
    acd = make([queue("q", strategy="best_skill")],
               [agent("a", {"x": 3, "y": 1}), agent("b", {"x": 9, "y": 2}),
                agent("c", {"x": 10}), agent("d", {"x": 4, "y": 7})])
    ready_all(acd, "abcd", 0)
    acd.enqueue("c1", "q", 1, skills={"x": 3, "y": 1})  # b 11, d 11, a 4; c lacks y
    assert offered(acd) == [("c1", "b")]  # b and d tie: b has been idle longer
    acd.enqueue("c2", "q", 2, skills={"x": 3, "y": 1})
    acd.enqueue("c3", "q", 2, skills={"x": 3})  # a 3, c 10 (b and d are ringing)
    assert offered(acd) == [("c2", "d"), ("c3", "c")]


def test_skills_required_levels() -> None:
    acd = make([queue("q")], [agent("a", {"x": 4}), agent("b", {"x": 6, "y": 1})])
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "q", 1, skills={"x": 5})
    assert offered(acd) == []  # a is idle but not skilled enough
    acd.enqueue("c2", "q", 2, skills={"x": 4})
    assert offered(acd) == [("c2", "a")]
    acd.login("b", 3, ready=True)
    assert offered(acd) == [("c1", "b")]
    with pytest.raises(InvalidArgument):
        acd.enqueue("c3", "q", 4, skills={"x": 11})


def test_language_routing() -> None:
    acd = make([queue("q", match_language=True)],
               [agent("a", {"lang:en": 5}), agent("b", {"lang:fr": 2, "lang:en": 1})])
    ready_all(acd, "ab", 0)
    acd.enqueue("c1", "q", 1, language="fr")
    cmds = only(acd.commands(), Offer)
    assert [(o.contact, o.agent, o.language) for o in cmds] == [("c1", "b", "fr")]
    acd.enqueue("c2", "q", 2, language="de")
    assert offered(acd) == []
    acd.enqueue("c3", "q", 3)  # no language: anyone
    assert offered(acd) == [("c3", "a")]


def test_queue_priority_then_contact_priority_then_longest_waiting() -> None:
    acd = make([queue("low", priority=0), queue("high", priority=5)],
               [agent("a", queues=("low", "high"))])
    acd.enqueue("l1", "low", 1, priority=9)
    acd.enqueue("h1", "high", 2)
    acd.enqueue("h2", "high", 3, priority=1)
    acd.enqueue("h3", "high", 4, priority=1)
    acd.enqueue("l2", "low", 5, priority=9)
    acd.login("a", 10, ready=True)
    order = []
    for i in range(5):
        view = next(acd.contact(c) for c in acd.contact_ids()
                    if acd.contact(c).state == "offered")  # type: ignore[union-attr]
        assert view is not None
        order.append(view.id)
        acd.answered(view.id, "a", 11 + i)
        acd.ended(view.id, 11.5 + i)
    assert order == ["h2", "h3", "h1", "l1", "l2"]


def test_a_ready_agent_takes_the_best_contact_across_its_pools() -> None:
    acd = make([queue("q")], [agent("a", {"x": 5, "y": 5})])
    acd.enqueue("c1", "q", 1, skills={"y": 2})
    acd.enqueue("c2", "q", 2, skills={"x": 1}, priority=1)
    acd.enqueue("c3", "q", 0.5, skills={"x": 9})  # never matches a
    acd.login("a", 3, ready=True)
    assert offered(acd) == [("c2", "a")]


def test_ring_all_first_answer_wins() -> None:
    acd = make([queue("q", strategy="ring_all")], [agent("a"), agent("b"), agent("c"),
                                                    agent("d")])
    ready_all(acd, "abc", 0)
    acd.login("d", 0)  # not ready: not rung
    acd.enqueue("c1", "q", 1)
    cmds = only(acd.commands(), Offer)
    assert sorted(o.agent for o in cmds) == ["a", "b", "c"] and all(o.ring_all for o in cmds)
    acd.answered("c1", "b", 3)
    cancels = only(acd.commands(), CancelOffer)
    assert sorted((c.agent, c.reason) for c in cancels) == [
        ("a", "answered_elsewhere"), ("c", "answered_elsewhere")]
    assert acd.agent("a", 3).state is AgentState.READY
    assert acd.agent("b", 3).state is AgentState.TALKING
    with pytest.raises(ContactStateError) as err:
        acd.answered("c1", "c", 3.1)  # a late answer: the edge releases that leg
    assert err.value.code == "invalid_contact_transition"
    acd.enqueue("c2", "q", 4)
    assert sorted(o.agent for o in only(acd.commands(), Offer)) == ["a", "c"]


def test_ring_all_no_answer_and_declines() -> None:
    acd = make([queue("q", strategy="ring_all", ring_timeout=10)],
               [agent("a"), agent("b"), agent("c")])
    ready_all(acd, "ab", 0)
    acd.enqueue("c1", "q", 1)
    acd.declined("c1", "a", 2)  # b still rings
    assert acd.contact("c1").offered_to == ("b",)  # type: ignore[union-attr]
    assert acd.agent("a", 2).reason == "declined"
    acd.tick(11)
    assert [(c.agent, c.reason) for c in only(acd.commands(), CancelOffer)] == [
        ("b", "timeout")]
    assert [(e.agent, e.cause) for e in only(acd.events(), NoAnswer)] == [
        ("a", "declined"), ("b", "timeout")]
    assert acd.contact("c1").state == "waiting"  # type: ignore[union-attr]
    acd.login("c", 12, ready=True)
    assert offered(acd) == [("c1", "c")]


def test_offer_carries_what_the_desktop_shows() -> None:
    acd = make([queue("q", ring_timeout=12, announce_agent=True)],
               [agent("a", auto_answer=True)], night_hours=("22:00", "06:00"))
    acd.set_local_time(0, 21 * 3600 + 59 * 60)  # 21:59
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "q", 1, language="yue", data={"account": "42"}, medium="video")
    (offer,) = only(acd.commands(), Offer)
    assert (offer.timeout, offer.auto_answer, offer.language, offer.medium) == (
        12, True, "yue", "video")
    assert offer.data == {"account": "42"} and offer.announce_agent
    assert not offer.night_alert and offer.tenant_id == "acme"
    acd.answered("c1", "a", 2)
    assert acd.agent("a", 2).medium == "video"  # the state names the medium
    changes = only(acd.events(), AgentStateChanged)
    assert (changes[-1].state, changes[-1].medium) == (AgentState.TALKING, "video")
    acd.ended("c1", 61)  # 22:00
    acd.enqueue("c2", "q", 62)
    (offer,) = only(acd.commands(), Offer)
    assert offer.night_alert
    assert only(acd.events(), OfferMade)[0].night_alert
    acd.answered("c2", "a", 63)
    acd.ended("c2", 9 * 3600)  # 06:59
    acd.enqueue("c3", "q", 9 * 3600 + 1)
    assert not only(acd.commands(), Offer)[0].night_alert


def test_contact_inputs_are_checked() -> None:
    acd = make([queue("q")], [agent("a")])
    with pytest.raises(UnknownQueue):
        acd.enqueue("c1", "nope", 0)
    acd.enqueue("c1", "q", 0)
    with pytest.raises(DuplicateContact):
        acd.enqueue("c1", "q", 0)
    for bad in ({"priority": True}, {"data": {"k": 1}}, {"medium": ""}):
        kw: dict[str, Any] = dict(bad)
        with pytest.raises(InvalidArgument):
            acd.enqueue("c2", "q", 0, **kw)
    with pytest.raises(InvalidArgument):
        acd.enqueue("", "q", 0)
    with pytest.raises(ContactStateError):
        acd.ended("c1", 1)  # not answered
    with pytest.raises(ContactStateError):
        acd.answered("c1", "a", 1)  # not offered


def test_agents_released_together_each_find_a_contact() -> None:
    """Two agents ready in one input (a ring-all answer releases them): the first one's
    best contact may go to the other by its queue's strategy; the first then takes the
    next one."""
    acd = make([queue("ring", strategy="ring_all"), queue("q", strategy="best_skill")],
               [agent("b", {"x": 1}, queues=("ring", "q")),
                agent("a", {"x": 9}, queues=("ring", "q")), agent("c", queues=("ring",))])
    acd.login("b", 0, ready=True)  # rung first, released first
    acd.login("a", 1, ready=True)
    acd.login("c", 2, ready=True)
    acd.enqueue("r1", "ring", 3)
    acd.enqueue("x", "q", 4, skills={"x": 1})
    acd.enqueue("y", "q", 5, skills={"x": 1})
    acd.commands()
    acd.answered("r1", "c", 6)
    # b looks first; x goes to the best skilled a; b then takes y
    assert sorted(offered(acd)) == [("x", "a"), ("y", "b")]
    assert acd.audit() == []


def test_routing_uses_the_pools_not_a_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    agents = [agent(f"a{i}", {"x": 1 + i % 10}) for i in range(200)]
    acd = make([queue("q")], agents)
    for i in range(200):
        acd.login(f"a{i}", i)
    acd.enqueue("warm", "q", 300, skills={"x": 5})  # makes the pool for x>=5
    calls = 0
    real = acd_core.matches

    def counting(*args: Any) -> bool:
        nonlocal calls
        calls += 1
        return real(*args)

    monkeypatch.setattr(acd_core, "matches", counting)
    acd.set_ready("a7", 301)  # x=8: takes "warm"
    acd.enqueue("c1", "q", 302, skills={"x": 5})
    acd.set_ready("a9", 303)  # x=10: takes c1
    acd.set_ready("a1", 304)  # x=2: nothing for it
    assert offered(acd) == [("warm", "a7"), ("c1", "a9")]
    assert calls == 0


def test_pools_are_bounded_per_queue() -> None:
    """Each distinct requirement gets a pool; beyond POOL_LIMIT per queue the least
    recently used ones without waiting contacts are dropped, never one with a waiting
    contact."""
    skills = {f"s{i}": 5 for i in range(200)}
    acd = make([queue("q")], [agent("a", skills), agent("b", {"s0": 9})])
    acd.enqueue("keep", "q", 0, skills={"s0": 9})  # waits for b all along
    acd.login("a", 1, ready=True)
    limit = acd_core.POOL_LIMIT
    for i in range(200):
        acd.enqueue(f"c{i}", "q", 2 + i, skills={f"s{i}": 1 + i % 5})
        assert offered(acd) == [(f"c{i}", "a")]
        acd.answered(f"c{i}", "a", 2.5 + i)
        acd.ended(f"c{i}", 2.6 + i)
        assert len(acd._queues["q"].pools) <= limit
        assert len(acd._agents["a"].pools) <= limit
    assert acd.audit() == []
    acd.login("b", 300, ready=True)
    assert offered(acd) == [("keep", "b")]
