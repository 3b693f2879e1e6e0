"""The node's local time reaches the tenants' ACDs: during the tenant's night hours an
offer carries ``night=1`` for the desktop's alert (R-5.2a); outside them it does not;
an ACD started later by a new plan knows the time at once."""

from __future__ import annotations

import copy
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from appliance.media.ports import PortPool
from appliance.node import NodeConfig, time_zone
from appliance.pbx.b2bua import B2bua
from appliance.plan import Plan
from tests.pbx.test_b2bua import invite
from tests.pbx.test_ivr_transfers import EDGE, invites, plan_doc

NIGHT = ["22:00", "07:00"]  # across midnight


def offer_data(c: B2bua, now: float) -> dict[str, list[str]]:
    c.receive(invite("sip:+862088880070@127.0.0.1", "trunk;name=carrier"), EDGE, now)
    c.agent_action("acme", lambda acd: acd.login("alice", now + 0.5, ready=True), now + 0.5)
    [to_alice] = invites(c)
    return parse_qs(to_alice.headers.get("X-BL-Data") or "")


def node_with_night(local_seconds: float) -> B2bua:
    doc = plan_doc({"queue": "sales"})
    doc["tenants"][0]["acd"] = {"night_hours": NIGHT}
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.set_local_time(0.5, local_seconds)
    return c


@pytest.mark.parametrize(("clock", "night"), [
    ("23:30", True), ("03:00", True), ("06:59", True), ("07:00", False), ("12:00", False),
    ("21:59", False)])
def test_offers_in_the_night_hours_carry_the_alert(clock: str, night: bool) -> None:
    hours, minutes = map(int, clock.split(":"))
    data = offer_data(node_with_night(hours * 3600 + minutes * 60), 1.0)
    assert data["queue"] == ["sales"]
    assert ("night" in data) is night and data.get("night", ["1"]) == ["1"]


def test_the_local_time_runs_on_with_the_node_clock() -> None:
    c = node_with_night(21 * 3600 + 59 * 60)  # 21:59 at t=0.5
    assert "night" in offer_data(c, 61.0)  # 22:00 one minute later


def test_an_acd_started_by_a_new_plan_knows_the_time() -> None:
    doc = plan_doc({"queue": "sales"})
    c = B2bua(plan=Plan.from_dict(doc), local_ip="127.0.0.1", local_port=5080, edge=EDGE,
              media_ip="127.0.0.1", ports=PortPool(30000, 30100))
    c.set_local_time(0.5, 23 * 3600.0)  # 23:00, the tenant has no night hours yet
    night_doc = copy.deepcopy(doc)
    night_doc["tenants"][0]["acd"] = {"night_hours": NIGHT}
    c.set_plan(Plan.from_dict(night_doc), 10.0)  # a fresh ACD (its configuration changed)
    assert "night" in offer_data(c, 11.0)


def test_the_nodes_timezone_is_an_iana_name(tmp_path: Path) -> None:
    assert str(time_zone("Asia/Shanghai")) == "Asia/Shanghai"
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        NodeConfig(run_dir=tmp_path, timezone="Mars/Olympus")
