"""The daily statistics record (appliance/acd/daily.py): every counter from fake event
documents, states split at local midnight and by timezone (DST days too), agents and
queues and tenants kept apart, restarts, and a cross-check against the core's own day
counters over random runs of a real ``Acd``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

import pytest

from appliance.acd import AcdError, OverflowRule, QueueConfig
from appliance.acd.daily import (
    DEFAULT_SERVICE_LEVEL_TARGET,
    AgentDay,
    DailyStats,
    DayRecords,
    QueueDay,
    parse_date,
)
from appliance.acd.events import (
    ContactAnswered,
    ContactEnded,
    ContactTransferred,
    NoAnswer,
    OfferCancelled,
    OfferMade,
)
from appliance.agents import event_doc
from tests.acd.helpers import agent, make, queue

UTC = dt.UTC
DAY = dt.date(2024, 3, 5)
T0 = dt.datetime(2024, 3, 5, tzinfo=UTC).timestamp()  # 2024-03-05 00:00 UTC
H, M = 3600.0, 60.0


def doc(kind: str, wall: float, tenant: str = "acme", cause: str = "",
        **fields: Any) -> dict[str, Any]:
    return {"type": kind, "wall": wall, "tenant_id": tenant, "at": wall - T0,
            "cause": cause, **fields}


def moved(wall: float, agent_id: str, state: str, previous: str, *, reason: str = "",
          cause: str = "", tenant: str = "acme") -> dict[str, Any]:
    return doc("AgentStateChanged", wall, tenant, cause, agent=agent_id, state=state,
               previous=previous, reason=reason, contact=None, medium="")


def feed(stats: DailyStats, docs: list[dict[str, Any]]) -> list[tuple[str, dt.date]]:
    closed: list[tuple[str, dt.date]] = []
    for d in docs:
        closed += stats.add(d)
    return closed


def agent_of(stats: DailyStats, name: str, day: dt.date = DAY, tenant: str = "acme",
             now: float | None = None) -> AgentDay:
    records = stats.records(tenant, day, now)
    assert records is not None
    found = [a for a in records.agents if a.agent == name]
    assert len(found) == 1, records
    return found[0]


def queue_of(stats: DailyStats, name: str, day: dt.date = DAY,
             tenant: str = "acme") -> QueueDay:
    records = stats.records(tenant, day)
    assert records is not None
    found = [q for q in records.queues if q.queue == name]
    assert len(found) == 1, records
    return found[0]


def state_sum(a: AgentDay) -> float:
    return (a.ready_seconds + a.not_ready_seconds + a.break_seconds + a.ringing_seconds
            + a.talk_seconds + a.wrap_up_seconds + a.outbound_seconds)


# ------------------------------------------------------------------------ agents
def test_an_agents_day_every_counter_and_time() -> None:
    t = T0 + 9 * H
    stats = DailyStats()
    feed(stats, [
        moved(t, "a1", "not_ready", "logged_out", reason="login", cause="login"),
        moved(t + 10 * M, "a1", "ready", "not_ready", cause="ready"),
        # a contact: rings 10 s, talks 5 min, holds 1 min, talks 4 min, 2 min after-call work
        moved(t + 20 * M, "a1", "reserved", "ready", cause="offer"),
        doc("OfferMade", t + 20 * M, contact="c1", agent="a1", queue="q", ring_all=False,
            night_alert=False),
        moved(t + 20 * M + 10, "a1", "talking", "reserved", cause="answered"),
        doc("ContactAnswered", t + 20 * M + 10, contact="c1", agent="a1", queue="q",
            waited=12.0, callback=False),
        moved(t + 25 * M + 10, "a1", "hold", "talking", cause="hold"),
        moved(t + 26 * M + 10, "a1", "talking", "hold", cause="resume"),
        moved(t + 30 * M + 10, "a1", "wrap_up", "talking", cause="ended"),
        moved(t + 32 * M + 10, "a1", "ready", "wrap_up", cause="done"),
        # an offer not answered (15 s), then one declined (5 s)
        moved(t + 40 * M, "a1", "reserved", "ready", cause="offer"),
        doc("OfferMade", t + 40 * M, contact="c2", agent="a1", queue="q", ring_all=False,
            night_alert=False),
        doc("NoAnswer", t + 40 * M + 15, "acme", "timeout", contact="c2", agent="a1",
            queue="q"),
        moved(t + 40 * M + 15, "a1", "not_ready", "reserved", reason="no_answer",
              cause="timeout"),
        moved(t + 45 * M, "a1", "ready", "not_ready", cause="ready"),
        moved(t + 50 * M, "a1", "reserved", "ready", cause="offer"),
        doc("OfferMade", t + 50 * M, contact="c3", agent="a1", queue="q", ring_all=False,
            night_alert=False),
        doc("NoAnswer", t + 50 * M + 5, "acme", "declined", contact="c3", agent="a1",
            queue="q"),
        moved(t + 50 * M + 5, "a1", "not_ready", "reserved", reason="declined",
              cause="declined"),
        moved(t + 60 * M, "a1", "not_ready", "not_ready", reason="lunch", cause="busy"),
        doc("BreakRefused", t + 80 * M, agent="a1", group="", on_break=1, maximum=1),
        moved(t + 90 * M, "a1", "break", "not_ready", cause="break"),
        moved(t + 120 * M, "a1", "ready", "break", cause="ready"),
        # an outbound call: 5 min talking, 1 min on hold, 3 min talking
        moved(t + 130 * M, "a1", "talking", "ready", cause="outbound"),
        moved(t + 135 * M, "a1", "hold", "talking", cause="hold"),
        moved(t + 136 * M, "a1", "talking", "hold", cause="resume"),
        moved(t + 139 * M, "a1", "ready", "talking", cause="outbound_ended"),
        moved(t + 180 * M, "a1", "logged_out", "ready", cause="logout"),
        # logged out: no time counts, whatever comes later
        moved(t + 240 * M, "a1", "not_ready", "logged_out", reason="login", cause="login"),
        moved(t + 250 * M, "a1", "logged_out", "not_ready", cause="logout"),
    ])
    a = agent_of(stats, "a1")
    assert (a.logins, a.offers, a.answered, a.no_answers, a.declined) == (2, 3, 1, 1, 1)
    assert (a.breaks, a.breaks_refused, a.outbound_calls, a.transferred) == (1, 1, 1, 0)
    # two sign-ins, no answer, declined; lunch after declined is the same period
    assert a.not_ready_periods == 4
    assert a.ringing_seconds == pytest.approx(10 + 15 + 5)
    assert a.talk_seconds == pytest.approx(10 * M)  # hold included
    assert a.hold_seconds == pytest.approx(2 * M)  # 1 min on the contact, 1 on the outbound
    assert a.wrap_up_seconds == pytest.approx(2 * M)
    assert a.outbound_seconds == pytest.approx(9 * M)
    assert a.break_seconds == pytest.approx(30 * M)
    ready = 10 * M + (40 * M - (32 * M + 10)) + 5 * M + (130 * M - 120 * M) + 41 * M
    assert a.ready_seconds == pytest.approx(ready)
    assert a.not_ready_by_reason == pytest.approx({
        "login": 10 * M + 10 * M, "no_answer": 5 * M - 15,
        "declined": 10 * M - 5, "lunch": 30 * M})
    assert a.not_ready_seconds == pytest.approx(sum(a.not_ready_by_reason.values()))
    assert a.logged_in_seconds == pytest.approx(180 * M + 10 * M)
    assert a.logged_in_seconds == pytest.approx(state_sum(a))


def test_open_states_count_up_to_now_in_a_view_only() -> None:
    stats = DailyStats()
    feed(stats, [moved(T0 + H, "a1", "ready", "logged_out", cause="login")])
    assert agent_of(stats, "a1").ready_seconds == 0  # nothing closed yet
    assert agent_of(stats, "a1", now=T0 + H + 90).ready_seconds == pytest.approx(90)
    assert agent_of(stats, "a1", now=T0 + H - 50).ready_seconds == pytest.approx(0), \
        "a view never goes back before the last event"
    assert agent_of(stats, "a1").ready_seconds == 0  # the views changed nothing
    feed(stats, [moved(T0 + H + 100, "a1", "not_ready", "ready", cause="busy")])
    assert agent_of(stats, "a1").ready_seconds == pytest.approx(100)
    records = stats.records("acme", DAY, T0 + H + 160)
    assert records is not None and records.until == pytest.approx(T0 + H + 160)
    assert records.agents[0].not_ready_by_reason == pytest.approx({"": 60})


# ------------------------------------------------------------------------ queues
def test_a_queues_day_every_counter() -> None:
    t = T0 + 10 * H
    targets = {("acme", "q"): 30.0}
    stats = DailyStats(service_level_target=lambda tenant, q: targets.get((tenant, q)))
    feed(stats, [
        doc("ContactQueued", t, "acme", "enqueued", contact="c1", queue="q", priority=0,
            position=1),
        doc("ContactQueued", t, "acme", "enqueued", contact="c2", queue="q", priority=0,
            position=2),
        doc("ContactQueued", t + 1, "acme", "transfer", contact="c3", queue="q",
            priority=0, position=3),
        # back in line after an offer: not a new arrival
        doc("ContactQueued", t + 2, "acme", "timeout", contact="c1", queue="q", priority=0,
            position=1),
        doc("OfferMade", t + 3, contact="c1", agent="a1", queue="q", ring_all=False,
            night_alert=False),
        doc("NoAnswer", t + 4, "acme", "failed", contact="c1", agent="a1", queue="q"),
        doc("ContactAnswered", t + 25, contact="c1", agent="a2", queue="q", waited=25.0,
            callback=False),  # within 30 s
        doc("ContactAnswered", t + 40, contact="c2", agent="a1", queue="q", waited=40.0,
            callback=False),  # late
        doc("ContactAbandoned", t + 50, "acme", "abandoned", contact="c3", queue="q",
            waited=49.0),
        doc("ContactQueued", t + 60, "acme", "enqueued", contact="c4", queue="q",
            priority=0, position=1),
        doc("ContactExited", t + 60, "acme", "max_length", contact="c5", queue="q",
            route="", waited=0.0),
        doc("ContactExited", t + 180, "acme", "max_wait", contact="c4", queue="q",
            route="vm", waited=120.0),
        doc("ContactQueued", t + 200, "acme", "enqueued", contact="c6", queue="q",
            priority=0, position=1),
        doc("ContactOverflowed", t + 230, "acme", "overflow", contact="c6", queue="q",
            to_queue="other", requirement=None),
        doc("ContactOverflowed", t + 231, "acme", "overflow", contact="c6",
            queue="other", to_queue=None, requirement=[["lang:en", 1]]),
        doc("ContactTransferred", t + 240, "acme", "transfer", contact="c2", agent="a1",
            from_queue="q", to_queue="other"),
        doc("CallbackRequested", t + 300, "acme", "requested", contact="c7", queue="q",
            number="555"),
        doc("CallbackPlaced", t + 310, "acme", "agent_free", contact="c7", queue="q",
            agent="a1", attempt=1),
        doc("CallbackFailed", t + 320, "acme", "timeout", contact="c7", queue="q",
            attempt=1, final=False),
        doc("CallbackPlaced", t + 400, "acme", "agent_free", contact="c7", queue="q",
            agent="a1", attempt=2),
        doc("ContactAnswered", t + 410, contact="c7", agent="a1", queue="q",
            waited=110.0, callback=True),  # a callback: never in the service level
        doc("CallbackRequested", t + 500, "acme", "requested", contact="c8", queue="q",
            number="556"),
        doc("ContactAbandoned", t + 520, "acme", "callback_cancelled", contact="c8",
            queue="q", waited=20.0),
        doc("CallbackRequested", t + 600, "acme", "requested", contact="c9", queue="q",
            number="557"),
        doc("CallbackFailed", t + 700, "acme", "failed", contact="c9", queue="q",
            attempt=3, final=True),
    ])
    q = queue_of(stats, "q")
    assert (q.entered, q.transferred_in, q.offers, q.no_answers) == (5, 1, 1, 1)
    assert (q.answered, q.answered_in_target, q.service_level_target) == (3, 1, 30.0)
    assert (q.abandoned, q.exited) == (1, {"max_length": 1, "max_wait": 1})
    assert (q.overflowed, q.overflowed_in, q.widened, q.transferred_out) == (1, 0, 0, 1)
    assert (q.callbacks_requested, q.callbacks_placed, q.callbacks_failed,
            q.callbacks_dropped, q.callbacks_cancelled, q.callbacks_connected) == \
        (3, 2, 2, 1, 1, 1)
    assert q.wait_seconds == pytest.approx(25 + 40 + 110)
    assert q.average_wait_seconds == pytest.approx((25 + 40 + 110) / 3)
    assert q.longest_wait_seconds == pytest.approx(120)  # the exit by max_wait
    other = queue_of(stats, "other")
    assert (other.overflowed_in, other.widened, other.entered) == (1, 1, 0)
    agents = stats.records("acme", DAY)
    assert agents is not None
    assert {a.agent: (a.offers, a.answered, a.no_answers, a.transferred)
            for a in agents.agents} == {"a1": (1, 2, 1, 1), "a2": (0, 1, 0, 0)}


def test_the_service_level_target_comes_from_the_lookup_or_the_default() -> None:
    assert DEFAULT_SERVICE_LEVEL_TARGET == QueueConfig(name="q").service_level_target
    answers = [doc("ContactAnswered", T0 + H + i, contact=f"c{i}", agent="a", queue=name,
                   waited=w, callback=False)
               for i, (name, w) in enumerate([("q", 10.0), ("q", 19.9), ("q", 20.0),
                                              ("q", 20.1), ("fast", 4.0), ("fast", 6.0)])]
    by_lookup = DailyStats(service_level_target=lambda t, q: 5.0 if q == "fast" else None)
    feed(by_lookup, answers)
    assert queue_of(by_lookup, "q").answered_in_target == 3  # default 20 s, inclusive
    assert queue_of(by_lookup, "fast").answered_in_target == 1
    assert queue_of(by_lookup, "fast").service_level_target == 5.0
    plain = DailyStats()
    feed(plain, answers)
    assert queue_of(plain, "fast").answered_in_target == 2


# ------------------------------------------------------------------------ days
def test_a_state_across_midnight_is_split_and_the_day_closes() -> None:
    stats = DailyStats()
    nxt = DAY + dt.timedelta(days=1)
    assert feed(stats, [moved(T0 + 23 * H, "a1", "ready", "logged_out", cause="login"),
                        doc("ContactQueued", T0 + 23 * H + 1, "acme", "enqueued",
                            contact="c1", queue="q", priority=0, position=1)]) == []
    assert not stats.is_final("acme", DAY)
    closed = feed(stats, [moved(T0 + 25 * H, "a1", "not_ready", "ready", cause="busy")])
    assert closed == [("acme", DAY)] and stats.is_final("acme", DAY)
    assert agent_of(stats, "a1").ready_seconds == pytest.approx(H)
    assert agent_of(stats, "a1", nxt).ready_seconds == pytest.approx(H)
    assert queue_of(stats, "q").entered == 1
    assert stats.records("acme", nxt) is not None
    assert [q.queue for q in stats.records("acme", nxt).queues] == []  # type: ignore[union-attr]
    final = stats.records("acme", DAY, T0 + 30 * H)
    assert final is not None and final.final and final.until == pytest.approx(T0 + 24 * H)
    assert final.agents[0].ready_seconds == pytest.approx(H)  # nothing open on a closed day


def test_midnight_closes_without_an_event_and_a_silent_day_is_whole() -> None:
    stats = DailyStats()
    feed(stats, [moved(T0 + 22 * H, "a1", "break", "logged_out", cause="login")])
    day2, day3 = DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    assert stats.advance(T0 + 24 * H - 1) == []
    assert stats.advance(T0 + 48 * H + 2 * H) == [("acme", DAY), ("acme", day2)]
    assert agent_of(stats, "a1").break_seconds == pytest.approx(2 * H)
    assert agent_of(stats, "a1", day2).break_seconds == pytest.approx(24 * H)
    assert stats.records("acme", day3) is None  # nothing closed into day 3 yet
    assert agent_of(stats, "a1", day3, now=T0 + 50 * H).break_seconds == \
        pytest.approx(2 * H)
    assert stats.days() == [("acme", DAY), ("acme", day2)]
    stats.forget("acme", DAY)
    assert stats.records("acme", DAY) is None and stats.days() == [("acme", day2)]


def test_an_older_wall_counts_as_the_latest_and_never_reopens_a_day() -> None:
    stats = DailyStats()
    feed(stats, [moved(T0 + 23 * H, "a1", "ready", "logged_out", cause="login"),
                 moved(T0 + 24 * H + 60, "a1", "not_ready", "ready", cause="busy")])
    stats.forget("acme", DAY)
    # the clock stepped back an hour: counted at the latest time seen, on the new day
    feed(stats, [moved(T0 + 23 * H + 30 * M, "a1", "ready", "not_ready", cause="ready"),
                 doc("OfferMade", T0 + 23 * H + 30 * M, contact="c", agent="a1",
                     queue="q", ring_all=False, night_alert=False)])
    assert stats.records("acme", DAY) is None
    a = agent_of(stats, "a1", DAY + dt.timedelta(days=1))
    assert (a.offers, a.not_ready_seconds) == (1, 0)
    assert a.ready_seconds == pytest.approx(60)


def test_dates_follow_the_timezone() -> None:
    taipei = DailyStats("Asia/Taipei")  # UTC+8, no DST
    assert taipei.timezone == "Asia/Taipei"
    assert taipei.day_of(T0 + 15 * H) == DAY  # 23:00 local
    assert taipei.day_of(T0 + 16 * H) == DAY + dt.timedelta(days=1)  # 00:00 local
    feed(taipei, [moved(T0 + 15 * H, "a1", "ready", "logged_out", cause="login"),
                  moved(T0 + 17 * H, "a1", "logged_out", "ready", cause="logout")])
    assert agent_of(taipei, "a1").ready_seconds == pytest.approx(H)
    assert agent_of(taipei, "a1", DAY + dt.timedelta(days=1)).ready_seconds == \
        pytest.approx(H)
    utc = DailyStats()  # the same events are all on one UTC day
    feed(utc, [moved(T0 + 15 * H, "a1", "ready", "logged_out", cause="login"),
               moved(T0 + 17 * H, "a1", "logged_out", "ready", cause="logout")])
    assert agent_of(utc, "a1").ready_seconds == pytest.approx(2 * H)
    with pytest.raises(ValueError):
        DailyStats("Mars/Olympus_Mons")


def test_a_daylight_saving_day_has_its_own_length() -> None:
    ny = DailyStats("America/New_York")
    spring, autumn = dt.date(2024, 3, 10), dt.date(2024, 11, 3)
    for day, hours in ((spring, 23), (autumn, 25)):
        start = ny.day_start(day)
        end = ny.day_start(day + dt.timedelta(days=1))
        assert end - start == hours * H
        assert ny.day_of(start) == day and ny.day_of(start - 1) == day - dt.timedelta(days=1)
        feed(ny, [moved(start - H, "a1", "ready", "logged_out", cause="login"),
                  moved(end + H, "a1", "logged_out", "ready", cause="logout")])
        assert agent_of(ny, "a1", day).ready_seconds == pytest.approx(hours * H)
        assert agent_of(ny, "a1", day).logged_in_seconds == pytest.approx(hours * H)


# ------------------------------------------------------------------------ separation
def test_agents_and_queues_are_kept_apart() -> None:
    stats = DailyStats()
    t = T0 + 8 * H
    feed(stats, [
        moved(t, "a1", "ready", "logged_out", cause="login"),
        moved(t + 100, "a2", "not_ready", "logged_out", reason="login", cause="login"),
        moved(t + 200, "a1", "reserved", "ready", cause="offer"),
        doc("OfferMade", t + 200, contact="c1", agent="a1", queue="sales", ring_all=False,
            night_alert=False),
        moved(t + 210, "a1", "talking", "reserved", cause="answered"),
        doc("ContactAnswered", t + 210, contact="c1", agent="a1", queue="sales",
            waited=10.0, callback=False),
        doc("ContactAbandoned", t + 220, "acme", "abandoned", contact="c2",
            queue="support", waited=50.0),
        moved(t + 300, "a2", "ready", "not_ready", cause="ready"),
        moved(t + 400, "a1", "ready", "talking", cause="ended"),
    ])
    a1, a2 = agent_of(stats, "a1", now=t + 500), agent_of(stats, "a2", now=t + 500)
    assert (a1.offers, a1.answered) == (1, 1)
    assert a1.talk_seconds == pytest.approx(190)
    assert a1.ready_seconds == pytest.approx(200 + 100)
    assert (a2.offers, a2.answered, a2.talk_seconds) == (0, 0, 0)
    assert a2.not_ready_seconds == pytest.approx(200)
    assert a2.ready_seconds == pytest.approx(200)
    sales, support = queue_of(stats, "sales"), queue_of(stats, "support")
    assert (sales.answered, sales.abandoned, sales.longest_wait_seconds) == (1, 0, 10)
    assert (support.answered, support.abandoned, support.longest_wait_seconds) == (0, 1, 50)


def test_tenants_are_kept_apart() -> None:
    stats = DailyStats()
    t = T0 + 8 * H
    feed(stats, [
        moved(t, "a1", "ready", "logged_out", cause="login", tenant="acme"),
        moved(t, "a1", "break", "logged_out", cause="login", tenant="globex"),
        doc("ContactAnswered", t + 5, "acme", contact="c", agent="a1", queue="q",
            waited=5.0, callback=False),
        doc("ContactAbandoned", t + 5, "globex", "abandoned", contact="c", queue="q",
            waited=7.0),
        # globex's ACD restarts: only globex's agents are logged out
        moved(t + 600, "a1", "not_ready", "logged_out", reason="login", cause="login",
              tenant="globex"),
    ])
    acme, globex = stats.records("acme", DAY, t + 900), stats.records("globex", DAY, t + 900)
    assert acme is not None and globex is not None
    assert (acme.agents[0].ready_seconds, acme.agents[0].break_seconds) == (900, 0)
    assert (acme.queues[0].answered, acme.queues[0].abandoned) == (1, 0)
    assert globex.agents[0].ready_seconds == 0
    assert globex.agents[0].break_seconds == pytest.approx(5)  # to globex's last event
    assert globex.agents[0].not_ready_seconds == pytest.approx(300)
    assert (globex.queues[0].answered, globex.queues[0].abandoned) == (0, 1)
    assert stats.records("initech", DAY) is None


# ------------------------------------------------------------------------ wrap-up codes
def wrapped(wall: float, agent_id: str, contact: str, code: str, queue: str = "sales",
            replaces: str | None = None, tenant: str = "acme") -> dict[str, Any]:
    """The node's WrapUp document (appliance/agents.py): no ``at``, no ``cause``."""
    return {"type": "WrapUp", "wall": wall, "tenant_id": tenant, "agent": agent_id,
            "contact": contact, "queue": queue, "code": code, "note": "n",
            "replaces": replaces}


