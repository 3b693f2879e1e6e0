"""The daily statistics record at the node (appliance/daily.py, fed by
appliance/agents.py) and over the API (``GET /api/v1/acd/daily``): the records of each
day written to ``acd-daily/<tenant>/<date>.json`` when the day closes, every N events and on close;
today's records rebuilt from ``acd-events.jsonl`` after a restart; the route's
tenant and agent scoping, its errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.acd import Acd
from appliance.agents import AgentDesk
from appliance.api import Principal, make_app
from appliance.daily import _first_offset, read_events
from tests.acd.helpers import agent, make, queue
from tests.harness.apiapp import OPEN_DESKS, Client, Clock, close_desks, run_app

__all__ = ["close_desks"]  # the fixture closing this module's desks
T0 = dt.datetime(2024, 3, 5, tzinfo=dt.UTC).timestamp()  # 2024-03-05 00:00 UTC
H, M = 3600.0, 60.0
TODAY, YESTERDAY = "2024-03-05", "2024-03-04"


class FakeCore:
    """What the desk's daily records read of the call control: the tenants' ACDs."""

    def __init__(self) -> None:
        self.acd: dict[str, Acd] = {
            "acme": make([queue("q", wrap_up=0, service_level_target=10)],
                         [agent("a1"), agent("a2")], tenant="acme",
                         not_ready_reasons=("lunch",)),
            "globex": make([queue("q")], [agent("g1")], tenant="globex"),
        }


def _no_plan() -> Any:
    return None  # the daily records never read the plan


class Node:
    """A desk over a fake core, a settable wall clock and a run directory."""

    def __init__(self, run_dir: Path, clock: Clock, core: FakeCore | None = None,
                 **kw: Any) -> None:
        self.clock, self.run_dir = clock, run_dir
        self.core = core or FakeCore()
        self.desk = AgentDesk(self.core, _no_plan, lambda: None,  # type: ignore[arg-type]
                              run_dir / "acd-events.jsonl", clock=clock, **kw)
        OPEN_DESKS.append(self.desk)

    def do(self, tenant: str, action: Callable[[Acd, float], object]) -> None:
        """An input to the tenant's ACD now; its events published as the node does."""
        acd = self.core.acd[tenant]
        action(acd, self.clock.t - T0)
        for ev in acd.events():
            self.desk.publish(ev)
        acd.commands()

    def daily(self, tenant: str, day: str | None = None,
              agent_id: str | None = None) -> dict[str, Any] | None:
        return asyncio.run(self.desk.daily(tenant, day, agent_id))

    def file(self, tenant: str, day: str) -> Path:
        return self.run_dir / "acd-daily" / tenant / f"{day}.json"


def morning(node: Node, *, a2: bool = True) -> None:
    """acme: a1 ready at 9:00, a2 not ready (``a2``); c1 waits 4 s, a1 talks 5 min (no
    after-call work); globex: g1 ready, a caller abandons after 30 s."""
    node.clock.t = T0 + 9 * H
    node.do("acme", lambda a, now: a.login("a1", now, ready=True))
    if a2:
        node.do("acme", lambda a, now: a.login("a2", now))
    node.do("globex", lambda a, now: a.login("g1", now, ready=True))
    node.do("globex", lambda a, now: a.set_not_ready("g1", "", now))
    node.clock.t = T0 + 9 * H + 10 * M
    node.do("acme", lambda a, now: a.enqueue("c1", "q", now))
    node.do("globex", lambda a, now: a.enqueue("x1", "q", now))
    node.clock.t += 4
    node.do("acme", lambda a, now: a.answered("c1", "a1", now))
    node.clock.t += 5 * M
    node.do("acme", lambda a, now: a.ended("c1", now))
    node.clock.t += 26
    node.do("globex", lambda a, now: a.abandon("x1", now))
    node.clock.t = T0 + 10 * H


def by_name(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in records}


