"""Announcements (position, estimated wait), the service level, the wallboard snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.acd import Acd, AgentState, Announce
from appliance.acd.model import SlAbandoned
from tests.acd.helpers import agent, make, only, queue
from tests.test_purity import check_source, module_name

REPO = Path(__file__).resolve().parents[2]


def test_position_and_estimated_wait_are_announced() -> None:
    acd = make([queue("q", announce_position_every=30, initial_aht=120, wrap_up=0)],
               [agent("a"), agent("b")])
    acd.login("a", 0, ready=True)
    acd.enqueue("busy", "q", 0)
    acd.answered("busy", "a", 0)  # one agent staffs the queue, busy
    acd.enqueue("c1", "q", 0)
    acd.enqueue("c2", "q", 10)
    acd.commands()
    acd.tick(30)
    assert acd.commands() == [Announce(tenant_id="acme", contact="c1", queue="q",
                                       position=1, ewt_seconds=120)]
    acd.tick(40)
    assert only(acd.commands(), Announce)[0] == Announce(
        tenant_id="acme", contact="c2", queue="q", position=2, ewt_seconds=240)
    acd.ended("busy", 60)  # handled in 60 s: the recent average is now 60
    acd.answered("c1", "a", 61)
    acd.commands()
    acd.tick(70)
    assert only(acd.commands(), Announce) == [Announce(
        tenant_id="acme", contact="c2", queue="q", position=1, ewt_seconds=60)]
    acd.login("b", 71)  # not ready: does not staff the queue
    acd.set_ready("b", 72)
    acd.answered("c2", "b", 73)
    acd.tick(100)
    assert only(acd.commands(), Announce) == []  # c2 went to b at 72


def test_no_estimate_without_agents_and_priority_moves_the_position() -> None:
    acd = make([queue("q", announce_position_every=15)], [agent("a")])
    acd.enqueue("c1", "q", 0)
    acd.enqueue("vip", "q", 5, priority=3)
    assert acd.position("vip") == 1 and acd.position("c1") == 2
    acd.tick(15)
    assert acd.commands() == [Announce(tenant_id="acme", contact="c1", queue="q",
                                       position=2, ewt_seconds=None)]
    assert acd.estimated_wait("q", 1) is None


@pytest.mark.parametrize(("mode", "expected"), [
    ("missed", 1 / 5), ("ignored", 1 / 3), ("ignored_in_target", 1 / 4),
    ("met_in_target", 2 / 5)])
def test_service_level_counting(mode: SlAbandoned, expected: float) -> None:
    acd = make([queue("q", service_level_target=20, short_abandon=5, sl_abandoned=mode,
                      max_wait=50, service_level_share=0.3)], [agent("a")])
    acd.enqueue("fast", "q", 0)  # answered in 10: met
    acd.enqueue("slow", "q", 0)  # answered in 30: missed
    acd.enqueue("short", "q", 0)  # abandoned in 2: never counted
    acd.enqueue("in", "q", 0)  # abandoned in 15: within the target
    acd.enqueue("late", "q", 0)  # abandoned in 40: after the target
    acd.enqueue("gone", "q", 0)  # leaves at 50 by max_wait: missed
    acd.abandon("short", 2)
    acd.login("a", 10, ready=True)
    acd.answered("fast", "a", 10)
    acd.abandon("in", 15)
    acd.ended("fast", 20)
    acd.answered("slow", "a", 30)
    acd.abandon("late", 40)
    acd.tick(50)
    counters = acd.queue_counters("q")
    assert (counters.answered, counters.answered_in_target, counters.abandoned,
            counters.abandoned_short, counters.abandoned_in_target,
            counters.exited_max_wait) == (2, 1, 3, 1, 1, 1)
    assert acd.service_level("q") == pytest.approx(expected)
    (board,) = acd.snapshot(50).queues
    assert board.service_level == pytest.approx(expected)
    assert board.service_level_met is (expected >= 0.3)


def test_service_level_before_any_contact() -> None:
    acd = make([queue("q")], [agent("a")])
    assert acd.service_level("q") is None
    assert acd.snapshot(0).queues[0].service_level_met is None


def test_snapshot_for_the_wallboard() -> None:
    acd = make([queue("q", callback_allowed=True), queue("r")],
               [agent("a"), agent("b", queues=("q", "r")), agent("c"), agent("d")],
               max_on_break=1)
    acd.login("a", 0, ready=True)
    acd.enqueue("c1", "q", 1)  # rings a
    acd.login("b", 2, ready=True)
    acd.enqueue("c2", "q", 3)  # rings b
    acd.answered("c2", "b", 4)
    acd.enqueue("c3", "q", 5)
    acd.enqueue("c4", "q", 6)
    acd.request_callback("c4", "100", 7)
    acd.enqueue("c5", "r", 8)
    acd.abandon("c5", 9)
    acd.login("c", 10)
    acd.login("d", 10)
    acd.request_break("d", 11)
    snap = acd.snapshot(20)
    assert snap.tenant_id == "acme" and snap.at == 20
    q, r = snap.queues
    assert (q.name, q.waiting, q.ringing, q.callbacks, q.longest_wait) == ("q", 2, 1, 1, 15)
    assert (q.answered, q.abandoned, q.staffed, q.ready) == (1, 0, 2, 0)
    assert (r.waiting, r.abandoned, r.staffed, r.longest_wait) == (0, 1, 1, 0)
    agents = {a.id: a for a in snap.agents}
    assert (agents["a"].state, agents["a"].contact, agents["a"].in_state) == (
        AgentState.RESERVED, "c1", 19)
    assert (agents["b"].state, agents["b"].queue, agents["b"].medium) == (
        AgentState.TALKING, "q", "voice")
    assert agents["d"].state is AgentState.BREAK
    team = snap.team
    assert (team.logged_in, team.ready, team.busy, team.not_ready, team.on_break) == (
        4, 0, 2, 1, 1)


def test_day_rolls_over_at_local_midnight() -> None:
    acd = make([queue("q")], [agent("a")])
    acd.set_local_time(0, 23 * 3600)  # 23:00
    acd.enqueue("c1", "q", 1)
    acd.abandon("c1", 2)
    assert acd.queue_counters("q").abandoned == 1
    assert acd.next_deadline() == 3600
    acd.tick(3600)
    assert acd.queue_counters("q").abandoned == 0
    assert [type(e).__name__ for e in acd.events()][-1] == "DayReset"
    assert acd.next_deadline() == 3600 + 86400


def test_views_are_copies() -> None:
    acd: Acd = make([queue("q")], [agent("a")])
    counters = acd.queue_counters("q")
    counters.answered = 99
    assert acd.queue_counters("q").answered == 0


def test_every_acd_module_is_pure() -> None:
    paths = sorted((REPO / "appliance" / "acd").glob("*.py"))
    assert len(paths) >= 9
    for path in paths:
        source = path.read_text(encoding="utf-8")
        assert check_source(source, module_name(path), path.name == "__init__.py") == [], path