def test_wrap_ups_are_counted_per_code_per_agent_and_per_queue() -> None:
    stats = DailyStats()
    t = T0 + 8 * H
    feed(stats, [
        wrapped(t, "a1", "c1", "sale"),
        wrapped(t + 1, "a1", "c2", "sale", queue="support"),
        wrapped(t + 2, "a1", "c3", "no_sale"),
        wrapped(t + 3, "a2", "c4", "sale"),
        wrapped(t + 4, "a1", "c5", "sale", tenant="globex"),
    ])
    assert agent_of(stats, "a1").wrap_up_codes == {"sale": 2, "no_sale": 1}
    assert agent_of(stats, "a2").wrap_up_codes == {"sale": 1}
    assert queue_of(stats, "sales").wrap_up_codes == {"sale": 2, "no_sale": 1}
    assert queue_of(stats, "support").wrap_up_codes == {"sale": 1}
    assert agent_of(stats, "a1", tenant="globex").wrap_up_codes == {"sale": 1}
    # nothing else of the records moves
    assert (agent_of(stats, "a1").answered, agent_of(stats, "a1").logged_in_seconds) == (0, 0)
    # sorted by code in the record's dict, and the views are copies
    records = stats.records("acme", DAY)
    assert records is not None
    out = records.to_dict()
    assert list(out["agents"][0]["wrap_up_codes"]) == ["no_sale", "sale"]
    records.agents[0].wrap_up_codes["sale"] = 99
    records.queues[0].wrap_up_codes.clear()
    assert agent_of(stats, "a1").wrap_up_codes["sale"] == 2
    assert queue_of(stats, "sales").wrap_up_codes == {"sale": 2, "no_sale": 1}


