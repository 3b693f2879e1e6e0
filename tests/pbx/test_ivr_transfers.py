"""A flow's transfers to an agent id and to a queue (R-4.9), with the payload, and the
flow taking the caller back when nobody answers."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qs

import pytest

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import B2bua, PlayPrompts, WriteCdr
from appliance.plan import Plan, PlanError
from appliance.sip.message import Request, make_response, parse_message
from tests.pbx.test_b2bua import invite
from tests.test_plan import DOC

EDGE = ("127.0.0.1", 5060)


def plan_doc(target: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    acme = doc["tenants"][0]
    acme["agents"] = [{"id": "alice", "extension": "1001"}, {"id": "bob", "extension": "1002"}]
    acme["queues"] = [{"name": "sales", "agents": ["bob", "alice"], "ring_seconds": 5}]
    acme["flows"] = {"to": {"flow": "to", "version": 1, "start": "go", "nodes": {
        "go": {"type": "transfer", **target, "data": {"topic": "'shoes'"},
               "on_failure": "sorry"},
        "sorry": {"type": "play", "prompt": {"tts": "Nobody is free."}}}}}
    acme["dids"].append({"number": "+862088880070", "target": "flow:to"})
    return doc


def start(target: dict[str, Any]) -> B2bua:
    c = B2bua(plan=Plan.from_dict(plan_doc(target)), local_ip="127.0.0.1", local_port=5080,
              edge=EDGE, media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    return c


def invites(c: B2bua) -> list[Request]:
    return [m for m in (parse_message(d) for d, _ in c.outgoing())
            if isinstance(m, Request) and m.method == "INVITE"]


def test_transfer_to_an_agent_id_rings_the_agents_extension_with_the_data() -> None:
    c = start({"agent": "alice"})
    [b] = invites(c)
    assert b.uri.user == "1001"
    assert parse_qs(b.headers.get("X-BL-Data") or "") == {"topic": ["shoes"]}


def test_queue_rings_its_agents_in_order_then_returns_to_the_flow() -> None:
    c = start({"queue": "sales"})
    [first] = invites(c)
    assert first.uri.user == "1002"  # bob is first in the queue
    c.tick(6.1)  # ring_seconds 5: bob's phone is given up
    c.outgoing()  # the CANCEL and INVITE retransmissions to bob
    c.receive(make_response(first, 487, to_tag="b").to_bytes(), EDGE, 6.2)
    [second] = invites(c)
    assert second.uri.user == "1001"
    assert parse_qs(second.headers.get("X-BL-Data") or "") == {"topic": ["shoes"]}
    c.commands()
    c.receive(make_response(second, 486, to_tag="a").to_bytes(), EDGE, 7.0)
    plays = [x for x in c.commands() if isinstance(x, PlayPrompts)]
    assert plays[-1].prompts[0] == {"tts": "Nobody is free."}


def test_unknown_agent_goes_to_on_failure_and_cdr_names_the_queue() -> None:
    c = start({"agent": "nobody"})
    assert invites(c) == []
    plays = [x for x in c.commands() if isinstance(x, PlayPrompts)]
    assert plays[-1].prompts[0] == {"tts": "Nobody is free."}
    c = start({"queue": "sales"})
    [first] = invites(c)
    sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n" \
          b"m=audio 41000 RTP/AVP 0\r\n"
    ok = make_response(first, 200, to_tag="b", body=sdp, content_type="application/sdp")
    ok.headers.add("Contact", "<sip:1002@127.0.0.3>")
    c.receive(ok.to_bytes(), EDGE, 2.0)
    assert c.calls[next(iter(c.calls))].destination == "queue:sales"
    assert not [x for x in c.commands() if isinstance(x, WriteCdr)]


@pytest.mark.parametrize("change,error", [
    (lambda a: a["agents"].append({"id": "carol", "extension": "1999"}), "not an extension"),
    (lambda a: a["agents"].append({"id": "alice", "extension": "1002"}), "duplicate"),
    (lambda a: a["queues"][0]["agents"].append("zed"), "agent ids"),
    (lambda a: a["queues"][0].update(ring_seconds=0), "between 1 and 300"),
])
def test_agents_and_queues_are_validated(change: Any, error: str) -> None:
    doc = plan_doc({"queue": "sales"})
    change(doc["tenants"][0])
    with pytest.raises(PlanError, match=error):
        Plan.from_dict(doc)


def test_round_trip_keeps_agents_and_queues() -> None:
    plan = Plan.from_dict(plan_doc({"queue": "sales"}))
    again = Plan.from_dict(plan.to_dict())
    assert again.tenant("acme").queues == plan.tenant("acme").queues
    assert again.tenant("acme").agents == plan.tenant("acme").agents
    # another tenant's agents and queues are not reachable by name
    assert plan.transfer_route("globex", "queue", "sales").kind == "none"
    assert plan.transfer_route("globex", "agent", "alice").kind == "none"
