"""The controller's REST API through Flask's test client, on SQLite and PostgreSQL.

Every answer is checked against ``controller/openapi.yaml`` by the client
(:class:`tests.controller.openapi_check.CheckedClient`). What is shown: tokens and
scopes; tenancy (a table with a cross-tenant case for every route: another tenant's
objects are 404 or absent, never shown, never changed); platform-only routes; built-in
and custom roles; quotas and treatments; number kinds and ranges; flows and plan
sections refused with the offending path; deletion with retention and purge; the audit
log; no secrets in any answer but a node's plan; exports; nodes, claim codes and plan
versions; secrets encrypted at rest.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from controller import nodes
from controller import service as svc
from controller.app import create_app
from controller.passwords import hash_password
from controller.store import Node, User, engine_for, sessions, utcnow
from tests.controller.openapi_check import CheckedClient, blueprint_routes

V = "/api/v1"
ACME_SIP = "acme-sip-secret-1"
ACME_DB = "postgresql://crm:acme-db-secret@db.acme.example/crm"
AGENT_PHONE = "+8613800000001"


@pytest.fixture
def client(db_url: str) -> Iterator[CheckedClient]:
    engine = engine_for(db_url)
    with sessions(engine)() as s:  # the platform's first super-admin, as an installer would
        s.add(User(staff_id="root", tenant_id=None, role="super_admin", name="Root",
                   password_hash=hash_password("root password 1"), language="en"))
        s.commit()
    engine.dispose()
    app = create_app(db_url)
    app.test_client_class = CheckedClient
    with app.test_client() as c:
        yield c  # type: ignore[misc]
    app.extensions["branchline.engine"].dispose()


@dataclass
class As:
    """Requests as one user, with the token it logged in with."""

    c: CheckedClient
    token: str

    def _call(self, method: str, path: str, body: Any = None) -> TestResponse:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        return self.c.open(V + path, method=method,
                           headers={"Authorization": f"Bearer {self.token}"}, **kwargs)

    def get(self, path: str) -> TestResponse:
        return self._call("GET", path)

    def post(self, path: str, body: Any = None) -> TestResponse:
        return self._call("POST", path, body)

    def put(self, path: str, body: Any) -> TestResponse:
        return self._call("PUT", path, body)

    def patch(self, path: str, body: Any) -> TestResponse:
        return self._call("PATCH", path, body)

    def delete(self, path: str) -> TestResponse:
        return self._call("DELETE", path)


def login(c: CheckedClient, staff_id: str, password: str,
          scopes: list[str] | None = None) -> As:
    r = c.post(f"{V}/auth/tokens", json={"staff_id": staff_id, "password": password,
                                         **({"scopes": scopes} if scopes else {})})
    assert r.status_code == 201, r.json
    return As(c, str(r.json["token"]))


def ok(r: TestResponse, status: int = 200) -> Any:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    return r.json


def refused(r: TestResponse, status: int, error_id: str | None = None) -> str:
    """The error's message, after checking status and id."""
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    expected = error_id or {400: "bad_request", 401: "unauthorized", 403: "forbidden",
                            404: "not_found", 409: "conflict"}[status]
    assert r.json["error"]["id"] == expected, r.json
    return str(r.json["error"]["message"])


@dataclass
class World:
    c: CheckedClient
    root: As
    acme: As
    globex: As
    extra: dict[str, As] = field(default_factory=dict)

    def session(self) -> Session:
        s: Session = self.c.application.extensions["branchline.sessions"]()
        return s


def two_tenants(c: CheckedClient) -> World:
    root = login(c, "root", "root password 1")
    for tid, dom, cid in (("acme", "acme.example", "+862088880000"),
                          ("globex", "globex.example", "+85230000000")):
        ok(root.post("/tenants", {"id": tid, "name": tid.title(), "domain": dom,
                                  "caller_id": cid}), 201)
        ok(root.post("/users", {"staff_id": f"{tid}-admin", "password": f"{tid} password",
                                "role": "admin", "tenant": tid}), 201)
    return World(c, root, login(c, "acme-admin", "acme password"),
                 login(c, "globex-admin", "globex password"))


def flow_doc(name: str = "menu", greeting: str = "Hello", nxt: str = "bye") -> dict[str, Any]:
    return {"flow": name, "version": 1, "start": "hello", "nodes": {
        "hello": {"type": "play", "prompt": {"tts": greeting}, "next": nxt},
        "bye": {"type": "hangup"}}}


def populate(w: World) -> None:
    """Give acme one of everything (with secrets), globex a little, and a node."""
    ok(w.root.post("/nodes", {"id": "branch-1", "name": "Guangzhou"}), 201)
    ok(w.acme.post("/extensions", {"number": "1001", "sip_password": ACME_SIP,
                                   "name": "Alice Acme"}), 201)
    ok(w.acme.post("/extensions", {"number": "1002", "sip_password": "acme-sip-secret-2"}),
       201)
    ok(w.acme.put("/flows/menu", flow_doc("menu", "Acme greeting")))
    for number, kind, target, last in (
            ("+862088880001", "did", "1001", None), ("95588", "service", "echo", None),
            ("4008800001", "400", "flow:menu", None),
            ("+862088881000", "range", "1002", "+862088881009")):
        ok(w.root.post("/numbers", {"tenant": "acme", "number": number, "kind": kind,
                                    "target": target, "last": last}), 201)
    ok(w.acme.post("/users", {"staff_id": "acme-agent", "password": "agent password 1",
                              "role": "agent", "phone": AGENT_PHONE, "name": "Agent Acme"}),
       201)
    ok(w.acme.put("/roles/auditor", {"permissions": ["audit.read", "users.read"]}))
    ok(w.acme.put("/sections/announcements",
                  {"value": [{"number": "800", "text": "Acme announcement"}]}))
    ok(w.acme.put("/sections/actions", {"value": {"databases": {"crm": ACME_DB},
                                                  "hosts": ["crm.acme.example"]}}))
    ok(w.globex.post("/extensions", {"number": "2001", "sip_password": "globex-sip-secret",
                                     "name": "Bob"}), 201)
    ok(w.root.post("/numbers", {"tenant": "globex", "number": "+85230000001",
                                "target": "2001"}), 201)


