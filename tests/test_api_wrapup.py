"""Wrap-up codes and notes (R-5.2a after-call work) at the node: the desk's memory of the
contacts each agent handled (fed by the ACD events it publishes), ``PUT
/api/v1/agents/{agent}/wrap-up`` (own agent only, another tenant, bad codes and notes,
unknown or old contacts, a second wrap-up replacing the first), the ``WrapUp`` line in
``acd-events.jsonl``, the live subscribers, the daily records' counts, the snapshot's
codes, and a note never logged."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.acd import Acd
from appliance.agents import WRAP_UP_KEPT, AgentDesk
from appliance.api import Principal, make_app
from appliance.plan import Plan
from tests.harness.apiapp import OPEN_DESKS, Client, Clock, close_desks, run_app

__all__ = ["close_desks"]  # the fixture closing this module's desks
T0 = dt.datetime(2024, 3, 5, tzinfo=dt.UTC).timestamp()  # 2024-03-05 00:00 UTC
H = 3600.0
CODES = ["sale", "no_sale", "callback"]
NOTE = "Mrs Chan, card 4111 1111 1111 1111, wants red shoes"  # customer data


def plan_doc() -> dict[str, Any]:
    def tenant(tid: str, agents: list[str], **acd: Any) -> dict[str, Any]:
        return {
            "id": tid, "domain": f"{tid}.example", "caller_id": "+862088880000",
            "extensions": [{"number": f"100{i}", "password": f"pw-{i}-xxxx"}
                           for i, _ in enumerate(agents, 1)],
            "agents": [{"id": a, "extension": f"100{i}"} for i, a in enumerate(agents, 1)],
            "queues": [{"name": "q", "agents": agents, "wrap_up": 0}],
            **({"acd": acd} if acd else {}),
        }

    return {"version": 1, "node": {"id": "n1"}, "trunks": [],
            "tenants": [tenant("acme", ["a1", "a2", "sup"], wrap_up_codes=CODES),
                        tenant("globex", ["g1"], wrap_up_codes=["sale"])]}


class FakeCore:
    """The tenants' ACDs, built from the plan as the node does."""

    def __init__(self, plan: Plan) -> None:
        self.acd = {t.id: Acd(t.acd, 0.0) for t in plan.tenants if t.acd is not None}


class Node:
    def __init__(self, run_dir: Path) -> None:
        self.plan = Plan.from_dict(plan_doc())
        self.clock = Clock(T0 + 9 * H)
        self.core = FakeCore(self.plan)
        self.events_path = run_dir / "acd-events.jsonl"
        self.desk = AgentDesk(self.core, lambda: self.plan, lambda: None,  # type: ignore[arg-type]
                              self.events_path, clock=self.clock)
        OPEN_DESKS.append(self.desk)

    def do(self, tenant: str, action: Callable[[Acd, float], object]) -> None:
        acd = self.core.acd[tenant]
        action(acd, self.clock.t - T0)
        for ev in acd.events():
            self.desk.publish(ev)
        acd.commands()

    def handled(self, tenant: str, agent: str, contact: str, talk: float = 60.0) -> None:
        """``agent`` (the only one ready) answers ``contact`` from queue q, talks, the
        caller hangs up, and the agent goes not ready."""
        if self.core.acd[tenant].agent(agent, self.clock.t - T0).state == "logged_out":
            self.do(tenant, lambda a, now: a.login(agent, now))
        self.do(tenant, lambda a, now: a.set_ready(agent, now))
        self.do(tenant, lambda a, now: a.enqueue(contact, "q", now))
        self.clock.t += 2
        self.do(tenant, lambda a, now: a.answered(contact, agent, now))
        self.clock.t += talk
        self.do(tenant, lambda a, now: a.ended(contact, now))
        self.do(tenant, lambda a, now: a.set_not_ready(agent, "", now))
        self.clock.t += 5

    def lines(self, kind: str = "WrapUp") -> list[dict[str, Any]]:
        docs = [json.loads(line) for line in self.events_path.read_text().splitlines()]
        return [d for d in docs if d["type"] == kind]

    def daily(self, tenant: str = "acme") -> dict[str, Any]:
        doc = asyncio.run(self.desk.daily(tenant))
        assert doc is not None
        return doc


