"""Callbacks placed by the node (docs/ACD.md, "Callbacks"): a caller waiting in a queue
with callbacks presses the queue's key, hears a confirmation and is hung up on while its
entry keeps its place in line; when an agent is free for it the node calls the customer
back through the tenant's trunk, presenting the DID it dialled, and offers it to the
reserved agent once it answers. Scripted SIP with a fake clock."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qs

import pytest

from appliance.acd.events import CallbackFailed, ContactAbandoned, ContactAnswered
from appliance.media.ports import PortPool
from appliance.pbx.b2bua import (
    AcdNotice,
    B2bua,
    BridgeMedia,
    PlayPrompts,
    TraceEvent,
    WriteCdr,
)
from appliance.plan import Plan, PlanError
from appliance.sip.message import Request, make_response, parse_message
from tests.pbx.test_b2bua import invite
from tests.pbx.test_ivr_transfers import EDGE, answer, plan_doc

CUSTOMER = "+8613800000000"  # the caller's number (tests.pbx.test_b2bua.invite)
DID = "+862088880070"  # the number it dialled: a flow that transfers to the queue


def doc(**queue: Any) -> dict[str, Any]:
    d = plan_doc({"queue": "sales"})
    acme = d["tenants"][0]
    acme["queues"][0].update({"callback_allowed": True, "callback_attempts": 2,
                              "callback_retry_delay": 30, "callback_timeout": 20, **queue})
    acme["outbound"].append({"prefix": "+", "trunk": "carrier"})  # E.164 numbers out
    return d


class Node:
    """The call control with what it sent and did kept for the test to look at."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.c = B2bua(plan=Plan.from_dict(d), local_ip="127.0.0.1", local_port=5080,
                       edge=EDGE, media_ip="127.0.0.1", ports=PortPool(30000, 30100))
        self.sent: list[Any] = []
        self.done: list[Any] = []

    def pump(self) -> None:
        self.sent += [parse_message(d) for d, _ in self.c.outgoing()]
        self.done += self.c.commands()

    def call_in(self, call_id: str, now: float, from_user: str = CUSTOMER) -> str:
        """A carrier caller dials the DID and waits in the queue: its call id (the
        contact id)."""
        before = set(self.c.calls)
        self.c.receive(invite(f"sip:{DID}@127.0.0.1", "trunk;name=carrier", call_id=call_id,
                              from_user=from_user), EDGE, now)
        self.pump()
        [new] = set(self.c.calls) - before
        return new

    def press(self, call: str, key: str, now: float) -> None:
        self.c.media_dtmf(f"{call}-0", key, "rfc4733", now)
        self.pump()

    def agent(self, action: Any, now: float) -> None:
        self.c.agent_action("acme", action, now)
        self.pump()

    def answer(self, inv: Request, now: float, user: str) -> None:
        answer(self.c, inv, now, user)
        self.pump()

    def tick(self, now: float) -> None:
        self.c.tick(now)
        self.pump()

    def receive(self, data: bytes, now: float) -> None:
        self.c.receive(data, EDGE, now)
        self.pump()

    def invites(self, user: str | None = None) -> list[Request]:
        """INVITEs sent so far and not looked at yet (to ``user`` only, if given)."""
        found = [m for m in self.sent if isinstance(m, Request) and m.method == "INVITE"
                 and (user is None or m.uri.user == user)]
        self.sent = [m for m in self.sent if all(m is not f for f in found)]
        return found

    def requests(self, method: str) -> list[Request]:
        return [m for m in self.sent if isinstance(m, Request) and m.method == method]

    def traces(self, kind: str) -> list[dict[str, str]]:
        return [{"call": x.call_id, **dict(x.data)} for x in self.done
                if isinstance(x, TraceEvent) and x.kind == kind]

    def notices(self, kind: type) -> list[Any]:
        return [x.event for x in self.done
                if isinstance(x, AcdNotice) and isinstance(x.event, kind)]

    def prompts(self) -> list[PlayPrompts]:
        return [x for x in self.done if isinstance(x, PlayPrompts)]

    @property
    def acd(self) -> Any:
        return self.c.acd["acme"]