# --------------------------------------------------------------------------- tokens
def test_tokens_are_required_and_scoped(client: CheckedClient) -> None:
    r = client.get(f"{V}/tenants")
    refused(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    refused(client.get(f"{V}/tenants", headers={"Authorization": "Bearer forged"}), 401)
    refused(client.get(f"{V}/tenants", headers={"Authorization": "Basic cm9vdA=="}), 401)
    refused(client.post(f"{V}/auth/tokens", json={"staff_id": "root", "password": "wrong"}),
            401)
    refused(client.post(f"{V}/auth/tokens", json={"staff_id": "root",
                                                  "password": "root password 1",
                                                  "scopes": ["admin"]}), 400)
    reader = login(client, "root", "root password 1", ["read"])
    ok(reader.get("/tenants"))
    assert ok(reader.get("/me"))["scopes"] == ["read"]
    refused(reader.post("/tenants", {"id": "x"}), 403)
    refused(reader.delete("/numbers/+862088880001"), 403)
    me = ok(login(client, "root", "root password 1").get("/me"))
    assert me["tenant"] is None and me["role"] == "super_admin"
    assert "tenants.manage" in me["permissions"] and me["scopes"] == ["read", "write"]


# --------------------------------------------------------------------------- tenancy
OWN, PUBLIC = "own", "public"
# what acme's data looks like: none of it may reach globex
ACME_MARKS = ("acme", "alice", "862088880001", "95588", "4008800001", "8620888810",
              AGENT_PHONE, ACME_SIP)


@dataclass(frozen=True)
class Case:
    """globex's admin tries ``method url`` on acme's objects: ``expect`` is the status
    (the object is not found, or the route is platform-only), OWN (it answers with
    globex's own rows only, or the write lands in globex) or PUBLIC."""

    method: str
    route: str  # the OpenAPI path template the url belongs to
    url: str
    expect: int | str
    body: Any = None
    absent: tuple[str, ...] = ()  # more of acme's that must not show here


CROSS_TENANT = [
    Case("get", "/tenants", "/tenants", OWN),
    Case("post", "/tenants", "/tenants", 403, {"id": "acme2", "name": "A",
                                                "domain": "acme2.example",
                                                "caller_id": "+861000"}),
    Case("get", "/tenants/{tenant_id}", "/tenants/acme", 404),
    Case("patch", "/tenants/{tenant_id}", "/tenants/acme", 404, {"language": "zh-Hans"}),
    Case("patch", "/tenants/{tenant_id}", "/tenants/acme", 404, {"status": "suspended"}),
    Case("delete", "/tenants/{tenant_id}", "/tenants/acme", 403),
    Case("get", "/tenants/{tenant_id}/usage", "/tenants/acme/usage", 404),
    Case("get", "/numbers", "/numbers", OWN),
    Case("get", "/numbers", "/numbers?tenant=acme", 404),
    Case("post", "/numbers", "/numbers", 403, {"tenant": "acme", "number": "+862088880002",
                                               "target": "echo"}),
    Case("get", "/numbers/{number}", "/numbers/+862088880001", 404),
    Case("get", "/numbers/{number}", "/numbers/+862088881000", 404),
    Case("patch", "/numbers/{number}", "/numbers/+862088880001", 404, {"target": "2001"}),
    Case("delete", "/numbers/{number}", "/numbers/95588", 404),
    Case("get", "/extensions", "/extensions", OWN),
    Case("get", "/extensions", "/extensions?tenant=acme", 404),
    Case("post", "/extensions", "/extensions", 404, {"number": "1003", "tenant": "acme",
                                                     "sip_password": "planted pw 1"}),
    Case("delete", "/extensions/{number}", "/extensions/1001", 404),
    Case("get", "/users", "/users", OWN),
    Case("get", "/users", "/users?tenant=acme", 404),
    Case("post", "/users", "/users", 404, {"staff_id": "mole", "password": "mole password",
                                           "role": "admin", "tenant": "acme"}),
    Case("get", "/users/{staff_id}", "/users/acme-agent", 404),
    Case("patch", "/users/{staff_id}", "/users/acme-agent", 404, {"password": "taken over 1"}),
    Case("patch", "/users/{staff_id}", "/users/acme-admin", 404, {"role": "agent"}),
    Case("get", "/roles", "/roles", OWN, absent=("auditor",)),  # acme's custom role
    Case("put", "/roles/{name}", "/roles/auditor", OWN, {"permissions": ["export"]}),
    Case("get", "/flows", "/flows", OWN),
    Case("get", "/flows/{name}", "/flows/menu", 404),
    Case("delete", "/flows/{name}", "/flows/menu", 404),
    Case("put", "/flows/{name}", "/flows/menu", OWN, flow_doc("menu", "Globex greeting")),
    Case("get", "/sections/{section}", "/sections/announcements", OWN),
    Case("get", "/sections/{section}", "/sections/actions", OWN),
    Case("put", "/sections/{section}", "/sections/announcements", OWN,
         {"value": [{"number": "900", "text": "Globex announcement"}]}),
    Case("get", "/audit", "/audit", OWN),
    Case("get", "/exports/{kind}", "/exports/users", OWN),
    Case("get", "/exports/{kind}", "/exports/numbers", OWN),
    Case("get", "/exports/{kind}", "/exports/extensions", OWN),
    Case("get", "/exports/{kind}", "/exports/audit", OWN),
    # platform-only: the same 403 whichever node (nodes are not a tenant's)
    Case("get", "/nodes", "/nodes", 403),
    Case("post", "/nodes", "/nodes", 403, {"id": "spy"}),
    Case("get", "/nodes/{node_id}", "/nodes/branch-1", 403),
    Case("patch", "/nodes/{node_id}", "/nodes/branch-1", 403, {"tenants": ["globex"]}),
    Case("post", "/nodes/{node_id}/claim", "/nodes/branch-1/claim", 403),
    Case("get", "/nodes/{node_id}/plan", "/nodes/branch-1/plan", 403),
    # not tenant-owned: acme's admin cannot be logged in as with globex's password
    Case("post", "/auth/tokens", "/auth/tokens", 401, {"staff_id": "acme-admin",
                                                       "password": "globex password"}),
    Case("get", "/me", "/me", OWN),
    Case("get", "/openapi.json", "/openapi.json", PUBLIC),
]


def test_the_cross_tenant_table_covers_every_route() -> None:
    assert {(c.method, c.route) for c in CROSS_TENANT} == blueprint_routes()


def acme_view(acme: As) -> dict[str, Any]:
    paths = ("/tenants/acme", "/tenants/acme/usage", "/numbers", "/numbers/95588",
             "/extensions", "/users", "/users/acme-agent", "/roles", "/flows", "/flows/menu",
             "/sections/announcements", "/sections/actions", "/audit?limit=500")
    return {p: ok(acme.get(p)) for p in paths}


def test_another_tenants_objects_are_never_shown_or_changed(client: CheckedClient) -> None:
    w = two_tenants(client)
    populate(w)
    before = acme_view(w.acme)
    for case in CROSS_TENANT:
        r = w.globex._call(case.method.upper(), case.url, case.body)
        what = f"{case.method.upper()} {case.url}"
        if isinstance(case.expect, int):
            refused(r, case.expect)
            continue
        assert 200 <= r.status_code < 300, (what, r.status_code, r.json)
        if case.expect == OWN:
            shown = r.get_data(as_text=True).lower()
            leaked = [m for m in ACME_MARKS + case.absent if m.lower() in shown and
                      not (case.method != "get" and m in case.url)]
            assert leaked == [], (what, leaked, shown[:500])
    assert acme_view(w.acme) == before  # nothing of acme's changed, nothing new in its log
    # globex's writes landed in globex
    assert ok(w.globex.get("/flows/menu"))["document"]["nodes"]["hello"]["prompt"] == {
        "tts": "Globex greeting"}
    assert ok(w.acme.get("/flows/menu"))["document"]["nodes"]["hello"]["prompt"] == {
        "tts": "Acme greeting"}


def test_a_tenant_admin_is_refused_the_platform_routes(client: CheckedClient) -> None:
    w = two_tenants(client)
    populate(w)
    tenant = {"id": "evil", "name": "Evil", "domain": "evil.example", "caller_id": "+861000"}
    for method, url, body in (
            ("GET", "/nodes", None), ("POST", "/nodes", {"id": "evil"}),
            ("GET", "/nodes/branch-1", None), ("GET", "/nodes/nowhere", None),
            ("PATCH", "/nodes/branch-1", {"name": "mine"}),
            ("POST", "/nodes/branch-1/claim", None), ("GET", "/nodes/branch-1/plan", None),
            ("POST", "/tenants", tenant),
            ("PATCH", "/tenants/acme", {"status": "suspended"}),
            ("PATCH", "/tenants/acme", {"limits": {"ivr_flows": 1000}}),
            ("PATCH", "/tenants/acme", {"treatments": {"suspended": {"reject": 403}}}),
            ("PATCH", "/tenants/acme", {"name": "Acme Renamed", "language": "zh-Hant"}),
            ("DELETE", "/tenants/acme", None),
            ("POST", "/numbers", {"tenant": "acme", "number": "+862088880002",
                                  "target": "1001"}),
            ("DELETE", "/numbers/+862088880001", None)):
        refused(w.acme._call(method, url, body), 403)
    tenant_now = ok(w.acme.get("/tenants/acme"))
    assert (tenant_now["status"], tenant_now["name"], tenant_now["limits"]["ivr_flows"]) == (
        "active", "Acme", 0)
    assert ok(w.acme.get("/numbers/+862088880001"))["tenant"] == "acme"
    # what a tenant may change of itself: its language
    assert ok(w.acme.patch("/tenants/acme", {"language": "zh-Hans"}))["language"] == "zh-Hans"


# --------------------------------------------------------------------------- permissions
def test_built_in_roles(client: CheckedClient) -> None:
    w = two_tenants(client)
    populate(w)
    for staff, role in (("acme-ro", "read_only"), ("acme-sup", "supervisor")):
        ok(w.acme.post("/users", {"staff_id": staff, "password": f"{staff} password",
                                  "role": role}), 201)
    ro = login(client, "acme-ro", "acme-ro password")
    agent = login(client, "acme-agent", "agent password 1")
    sup = login(client, "acme-sup", "acme-sup password")

    # read_only reads, never writes (even with a write-scoped token)
    ok(ro.get("/extensions"))
    ok(ro.get("/flows/menu"))
    refused(ro.post("/extensions", {"number": "1009", "sip_password": "ro password 1"}), 403)
    refused(ro.patch("/numbers/+862088880001", {"target": "1002"}), 403)
    refused(ro.put("/flows/other", flow_doc("other")), 403)
    refused(ro.put("/sections/announcements", {"value": []}), 403)
    refused(ro.patch("/users/acme-agent", {"name": "x"}), 403)
    refused(ro.patch("/users/acme-ro", {"role": "admin"}), 403)
    refused(ro.get("/exports/users"), 403)
    refused(ro.get("/audit"), 403)
    assert ok(ro.patch("/users/acme-ro", {"language": "zh-Hant"}))["language"] == "zh-Hant"
    # ... and sees phones masked
    masked = "*" * (len(AGENT_PHONE) - 4) + AGENT_PHONE[-4:]
    assert ok(ro.get("/users/acme-agent"))["phone"] == masked
    assert {u["staff_id"]: u["phone"] for u in ok(ro.get("/users"))["items"]}[
        "acme-agent"] == masked

    # an agent cannot read users (nor roles, which are for whoever manages users)
    ok(agent.get("/numbers"))
    ok(agent.get("/extensions"))
    refused(agent.get("/users"), 403)
    refused(agent.get("/users/acme-admin"), 403)
    refused(agent.get("/roles"), 403)
    refused(agent.get("/flows"), 403)
    assert ok(agent.get("/users/acme-agent"))["staff_id"] == "acme-agent"  # oneself
    assert set(ok(agent.get("/me"))["permissions"]) == {"numbers.read", "extensions.read"}

    # a supervisor sees phones in full, and the audit log
    assert ok(sup.get("/users/acme-agent"))["phone"] == AGENT_PHONE
    ok(sup.get("/audit"))
    refused(sup.post("/extensions", {"number": "1009", "sip_password": "sup password 1"}),
            403)


def test_a_custom_role_grants_its_subset_and_no_more(client: CheckedClient) -> None:
    w = two_tenants(client)
    populate(w)
    helpdesk = ["extensions.read", "users.read", "users.write"]
    role = ok(w.acme.put("/roles/helpdesk", {"permissions": helpdesk}))
    assert role == {"name": "helpdesk", "permissions": helpdesk, "builtin": False}
    roles = {r["name"]: r for r in ok(w.acme.get("/roles"))["items"]}
    assert roles["helpdesk"]["builtin"] is False and roles["admin"]["builtin"] is True
    # a role holds tenant permissions only, and built-in names are taken
    assert "permissions among" in refused(
        w.acme.put("/roles/boss", {"permissions": ["tenants.manage"]}), 400)
    refused(w.acme.put("/roles/boss", {"permissions": ["numbers.assign"]}), 400)
    refused(w.acme.put("/roles/boss", {"permissions": "users.read"}), 400)
    refused(w.acme.put("/roles/Bad Name", {"permissions": []}), 400)
    refused(w.acme.put("/roles/admin", {"permissions": []}), 409)

    ok(w.acme.post("/users", {"staff_id": "acme-hd", "password": "helpdesk pw 1",
                              "role": "helpdesk"}), 201)
    hd = login(client, "acme-hd", "helpdesk pw 1")
    assert sorted(ok(hd.get("/me"))["permissions"]) == helpdesk
    ok(hd.get("/extensions"))
    ok(hd.get("/users"))
    refused(hd.get("/numbers"), 403)
    refused(hd.post("/extensions", {"number": "1009", "sip_password": "hd password 1"}), 403)
    # it makes users with roles within its own permissions, never above them
    ok(hd.post("/users", {"staff_id": "acme-hd2", "password": "helpdesk pw 2",
                          "role": "helpdesk"}), 201)
    refused(hd.post("/users", {"staff_id": "acme-boss", "password": "boss password",
                               "role": "admin"}), 403)
    refused(hd.post("/users", {"staff_id": "acme-boss", "password": "boss password",
                               "role": "agent"}), 403)  # numbers.read, which it lacks
    refused(hd.patch("/users/acme-hd", {"role": "admin"}), 403)
    refused(hd.patch("/users/acme-hd2", {"role": "supervisor"}), 403)
    refused(hd.put("/roles/helpdesk", {"permissions": [*helpdesk, "roles.manage"]}), 403)
    # a role's author cannot put in it what the author lacks either
    ok(w.acme.put("/roles/rolesmith", {"permissions": ["roles.manage", "users.read"]}))
    ok(w.acme.post("/users", {"staff_id": "acme-rs", "password": "rolesmith pw",
                              "role": "rolesmith"}), 201)
    rs = login(client, "acme-rs", "rolesmith pw")
    refused(rs.put("/roles/mine", {"permissions": ["export"]}), 403)
    ok(rs.put("/roles/mine", {"permissions": ["users.read"]}))
    # the role is read at every request: narrowing it takes effect at once
    ok(w.acme.put("/roles/helpdesk", {"permissions": ["extensions.read"]}))
    refused(hd.get("/users"), 403)
    ok(hd.get("/extensions"))
    # the role is acme's: globex cannot give it
    refused(w.globex.post("/users", {"staff_id": "globex-hd", "password": "helpdesk pw 3",
                                     "role": "helpdesk"}), 400)


# --------------------------------------------------------------------------- quotas
def test_limits_are_validated_stored_and_the_flow_quota_enforced(
        client: CheckedClient) -> None:
    w = two_tenants(client)
    ok(w.root.post("/nodes", {"id": "branch-1"}), 201)
    for bad in ({"bogus": 1}, {"ivr_flows": -1}, {"ivr_flows": True}, {"ivr_flows": "3"},
                {"ivr_flows": 100001}, {"ivr_flows": 1.5}, [], "ivr_flows"):
        assert "limits" in refused(w.root.patch("/tenants/acme", {"limits": bad}), 400)
    assert set(ok(w.root.get("/tenants/acme"))["limits"].values()) == {0}
    tenant = ok(w.root.patch("/tenants/acme", {"limits": {"ivr_flows": 2, "pstn_calls": 10}}))
    assert tenant["limits"] == {"agents": 0, "pstn_calls": 10, "web_calls": 0, "ivr_flows": 2,
                                "ivr_ports": 0, "storage_mb": 0}
    tenant = ok(w.root.patch("/tenants/acme", {"limits": {"storage_mb": 500}}))
    assert (tenant["limits"]["ivr_flows"], tenant["limits"]["storage_mb"]) == (2, 500)

    ok(w.acme.put("/flows/one", flow_doc("one")))
    ok(w.acme.put("/flows/two", flow_doc("two")))
    assert "2 IVR flows" in refused(w.acme.put("/flows/three", flow_doc("three")), 409,
                                    "quota_exceeded")
    ok(w.acme.put("/flows/two", flow_doc("two", "Changed")))  # replacing is not adding
    assert ok(w.acme.get("/flows"))["total"] == 2
    ok(w.globex.put("/flows/three", flow_doc("three")))  # globex has no such limit
    # a limit below what the tenant has is refused
    refused(w.root.patch("/tenants/acme", {"limits": {"ivr_flows": 1}}), 409, "quota_exceeded")
    assert ok(w.root.get("/tenants/acme"))["limits"]["ivr_flows"] == 2
    ok(w.acme.delete("/flows/one"), 204)
    ok(w.acme.put("/flows/three", flow_doc("three")))
    # the node is told the limits, and the usage page shows them
    plan = ok(w.root.get("/nodes/branch-1/plan"))
    assert {t["id"]: t["limits"]["pstn_calls"] for t in plan["tenants"]} == {
        "acme": 10, "globex": 0}
    usage = ok(w.acme.get("/tenants/acme/usage"))
    assert usage["limits"]["pstn_calls"] == 10 and usage["usage"]["calls"] == 0


def test_treatments_are_validated_and_reach_the_plan(client: CheckedClient) -> None:
    w = two_tenants(client)
    ok(w.root.post("/nodes", {"id": "branch-1"}), 201)
    assert ok(w.root.get("/tenants/acme"))["treatments"] == {
        "suspended": {"reject": 503}, "over_quota": {"reject": 486}}
    for bad in ({"over_quota": {"reject": 404}}, {"suspended": {"announcement": ""}},
                {"suspended": {"announcement": "Paused", "voice": "fr"}},
                {"suspended": {"announcement": "x" * 501}},
                {"suspended": {"reject": 503, "announcement": "Paused"}},
                {"bogus": {"reject": 503}}, {"suspended": "503"}, ["suspended"]):
        assert "treatments" in refused(w.root.patch("/tenants/acme", {"treatments": bad}),
                                       400)
    tenant = ok(w.root.patch("/tenants/acme", {"treatments": {
        "suspended": {"announcement": "Service is paused", "voice": "cmn"}}}))
    assert tenant["treatments"] == {
        "suspended": {"announcement": "Service is paused", "voice": "cmn"},
        "over_quota": {"reject": 486}}
    ok(w.root.patch("/tenants/acme", {"treatments": {"over_quota": {"reject": 480}}}))
    plan = ok(w.root.get("/nodes/branch-1/plan"))
    assert plan["tenants"][0]["treatments"] == {
        "suspended": {"announcement": "Service is paused", "voice": "cmn"},
        "over_quota": {"reject": 480}}


# --------------------------------------------------------------------------- numbers
def test_number_kinds_ranges_and_formats(client: CheckedClient) -> None:
    w = two_tenants(client)
    ok(w.root.post("/nodes", {"id": "branch-1"}), 201)
    ok(w.acme.post("/extensions", {"number": "1001", "sip_password": ACME_SIP}), 201)
    ok(w.globex.post("/extensions", {"number": "2001", "sip_password": "globex sip 1"}), 201)

    def assign(tenant: str, number: str, kind: str = "did", target: str = "echo",
               last: str | None = None) -> TestResponse:
        return w.root.post("/numbers", {"tenant": tenant, "number": number, "kind": kind,
                                        "target": target, **({"last": last} if last else {})})

    assert ok(assign("acme", "95588", "service"), 201)["kind"] == "service"
    ok(assign("acme", "955880", "service"), 201)
    ok(assign("acme", "12345", "service", "1001"), 201)
    ok(assign("acme", "4008800001", "400", "1001"), 201)
    r = ok(assign("acme", "+862088881000", "range", "1001", "+862088881009"), 201)
    assert r == {"number": "+862088881000", "tenant": "acme", "kind": "range",
                 "target": "1001", "last": "+862088881009"}
    assert ok(w.acme.get("/numbers/+862088881000"))["last"] == "+862088881009"
    # one number, one tenant: inside, across either end of, or over another's range
    for number, kind, last in (("+862088881005", "did", None),
                               ("+862088881000", "did", None),
                               ("+862088880990", "range", "+862088881000"),
                               ("+862088881009", "range", "+862088881020"),
                               ("+862088880900", "range", "+862088881100"),
                               ("95588", "service", None), ("4008800001", "400", None)):
        assert "another tenant" in refused(assign("globex", number, kind, "2001", last), 409)
    refused(assign("acme", "+862088881003", "did", "1001"), 409)  # inside its own range too
    ok(assign("globex", "+862088881010", "range", "2001", "+862088881019"), 201)  # adjacent
    ok(assign("globex", "+862088881020", "did", "2001"), 201)
    # bad formats
    for number, kind, last, field_name in (
            ("96000", "service", None, "service number"), ("1234", "service", None, "service"),
            ("9558800", "service", None, "service"), ("40012345", "400", None, "400 number"),
            ("5008800001", "400", None, "400 number"), ("12", "did", None, "did number"),
            ("+86-20-8888", "did", None, "did number"), ("+862088882000", "mobile", None,
                                                         "kind"),
            ("+862088882000", "range", "+86208888200", "range"),
            ("+862088882009", "range", "+862088882000", "range"),
            ("+862088882000", "range", "+862088883000", "1000"),
            ("+862088882000", "range", None, "last number"),
            ("+862088882000", "did", "+862088882001", "only a range")):
        assert field_name in refused(assign("acme", number, kind, "1001", last), 400), number
    # the target must be something the tenant has
    assert "target" in refused(assign("acme", "+862088882000", "did", "2001"), 400)
    assert "target" in refused(assign("acme", "+862088882000", "did", "flow:nope"), 400)
    assert "target" in refused(w.acme.patch("/numbers/95588", {"target": "9999"}), 400)
    refused(assign("nobody", "+862088882000"), 404)
    # the node's plan has every number, a range expanded
    plan = ok(w.root.get("/nodes/branch-1/plan"))
    dids = {t["id"]: {d["number"]: d["target"] for d in t["dids"]} for t in plan["tenants"]}
    assert dids["acme"] == {"95588": "echo", "955880": "echo", "12345": "1001",
                            "4008800001": "1001",
                            **{f"+86208888100{i}": "1001" for i in range(10)}}
    assert len(dids["globex"]) == 11
    # released, a number is free for another tenant
    ok(w.root.delete("/numbers/95588"), 204)
    ok(assign("globex", "95588", "service"), 201)


# --------------------------------------------------------------------------- flows, sections
def test_a_bad_flow_is_refused_with_its_path_and_nothing_stored(client: CheckedClient) -> None:
    w = two_tenants(client)
    for doc, where in ((flow_doc(nxt="nowhere"), "nodes.hello.next"),
                       ({**flow_doc(), "version": 0}, "version"),
                       ({**flow_doc(), "colour": "red"}, "colour"),
                       ({k: v for k, v in flow_doc().items() if k != "start"}, "start")):
        message = refused(w.acme.put("/flows/menu", doc), 400)
        assert where in message, message
    for name in ("Menu", "sys-main", "a" * 64, "-menu"):
        refused(w.acme.put(f"/flows/{name}", flow_doc()), 400)
    refused(w.acme.get("/flows/menu"), 404)
    assert ok(w.acme.get("/flows"))["total"] == 0
    assert not [e for e in ok(w.acme.get("/audit"))["items"] if e["object"] == "flow/menu"]
    stored = ok(w.acme.put("/flows/menu", flow_doc(greeting="Welcome")))
    assert stored["document"] == flow_doc(greeting="Welcome")
    refused(w.acme.put("/flows/menu", flow_doc(nxt="nowhere")), 400)
    assert ok(w.acme.get("/flows/menu"))["document"] == flow_doc(greeting="Welcome")
    # a flow in use is not removed
    ok(w.root.post("/numbers", {"tenant": "acme", "number": "+862088880001",
                                "target": "flow:menu"}), 201)
    assert "flow:menu" in refused(w.acme.delete("/flows/menu"), 400)
    ok(w.acme.get("/flows/menu"))
    ok(w.acme.patch("/numbers/+862088880001", {"target": "echo"}))
    ok(w.acme.delete("/flows/menu"), 204)
    refused(w.acme.delete("/flows/menu"), 404)


def test_a_bad_section_is_refused_with_its_path(client: CheckedClient) -> None:
    w = two_tenants(client)
    ok(w.acme.post("/extensions", {"number": "1001", "sip_password": ACME_SIP}), 201)
    for section, value, where in (
            ("hunt_groups", [{"number": "500", "members": ["9999"]}],
             "hunt_groups[0].members"),
            ("hunt_groups", [{"number": "500", "members": ["1001"], "ring_seconds": 0}],
             "hunt_groups[0].ring_seconds"),
            ("announcements", [{"number": "800", "text": "Hi", "voice": "fr"}],
             "announcements[0].voice"),
            ("outbound", [{"prefix": "0", "trunk": "nope"}], "outbound[0].trunk"),
            ("agents", [{"id": "a1", "extension": "9999"}], "agents[0].extension"),
            ("actions", {"databases": {"crm": "not a url"}}, "actions.databases"),
            ("hunt_groups", None, "hunt_groups")):
        message = refused(w.acme.put(f"/sections/{section}", {"value": value}), 400)
        assert where in message, message
    assert ok(w.acme.get("/sections/hunt_groups")) == {"section": "hunt_groups", "value": []}
    assert ok(w.acme.get("/sections/actions"))["value"] == {"databases": [], "hosts": []}
    refused(w.acme.put("/sections/trunks", {"value": []}), 404)
    refused(w.acme.get("/sections/trunks"), 404)
    refused(w.acme.put("/sections/hunt_groups", {}), 400)
    refused(w.acme.put("/sections/hunt_groups", {"value": [], "extra": 1}), 400)
    refused(w.acme.put("/sections/hunt_groups", ["value"]), 400)
    group = [{"number": "500", "members": ["1001"], "ring_seconds": 20}]
    assert ok(w.acme.put("/sections/hunt_groups", {"value": group}))["value"] == group
    assert ok(w.acme.get("/sections/hunt_groups"))["value"] == group
    # an extension a group still names is not removed
    assert "hunt_groups[0].members" in refused(w.acme.delete("/extensions/1001"), 400)
    assert ok(w.acme.get("/extensions"))["total"] == 1


# --------------------------------------------------------------------------- lifecycle
def test_suspension_blocks_logins_and_marks_the_plan(client: CheckedClient) -> None:
    w = two_tenants(client)
    ok(w.root.post("/nodes", {"id": "branch-1"}), 201)
    r = ok(w.root.patch("/tenants/acme", {"status": "suspended"}))
    assert r["status"] == "suspended"
    refused(w.acme.get("/numbers"), 401)
    refused(client.post(f"{V}/auth/tokens", json={"staff_id": "acme-admin",
                                                  "password": "acme password"}), 401)
    plan = ok(w.root.get("/nodes/branch-1/plan"))
    assert [(t["id"], t["status"]) for t in plan["tenants"]] == [
        ("acme", "suspended"), ("globex", "active")]
    refused(w.root.patch("/tenants/acme", {"status": "deleted"}), 400)
    ok(w.root.patch("/tenants/acme", {"status": "active"}))
    ok(w.acme.get("/numbers"))  # the same token works again


def test_a_deleted_tenant_leaves_the_plans_and_is_purged_after_retention(
        client: CheckedClient) -> None:
    w = two_tenants(client)
    populate(w)
    refused(w.root.delete("/tenants/acme?retention_days=soon"), 400)
    refused(w.root.delete("/tenants/acme?retention_days=5000"), 400)
    refused(w.root.delete("/tenants/nobody"), 404)
    r = ok(w.root.delete("/tenants/acme?retention_days=7"))
    assert r["status"] == "deleted"
    purge_after = dt.datetime.fromisoformat(r["purge_after"])
    assert abs(purge_after - (utcnow() + dt.timedelta(days=7))) < dt.timedelta(minutes=1)
    plan = ok(w.root.get("/nodes/branch-1/plan"))
    assert [t["id"] for t in plan["tenants"]] == ["globex"]
    refused(w.acme.get("/me"), 401)
    refused(client.post(f"{V}/auth/tokens", json={"staff_id": "acme-agent",
                                                  "password": "agent password 1"}), 401)
    assert ok(w.root.get("/tenants/acme"))["status"] == "deleted"  # kept meanwhile
    refused(w.root.patch("/tenants/acme", {"status": "active"}), 409)
    # its numbers stay reserved until the purge
    refused(w.root.post("/numbers", {"tenant": "globex", "number": "+862088880001",
                                     "target": "2001"}), 409)
    with w.session() as s:
        assert svc.purge(s, now=utcnow() + dt.timedelta(days=6)) == []
        s.commit()
        assert svc.purge(s, now=utcnow() + dt.timedelta(days=8)) == ["acme"]
        s.commit()
    refused(w.root.get("/tenants/acme"), 404)
    assert [t["id"] for t in ok(w.root.get("/tenants"))["items"]] == ["globex"]
    assert ok(w.root.get("/numbers?tenant=acme"))["total"] == 0
    ok(w.root.post("/numbers", {"tenant": "globex", "number": "+862088880001",
                                "target": "2001"}), 201)
    log = ok(w.root.get("/audit?limit=500"))["items"]
    assert [e["action"] for e in log if e["object"] == "tenant/acme"][:2] == [
        "purge", "delete"]  # the audit log keeps what was done
    ok(w.root.post("/tenants", {"id": "acme", "name": "Acme again", "domain": "acme.example",
                                "caller_id": "+862088880000"}), 201)


# --------------------------------------------------------------------------- audit
def test_every_change_is_audited_with_before_and_after(client: CheckedClient) -> None:
    w = two_tenants(client)
    acme, root = w.acme, w.root
    changes: list[tuple[As, str, str, Any, str, str, str | None]] = [
        (root, "POST", "/nodes", {"id": "branch-1"}, "create", "node/branch-1", None),
        (root, "PATCH", "/nodes/branch-1", {"name": "GZ"}, "update", "node/branch-1", None),
        (root, "POST", "/nodes/branch-1/claim", None, "claim", "node/branch-1", None),
        (root, "PATCH", "/tenants/acme", {"limits": {"ivr_flows": 5}}, "update",
         "tenant/acme", "acme"),
        (acme, "PATCH", "/tenants/acme", {"language": "zh-Hans"}, "update", "tenant/acme",
         "acme"),
        (acme, "POST", "/extensions", {"number": "1001", "sip_password": ACME_SIP},
         "create", "extension/1001", "acme"),
        (acme, "POST", "/extensions", {"number": "1002", "sip_password": ACME_SIP},
         "create", "extension/1002", "acme"),
        (root, "POST", "/numbers", {"tenant": "acme", "number": "+862088880001",
                                    "target": "1001"}, "create", "number/+862088880001",
         "acme"),
        (acme, "PATCH", "/numbers/+862088880001", {"target": "1002"}, "update",
         "number/+862088880001", "acme"),
        (root, "DELETE", "/numbers/+862088880001", None, "delete", "number/+862088880001",
         "acme"),
        (acme, "DELETE", "/extensions/1002", None, "delete", "extension/1002", "acme"),
        (acme, "PUT", "/roles/helpdesk", {"permissions": ["users.read"]}, "create",
         "role/helpdesk", "acme"),
        (acme, "PUT", "/roles/helpdesk", {"permissions": ["users.read", "export"]},
         "update", "role/helpdesk", "acme"),
        (acme, "POST", "/users", {"staff_id": "acme-hd", "password": "helpdesk pw 1",
                                  "role": "helpdesk", "phone": AGENT_PHONE}, "create",
         "user/acme-hd", "acme"),
        (acme, "PATCH", "/users/acme-hd", {"name": "Help Desk", "password": "new pw 12345"},
         "update", "user/acme-hd", "acme"),
        (acme, "PUT", "/flows/menu", flow_doc(), "create", "flow/menu", "acme"),
        (acme, "PUT", "/flows/menu", flow_doc(greeting="Hi"), "update", "flow/menu", "acme"),
        (acme, "DELETE", "/flows/menu", None, "delete", "flow/menu", "acme"),
        (acme, "PUT", "/sections/hunt_groups",
         {"value": [{"number": "500", "members": ["1001"]}]}, "update", "section/hunt_groups",
         "acme"),
        (acme, "GET", "/exports/extensions", None, "export", "export/extensions", "acme"),
        (root, "PATCH", "/tenants/globex", {"status": "suspended"}, "update",
         "tenant/globex", "globex"),
        (root, "DELETE", "/tenants/globex", None, "delete", "tenant/globex", "globex"),
        (root, "POST", "/tenants", {"id": "initech", "name": "Initech",
                                    "domain": "initech.example", "caller_id": "+15550100"},
         "create", "tenant/initech", "initech"),
    ]
    for who, method, url, body, action, obj, tenant in changes:
        r = who._call(method, url, body)
        assert 200 <= r.status_code < 300, (method, url, r.json)
        [entry] = ok(root.get("/audit?limit=1"))["items"]
        assert (entry["action"], entry["object"], entry["tenant"], entry["actor"]) == (
            action, obj, tenant, "root" if who is root else "acme-admin"), (method, url)
        if action in ("create", "claim", "export"):
            assert entry["before"] is None and entry["after"], entry
        elif action == "update":
            assert entry["before"] and entry["after"] and entry["before"] != entry["after"]
        else:  # a deleted tenant's entry keeps when it will be purged
            assert entry["before"] and (entry["after"] is None) != obj.startswith("tenant/")
    [user] = [e for e in ok(acme.get("/audit?limit=500"))["items"]
              if e["object"] == "user/acme-hd" and e["action"] == "update"]
    assert user["after"]["password"] == "changed" and user["after"]["name"] == "Help Desk"
    # the tenant's admin sees its own entries, newest first, paginated
    page = ok(acme.get("/audit?limit=3&offset=1"))
    assert len(page["items"]) == 3 and page["total"] > 10
    assert {e["tenant"] for e in ok(acme.get("/audit?limit=500"))["items"]} == {"acme"}


SECRETS = (ACME_SIP, "acme-db-secret", ACME_DB, "acme password", "agent password 1",
           "new agent pw 1", "root password 1")


def test_no_secret_in_the_audit_or_any_answer_but_a_nodes_plan(client: CheckedClient) -> None:
    w = two_tenants(client)
    populate(w)
    ok(w.acme.patch("/users/acme-agent", {"password": "new agent pw 1"}))
    ok(w.acme.put("/sections/actions", {"value": {"databases": {"crm": ACME_DB,
                                                                "erp": ACME_DB + "2"},
                                                  "hosts": []}}))
    sup_ok = ok(w.acme.post("/users", {"staff_id": "acme-sup", "password": "acme password",
                                       "role": "supervisor"}), 201)
    assert "password" not in sup_ok
    # every reading route, as the tenant and as the platform
    for who in (w.acme, w.root):
        for url in ("/me", "/tenants", "/tenants/acme", "/tenants/acme/usage",
                    "/numbers?tenant=acme", "/extensions?tenant=acme", "/users?tenant=acme",
                    "/users/acme-agent", "/roles", "/audit?limit=500", "/exports/users",
                    "/exports/numbers", "/exports/audit"):
            ok(who.get(url))
    for url in ("/flows", "/flows/menu", "/sections/actions", "/sections/announcements",
                "/exports/extensions"):
        ok(w.acme.get(url))
    ok(w.root.get("/nodes"))
    ok(w.root.get("/nodes/branch-1"))
    assert ok(w.acme.get("/sections/actions"))["value"] == {"databases": ["crm", "erp"],
                                                             "hosts": []}
    plan = ok(w.root.get("/nodes/branch-1/plan"))
    plan_text = str(plan)
    assert ACME_SIP in plan_text and ACME_DB in plan_text  # the node needs them
    shown = [s for s in client.seen if not re.fullmatch(rf"{V}/nodes/[^/]+/plan", s.path)]
    assert len(shown) > 50
    for seen in shown:
        for secret in SECRETS:
            assert secret not in seen.text, (seen.method, seen.path, secret)
    with w.session() as s:  # nor in the audit table itself
        rows = s.execute(text("select before, after from audit_log")).all()
    assert rows and not [r for r in rows for secret in SECRETS if secret in str(r)]


def test_exports_are_csv_and_audited(client: CheckedClient) -> None:
    w = two_tenants(client)
    populate(w)
    r = w.acme.get("/exports/users")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.headers["Content-Disposition"] == 'attachment; filename="users.csv"'
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [row["staff_id"] for row in rows] == ["acme-admin", "acme-agent"]
    assert list(rows[0]) == ["staff_id", "tenant", "role", "name", "language", "phone"]
    assert rows[1]["phone"] == AGENT_PHONE  # the admin holds pii.read
    [entry] = ok(w.acme.get("/audit?limit=1"))["items"]
    assert (entry["action"], entry["object"], entry["after"]) == (
        "export", "export/users", {"rows": 2})
    numbers = list(csv.DictReader(io.StringIO(w.acme.get("/exports/numbers")
                                              .get_data(as_text=True))))
    assert {n["number"] for n in numbers} == {"+862088880001", "95588", "4008800001",
                                              "+862088881000"}
    extensions = list(csv.DictReader(io.StringIO(w.acme.get("/exports/extensions")
                                                 .get_data(as_text=True))))
    assert extensions == [{"number": "1001", "name": "Alice Acme", "tenant": "acme"},
                          {"number": "1002", "name": "", "tenant": "acme"}]
    audit = list(csv.DictReader(io.StringIO(w.acme.get("/exports/audit")
                                            .get_data(as_text=True))))
    assert audit[0]["object"] == "export/extensions" and all(
        a["tenant"] == "acme" for a in audit)
    # the platform exports every tenant's rows
    everyone = w.root.get("/exports/extensions").get_data(as_text=True)
    assert "Alice Acme" in everyone and "Bob" in everyone
    exports = [e for e in ok(w.root.get("/audit?limit=500"))["items"]
               if e["action"] == "export"]
    assert [(e["actor"], e["object"]) for e in exports] == [
        ("root", "export/extensions"), ("acme-admin", "export/audit"),
        ("acme-admin", "export/extensions"), ("acme-admin", "export/numbers"),
        ("acme-admin", "export/users")]
    refused(w.acme.get("/exports/passwords"), 404)
    agent = login(client, "acme-agent", "agent password 1")
    refused(agent.get("/exports/users"), 403)


# --------------------------------------------------------------------------- nodes
def test_nodes_are_created_changed_and_claimed(client: CheckedClient) -> None:
    w = two_tenants(client)
    carrier = {"name": "carrier", "address": "192.0.2.10", "port": 5060}
    node = ok(w.root.post("/nodes", {"id": "branch-2", "name": "Guangzhou", "site": "gz",
                                     "tenants": ["acme"], "trunks": [carrier],
                                     "settings": {"ivr_ports": 8}}), 201)
    assert node | {"last_seen": None} == {
        "id": "branch-2", "name": "Guangzhou", "role": "branch", "site": "gz",
        "tenants": ["acme"], "trunks": [carrier], "settings": {"ivr_ports": 8},
        "enrolled": False, "plan_version": 0, "applied_version": 0, "plan_error": None,
        "online": False, "last_seen": None, "status": {}}
    refused(w.root.post("/nodes", {"id": "branch-2"}), 409)
    for body, where in (({"id": "Branch 3"}, "node id"), ({"id": "b3", "role": "core"}, "role"),
                        ({"id": "b3", "tenants": ["nobody"]}, "nobody"),
                        ({"id": "b3", "tenants": "acme"}, "tenants"),
                        ({"id": "b3", "settings": {"bogus": 1}}, "settings"),
                        ({"id": "b3", "settings": {"ivr_ports": "many"}}, "ivr_ports"),
                        ({"id": "b3", "settings": {"ivr_ports": None}}, "ivr_ports"),
                        ({"id": "b3", "settings": {"api_tokens": 5}}, "api_tokens"),
                        ({"id": "b3", "trunks": [{"name": "Bad Name", "address": "192.0.2.1"}]},
                         "trunks[0].name"),
                        ({"id": "b3", "trunks": [{"name": "c", "address": "999.0.0.1"}]},
                         "trunks[0].address"),
                        ({"id": "b3", "colour": "red"}, "colour")):
        assert where in refused(w.root.post("/nodes", body), 400), body
    refused(w.root.get("/nodes/b3"), 404)
    # acme routes out through the carrier: a trunk set without it is refused
    ok(w.acme.put("/sections/outbound", {"value": [{"prefix": "0", "trunk": "carrier",
                                                    "strip": 1}]}))
    assert "outbound[0].trunk" in refused(w.root.patch("/nodes/branch-2", {"trunks": []}),
                                          400)
    assert ok(w.root.get("/nodes/branch-2"))["trunks"] == [carrier]
    refused(w.root.patch("/nodes/branch-2", {}), 400)
    refused(w.root.patch("/nodes/branch-2", {"id": "other"}), 400)
    refused(w.root.patch("/nodes/nowhere", {"name": "x"}), 404)
    node = ok(w.root.patch("/nodes/branch-2", {"name": "GZ-1", "role": "hub", "tenants": None,
                                               "trunks": [carrier, {**carrier, "name": "b",
                                                                    "address": "192.0.2.11"}]}))
    assert (node["name"], node["role"], node["tenants"], len(node["trunks"])) == (
        "GZ-1", "hub", None, 2)
    # serving globex too, it still cannot drop the carrier: acme is still served
    refused(w.root.patch("/nodes/branch-2", {"trunks": [], "tenants": ["acme", "globex"]}),
            400)
    ok(w.root.patch("/nodes/branch-2", {"tenants": ["globex"], "trunks": [carrier]}))
    ok(w.root.patch("/nodes/branch-2", {"tenants": None}))
    assert [n["id"] for n in ok(w.root.get("/nodes"))["items"]] == ["branch-2"]
    # translation rules of the carrier trunk reach the node's plan; bad ones are refused
    rules = [{"prefix": "020", "replace": "+8620"}, {"prefix": "95", "replace": "95"}]
    ok(w.root.patch("/nodes/branch-2", {"trunks": [{**carrier, "translate": rules}]}))
    plan = ok(w.root.get("/nodes/branch-2/plan"))
    assert plan["trunks"][0]["translate"] == rules
    assert "trunks[0].translate[0].replace" in refused(w.root.patch("/nodes/branch-2", {
        "trunks": [{**carrier, "translate": [{"prefix": "020", "replace": "abc"}]}]}), 400)
    ok(w.root.patch("/nodes/branch-2", {"trunks": [carrier]}))

    # a claim code: shown once, only its hash kept, one use
    claim = ok(w.root.post("/nodes/branch-2/claim"), 201)
    code = claim["claim_code"]
    expires = dt.datetime.fromisoformat(claim["expires"])
    assert dt.timedelta(hours=23) < expires - utcnow() <= dt.timedelta(hours=24)
    refused(w.root.post("/nodes/nowhere/claim"), 404)
    with w.session() as s:
        row = s.execute(text("select * from nodes where id = 'branch-2'")).mappings().one()
    assert row["claim_hash"] == nodes.claim_hash(code)
    assert code not in str(dict(row)) and code.replace("-", "") not in str(dict(row))
    assert code not in w.root.get("/nodes/branch-2").get_data(as_text=True)
    assert code not in w.root.get("/audit").get_data(as_text=True)
    backend = nodes.DbLinkBackend(client.application.extensions["branchline.sessions"])
    second = ok(w.root.post("/nodes/branch-2/claim"), 201)["claim_code"]
    assert backend.redeem_claim(code) is None  # replaced by the new one
    assert backend.redeem_claim(second.lower()) == "branch-2"
    assert backend.redeem_claim(second) is None  # one use
    backend.certificate_issued("branch-2", "sha256:" + "ab" * 32)
    assert ok(w.root.get("/nodes/branch-2"))["enrolled"] is True


def test_the_plan_marks_suspended_tenants_and_its_version_rises_only_on_change(
        client: CheckedClient) -> None:
    w = two_tenants(client)
    populate(w)
    ok(w.root.post("/nodes", {"id": "branch-2", "tenants": ["globex"]}), 201)
    ok(w.root.post("/tenants", {"id": "initech", "name": "Initech",
                                "domain": "initech.example", "caller_id": "+15550100"}), 201)
    ok(w.root.patch("/tenants/globex", {"status": "suspended"}))
    ok(w.root.delete("/tenants/initech"))
    plan = ok(w.root.get("/nodes/branch-1/plan"))
    assert [(t["id"], t["status"]) for t in plan["tenants"]] == [
        ("acme", "active"), ("globex", "suspended")]
    assert {e["number"]: e["password"] for e in plan["tenants"][0]["extensions"]}[
        "1001"] == ACME_SIP

    def versions() -> tuple[int, int]:
        with w.session() as s:
            one, two = nodes.plan_for(s, "branch-1"), nodes.plan_for(s, "branch-2")
            s.commit()
        assert one is not None and two is not None
        assert one[1]["version"] == one[0] and two[1]["version"] == two[0]
        return one[0], two[0]

    assert versions() == (1, 1)
    assert versions() == (1, 1)  # nothing changed: the same version
    ok(w.acme.post("/extensions", {"number": "1003", "sip_password": "acme-sip-secret-3"}),
       201)
    assert versions() == (2, 1)  # branch-2 does not serve acme
    ok(w.acme.get("/extensions"))
    ok(w.acme.get("/audit"))  # reading changes nothing
    assert versions() == (2, 1)
    ok(w.root.patch("/tenants/globex", {"status": "active"}))
    assert versions() == (3, 2)
    ok(w.root.patch("/tenants/globex", {"name": "Globex Corp"}))  # not in the plan
    assert versions() == (3, 2)
    ok(w.root.patch("/nodes/branch-2", {"settings": {"ivr_ports": 4}}))
    assert versions() == (3, 3)
    with w.session() as s:
        assert nodes.plan_for(s, "nowhere") is None
    assert ok(w.root.get("/nodes/branch-1"))["plan_version"] == 3


def test_usage_is_summed_over_the_nodes_heard_recently(client: CheckedClient) -> None:
    w = two_tenants(client)
    ok(w.root.post("/nodes", {"id": "branch-1"}), 201)
    ok(w.root.post("/nodes", {"id": "branch-2"}), 201)
    backend = nodes.DbLinkBackend(client.application.extensions["branchline.sessions"])
    backend.heartbeat("branch-1", {"tenants": {"acme": {"calls": 3, "ivr_busy": 1,
                                                        "pstn_calls": 2}}})
    backend.heartbeat("branch-2", {"tenants": {"acme": {"calls": 1},
                                               "globex": {"calls": 5}}})
    backend.flush()  # heartbeats are written together, at most once a second
    usage = ok(w.acme.get("/tenants/acme/usage"))
    assert usage == {"tenant": "acme", "status": "active", "limits": usage["limits"],
                     "usage": {"calls": 4, "ivr_busy": 1, "pstn_calls": 2},
                     "nodes": ["branch-1", "branch-2"]}
    assert ok(w.root.get("/tenants/globex/usage"))["usage"]["calls"] == 5
    assert ok(w.root.get("/nodes/branch-1"))["online"] is True
    backend.disconnected("branch-2")
    assert ok(w.acme.get("/tenants/acme/usage"))["nodes"] == ["branch-1"]


# --------------------------------------------------------------------------- storage
def test_secrets_and_personal_data_are_encrypted_at_rest(client: CheckedClient) -> None:
    w = two_tenants(client)
    populate(w)
    with w.session() as s:
        sip = s.execute(text("select sip_password from extensions where number = '1001'")
                        ).scalar_one()
        phone = s.execute(text("select phone from users where staff_id = 'acme-agent'")
                          ).scalar_one()
        sections = s.execute(text("select sections from tenants where id = 'acme'")
                             ).scalar_one()
        hashes = s.execute(text("select password_hash from users")).scalars().all()
    assert ACME_SIP not in sip and sip.startswith("gAAAA")  # a Fernet token
    assert AGENT_PHONE not in phone and AGENT_PHONE[-4:] not in phone
    assert "acme-db-secret" not in sections and "Acme announcement" not in sections
    assert all(h.startswith("$argon2id$") and "password" not in h for h in hashes)
    # and read back through the API as stored
    sup = w.acme.post("/users", {"staff_id": "acme-sup", "password": "sup password",
                                 "role": "supervisor"})
    ok(sup, 201)
    assert ok(login(client, "acme-sup", "sup password").get("/users/acme-agent"))[
        "phone"] == AGENT_PHONE


# --------------------------------------------------------------------------- input
def test_lists_paginate(client: CheckedClient) -> None:
    w = two_tenants(client)
    for i in range(5):
        ok(w.root.post("/numbers", {"tenant": "acme", "number": f"+86208888000{i}",
                                    "target": "echo"}), 201)
    page = ok(w.acme.get("/numbers?limit=2&offset=2"))
    assert page["total"] == 5 and [n["number"] for n in page["items"]] == [
        "+862088880002", "+862088880003"]
    assert ok(w.acme.get("/numbers?offset=10")) == {"items": [], "total": 5}
    assert len(ok(w.root.get("/numbers?limit=500"))["items"]) == 5
    for query in ("limit=0", "limit=501", "offset=-1", "limit=ten", "offset=1.5"):
        assert "limit" in refused(w.acme.get(f"/numbers?{query}"), 400)


def test_bad_input_is_refused_with_its_reason(client: CheckedClient) -> None:
    w = two_tenants(client)
    root = w.root
    r = root.post("/tenants", {"id": "Bad Id", "name": "x", "domain": "x.example",
                               "caller_id": "+8610000"})
    assert "tenant id" in refused(r, 400)
    r = root.post("/tenants", {"id": 5, "name": "x", "domain": "x.example",
                               "caller_id": "+8610000"})
    assert refused(r, 400) == "id must be text"
    refused(root.post("/tenants", {"id": "x", "name": "x", "domain": "x.example",
                                   "caller_id": "+8610000", "plan": "gold"}), 400)
    refused(root.post("/tenants", {"id": "acme", "name": "x", "domain": "x.example",
                                   "caller_id": "+8610000"}), 409)
    refused(root.post("/tenants", {"id": "x", "name": "x", "domain": "acme.example",
                                   "caller_id": "+8610000"}), 409)
    refused(client.post(f"{V}/tenants", data="not json", content_type="application/json",
                        headers={"Authorization": f"Bearer {root.token}"}), 400)
    refused(root.post("/tenants", ["id"]), 400)
    refused(root.patch("/tenants/acme", {}), 400)
    refused(root.patch("/tenants/acme", {"domain": "other.example"}), 400)
    refused(root.patch("/tenants/acme", {"language": "fr"}), 400)
    # text longer than its column is a 400 on both databases (not an error of the store)
    long = "x" * 300
    refused(w.acme.post("/extensions", {"number": "1001", "sip_password": ACME_SIP,
                                        "name": long}), 400)
    refused(w.acme.post("/users", {"staff_id": "u1", "password": "long enough pw",
                                   "role": "agent", "name": long}), 400)
    refused(w.acme.patch("/users/acme-admin", {"name": long}), 400)
    refused(root.post("/numbers", {"tenant": "acme", "number": "+862088880001",
                                   "target": long}), 400)
    ok(root.post("/numbers", {"tenant": "acme", "number": "+862088880001",
                              "target": "echo"}), 201)
    refused(w.acme.patch("/numbers/+862088880001", {"target": long}), 400)
    refused(w.acme.patch("/numbers/+862088880001", {"target": 1001}), 400)
    refused(w.acme.patch("/numbers/+862088880001", {"target": "echo", "kind": "did"}), 400)
    # wrong types
    refused(w.acme.patch("/users/acme-admin", {"role": {"name": "admin"}}), 400)
    refused(w.acme.patch("/users/acme-admin", {"role": ["admin"]}), 400)
    refused(w.acme.patch("/users/acme-admin", {"phone": 8613800000001}), 400)
    refused(w.acme.patch("/users/acme-admin", {"password": "short"}), 400)
    refused(w.acme.patch("/users/acme-admin", {"email": "a@b.c"}), 400)
    refused(w.acme.post("/users", {"staff_id": "bad id", "password": "long enough pw",
                                   "role": "agent"}), 400)
    refused(w.acme.post("/users", {"staff_id": "u1", "password": "long enough pw",
                                   "role": "super_admin"}), 400)
    refused(w.acme.post("/users", {"staff_id": "acme-admin", "password": "long enough pw",
                                   "role": "agent"}), 409)
    refused(w.acme.post("/extensions", {"number": "1", "sip_password": ACME_SIP}), 400)
    refused(w.acme.post("/extensions", {"number": "1001", "sip_password": "short"}), 400)
    ok(w.acme.post("/extensions", {"number": "1001", "sip_password": ACME_SIP}), 201)
    refused(w.acme.post("/extensions", {"number": "1001", "sip_password": ACME_SIP}), 409)
    refused(w.acme.delete("/extensions/1009"), 404)
    refused(w.acme.put("/roles/helpdesk", {}), 400)


def test_routing_errors_and_an_unloadable_plan_answer_in_the_error_format(
        client: CheckedClient) -> None:
    w = two_tenants(client)
    refused(w.root.get("/nowhere"), 404)
    refused(w.root._call("PUT", "/tenants", {}), 405, "method_not_allowed")
    refused(w.root._call("DELETE", "/roles/helpdesk"), 405, "method_not_allowed")
    refused(w.root.get("/nodes/nowhere/plan"), 404)
    ok(w.root.post("/nodes", {"id": "branch-1"}), 201)
    with w.session() as s:  # a store edited behind the API's back
        s.execute(update(Node).where(Node.id == "branch-1").values(
            trunks=[{"name": "Bad Name", "address": "192.0.2.1"}]))
        s.commit()
    assert "trunks[0].name" in refused(w.root.get("/nodes/branch-1/plan"), 422,
                                       "invalid_plan")
