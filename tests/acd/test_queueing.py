"""No-answer (R-5.2e), overflow by waiting time, queue limits and transfers."""

from __future__ import annotations

import pytest

from appliance.acd import (
    AgentState,
    CancelOffer,
    ContactStateError,
    ExitQueue,
    Offer,
    OverflowRule,
)
from appliance.acd.events import (
    AgentStateChanged,
    ContactExited,
    ContactOverflowed,
    ContactQueued,
    ContactTransferred,
    NoAnswer,
)
from tests.acd.helpers import agent, make, only, queue, ready_all


def offers(acd: object) -> list[tuple[str, str]]:
    return [(o.contact, o.agent) for o in only(acd.commands(), Offer)]  # type: ignore[attr-defined]


# ----------------------------------------------------------------- no answer


def test_no_answer_requeues_at_the_original_place_and_sets_the_agent_busy() -> None:
    acd = make([queue("q", ring_timeout=15)], [agent("a"), agent("b")])
    acd.enqueue("c1", "q", 1)
    acd.enqueue("c2", "q", 2)
    acd.login("a", 5, ready=True)
    assert offers(acd) == [("c1", "a")]
    acd.tick(19.9)
    assert acd.commands() == []
    assert acd.next_deadline() == 20
    acd.events()
    acd.tick(20)
    assert [(c.agent, c.reason) for c in only(acd.commands(), CancelOffer)] == [("a", "timeout")]
    events = acd.events()
    (no_answer,) = only(events, NoAnswer)
    assert (no_answer.contact, no_answer.agent, no_answer.cause, no_answer.at) == (
        "c1", "a", "timeout", 20)
    change = only(events, AgentStateChanged)[-1]
    assert (change.agent, change.state, change.reason) == ("a", AgentState.NOT_READY,
                                                           "no_answer")
    queued = only(events, ContactQueued)[-1]
    assert (queued.contact, queued.position, queued.cause) == ("c1", 1, "timeout")
    assert acd.position("c1") == 1 and acd.position("c2") == 2
    assert acd.contact("c1").enqueued_at == 1  # type: ignore[union-attr]
    acd.login("b", 21, ready=True)
    assert offers(acd) == [("c1", "b")]
    assert acd.agent_counters("a", 21).no_answer == 1
    assert acd.queue_counters("q").no_answer == 1


def test_no_answer_goes_straight_to_the_next_ready_agent() -> None:
    acd = make([queue("q", ring_timeout=10)], [agent("a"), agent("b")])
    ready_all(acd, "ab", 0)
    acd.enqueue("c1", "q", 1)
    assert offers(acd) == [("c1", "a")]
    acd.tick(11)
    assert offers(acd) == [("c1", "b")]


@pytest.mark.parametrize(("how", "reason"), [("declined", "declined"),
                                             ("no_answer", "no_answer")])
def test_declined_and_edge_failures_are_no_answers(how: str, reason: str) -> None:
    acd = make([queue("q")], [agent("a"), agent("b")])
    ready_all(acd, "ab", 0)
    acd.enqueue("c1", "q", 1)
    acd.commands()
    getattr(acd, how)("c1", "a", 2)
    assert acd.commands() == [Offer(tenant_id="acme", contact="c1", agent="b", queue="q",
                                    timeout=15.0, auto_answer=False, language="",
                                    medium="voice")]
    assert acd.agent("a", 2).reason == reason
    assert only(acd.events(), NoAnswer)[0].cause == ("declined" if how == "declined"
                                                     else "failed")
    with pytest.raises(ContactStateError):
        getattr(acd, how)("c1", "a", 3)  # no longer a's offer


def test_abandon_while_ringing_cancels_the_offer() -> None:
    acd = make([queue("q")], [agent("a")])
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "q", 1)
    acd.commands()
    acd.abandon("c1", 4)
    assert [(c.agent, c.reason) for c in only(acd.commands(), CancelOffer)] == [
        ("a", "abandoned")]
    assert acd.agent("a", 4).state is AgentState.READY
    assert acd.contact("c1") is None
    assert acd.queue_counters("q").abandoned == 1


# ----------------------------------------------------------------- overflow


def test_overflow_adds_other_skills_after_the_waiting_time() -> None:
    acd = make([queue("q", overflow=(OverflowRule(after=30, also_match={"y": 1}),))],
               [agent("a", {"x": 3}), agent("b", {"y": 4})])
    ready_all(acd, "ab", 0)
    acd.enqueue("c1", "q", 0, skills={"x": 5})
    assert offers(acd) == []
    assert acd.next_deadline() == 30
    acd.tick(29.9)
    assert offers(acd) == []
    acd.events()
    acd.tick(30)
    assert offers(acd) == [("c1", "b")]
    (event,) = only(acd.events(), ContactOverflowed)
    assert event.requirement == (("y", 1),) and event.to_queue is None
    assert acd.contact("c1").requirements == ((("x", 5),), (("y", 1),))  # type: ignore


def test_overflow_lowers_levels() -> None:
    acd = make([queue("q", overflow=(OverflowRule(after=20, lower_levels_by=3),
                                     OverflowRule(after=40, also_match={})))],
               [agent("a", {"x": 5}), agent("b")])
    ready_all(acd, "ab", 0)
    acd.enqueue("c1", "q", 0, skills={"x": 8})
    acd.enqueue("c2", "q", 1, skills={"x": 9})
    acd.tick(20)
    assert offers(acd) == [("c1", "a")]
    acd.answered("c1", "a", 20.5)
    acd.tick(21)
    assert offers(acd) == []  # c2: x>=6 now, still not a
    acd.tick(41)
    assert offers(acd) == [("c2", "b")]  # any agent of the queue