# ------------------------------------------------------------------------ the node
def test_the_desk_keeps_the_days_records(tmp_path: Path) -> None:
    node = Node(tmp_path, Clock(T0))
    morning(node)
    doc = node.daily("acme")
    assert doc is not None
    assert (doc["date"], doc["timezone"], doc["final"]) == (TODAY, "UTC", False)
    agents, queues = by_name(doc["agents"], "agent"), by_name(doc["queues"], "queue")
    assert set(agents) == {"a1", "a2"} and set(queues) == {"q"}
    a1 = agents["a1"]
    assert (a1["offers"], a1["answered"], a1["talk_seconds"]) == (1, 1, 300.0)
    assert a1["logged_in_seconds"] == H  # up to now, 10:00
    assert (a1["ready_seconds"], a1["ringing_seconds"]) == (H - 304, 4.0)
    assert agents["a2"]["not_ready_by_reason"] == {"login": H}
    q = queues["q"]
    assert (q["entered"], q["answered"], q["answered_in_target"], q["wait_seconds"]) == \
        (1, 1, 1, 4.0)
    mine = node.daily("acme", TODAY, "a2")
    assert mine is not None and [a["agent"] for a in mine["agents"]] == ["a2"]
    assert mine["queues"] == doc["queues"]
    other = node.daily("globex")
    assert other is not None and [a["agent"] for a in other["agents"]] == ["g1"]
    assert other["queues"][0]["abandoned"] == 1 and other["queues"][0]["answered"] == 0
    assert node.daily("initech") is None  # no queues
    with pytest.raises(ValueError):
        node.daily("acme", "2024-02-30")


def test_a_closed_day_is_written_final_and_read_back(tmp_path: Path) -> None:
    node = Node(tmp_path, Clock(T0))
    morning(node)
    before = node.daily("acme")
    assert not node.file("acme", TODAY).exists()  # nothing written yet
    node.clock.t = T0 + 24 * H + 30 * M  # the next day: a1 still ready
    node.do("acme", lambda a, now: a.set_not_ready("a1", "", now))
    written = json.loads(node.file("acme", TODAY).read_text())
    assert written["final"] is True and written["date"] == TODAY
    a1 = by_name(written["agents"], "agent")["a1"]
    assert a1["logged_in_seconds"] == 15 * H  # 9:00 to midnight
    assert a1["ready_seconds"] == 15 * H - 304
    assert written["queues"] == before["queues"]  # type: ignore[index]
    assert ("acme", dt.date(2024, 3, 5)) not in node.desk.records.stats.days()  # dropped
    back = node.daily("acme", TODAY)
    assert back is not None and back["final"] is True
    assert back["agents"] == written["agents"] and back["queues"] == written["queues"]
    today = node.daily("acme")
    assert today is not None and today["date"] == "2024-03-06"
    assert by_name(today["agents"], "agent")["a1"]["ready_seconds"] == 30 * M
    # globex had no event on the new day: its day closed too (time is the node's)
    globex = json.loads(node.file("globex", TODAY).read_text())
    assert globex["final"] is True
    assert by_name(globex["agents"], "agent")["g1"]["not_ready_seconds"] == 15 * H
    assert node.daily("globex", TODAY) == {k: globex[k] for k in (
        "date", "timezone", "final", "agents", "queues")}
    empty = node.daily("acme", "2023-01-01")
    assert empty == {"date": "2023-01-01", "timezone": "UTC", "final": True,
                     "agents": [], "queues": []}
    assert not list(tmp_path.rglob("*.tmp"))


def test_open_days_are_written_every_n_events_and_on_close(tmp_path: Path) -> None:
    node = Node(tmp_path, Clock(T0 + 9 * H), flush_every=3)
    node.do("acme", lambda a, now: a.login("a1", now, ready=True))
    node.do("acme", lambda a, now: a.enqueue("c1", "q", now))  # 3 events with the offer
    path = node.file("acme", TODAY)
    assert path.exists() and json.loads(path.read_text())["final"] is False
    node.clock.t += 2 * H
    node.desk.close()
    written = json.loads(path.read_text())
    assert written["final"] is False and written["until"] == T0 + 11 * H
    a1 = by_name(written["agents"], "agent")["a1"]
    assert a1["ringing_seconds"] == 2 * H  # the open state, counted up to the close


