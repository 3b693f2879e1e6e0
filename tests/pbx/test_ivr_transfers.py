"""A flow's transfers to an agent id and to a queue (R-4.9), with the payload, and the
flow taking the caller back when nobody answers."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qs

import pytest

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import AcdNotice, B2bua, BridgeMedia, PlayPrompts, WriteCdr
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


SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n"
       b"m=audio 41000 RTP/AVP 0\r\n")


def answer(c: B2bua, inv: Request, now: float, user: str) -> None:
    ok = make_response(inv, 200, to_tag=f"t{user}", body=SDP, content_type="application/sdp")
    ok.headers.add("Contact", f"<sip:{user}@127.0.0.3>")
    c.receive(ok.to_bytes(), EDGE, now)


def caller_hangs_up(c: B2bua, now: float) -> None:
    """The carrier's caller sends BYE on the call's first leg."""
    call = c.calls[next(iter(c.calls))]
    a = next(x for x in call.legs if x.role == "a")
    assert a.invite is not None
    bye = (
        "BYE sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-bye-q\r\n"
        "Max-Forwards: 69\r\n"
        f"From: {a.invite.headers.get('From')}\r\n"
        f"To: <{a.invite.uri}>;tag={a.local_tag}\r\n"
        f"Call-ID: {a.invite.call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    c.receive(bye, EDGE, now)


def notices(c: B2bua) -> list[str]:
    return [type(x.event).__name__ for x in c.commands() if isinstance(x, AcdNotice)]


def test_queue_waits_for_a_ready_agent_and_a_no_answer_goes_back_to_the_queue() -> None:
    c = start({"queue": "sales"})
    assert invites(c) == []  # nobody logged in: the caller waits, hearing the hold prompt
    out = c.commands()
    assert any(isinstance(x, PlayPrompts) and "hold" in x.prompts[0]["tts"] for x in out)
    assert "ContactQueued" in [type(x.event).__name__ for x in out if isinstance(x, AcdNotice)]
    c.agent_action("acme", lambda acd: acd.login("bob", 2.0, ready=True), 2.0)
    [to_bob] = invites(c)
    assert to_bob.uri.user == "1002"
    data = parse_qs(to_bob.headers.get("X-BL-Data") or "")
    assert data["topic"] == ["shoes"] and data["queue"] == ["sales"] and data["agent"] == ["bob"]
    # bob's phone rings but he does not answer within the queue's ring timeout (5 s)
    c.receive(make_response(to_bob, 180, to_tag="b").to_bytes(), EDGE, 2.5)
    c.tick(7.1)
    sent = [parse_message(d) for d, _ in c.outgoing()]
    assert any(isinstance(m, Request) and m.method == "CANCEL" for m in sent)
    c.receive(make_response(to_bob, 487, to_tag="b").to_bytes(), EDGE, 7.2)
    acd = c.acd["acme"]
    assert acd.agent("bob", 7.2).state == "not_ready"
    assert "NoAnswer" in notices(c)
    # alice logs in: the caller, still at its place, is offered to her and she answers
    c.agent_action("acme", lambda acd: acd.login("alice", 8.0, ready=True), 8.0)
    [to_alice] = invites(c)
    assert to_alice.uri.user == "1001"
    answer(c, to_alice, 9.0, "1001")
    assert acd.agent("alice", 9.0).state == "talking"
    call = c.calls[next(iter(c.calls))]
    assert call.destination == "queue:sales"
    # the caller hangs up: the contact ends, alice goes on to after-call work or ready
    caller = next(x for x in call.legs if x.role == "a")
    assert caller.queue is None and caller.peer is not None
    c.commands()
    caller_hangs_up(c, 20.0)
    assert acd.contact(call.id) is None
    assert acd.agent("alice", 20.0).state in ("wrap_up", "ready")
    assert "ContactEnded" in notices(c)


def test_a_caller_who_hangs_up_in_the_queue_is_abandoned() -> None:
    c = start({"queue": "sales"})
    call = c.calls[next(iter(c.calls))]
    caller = next(x for x in call.legs if x.role == "a")
    c.commands()
    caller_hangs_up(c, 3.0)
    assert caller.state == "ended"
    assert c.acd["acme"].contact(call.id) is None
    assert "ContactAbandoned" in notices(c)


def test_max_wait_gives_the_caller_back_to_the_flow() -> None:
    doc = plan_doc({"queue": "sales"})
    doc["tenants"][0]["queues"][0]["max_wait"] = 10
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    c.commands()
    c.tick(11.5)
    plays = [x for x in c.commands() if isinstance(x, PlayPrompts)]
    assert plays[-1].prompts[0] == {"tts": "Nobody is free."}


def test_unknown_agent_goes_to_on_failure() -> None:
    c = start({"agent": "nobody"})
    assert invites(c) == []
    plays = [x for x in c.commands() if isinstance(x, PlayPrompts)]
    assert plays[-1].prompts[0] == {"tts": "Nobody is free."}
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


def test_an_agents_phone_calls_out_only_while_the_agent_is_signed_in() -> None:
    """R-X.1 (bind_agent_phones): bob's extension is refused while bob is logged out;
    signed in, its call goes through and the ACD offers bob nothing until it ends."""
    doc = plan_doc({"queue": "sales"})
    doc["tenants"][0]["acd"] = {"bind_agent_phones": True}
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:1001@acme.example", "ext;domain=acme.example;user=1002",
                     call_id="out1", from_user="1002"), EDGE, 1.0)
    refused = [m for m in (parse_message(d) for d, _ in c.outgoing())
               if not isinstance(m, Request)]
    assert [m.status for m in refused] == [403]
    c.agent_action("acme", lambda acd: acd.login("bob", 2.0, ready=True), 2.0)
    c.receive(invite("sip:1001@acme.example", "ext;domain=acme.example;user=1002",
                     call_id="out2", from_user="1002"), EDGE, 3.0)
    [to_alice] = invites(c)
    assert to_alice.uri.user == "1001"
    assert c.acd["acme"].agent("bob", 3.0).state == "talking"
    # a queue caller meanwhile is not offered to bob
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier", call_id="q1"),
              EDGE, 4.0)
    assert [r.uri.user for r in invites(c)] == []
    # the agent's own call ends (alice's phone refuses it): bob is ready and gets the caller
    c.receive(make_response(to_alice, 486, to_tag="x").to_bytes(), EDGE, 5.0)
    [to_bob] = invites(c)
    assert to_bob.uri.user == "1002"


def test_the_caller_hears_the_agents_id_before_they_talk() -> None:
    doc = plan_doc({"queue": "sales"})
    doc["tenants"][0]["queues"][0]["announce_agent"] = True
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    c.agent_action("acme", lambda acd: acd.login("alice", 2.0, ready=True), 2.0)
    [to_alice] = invites(c)
    c.commands()
    answer(c, to_alice, 3.0, "1001")
    out = c.commands()
    assert not any(isinstance(x, BridgeMedia) for x in out)
    said = [x for x in out if isinstance(x, PlayPrompts)]
    assert said and said[-1].prompts[0] == {"tts": "Agent alice will take your call."}
    c.playback_finished(said[-1].leg, 5.0)
    assert any(isinstance(x, BridgeMedia) for x in c.commands())
    assert c.acd["acme"].agent("alice", 5.0).state == "talking"