def test_overflow_never_skips_the_agents_originally_asked_for() -> None:
    acd = make([queue("q", ring_timeout=30,
                      overflow=(OverflowRule(after=10, also_match={"y": 1}),))],
               [agent("x1", {"x": 9}), agent("b", {"y": 1}), agent("x2", {"x": 9})])
    acd.login("x1", 0, ready=True)
    acd.enqueue("c1", "q", 1, skills={"x": 8})
    assert offers(acd) == [("c1", "x1")]
    acd.tick(11)  # the rule is due while c1 rings
    acd.login("b", 12, ready=True)  # idle the longest
    acd.login("x2", 13, ready=True)
    assert offers(acd) == []
    acd.declined("c1", "x1", 14)  # back in line with both ways to match: x first
    assert offers(acd) == [("c1", "x2")]


def test_overflow_to_another_queue_keeps_the_first_enqueue_time() -> None:
    acd = make([queue("first", overflow=(OverflowRule(after=60, to_queue="second"),)),
                queue("second", service_level_target=80)],
               [agent("a", queues=("second",))])
    acd.enqueue("old", "first", 0)
    acd.enqueue("new", "second", 30)
    acd.tick(60)
    (event,) = only(acd.events(), ContactOverflowed)
    assert (event.contact, event.queue, event.to_queue) == ("old", "first", "second")
    view = acd.contact("old")
    assert view is not None and view.queue == "second" and view.enqueued_at == 0
    assert acd.position("old") == 1 and acd.position("new") == 2
    acd.login("a", 70, ready=True)
    assert offers(acd) == [("old", "a")]
    acd.answered("old", "a", 75)
    assert acd.queue_counters("second").wait_time_answered == 75
    assert acd.queue_counters("second").answered_in_target == 1
    assert acd.queue_counters("first").overflowed_out == 1
    assert acd.queue_counters("second").overflowed_in == 1


def test_overflow_rules_of_the_new_queue_already_due_apply_at_once() -> None:
    acd = make([queue("first", overflow=(OverflowRule(after=30, to_queue="second"),)),
                queue("second", overflow=(OverflowRule(after=20, also_match={"z": 1}),))],
               [agent("z", {"z": 1}, queues=("second",))])
    acd.login("z", 0, ready=True)
    acd.enqueue("c1", "first", 0, skills={"x": 1})
    acd.tick(30)
    assert [e.to_queue or e.requirement for e in only(acd.events(), ContactOverflowed)] == [
        "second", (("z", 1),)]
    assert offers(acd) == [("c1", "z")]


# ----------------------------------------------------------------- limits


def test_max_length_sends_the_caller_to_the_route() -> None:
    acd = make([queue("q", max_length=2, max_length_route="voicemail")], [agent("a")])
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "q", 1)  # ringing: still in the queue
    acd.enqueue("c2", "q", 2)
    acd.commands()
    acd.enqueue("c3", "q", 3)
    assert acd.commands() == [ExitQueue(tenant_id="acme", contact="c3", queue="q",
                                        route="voicemail", reason="max_length")]
    (exited,) = only(acd.events(), ContactExited)
    assert (exited.cause, exited.waited) == ("max_length", 0)
    assert acd.contact("c3") is None
    acd.answered("c1", "a", 4)  # answered: no longer counts
    acd.enqueue("c4", "q", 5)
    assert acd.contact("c4") is not None
    counters = acd.queue_counters("q")
    assert (counters.arrived, counters.exited_max_length) == (4, 1)


def test_max_wait_exits_but_not_while_ringing() -> None:
    acd = make([queue("q", max_wait=60, max_wait_route="vm", ring_timeout=15)], [agent("a")])
    acd.enqueue("c1", "q", 0)
    acd.enqueue("c2", "q", 10)
    acd.login("a", 50, ready=True)  # c1 rings from 50 to 65, past its 60 s
    acd.commands()
    acd.tick(60)
    assert acd.commands() == []
    acd.tick(65)  # not answered: back in line, but its time is up
    cmds = acd.commands()
    assert ExitQueue(tenant_id="acme", contact="c1", queue="q", route="vm",
                     reason="max_wait") in cmds
    assert acd.contact("c1") is None
    assert acd.contact("c2").state == "waiting"  # type: ignore[union-attr]
    acd.tick(70)
    assert only(acd.commands(), ExitQueue)[0].contact == "c2"
    assert acd.queue_counters("q").exited_max_wait == 2


# ----------------------------------------------------------------- transfers


def test_transfer_to_a_queue_is_a_new_arrival_there() -> None:
    acd = make([queue("front", wrap_up=10), queue("back", priority=1)],
               [agent("a", queues=("front",)), agent("b", queues=("back",))])
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "front", 1, skills={}, data={"order": "7"}, language="fr")
    acd.answered("c1", "a", 2)
    acd.transfer_to_queue("c1", "back", 30, priority=4)
    (event,) = only(acd.events(), ContactTransferred)
    assert (event.from_queue, event.to_queue, event.agent) == ("front", "back", "a")
    assert acd.agent("a", 30).state is AgentState.WRAP_UP
    view = acd.contact("c1")
    assert view is not None and (view.queue, view.enqueued_at, view.priority) == (
        "back", 30, 4)
    acd.commands()
    acd.login("b", 31, ready=True)
    (offer,) = only(acd.commands(), Offer)
    assert (offer.agent, offer.data, offer.language) == ("b", {"order": "7"}, "fr")
    assert acd.queue_counters("back").transferred_in == 1
    with pytest.raises(ContactStateError):
        acd.transfer_to_queue("c1", "front", 32)  # ringing, not answered
