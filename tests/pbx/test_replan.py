"""A new plan changes a tenant's ACD in place: signed-in agents stay, a waiting caller
keeps its place and is offered under the new rules; a caller whose queue (or all of
the tenant's queues) went away is given back to its flow."""

from __future__ import annotations

import copy
from typing import Any

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import AcdNotice, B2bua, PlayPrompts
from appliance.plan import Plan
from tests.pbx.test_b2bua import invite
from tests.pbx.test_ivr_transfers import EDGE, invites, plan_doc


def queued() -> tuple[B2bua, dict[str, Any]]:
    """A carrier caller waiting in acme's sales queue (through the ``to`` flow) while
    bob is signed in, not ready."""
    doc = plan_doc({"queue": "sales"})
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    c.agent_action("acme", lambda acd: acd.login("bob", 2.0), 2.0)
    c.commands()
    assert invites(c) == []
    return c, doc


def test_a_changed_queue_keeps_the_agents_and_the_waiting_caller() -> None:
    c, doc = queued()
    acd = c.acd["acme"]
    new = copy.deepcopy(doc)
    new["tenants"][0]["queues"][0].update(ring_seconds=9, wrap_up=30)
    c.set_plan(Plan.from_dict(new), 5.0)
    assert c.acd["acme"] is acd  # the same core, reconfigured
    assert "AcdReconfigured" in [type(x.event).__name__ for x in c.commands()
                                 if isinstance(x, AcdNotice)]
    assert acd.agent("bob", 5.0).state == "not_ready"  # still signed in
    c.agent_action("acme", lambda a: a.set_ready("bob", 6.0), 6.0)
    [to_bob] = invites(c)  # the caller waited on: offered under the new ring timeout
    assert to_bob.uri.user == "1002"
    assert acd.contact(next(iter(c.calls))).queue == "sales"


def test_a_removed_queue_gives_its_callers_back_to_their_flow() -> None:
    c, doc = queued()
    new = copy.deepcopy(doc)
    acme = new["tenants"][0]
    acme["queues"].append({"name": "support", "agents": ["alice"]})
    acme["queues"].pop(0)  # sales goes
    c.set_plan(Plan.from_dict(new), 5.0)
    said = [p.prompts[0].get("tts") for p in c.commands() if isinstance(p, PlayPrompts)]
    assert "Nobody is free." in said  # the transfer's on_failure
    assert c.acd["acme"].contact(next(iter(c.calls))) is None


def test_a_tenant_without_queues_any_more_gives_its_callers_back() -> None:
    c, doc = queued()
    new = copy.deepcopy(doc)
    acme = new["tenants"][0]
    del acme["queues"]
    acme["flows"]["to"]["nodes"]["go"] = {"type": "play", "prompt": {"tts": "Bye."}}
    c.set_plan(Plan.from_dict(new), 5.0)
    assert "acme" not in c.acd
    said = [p.prompts[0].get("tts") for p in c.commands() if isinstance(p, PlayPrompts)]
    assert "Nobody is free." in said  # the running flow's transfer failed