def test_a_wrap_up_that_replaces_another_moves_its_contact_to_the_new_code() -> None:
    stats = DailyStats()
    t = T0 + 8 * H
    feed(stats, [wrapped(t, "a1", "c1", "sale"), wrapped(t + 1, "a1", "c2", "sale"),
                 wrapped(t + 60, "a1", "c1", "callback", replaces="sale"),
                 wrapped(t + 90, "a1", "c1", "no_sale", replaces="callback")])
    assert agent_of(stats, "a1").wrap_up_codes == {"sale": 1, "no_sale": 1}
    assert queue_of(stats, "sales").wrap_up_codes == {"sale": 1, "no_sale": 1}
    # the first one was on a day since closed: that day keeps it, the new day counts it
    feed(stats, [wrapped(T0 + 24 * H + 60, "a1", "c2", "callback", replaces="sale")])
    assert agent_of(stats, "a1").wrap_up_codes == {"sale": 1, "no_sale": 1}
    assert agent_of(stats, "a1", DAY + dt.timedelta(days=1)).wrap_up_codes == {"callback": 1}


def test_wrap_ups_without_a_code_or_an_agent_are_ignored() -> None:
    stats = DailyStats()
    t = T0 + 8 * H
    feed(stats, [{**wrapped(t, "a1", "c1", "sale"), "code": ""},
                 {**wrapped(t, "a1", "c1", "sale"), "code": None},
                 {**wrapped(t, "", "c1", "sale")},
                 {**wrapped(t, "a1", "c1", "sale", queue="")}])
    records = stats.records("acme", DAY)
    assert records is not None and records.queues == ()
    assert [(a.agent, a.wrap_up_codes) for a in records.agents] == [("a1", {"sale": 1})]