def far_bye(inv: Request, their_tag: str) -> bytes:
    """The party the node called (``inv``, answered with ``their_tag``) hangs up."""
    return (
        "BYE sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-bye-{their_tag}\r\n"
        "Max-Forwards: 69\r\n"
        f"From: <{inv.uri}>;tag={their_tag}\r\n"
        f"To: {inv.headers.get('From')}\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def request_callback(n: Node, call_id: str, now: float) -> str:
    """A caller enters the queue, presses the key and the node hangs up after saying
    so: the contact id."""
    contact = n.call_in(call_id, now)
    n.press(contact, "*", now + 1)
    said = n.prompts()[-1]
    n.c.playback_finished(said.leg, now + 5)
    n.pump()
    return contact


def test_the_key_asks_for_a_callback_and_the_hang_up_keeps_the_place() -> None:
    n = Node(doc())
    contact = n.call_in("c1", 1.0)
    # the caller presses the key, here by SIP INFO
    call = n.c.calls[contact]
    a = call.legs[0]
    assert a.invite is not None
    info = (
        "INFO sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-info-1\r\n"
        "Max-Forwards: 69\r\n"
        f"From: {a.invite.headers.get('From')}\r\n"
        f"To: <{a.invite.uri}>;tag={a.local_tag}\r\n"
        f"Call-ID: {a.invite.call_id}\r\nCSeq: 2 INFO\r\n"
        "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\n"
        "Signal=*\r\nDuration=160\r\n"
    ).encode()
    n.receive(info, 3.0)
    [asked] = n.traces("callback_requested")
    assert asked == {"call": contact, "queue": "sales", "number": CUSTOMER}
    said = n.prompts()[-1]
    assert said.leg == a.id and said.prompts == (
        {"tts": "We will call you back at"}, {"say": CUSTOMER[1:], "as": "digits"},
        {"tts": "You keep your place in line. Goodbye."})
    view = n.acd.contact(contact)
    assert view.state == "waiting" and not view.live and view.callback_number == CUSTOMER
    # the confirmation ends: the node hangs up, and the entry stays in line
    n.c.playback_finished(a.id, 9.0)
    n.pump()
    assert n.requests("BYE") and a.state == "ended" and contact not in n.c.calls
    assert n.acd.contact(contact).state == "waiting"
    assert not n.notices(ContactAbandoned)
    [cdr] = [x.cdr for x in n.done if isinstance(x, WriteCdr)]
    assert cdr.call_id == contact and cdr.disposition == "answered"


def test_a_callback_entry_is_served_before_a_later_live_caller() -> None:
    n = Node(doc())
    first = request_callback(n, "c1", 1.0)
    later = n.call_in("c2", 20.0, from_user="+8613900000000")
    n.agent(lambda acd: acd.login("bob", 30.0, ready=True), 30.0)
    # bob is reserved for the callback: the node calls the first customer, not bob
    [out] = n.invites()
    assert (out.uri.user, out.uri.host, out.uri.port) == (CUSTOMER, "127.0.0.2", 5070)
    assert out.from_.uri.user == DID  # the number the customer dialled
    assert "X-BL-Data" not in out.headers  # nothing of the contact's goes to the carrier
    assert n.acd.agent("bob", 30.0).state == "reserved"
    assert n.acd.contact(first).state == "calling_back"
    assert n.acd.contact(later).state == "waiting"
    [placed] = n.traces("callback_placed")
    assert placed["contact"] == first and placed["agent"] == "bob"
    assert placed["attempt"] == "1" and placed["caller_id"] == DID


def test_placed_when_the_agent_is_free_answered_offered_and_bridged() -> None:
    n = Node(doc(wrap_up=10))
    n.agent(lambda acd: acd.login("bob", 1.0, ready=True), 1.0)
    busy = n.call_in("c0", 2.0, from_user="+8613900000000")  # bob takes it
    [to_bob] = n.invites("1002")
    n.answer(to_bob, 3.0, "1002")
    contact = request_callback(n, "c1", 4.0)
    assert n.invites() == []  # bob talks: nobody is called back yet
    n.receive(far_bye(to_bob, "t1002"), 40.0)  # bob's call ends: after-call work
    assert n.acd.agent("bob", 40.0).state == "wrap_up" and n.invites() == []
    assert busy not in n.c.calls
    n.tick(50.5)  # bob is free again: the customer is called back for him
    [out] = n.invites(CUSTOMER)
    assert n.acd.agent("bob", 50.5).state == "reserved"
    n.receive(make_response(out, 180, to_tag="cust").to_bytes(), 51.0)
    n.answer(out, 53.0, CUSTOMER[1:])
    [ans] = n.traces("callback_answered")
    back = ans["call"]
    assert back != contact and ans["contact"] == contact
    leg = n.c.calls[back].legs[0]
    assert n.prompts()[-1].leg == leg.id
    assert "call back you asked for" in n.prompts()[-1].prompts[0]["tts"]
    # the ACD offers the customer to bob, with the original call's data
    [ring] = n.invites("1002")
    data = parse_qs(ring.headers.get("X-BL-Data") or "")
    assert data["topic"] == ["shoes"] and data["queue"] == ["sales"]
    assert data["agent"] == ["bob"] and data["callback"] == ["true"]
    assert ring.from_.uri.user == CUSTOMER  # bob's phone shows the customer
    n.answer(ring, 55.0, "1002")
    assert any(isinstance(x, BridgeMedia) and {x.a, x.b} == {leg.id, f"{back}-1"}
               for x in n.done)
    [answered] = [e for e in n.notices(ContactAnswered) if e.contact == contact]
    assert answered.agent == "bob" and answered.callback
    assert n.acd.agent("bob", 55.0).state == "talking"
    # the customer hangs up: the contact ends, bob goes to after-call work
    n.receive(far_bye(out, f"t{CUSTOMER[1:]}"), 90.0)
    assert n.acd.contact(contact) is None and n.c._callbacks == {}
    assert n.acd.agent("bob", 90.0).state == "wrap_up"
    cdr = next(x.cdr for x in n.done if isinstance(x, WriteCdr) and x.cdr.call_id == back)
    assert (cdr.origin, cdr.caller, cdr.callee, cdr.destination, cdr.disposition) == (
        "callback:sales", DID, CUSTOMER, "trunk:carrier", "answered")


def test_no_answer_is_retried_after_the_delay_then_given_up() -> None:
    n = Node(doc())
    contact = request_callback(n, "c1", 1.0)
    n.agent(lambda acd: acd.login("bob", 10.0, ready=True), 10.0)
    [first] = n.invites(CUSTOMER)
    n.receive(make_response(first, 180, to_tag="r1").to_bytes(), 11.0)
    n.tick(30.0)  # the queue's callback_timeout (20 s): the node stops ringing
    assert n.requests("CANCEL")
    n.receive(make_response(first, 487, to_tag="r1").to_bytes(), 30.1)
    [failed] = n.notices(CallbackFailed)
    assert (failed.attempt, failed.final) == (1, False)
    assert n.acd.contact(contact).state == "parked"
    assert n.acd.agent("bob", 30.1).state == "ready" and n.invites() == []
    n.tick(45.0)
    assert n.invites() == []  # the retry waits for callback_retry_delay (30 s)
    n.tick(60.5)
    [second] = n.invites(CUSTOMER)  # called again, still for bob
    assert n.traces("callback_placed")[-1]["attempt"] == "2"
    n.receive(make_response(second, 486, to_tag="r2").to_bytes(), 61.0)  # busy
    fails = n.notices(CallbackFailed)
    assert [(e.attempt, e.final) for e in fails] == [(1, False), (2, True)]
    assert n.acd.contact(contact) is None and n.c._callbacks == {}
    assert n.acd.agent("bob", 61.0).state == "ready"
    # the ACD's timeout ended the first attempt; the carrier's busy the second
    assert [t["reason"] for t in n.traces("callback_cancelled")] == ["timeout"]
    assert [t["status"] for t in n.traces("callback_failed")] == ["486"]
    assert n.c.calls == {} and n.invites() == []
    dispositions = [x.cdr.disposition for x in n.done if isinstance(x, WriteCdr)
                    and x.cdr.origin == "callback:sales"]
    assert dispositions == ["cancelled", "busy"]


def test_the_customer_hanging_up_before_the_agent_answers_abandons() -> None:
    n = Node(doc())
    contact = request_callback(n, "c1", 1.0)
    n.agent(lambda acd: acd.login("bob", 10.0, ready=True), 10.0)
    [out] = n.invites(CUSTOMER)
    n.answer(out, 12.0, CUSTOMER[1:])
    [ring] = n.invites("1002")  # bob's phone rings for the customer
    n.receive(make_response(ring, 180, to_tag="bob").to_bytes(), 12.5)
    n.receive(far_bye(out, f"t{CUSTOMER[1:]}"), 14.0)  # the customer hangs up
    assert n.requests("CANCEL")  # bob's phone stops ringing
    n.receive(make_response(ring, 487, to_tag="bob").to_bytes(), 14.1)
    [gone] = n.notices(ContactAbandoned)
    assert gone.contact == contact and gone.cause == "callback_cancelled"
    assert n.acd.contact(contact) is None and n.c._callbacks == {}
    assert n.acd.agent("bob", 14.1).state == "ready"
    assert n.c.calls == {}


def test_over_the_pstn_quota_a_callback_counts_as_failed() -> None:
    d = doc()
    d["tenants"][0]["limits"] = {"pstn_calls": 1}
    n = Node(d)
    contact = request_callback(n, "c1", 1.0)
    later = n.call_in("c2", 5.0, from_user="+8613900000000")  # holds the one PSTN call
    n.agent(lambda acd: acd.login("bob", 10.0, ready=True), 10.0)
    assert n.invites(CUSTOMER) == []  # not dialled
    [refused] = n.traces("quota_exceeded")
    assert refused["treatment"] == "callback failed"
    [failed] = n.traces("callback_failed")
    assert failed["contact"] == contact and failed["reason"] == "quota_exceeded"
    assert [(e.attempt, e.final) for e in n.notices(CallbackFailed)] == [(1, False)]
    # bob is free again at once: the live caller behind gets him
    [ring] = n.invites("1002")
    assert n.acd.contact(later).state == "offered" and ring.uri.user == "1002"
    assert n.acd.contact(contact).state == "parked"


def test_the_acd_giving_up_cancels_the_call_and_a_late_answer_is_hung_up() -> None:
    n = Node(doc())
    contact = request_callback(n, "c1", 1.0)
    n.agent(lambda acd: acd.login("bob", 10.0, ready=True), 10.0)
    [out] = n.invites(CUSTOMER)
    n.receive(make_response(out, 180, to_tag="r1").to_bytes(), 11.0)
    n.agent(lambda acd: acd.abandon(contact, 12.0), 12.0)  # e.g. cancelled on the desk
    [cancelled] = n.traces("callback_cancelled")
    assert cancelled["contact"] == contact and cancelled["reason"] == "cancelled"
    assert n.requests("CANCEL")
    # the customer's 200 crossed our CANCEL: the node hangs up on it
    n.answer(out, 12.2, CUSTOMER[1:])
    assert n.requests("BYE") and n.invites("1002") == []
    assert n.c.calls == {} and n.c._callbacks == {}
    assert n.acd.agent("bob", 12.2).state == "ready"


@pytest.mark.parametrize("queue,key", [({"callback_allowed": False}, "*"),
                                       ({}, "1"), ({"callback_key": "#"}, "*")])
def test_other_keys_and_queues_without_callbacks_leave_the_caller_waiting(
        queue: dict[str, Any], key: str) -> None:
    n = Node(doc(**queue))
    contact = n.call_in("c1", 1.0)
    n.press(contact, key, 2.0)
    assert n.traces("callback_requested") == [] and n.traces("callback_refused") == []
    view = n.acd.contact(contact)
    assert view.state == "waiting" and view.live
    assert n.c.calls[contact].legs[0].queue == "sales" and not n.requests("BYE")


def test_the_queues_own_key_and_an_unreachable_number() -> None:
    n = Node(doc(callback_key="#"))
    contact = n.call_in("c1", 1.0)
    n.press(contact, "#", 2.0)
    assert n.traces("callback_requested")
    hidden = n.call_in("c2", 3.0, from_user="anonymous")
    n.press(hidden, "#", 4.0)
    [refused] = n.traces("callback_refused")
    assert refused["call"] == hidden and refused["reason"] == "number not reachable"
    assert "cannot call you back" in n.prompts()[-1].prompts[0]["tts"]
    assert n.acd.contact(hidden).live  # still waiting on the line


@pytest.mark.parametrize("key", ["x", "**", 1, ""])
def test_the_callback_key_is_validated(key: Any) -> None:
    d = doc()
    d["tenants"][0]["queues"][0]["callback_key"] = key
    with pytest.raises(PlanError, match="callback_key"):
        Plan.from_dict(copy.deepcopy(d))


def test_the_callback_key_round_trips() -> None:
    plan = Plan.from_dict(doc(callback_key="#"))
    assert plan.tenant("acme").queues[0].callback_key == "#"
    assert Plan.from_dict(plan.to_dict()) == plan
