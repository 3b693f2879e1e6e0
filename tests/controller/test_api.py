"""The controller's REST API through Flask's test client, on SQLite and PostgreSQL:
tokens, scopes, the tenant taken from the token, 404 for every other tenant's object,
pagination, suspension, and the compiled plan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from controller.app import create_app
from controller.passwords import hash_password
from controller.store import User, engine_for, sessions


@pytest.fixture
def client(db_url: str) -> Iterator[FlaskClient]:
    engine = engine_for(db_url)
    with sessions(engine)() as s:  # the platform's first super-admin, as an installer would
        s.add(User(staff_id="root", tenant_id=None, role="super_admin", name="Root",
                   password_hash=hash_password("root password 1"), language="en"))
        s.commit()
    engine.dispose()
    app = create_app(db_url)
    with app.test_client() as c:
        yield c
    app.extensions["branchline.engine"].dispose()


def token(c: FlaskClient, staff_id: str, password: str, scopes: list[str] | None = None) -> str:
    r = c.post("/api/v1/auth/tokens", json={"staff_id": staff_id, "password": password,
                                           **({"scopes": scopes} if scopes else {})})
    assert r.status_code == 201, r.json
    return str(r.json["token"])


def auth(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def setup_two(c: FlaskClient) -> dict[str, str]:
    root = token(c, "root", "root password 1")
    for tid, dom, cid in (("acme", "acme.example", "+862088880000"),
                          ("globex", "globex.example", "+85230000000")):
        r = c.post("/api/v1/tenants", headers=auth(root), json={
            "id": tid, "name": tid.title(), "domain": dom, "caller_id": cid})
        assert r.status_code == 201, r.json
        r = c.post("/api/v1/users", headers=auth(root), json={
            "staff_id": f"{tid}-admin", "password": f"{tid} password", "role": "admin",
            "tenant": tid})
        assert r.status_code == 201, r.json
    return {"root": root, "acme": token(c, "acme-admin", "acme password"),
            "globex": token(c, "globex-admin", "globex password")}


def test_tokens_are_required_and_scoped(client: FlaskClient) -> None:
    r = client.get("/api/v1/tenants")
    assert r.status_code == 401 and r.json["error"]["id"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/tenants", headers=auth("forged")).status_code == 401
    assert client.post("/api/v1/auth/tokens", json={"staff_id": "root",
                                                    "password": "wrong"}).status_code == 401
    reader = token(client, "root", "root password 1", ["read"])
    assert client.get("/api/v1/tenants", headers=auth(reader)).status_code == 200
    r = client.post("/api/v1/tenants", headers=auth(reader), json={"id": "x"})
    assert r.status_code == 403 and r.json["error"]["id"] == "forbidden"


def test_every_resource_of_another_tenant_is_not_found(client: FlaskClient) -> None:
    t = setup_two(client)
    r = client.post("/api/v1/numbers", headers=auth(t["root"]), json={
        "tenant": "acme", "number": "+862088880001", "target": "1001"})
    assert r.status_code == 201
    r = client.post("/api/v1/extensions", headers=auth(t["acme"]), json={
        "number": "1001", "sip_password": "sip secret 1", "name": "Alice"})
    assert r.status_code == 201 and r.json["tenant"] == "acme"
    g = auth(t["globex"])
    assert client.get("/api/v1/tenants/acme", headers=g).status_code == 404
    assert client.get("/api/v1/tenants", headers=g).json["items"] == [
        {"id": "globex", "name": "Globex", "domain": "globex.example",
         "caller_id": "+85230000000", "status": "active"}]
    assert client.get("/api/v1/numbers", headers=g).json == {"items": [], "total": 0}
    assert client.get("/api/v1/numbers?tenant=acme", headers=g).status_code == 404
    assert client.patch("/api/v1/numbers/+862088880001", headers=g,
                        json={"target": "2001"}).status_code == 404
    assert client.get("/api/v1/extensions?tenant=acme", headers=g).status_code == 404
    assert client.get("/api/v1/extensions", headers=g).json["total"] == 0
    r = client.post("/api/v1/extensions", headers=g, json={  # lands in globex only
        "number": "1001", "sip_password": "sip secret 2", "tenant": "acme"})
    assert r.status_code == 404
    # a tenant admin cannot reach platform functions
    assert client.get("/api/v1/nodes/branch-1/plan", headers=g).status_code == 403
    assert client.patch("/api/v1/tenants/globex", headers=g,
                        json={"status": "suspended"}).status_code == 403
    # the owner can
    r = client.patch("/api/v1/numbers/+862088880001", headers=auth(t["acme"]),
                     json={"target": "1001"})
    assert r.status_code == 200


def test_numbers_are_unique_across_tenants_and_lists_paginate(client: FlaskClient) -> None:
    t = setup_two(client)
    root = auth(t["root"])
    for i in range(5):
        assert client.post("/api/v1/numbers", headers=root, json={
            "tenant": "acme", "number": f"+86208888000{i}", "target": "echo"}
        ).status_code == 201
    r = client.post("/api/v1/numbers", headers=root, json={
        "tenant": "globex", "number": "+862088880003", "target": "echo"})
    assert r.status_code == 409 and r.json["error"]["id"] == "conflict"
    page = client.get("/api/v1/numbers?limit=2&offset=2", headers=auth(t["acme"])).json
    assert page["total"] == 5 and [n["number"] for n in page["items"]] == [
        "+862088880002", "+862088880003"]
    assert client.get("/api/v1/numbers?limit=0", headers=auth(t["acme"])).status_code == 400


def test_suspension_blocks_logins_and_tokens_and_leaves_the_plan(client: FlaskClient) -> None:
    t = setup_two(client)
    root = auth(t["root"])
    assert client.post("/api/v1/numbers", headers=root, json={
        "tenant": "acme", "number": "+862088880099", "target": "echo"}).status_code == 201
    plan: dict[str, Any] = client.get("/api/v1/nodes/branch-1/plan", headers=root).json
    assert [x["id"] for x in plan["tenants"]] == ["acme", "globex"]
    r = client.patch("/api/v1/tenants/acme", headers=root, json={"status": "suspended"})
    assert r.status_code == 200 and r.json["status"] == "suspended"
    assert client.get("/api/v1/numbers", headers=auth(t["acme"])).status_code == 401
    assert client.post("/api/v1/auth/tokens", json={
        "staff_id": "acme-admin", "password": "acme password"}).status_code == 401
    plan = client.get("/api/v1/nodes/branch-1/plan", headers=root).json
    assert [x["id"] for x in plan["tenants"]] == ["globex"]
    assert client.patch("/api/v1/tenants/acme", headers=root,
                        json={"status": "active"}).status_code == 200
    assert client.get("/api/v1/numbers", headers=auth(t["acme"])).status_code == 200


def test_bad_input_is_refused_with_its_reason(client: FlaskClient) -> None:
    t = setup_two(client)
    root = auth(t["root"])
    r = client.post("/api/v1/tenants", headers=root, json={
        "id": "Bad Id", "name": "x", "domain": "x.example", "caller_id": "+8610000"})
    assert r.status_code == 400 and "tenant id" in r.json["error"]["message"]
    r = client.post("/api/v1/tenants", headers=root, json={
        "id": 5, "name": "x", "domain": "x.example", "caller_id": "+8610000"})
    assert r.status_code == 400 and r.json["error"]["message"] == "id must be text"
    r = client.post("/api/v1/tenants", headers=root, data="not json",
                    content_type="application/json")
    assert r.status_code == 400
    r = client.get("/api/v1/nodes/Bad Node/plan", headers=root)
    assert r.status_code == 422 and r.json["error"]["id"] == "invalid_plan"
    assert client.get("/api/v1/nowhere", headers=root).status_code == 404