# ------------------------------------------------------------------------ restarts
def test_a_fresh_core_logs_the_tenants_agents_out_at_its_last_event() -> None:
    stats = DailyStats()
    t = T0 + 8 * H
    feed(stats, [
        moved(t, "a1", "ready", "logged_out", cause="login"),
        moved(t, "a2", "not_ready", "logged_out", reason="login", cause="login"),
        doc("ContactQueued", t + 100, "acme", "enqueued", contact="c", queue="q",
            priority=0, position=1),
        # (the node restarted here: no events) a2 signs in again an hour later
        moved(t + H, "a2", "not_ready", "logged_out", reason="login", cause="login"),
        moved(t + H + 50, "a1", "ready", "logged_out", cause="login"),
    ])
    a1 = agent_of(stats, "a1", now=t + H + 100)
    a2 = agent_of(stats, "a2", now=t + H + 100)
    assert a1.logins == 2 and a1.ready_seconds == pytest.approx(100 + 50)
    assert a2.logins == 2 and a2.not_ready_seconds == pytest.approx(100 + 100)


def test_restart_and_origin() -> None:
    stats = DailyStats(origin=T0 + 6 * H)
    t = T0 + 8 * H
    # first seen leaving "ready": it was ready since the origin
    feed(stats, [moved(t, "a1", "not_ready", "ready", cause="busy")])
    assert agent_of(stats, "a1").ready_seconds == pytest.approx(2 * H)
    assert [(a, s) for a, s, _ in stats.held_agents("acme")] == [("a1", "not_ready")]
    stats.restart(t + 600)
    assert list(stats.held_agents("acme")) == []
    assert agent_of(stats, "a1", now=t + H).not_ready_seconds == pytest.approx(600)
    plain = DailyStats()  # no origin: nothing before the first event
    feed(plain, [moved(t, "a1", "not_ready", "ready", cause="busy")])
    assert agent_of(plain, "a1").ready_seconds == 0


