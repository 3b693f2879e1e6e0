"""The plan: validation at the edge, and routing that never crosses tenants."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from appliance.plan import Limits, Origin, Plan, PlanError, Treatment, Treatments

DOC: dict[str, Any] = {
    "version": 3,
    "node": {"id": "branch-1"},
    "trunks": [{"name": "carrier", "address": "127.0.0.2", "port": 5070}],
    "tenants": [
        {
            "id": "acme", "domain": "acme.example", "caller_id": "+862088880000",
            "extensions": [{"number": "1001", "password": "password-1"},
                           {"number": "1002", "password": "password-2"}],
            "dids": [{"number": "+862088880001", "target": "1001"},
                     {"number": "95001", "target": "echo"},
                     {"number": "+862088880060", "target": "600"}],
            "hunt_groups": [{"number": "600", "members": ["1002", "1001"]}],
            "announcements": [{"number": "700", "text": "hello", "voice": "yue"}],
            "outbound": [{"prefix": "0", "trunk": "carrier", "strip": 1, "prepend": "+86"},
                         {"prefix": "00", "trunk": "carrier", "strip": 2, "prepend": "+"}],
        },
        {
            "id": "globex", "domain": "globex.example", "caller_id": "+85230000000",
            "extensions": [{"number": "1001", "password": "password-g"}],
            "dids": [{"number": "+85230000001", "target": "1001"}],
        },
    ],
}


def plan() -> Plan:
    return Plan.from_dict(copy.deepcopy(DOC))


def test_round_trip() -> None:
    p = plan()
    assert Plan.from_dict(p.to_dict()) == p


def test_tenancy_defaults_and_round_trip() -> None:
    acme = plan().tenants[0]
    assert (acme.status, acme.suspended, acme.limits) == ("active", False, Limits())
    assert acme.treatments == Treatments(suspended=Treatment(reject=503),
                                         over_quota=Treatment(reject=486))
    doc = copy.deepcopy(DOC)
    doc["tenants"][0].update(
        status="suspended",
        limits={"ivr_ports": 4, "pstn_calls": 2, "web_calls": 3, "agents": 5,
                "ivr_flows": 1, "storage_mb": 10},
        treatments={"suspended": {"announcement": "Service is suspended.", "voice": "yue"},
                    "over_quota": {"reject": 480}},
        flows={"f": {"flow": "f", "version": 1, "start": "h",
                     "nodes": {"h": {"type": "hangup"}}}})
    p = Plan.from_dict(doc)
    acme = p.tenants[0]
    assert acme.suspended and acme.limits == Limits(4, 2, 3, 5, 1, 10)
    assert acme.treatments.suspended == Treatment(announcement="Service is suspended.",
                                                  voice="yue")
    assert acme.treatments.over_quota.describe() == "reject 480"
    out = p.to_dict()["tenants"][0]
    assert out["status"] == "suspended" and out["limits"] == doc["tenants"][0]["limits"]
    assert out["treatments"] == doc["tenants"][0]["treatments"]
    assert Plan.from_dict(p.to_dict()) == p
    # an announcement's voice defaults to en-us, and is written out
    doc["tenants"][0]["treatments"] = {"over_quota": {"announcement": "All lines busy."}}
    again = Plan.from_dict(doc).to_dict()["tenants"][0]["treatments"]
    assert again == {"suspended": {"reject": 503},
                     "over_quota": {"announcement": "All lines busy.", "voice": "en-us"}}


def test_more_flows_than_the_ivr_flows_limit_are_refused() -> None:
    doc = copy.deepcopy(DOC)
    hangup = {"flow": "x", "version": 1, "start": "h", "nodes": {"h": {"type": "hangup"}}}
    doc["tenants"][0]["flows"] = {"one": hangup, "two": hangup}
    doc["tenants"][0]["limits"] = {"ivr_flows": 2}
    assert len(Plan.from_dict(copy.deepcopy(doc)).tenants[0].flows) > 2  # + system flows
    doc["tenants"][0]["limits"] = {"ivr_flows": 1}
    with pytest.raises(PlanError) as err:
        Plan.from_dict(doc)
    assert err.value.path == "tenants[0].flows" and "ivr_flows (1)" in err.value.message


def test_trunk_call_tenant_comes_from_the_did() -> None:
    p = plan()
    r = p.route(Origin("trunk", trunk="carrier"), "+862088880001")
    assert (r.tenant_id, r.kind, r.target) == ("acme", "extension", "1001")
    r = p.route(Origin("trunk", trunk="carrier"), "+85230000001")
    assert (r.tenant_id, r.kind, r.target) == ("globex", "extension", "1001")
    assert p.route(Origin("trunk", trunk="carrier"), "95001").kind == "echo"
    r = p.route(Origin("trunk", trunk="carrier"), "+862088880060")
    assert (r.kind, r.members) == ("hunt_group", ("1002", "1001"))
    assert p.route(Origin("trunk", trunk="carrier"), "+10000000").kind == "none"


def test_trunk_translation_rules_turn_carrier_formats_into_dids() -> None:
    doc = copy.deepcopy(DOC)
    doc["trunks"][0]["translate"] = [
        {"prefix": "020", "replace": "+8620"},        # national format
        {"prefix": "88880", "replace": "+862088880"},  # local format
        {"prefix": "0208888", "replace": "+86208888"},  # longer prefix wins
        {"prefix": "+8620", "replace": "+8620"},       # already international
    ]
    p = Plan.from_dict(doc)
    carrier = Origin("trunk", trunk="carrier")
    for dialled in ("02088880001", "88880001", "+862088880001"):
        r = p.route(carrier, dialled)
        assert (r.tenant_id, r.target) == ("acme", "1001"), dialled
    assert p.route(carrier, "95001").kind == "echo"  # no rule: as sent
    assert p.route(carrier, "02099990000").kind == "none"
    # rules apply to carrier calls only, and survive the round trip
    assert p.route(Origin("extension", tenant_id="acme", extension="1002"),
                   "88880001").kind == "none"
    assert Plan.from_dict(p.to_dict()) == p


def _with_queues(doc: dict[str, Any]) -> dict[str, Any]:
    acme = doc["tenants"][0]
    acme["agents"] = [{"id": "alice", "extension": "1001", "skills": {"sales": 5, "lang:yue": 3},
                       "auto_answer": True},
                      {"id": "bob", "extension": "1002", "break_group": "day"}]
    acme["queues"] = [
        {"name": "sales", "agents": ["alice", "bob"], "ring_seconds": 12,
         "strategy": "best_skill", "priority": 2, "wrap_up": None, "skills": {"sales": 3},
         "max_wait": 600, "max_wait_route": "voicemail",
         "overflow": [{"after": 60, "to_queue": "support"}]},
        {"name": "support", "agents": ["bob"]},
    ]
    acme["acd"] = {"max_on_break": 2, "break_groups": {"day": 1},
                   "not_ready_reasons": ["lunch", "training"], "night_hours": ["22:00", "07:00"]}
    return doc


def test_queues_and_agents_give_the_tenant_its_acd_configuration() -> None:
    p = Plan.from_dict(_with_queues(copy.deepcopy(DOC)))
    acme = p.tenant("acme")
    assert acme is not None and acme.acd is not None
    sales = acme.acd.queues[0]
    assert (sales.name, sales.strategy, sales.priority, sales.ring_timeout, sales.wrap_up) == (
        "sales", "best_skill", 2, 12.0, None)
    assert sales.overflow[0].to_queue == "support" and acme.queues[0].skills == {"sales": 3}
    alice, bob = acme.acd.agents
    assert alice.queues == ("sales",) and bob.queues == ("sales", "support")
    assert alice.auto_answer and dict(alice.skills) == {"sales": 5, "lang:yue": 3}
    assert acme.acd.night_hours == ("22:00", "07:00") and acme.acd.break_groups == {"day": 1}
    assert p.tenant("globex").acd is None  # type: ignore[union-attr]
    assert Plan.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(("mutate", "path"), [
    (lambda q, a, s: q[0].update(strategy="random"), "tenants[0].queues[0].strategy"),
    (lambda q, a, s: q[0].update(colour="red"), "tenants[0].queues[0]"),
    (lambda q, a, s: q[0]["overflow"][0].update(to_queue="nowhere"),
     "tenants[0].queues[0].overflow[0].to_queue"),
    (lambda q, a, s: a[0].update(skills={"sales": 11}), "tenants[0].agents[0].skills.sales"),
    (lambda q, a, s: a[0].update(password="plain"), "tenants[0].agents[0].password"),
    (lambda q, a, s: a[1].update(break_group="night"), "tenants[0].agents[1].break_group"),
    (lambda q, a, s: s.update(not_ready_reasons=["no_answer"]),
     "tenants[0].acd.not_ready_reasons[0]"),
    (lambda q, a, s: s.update(night_hours=["25:00", "07:00"]), "tenants[0].acd.night_hours[0]"),
])
def test_bad_acd_configuration_is_refused_with_the_plan_path(mutate: Any, path: str) -> None:
    doc = _with_queues(copy.deepcopy(DOC))
    acme = doc["tenants"][0]
    mutate(acme["queues"], acme["agents"], acme["acd"])
    with pytest.raises(PlanError) as err:
        Plan.from_dict(doc)
    assert err.value.path == path


def test_extension_routes_stay_in_tenant() -> None:
    p = plan()
    acme = Origin("extension", tenant_id="acme", extension="1001")
    assert p.route(acme, "1002").kind == "extension"
    assert p.route(acme, "700").voice == "yue"
    # globex's DID dialled by acme goes out through the trunk like any external number,
    # never straight to globex's extension
    r = p.route(acme, "+85230000001")
    assert r.kind == "none"
    globex = Origin("extension", tenant_id="globex", extension="1001")
    assert p.route(globex, "1002").kind == "none"  # acme's 1002 is invisible to globex
    assert p.route(globex, "700").kind == "none"


def test_outbound_longest_prefix_and_presentation() -> None:
    p = plan()
    acme = Origin("extension", tenant_id="acme", extension="1001")
    r = p.route(acme, "013800138000")
    assert (r.kind, r.target, r.caller_id) == ("trunk", "+8613800138000", "+862088880000")
    assert r.trunk is not None and r.trunk.port == 5070
    assert p.route(acme, "0044207000000").target == "+44207000000"
    assert p.route(acme, "0").kind == "none"  # the prefix alone is no number


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d.update(version=0), "version"),
        (lambda d: d["tenants"][0].update(domain="Not A Domain"), "tenants[0].domain"),
        (lambda d: d["tenants"][0]["extensions"][0].update(password="short"),
         "tenants[0].extensions[0].password"),
        (lambda d: d["tenants"][0]["dids"].append({"number": "+1555", "target": "1999"}),
         "tenants[0].dids[3].target"),
        (lambda d: d["tenants"][1]["dids"].append({"number": "+862088880001", "target": "1001"}),
         "tenants.dids"),
        (lambda d: d["tenants"][0]["outbound"].append({"prefix": "9", "trunk": "nope"}),
         "tenants[0].outbound[2].trunk"),
        (lambda d: d["tenants"][0]["hunt_groups"][0].update(members=["2001"]),
         "tenants[0].hunt_groups[0].members"),
        (lambda d: d["trunks"][0].update(address="300.1.1.1"), "trunks[0].address"),
        (lambda d: d["trunks"][0].update(translate=[{"prefix": "0", "replace": "x"}]),
         "trunks[0].translate[0].replace"),
        (lambda d: d["trunks"][0].update(translate=[{"prefix": "0", "replace": "+86"},
                                                    {"prefix": "0", "replace": ""}]),
         "trunks[0].translate"),
        (lambda d: d["tenants"][1].update(domain="acme.example"), "tenants.domain"),
        (lambda d: d["tenants"][1].update(status="paused"), "tenants[1].status"),
        (lambda d: d["tenants"][0].update(limits={"pstn_calls": -1}),
         "tenants[0].limits.pstn_calls"),
        (lambda d: d["tenants"][0].update(limits={"storage_mb": True}),
         "tenants[0].limits.storage_mb"),
        (lambda d: d["tenants"][0].update(limits={"web_calls": "2"}),
         "tenants[0].limits.web_calls"),
        (lambda d: d["tenants"][0].update(limits={"calls": 2}), "tenants[0].limits"),
        (lambda d: d["tenants"][0].update(treatments={"deleted": {"reject": 503}}),
         "tenants[0].treatments"),
        (lambda d: d["tenants"][0].update(treatments={"suspended": {"reject": 404}}),
         "tenants[0].treatments.suspended.reject"),
        (lambda d: d["tenants"][0].update(treatments={"over_quota": {"reject": 486,
                                                                     "voice": "yue"}}),
         "tenants[0].treatments.over_quota"),
        (lambda d: d["tenants"][0].update(treatments={"over_quota": {"announcement": " "}}),
         "tenants[0].treatments.over_quota.announcement"),
        (lambda d: d["tenants"][0].update(treatments={"suspended": {
            "announcement": "Closed.", "voice": "fr"}}), "tenants[0].treatments.suspended.voice"),
    ],
)
def test_bad_plans_are_refused_with_the_path(mutate: Any, path: str) -> None:
    doc = copy.deepcopy(DOC)
    mutate(doc)
    with pytest.raises(PlanError) as err:
        Plan.from_dict(doc)
    assert err.value.path == path


def test_ha1_is_rfc2617() -> None:
    ext = plan().tenants[0].extensions[0]
    import hashlib

    assert ext.ha1("acme.example") == hashlib.md5(b"1001:acme.example:password-1").hexdigest()


def test_the_customer_record_url_is_an_http_template_and_round_trips() -> None:
    doc = copy.deepcopy(DOC)
    acme = doc["tenants"][0]
    acme["agents"] = [{"id": "alice", "extension": "1001"}]
    acme["queues"] = [{"name": "sales", "agents": ["alice"]}]
    acme["acd"] = {"crm_url": "https://crm.acme.example/c?phone={caller}&acct={account}"}
    p = Plan.from_dict(doc)
    assert p.tenants[0].crm_url.endswith("acct={account}")
    assert Plan.from_dict(p.to_dict()) == p
    for bad in ("javascript:alert(1)", "https://crm.example/a b", 'https://x/"><script>', 3):
        acme["acd"] = {"crm_url": bad}
        with pytest.raises(PlanError) as refused:
            Plan.from_dict(doc)
        assert refused.value.path == "tenants[0].acd.crm_url"


def test_wrap_up_codes_are_unique_identifiers_and_round_trip() -> None:
    doc = _with_queues(copy.deepcopy(DOC))
    acme = doc["tenants"][0]
    acme["acd"]["wrap_up_codes"] = ["sale", "no_sale", "call-back", "Info2"]
    p = Plan.from_dict(doc)
    assert p.tenants[0].wrap_up_codes == ("sale", "no_sale", "call-back", "Info2")
    assert p.tenants[1].wrap_up_codes == ()  # optional
    out = p.to_dict()["tenants"][0]["acd"]
    assert out["wrap_up_codes"] == ["sale", "no_sale", "call-back", "Info2"]
    assert Plan.from_dict(p.to_dict()) == p
    acme["acd"]["wrap_up_codes"] = [f"code{i}" for i in range(50)]
    assert len(Plan.from_dict(doc).tenants[0].wrap_up_codes) == 50
    for bad, path in (("sale", "tenants[0].acd.wrap_up_codes"),
                      ({"sale": 1}, "tenants[0].acd.wrap_up_codes"),
                      (["sale", "sale"], "tenants[0].acd.wrap_up_codes"),
                      ([f"code{i}" for i in range(51)], "tenants[0].acd.wrap_up_codes"),
                      (["sale", ""], "tenants[0].acd.wrap_up_codes[1]"),
                      (["has space"], "tenants[0].acd.wrap_up_codes[0]"),
                      (["x" * 33], "tenants[0].acd.wrap_up_codes[0]"),
                      (["dot.ted"], "tenants[0].acd.wrap_up_codes[0]"),
                      ([7], "tenants[0].acd.wrap_up_codes[0]")):
        acme["acd"]["wrap_up_codes"] = bad
        with pytest.raises(PlanError) as refused:
            Plan.from_dict(doc)
        assert refused.value.path == path, bad
    # a tenant without queues has no ACD: its codes are checked, not kept
    acme["acd"]["wrap_up_codes"] = ["sale"]
    globex = doc["tenants"][1]
    globex["acd"] = {"wrap_up_codes": ["sale"]}
    assert Plan.from_dict(doc).tenants[1].wrap_up_codes == ()
    globex["acd"] = {"wrap_up_codes": ["bad code"]}
    with pytest.raises(PlanError) as refused:
        Plan.from_dict(doc)
    assert refused.value.path == "tenants[1].acd.wrap_up_codes[0]"
