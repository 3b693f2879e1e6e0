"""The controller's Flask application: the REST API (``/api/v1``), first slice.

``create_app(db_url)`` is the app factory: it opens the store (migrated to the newest
schema) and registers the API blueprint. Every request but ``POST /api/v1/auth/tokens``
(staff id and password in, a new API token out, shown once) carries ``Authorization:
Bearer <token>``; the actor, and so the tenant, comes from the token, never from what
the client names. Changes need the ``write`` scope. Errors are ``{"error": {"id",
"message"}}`` with stable ids (``unauthorized``, ``forbidden``, ``not_found``,
``conflict``, ``bad_request``, ``invalid_plan``); lists take ``limit`` (1-500, default
100) and ``offset`` and answer ``{"items": [...], "total": n}``.

Routes: ``GET/POST /tenants``, ``GET /tenants/<id>``, ``PATCH /tenants/<id>``
(``{"status": "active"|"suspended"}``), ``GET/POST /numbers``, ``PATCH /numbers/<n>``
(``{"target": ...}``), ``GET/POST /extensions``, ``POST /users``, ``GET
/nodes/<id>/plan`` (platform: the compiled plan). The web pages, OpenAPI document and
the node link come next (issue 4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request
from sqlalchemy.orm import Session

from appliance.plan import PlanError
from controller import service as svc
from controller.store import Extension, Number, Tenant, engine_for, migrate, sessions

api = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_LIMIT = 500


def create_app(db_url: str) -> Flask:
    app = Flask("branchline-controller")
    engine = engine_for(db_url)
    migrate(engine)
    app.extensions["branchline.sessions"] = sessions(engine)
    app.extensions["branchline.engine"] = engine
    app.register_blueprint(api)

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


def _page(items: list[Any], render: Callable[[Any], dict[str, Any]]) -> Response:
    try:
        limit = int(request.args.get("limit", "100"))
        offset = int(request.args.get("offset", "0"))
    except ValueError:
        raise svc.Invalid("limit and offset are integers") from None
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise svc.Invalid(f"limit 1-{MAX_LIMIT}, offset 0 or more")
    return jsonify({"items": [render(x) for x in items[offset:offset + limit]],
                    "total": len(items)})


@api.before_request
def _authenticate() -> tuple[Response, int] | None:
    if request.endpoint == "api.issue_token":
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


def _tenant(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "domain": t.domain, "caller_id": t.caller_id,
            "status": t.status}


def _number(n: Number) -> dict[str, Any]:
    return {"number": n.number, "tenant": n.tenant_id, "kind": n.kind, "target": n.target}


def _extension(e: Extension) -> dict[str, Any]:
    return {"number": e.number, "name": e.name, "tenant": e.tenant_id}


def _commit() -> None:
    _session().commit()


# --------------------------------------------------------------------------- routes
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


@api.get("/tenants")
def list_tenants() -> Response:
    return _page(svc.list_tenants(_session(), _actor()), _tenant)


@api.post("/tenants")
def create_tenant() -> tuple[Response, int]:
    doc = _body()
    tenant = svc.create_tenant(_session(), _actor(), id=_text(doc, "id"), name=_text(doc, "name"),
                               domain=_text(doc, "domain"), caller_id=_text(doc, "caller_id"))
    _commit()
    return jsonify(_tenant(tenant)), 201


@api.get("/tenants/<tenant_id>")
def get_tenant(tenant_id: str) -> Response:
    return jsonify(_tenant(svc.get_tenant(_session(), _actor(), tenant_id)))


@api.patch("/tenants/<tenant_id>")
def update_tenant(tenant_id: str) -> Response:
    doc = _body()
    if set(doc) != {"status"}:
        raise svc.Invalid('the body is {"status": "active"|"suspended"}')
    tenant = svc.set_tenant_status(_session(), _actor(), tenant_id, str(doc["status"]))
    _commit()
    return jsonify(_tenant(tenant))


@api.get("/numbers")
def list_numbers() -> Response:
    return _page(svc.list_numbers(_session(), _actor(), request.args.get("tenant")), _number)


@api.post("/numbers")
def assign_number() -> tuple[Response, int]:
    doc = _body()
    number = svc.assign_number(_session(), _actor(), _text(doc, "tenant"),
                               _text(doc, "number"), _text(doc, "target"),
                               _opt_text(doc, "kind") or "did")
    _commit()
    return jsonify(_number(number)), 201


@api.patch("/numbers/<number>")
def route_number(number: str) -> Response:
    doc = _body()
    if set(doc) != {"target"} or not isinstance(doc["target"], str):
        raise svc.Invalid('the body is {"target": "<extension, group or flow:name>"}')
    row = svc.route_number(_session(), _actor(), number, doc["target"])
    _commit()
    return jsonify(_number(row))


@api.get("/extensions")
def list_extensions() -> Response:
    return _page(svc.list_extensions(_session(), _actor(), request.args.get("tenant")),
                 _extension)


@api.post("/extensions")
def add_extension() -> tuple[Response, int]:
    doc = _body()
    ext = svc.add_extension(_session(), _actor(), _text(doc, "number"),
                            _text(doc, "sip_password"), _text(doc, "name"),
                            tenant_id=_opt_text(doc, "tenant"))
    _commit()
    return jsonify(_extension(ext)), 201


@api.post("/users")
def create_user() -> tuple[Response, int]:
    doc = _body()
    user = svc.create_user(_session(), _actor(), staff_id=_text(doc, "staff_id"),
                           password=_text(doc, "password"), role=_text(doc, "role"),
                           tenant_id=_opt_text(doc, "tenant"), name=_text(doc, "name"))
    _commit()
    return jsonify({"staff_id": user.staff_id, "tenant": user.tenant_id,
                    "role": user.role}), 201


@api.get("/nodes/<node_id>/plan")
def node_plan(node_id: str) -> Response | tuple[Response, int]:
    actor = _actor()
    if not actor.platform:
        raise svc.Forbidden("platform staff only")
    try:
        version = int(request.args.get("version", "1"))
        return jsonify(svc.compile_plan(_session(), node_id=node_id, version=version))
    except PlanError as exc:
        return _error(422, "invalid_plan", str(exc))
    except ValueError:
        raise svc.Invalid("version is an integer") from None