# ------------------------------------------------------------------------ format
def test_the_record_format() -> None:
    stats = DailyStats("Europe/Paris")
    feed(stats, [moved(T0 + H, "b", "not_ready", "logged_out", reason="login",
                       cause="login"),
                 moved(T0 + H + 0.12345, "a", "ready", "logged_out", cause="login"),
                 doc("ContactExited", T0 + H + 1, "acme", "max_wait", contact="c",
                     queue="z", route="", waited=3.0),
                 doc("ContactExited", T0 + H + 1, "acme", "max_length", contact="d",
                     queue="z", route="", waited=0.0),
                 doc("ContactQueued", T0 + H + 1, "acme", "enqueued", contact="e",
                     queue="m", priority=0, position=1)])
    records = stats.records("acme", DAY, T0 + H + 10)
    assert isinstance(records, DayRecords)
    out = records.to_dict()
    assert (out["tenant_id"], out["date"], out["timezone"], out["final"]) == \
        ("acme", "2024-03-05", "Europe/Paris", False)
    assert [a["agent"] for a in out["agents"]] == ["a", "b"]
    assert [q["queue"] for q in out["queues"]] == ["m", "z"]
    assert set(out["agents"][0]) == {f.name for f in dataclasses.fields(AgentDay)}
    assert set(out["queues"][0]) == {f.name for f in dataclasses.fields(QueueDay)} | {
        "average_wait_seconds"}
    assert out["agents"][0]["ready_seconds"] == 9.877  # milliseconds
    assert list(out["queues"][1]["exited"]) == ["max_length", "max_wait"]
    assert out["queues"][0]["average_wait_seconds"] is None


