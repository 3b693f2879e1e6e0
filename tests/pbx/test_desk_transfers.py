"""An agent transfers the call it talks on (the desktop's transfer panel, docs/DESK.md):
REFER to an agent id (rung only while signed in and not busy), to a queue (the caller
waits there and the ACD offers it to the queue's agents, with the call's data), a
failed transfer leaving the caller with the agent, and an attended transfer; the ACD
state of every agent stays right. Scripted SIP from the edge, fake clock."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote

import pytest

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import AcdNotice, B2bua, BridgeMedia, TraceEvent, UnbridgeMedia
from appliance.plan import Plan
from appliance.sip.message import Request, Response, make_response, parse_message
from tests.pbx.test_b2bua import invite
from tests.pbx.test_ivr_transfers import EDGE, answer, plan_doc

CORES: list[B2bua] = []


@pytest.fixture(autouse=True)
def no_errors() -> Any:
    CORES.clear()
    yield
    assert [c.errors for c in CORES] == [[] for _ in CORES]


def core(wrap_up: float | None = 0) -> B2bua:
    doc = plan_doc({"queue": "sales"})
    acme = doc["tenants"][0]
    acme["queues"][0]["wrap_up"] = wrap_up
    acme["queues"].append({"name": "support", "agents": ["bob"], "ring_seconds": 5,
                           "skills": {}})
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    CORES.append(c)
    return c


def sent(c: B2bua) -> list[Request | Response]:
    return [m for m in (parse_message(d) for d, _ in c.outgoing())
            if isinstance(m, Request | Response)]


def invites(msgs: list[Request | Response]) -> list[Request]:
    return [m for m in msgs if isinstance(m, Request) and m.method == "INVITE"
            and m.to.tag is None]


def notifies(msgs: list[Request | Response]) -> list[str]:
    return [m.body.decode().strip() for m in msgs
            if isinstance(m, Request) and m.method == "NOTIFY"]


def statuses(msgs: list[Request | Response]) -> list[int]:
    return [m.status for m in msgs if isinstance(m, Response)]


def traces(cmds: list[Any], kind: str) -> list[dict[str, str]]:
    return [dict(x.data) for x in cmds if isinstance(x, TraceEvent) and x.kind == kind]


def events(cmds: list[Any]) -> list[str]:
    return [type(x.event).__name__ for x in cmds if isinstance(x, AcdNotice)]


def state(c: B2bua, agent: str, now: float) -> str:
    return str(c.acd["acme"].agent(agent, now).state)


def alice_talks(c: B2bua) -> Request:
    """A carrier caller goes through the flow to the sales queue (data topic=shoes);
    alice (ready) takes it; bob signs in not ready. Returns the INVITE alice answered."""
    c.agent_action("acme", lambda acd: acd.login("alice", 1.0, ready=True), 1.0)
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 2.0)
    [to_alice] = invites(sent(c))
    assert to_alice.uri.user == "1001"
    answer(c, to_alice, 3.0, "1001")
    c.agent_action("acme", lambda acd: acd.login("bob", 3.5), 3.5)
    sent(c)
    c.commands()
    assert state(c, "alice", 4.0) == "talking"
    return to_alice


def refer(c: B2bua, inv: Request, user: str, target: str, now: float, cseq: int = 1) -> None:
    """The phone that answered ``inv`` sends REFER in that dialog."""
    c.receive((
        "REFER sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-refer-{user}-{cseq}\r\n"
        "Max-Forwards: 69\r\n"
        f"From: {inv.headers.get('To')};tag=t{user}\r\nTo: {inv.headers.get('From')}\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: {cseq} REFER\r\n"
        f"Contact: <sip:{user}@127.0.0.3>\r\nRefer-To: <{target}>\r\n"
        "Content-Length: 0\r\n\r\n").encode(), EDGE, now)


def bye_from(c: B2bua, inv: Request, user: str, now: float, cseq: int = 5) -> None:
    c.receive((
        "BYE sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-bye-{user}-{cseq}\r\n"
        "Max-Forwards: 69\r\n"
        f"From: {inv.headers.get('To')};tag=t{user}\r\nTo: {inv.headers.get('From')}\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode(), EDGE, now)


def test_transfer_to_a_signed_in_agent_rings_it_with_the_data_and_ends_the_first_contact(
        ) -> None:
    c = core()
    to_alice = alice_talks(c)
    note = quote("note=wants red shoes", safe="")
    refer(c, to_alice, "1001", f"sip:bob@acme.example?X-BL-Data={note}", 5.0)
    msgs, cmds = sent(c), c.commands()
    assert 202 in statuses(msgs) and notifies(msgs) == ["SIP/2.0 100 Trying"]
    [to_bob] = invites(msgs)
    assert to_bob.uri.user == "1002"
    data = parse_qs(to_bob.headers.get("X-BL-Data") or "")
    assert data == {"topic": ["shoes"], "note": ["wants red shoes"], "queue": ["sales"],
                    "transferred_by": ["alice"], "agent": ["bob"]}
    [transfer] = traces(cmds, "transfer")
    assert (transfer["mode"], transfer["to"], transfer["kind"]) == ("blind", "bob", "agent")
    # bob counts as busy while his phone rings (no queue offer reaches him); alice still
    # has the caller until bob answers
    assert state(c, "bob", 5.0) == "talking" and state(c, "alice", 5.0) == "talking"
    answer(c, to_bob, 6.0, "1002")
    msgs, cmds = sent(c), c.commands()
    assert notifies(msgs) == ["SIP/2.0 200 OK"]
    assert any(isinstance(x, BridgeMedia) for x in cmds)
    assert "ContactEnded" in events(cmds)
    assert state(c, "alice", 6.0) == "ready"  # the queue has no after-call work
    assert traces(cmds, "transferred") == [{"agent": "alice"}]
    # alice's phone leaves; later the caller and bob hang up: bob is back to not ready
    bye_from(c, to_alice, "1001", 7.0)
    assert state(c, "bob", 7.0) == "talking"
    bye_from(c, to_bob, "1002", 20.0)
    assert state(c, "bob", 20.0) == "not_ready"
    assert c.calls == {}


@pytest.mark.parametrize("setup,status", [
    (lambda acd: acd.logout("bob", 4.0), "480 Temporarily Unavailable"),
    (lambda acd: acd.start_outbound("bob", 4.0), "486 Busy Here"),
])
def test_transfer_to_an_agent_who_is_signed_out_or_busy_fails_and_keeps_the_caller(
        setup: Any, status: str) -> None:
    c = core()
    to_alice = alice_talks(c)
    c.agent_action("acme", setup, 4.0)
    c.commands()
    refer(c, to_alice, "1001", "sip:bob@acme.example", 5.0)
    msgs, cmds = sent(c), c.commands()
    assert 202 in statuses(msgs) and notifies(msgs) == [f"SIP/2.0 {status}"]
    assert invites(msgs) == []
    assert not any(isinstance(x, UnbridgeMedia) for x in cmds)  # alice keeps the caller
    [failed] = traces(cmds, "transfer_failed")
    assert failed["status"] == status[:3] and failed["to"] == "bob"
    assert state(c, "alice", 5.0) == "talking"
    call = next(iter(c.calls.values()))
    caller = next(x for x in call.legs if x.role == "a")
    assert caller.peer is not None and caller.peer.number == "1001"


def test_an_unanswered_transfer_gives_the_caller_back_to_the_agent() -> None:
    c = core()
    to_alice = alice_talks(c)
    refer(c, to_alice, "1001", "sip:bob@acme.example", 5.0)
    [to_bob] = invites(sent(c))
    c.commands()
    c.receive(make_response(to_bob, 486, to_tag="b").to_bytes(), EDGE, 6.0)
    msgs, cmds = sent(c), c.commands()
    assert notifies(msgs) == ["SIP/2.0 486 Failed"]
    [bridge] = [x for x in cmds if isinstance(x, BridgeMedia)]
    call = next(iter(c.calls.values()))
    caller = next(x for x in call.legs if x.role == "a")
    assert caller.peer is not None and caller.peer.number == "1001"
    assert {bridge.a, bridge.b} == {caller.id, caller.peer.id}
    assert state(c, "bob", 6.0) == "not_ready"  # free again, as before
    assert state(c, "alice", 6.0) == "talking"  # still her contact
    assert c.acd["acme"].contact(call.id) is not None


def test_transfer_to_a_queue_offers_the_caller_to_its_agent_with_the_data() -> None:
    c = core(wrap_up=30)
    to_alice = alice_talks(c)
    c.agent_action("acme", lambda acd: acd.set_ready("bob", 4.0), 4.0)
    assert invites(sent(c)) == []  # nobody waits yet
    c.commands()
    note = quote("note=call back tomorrow", safe="")
    refer(c, to_alice, "1001", f"sip:support@acme.example?X-BL-Data={note}", 5.0)
    msgs, cmds = sent(c), c.commands()
    assert 202 in statuses(msgs)
    assert notifies(msgs) == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    assert "ContactTransferred" in events(cmds)
    assert state(c, "alice", 5.0) == "wrap_up"  # sales has 30 s of after-call work
    [queued] = traces(cmds, "queued")
    assert queued["queue"] == "support"
    [to_bob] = invites(msgs)  # the ACD offers the caller to support's agent at once
    assert to_bob.uri.user == "1002"
    data = parse_qs(to_bob.headers.get("X-BL-Data") or "")
    contact = next(iter(c.calls))  # the caller's call id, for the desk's wrap-up
    assert data == {"topic": ["shoes"], "note": ["call back tomorrow"], "queue": ["support"],
                    "agent": ["bob"], "transferred_by": ["alice"], "contact": [contact]}
    answer(c, to_bob, 6.0, "1002")
    cmds = c.commands()
    assert any(isinstance(x, BridgeMedia) for x in cmds)
    assert state(c, "bob", 6.0) == "talking"
    call = next(iter(c.calls.values()))
    view = c.acd["acme"].contact(call.id)
    assert view is not None and (view.queue, view.agent) == ("support", "bob")
    assert call.destination == "queue:support"
    bye_from(c, to_alice, "1001", 7.0)  # alice's phone hangs up: the call goes on
    assert state(c, "bob", 7.0) == "talking"
    bye_from(c, to_bob, "1002", 9.0)  # bob ends the call: his contact ends
    assert c.calls == {} and c.acd["acme"].contact(call.id) is None
    assert state(c, "bob", 9.0) == "ready"  # support has no after-call work


def test_a_queue_nobody_staffs_keeps_the_caller_waiting() -> None:
    c = core()
    to_alice = alice_talks(c)  # bob (support's only agent) is not ready
    refer(c, to_alice, "1001", "sip:support@acme.example", 5.0)
    msgs = sent(c)
    assert notifies(msgs) == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    assert invites(msgs) == []
    call = next(iter(c.calls.values()))
    view = c.acd["acme"].contact(call.id)
    assert view is not None and (view.queue, view.state) == ("support", "waiting")
    assert state(c, "alice", 5.0) == "ready"
    c.agent_action("acme", lambda acd: acd.set_ready("bob", 8.0), 8.0)
    [to_bob] = invites(sent(c))
    assert parse_qs(to_bob.headers.get("X-BL-Data") or "")["transferred_by"] == ["alice"]


def test_numbers_keep_their_routes_and_unknown_names_are_refused() -> None:
    c = core()
    to_alice = alice_talks(c)
    refer(c, to_alice, "1001", "sip:nobody@acme.example", 5.0)
    assert 404 in statuses(sent(c))
    refer(c, to_alice, "1001", "sip:1002@acme.example", 6.0, cseq=2)  # an extension
    msgs = sent(c)
    [to_1002] = invites(msgs)
    assert "transferred_by" not in (to_1002.headers.get("X-BL-Data") or "")
    assert state(c, "bob", 6.0) == "not_ready"  # a number: no ACD involved


def test_attended_transfer_ends_the_agents_contact() -> None:
    c = core()
    to_alice = alice_talks(c)
    # alice consults bob from her phone (a second call, to his extension)
    c.receive(invite("sip:1002@acme.example", "ext;domain=acme.example;user=1001",
                     call_id="consult", from_user="1001"), EDGE, 5.0)
    msgs = sent(c)
    [to_bob] = invites(msgs)
    answer(c, to_bob, 6.0, "1002")
    ok = next(m for m in sent(c) if isinstance(m, Response) and m.status == 200)
    c.commands()
    node_tag = ok.to.tag
    replaces = quote(f"consult;to-tag={node_tag};from-tag=caller", safe="")
    refer(c, to_alice, "1001", f"sip:1002@acme.example?Replaces={replaces}", 7.0)
    msgs, cmds = sent(c), c.commands()
    assert 202 in statuses(msgs) and notifies(msgs) == ["SIP/2.0 200 OK"]
    [bridge] = [x for x in cmds if isinstance(x, BridgeMedia)]
    assert {c._legs[bridge.a].number, c._legs[bridge.b].number} == {
        "+8613800000000", "1002"}
    assert "ContactEnded" in events(cmds)
    assert state(c, "alice", 7.0) == "ready"
    assert [m.method for m in msgs if isinstance(m, Request)].count("BYE") == 1


def test_a_held_caller_is_resumed_when_it_gets_its_new_agent() -> None:
    c = core()
    to_alice = alice_talks(c)
    call = next(iter(c.calls.values()))
    caller = next(x for x in call.legs if x.role == "a")
    caller.direction = "sendonly"  # the node holds it, mirroring alice's hold
    refer(c, to_alice, "1001", "sip:support@acme.example", 5.0)
    reinvites = [m for m in sent(c) if isinstance(m, Request) and m.method == "INVITE"
                 and m.to.tag is not None]
    assert len(reinvites) == 1 and b"a=sendrecv" in reinvites[0].body