class Backend:
    def __init__(self, node: Node) -> None:
        self.agents = node.desk

    def authenticate(self, token: str) -> Principal | None:
        return {
            "tok-acme": Principal("acme", "acme-admin"),
            "tok-globex": Principal("globex", "globex-admin"),
            "tok-a1": Principal("acme", "agent a1", agent="a1"),
            "tok-a2": Principal("acme", "agent a2", agent="a2"),
            "tok-sup": Principal("acme", "agent sup", agent="sup", supervisor=True),
            "tok-g1": Principal("globex", "agent g1", agent="g1"),
            "tok-op": Principal(None, "operator"),
        }.get(token)


def serve(node: Node, scenario: Callable[[Client], Awaitable[None]]) -> None:
    run_app(make_app(Backend(node)), scenario)  # type: ignore[arg-type]


async def put(client: Client, token: str, agent: str, body: Any,
              query: str = "") -> tuple[int, Any]:
    resp = await client.put(f"/api/v1/agents/{agent}/wrap-up{query}", json=body,
                            headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json()


def by_name(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in records}


# ------------------------------------------------------------------------ the route
def test_the_agent_files_its_own_contact_and_the_node_stores_and_publishes_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    node = Node(tmp_path)
    mine = node.desk.subscribe("acme", "a1")
    other = node.desk.subscribe("acme", "a2")
    team = node.desk.subscribe("acme", None)
    globex = node.desk.subscribe("globex", None)
    node.handled("acme", "a1", "call-1")
    wall = node.clock.t

    async def scenario(client: Client) -> None:
        status, doc = await put(client, "tok-a1", "a1",
                                {"contact": "call-1", "code": "sale", "note": NOTE})
        assert status == 200, doc
        assert doc == {"type": "WrapUp", "wall": wall, "tenant_id": "acme", "agent": "a1",
                       "contact": "call-1", "queue": "q", "code": "sale", "note": NOTE,
                       "replaces": None}

    serve(node, scenario)
    [line] = node.lines()
    assert line == {"type": "WrapUp", "wall": wall, "tenant_id": "acme", "agent": "a1",
                    "contact": "call-1", "queue": "q", "code": "sale", "note": NOTE,
                    "replaces": None}
    seen = [mine.queue.get_nowait() for _ in range(mine.queue.qsize())]
    assert [d for d in seen if d["type"] == "WrapUp"] == [line]
    assert all(d["type"] != "WrapUp" for d in
               [other.queue.get_nowait() for _ in range(other.queue.qsize())])
    assert any(d["type"] == "WrapUp" for d in
               [team.queue.get_nowait() for _ in range(team.queue.qsize())])
    assert globex.queue.empty()
    day = node.daily()
    assert by_name(day["agents"], "agent")["a1"]["wrap_up_codes"] == {"sale": 1}
    assert by_name(day["queues"], "queue")["q"]["wrap_up_codes"] == {"sale": 1}
    # the note may hold customer data: never in the node's log
    assert "wrap-up of call-1 by a1 of acme: sale" in caplog.text
    assert "Mrs Chan" not in caplog.text and "4111" not in caplog.text


def test_only_the_agents_own_session_or_the_tenant_files_its_contacts(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.handled("acme", "a1", "call-1")
    node.handled("acme", "a2", "call-2")
    body = {"contact": "call-1", "code": "sale", "note": ""}

    async def scenario(client: Client) -> None:
        for token in ("tok-a2", "tok-sup"):  # another agent, a supervisor too: not theirs
            status, doc = await put(client, token, "a1", body)
            assert (status, doc["error"]["id"]) == (404, "not_found"), token
        # a2 names its own agent but a1's contact: a2 never handled it
        status, doc = await put(client, "tok-a2", "a2", body)
        assert (status, doc["error"]["id"]) == (404, "not_found")
        # the tenant's token (an administrator) and the operator naming the tenant may
        assert (await put(client, "tok-acme", "a1", body))[0] == 200
        assert (await put(client, "tok-op", "a2", {**body, "contact": "call-2"},
                          "?tenant=acme"))[0] == 200
        assert (await put(client, "tok-op", "a2", body))[0] == 400  # no tenant named
        resp = await client.put("/api/v1/agents/a1/wrap-up", json=body)
        assert resp.status == 401

    serve(node, scenario)
    assert [(d["agent"], d["contact"]) for d in node.lines()] == \
        [("a1", "call-1"), ("a2", "call-2")]


def test_another_tenant_never_files_nor_finds_these_contacts(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.handled("acme", "a1", "call-1")
    node.handled("globex", "g1", "call-9")
    body = {"contact": "call-1", "code": "sale", "note": ""}

    async def scenario(client: Client) -> None:
        for token in ("tok-globex", "tok-g1"):
            status, doc = await put(client, token, "a1", body)
            assert (status, doc["error"]["id"]) == (404, "not_found"), token
        status, doc = await put(client, "tok-g1", "g1", body)  # its own agent, acme's call
        assert (status, doc["error"]["id"]) == (404, "not_found")
        status, doc = await put(client, "tok-globex", "a1", body, "?tenant=acme")
        assert status == 400  # a tenant token acts for its own tenant only
        # acme's agents do not find globex's contact either
        status, _ = await put(client, "tok-a1", "a1", {**body, "contact": "call-9"})
        assert status == 404
        # and globex files its own with its own codes
        assert (await put(client, "tok-g1", "g1", {**body, "contact": "call-9"}))[0] == 200

    serve(node, scenario)
    assert [(d["tenant_id"], d["contact"]) for d in node.lines()] == [("globex", "call-9")]
    assert by_name(node.daily("globex")["agents"], "agent")["g1"]["wrap_up_codes"] == \
        {"sale": 1}
    assert all(not a["wrap_up_codes"] for a in node.daily("acme")["agents"])


def test_bad_codes_notes_and_bodies_are_400(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.handled("acme", "a1", "call-1")

    async def scenario(client: Client) -> None:
        for body in ({"contact": "call-1", "code": "lunch", "note": ""},  # not a code of acme
                     {"contact": "call-1", "code": "", "note": ""},
                     {"contact": "call-1", "code": "sale", "note": "x" * 501},
                     {"contact": "call-1", "code": "sale", "note": 3},
                     {"contact": "call-1", "note": ""},
                     {"code": "sale"},
                     {"contact": "", "code": "sale"},
                     {"contact": 7, "code": "sale"}):
            status, doc = await put(client, "tok-a1", "a1", body)
            assert (status, doc["error"]["id"]) == (400, "bad_request"), body
        status, doc = await put(client, "tok-a1", "a1", ["call-1", "sale"])
        assert status == 400
        # a bad code is 400 even for an unknown contact; 500 characters are fine
        status, _ = await put(client, "tok-a1", "a1", {"contact": "x", "code": "lunch"})
        assert status == 400
        status, _ = await put(client, "tok-a1", "a1",
                              {"contact": "call-1", "code": "callback", "note": "é" * 500})
        assert status == 200
        status, _ = await put(client, "tok-a1", "a1", {"contact": "call-1", "code": "sale"})
        assert status == 200  # the note is optional

    serve(node, scenario)
    assert [d["code"] for d in node.lines()] == ["callback", "sale"]


def test_unknown_unhandled_and_old_contacts_are_404(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.do("acme", lambda a, now: a.login("a1", now, ready=True))
    node.do("acme", lambda a, now: a.enqueue("talking", "q", now))
    node.do("acme", lambda a, now: a.answered("talking", "a1", now))  # not ended yet
    node.clock.t += 30
    node.do("acme", lambda a, now: a.ended("talking", now))
    node.do("acme", lambda a, now: a.set_not_ready("a1", "", now))
    node.handled("acme", "a1", "recent")
    node.do("acme", lambda a, now: a.set_ready("a1", now))
    node.do("acme", lambda a, now: a.enqueue("abandoned", "q", now))  # rings a1 ...
    node.do("acme", lambda a, now: a.abandon("abandoned", now))  # ... and the caller goes

    async def scenario(client: Client) -> None:
        for contact in ("nothing", "abandoned"):
            status, doc = await put(client, "tok-a1", "a1", {"contact": contact, "code": "sale"})
            assert (status, doc["error"]["id"]) == (404, "not_found"), contact
            assert "in the last hour" in doc["error"]["message"]
        status, doc = await put(client, "tok-acme", "nobody",
                                {"contact": "recent", "code": "sale"})
        assert (status, doc["error"]["id"]) == (404, "not_found")

    serve(node, scenario)
    node.clock.t = T0 + 9 * H + 30 + 3600.5  # "talking" ended just over an hour ago

    async def later(client: Client) -> None:
        status, _ = await put(client, "tok-a1", "a1", {"contact": "talking", "code": "sale"})
        assert status == 404
        status, _ = await put(client, "tok-a1", "a1", {"contact": "recent", "code": "sale"})
        assert status == 200

    serve(node, later)
    assert [d["contact"] for d in node.lines()] == ["recent"]


def test_a_second_wrap_up_replaces_the_first(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.handled("acme", "a1", "call-1")
    node.handled("acme", "a1", "call-2")

    async def scenario(client: Client) -> None:
        assert (await put(client, "tok-a1", "a1", {"contact": "call-1", "code": "sale",
                                                   "note": "first"}))[0] == 200
        assert (await put(client, "tok-a1", "a1", {"contact": "call-2", "code": "sale"}))[0] \
            == 200
        status, doc = await put(client, "tok-a1", "a1",
                                {"contact": "call-1", "code": "callback", "note": "second"})
        assert status == 200 and (doc["code"], doc["replaces"]) == ("callback", "sale")

    serve(node, scenario)
    assert [(d["contact"], d["code"], d["note"], d["replaces"]) for d in node.lines()] == [
        ("call-1", "sale", "first", None), ("call-2", "sale", "", None),
        ("call-1", "callback", "second", "sale")]
    day = node.daily()
    assert by_name(day["agents"], "agent")["a1"]["wrap_up_codes"] == {"callback": 1, "sale": 1}
    assert by_name(day["queues"], "queue")["q"]["wrap_up_codes"] == {"callback": 1, "sale": 1}


def test_the_memory_is_bounded_per_agent_and_the_snapshot_names_the_codes(
        tmp_path: Path) -> None:
    node = Node(tmp_path)
    for i in range(WRAP_UP_KEPT + 3):
        node.handled("acme", "a1", f"call-{i}", talk=1.0)
    node.handled("acme", "a2", "call-a2", talk=1.0)
    assert list(node.desk._handled[("acme", "a1")]) == \
        [f"call-{i}" for i in range(3, WRAP_UP_KEPT + 3)]  # the oldest went

    async def scenario(client: Client) -> None:
        status, _ = await put(client, "tok-a1", "a1", {"contact": "call-2", "code": "sale"})
        assert status == 404
        status, _ = await put(client, "tok-a1", "a1", {"contact": "call-3", "code": "sale"})
        assert status == 200
        resp = await client.get("/api/v1/acd", headers={"Authorization": "Bearer tok-a1"})
        snap = await resp.json()
        assert snap["wrap_up_codes"] == CODES and snap["not_ready_reasons"] == []
        resp = await client.get("/api/v1/acd", headers={"Authorization": "Bearer tok-globex"})
        assert (await resp.json())["wrap_up_codes"] == ["sale"]

    serve(node, scenario)


def test_a_contact_transferred_to_a_queue_is_the_transferring_agents_to_wrap_up(
        tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.do("acme", lambda a, now: a.login("a1", now, ready=True))
    node.do("acme", lambda a, now: a.enqueue("call-1", "q", now))
    node.do("acme", lambda a, now: a.answered("call-1", "a1", now))
    node.clock.t += 20
    node.do("acme", lambda a, now: a.transfer_to_queue("call-1", "q", now))

    async def scenario(client: Client) -> None:
        status, doc = await put(client, "tok-a1", "a1", {"contact": "call-1", "code": "sale"})
        assert status == 200 and doc["queue"] == "q"

    serve(node, scenario)
