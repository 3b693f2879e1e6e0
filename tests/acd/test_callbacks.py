"""Callbacks: the caller keeps its place; PlaceCallback when an agent is free for it."""

from __future__ import annotations

import pytest

from appliance.acd import (
    Acd,
    AgentState,
    CallbackNotAllowed,
    CancelCallback,
    ContactStateError,
    InvalidArgument,
    Offer,
    PlaceCallback,
)
from appliance.acd.events import (
    CallbackFailed,
    CallbackPlaced,
    CallbackRequested,
    ContactAbandoned,
    ContactAnswered,
    ContactQueued,
)
from tests.acd.helpers import agent, make, only, queue


def callback_acd(**kw: object) -> Acd:
    q = {"callback_allowed": True, "callback_attempts": 2, "callback_retry_delay": 60,
         "callback_timeout": 30, "max_wait": 100, "announce_position_every": 20}
    q.update(kw)
    return make([queue("q", **q)], [agent("a"), agent("b")])


def test_the_callback_keeps_the_place_and_fires_when_an_agent_frees() -> None:
    acd = make([queue("q", callback_allowed=True, wrap_up=0)], [agent("a")])
    acd.login("a", 0, ready=True)
    acd.enqueue("busy", "q", 0)
    acd.answered("busy", "a", 1)  # a is on a call
    acd.enqueue("c1", "q", 2, data={"ticket": "9"})
    acd.enqueue("c2", "q", 3)
    acd.request_callback("c1", "+15550101", 10)
    assert only(acd.events(), CallbackRequested)[0].number == "+15550101"
    acd.enqueue("c3", "q", 11)
    assert [acd.position(c) for c in ("c1", "c2", "c3")] == [1, 2, 3]
    acd.commands()
    acd.ended("busy", 50)  # a frees: the callback entry is at the head
    (place,) = acd.commands()
    assert place == PlaceCallback(tenant_id="acme", contact="c1", queue="q", agent="a",
                                  number="+15550101", timeout=45.0, attempt=1,
                                  data={"ticket": "9"})
    assert acd.agent("a", 50).state is AgentState.RESERVED  # kept for the callback
    assert acd.contact("c1").state == "calling_back"
    acd.callback_answered("c1", 58)
    (offer,) = only(acd.commands(), Offer)
    assert (offer.contact, offer.agent, offer.callback) == ("c1", "a", True)
    acd.answered("c1", "a", 60)
    answered = only(acd.events(), ContactAnswered)[-1]
    assert answered.callback and answered.waited == 58
    counters = acd.queue_counters("q")
    assert (counters.callbacks_requested, counters.callbacks_placed,
            counters.callbacks_connected, counters.answered_in_target) == (1, 1, 1, 1)
    # ("busy" was answered within the target; the callback does not count in it)


def test_a_callback_entry_does_not_jump_ahead() -> None:
    acd = make([queue("q", callback_allowed=True)], [agent("a"), agent("b")])
    acd.enqueue("live", "q", 1)
    acd.enqueue("cb", "q", 2)
    acd.request_callback("cb", "100", 3)
    acd.login("a", 4, ready=True)
    assert [(o.contact, o.agent) for o in only(acd.commands(), Offer)] == [("live", "a")]
    acd.login("b", 5, ready=True)
    assert [(p.contact, p.agent) for p in only(acd.commands(), PlaceCallback)] == [("cb", "b")]


