"""Outbound calls placed by the node for a flow (R-4.2): caller number, ring timeout,
the flow running on the answered call, and what is refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import B2bua, PlayPrompts, TraceEvent, WriteCdr
from appliance.plan import Plan
from appliance.sip.message import Request, make_response, parse_message
from appliance.sip.sdp import make_offer
from tests.test_plan import DOC

EDGE = ("127.0.0.1", 5060)
NOTICE = {"flow": "notice", "version": 1, "start": "say",
          "nodes": {"say": {"type": "play", "prompt": {"tts": "Your order has shipped."}}}}


def core() -> B2bua:
    doc = copy.deepcopy(DOC)
    doc["tenants"][0]["flows"] = {"notice": NOTICE}
    return B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
                 media_ip="127.0.0.1", ports=PortPool(30000, 30100))


def sent_invite(c: B2bua) -> Request:
    [req] = [m for m in (parse_message(d) for d, _ in c.outgoing())
             if isinstance(m, Request) and m.method == "INVITE"]
    return req


def answer(c: B2bua, invite: Request, now: float) -> None:
    sdp = make_offer("127.0.0.9", 41000, session_id=5, version=1).to_bytes()
    resp = make_response(invite, 200, to_tag="far", body=sdp, content_type="application/sdp")
    resp.headers.add("Contact", "<sip:far@127.0.0.2:5070>")
    c.receive(resp.to_bytes(), EDGE, now)


def test_originate_presents_the_chosen_number_and_runs_the_flow_when_answered() -> None:
    c = core()
    call_id = c.originate("acme", "013800000000", "notice", 1.0,
                          caller_id="+862088880001", ring_seconds=20)
    invite = sent_invite(c)
    assert str(invite.uri).startswith("sip:+8613800000000@127.0.0.2")
    assert invite.from_.uri.user == "+862088880001"  # a DID of acme: allowed
    c.commands()
    answer(c, invite, 2.0)
    plays = [x for x in c.commands() if isinstance(x, PlayPrompts)]
    assert plays and plays[0].prompts[0] == {"tts": "Your order has shipped."}
    assert c.usage()["acme"] == {"calls": 1, "ivr_busy": 1, "pstn_calls": 1}
    c.playback_finished(plays[0].leg, 3.0)  # the flow ends: the node hangs up
    bye = [m for m in (parse_message(d) for d, _ in c.outgoing())
           if isinstance(m, Request) and m.method == "BYE"]
    assert len(bye) == 1
    c.receive(make_response(bye[0], 200).to_bytes(), EDGE, 3.1)
    cdr = next(x.cdr for x in c.commands() if isinstance(x, WriteCdr))
    assert (cdr.call_id, cdr.origin, cdr.caller, cdr.disposition) == (
        call_id, "flow:notice", "+862088880001", "answered")


def test_someone_elses_number_is_not_presented_and_ring_timeout_ends_the_call() -> None:
    c = core()
    c.originate("acme", "013800000000", "notice", 1.0, caller_id="+85230000001",
                ring_seconds=5)
    invite = sent_invite(c)
    assert invite.from_.uri.user == "+862088880000"  # globex's DID: refused, tenant's own
    c.receive(make_response(invite, 180, to_tag="far").to_bytes(), EDGE, 1.5)
    c.tick(5.9)
    assert not [m for m in (parse_message(d) for d, _ in c.outgoing())
                if isinstance(m, Request) and m.method == "CANCEL"]
    c.tick(6.1)
    cancel = [m for m in (parse_message(d) for d, _ in c.outgoing())
              if isinstance(m, Request) and m.method == "CANCEL"]
    assert len(cancel) == 1  # rang for ring_seconds, then given up
    c.receive(make_response(invite, 487, to_tag="far").to_bytes(), EDGE, 6.2)
    cmds: list[Any] = c.commands()
    cdr = next(x.cdr for x in cmds if isinstance(x, WriteCdr))
    assert cdr.disposition in ("no_answer", "cancelled") and c.active_calls == 0


@pytest.mark.parametrize("tenant,number,flow,error", [
    ("nobody", "1001", "notice", "unknown tenant"),
    ("acme", "1001", "missing", "no flow 'missing'"),
    ("acme", "700", "notice", "not an extension or an outside number"),
    ("globex", "1001", "notice", "no flow 'notice'"),  # another tenant's flow
])
def test_originate_refuses_what_it_cannot_do(tenant: str, number: str, flow: str,
                                             error: str) -> None:
    c = core()
    with pytest.raises(ValueError, match=error):
        c.originate(tenant, number, flow, 1.0)
    assert c.active_calls == 0 and c.outgoing() == []


def test_failed_originate_writes_its_cdr() -> None:
    c = core()
    c.originate("acme", "1002", "notice", 1.0)
    invite = sent_invite(c)
    assert invite.from_.uri.user == "+862088880000"
    c.receive(make_response(invite, 486, to_tag="x").to_bytes(), EDGE, 2.0)
    cdr = next(x.cdr for x in c.commands() if isinstance(x, WriteCdr))
    assert (cdr.disposition, cdr.sip_status) == ("busy", 486)


FALLBACK = {"flow": "fallback", "version": 1, "start": "sales", "nodes": {
    "sales": {"type": "transfer", "extension": "1002", "ring_timeout": 4,
              "on_failure": "sorry"},
    "sorry": {"type": "play", "prompt": {"tts": "Nobody is free."}}}}


def test_transfer_that_is_not_answered_returns_to_the_flow() -> None:
    from tests.pbx.test_b2bua import invite

    doc = copy.deepcopy(DOC)
    doc["tenants"][0]["flows"] = {"fallback": FALLBACK}
    doc["tenants"][0]["dids"].append({"number": "+862088880070", "target": "flow:fallback"})
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    out = [parse_message(d) for d, _ in c.outgoing()]
    [b_invite] = [m for m in out if isinstance(m, Request) and m.method == "INVITE"]
    assert b_invite.uri.user == "1002"
    c.commands()
    c.receive(make_response(b_invite, 486, to_tag="busy").to_bytes(), EDGE, 2.0)
    cmds = c.commands()
    plays = [x for x in cmds if isinstance(x, PlayPrompts)]
    assert plays and plays[-1].prompts[0] == {"tts": "Nobody is free."}
    assert c.active_calls == 1  # the caller is still with the flow
    failed = [dict(x.data) for x in cmds if isinstance(x, TraceEvent)
              and dict(x.data).get("step") == "transfer_failed"]
    assert [f["status"] for f in failed] == ["486"]


def test_ivr_ports_limit_per_tenant_and_node() -> None:
    from tests.pbx.test_b2bua import invite

    doc = copy.deepcopy(DOC)
    doc["node"]["ivr_ports"] = 2
    doc["tenants"][0]["flows"] = {"fallback": FALLBACK, "notice": NOTICE}
    doc["tenants"][0]["limits"] = {"ivr_ports": 1}
    doc["tenants"][0]["dids"].append({"number": "+862088880070", "target": "flow:notice"})
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier", call_id="a"),
              EDGE, 1.0)
    assert [m.status for m in (parse_message(d) for d, _ in c.outgoing())
            if not isinstance(m, Request)][-1] == 200
    assert c.usage()["acme"]["ivr_busy"] == 1
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier", call_id="b"),
              EDGE, 1.1)
    statuses = [m.status for m in (parse_message(d) for d, _ in c.outgoing())
                if not isinstance(m, Request)]
    assert statuses[-1] == 486  # acme holds its one IVR port
    with pytest.raises(ValueError, match="tenant IVR ports busy"):
        c.originate("acme", "1002", "notice", 1.2)
    assert c.active_calls == 1
