"""Tenancy in the call control: a suspended tenant's new calls and calls over the
tenant's PSTN quota get the plan's treatments; calls in progress and other tenants
are left alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import B2bua, CallRefused, PlayPrompts, StartEcho, TraceEvent, WriteCdr
from appliance.plan import Plan
from appliance.sip.message import Request, Response, make_response, parse_message
from appliance.sip.sdp import make_offer
from tests.pbx.test_b2bua import invite
from tests.test_plan import DOC

EDGE = ("127.0.0.1", 5060)
TRUNK = "trunk;name=carrier"
ACME_1001 = "ext;domain=acme.example;user=1001"
ACME_ECHO = "sip:95001@127.0.0.1"  # a DID of acme answered by the echo service
GLOBEX_DID = "sip:+85230000001@127.0.0.1"  # globex's 1001
NOTICE = {"flow": "notice", "version": 1, "start": "say",
          "nodes": {"say": {"type": "play", "prompt": {"tts": "Your order has shipped."}}}}


def plan_doc(**acme: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    doc["tenants"][0]["flows"] = {"notice": NOTICE}
    doc["tenants"][0].update(acme)
    return doc


def core(**acme: Any) -> B2bua:
    return B2bua(plan=Plan.from_dict(plan_doc(**acme)), local_ip="127.0.0.1",
                 local_port=5080, edge=EDGE, media_ip="127.0.0.1",
                 ports=PortPool(30000, 30100))


def final_statuses(c: B2bua) -> list[int]:
    return [m.status for m in (parse_message(d) for d, _ in c.outgoing())
            if isinstance(m, Response) and m.status >= 200]


def sent(c: B2bua) -> list[Request]:
    return [m for m in (parse_message(d) for d, _ in c.outgoing()) if isinstance(m, Request)]


def traces(cmds: list[Any], kind: str) -> list[dict[str, str]]:
    return [dict(x.data) for x in cmds if isinstance(x, TraceEvent) and x.kind == kind]


def answered_by_phone(c: B2bua, b_invite: Request, now: float) -> None:
    sdp = make_offer("127.0.0.8", 41000, session_id=2, version=1).to_bytes()
    ok = make_response(b_invite, 200, to_tag="phone", body=sdp, content_type="application/sdp")
    ok.headers.add("Contact", "<sip:1002@127.0.0.1:7000>")
    ok.headers.add("Record-Route", "<sip:127.0.0.1:5060;lr>")
    c.receive(ok.to_bytes(), EDGE, now)


def bye_to_a(ok: Response, call_id: str, cseq: int = 2) -> bytes:
    """The caller hangs up an A leg we answered with ``ok``."""
    return (
        "BYE sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-bye-{call_id}\r\n"
        "Max-Forwards: 69\r\n"
        f"From: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n").encode()


def call_in(c: B2bua, ruri: str, call_id: str, now: float, origin: str = TRUNK
            ) -> list[Any]:
    """A new call through the edge; the messages the core sent back."""
    c.receive(invite(ruri, origin, call_id=call_id), EDGE, now)
    return [parse_message(d) for d, _ in c.outgoing()]


# --------------------------------------------------------------------------- suspension
def test_suspended_tenant_new_calls_get_the_default_rejection_others_pass() -> None:
    c = core(status="suspended")
    assert [m.status for m in call_in(c, "sip:+862088880001@127.0.0.1", "t1", 1.0)
            if isinstance(m, Response)] == [503]
    cmds = c.commands()
    assert traces(cmds, "tenant_suspended") == [{"treatment": "reject 503"}]
    [cdr] = [x.cdr for x in cmds if isinstance(x, WriteCdr)]
    assert (cdr.tenant_id, cdr.destination, cdr.sip_status, cdr.disposition) == (
        "acme", "treatment:suspended", 503, "failed")
    # its extensions cannot call either, not even inside the tenant; no leg is placed
    msgs = call_in(c, "sip:1002@acme.example", "e1", 1.1, origin=ACME_1001)
    assert [m.status for m in msgs if isinstance(m, Response)] == [503]
    assert not [m for m in msgs if isinstance(m, Request)]
    # globex is served as usual
    msgs = call_in(c, GLOBEX_DID, "g1", 1.2)
    [b] = [m for m in msgs if isinstance(m, Request)]
    assert str(b.uri) == "sip:1001@globex.example"
    assert c.usage() == {"globex": {"calls": 1, "ivr_busy": 0, "pstn_calls": 1}}


def test_suspended_with_an_announcement_answers_plays_and_hangs_up() -> None:
    c = core(status="suspended", treatments={
        "suspended": {"announcement": "This service is suspended.", "voice": "yue"}})
    msgs = call_in(c, "sip:+862088880001@127.0.0.1", "t1", 1.0)
    ok = next(m for m in msgs if isinstance(m, Response) and m.status == 200)
    assert b"m=audio" in ok.body
    assert not [m for m in msgs if isinstance(m, Request)]  # 1001 is never called
    cmds = c.commands()
    [play] = [x for x in cmds if isinstance(x, PlayPrompts)]
    assert (play.prompts, play.language, play.tenant_id) == (
        ({"tts": "This service is suspended."},), "yue", "acme")
    assert traces(cmds, "tenant_suspended") == [{"treatment": "announcement"}]
    assert c.usage()["acme"]["pstn_calls"] == 0  # a treated call is no PSTN call
    c.playback_finished(play.leg, 4.0)
    [bye] = [m for m in sent(c) if m.method == "BYE"]
    c.receive(make_response(bye, 200).to_bytes(), EDGE, 4.1)
    [cdr] = [x.cdr for x in c.commands() if isinstance(x, WriteCdr)]
    assert (cdr.destination, cdr.disposition, cdr.hangup_side) == (
        "treatment:suspended", "answered", "node")


def test_calls_in_progress_survive_a_suspension_and_resume_restores_service() -> None:
    c = core()
    msgs = call_in(c, ACME_ECHO, "t1", 1.0)
    ok = next(m for m in msgs if isinstance(m, Response) and m.status == 200)
    c.set_plan(Plan.from_dict(plan_doc(status="suspended")))
    assert c.active_calls == 1
    assert final_statuses(c) == []  # nothing was sent to the call in progress
    c.receive(bye_to_a(ok, "t1"), EDGE, 5.0)
    assert final_statuses(c) == [200]
    [cdr] = [x.cdr for x in c.commands() if isinstance(x, WriteCdr)]
    assert (cdr.disposition, cdr.destination) == ("answered", "service:echo")
    assert [m.status for m in call_in(c, ACME_ECHO, "t2", 6.0)
            if isinstance(m, Response)] == [503]
    c.set_plan(Plan.from_dict(plan_doc()))  # resumed
    assert [m.status for m in call_in(c, ACME_ECHO, "t3", 7.0)
            if isinstance(m, Response)] == [200]


def test_suspended_tenant_cannot_originate() -> None:
    c = core(status="suspended")
    with pytest.raises(CallRefused) as err:
        c.originate("acme", "1002", "notice", 1.0)
    assert err.value.reason == "tenant_suspended"
    assert c.active_calls == 0 and sent(c) == []


# --------------------------------------------------------------------------- PSTN calls
def test_pstn_calls_over_the_limit_get_the_over_quota_treatment() -> None:
    c = core(limits={"pstn_calls": 2})
    oks = {}
    for call_id in ("p1", "p2"):
        msgs = call_in(c, ACME_ECHO, call_id, 1.0)
        oks[call_id] = next(m for m in msgs if isinstance(m, Response) and m.status == 200)
    assert c.usage()["acme"] == {"calls": 2, "ivr_busy": 0, "pstn_calls": 2}
    c.commands()
    # the third, from the trunk: refused with the default 486
    assert [m.status for m in call_in(c, ACME_ECHO, "p3", 1.1)
            if isinstance(m, Response)] == [486]
    cmds = c.commands()
    assert traces(cmds, "quota_exceeded") == [{"quota": "pstn_calls", "limit": "2",
                                               "in_use": "2", "treatment": "reject 486"}]
    [cdr] = [x.cdr for x in cmds if isinstance(x, WriteCdr)]
    assert (cdr.destination, cdr.disposition) == ("treatment:over_quota", "busy")
    # an extension dialling out is a PSTN call too: refused, nothing goes to the trunk
    msgs = call_in(c, "sip:013800000000@acme.example", "x1", 1.2, origin=ACME_1001)
    assert [m.status for m in msgs if isinstance(m, Response)] == [486]
    assert not [m for m in msgs if isinstance(m, Request)]
    # calls inside the tenant are no PSTN calls; globex has its own count
    msgs = call_in(c, "sip:1002@acme.example", "x2", 1.3, origin=ACME_1001)
    assert [str(m.uri) for m in msgs if isinstance(m, Request)] == ["sip:1002@acme.example"]
    msgs = call_in(c, GLOBEX_DID, "g1", 1.4)
    assert [str(m.uri) for m in msgs if isinstance(m, Request)] == ["sip:1001@globex.example"]
    assert c.usage()["acme"] == {"calls": 3, "ivr_busy": 0, "pstn_calls": 2}
    # one PSTN call ends: the next one passes
    c.receive(bye_to_a(oks["p1"], "p1"), EDGE, 2.0)
    c.outgoing()
    c.commands()
    assert [m.status for m in call_in(c, ACME_ECHO, "p4", 2.1)
            if isinstance(m, Response)] == [200]
    assert any(isinstance(x, StartEcho) for x in c.commands())
    assert c.usage()["acme"]["pstn_calls"] == 2


def test_outbound_calls_count_and_are_refused_over_the_limit() -> None:
    c = core(limits={"pstn_calls": 1}, treatments={
        "over_quota": {"announcement": "All lines are busy."}})
    msgs = call_in(c, "sip:013800000000@acme.example", "x1", 1.0, origin=ACME_1001)
    [out] = [m for m in msgs if isinstance(m, Request)]
    assert str(out.uri).startswith("sip:+8613800000000@127.0.0.2")
    assert c.usage()["acme"]["pstn_calls"] == 1  # ringing out already holds the line
    with pytest.raises(CallRefused) as err:
        c.originate("acme", "013800000001", "notice", 1.1)
    assert err.value.reason == "quota_exceeded" and "pstn_calls 1" in str(err.value)
    c.originate("acme", "1002", "notice", 1.2)  # an extension: no PSTN call
    c.commands()
    # a trunk call in gets the announcement, and is not counted while it plays
    msgs = call_in(c, ACME_ECHO, "p1", 1.3)
    assert [m.status for m in msgs if isinstance(m, Response)][-1] == 200
    cmds = c.commands()
    [play] = [x for x in cmds if isinstance(x, PlayPrompts)]
    assert play.prompts == ({"tts": "All lines are busy."},) and play.language == "en-us"
    assert not any(isinstance(x, StartEcho) for x in cmds)
    assert traces(cmds, "quota_exceeded")[0]["treatment"] == "announcement"
    assert c.usage()["acme"] == {"calls": 3, "ivr_busy": 0, "pstn_calls": 1}


def test_a_transfer_that_would_start_a_pstn_call_over_the_limit_is_refused() -> None:
    c = core(limits={"pstn_calls": 1})
    call_in(c, ACME_ECHO, "p1", 1.0)  # the tenant's one PSTN call
    msgs = call_in(c, "sip:1002@acme.example", "x1", 1.1, origin=ACME_1001)
    [b] = [m for m in msgs if isinstance(m, Request)]
    answered_by_phone(c, b, 1.2)
    ok = next(m for m in (parse_message(d) for d, _ in c.outgoing())
              if isinstance(m, Response) and m.status == 200)
    refer = (
        "REFER sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-refer1\r\nMax-Forwards: 69\r\n"
        f"From: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        "Call-ID: x1\r\nCSeq: 2 REFER\r\nContact: <sip:1001@127.0.0.3>\r\n"
        "Refer-To: <sip:013800000000@acme.example>\r\nContent-Length: 0\r\n\r\n").encode()
    c.commands()
    c.receive(refer, EDGE, 2.0)
    assert final_statuses(c) == [486]
    assert traces(c.commands(), "quota_exceeded")[0]["treatment"] == "transfer refused 486"
    assert c.usage()["acme"] == {"calls": 2, "ivr_busy": 0, "pstn_calls": 1}


def test_a_flow_transfer_out_over_the_limit_takes_the_flows_failure_path() -> None:
    flow = {"flow": "out", "version": 1, "start": "go", "nodes": {
        "go": {"type": "transfer", "number": "013800000000", "on_failure": "sorry"},
        "sorry": {"type": "play", "prompt": {"tts": "No line is free."}}}}
    doc = plan_doc(limits={"pstn_calls": 1})
    doc["tenants"][0]["flows"]["out"] = flow
    doc["tenants"][0]["dids"].append({"number": "+862088880070", "target": "flow:out"})
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    call_in(c, ACME_ECHO, "p1", 1.0)
    # 1001 dials the tenant's own DID: the flow runs on a call that is no PSTN call yet
    msgs = call_in(c, "sip:+862088880070@acme.example", "x1", 1.1, origin=ACME_1001)
    assert not [m for m in msgs if isinstance(m, Request)]
    cmds = c.commands()
    assert traces(cmds, "quota_exceeded")[0]["treatment"] == "transfer failed 486"
    plays = [x for x in cmds if isinstance(x, PlayPrompts)]
    assert plays[-1].prompts[0] == {"tts": "No line is free."}
    # a trunk caller of the same flow already holds its PSTN line: it may go out
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    msgs = call_in(c, "sip:+862088880070@127.0.0.1", "t1", 1.0)
    assert [str(m.uri).split(";")[0] for m in msgs if isinstance(m, Request)] == [
        "sip:+8613800000000@127.0.0.2:5070"]
    assert c.usage()["acme"]["pstn_calls"] == 1
