"""A supervisor monitoring an agent's queue call (listen, whisper, barge): the node rings
the supervisor's extension, mixes the three legs once answered, changes the mode, and
leaves the caller and the agent talking when the supervisor hangs up."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import (
    B2bua,
    BridgeMedia,
    CloseMedia,
    MixMedia,
    MonitorError,
    WriteCdr,
)
from appliance.plan import Plan, PlanError
from appliance.sip.message import Request, parse_message
from tests.pbx.test_b2bua import invite
from tests.pbx.test_ivr_transfers import EDGE, answer, caller_hangs_up, invites, plan_doc


def monitor_plan() -> dict[str, Any]:
    doc = plan_doc({"queue": "sales"})
    acme = doc["tenants"][0]
    acme["extensions"].append({"number": "1003", "password": "password-3"})
    acme["agents"].append({"id": "sue", "extension": "1003", "supervisor": True})
    return doc


def talking() -> tuple[B2bua, Request]:
    """A carrier call in acme's sales queue, answered by alice (extension 1001)."""
    c = B2bua(plan=Plan.from_dict(monitor_plan()), local_ip="127.0.0.1", local_port=5080,
              edge=EDGE, media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    c.agent_action("acme", lambda acd: acd.login("alice", 2.0, ready=True), 2.0)
    [to_alice] = invites(c)
    answer(c, to_alice, 3.0, "1001")
    assert any(isinstance(x, BridgeMedia) for x in c.commands())
    return c, to_alice


def callee_bye(c: B2bua, inv: Request, user: str, now: float) -> None:
    """The party the node called (``inv``) hangs up."""
    bye = (
        f"BYE sip:b2bua@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-bye-{user}\r\n"
        "Max-Forwards: 69\r\n"
        f"From: <{inv.uri}>;tag=t{user}\r\n"
        f"To: {inv.headers.get('From')}\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    c.receive(bye, EDGE, now)


def test_a_supervisor_listens_whispers_barges_and_leaves_the_pair_talking() -> None:
    c, _ = talking()
    mon = c.monitor("acme", "alice", "sue", "listen", 4.0)
    [to_sue] = invites(c)
    assert to_sue.uri.user == "1003"
    assert "monitor=listen" in (to_sue.headers.get("X-BL-Data") or "")
    assert not any(isinstance(x, MixMedia) for x in c.commands())  # not before she answers
    answer(c, to_sue, 5.0, "1003")
    [mix] = [x for x in c.commands() if isinstance(x, MixMedia)]
    call = mon.talker.call
    caller = next(x for x in call.legs if x.role == "a")
    assert mix.pair == (caller.id, mon.talker.id) and mix.agent == mon.talker.id
    assert mix.supervisor == mon.leg.id and mix.mode == "listen"
    assert mon.state == "active" and c.monitors == {mon.id: mon}

    c.set_monitor_mode(mon.id, "barge", 6.0)
    [mix] = [x for x in c.commands() if isinstance(x, MixMedia)]
    assert mix.mode == "barge"
    with pytest.raises(MonitorError) as bad:
        c.set_monitor_mode(mon.id, "shout", 6.5)
    assert bad.value.status == 400

    callee_bye(c, to_sue, "1003", 7.0)  # the supervisor hangs up
    out = c.commands()
    [again] = [x for x in out if isinstance(x, BridgeMedia)]
    assert (again.a, again.b) == (caller.id, mon.talker.id)
    assert c.monitors == {} and caller.state == "up" and mon.talker.state == "up"
    assert not any(isinstance(x, WriteCdr) for x in out)  # the call goes on

    caller_hangs_up(c, 9.0)
    [cdr] = [x.cdr for x in c.commands() if isinstance(x, WriteCdr)]
    assert cdr.hangup_side == "caller"  # the supervisor's leaving did not count


def test_the_call_ending_hangs_up_the_supervisor() -> None:
    c, _ = talking()
    mon = c.monitor("acme", "alice", "sue", "whisper", 4.0)
    [to_sue] = invites(c)
    answer(c, to_sue, 5.0, "1003")
    c.commands()
    caller_hangs_up(c, 6.0)
    sent = [m for m in (parse_message(d) for d, _ in c.outgoing()) if isinstance(m, Request)]
    byes = {m.uri.user or m.call_id for m in sent if m.method == "BYE"}
    assert mon.leg.state == "ended" and c.monitors == {}
    assert len(byes) == 2  # to alice and to sue
    assert any(isinstance(x, WriteCdr) for x in c.commands())


def test_a_supervisor_who_does_not_answer_changes_nothing() -> None:
    c, _ = talking()
    mon = c.monitor("acme", "alice", "sue", "listen", 4.0)
    [to_sue] = invites(c)
    c.tick(4.0 + 21.0)  # her phone rings out (20 s), CANCEL then 487
    from appliance.sip.message import make_response
    c.receive(make_response(to_sue, 487, to_tag="tsue").to_bytes(), EDGE, 25.5)
    out = c.commands()
    assert not any(isinstance(x, BridgeMedia | MixMedia) for x in out)
    assert c.monitors == {} and mon.talker.state == "up"
    # and she may try again
    assert c.monitor("acme", "alice", "sue", "barge", 26.0).mode == "barge"


@pytest.mark.parametrize(("tenant", "agent", "supervisor", "status", "code"), [
    ("acme", "alice", "bob", 403, "forbidden"),  # bob is no supervisor
    ("globex", "alice", "sue", 403, "forbidden"),  # another tenant's supervisor: nobody
    ("acme", "nobody", "sue", 404, "not_found"),
    ("acme", "bob", "sue", 409, "agent_not_talking"),
])
def test_refused_monitoring(tenant: str, agent: str, supervisor: str, status: int,
                            code: str) -> None:
    c, _ = talking()
    with pytest.raises(MonitorError) as refused:
        c.monitor(tenant, agent, supervisor, "listen", 4.0)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert invites(c) == [] and c.monitors == {}


def test_one_monitoring_per_call_and_supervisor_flag_validated() -> None:
    c, _ = talking()
    c.monitor("acme", "alice", "sue", "listen", 4.0)
    with pytest.raises(MonitorError) as twice:
        c.monitor("acme", "alice", "sue", "listen", 4.5)
    assert twice.value.code == "already_monitored"
    doc = monitor_plan()
    doc["tenants"][0]["agents"][2]["supervisor"] = "yes"
    with pytest.raises(PlanError) as bad:
        Plan.from_dict(doc)
    assert bad.value.path == "tenants[0].agents[2].supervisor"


def test_the_pair_is_bridged_again_before_the_supervisors_media_closes() -> None:
    """So the media plane hands the pair's recorder from the mix back to their bridge
    (closing the supervisor's media first would end the mix and its recording)."""
    c, _ = talking()
    mon = c.monitor("acme", "alice", "sue", "listen", 4.0)
    [to_sue] = invites(c)
    answer(c, to_sue, 5.0, "1003")
    c.commands()
    callee_bye(c, to_sue, "1003", 6.0)
    out = [x for x in c.commands() if isinstance(x, BridgeMedia | CloseMedia)]
    assert [type(x).__name__ for x in out] == ["BridgeMedia", "CloseMedia"]
    assert out[1].leg == mon.leg.id  # type: ignore[union-attr]
