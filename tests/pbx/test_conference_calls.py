"""An agent's three-way conference (the desktop's "Conference" during a consult): alice
(1001) talks to a carrier caller from the sales queue, holds it and consults bob's
extension 1002 from her phone (a second call). ``B2bua.conference`` mixes the caller,
alice's leg and bob's leg (all heard by all), hangs up alice's consult leg and takes the
caller off hold. Whoever leaves, the other two talk on; the refusals. Scripted SIP from
the edge, fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.pbx.b2bua import (
    AgentConference,
    B2bua,
    BridgeMedia,
    CloseMedia,
    ConfigureMedia,
    Leg,
    MixMedia,
    MonitorError,
    TraceEvent,
    WriteCdr,
)
from appliance.plan import Plan
from appliance.sip.message import Request, Response, make_response, parse_message
from appliance.sip.sdp import make_offer
from tests.pbx.test_assist import assist_plan
from tests.pbx.test_b2bua import invite
from tests.pbx.test_ivr_transfers import EDGE, answer, caller_hangs_up
from tests.pbx.test_monitor import callee_bye, talking

CORES: list[B2bua] = []


@pytest.fixture(autouse=True)
def no_errors() -> Any:
    CORES.clear()
    yield
    assert [c.errors for c in CORES] == [[] for _ in CORES]


def sent(c: B2bua) -> list[Request | Response]:
    return [m for m in (parse_message(d) for d, _ in c.outgoing())
            if isinstance(m, Request | Response)]


def requests(msgs: list[Request | Response], method: str) -> list[Request]:
    return [m for m in msgs if isinstance(m, Request) and m.method == method]


def reinvites(msgs: list[Request | Response]) -> list[Request]:
    return [m for m in requests(msgs, "INVITE") if m.to.tag is not None]


def traces(cmds: list[Any], kind: str) -> list[dict[str, str]]:
    return [dict(x.data) for x in cmds if isinstance(x, TraceEvent) and x.kind == kind]


def cdrs(cmds: list[Any]) -> list[Any]:
    return [x.cdr for x in cmds if isinstance(x, WriteCdr)]


def state(c: B2bua, agent: str, now: float) -> str:
    return str(c.acd["acme"].agent(agent, now).state)


def phone_reinvite(c: B2bua, inv: Request, user: str, direction: str, cseq: int,
                   now: float) -> None:
    """The phone that answered ``inv`` (the node's INVITE) holds or resumes."""
    sdp = make_offer("127.0.0.9", 41000, direction=direction, session_id=2,
                     version=cseq).to_bytes()
    c.receive((
        "INVITE sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-re-{user}-{cseq}\r\n"
        "Max-Forwards: 69\r\n"
        f"From: <{inv.uri}>;tag=t{user}\r\nTo: {inv.headers.get('From')}\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: {cseq} INVITE\r\n"
        f"Contact: <sip:{user}@127.0.0.3>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp, EDGE, now)


def phone_bye(c: B2bua, inv: Request, user: str, cseq: int, now: float) -> None:
    """The phone that answered ``inv`` hangs up (CSeq after its re-INVITEs)."""
    c.receive((
        "BYE sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-bye-{user}-{cseq}\r\n"
        "Max-Forwards: 69\r\n"
        f"From: <{inv.uri}>;tag=t{user}\r\nTo: {inv.headers.get('From')}\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode(), EDGE, now)


def answer_reinvites(c: B2bua, msgs: list[Request | Response], now: float) -> None:
    """The far ends answer the node's re-INVITEs (hold or resume) with 200 and SDP."""
    for req in reinvites(msgs):
        body = make_offer("127.0.0.9", 40000, session_id=1, version=now).to_bytes()
        ok = make_response(req, 200, body=body, content_type="application/sdp")
        c.receive(ok.to_bytes(), EDGE, now)


class Consult:
    """alice talks to the caller, holds it, and talks to bob on a second call."""

    def __init__(self, *, monitored: bool = False) -> None:
        self.c, self.to_alice = talking()
        CORES.append(self.c)
        c = self.c
        if monitored:  # sue listens to alice's first call (her phone rings)
            c.monitor("acme", "alice", "sue", "listen", 3.5)
        phone_reinvite(c, self.to_alice, "1001", "sendonly", 10, 4.0)
        msgs = sent(c)
        [hold] = reinvites(msgs)  # mirrored to the caller
        assert hold.call_id == "c1" and b"a=sendonly" in hold.body
        answer_reinvites(c, msgs, 4.1)
        c.receive(invite("sip:1002@acme.example", "ext;domain=acme.example;user=1001",
                         call_id="consult", from_user="1001"), EDGE, 5.0)
        [self.to_bob] = [m for m in requests(sent(c), "INVITE") if m.uri.user == "1002"]
        answer(c, self.to_bob, 6.0, "1002")
        assert any(isinstance(m, Response) and m.status == 200 for m in sent(c))
        c.commands()
        self.call1 = next(x for x in c.calls.values() if x.contact)
        self.caller = next(x for x in self.call1.legs if x.role == "a")
        assert self.caller.direction == "sendonly"  # on hold, as the node mirrored it

    def conference(self, now: float = 7.0) -> tuple[AgentConference, list[Request | Response],
                                                    list[Any]]:
        conf = self.c.conference("acme", "alice", now)
        return conf, sent(self.c), self.c.commands()


def test_the_merge_mixes_all_three_hangs_up_the_consult_leg_and_resumes_the_caller(
        ) -> None:
    s = Consult()
    c = s.c
    conf, msgs, cmds = s.conference()
    alice, bob = conf.talker, conf.third
    assert conf.customer is s.caller and alice.call is s.call1 and alice.number == "1001"
    assert bob.number == "1002" and bob.call is not s.call1 and bob.state == "up"
    [mix] = [x for x in cmds if isinstance(x, MixMedia)]
    assert mix.pair == (s.caller.id, alice.id) and mix.supervisor == bob.id
    assert mix.agent == alice.id and mix.mode == "barge"  # all hear all
    # alice's consult leg leaves (after the mix took bob's media over); bob's stays
    [bye] = requests(msgs, "BYE")
    assert bye.call_id == "consult"
    consult_leg = next(x for x in bob.call.legs if x is not bob)
    assert consult_leg.state == "ended"
    closes = [n for n, x in enumerate(cmds) if isinstance(x, CloseMedia)
              and x.leg == consult_leg.id]
    assert closes and closes[0] > cmds.index(mix)
    [resume] = reinvites(msgs)  # the caller is taken off hold
    assert resume.call_id == "c1" and b"a=sendrecv" in resume.body
    assert c.conferences == {conf.id: conf} and cdrs(cmds) == []
    assert s.caller.conference is alice.conference is bob.conference is conf
    [started] = traces(cmds, "conference_started")
    assert started["agent"] == "alice" and started["third"] == "1002"
    answer_reinvites(c, msgs, 7.1)

    # alice resumes her held call: answered, nobody else re-INVITEd
    phone_reinvite(c, s.to_alice, "1001", "sendrecv", 11, 8.0)
    msgs, cmds = sent(c), c.commands()
    assert [m.status for m in msgs if isinstance(m, Response)] == [200]
    assert reinvites(msgs) == []
    assert [x.direction for x in cmds if isinstance(x, ConfigureMedia)
            and x.leg == alice.id] == ["sendrecv"]
    # holding again in the conference leaves the caller and bob talking
    phone_reinvite(c, s.to_alice, "1001", "sendonly", 12, 9.0)
    assert reinvites(sent(c)) == [] and s.caller.direction == "sendrecv"
    assert state(c, "alice", 9.0) == "talking"


def test_the_third_party_leaving_leaves_the_caller_and_the_agent_talking() -> None:
    s = Consult()
    c = s.c
    conf, _, _ = s.conference()
    alice, bob = conf.talker, conf.third
    callee_bye(c, s.to_bob, "1002", 10.0)
    msgs, cmds = sent(c), c.commands()
    [bridge] = [x for x in cmds if isinstance(x, BridgeMedia)]
    assert (bridge.a, bridge.b) == (s.caller.id, alice.id)  # the pair: its recording goes on
    # the bridge comes before bob's media closes, so the pair's recorder is handed back
    assert cmds.index(bridge) < next(n for n, x in enumerate(cmds)
                                     if isinstance(x, CloseMedia) and x.leg == bob.id)
    assert requests(msgs, "BYE") == []
    [cdr] = cdrs(cmds)  # the consult call ends (bob's leg was its last)
    assert cdr.callee == "1002" and cdr.hangup_side == "callee"
    assert s.caller.peer is alice and alice.peer is s.caller and c.conferences == {}
    assert s.caller.conference is None and alice.conference is None
    assert traces(cmds, "conference_left")[0]["role"] == "third"
    assert state(c, "alice", 10.0) == "talking"
    # an ordinary call again: the caller's hanging up ends it
    caller_hangs_up(c, 12.0)
    msgs, cmds = sent(c), c.commands()
    assert [m.call_id for m in requests(msgs, "BYE")] == [s.to_alice.call_id]
    [cdr] = cdrs(cmds)
    assert cdr.hangup_side == "caller" and c.calls == {}


def test_the_caller_leaving_leaves_the_agent_and_the_third_party_talking() -> None:
    s = Consult()
    c = s.c
    conf, _, _ = s.conference()
    alice, bob = conf.talker, conf.third
    caller_hangs_up(c, 10.0)
    msgs, cmds = sent(c), c.commands()
    [bridge] = [x for x in cmds if isinstance(x, BridgeMedia)]
    assert (bridge.a, bridge.b) == (alice.id, bob.id)  # across the two calls
    assert requests(msgs, "BYE") == [] and cdrs(cmds) == []
    assert alice.peer is bob and bob.peer is alice and c.conferences == {}
    assert state(c, "alice", 10.0) == "talking"  # her contact lasts while she talks
    # alice ends the call: bob is hung up, both calls end
    phone_bye(c, s.to_alice, "1001", 30, 12.0)
    msgs, cmds = sent(c), c.commands()
    assert [m.call_id for m in requests(msgs, "BYE")] == [s.to_bob.call_id]
    ended = {cdr.callee: cdr for cdr in cdrs(cmds)}
    assert set(ended) == {s.call1.callee, "1002"} and c.calls == {}
    # a party hung up, not the node (the side is the one alice's call ended with)
    assert ended["1002"].hangup_side == ended[s.call1.callee].hangup_side == "caller"
    assert state(c, "alice", 12.0) != "talking"


def test_the_agent_leaving_leaves_the_caller_with_the_third_party() -> None:
    s = Consult()
    c = s.c
    conf, _, _ = s.conference()
    alice, bob = conf.talker, conf.third
    phone_bye(c, s.to_alice, "1001", 30, 10.0)  # alice hangs up her call
    msgs, cmds = sent(c), c.commands()
    [bridge] = [x for x in cmds if isinstance(x, BridgeMedia)]
    assert (bridge.a, bridge.b) == (s.caller.id, bob.id)
    assert requests(msgs, "BYE") == [] and cdrs(cmds) == []
    assert s.caller.peer is bob and bob.peer is s.caller and alice.state == "ended"
    assert traces(cmds, "transferred") == [{"agent": "alice"}]  # her contact ended
    assert state(c, "alice", 10.0) in ("ready", "wrap_up")
    assert not s.call1.hangup_side  # her leaving the conference is nobody hanging up
    # bob hangs up: the caller is hung up, both calls end
    callee_bye(c, s.to_bob, "1002", 15.0)
    msgs, cmds = sent(c), c.commands()
    assert [m.call_id for m in requests(msgs, "BYE")] == ["c1"]
    assert {cdr.hangup_side for cdr in cdrs(cmds)} == {"callee"} and len(cdrs(cmds)) == 2
    assert c.calls == {}


def test_refusals() -> None:
    c, _ = talking()
    CORES.append(c)
    with pytest.raises(MonitorError) as one_call:
        c.conference("acme", "alice", 4.0)
    assert (one_call.value.status, one_call.value.code) == (409, "not_consulting")
    for tenant, agent, status in (("acme", "nobody", 404), ("globex", "alice", 404),
                                  ("acme", "bob", 409)):
        with pytest.raises(MonitorError) as refused:
            c.conference(tenant, agent, 4.0)
        assert refused.value.status == status, (tenant, agent)
    assert c.conferences == {} and not any(isinstance(x, MixMedia) for x in c.commands())

    s = Consult(monitored=True)  # a supervisor's phone rings for alice's call
    with pytest.raises(MonitorError) as monitored:
        s.c.conference("acme", "alice", 7.0)
    assert (monitored.value.status, monitored.value.code) == (409, "conflict")
    assert requests(sent(s.c), "BYE") == [] and s.c.conferences == {}

    s = Consult()  # a flow runs for alice's caller beside her
    s.c.set_plan(Plan.from_dict(assist_plan()), 6.5)
    job = s.c.assist("acme", "alice", "card", 6.6)
    assert job.other is s.caller and job.state == "running"
    with pytest.raises(MonitorError) as assisted:
        s.c.conference("acme", "alice", 7.0)
    assert (assisted.value.status, assisted.value.code) == (409, "conflict")
    assert s.c.conferences == {}


def test_no_monitoring_transfer_or_second_conference_during_a_conference() -> None:
    s = Consult()
    c = s.c
    conf, _, _ = s.conference()
    with pytest.raises(MonitorError) as monitor:
        c.monitor("acme", "alice", "sue", "listen", 8.0)
    assert (monitor.value.status, monitor.value.code) == (409, "conflict")
    with pytest.raises(MonitorError) as again:
        c.conference("acme", "alice", 8.0)  # her consult leg is gone: one call
    assert again.value.status == 409
    refer = (
        "REFER sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-refer-conf\r\n"
        "Max-Forwards: 69\r\n"
        f"From: <{s.to_alice.uri}>;tag=t1001\r\nTo: {s.to_alice.headers.get('From')}\r\n"
        f"Call-ID: {s.to_alice.call_id}\r\nCSeq: 20 REFER\r\n"
        "Contact: <sip:1001@127.0.0.3>\r\nRefer-To: <sip:1003@acme.example>\r\n"
        "Content-Length: 0\r\n\r\n").encode()
    c.receive(refer, EDGE, 9.0)
    assert [m.status for m in sent(c) if isinstance(m, Response)] == [403]
    assert c.conferences == {conf.id: conf}
    legs: list[Leg] = list(conf.legs)
    assert all(x.state == "up" and x.conference is conf for x in legs)
