"""Agent-assisted IVR (R-4.8): a flow of the tenant runs for the customer of an agent's
call while the agent stays on it (both hear the prompts, either one's keys answer), and
the customer is handed back to the agent with the flow's results when it ends."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import (
    AssistMedia,
    B2bua,
    BridgeMedia,
    Leg,
    MonitorError,
    PlayPrompts,
    SendDtmf,
    TraceEvent,
    WriteCdr,
)
from appliance.plan import Plan
from tests.pbx.test_b2bua import invite
from tests.pbx.test_ivr_transfers import EDGE, answer, caller_hangs_up, invites
from tests.pbx.test_monitor import monitor_plan


def assist_plan() -> dict[str, Any]:
    doc = monitor_plan()
    flows = doc["tenants"][0]["flows"]
    flows["card"] = {"flow": "card", "version": 1, "start": "account", "nodes": {
        "account": {"type": "collect", "variable": "account", "mode": "fixed", "length": 4,
                    "prompt": {"tts": "Please key in your account number."},
                    "next": "pin"},
        "pin": {"type": "collect", "variable": "pin", "mode": "fixed", "length": 4,
                "secret": True,
                "prompt": {"tts": "And your PIN."}, "next": "done"},
        "done": {"type": "play", "prompt": {"tts": "Thank you."}}}}
    flows["away"] = {"flow": "away", "version": 1, "start": "go", "nodes": {
        "go": {"type": "transfer", "agent": "bob"}}}
    return doc


def talking() -> tuple[B2bua, Leg, Leg]:
    c = B2bua(plan=Plan.from_dict(assist_plan()), local_ip="127.0.0.1", local_port=5080,
              edge=EDGE, media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    c.agent_action("acme", lambda acd: acd.login("alice", 2.0, ready=True), 2.0)
    [to_alice] = invites(c)
    answer(c, to_alice, 3.0, "1001")
    c.commands()
    call = next(iter(c.calls.values()))
    caller = next(x for x in call.legs if x.role == "a")
    agent = caller.peer
    assert agent is not None
    return c, caller, agent


def prompts_to(out: list[Any], leg: Leg) -> list[str]:
    return [p.prompts[0]["tts"] for p in out if isinstance(p, PlayPrompts) and p.leg == leg.id]


def keys(c: B2bua, leg: Leg, digits: str, now: float) -> None:
    for n, digit in enumerate(digits):
        c.media_dtmf(leg.id, digit, "rfc4733", now + n * 0.2)


def test_the_flow_runs_beside_the_agent_and_hands_the_customer_back_with_its_results(
        ) -> None:
    c, caller, agent = talking()
    job = c.assist("acme", "alice", "card", 4.0)
    out = c.commands()
    [mix] = [x for x in out if isinstance(x, AssistMedia)]
    assert mix.pair == (caller.id, agent.id) and mix.customer == caller.id
    assert prompts_to(out, caller) == ["Please key in your account number."]
    c.playback_finished(caller.id, 5.0)
    keys(c, caller, "12", 5.5)  # the customer starts ...
    keys(c, agent, "34", 6.0)  # ... the agent, coaching, finishes the account number
    out = c.commands()
    assert prompts_to(out, caller) == ["And your PIN."]
    assert not any(isinstance(x, SendDtmf) for x in out)  # not played to the customer
    c.playback_finished(caller.id, 7.0)
    keys(c, caller, "9876", 7.5)
    out = c.commands()
    assert prompts_to(out, caller) == ["Thank you."]
    traced = [dict(x.data) for x in out if isinstance(x, TraceEvent) and x.kind == "dtmf"]
    assert {t["digit"] for t in traced} == {"*"}  # the PIN never shows
    c.playback_finished(caller.id, 9.0)  # the flow ends: caller and agent talk again
    out = c.commands()
    [again] = [x for x in out if isinstance(x, BridgeMedia)]
    assert (again.a, again.b) == (caller.id, agent.id)
    assert job.state == "done" and job.results["account"] == "1234"
    assert job.results["pin"] == "****"  # a secret input's value stays secret
    assert caller.call.data["account"] == "1234" and caller.ivr is None
    assert caller.state == agent.state == "up" and caller.peer is agent
    ended = [dict(x.data) for x in out if isinstance(x, TraceEvent)
             and x.kind == "assist_ended"]
    assert ended == [{"agent": "alice", "flow": "card", "reason": "end",
                      "result.account": "1234", "result.pin": "****"}]
    caller_hangs_up(c, 12.0)
    assert any(isinstance(x, WriteCdr) for x in c.commands())
    assert c.assists == {}


def test_the_agent_takes_the_customer_back_and_a_transfer_node_is_refused() -> None:
    c, _, _ = talking()
    job = c.assist("acme", "alice", "card", 4.0)
    c.commands()
    with pytest.raises(MonitorError) as busy:
        c.assist("acme", "alice", "card", 4.5)
    assert busy.value.code == "conflict"
    with pytest.raises(MonitorError):
        c.monitor("acme", "alice", "sue", "listen", 4.5)  # not while the flow runs
    c.stop_assist(job.id, 5.0)
    out = c.commands()
    assert any(isinstance(x, BridgeMedia) for x in out)
    assert job.state == "done" and job.results == {}
    away = c.assist("acme", "alice", "away", 6.0)  # its only node transfers: refused
    out = c.commands()
    assert away.state == "done" and not invites(c)
    assert any(isinstance(x, TraceEvent) and dict(x.data).get("reason") == "transfer_refused"
               for x in out)


def test_refused_assists() -> None:
    c, _, _ = talking()
    for agent, flow, code in (("alice", "nope", "not_found"), ("nobody", "card", "not_found"),
                              ("bob", "card", "agent_not_talking")):
        with pytest.raises(MonitorError) as refused:
            c.assist("acme", agent, flow, 4.0)
        assert refused.value.code == code
    with pytest.raises(MonitorError) as other_tenant:
        c.assist("globex", "alice", "card", 4.0)
    assert other_tenant.value.code == "not_found"
    assert c.assists == {}


def test_the_customer_hanging_up_during_the_flow_ends_it() -> None:
    c, _, _ = talking()
    job = c.assist("acme", "alice", "card", 4.0)
    caller_hangs_up(c, 5.0)
    assert job.state == "ended" and c.assists == {}
    assert any(isinstance(x, WriteCdr) for x in c.commands())