def test_a_restart_loses_nothing(tmp_path: Path) -> None:
    clock = Clock(T0 - 3 * 24 * H)  # three days ago (not replayed): a2 signs in
    first = Node(tmp_path, clock)
    first.do("acme", lambda a, now: a.login("a2", now, ready=True))
    first.do("acme", lambda a, now: a.set_not_ready("a2", "", now))
    clock.t = T0 - 2 * H  # yesterday 22:00
    first.do("acme", lambda a, now: a.set_ready("a2", now))
    clock.t = T0 + 9 * H - 5 * M
    first.do("acme", lambda a, now: a.set_not_ready("a2", "lunch", now))
    morning(first, a2=False)  # a1 signs in at 9:00, takes a contact
    clock.t = T0 + 11 * H
    before = first.daily("acme")
    first.desk.close()
    old_days = {d: first.file("acme", d).read_text() for d in ("2024-03-02", "2024-03-03")}
    clock.t = T0 + 11 * H + 10 * M  # the node comes back ten minutes later
    second = Node(tmp_path, clock, FakeCore())  # a fresh ACD: every agent logged out
    after = second.daily("acme")
    assert after == before
    assert list(second.desk.records.stats.held_agents("acme")) == []
    a2 = by_name(after["agents"], "agent")["a2"]  # type: ignore[index]
    # ready since yesterday 22:00, not ready (lunch) from 8:55 up to 11:00
    assert (a2["ready_seconds"], a2["not_ready_by_reason"]) == \
        (9 * H - 5 * M, {"lunch": 2 * H + 5 * M})
    assert a2["logins"] == 0  # it signed in three days ago
    yesterday = second.daily("acme", YESTERDAY)  # written final by the first node
    assert yesterday is not None and yesterday["final"] is True
    y2 = by_name(yesterday["agents"], "agent")["a2"]
    assert (y2["ready_seconds"], y2["not_ready_by_reason"]) == (2 * H, {"": 22 * H})
    assert {d: second.file("acme", d).read_text() for d in old_days} == old_days
    # and it goes on counting from there
    clock.t += 60
    second.do("acme", lambda a, now: a.login("a1", now, ready=True))
    clock.t += 60
    now = second.daily("acme")
    assert now is not None
    a1 = by_name(now["agents"], "agent")["a1"]
    assert a1["logins"] == 2 and a1["logged_in_seconds"] == 2 * H + 60


def test_the_replay_reads_only_the_recent_end_of_a_large_log(tmp_path: Path) -> None:
    log = tmp_path / "acd-events.jsonl"
    old = {"type": "OfferMade", "tenant_id": "acme", "agent": "a1", "queue": "q",
           "contact": "c", "cause": "routed", "at": 0.0, "ring_all": False,
           "night_alert": False}
    with open(log, "w", encoding="utf-8") as fh:
        for i in range(20000):
            fh.write(json.dumps({**old, "wall": T0 - 5 * 24 * H + i}, sort_keys=True) + "\n")
        for i in range(5):
            fh.write(json.dumps({**old, "wall": T0 + i}, sort_keys=True) + "\n")
        fh.write('{"agent": "a1", "wall": ' + str(T0 + 9))  # a write cut short
    with open(log, "rb") as fh:
        offset = _first_offset(fh, T0)
    assert log.stat().st_size - offset < 2 * (1 << 16)  # the old days are skipped
    assert [d["wall"] for d in read_events(log, T0)] == [T0 + i for i in range(5)]
    assert list(read_events(tmp_path / "none.jsonl", T0)) == []
    node = Node(tmp_path, Clock(T0 + H))
    doc = node.daily("acme")
    assert doc is not None and doc["agents"][0]["offers"] == 5


# ------------------------------------------------------------------------ the API
class Backend:
    def __init__(self, node: Node) -> None:
        self.agents = node.desk

    def authenticate(self, token: str) -> Principal | None:
        return {
            "tok-acme": Principal("acme", "acme-admin"),
            "tok-globex": Principal("globex", "globex-admin"),
            "tok-initech": Principal("initech", "initech-admin"),
            "tok-a2": Principal("acme", "agent a2", agent="a2"),
            "tok-sup": Principal("acme", "agent a1", agent="a1", supervisor=True),
            "tok-op": Principal(None, "operator"),
        }.get(token)