def test_failed_callbacks_are_retried_at_the_same_place_then_dropped() -> None:
    acd = callback_acd()
    acd.enqueue("c1", "q", 0)
    acd.request_callback("c1", "100", 1)
    acd.enqueue("c2", "q", 2)
    acd.login("a", 3, ready=True)
    assert only(acd.commands(), PlaceCallback)[0].attempt == 1
    acd.callback_failed("c1", 10)
    (failed,) = only(acd.events(), CallbackFailed)
    assert (failed.attempt, failed.final, failed.cause) == (1, False, "failed")
    # the agent is free again and takes the next contact; c1 waits for its retry
    assert [(o.contact, o.agent) for o in only(acd.commands(), Offer)] == [
        ("c2", "a")]
    assert acd.contact("c1").state == "parked"
    acd.enqueue("c3", "q", 20)
    acd.tick(70)
    queued = only(acd.events(), ContactQueued)[-1]
    assert (queued.contact, queued.cause, queued.position) == ("c1", "callback_retry", 1)
    acd.login("b", 71, ready=True)
    place = only(acd.commands(), PlaceCallback)
    assert [(p.contact, p.agent, p.attempt) for p in place] == [("c1", "b", 2)]
    acd.tick(101)  # no answer within callback_timeout
    assert CancelCallback(tenant_id="acme", contact="c1", reason="timeout") in \
        acd.commands()
    (failed,) = only(acd.events(), CallbackFailed)
    assert (failed.attempt, failed.final, failed.cause) == (2, True, "timeout")
    assert acd.contact("c1") is None
    assert acd.agent("b", 101).state is AgentState.RESERVED  # took c3
    counters = acd.queue_counters("q")
    assert (counters.callbacks_failed, counters.callbacks_dropped) == (2, 1)


def test_callback_entries_have_no_max_wait_and_no_announcements() -> None:
    acd = callback_acd()
    acd.enqueue("c1", "q", 0)
    acd.request_callback("c1", "100", 1)
    acd.tick(1000)
    assert acd.commands() == []
    assert acd.contact("c1").state == "waiting"


def test_callback_requests_are_checked() -> None:
    acd = make([queue("q"), queue("cb", callback_allowed=True)], [agent("a")])
    acd.enqueue("c1", "q", 0)
    with pytest.raises(CallbackNotAllowed) as err:
        acd.request_callback("c1", "100", 1)
    assert err.value.code == "callback_not_allowed"
    acd.enqueue("c2", "cb", 0)
    with pytest.raises(InvalidArgument):
        acd.request_callback("c2", "", 1)
    acd.request_callback("c2", "100", 1)
    with pytest.raises(ContactStateError):
        acd.request_callback("c2", "100", 2)  # already one
    with pytest.raises(ContactStateError):
        acd.callback_answered("c2", 2)  # not being called
    acd.login("a", 3, ready=True)
    with pytest.raises(ContactStateError):
        acd.request_callback("c2", "100", 4)  # being called


def test_the_reserved_agent_logs_out_during_the_callback() -> None:
    acd = make([queue("q", callback_allowed=True)], [agent("a"), agent("b")])
    acd.enqueue("c1", "q", 0)
    acd.request_callback("c1", "100", 1)
    acd.enqueue("c2", "q", 2)
    acd.login("a", 3, ready=True)
    acd.logout("a", 4)  # the call to the customer goes on
    acd.callback_answered("c1", 5)  # the customer is on the line: first in line again
    assert acd.position("c1") == 1
    acd.commands()
    acd.login("b", 6, ready=True)
    (offer,) = only(acd.commands(), Offer)
    assert (offer.contact, offer.agent, offer.callback) == ("c1", "b", True)


def test_cancelling_a_callback() -> None:
    acd = make([queue("q", callback_allowed=True)], [agent("a")])
    acd.enqueue("c1", "q", 0)
    acd.request_callback("c1", "100", 1)
    acd.login("a", 2, ready=True)
    acd.commands()
    acd.events()
    acd.abandon("c1", 3)
    assert acd.commands() == [CancelCallback(tenant_id="acme", contact="c1",
                                             reason="cancelled")]
    assert only(acd.events(), ContactAbandoned)[0].cause == "callback_cancelled"
    assert acd.agent("a", 3).state is AgentState.READY
    assert acd.queue_counters("q").abandoned == 0  # not a caller abandoning
    assert only(acd.events(), CallbackPlaced) == []
