"""PC + phone mode (R-5.1): an agent signed in on the desktop answers its queue calls on
its own mobile or landline: the offer goes out through the tenant's outbound route
(without the call's internal data), is answered and bridged like any offer; back on the
extension when the number is cleared; a number the tenant cannot call is refused; an
offer over the tenant's PSTN quota counts as not answered and the caller waits on."""

from __future__ import annotations

import pytest

from appliance.media.ports import PortPool
from appliance.pbx.b2bua import B2bua, BridgeMedia
from appliance.plan import Plan
from tests.pbx.test_b2bua import invite
from tests.pbx.test_ivr_transfers import EDGE, answer, invites, plan_doc


def node(pstn_calls: int = 0) -> B2bua:
    doc = plan_doc({"queue": "sales"})
    if pstn_calls:
        doc["tenants"][0]["limits"] = {"pstn_calls": pstn_calls}
    return B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080,
                 edge=EDGE, media_ip="127.0.0.1", ports=PortPool(30000, 30100))


def test_offers_ring_the_agents_own_phone_through_the_trunk() -> None:
    c = node()
    c.set_agent_phone("acme", "alice", "013912345678")  # acme's route: 0 -> +86
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    c.agent_action("acme", lambda acd: acd.login("alice", 2.0, ready=True), 2.0)
    [offer] = invites(c)
    assert offer.uri.user == "+8613912345678" and offer.uri.host == "127.0.0.2"
    assert offer.headers.get("X-BL-Data") is None  # the call's data stays inside
    answer(c, offer, 3.0, "mobile")
    assert any(isinstance(x, BridgeMedia) for x in c.commands())
    assert c.acd["acme"].agent("alice", 3.0).state == "talking"


def test_cleared_number_and_unreachable_numbers() -> None:
    c = node()
    c.set_agent_phone("acme", "alice", "013912345678")
    c.set_agent_phone("acme", "alice", None)
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, 1.0)
    c.agent_action("acme", lambda acd: acd.login("alice", 2.0, ready=True), 2.0)
    [offer] = invites(c)
    assert offer.uri.user == "1001"  # its extension again
    with pytest.raises(ValueError, match="cannot call"):
        c.set_agent_phone("acme", "alice", "99999")  # no route for it
    with pytest.raises(LookupError, match="no agent"):
        c.set_agent_phone("globex", "alice", "013912345678")
    assert c.agent_phones == {}


def test_an_offer_over_the_pstn_quota_is_not_placed_and_the_caller_waits() -> None:
    c = node(pstn_calls=1)
    c.set_agent_phone("acme", "alice", "013912345678")
    # a carrier call to the echo service holds acme's one PSTN call
    c.receive(invite("sip:95001@127.0.0.1", "trunk;name=carrier", call_id="echo"), EDGE, 0.5)
    # an internal caller (extension 1002) reaches the queue through its DID
    c.receive(invite("sip:+862088880070@acme.example", "ext;domain=acme.example;user=1002",
                     call_id="inside", from_user="1002"), EDGE, 1.0)
    c.agent_action("acme", lambda acd: acd.login("alice", 2.0, ready=True), 2.0)
    assert invites(c) == []  # alice's mobile would make it a second PSTN call
    acd = c.acd["acme"]
    assert acd.agent("alice", 2.0).state == "not_ready"  # a no-answer, as R-5.2e says
    inside = next(call for call in c.calls.values() if call.caller == "1002")
    assert acd.contact(inside.id).state == "waiting"  # type: ignore[union-attr]
