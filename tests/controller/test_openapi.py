"""``controller/openapi.yaml``: valid OpenAPI 3.1, exactly the routes of the ``api``
blueprint, the error ids the code raises, served without a token; and the checker that
holds every answer of the API tests (tests/controller/test_api.py) to the document
refuses what the document does not describe."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from controller import app as app_module
from controller import service as svc
from controller.app import create_app
from tests.controller.openapi_check import (
    CheckedClient,
    Undocumented,
    blueprint_routes,
    checker,
)

DOC = checker().doc
METHODS = {"get", "put", "post", "patch", "delete"}


def documented_routes() -> set[tuple[str, str]]:
    return {(m, p) for p, item in DOC["paths"].items() for m in item if m in METHODS}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[CheckedClient]:
    app = create_app(f"sqlite:///{tmp_path / 'c.sqlite'}")
    app.test_client_class = CheckedClient
    with app.test_client() as c:
        yield c  # type: ignore[misc]
    app.extensions["branchline.engine"].dispose()


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1.")
    validate(DOC)


def test_the_document_names_every_route_and_no_other() -> None:
    routes, documented = blueprint_routes(), documented_routes()
    assert routes - documented == set(), "routes missing from controller/openapi.yaml"
    assert documented - routes == set(), "stale entries in controller/openapi.yaml"


def test_operations_are_named_and_secured_consistently() -> None:
    ids = [op["operationId"] for item in DOC["paths"].values()
           for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids))
    assert DOC["security"] == [{"bearerAuth": []}]
    assert DOC["components"]["securitySchemes"]["bearerAuth"] == {
        **DOC["components"]["securitySchemes"]["bearerAuth"], "type": "http",
        "scheme": "bearer"}
    public = set()
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            if op.get("security") == []:
                public.add((method, path))
                continue
            assert "401" in op["responses"], (method, path)  # no or a bad token
            if method != "get":
                assert "403" in op["responses"], (method, path)  # a read-only token
            if any(p.get("$ref", "").endswith(("/limit", "/offset"))
                   for p in op.get("parameters", [])):
                assert "400" in op["responses"], (method, path)  # a bad page
    assert public == {("get", "/openapi.json"), ("post", "/auth/tokens")}


def test_the_error_ids_are_those_the_code_raises() -> None:
    documented = set(DOC["components"]["schemas"]["Error"]["properties"]["error"]
                     ["properties"]["id"]["enum"])
    raised = set()
    pending = [svc.ServiceError]
    while pending:
        cls = pending.pop()
        raised.add(cls.error_id)
        pending.extend(cls.__subclasses__())
    raised |= set(re.findall(r'_error\(\d+, "([a-z_]+)"', inspect.getsource(app_module)))
    assert raised == documented == {
        "unauthorized", "forbidden", "not_found", "conflict", "quota_exceeded",
        "bad_request", "invalid_plan", "method_not_allowed"}


def test_the_document_is_served_without_a_token(client: CheckedClient) -> None:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.json == json.loads(json.dumps(DOC))
    assert client.get("/api/v1/me").status_code == 401  # the rest still needs one


def test_the_checker_refuses_what_the_document_does_not_describe() -> None:
    c = checker()
    ok = json.dumps({"items": [], "total": 0}).encode()
    c.check_response("GET", "/api/v1/tenants", 200, "application/json", ok)
    with pytest.raises(Undocumented, match="418, which is not documented"):
        c.check_response("GET", "/api/v1/tenants", 418, "application/json", ok)
    with pytest.raises(Undocumented, match="'total' is a required property"):
        c.check_response("GET", "/api/v1/tenants", 200, "application/json", b'{"items": []}')
    with pytest.raises(Undocumented, match="Additional properties"):
        c.check_response("GET", "/api/v1/tenants", 200, "application/json",
                         b'{"items": [], "total": 0, "next": null}')
    with pytest.raises(Undocumented, match="sent text/html"):
        c.check_response("GET", "/api/v1/tenants", 200, "text/html", b"<p>")
    with pytest.raises(Undocumented, match="is not one of"):  # an error id not in the enum
        c.check_response("GET", "/api/v1/tenants", 401, "application/json",
                         b'{"error": {"id": "nope", "message": "x"}}')
    with pytest.raises(Undocumented, match="no documented body"):
        c.check_response("DELETE", "/api/v1/numbers/+8620", 204, "text/html", b"x")
    with pytest.raises(Undocumented, match="not documented, yet answered 200"):
        c.check_response("GET", "/api/v1/nowhere", 200, "application/json", b"{}")
    c.check_response("GET", "/api/v1/nowhere", 404, "application/json",
                     b'{"error": {"id": "not_found", "message": "no such resource"}}')
    c.check_response("PUT", "/api/v1/tenants", 405, "application/json",
                     b'{"error": {"id": "method_not_allowed", "message": "no"}}')
    with pytest.raises(Undocumented, match="date-time"):  # formats are checked
        c.check_response("GET", "/api/v1/audit", 200, "application/json", json.dumps({
            "items": [{"id": 1, "at": "yesterday", "actor": "root", "tenant": None,
                       "action": "create", "object": "tenant/x", "before": None,
                       "after": None}], "total": 1}).encode())
    with pytest.raises(Undocumented, match="Additional properties"):  # accepted requests
        c.check_request("POST", "/api/v1/extensions", {"number": "1001",
                                                       "sip_password": "12345678",
                                                       "colour": "red"})
