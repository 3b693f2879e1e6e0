"""The controller's Flask application: the REST API (``/api/v1``).

``create_app(db_url)`` is the app factory: it opens the store (migrated to the newest
schema) and registers the API blueprint. Every request but ``POST /api/v1/auth/tokens``
(staff id and password in, a new API token out, shown once) and ``GET
/api/v1/openapi.json`` carries ``Authorization: Bearer <token>``; the actor, and so the
tenant, comes from the token, never from what the client names. Changes need the
``write`` scope. Errors are ``{"error": {"id", "message"}}`` with stable ids
(``unauthorized``, ``forbidden``, ``not_found``, ``conflict``, ``quota_exceeded``,
``bad_request``, ``invalid_plan``, ``method_not_allowed``); lists take ``limit``
(1-500, default 100) and ``offset`` and answer ``{"items": [...], "total": n}``.

Every route, its body and its answers are described in ``controller/openapi.yaml``
(served as ``/api/v1/openapi.json``; a test keeps the two in step) and in
docs/CONTROLLER.md.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Flask, Response, g, jsonify, request
from sqlalchemy.orm import Session

from appliance.plan import PlanError
from controller import crypto, nodes, web
from controller import service as svc
from controller.store import Extension, Flow, engine_for, migrate, sessions

api = Blueprint("api", __name__, url_prefix="/api/v1")
OPENAPI = Path(__file__).resolve().parent / "openapi.yaml"  # the API, described
MAX_LIMIT = 500


def create_app(db_url: str, *, key_file: Path = Path("controller.key"),
               secure_cookies: bool = True) -> Flask:
    """The controller app on ``db_url``; sensitive fields are encrypted with the key
    from ``$BRANCHLINE_SECRET_KEY`` or ``key_file`` (created on first use), which also
    signs the web pages' session cookies (``secure_cookies``: sent over HTTPS only)."""
    app = Flask("branchline-controller")
    key = crypto.load_key(key_file)
    crypto.use_key(key)
    engine = engine_for(db_url)
    migrate(engine)
    app.extensions["branchline.sessions"] = sessions(engine)
    app.extensions["branchline.engine"] = engine
    app.register_blueprint(api)
    web.init_app(app, secret_key=key, secure_cookies=secure_cookies)

    @app.errorhandler(svc.ServiceError)
    def service_error(exc: svc.ServiceError) -> tuple[Response, int]:
        return _error(exc.status, exc.error_id, str(exc))

    @app.errorhandler(404)
    def not_found(_: Exception) -> tuple[Response, int]:
        return _error(404, "not_found", "no such resource")

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> tuple[Response, int]:
        return _error(405, "method_not_allowed", "method not allowed here")

    @app.teardown_appcontext
    def close_session(_: BaseException | None) -> None:
        session = g.pop("session", None)
        if session is not None:
            session.close()

    return app


def _error(status: int, error_id: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"id": error_id, "message": message}}), status


def _session() -> Session:
    if "session" not in g:
        from flask import current_app

        g.session = current_app.extensions["branchline.sessions"]()
    session: Session = g.session
    return session


def _body() -> dict[str, Any]:
    doc = request.get_json(silent=True)
    if not isinstance(doc, dict):
        raise svc.Invalid("the body must be a JSON object")
    return doc


def _text(doc: dict[str, Any], key: str) -> str:
    """A text field of the body ("" when absent: the service says what is missing)."""
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise svc.Invalid(f"{key} must be text")
    return value


def _opt_text(doc: dict[str, Any], key: str) -> str | None:
    return None if doc.get(key) is None else _text(doc, key)


def _window() -> tuple[int, int]:
    """``offset`` and ``limit`` of a list request."""
    try:
        limit = int(request.args.get("limit", "100"))
        offset = int(request.args.get("offset", "0"))
    except ValueError:
        raise svc.Invalid("limit and offset are integers") from None
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise svc.Invalid(f"limit 1-{MAX_LIMIT}, offset 0 or more")
    return offset, limit


def _page(items: list[Any], render: Callable[[Any], dict[str, Any]]) -> Response:
    offset, limit = _window()
    return jsonify({"items": [render(x) for x in items[offset:offset + limit]],
                    "total": len(items)})


