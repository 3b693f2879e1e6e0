"""Tenants are isolated: one Acd per tenant, nothing crosses instances."""

from __future__ import annotations

import pytest

from appliance.acd import Offer, UnknownAgent, UnknownContact, UnknownQueue
from tests.acd.helpers import agent, make, only, queue


def test_two_tenants_with_the_same_names_do_not_see_each_other() -> None:
    acme = make([queue("sales")], [agent("alice", queues=("sales",))], tenant="acme")
    globex = make([queue("sales"), queue("support")],
                  [agent("alice", queues=("sales", "support"))], tenant="globex",
                  max_on_break=0)
    acme.login("alice", 0, ready=True)
    globex.enqueue("call-1", "sales", 1)
    assert only(globex.commands(), Offer) == []  # acme's ready alice is not globex's
    acme.enqueue("call-1", "sales", 2)  # the same contact id in the other tenant
    (offer,) = only(acme.commands(), Offer)
    assert (offer.tenant_id, offer.agent) == ("acme", "alice")
    assert globex.contact("call-1").state == "waiting"  # type: ignore[union-attr]
    assert acme.contact("call-1").state == "offered"  # type: ignore[union-attr]
    assert {e.tenant_id for e in acme.events()} == {"acme"}
    assert {e.tenant_id for e in globex.events()} == {"globex"}
    # each tenant's limits are its own: globex allows nobody on break, acme one
    globex.login("alice", 3)
    assert not globex.request_break("alice", 3)
    assert acme.request_break("alice", 3)
    assert acme.snapshot(4).team.busy == 1 and globex.snapshot(4).team.busy == 0
    with pytest.raises(UnknownQueue):
        acme.enqueue("call-2", "support", 5)
    acme.abandon("call-1", 6)
    assert globex.contact("call-1") is not None
    with pytest.raises(UnknownContact):
        acme.abandon("call-1", 7)


def test_an_agent_of_another_tenant_is_unknown() -> None:
    acme = make([queue("q")], [agent("alice")], tenant="acme")
    globex = make([queue("q")], [agent("bob")], tenant="globex")
    globex.login("bob", 0, ready=True)
    acme.enqueue("c1", "q", 1)
    with pytest.raises(UnknownAgent):
        acme.answered("c1", "bob", 2)
    with pytest.raises(UnknownAgent):
        acme.login("bob", 2)
    assert globex.agent("bob", 3).state == "ready"
