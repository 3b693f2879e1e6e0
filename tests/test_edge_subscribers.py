"""What the SIP edge may authenticate: the subscriber table written from the plan
(appliance/edge/kamailio.py ``write_subscriber_db``), without starting Kamailio."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path

from appliance.edge.kamailio import write_subscriber_db
from appliance.plan import Plan
from tests.test_plan import DOC


def rows(db: Path) -> tuple[set[tuple[str, str]], set[str]]:
    con = sqlite3.connect(db)
    try:
        subscribers = set(con.execute("SELECT username, domain FROM subscriber"))
        domains = {d for (d,) in con.execute("SELECT domain FROM domain")}
    finally:
        con.close()
    return subscribers, domains


def test_a_suspended_tenants_extensions_are_not_subscribers_until_resumed(
        tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite"
    doc = copy.deepcopy(DOC)
    write_subscriber_db(db, Plan.from_dict(doc))
    everyone = {("1001", "acme.example"), ("1002", "acme.example"),
                ("1001", "globex.example")}
    assert rows(db) == (everyone, {"acme.example", "globex.example"})
    doc["tenants"][0]["status"] = "suspended"
    write_subscriber_db(db, Plan.from_dict(doc))
    # the domain stays (calls in progress still route), the logins are gone
    assert rows(db) == ({("1001", "globex.example")}, {"acme.example", "globex.example"})
    doc["tenants"][0]["status"] = "active"
    write_subscriber_db(db, Plan.from_dict(doc))
    assert rows(db)[0] == everyone