@api.before_request
def _authenticate() -> tuple[Response, int] | None:
    if request.endpoint in ("api.issue_token", "api.openapi_document"):
        return None
    header = request.headers.get("Authorization", "")
    found = svc.actor_for_token(_session(), header[7:]) if header.startswith("Bearer ") \
        else None
    if found is None:
        response, status = _error(401, "unauthorized", "a valid bearer token is required")
        response.headers["WWW-Authenticate"] = 'Bearer realm="branchline"'
        return response, status
    g.actor, g.scopes = found
    if request.method not in ("GET", "HEAD") and "write" not in g.scopes:
        return _error(403, "forbidden", "this token may only read")
    return None


def _actor() -> svc.Actor:
    actor: svc.Actor = g.actor
    return actor


def _extension(e: Extension) -> dict[str, Any]:
    return {"number": e.number, "name": e.name, "tenant": e.tenant_id}


def _flow(f: Flow) -> dict[str, Any]:
    return {"name": f.name, "document": f.document, "updated_at": svc.isoformat(f.updated_at)}


def _commit() -> None:
    _session().commit()


def _only(doc: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = set(doc) - allowed
    if unknown:
        raise svc.Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
    return doc


# --------------------------------------------------------------------------- auth
@api.get("/openapi.json")
def openapi_document() -> Response:
    """This API's OpenAPI 3.1 document (``controller/openapi.yaml``), without a token."""
    return jsonify(_openapi())


@functools.cache
def _openapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    return doc


@api.post("/auth/tokens")
def issue_token() -> tuple[Response, int]:
    doc = _body()
    s = _session()
    actor = svc.authenticate(s, _text(doc, "staff_id"), _text(doc, "password"))
    if actor is None:
        return _error(401, "unauthorized", "unknown staff id or wrong password")
    scopes = doc.get("scopes", list(svc.SCOPES))
    if not isinstance(scopes, list):
        raise svc.Invalid("scopes is a list")
    token = svc.issue_token(s, actor, tuple(str(x) for x in scopes))
    _commit()
    return jsonify({"token": token, "tenant": actor.tenant_id, "role": actor.role}), 201


@api.get("/me")
def me() -> Response:
    actor = _actor()
    return jsonify({"staff_id": actor.staff_id, "tenant": actor.tenant_id,
                    "role": actor.role, "permissions": sorted(actor.permissions),
                    "language": actor.language, "scopes": sorted(g.scopes)})


# --------------------------------------------------------------------------- tenants
@api.get("/tenants")
def list_tenants() -> Response:
    return _page(svc.list_tenants(_session(), _actor()), svc.tenant_doc)


@api.post("/tenants")
def create_tenant() -> tuple[Response, int]:
    doc = _only(_body(), {"id", "name", "domain", "caller_id", "language"})
    tenant = svc.create_tenant(_session(), _actor(), id=_text(doc, "id"), name=_text(doc, "name"),
                               domain=_text(doc, "domain"), caller_id=_text(doc, "caller_id"),
                               language=_opt_text(doc, "language") or "en")
    _commit()
    return jsonify(svc.tenant_doc(tenant)), 201


@api.get("/tenants/<tenant_id>")
def get_tenant(tenant_id: str) -> Response:
    return jsonify(svc.tenant_doc(svc.get_tenant(_session(), _actor(), tenant_id)))


@api.patch("/tenants/<tenant_id>")
def update_tenant(tenant_id: str) -> Response:
    tenant = svc.update_tenant(_session(), _actor(), tenant_id, _body())
    _commit()
    return jsonify(svc.tenant_doc(tenant))


@api.delete("/tenants/<tenant_id>")
def delete_tenant(tenant_id: str) -> Response:
    days = request.args.get("retention_days", str(svc.RETENTION_DAYS))
    if not days.isdigit():
        raise svc.Invalid("retention_days is a whole number")
    tenant = svc.delete_tenant(_session(), _actor(), tenant_id, int(days))
    _commit()
    return jsonify({**svc.tenant_doc(tenant), "purge_after": tenant.purge_after.isoformat()
                    if tenant.purge_after else None})


@api.get("/tenants/<tenant_id>/usage")
def tenant_usage(tenant_id: str) -> Response:
    return jsonify(nodes.tenant_usage(_session(), _actor(), tenant_id))


# --------------------------------------------------------------------------- numbers
@api.get("/numbers")
def list_numbers() -> Response:
    return _page(svc.list_numbers(_session(), _actor(), request.args.get("tenant")),
                 svc.number_doc)


@api.post("/numbers")
def assign_number() -> tuple[Response, int]:
    doc = _only(_body(), {"tenant", "number", "target", "kind", "last"})
    number = svc.assign_number(_session(), _actor(), _text(doc, "tenant"),
                               _text(doc, "number"), _text(doc, "target"),
                               _opt_text(doc, "kind") or "did", _opt_text(doc, "last"))
    _commit()
    return jsonify(svc.number_doc(number)), 201


@api.get("/numbers/<number>")
def get_number(number: str) -> Response:
    return jsonify(svc.number_doc(svc.get_number(_session(), _actor(), number)))


@api.patch("/numbers/<number>")
def route_number(number: str) -> Response:
    doc = _body()
    if set(doc) != {"target"} or not isinstance(doc["target"], str):
        raise svc.Invalid('the body is {"target": "<extension, group or flow:name>"}')
    row = svc.route_number(_session(), _actor(), number, doc["target"])
    _commit()
    return jsonify(svc.number_doc(row))


@api.delete("/numbers/<number>")
def release_number(number: str) -> tuple[str, int]:
    svc.release_number(_session(), _actor(), number)
    _commit()
    return "", 204


# --------------------------------------------------------------------------- extensions
@api.get("/extensions")
def list_extensions() -> Response:
    return _page(svc.list_extensions(_session(), _actor(), request.args.get("tenant")),
                 _extension)


@api.post("/extensions")
def add_extension() -> tuple[Response, int]:
    doc = _only(_body(), {"number", "sip_password", "name", "tenant"})
    ext = svc.add_extension(_session(), _actor(), _text(doc, "number"),
                            _text(doc, "sip_password"), _text(doc, "name"),
                            tenant_id=_opt_text(doc, "tenant"))
    _commit()
    return jsonify(_extension(ext)), 201


@api.delete("/extensions/<number>")
def delete_extension(number: str) -> tuple[str, int]:
    svc.delete_extension(_session(), _actor(), number)
    _commit()
    return "", 204


# --------------------------------------------------------------------------- users, roles
@api.get("/users")
def list_users() -> Response:
    actor = _actor()
    return _page(svc.list_users(_session(), actor, request.args.get("tenant")),
                 lambda u: svc.user_doc(actor, u))


@api.post("/users")
def create_user() -> tuple[Response, int]:
    doc = _only(_body(), {"staff_id", "password", "role", "tenant", "name", "phone",
                          "language"})
    actor = _actor()
    user = svc.create_user(_session(), actor, staff_id=_text(doc, "staff_id"),
                           password=_text(doc, "password"), role=_text(doc, "role"),
                           tenant_id=_opt_text(doc, "tenant"), name=_text(doc, "name"),
                           phone=_opt_text(doc, "phone"), language=_text(doc, "language"))
    _commit()
    return jsonify(svc.user_doc(actor, user)), 201


@api.get("/users/<staff_id>")
def get_user(staff_id: str) -> Response:
    actor = _actor()
    return jsonify(svc.user_doc(actor, svc.get_user(_session(), actor, staff_id)))


@api.patch("/users/<staff_id>")
def update_user(staff_id: str) -> Response:
    actor = _actor()
    user = svc.update_user(_session(), actor, staff_id, _body())
    _commit()
    return jsonify(svc.user_doc(actor, user))


@api.get("/roles")
def list_roles() -> Response:
    return jsonify({"items": svc.list_roles(_session(), _actor()),
                    "permissions": list(svc.PLATFORM_PERMISSIONS if _actor().platform
                                        else svc.TENANT_PERMISSIONS)})


@api.put("/roles/<name>")
def define_role(name: str) -> Response:
    doc = _only(_body(), {"permissions"})
    role = svc.define_role(_session(), _actor(), name, doc.get("permissions"))  # type: ignore[arg-type]
    _commit()
    return jsonify({"name": role.name, "permissions": role.permissions, "builtin": False})


# --------------------------------------------------------------------------- flows, sections
@api.get("/flows")
def list_flows() -> Response:
    return _page(svc.list_flows(_session(), _actor()), _flow)


@api.get("/flows/<name>")
def get_flow(name: str) -> Response:
    return jsonify(_flow(svc.get_flow(_session(), _actor(), name)))


@api.put("/flows/<name>")
def put_flow(name: str) -> Response:
    flow = svc.put_flow(_session(), _actor(), name, _body())
    _commit()
    return jsonify(_flow(flow))


@api.delete("/flows/<name>")
def delete_flow(name: str) -> tuple[str, int]:
    svc.delete_flow(_session(), _actor(), name)
    _commit()
    return "", 204


@api.get("/sections/<section>")
def get_section(section: str) -> Response:
    value = svc.get_section(_session(), _actor(), section)
    return jsonify({"section": section, "value": svc.section_shown(section, value)})


@api.put("/sections/<section>")
def put_section(section: str) -> Response:
    doc = _only(_body(), {"value"})
    if "value" not in doc:
        raise svc.Invalid('the body is {"value": <the section>}')
    value = svc.put_section(_session(), _actor(), section, doc["value"])
    _commit()
    return jsonify({"section": section, "value": svc.section_shown(section, value)})


# --------------------------------------------------------------------------- audit, exports
@api.get("/audit")
def list_audit() -> Response:
    offset, limit = _window()
    entries, total = svc.audit_page(_session(), _actor(), offset, limit)
    return jsonify({"items": [svc.audit_doc(a) for a in entries], "total": total})


@api.get("/exports/<kind>")
def export(kind: str) -> Response:
    rows = svc.export(_session(), _actor(), kind)
    _commit()
    return Response(csv_text(rows), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{kind}.csv"'})


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:  # every row's fields (a range has "last", a single number not)
        writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


# --------------------------------------------------------------------------- nodes
@api.get("/nodes")
def list_nodes() -> Response:
    return _page(nodes.list_nodes(_session(), _actor()), nodes.node_doc)


@api.post("/nodes")
def create_node() -> tuple[Response, int]:
    doc = _only(_body(), {"id", "name", "role", "site", "tenants", "trunks", "settings"})
    node = nodes.create_node(_session(), _actor(), id=_text(doc, "id"), name=_text(doc, "name"),
                             role=_opt_text(doc, "role") or "branch", site=_text(doc, "site"),
                             tenants=doc.get("tenants"), trunks=doc.get("trunks"),
                             settings=doc.get("settings"))
    _commit()
    return jsonify(nodes.node_doc(node)), 201


@api.get("/nodes/<node_id>")
def get_node(node_id: str) -> Response:
    return jsonify(nodes.node_doc(nodes.get_node(_session(), _actor(), node_id)))


@api.patch("/nodes/<node_id>")
def update_node(node_id: str) -> Response:
    node = nodes.update_node(_session(), _actor(), node_id, _body())
    _commit()
    return jsonify(nodes.node_doc(node))


@api.post("/nodes/<node_id>/claim")
def issue_claim(node_id: str) -> tuple[Response, int]:
    code, expires = nodes.issue_claim(_session(), _actor(), node_id)
    _commit()
    return jsonify({"node": node_id, "claim_code": code, "expires": expires.isoformat()}), 201


@api.get("/nodes/<node_id>/plan")
def node_plan(node_id: str) -> Response | tuple[Response, int]:
    """The plan the node would be sent now (secrets included: nodes.manage only)."""
    actor = _actor()
    svc._require(actor, "nodes.manage")
    node = nodes.get_node(_session(), actor, node_id)
    try:
        return jsonify(nodes.compile_plan(_session(), node, max(node.plan_version, 1)))
    except PlanError as exc:
        return _error(422, "invalid_plan", str(exc))