def test_malformed_documents_are_ignored() -> None:
    stats = DailyStats()
    for bad in ({}, {"type": "OfferMade", "tenant_id": "acme"},
                {"type": "OfferMade", "wall": "noon", "tenant_id": "acme"},
                {"type": "OfferMade", "wall": True, "tenant_id": "acme"},
                {"type": "OfferMade", "wall": float("nan"), "tenant_id": "acme"},
                {"type": "OfferMade", "wall": T0, "tenant_id": ""},
                {"type": 3, "wall": T0, "tenant_id": "acme"}):
        assert stats.add(bad) == []
    assert stats.days() == [] and stats.last_wall is None
    assert stats.add(doc("DayReset", T0 + 1, "acme", "midnight")) == []
    assert stats.days() == [("acme", DAY)]


def test_parse_date() -> None:
    assert parse_date("2024-02-29") == dt.date(2024, 2, 29)
    for bad in ("2023-02-29", "2024-13-01", "20240301", "2024-W10-1", "2024-3-5",
                "today", "", "2024-03-05 ", "\uff12\uff10\uff12\uff14-03-05"):
        with pytest.raises(ValueError):
            parse_date(bad)


# ------------------------------------------------------------------------ the core
def _run(seed: int) -> None:
    """A random run of a real Acd over one day; the daily records must agree with the
    core's own counters of the day."""
    rng = random.Random(seed)
    queues = [
        queue("q1", wrap_up=5, service_level_target=15, ring_timeout=10),
        queue("q2", wrap_up=0, callback_allowed=True, callback_timeout=20,
              callback_retry_delay=10, callback_attempts=2, max_wait=150,
              overflow=(OverflowRule(after=40, to_queue="q1"),)),
        queue("q3", wrap_up=None, max_length=2, strategy="ring_all"),
    ]
    agents = [agent("a1", queues=("q1", "q2")), agent("a2", queues=("q1", "q3")),
              agent("a3", queues=("q2", "q3")), agent("a4", queues=("q1",))]
    acd = make(queues, agents, not_ready_reasons=("lunch", "meeting"), max_on_break=2)
    targets = {q.name: q.service_level_target for q in queues}
    stats = DailyStats(service_level_target=lambda tenant, q: targets.get(q))
    start = T0 + 8 * H
    now = 0.0
    offers: dict[str, set[str]] = {}  # ringing now: contact -> agents
    talking: set[str] = set()  # contacts answered
    contacts: list[str] = []
    names = [a.id for a in agents]

    def drain() -> None:
        for ev in acd.events():
            if isinstance(ev, OfferMade):
                offers.setdefault(ev.contact, set()).add(ev.agent)
            elif isinstance(ev, OfferCancelled | NoAnswer):
                offers.get(ev.contact, set()).discard(ev.agent)
            elif isinstance(ev, ContactAnswered):
                offers.pop(ev.contact, None)
                talking.add(ev.contact)
            elif isinstance(ev, ContactEnded | ContactTransferred):
                talking.discard(ev.contact)
            stats.add({"wall": start + ev.at, **event_doc(ev)})
        acd.commands()

    def offered() -> tuple[str, str]:
        ringing = sorted(c for c, who in offers.items() if who)
        c = rng.choice(ringing) if ringing else "none"
        return c, rng.choice(sorted(offers.get(c) or {"a1"}))

    def connected() -> str:
        return rng.choice(sorted(talking)) if talking else "none"

    def arrive() -> None:
        contacts.append(f"c{len(contacts)}")
        acd.enqueue(contacts[-1], rng.choice(["q1", "q2", "q3"]), now)

    steps: list[Any] = [
        lambda: acd.login(rng.choice(names), now, ready=rng.random() < 0.5),
        lambda: acd.logout(rng.choice(names), now),
        lambda: acd.set_ready(rng.choice(names), now),
        lambda: acd.set_ready(rng.choice(names), now),
        lambda: acd.set_not_ready(rng.choice(names), rng.choice(["", "lunch", "meeting"]),
                                  now),
        lambda: acd.request_break(rng.choice(names), now),
        lambda: acd.start_outbound(rng.choice(names), now),
        lambda: acd.end_outbound(rng.choice(names), now),
        lambda: acd.hold(rng.choice(names), now),
        lambda: acd.resume(rng.choice(names), now),
        arrive,
        arrive,
        lambda: acd.abandon(rng.choice(contacts or ["none"]), now),
        lambda: acd.answered(*offered(), now),
        lambda: acd.answered(*offered(), now),
        lambda: acd.declined(*offered(), now),
        lambda: acd.no_answer(*offered(), now),
        lambda: acd.answered(*offered(), now),
        lambda: acd.answered(*offered(), now),
        lambda: acd.answered(*offered(), now),
        lambda: acd.ended(connected(), now),
        lambda: acd.ended(connected(), now),
        lambda: acd.transfer_to_queue(connected(), rng.choice(["q1", "q2"]), now),
        lambda: acd.request_callback(rng.choice(contacts[-6:] or ["none"]), "555", now),
        lambda: acd.request_callback(rng.choice(contacts[-6:] or ["none"]), "555", now),
        lambda: acd.callback_answered(rng.choice(contacts or ["none"]), now),
        lambda: acd.callback_failed(rng.choice(contacts or ["none"]), now),
    ]
    for _ in range(500):
        now += rng.choice([0.0, 0.5, 1.0, 2.0, 3.0, 7.5, 20.0])
        deadline = acd.next_deadline()
        if deadline is not None and deadline <= now:
            acd.tick(now)
            drain()
        try:
            rng.choice(steps)()
        except AcdError:
            pass
        drain()
    end = start + now + 5
    records = stats.records("acme", DAY, end)
    assert records is not None
    mine = {a.agent: a for a in records.agents}
    for name in names:
        core = acd.agent_counters(name, now + 5)
        a = mine.get(name, AgentDay(name))
        assert (a.offers, a.answered, a.no_answers, a.declined, a.breaks,
                a.not_ready_periods, a.outbound_calls) == (
            core.offered, core.answered, core.no_answer, core.declined, core.break_periods,
            core.not_ready_periods, core.outbound_calls), (seed, name)
        for mine_s, core_s in ((a.talk_seconds, core.talk_time),
                               (a.hold_seconds, core.hold_time),
                               (a.wrap_up_seconds, core.wrap_time),
                               (a.ringing_seconds, core.ringing_time),
                               (a.ready_seconds, core.ready_time),
                               (a.not_ready_seconds, core.not_ready_time),
                               (a.break_seconds, core.break_time),
                               (a.outbound_seconds, core.outbound_time)):
            assert mine_s == pytest.approx(core_s, abs=1e-6), (seed, name, a, core)
        assert a.logged_in_seconds == pytest.approx(state_sum(a), abs=1e-6)
    qs = {q.queue: q for q in records.queues}
    for cfg in queues:
        c = acd.queue_counters(cfg.name)
        q = qs.get(cfg.name, QueueDay(cfg.name))
        assert (q.entered + q.exited.get("max_length", 0), q.transferred_in, q.offers,
                q.no_answers, q.answered, q.answered_in_target, q.abandoned,
                q.exited.get("max_wait", 0), q.exited.get("max_length", 0), q.overflowed,
                q.overflowed_in, q.callbacks_requested, q.callbacks_placed,
                q.callbacks_failed, q.callbacks_dropped + q.callbacks_cancelled,
                q.callbacks_connected) == (
            c.arrived, c.transferred_in, c.offered, c.no_answer, c.answered,
            c.answered_in_target, c.abandoned, c.exited_max_wait, c.exited_max_length,
            c.overflowed_out, c.overflowed_in, c.callbacks_requested, c.callbacks_placed,
            c.callbacks_failed, c.callbacks_dropped, c.callbacks_connected), (seed, cfg.name)
        assert q.wait_seconds == pytest.approx(c.wait_time_answered, abs=1e-6)


@pytest.mark.parametrize("seed", range(12))
def test_the_records_agree_with_the_cores_counters(seed: int) -> None:
    _run(seed)


def test_the_same_events_give_the_same_records() -> None:
    docs = [moved(T0 + H, "a1", "ready", "logged_out", cause="login"),
            doc("ContactAnswered", T0 + H + 3, contact="c", agent="a1", queue="q",
                waited=3.0, callback=False),
            moved(T0 + 26 * H, "a1", "logged_out", "ready", cause="logout")]
    outs = []
    for _ in range(2):
        stats = DailyStats("Asia/Tokyo")
        feed(stats, docs)
        outs.append([r.to_dict() for t, d in stats.days()
                     if (r := stats.records(t, d)) is not None])
    assert outs[0] == outs[1] and len(outs[0]) == 2