def serve(node: Node, scenario: Callable[[Client], Awaitable[None]]) -> None:
    run_app(make_app(Backend(node)), scenario)  # type: ignore[arg-type]


async def get(client: Client, token: str, query: str = "") -> tuple[int, Any]:
    resp = await client.get(f"/api/v1/acd/daily{query}",
                            headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json()


def test_the_route_gives_the_tenants_own_records(tmp_path: Path) -> None:
    node = Node(tmp_path, Clock(T0))
    morning(node)

    async def scenario(client: Client) -> None:
        status, doc = await get(client, "tok-acme")
        assert status == 200
        assert set(doc) == {"date", "timezone", "final", "agents", "queues"}
        assert (doc["date"], doc["timezone"]) == (TODAY, "UTC")
        assert [a["agent"] for a in doc["agents"]] == ["a1", "a2"]
        assert doc["queues"][0]["answered"] == 1
        assert await get(client, "tok-acme", f"?date={TODAY}") == (200, doc)
        # an agent's session: its own record and the queues'
        status, mine = await get(client, "tok-a2")
        assert status == 200 and [a["agent"] for a in mine["agents"]] == ["a2"]
        assert mine["queues"] == doc["queues"]
        assert await get(client, "tok-sup") == (200, doc)  # a supervisor sees the team
        # the operator names the tenant
        assert (await get(client, "tok-op"))[0] == 400
        assert await get(client, "tok-op", "?tenant=acme") == (200, doc)
        # no token, no records
        resp = await client.get("/api/v1/acd/daily")
        assert resp.status == 401

    serve(node, scenario)


def test_another_tenants_token_never_sees_these_records(tmp_path: Path) -> None:
    node = Node(tmp_path, Clock(T0))
    morning(node)

    async def scenario(client: Client) -> None:
        status, doc = await get(client, "tok-globex")
        assert status == 200
        assert [a["agent"] for a in doc["agents"]] == ["g1"]
        assert [(q["queue"], q["answered"], q["abandoned"]) for q in doc["queues"]] == \
            [("q", 0, 1)]
        text = json.dumps(doc)
        assert '"a1"' not in text and '"a2"' not in text
        status, error = await get(client, "tok-globex", "?tenant=acme")
        assert status == 400 and error["error"]["id"] == "bad_request"
        status, _ = await get(client, "tok-globex", f"?date={TODAY}&tenant=acme")
        assert status == 400

    serve(node, scenario)
    # a past day, from acme's file, is no more visible to globex
    node.clock.t = T0 + 25 * H
    node.do("acme", lambda a, now: a.set_not_ready("a1", "", now))
    node.do("globex", lambda a, now: a.set_ready("g1", now))
    assert node.file("acme", TODAY).exists()

    async def past(client: Client) -> None:
        status, doc = await get(client, "tok-globex", f"?date={TODAY}")
        assert status == 200 and doc["final"] is True
        assert [a["agent"] for a in doc["agents"]] == ["g1"]
        status, doc = await get(client, "tok-acme", f"?date={TODAY}")
        assert [a["agent"] for a in doc["agents"]] == ["a1", "a2"]

    serve(node, past)


def test_bad_dates_and_tenants_without_queues(tmp_path: Path) -> None:
    node = Node(tmp_path, Clock(T0 + H))

    async def scenario(client: Client) -> None:
        for bad in ("2024-02-30", "2024-13-01", "20240305", "yesterday", "",
                    "2024-03-05T00:00", "2024-W10-2"):
            status, doc = await get(client, "tok-acme", f"?date={bad}")
            assert status == 400, bad
            assert doc["error"]["id"] == "bad_request" and "date" in doc["error"]["message"]
        status, doc = await get(client, "tok-initech")
        assert status == 404 and doc["error"]["id"] == "not_found"
        status, doc = await get(client, "tok-acme", "?date=2030-01-01")
        assert (status, doc["agents"], doc["queues"]) == (200, [], [])

    serve(node, scenario)
