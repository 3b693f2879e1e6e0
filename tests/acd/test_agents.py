"""Agent states: every (state, action) of the table, breaks (R-5.2d), outbound calls and
the agent's day (R-5.2c)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from appliance.acd import Acd, AgentState, InvalidArgument, InvalidTransition, UnknownAgent
from appliance.acd.events import (
    AgentStateChanged,
    BreakApproved,
    BreakCancelled,
    BreakRefused,
)
from appliance.acd.states import AGENT_TRANSITIONS
from tests.acd.helpers import agent, make, only, queue

S = AgentState


def one_agent(**queue_kw: Any) -> Acd:
    queue_kw.setdefault("wrap_up", None)
    return make([queue("q", **queue_kw)], [agent("a"), agent("b")],
                not_ready_reasons=("lunch",), max_on_break=1)


# How to bring agent "a" into each state (a contact "c1" where one is needed).
def into(state: AgentState) -> Acd:
    acd = one_agent()
    if state is S.LOGGED_OUT:
        return acd
    if state is S.NOT_READY:
        acd.login("a", 1)
    elif state is S.BREAK:
        acd.login("a", 1)
        assert acd.request_break("a", 2)
    else:
        acd.login("a", 1, ready=True)
        if state is not S.READY:
            acd.enqueue("c1", "q", 2)
            if state is not S.RESERVED:
                acd.answered("c1", "a", 3)
                if state is S.HOLD:
                    acd.hold("a", 4)
                elif state is S.WRAP_UP:
                    acd.ended("c1", 4)
    assert acd.agent("a", 5).state is state
    acd.commands()
    acd.events()
    return acd


ACTIONS: dict[str, Callable[[Acd], Any]] = {
    "login": lambda acd: acd.login("a", 10),
    "logout": lambda acd: acd.logout("a", 10),
    "ready": lambda acd: acd.set_ready("a", 10),
    "not_ready": lambda acd: acd.set_not_ready("a", "lunch", 10),
    "break": lambda acd: acd.request_break("a", 10),
    "hold": lambda acd: acd.hold("a", 10),
    "resume": lambda acd: acd.resume("a", 10),
    "outbound": lambda acd: acd.start_outbound("a", 10),
    "outbound_end": lambda acd: acd.end_outbound("a", 10),
}


def state_of(acd: Acd) -> Any:
    return (acd.snapshot(10), acd.agent_counters("a", 10), acd.contact("c1"),
            acd.next_deadline())


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("state", list(S))
def test_every_state_and_action(state: AgentState, action: str) -> None:
    acd = into(state)
    allowed = AGENT_TRANSITIONS.get((state, action))
    if action == "break" and allowed is None:
        allowed = AGENT_TRANSITIONS.get((state, "break_request"))
    if action == "outbound_end":
        allowed = None  # not on an outbound call in any of these states
    before = state_of(acd)
    if allowed is None:
        with pytest.raises(InvalidTransition) as err:
            ACTIONS[action](acd)
        assert err.value.state == state and err.value.code == "invalid_agent_transition"
        assert repr(str(state.value)) in str(err.value)
        assert state_of(acd) == before, "a refused input changed something"
        assert acd.commands() == [] and acd.events() == []
    else:
        ACTIONS[action](acd)
        assert acd.agent("a", 10).state in allowed
        changes = only(acd.events(), AgentStateChanged)
        assert all(e.tenant_id == "acme" and e.at == 10 for e in changes)


def test_logout_while_ringing_puts_the_contact_back_and_cancels_the_ring() -> None:
    acd = into(S.RESERVED)
    acd.logout("a", 10)
    cmds = acd.commands()
    assert [type(c).__name__ for c in cmds] == ["CancelOffer"]
    assert cmds[0].reason == "logout"  # type: ignore[union-attr]
    view = acd.contact("c1")
    assert view is not None and view.state == "waiting" and view.enqueued_at == 2
    acd.login("b", 11, ready=True)
    assert only(acd.commands(), type(cmds[0])) == []
    assert acd.contact("c1").offered_to == ("b",)  # type: ignore[union-attr]


def test_unknown_agent_and_reason() -> None:
    acd = one_agent()
    with pytest.raises(UnknownAgent):
        acd.login("zed", 0)
    acd.login("a", 0)
    with pytest.raises(InvalidArgument):
        acd.set_not_ready("a", "coffee", 1)
    with pytest.raises(InvalidArgument):
        acd.set_not_ready("a", "no_answer", 1)  # only the core sets system reasons
    acd.set_not_ready("a", "", 1)
    acd.set_not_ready("a", "lunch", 2)
    assert acd.agent("a", 3).reason == "lunch"
    with pytest.raises(InvalidArgument):
        acd.login("b", float("nan"))


def test_after_call_work_until_done_then_ready() -> None:
    acd = into(S.WRAP_UP)
    assert acd.next_deadline() is None  # until done: no timer
    acd.tick(1000)
    assert acd.agent("a", 1000).state is S.WRAP_UP
    acd.set_ready("a", 1001)
    assert acd.agent("a", 1001).state is S.READY


def test_after_call_work_timed() -> None:
    acd = make([queue("q", wrap_up=30)], [agent("a")])
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "q", 1)
    acd.answered("c1", "a", 2)
    acd.ended("c1", 10)
    assert acd.agent("a", 10).state is S.WRAP_UP
    assert acd.next_deadline() == 40
    acd.tick(39.9)
    assert acd.agent("a", 39.9).state is S.WRAP_UP
    acd.commands()
    acd.enqueue("c2", "q", 39.9)
    assert acd.commands() == []  # no offer during after-call work
    acd.tick(40)
    assert acd.agent("a", 40).state is S.RESERVED
    assert [e.cause for e in only(acd.events(), AgentStateChanged)][-2:] == [
        "wrap_up_ended", "offer"]


def test_after_call_work_ended_early_and_none() -> None:
    acd = make([queue("q", wrap_up=30), queue("fast", wrap_up=0)],
               [agent("a", queues=("q", "fast"))])
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "q", 1)
    acd.answered("c1", "a", 2)
    acd.ended("c1", 10)
    acd.set_ready("a", 12)  # done before the 30 s
    assert acd.agent("a", 12).state is S.READY
    acd.tick(100)  # the stale timer does nothing
    assert acd.agent("a", 100).state is S.READY
    acd.enqueue("c2", "fast", 100)
    acd.answered("c2", "a", 101)
    acd.ended("c2", 110)
    assert acd.agent("a", 110).state is S.READY  # wrap_up 0: straight back


def test_break_approved_up_to_the_maximum_then_refused() -> None:
    acd = make([queue("q")], [agent("a"), agent("b"), agent("c")], max_on_break=2)
    for a in "abc":
        acd.login(a, 0)
    assert acd.request_break("a", 1)
    assert acd.request_break("b", 2)
    assert not acd.request_break("c", 3)
    refused = only(acd.events(), BreakRefused)
    assert [(e.agent, e.on_break, e.maximum) for e in refused] == [("c", 2, 2)]
    assert acd.agent("c", 3).state is S.NOT_READY
    acd.set_ready("a", 4)  # back from break: a place frees up
    assert acd.request_break("c", 5)
    assert acd.agent("c", 5).state is S.BREAK


def test_a_supervisor_grants_a_break_over_the_maximum_and_forces_not_ready() -> None:
    acd = make([queue("q")], [agent("a"), agent("b")], max_on_break=1,
               not_ready_reasons=("lunch",))
    for a in "ab":
        acd.login(a, 0, ready=True)
    assert acd.request_break("a", 1)
    assert not acd.request_break("b", 2)  # the agent's own request: over the maximum
    assert acd.request_break("b", 3, forced=True)  # the supervisor's approval
    approved = only(acd.events(), BreakApproved)
    assert [(e.agent, e.cause) for e in approved] == [("a", "auto_approved"),
                                                      ("b", "supervisor")]
    assert acd.agent("b", 3).state is S.BREAK
    assert acd.audit() == []  # the break count follows: 2 on break
    acd.set_ready("a", 4)
    acd.set_ready("b", 4)
    assert acd.request_break("a", 5)  # both back: the maximum applies again
    acd.set_not_ready("b", "whatever", 6, forced=True)  # a supervisor's: its own reason
    assert acd.agent("b", 6).reason == "supervisor"
    with pytest.raises(InvalidArgument):
        acd.set_not_ready("b", "supervisor", 7)  # not a code an agent may give


def test_break_groups_have_their_own_maximum() -> None:
    acd = make([queue("q")], [agent("a", break_group="night"), agent("b", break_group="night"),
                              agent("c")], max_on_break=1, break_groups={"night": 1})
    for a in "abc":
        acd.login(a, 0)
    assert acd.request_break("a", 1)
    assert not acd.request_break("b", 1)
    assert acd.request_break("c", 1)  # the default group is another count


def test_break_approved_during_a_call_starts_after_it() -> None:
    acd = make([queue("q", wrap_up=20)], [agent("a"), agent("b")], max_on_break=1)
    acd.login("a", 0, ready=True)
    acd.login("b", 0)
    acd.enqueue("c1", "q", 1)
    acd.answered("c1", "a", 2)
    assert acd.request_break("a", 3)
    approved = only(acd.events(), BreakApproved)
    assert approved[0].pending and approved[0].agent == "a"
    assert acd.agent("a", 3).state is S.TALKING and acd.agent("a", 3).break_pending
    assert not acd.request_break("b", 4)  # the approved one counts
    with pytest.raises(InvalidTransition):
        acd.request_break("a", 4)  # already approved
    acd.ended("c1", 10)
    assert acd.agent("a", 10).state is S.WRAP_UP  # after-call work first
    acd.enqueue("c2", "q", 11)
    acd.tick(30)
    assert acd.agent("a", 30).state is S.BREAK  # then the break, not the waiting c2
    assert acd.contact("c2").state == "waiting"  # type: ignore[union-attr]
    acd.set_ready("a", 40)
    assert acd.agent("a", 40).state is S.RESERVED


def test_pending_break_cancelled_and_on_logout() -> None:
    acd = make([queue("q")], [agent("a"), agent("b")], max_on_break=1)
    acd.login("a", 0, ready=True)
    acd.login("b", 0)
    acd.enqueue("c1", "q", 1)
    assert acd.request_break("a", 2)  # while ringing
    acd.cancel_break("a", 3)
    assert only(acd.events(), BreakCancelled)[0].cause == "cancelled"
    with pytest.raises(InvalidTransition):
        acd.cancel_break("a", 3)
    assert acd.request_break("b", 4)  # the place is free again
    acd.set_ready("b", 5)
    assert acd.request_break("a", 6)
    acd.logout("a", 7)  # the pending break goes with the logout
    assert acd.request_break("b", 8)


def test_pending_break_starts_when_the_ring_is_not_answered() -> None:
    acd = make([queue("q", ring_timeout=5)], [agent("a")], max_on_break=1)
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "q", 1)
    assert acd.request_break("a", 2)
    acd.tick(6)
    assert acd.agent("a", 6).state is S.BREAK


def test_outbound_call_returns_to_the_state_before() -> None:
    acd = make([queue("q")], [agent("a")], not_ready_reasons=("admin",))
    acd.login("a", 0)
    acd.set_not_ready("a", "admin", 1)
    acd.start_outbound("a", 2)
    acd.hold("a", 5)
    acd.resume("a", 6)
    acd.end_outbound("a", 12)
    view = acd.agent("a", 12)
    assert view.state is S.NOT_READY and view.reason == "admin" and not view.outbound
    acd.set_ready("a", 13)
    acd.start_outbound("a", 14)
    acd.enqueue("c1", "q", 15)
    assert acd.commands() == []  # no offers during an outbound call
    acd.end_outbound("a", 20)
    assert acd.agent("a", 20).state is S.RESERVED  # ready again: takes the waiting c1
    day = acd.agent_counters("a", 20)
    assert day.outbound_calls == 2 and day.outbound_time == pytest.approx(16)
    assert day.hold_time == pytest.approx(1) and day.talk_time == 0


def test_the_agents_day() -> None:
    acd = make([queue("q", wrap_up=None)], [agent("a")], not_ready_reasons=("lunch",),
               max_on_break=1)
    acd.login("a", 0)  # not ready 0-10 (1st period)
    acd.set_ready("a", 10)  # ready 10-20
    acd.enqueue("c1", "q", 20)  # ringing 20-23
    acd.answered("c1", "a", 23)  # talking 23-30, hold 30-35, talking 35-40
    acd.hold("a", 30)
    acd.resume("a", 35)
    acd.ended("c1", 40)  # wrap 40-45
    acd.set_not_ready("a", "lunch", 45)  # not ready 45-50 (2nd period)
    acd.request_break("a", 50)  # break 50-70
    acd.set_ready("a", 70)
    day = acd.agent_counters("a", 80)  # ready 70-80 counted up to now
    assert (day.offered, day.answered, day.no_answer) == (1, 1, 0)
    assert day.not_ready_periods == 2 and day.not_ready_time == pytest.approx(15)
    assert day.ready_time == pytest.approx(20) and day.ringing_time == pytest.approx(3)
    assert day.talk_time == pytest.approx(17) and day.hold_time == pytest.approx(5)
    assert day.wrap_time == pytest.approx(5)
    assert day.break_periods == 1 and day.break_time == pytest.approx(20)
    assert acd.agent("a", 80).in_state == pytest.approx(10)
    acd.reset_day(90)
    day = acd.agent_counters("a", 95)
    assert day.answered == 0 and day.ready_time == pytest.approx(5)
