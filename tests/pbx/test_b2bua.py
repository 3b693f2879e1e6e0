"""The call-control core against hand-made SIP from the edge, with a fake clock."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import (
    B2bua,
    BridgeMedia,
    CloseMedia,
    ConfigureMedia,
    OpenMedia,
    PlayPrompts,
    SendDtmf,
    StartEcho,
    TraceEvent,
    WriteCdr,
)
from appliance.plan import Plan
from appliance.sip.message import Request, Response, parse_message
from appliance.sip.sdp import make_offer
from tests.test_plan import DOC

EDGE = ("127.0.0.1", 5060)
FS = ("127.0.0.1", 5080)


def core() -> B2bua:
    return B2bua(plan=Plan.from_dict(copy.deepcopy(DOC)), local_ip=FS[0], local_port=FS[1],
                 edge=EDGE, media_ip="127.0.0.1", ports=PortPool(30000, 30100),
                 wall_offset=1_700_000_000.0)


def invite(ruri: str, origin: str | None, *, call_id: str = "c1", body: bool = True,
           from_user: str = "+8613800000000") -> bytes:
    sdp = make_offer("127.0.0.9", 40000, session_id=1, version=1).to_bytes() if body else b""
    head = (
        f"INVITE {ruri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-edge-" + call_id + "\r\n"
        "Max-Forwards: 69\r\n"
        f"From: <sip:{from_user}@127.0.0.2>;tag=caller\r\n"
        f"To: <{ruri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:caller@127.0.0.2:5062>\r\n"
        "Record-Route: <sip:127.0.0.1:5060;lr>\r\n"
        + (f"X-BL-Origin: {origin}\r\n" if origin else "")
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(sdp)}\r\n\r\n"
    )
    return head.encode() + sdp


def responses(c: B2bua) -> list[Response]:
    return [m for m in (parse_message(d) for d, _ in c.outgoing()) if isinstance(m, Response)]


def drain(c: B2bua) -> tuple[list[Any], list[Any]]:
    msgs = [(parse_message(d), a) for d, a in c.outgoing()]
    return msgs, c.commands()


def test_unknown_number_gets_404_and_a_cdr() -> None:
    c = core()
    c.receive(invite("sip:+10000000@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    msgs, cmds = drain(c)
    assert [m.status for m, _ in msgs if isinstance(m, Response)] == [404]
    cdr = next(x.cdr for x in cmds if isinstance(x, WriteCdr))
    assert (cdr.disposition, cdr.sip_status, cdr.tenant_id) == ("not_found", 404, None)
    assert c.active_calls == 0


def test_calls_must_come_from_the_edge_with_a_known_origin() -> None:
    c = core()
    c.receive(invite("sip:1001@acme.example", "ext;domain=acme.example;user=1002"),
              ("127.0.0.1", 6000), 1.0)
    assert [r.status for r in responses(c)] == [403]
    # forged or unknown origins are refused too
    for i, origin in enumerate([None, "trunk;name=evil", "ext;domain=acme.example;user=9999",
                                "ext;domain=other.example;user=1001"]):
        c.receive(invite("sip:1001@acme.example", origin, call_id=f"f{i}"), EDGE, 1.0)
        assert [r.status for r in responses(c)] == [403], origin


def test_cross_tenant_extension_is_unreachable() -> None:
    c = core()
    # globex's 1001 dials 1002, which only exists in acme
    c.receive(invite("sip:1002@globex.example", "ext;domain=globex.example;user=1001"),
              EDGE, 1.0)
    msgs, cmds = drain(c)
    assert [m.status for m, _ in msgs if isinstance(m, Response)] == [404]
    cdr = next(x.cdr for x in cmds if isinstance(x, WriteCdr))
    assert cdr.tenant_id == "globex" and cdr.disposition == "not_found"
    assert not any(isinstance(m, Request) for m, _ in msgs)


def test_echo_answers_and_bye_writes_one_cdr() -> None:
    c = core()
    c.receive(invite("sip:95001@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    msgs, cmds = drain(c)
    ok = [m for m, _ in msgs if isinstance(m, Response) and m.status == 200]
    assert ok and b"m=audio" in ok[0].body
    assert any(isinstance(x, OpenMedia) for x in cmds)
    conf = next(x for x in cmds if isinstance(x, ConfigureMedia))
    assert conf.remote == ("127.0.0.9", 40000) and conf.codec == "PCMU"
    assert any(isinstance(x, StartEcho) for x in cmds)
    to_tag = ok[0].to.tag
    bye = (
        "BYE sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-bye1\r\n"
        "Max-Forwards: 69\r\n"
        "From: <sip:+8613800000000@127.0.0.2>;tag=caller\r\n"
        f"To: <sip:95001@127.0.0.1>;tag={to_tag}\r\n"
        "Call-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    c.receive(bye, EDGE, 4.5)
    msgs, cmds = drain(c)
    assert [m.status for m, _ in msgs if isinstance(m, Response)] == [200]
    cdrs = [x.cdr for x in cmds if isinstance(x, WriteCdr)]
    assert len(cdrs) == 1
    cdr = cdrs[0]
    assert (cdr.disposition, cdr.hangup_side, cdr.destination, cdr.duration) == (
        "answered", "caller", "service:echo", 3.5)
    assert cdr.tenant_id == "acme" and cdr.codec == "PCMU"
    assert any(isinstance(x, CloseMedia) for x in cmds)
    # a retransmitted BYE is absorbed by the transaction layer; no second CDR
    c.receive(bye, EDGE, 4.6)
    _, cmds = drain(c)
    assert not any(isinstance(x, WriteCdr) for x in cmds)


def test_trunk_call_to_extension_places_b_leg_and_bridges_on_answer() -> None:
    c = core()
    c.receive(invite("sip:+862088880001@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    msgs, _ = drain(c)
    out = [(m, a) for m, a in msgs if isinstance(m, Request)]
    assert len(out) == 1
    b_invite, dest = out[0]
    assert dest == EDGE and str(b_invite.uri) == "sip:1001@acme.example"
    assert b_invite.from_.uri.user == "+8613800000000"
    # the phone answers through the edge
    answer = make_offer("127.0.0.8", 41000, session_id=2, version=1).to_bytes()
    resp = (
        "SIP/2.0 200 OK\r\n"
        f"Via: {b_invite.headers.get('Via')}\r\n"
        f"From: {b_invite.headers.get('From')}\r\n"
        f"To: {b_invite.headers.get('To')};tag=phone\r\n"
        f"Call-ID: {b_invite.call_id}\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:1001@127.0.0.1:7000>\r\n"
        "Record-Route: <sip:127.0.0.1:5060;lr>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(answer)}\r\n\r\n"
    ).encode() + answer
    c.receive(resp, EDGE, 2.0)
    msgs, cmds = drain(c)
    acks = [m for m, _ in msgs if isinstance(m, Request) and m.method == "ACK"]
    oks = [m for m, _ in msgs if isinstance(m, Response) and m.status == 200]
    assert len(acks) == 1 and len(oks) == 1
    assert any(isinstance(x, BridgeMedia) for x in cmds)
    assert any(isinstance(x, TraceEvent) and x.kind == "answered" for x in cmds)

    # SIP INFO DTMF from the phone is reported once and relayed to the caller as RFC 4733
    info_body = b"Signal=5\r\nDuration=160\r\n"
    info = (
        "INFO sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-info1\r\n"
        "Max-Forwards: 69\r\n"
        f"From: {b_invite.headers.get('To')};tag=phone\r\n"
        f"To: {b_invite.headers.get('From')}\r\n"
        f"Call-ID: {b_invite.call_id}\r\nCSeq: 5 INFO\r\n"
        "Content-Type: application/dtmf-relay\r\n"
        f"Content-Length: {len(info_body)}\r\n\r\n"
    ).encode() + info_body
    c.receive(info, EDGE, 3.0)
    c.receive(info, EDGE, 3.1)  # retransmission
    msgs, cmds = drain(c)
    assert [m.status for m, _ in msgs if isinstance(m, Response)] == [200, 200]
    dtmf = [x for x in cmds if isinstance(x, TraceEvent) and x.kind == "dtmf"]
    assert len(dtmf) == 1 and dict(dtmf[0].data)["digit"] == "5"
    assert [x.digit for x in cmds if isinstance(x, SendDtmf)] == ["5"]


def test_no_sdp_offer_gets_488() -> None:
    c = core()
    c.receive(invite("sip:95001@127.0.0.1", "trunk;name=carrier", body=False), EDGE, 1.0)
    assert [r.status for r in responses(c)] == [488]


def test_a_bug_in_call_control_answers_500_and_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = core()

    def broken(*_: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(Plan, "route", broken)
    c.receive(invite("sip:95001@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    assert [r.status for r in responses(c)] == [500]
    assert len(c.errors) == 1 and isinstance(c.errors[0], KeyError)
    options = (
        b"OPTIONS sip:127.0.0.1:5080 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-opt\r\nMax-Forwards: 70\r\n"
        b"From: <sip:x@127.0.0.1>;tag=o\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    c.receive(options, EDGE, 2.0)
    assert [r.status for r in responses(c)] == [200]


def test_media_failure_releases_the_call_with_503() -> None:
    c = core()
    c.receive(invite("sip:+862088880001@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    msgs, cmds = drain(c)
    b_invite = next(m for m, _ in msgs if isinstance(m, Request))
    a_leg = next(x.leg for x in cmds if isinstance(x, OpenMedia))
    c.media_failed(a_leg, 1.1)
    msgs, cmds = drain(c)
    assert [m.status for m, _ in msgs if isinstance(m, Response)] == [503]
    # the B leg's CANCEL waits for its first provisional response (RFC 3261 9.1)
    assert not any(isinstance(m, Request) for m, _ in msgs) and c.active_calls == 1

    def reply(status: str) -> bytes:
        return (
            f"SIP/2.0 {status}\r\n"
            f"Via: {b_invite.headers.get('Via')}\r\n"
            f"From: {b_invite.headers.get('From')}\r\n"
            f"To: {b_invite.headers.get('To')};tag=phone\r\n"
            f"Call-ID: {b_invite.call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    c.receive(reply("180 Ringing"), EDGE, 1.2)
    msgs, _ = drain(c)
    assert [m.method for m, _ in msgs if isinstance(m, Request)] == ["CANCEL"]
    c.receive(reply("487 Request Terminated"), EDGE, 1.3)
    _, cmds = drain(c)
    [cdr] = [x.cdr for x in cmds if isinstance(x, WriteCdr)]
    assert (cdr.sip_status, cdr.disposition) == (503, "failed") and c.active_calls == 0


def answered(c: B2bua) -> tuple[Request, Response]:
    """A trunk call to 1001, answered by the phone: (our INVITE to 1001, our 200 to A)."""
    c.receive(invite("sip:+862088880001@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    msgs, _ = drain(c)
    b_invite = next(m for m, _ in msgs if isinstance(m, Request))
    answer = make_offer("127.0.0.8", 41000, session_id=2, version=1).to_bytes()
    c.receive((
        "SIP/2.0 200 OK\r\n"
        f"Via: {b_invite.headers.get('Via')}\r\nFrom: {b_invite.headers.get('From')}\r\n"
        f"To: {b_invite.headers.get('To')};tag=phone\r\nCall-ID: {b_invite.call_id}\r\n"
        "CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
        "Contact: <sip:1001@127.0.0.1:7000>\r\nRecord-Route: <sip:127.0.0.1:5060;lr>\r\n"
        f"Content-Length: {len(answer)}\r\n\r\n").encode() + answer, EDGE, 2.0)
    msgs, _ = drain(c)
    ok = next(m for m, _ in msgs if isinstance(m, Response) and m.status == 200)
    return b_invite, ok


def reinvite_from_caller(ok: Response, cseq: int, direction: str) -> bytes:
    sdp = make_offer("127.0.0.9", 40000, direction=direction, session_id=1,
                     version=cseq).to_bytes()
    return (
        "INVITE sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-re{cseq}\r\nMax-Forwards: 69\r\n"
        "From: <sip:+8613800000000@127.0.0.2>;tag=caller\r\n"
        f"To: {ok.headers.get('To')}\r\nCall-ID: c1\r\nCSeq: {cseq} INVITE\r\n"
        "Contact: <sip:caller@127.0.0.2:5062>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp


def test_hold_then_quick_resume_reaches_the_other_side_in_order() -> None:
    """A resume that arrives while our hold re-INVITE to the other side is still in
    flight is sent once that one completes (regression: it used to be lost)."""
    c = core()
    _, ok = answered(c)
    c.receive(reinvite_from_caller(ok, 2, "sendonly"), EDGE, 3.0)
    msgs, cmds = drain(c)
    hold = [m for m, _ in msgs if isinstance(m, Request) and m.method == "INVITE"]
    assert len(hold) == 1 and b"a=sendonly" in hold[0].body
    conf = [x for x in cmds if isinstance(x, ConfigureMedia)]
    assert conf and conf[-1].direction == "recvonly"  # nothing is sent towards the holder
    c.receive(reinvite_from_caller(ok, 3, "sendrecv"), EDGE, 3.01)
    msgs, _ = drain(c)
    assert not [m for m, _ in msgs if isinstance(m, Request) and m.method == "INVITE"]
    # the phone answers the hold; the resume follows
    answer = make_offer("127.0.0.8", 41000, direction="recvonly", session_id=2,
                        version=2).to_bytes()
    h = hold[0]
    c.receive((
        "SIP/2.0 200 OK\r\n"
        f"Via: {h.headers.get('Via')}\r\nFrom: {h.headers.get('From')}\r\n"
        f"To: {h.headers.get('To')}\r\nCall-ID: {h.call_id}\r\nCSeq: {h.headers.get('CSeq')}\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(answer)}\r\n\r\n").encode() + answer, EDGE, 3.02)
    msgs, _ = drain(c)
    methods = [m.method for m, _ in msgs if isinstance(m, Request)]
    assert methods == ["ACK", "INVITE"]
    resume = next(m for m, _ in msgs if isinstance(m, Request) and m.method == "INVITE")
    assert b"a=sendrecv" in resume.body


def test_usage_counts_calls_and_ivr_ports_per_tenant() -> None:
    doc = copy.deepcopy(DOC)
    doc["tenants"][0]["flows"] = {"f": {"flow": "f", "version": 1, "start": "m", "nodes": {
        "m": {"type": "menu", "prompt": "Press 1", "options": {"1": "m"}}}}}
    doc["tenants"][0]["dids"].append({"number": "+862088880077", "target": "flow:f"})
    c = B2bua(plan=Plan.from_dict(doc), local_ip=FS[0], local_port=FS[1], edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:+862088880077@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    c.receive(invite("sip:+862088880001@127.0.0.1", "trunk;name=carrier", call_id="c2"),
              EDGE, 1.0)
    assert c.usage() == {"acme": {"calls": 2, "ivr_busy": 1, "pstn_calls": 2}}
    assert any(isinstance(x, PlayPrompts) for x in c.commands())


def test_answer_after_cancel_is_acked_and_released_once() -> None:
    """The callee's 200 crosses the caller's CANCEL: we ACK and BYE it, and its RTP
    port goes back to the pool exactly once (it may already serve another call)."""
    c = core()
    total = c.ports.available
    c.receive(invite("sip:+862088880001@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    msgs, _ = drain(c)
    b_invite = next(m for m, _ in msgs if isinstance(m, Request))
    cancel = (
        b"CANCEL sip:+862088880001@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-edge-c1\r\nMax-Forwards: 69\r\n"
        b"From: <sip:+8613800000000@127.0.0.2>;tag=caller\r\n"
        b"To: <sip:+862088880001@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 CANCEL\r\n"
        b"Content-Length: 0\r\n\r\n")
    c.receive(cancel, EDGE, 1.1)
    msgs, _ = drain(c)
    assert sorted(m.status for m, _ in msgs if isinstance(m, Response)) == [200, 487]
    # no provisional yet, so our CANCEL towards the phone waits; the phone answers
    answer = make_offer("127.0.0.8", 41000, session_id=2, version=1).to_bytes()
    c.receive((
        "SIP/2.0 200 OK\r\n"
        f"Via: {b_invite.headers.get('Via')}\r\nFrom: {b_invite.headers.get('From')}\r\n"
        f"To: {b_invite.headers.get('To')};tag=phone\r\nCall-ID: {b_invite.call_id}\r\n"
        "CSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.1:7000>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(answer)}\r\n\r\n").encode() + answer, EDGE, 1.2)
    msgs, cmds = drain(c)
    assert [m.method for m, _ in msgs if isinstance(m, Request)] == ["ACK", "BYE"]
    [cdr] = [x.cdr for x in cmds if isinstance(x, WriteCdr)]
    assert cdr.disposition == "cancelled" and cdr.answer is None
    assert c.ports.available == total and c.active_calls == 0


def test_a_bug_mid_setup_releases_what_the_call_held(monkeypatch: pytest.MonkeyPatch) -> None:
    import appliance.pbx.b2bua as b2bua

    c = core()
    total = c.ports.available

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("bug after the media port was taken")

    monkeypatch.setattr(b2bua, "make_offer", broken)  # fails while placing the B leg
    c.receive(invite("sip:+862088880001@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    msgs, cmds = drain(c)
    assert [m.status for m, _ in msgs if isinstance(m, Response)] == [500]
    assert c.active_calls == 0 and c.ports.available == total
    [cdr] = [x.cdr for x in cmds if isinstance(x, WriteCdr)]
    assert (cdr.sip_status, cdr.disposition) == (500, "failed")
    opened = {x.leg for x in cmds if isinstance(x, OpenMedia)}
    assert opened == {x.leg for x in cmds if isinstance(x, CloseMedia)}
