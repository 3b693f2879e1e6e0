"""The controller's web pages: the NOC for platform staff, and each tenant's own
administration, server-rendered (Jinja2 templates, plain HTML forms) in English,
Simplified and Traditional Chinese.

Theory of operation
-------------------
The pages are a thin edge over :mod:`controller.service` and :mod:`controller.nodes`.
A view reads its form, calls one service function with the logged-in
:class:`~controller.service.Actor`, commits and redirects (post/redirect/get). A
refusal (:class:`~controller.service.ServiceError`) rolls the transaction back and
shows the page again with the reason and the input as it was typed (never a
password). No view queries the store, so tenancy and permissions are the service's:
another tenant's object is "not found" (404) here as in the API. Platform pages
(``/noc``) answer 403 to a tenant's user; tenant pages (``/admin``) send platform
staff to the NOC, where they manage tenants.

Sessions are Flask's signed cookie (HttpOnly, SameSite=Lax, Secure unless configured
off for plain-http demos), signed with an HMAC of the controller's secret key, so every
controller process sharing that key shares the sessions. The cookie holds the staff
id, the login time (a session ends 8 hours after login, busy or not) and the CSRF
token every POST form carries (400 without it). Each request loads the actor again
with :func:`~controller.service.actor_for_staff`: a suspended tenant, a deleted user or
a changed role takes effect at the next click. Failed logins are logged with the
staff id and address, never the password, and answer the same whether or not the
staff id exists.

The language is the actor's (their own choice, else their tenant's default); before
login, the one picked on the login page, else the browser's preference.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec

import yaml
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from appliance.plan import VOICES
from controller import languages, nodes
from controller import service as svc

log = logging.getLogger("branchline.controller.web")

web = Blueprint("web", __name__, template_folder="templates", static_folder="static",
                static_url_path="/web-static")

SESSION_LIFETIME = dt.timedelta(hours=8)
_SESSION_LABEL = b"branchline controller web session v1"
_PUBLIC = ("web.login", "web.set_language")  # pages served without a login
AUDIT_PAGE = 100  # audit entries per page
MAX_FLOW_TEXT = 256 * 1024


Page = str | Response | tuple[str, int]
P = ParamSpec("P")


def init_app(app: Flask, *, secret_key: bytes, secure_cookies: bool = True) -> None:
    """Register the pages on ``app``; sessions are signed with a key derived from the
    controller's ``secret_key`` (the Fernet key of :mod:`controller.crypto`)."""
    app.config.update(
        SECRET_KEY=session_key(secret_key),
        SESSION_COOKIE_NAME="branchline_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.register_blueprint(web)
    app.teardown_appcontext(_close_db)


def session_key(secret_key: bytes) -> bytes:
    """The key that signs session cookies: an HMAC of the controller's key with a fixed
    label (the encryption key itself never signs anything)."""
    return hmac.new(secret_key, _SESSION_LABEL, hashlib.sha256).digest()


# --------------------------------------------------------------------------- plumbing
def _db() -> Session:
    if "web_db" not in g:
        g.web_db = current_app.extensions["branchline.sessions"]()
    db: Session = g.web_db
    return db


def _close_db(_: BaseException | None) -> None:
    db = g.pop("web_db", None)
    if db is not None:
        db.close()


def _actor() -> svc.Actor:
    actor: svc.Actor | None = g.get("web_actor")
    if actor is None:  # the guard below lets no one without a session this far
        abort(403)
    return actor


def _language() -> str:
    actor: svc.Actor | None = g.get("web_actor")
    if actor is not None:
        return actor.language if actor.language in languages.LANGUAGES else "en"
    chosen = session.get("language")
    if chosen in languages.LANGUAGES:
        return str(chosen)
    return languages.from_accept(request.accept_languages.values())


def t(key: str, **values: object) -> str:
    """``key``'s text in the page's language."""
    return languages.translate(_language(), key, **values)


def _csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _check_csrf() -> None:
    sent, kept = request.form.get("csrf", ""), session.get("csrf")
    if not isinstance(kept, str) or not hmac.compare_digest(sent.encode(), kept.encode()):
        log.warning("web: POST %s refused: missing or wrong CSRF token (from %s)",
                    request.path, request.remote_addr)
        abort(400)


def _session_actor() -> svc.Actor | None:
    """The logged-in actor, checked again now; the session ends when the login is too
    old or the user may no longer log in (suspended tenant, user gone)."""
    staff_id, login_at = session.get("staff_id"), session.get("login_at")
    if not isinstance(staff_id, str) or not isinstance(login_at, int):
        return None
    actor = None
    if time.time() - login_at <= SESSION_LIFETIME.total_seconds():
        actor = svc.actor_for_staff(_db(), staff_id)
    if actor is None:
        log.info("web: session of %s ended (expired, or the user may no longer log in)",
                 staff_id)
        session.clear()
        g.web_actor = None
        flash(t("session.ended"), "error")
    return actor


def _safe_next(target: str | None) -> str | None:
    """A path on this site to go back to (never another site's address)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return None


@web.before_request
def _guard() -> Response | None:
    g.web_actor = None
    if request.endpoint == "web.static":
        return None
    if request.method == "POST":
        _check_csrf()
    g.web_actor = _session_actor()
    if g.web_actor is None and request.endpoint not in _PUBLIC:
        where = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("web.login", next=where))
    return None


@web.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "web.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def label(family: str, value: str) -> str:
    """The name of a value of a family (``role``, ``perm``, ``status``...) in the page's
    language; the value itself when it has none (a tenant's custom role)."""
    key = f"{family}.{value}"
    return t(key) if key in languages.catalog("en") else value


@web.context_processor
def _context() -> dict[str, Any]:
    return {"t": t, "label": label, "actor": g.get("web_actor"), "lang": _language(),
            "language_names": languages.NAMES, "csrf_token": _csrf_token}


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status


def _http_error(exc: HTTPException) -> tuple[str, int]:
    status = exc.code or 500
    key = {400: "error.400", 403: "error.403", 404: "error.404", 405: "error.405"}.get(
        status, "error.other")
    return _error_page(status, t(key))


# code-specific handlers: the app's JSON handlers for 404 and 405 would come first
for _code in (400, 403, 404, 405, 413):
    web.register_error_handler(_code, _http_error)


@web.errorhandler(svc.ServiceError)
def _service_error(exc: svc.ServiceError) -> tuple[str, int]:
    _db().rollback()
    return _error_page(exc.status, str(exc))


def platform_page(view: Callable[P, Page]) -> Callable[P, Page]:
    """A NOC page: platform staff only (a tenant's user gets 403)."""
    @wraps(view)
    def checked(*args: P.args, **kwargs: P.kwargs) -> Page:
        if not _actor().platform:
            abort(403)
        return view(*args, **kwargs)
    return checked


def tenant_page(view: Callable[P, Page]) -> Callable[P, Page]:
    """A tenant administration page: platform staff are sent to the NOC."""
    @wraps(view)
    def checked(*args: P.args, **kwargs: P.kwargs) -> Page:
        if _actor().platform:
            return redirect(url_for("web.noc"))
        return view(*args, **kwargs)
    return checked


def _change(action: Callable[[], object],
            done: str | None = "flash.saved") -> svc.ServiceError | None:
    """Run a change and commit it: None (and ``done`` flashed), or the refusal (rolled
    back) for the page to show."""
    s = _db()
    try:
        action()
        s.commit()
    except svc.ServiceError as exc:
        s.rollback()
        log.info("web: %s refused for %s: %s", request.path, _actor().staff_id, exc)
        return exc
    if done is not None:
        flash(t(done), "ok")
    return None


def _refused(page: str, exc: svc.ServiceError) -> tuple[str, int]:
    return page, exc.status


def _form() -> MultiDict[str, str]:
    return request.form


def _whole(value: str, what: str) -> int:
    """A form's whole number (the service checks its range)."""
    value = value.strip()
    if value.isdigit():
        return int(value)
    raise svc.Invalid(f"{what}: a whole number, not {value!r}")


# --------------------------------------------------------------------------- sessions
@web.route("/login", methods=["GET", "POST"])
def login() -> Page:
    back = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.web_actor is not None:
            return redirect(back or url_for("web.home"))
        return render_template("login.html", form={}, login_error=None, next=back)
    staff_id = request.form.get("staff_id", "").strip()
    password = request.form.get("password", "")
    actor = svc.authenticate(_db(), staff_id, password) if staff_id and password else None
    if actor is None:
        log.warning("web: failed login for staff id %r from %s", staff_id[:64],
                    request.remote_addr)
        return render_template("login.html", form={"staff_id": staff_id},
                               login_error=t("login.failed"), next=back), 401
    session.clear()  # a new session: nothing from before the login carries over
    session.permanent = True
    session.update(staff_id=actor.staff_id, login_at=int(time.time()),
                   csrf=secrets.token_urlsafe(32))
    g.web_actor = actor
    log.info("web: %s logged in from %s", actor.staff_id, request.remote_addr)
    return redirect(back or url_for("web.home"))


@web.post("/logout")
def logout() -> Response:
    log.info("web: %s logged out", _actor().staff_id)
    session.clear()
    g.web_actor = None
    flash(t("flash.logged_out"), "ok")
    return redirect(url_for("web.login"))


@web.post("/language")
def set_language() -> Response:
    """The language switch: stored as the user's own setting (before login, in the
    session only)."""
    choice = request.form.get("language", "")
    if choice not in languages.LANGUAGES:
        abort(400)
    if g.web_actor is None:
        session["language"] = choice
    else:
        actor = _actor()
        refused = _change(lambda: svc.update_user(_db(), actor, actor.staff_id,
                                                  {"language": choice}), None)
        if refused is not None:
            flash(str(refused), "error")
            return redirect(url_for("web.home"))
    flash(languages.translate(choice, "flash.language"), "ok")  # in the new language
    return redirect(_safe_next(request.form.get("next")) or url_for("web.home"))


@web.get("/")
def home() -> Response:
    return redirect(url_for("web.noc" if _actor().platform else "web.admin"))


# --------------------------------------------------------------------------- helpers
def _usage_rows(usage: dict[str, Any], *, agents: int | None = None,
                flows: int | None = None) -> list[dict[str, Any]]:
    """Live use against each limit (None: not measured here; a limit of 0: none)."""
    used, limits = usage["usage"], usage["limits"]
    measured = {"agents": agents, "pstn_calls": used.get("pstn_calls"), "web_calls": None,
                "ivr_flows": flows, "ivr_ports": used.get("ivr_busy"), "storage_mb": None}
    rows = [{"key": f"limit.{k}", "used": measured[k], "limit": limits[k]} for k in svc.LIMITS]
    rows.append({"key": "usage.calls", "used": used.get("calls"), "limit": None})
    for row in rows:
        row["full"] = bool(row["limit"]) and row["used"] is not None and \
            row["used"] >= row["limit"]
    return rows


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        return "—"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h {minutes:02d}m" if days else f"{hours}h {minutes:02d}m"


def _load(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.2f}"
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return " / ".join(f"{v:.2f}" for v in value)
    return "—"


def node_row(doc: dict[str, Any]) -> dict[str, Any]:
    """A node as the NOC table shows it, from its last heartbeat (``status``):
    ``uptime`` (seconds), ``load`` (a number or the load averages), ``registered``
    (phones) and ``calls`` (active; else the sum of its ``tenants``' ``calls``)."""
    status = doc["status"] if isinstance(doc["status"], dict) else {}
    tenants = status.get("tenants") if isinstance(status.get("tenants"), dict) else {}
    calls = _int(status.get("calls"))
    if calls is None and tenants:
        calls = sum(_int(e.get("calls")) or 0 for e in tenants.values() if isinstance(e, dict))
    return {**doc, "uptime": _duration(status.get("uptime")), "load": _load(status.get("load")),
            "registered": _int(status.get("registered")), "calls": calls}


def _alarms(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    alarms = []
    for row in rows:
        if not row["online"]:
            alarms.append({"node": row["id"], "key": "alarm.offline",
                           "detail": row["last_seen"] or t("noc.never_seen")})
        if row["plan_error"]:
            alarms.append({"node": row["id"], "key": "alarm.plan_error",
                           "detail": row["plan_error"]})
    return alarms


def _audit_rows(entries: list[Any]) -> list[dict[str, Any]]:
    return [{"at": a.at.strftime("%Y-%m-%d %H:%M:%S"), "actor": a.actor,
             "tenant": a.tenant_id, "action": a.action, "object": a.object,
             "before": None if a.before is None else json.dumps(a.before, ensure_ascii=False,
                                                               sort_keys=True),
             "after": None if a.after is None else json.dumps(a.after, ensure_ascii=False,
                                                             sort_keys=True)}
            for a in entries]


def _audit_page(export_endpoint: str) -> str:
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    shown, total = svc.audit_page(_db(), _actor(), (page - 1) * AUDIT_PAGE, AUDIT_PAGE)
    pages = max(1, -(-total // AUDIT_PAGE))
    if page > pages:  # past the end: the last page
        page = pages
        shown, total = svc.audit_page(_db(), _actor(), (page - 1) * AUDIT_PAGE, AUDIT_PAGE)
    return render_template("audit.html", entries=_audit_rows(shown), page=page, pages=pages,
                           total=total, export_endpoint=export_endpoint)


def _export(kind: str) -> Response:
    from controller.app import csv_text  # the app imports this module

    rows = svc.export(_db(), _actor(), kind)
    _db().commit()
    return Response(csv_text(rows), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{kind}.csv"'})


# --------------------------------------------------------------------------- NOC
@web.get("/noc")
@platform_page
def noc() -> Page:
    return _noc_page()


def _noc_page(error: svc.ServiceError | None = None,
              form: MultiDict[str, str] | None = None) -> str:
    rows = [node_row(nodes.node_doc(n)) for n in nodes.list_nodes(_db(), _actor())]
    return render_template("noc.html", nodes=rows, alarms=_alarms(rows), roles=nodes.NODE_ROLES,
                           error=error, form=form or {})


@web.post("/noc/nodes")
@platform_page
def create_node() -> Page:
    f = _form()
    refused = _change(lambda: nodes.create_node(
        _db(), _actor(), id=f.get("id", "").strip(), name=f.get("name", ""),
        role=f.get("role", "branch"), site=f.get("site", "").strip()))
    if refused is None:
        return redirect(url_for("web.node", node_id=f.get("id", "").strip()))
    return _refused(_noc_page(refused, f), refused)


@web.get("/noc/nodes/<node_id>")
@platform_page
def node(node_id: str) -> Page:
    return _node_page(node_id)


def _node_page(node_id: str, error: svc.ServiceError | None = None,
               form: MultiDict[str, str] | None = None,
               claim: tuple[str, dt.datetime] | None = None) -> str:
    s, actor = _db(), _actor()
    doc = node_row(nodes.node_doc(nodes.get_node(s, actor, node_id)))
    tenants = [x.id for x in svc.list_tenants(s, actor)] if actor.may("tenants.read") else []
    return render_template(
        "noc_node.html", node=doc, tenants=tenants, roles=nodes.NODE_ROLES, error=error,
        form=form or {}, claim=claim,
        status_text=json.dumps(doc["status"], indent=2, sort_keys=True, ensure_ascii=False),
        trunks_text=json.dumps(doc["trunks"], indent=2, ensure_ascii=False))


@web.post("/noc/nodes/<node_id>")
@platform_page
def update_node(node_id: str) -> Page:
    f = _form()
    served = None if f.get("serves", "all") == "all" else f.getlist("tenants")
    refused = _change(lambda: nodes.update_node(_db(), _actor(), node_id, {
        "name": f.get("name", ""), "site": f.get("site", "").strip(),
        "role": f.get("role", ""), "tenants": served}))
    if refused is None:
        return redirect(url_for("web.node", node_id=node_id))
    return _refused(_node_page(node_id, refused, f), refused)


@web.post("/noc/nodes/<node_id>/claim")
@platform_page
def issue_claim(node_id: str) -> Page:
    """A claim code, shown in this answer only (never flashed: the cookie would carry it)."""
    s = _db()
    code, expires = nodes.issue_claim(s, _actor(), node_id)
    s.commit()
    return _node_page(node_id, claim=(code, expires))


@web.get("/noc/tenants")
@platform_page
def tenants() -> Page:
    return _tenants_page()


def _tenants_page(error: svc.ServiceError | None = None,
                  form: MultiDict[str, str] | None = None) -> str:
    rows = [svc.tenant_doc(x) for x in svc.list_tenants(_db(), _actor())]
    return render_template("noc_tenants.html", tenants=rows, error=error, form=form or {})


@web.post("/noc/tenants")
@platform_page
def create_tenant() -> Page:
    f = _form()
    tenant_id = f.get("id", "").strip()
    refused = _change(lambda: svc.create_tenant(
        _db(), _actor(), id=tenant_id, name=f.get("name", "").strip(),
        domain=f.get("domain", "").strip(), caller_id=f.get("caller_id", "").strip(),
        language=f.get("language", "en")), "flash.tenant_created")
    if refused is None:
        return redirect(url_for("web.tenant", tenant_id=tenant_id))
    return _refused(_tenants_page(refused, f), refused)


@web.get("/noc/tenants/<tenant_id>")
@platform_page
def tenant(tenant_id: str) -> Page:
    return _tenant_page(tenant_id)


def _tenant_page(tenant_id: str, error: svc.ServiceError | None = None,
                 form: MultiDict[str, str] | None = None) -> str:
    s, actor = _db(), _actor()
    row = svc.get_tenant(s, actor, tenant_id)
    usage = nodes.tenant_usage(s, actor, row.id) if actor.may("usage.read") else None
    users = [svc.user_doc(actor, u) for u in svc.list_users(s, actor, row.id)] \
        if actor.may("users.read") else []
    return render_template(
        "noc_tenant.html", tenant=svc.tenant_doc(row), purge_after=row.purge_after,
        usage=None if usage is None else _usage_rows(usage),
        numbers=[svc.number_doc(n) for n in svc.list_numbers(s, actor, row.id)],
        users=users, roles=svc.TENANT_ROLES, kinds=svc.NUMBER_KINDS,
        reject_codes=svc.REJECT_CODES, voices=VOICES, retention=svc.RETENTION_DAYS,
        error=error, form=form or {})


def _tenant_change(tenant_id: str, action: Callable[[], object],
                   done: str = "flash.saved") -> Page:
    refused = _change(action, done)
    if refused is None:
        return redirect(url_for("web.tenant", tenant_id=tenant_id))
    return _refused(_tenant_page(tenant_id, refused, _form()), refused)


@web.post("/noc/tenants/<tenant_id>/settings")
@platform_page
def tenant_settings(tenant_id: str) -> Page:
    f = _form()
    return _tenant_change(tenant_id, lambda: svc.update_tenant(_db(), _actor(), tenant_id, {
        "name": f.get("name", "").strip(), "language": f.get("language", "")}))


@web.post("/noc/tenants/<tenant_id>/limits")
@platform_page
def tenant_limits(tenant_id: str) -> Page:
    f = _form()
    return _tenant_change(tenant_id, lambda: svc.update_tenant(_db(), _actor(), tenant_id, {
        "limits": {k: _whole(f.get(k, ""), f"limits.{k}") for k in svc.LIMITS}}))


def _treatments(f: MultiDict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in svc.TREATMENTS:
        mode = f.get(f"{key}.mode")
        if mode == "reject":
            out[key] = {"reject": _whole(f.get(f"{key}.reject", ""), f"treatments.{key}")}
        elif mode == "announcement":
            out[key] = {"announcement": f.get(f"{key}.announcement", "").strip(),
                        "voice": f.get(f"{key}.voice", "en-us")}
        else:
            raise svc.Invalid(f"treatments.{key}: a rejection or an announcement")
    return out


@web.post("/noc/tenants/<tenant_id>/treatments")
@platform_page
def tenant_treatments(tenant_id: str) -> Page:
    f = _form()
    return _tenant_change(tenant_id, lambda: svc.update_tenant(_db(), _actor(), tenant_id, {
        "treatments": _treatments(f)}))


@web.post("/noc/tenants/<tenant_id>/status")
@platform_page
def tenant_status(tenant_id: str) -> Page:
    status = _form().get("status", "")
    return _tenant_change(
        tenant_id, lambda: svc.set_tenant_status(_db(), _actor(), tenant_id, status),
        "flash.suspended" if status == "suspended" else "flash.resumed")


@web.post("/noc/tenants/<tenant_id>/delete")
@platform_page
def delete_tenant(tenant_id: str) -> Page:
    days = _form().get("retention_days", "")
    return _tenant_change(tenant_id, lambda: svc.delete_tenant(
        _db(), _actor(), tenant_id, _whole(days, "retention_days")), "flash.deleted")


@web.post("/noc/tenants/<tenant_id>/numbers")
@platform_page
def assign_number(tenant_id: str) -> Page:
    f = _form()
    kind = f.get("kind", "did")
    return _tenant_change(tenant_id, lambda: svc.assign_number(
        _db(), _actor(), tenant_id, f.get("number", "").strip(), f.get("target", "").strip(),
        kind, (f.get("last", "").strip() or None) if kind == "range" else None))


@web.post("/noc/tenants/<tenant_id>/numbers/<number>/release")
@platform_page
def release_number(tenant_id: str, number: str) -> Page:
    def release() -> None:
        if svc.get_number(_db(), _actor(), number).tenant_id != tenant_id:
            raise svc.NotFound(f"no number {number} of {tenant_id}")
        svc.release_number(_db(), _actor(), number)
    return _tenant_change(tenant_id, release, "flash.deleted")


@web.post("/noc/tenants/<tenant_id>/users")
@platform_page
def create_tenant_user(tenant_id: str) -> Page:
    f = _form()
    return _tenant_change(tenant_id, lambda: svc.create_user(
        _db(), _actor(), staff_id=f.get("staff_id", "").strip(),
        password=f.get("password", ""), role=f.get("role", ""), tenant_id=tenant_id,
        name=f.get("name", "").strip()))


@web.get("/noc/audit")
@platform_page
def noc_audit() -> Page:
    return _audit_page("web.noc_export")


@web.get("/noc/export/<kind>")
@platform_page
def noc_export(kind: str) -> Page:
    return _export(kind)


# --------------------------------------------------------------------------- tenant admin
@web.get("/admin")
@tenant_page
def admin() -> Page:
    return _admin_page()


def _admin_page(error: svc.ServiceError | None = None,
                form: MultiDict[str, str] | None = None) -> str:
    s, actor = _db(), _actor()
    row = svc.get_tenant(s, actor, actor.tenant_id or "")
    usage = None
    if actor.may("usage.read"):
        agents = len(svc.get_section(s, actor, "agents")) if actor.may("sections.read") \
            else None
        flows = len(svc.list_flows(s, actor)) if actor.may("flows.read") else None
        usage = _usage_rows(nodes.tenant_usage(s, actor, row.id), agents=agents, flows=flows)
    return render_template("admin.html", tenant=svc.tenant_doc(row), usage=usage,
                           exports=svc.EXPORTS, error=error, form=form or {})


@web.post("/admin/settings")
@tenant_page
def admin_settings() -> Page:
    language = _form().get("language", "")
    refused = _change(lambda: svc.update_tenant(_db(), _actor(), _actor().tenant_id or "",
                                                {"language": language}))
    if refused is None:
        return redirect(url_for("web.admin"))
    return _refused(_admin_page(refused, _form()), refused)


@web.get("/admin/numbers")
@tenant_page
def numbers() -> Page:
    return _numbers_page()


def _numbers_page(error: svc.ServiceError | None = None,
                  form: MultiDict[str, str] | None = None) -> str:
    s, actor = _db(), _actor()
    targets = [e.number for e in svc.list_extensions(s, actor)] \
        if actor.may("extensions.read") else []
    if actor.may("flows.read"):
        targets += [f"flow:{f.name}" for f in svc.list_flows(s, actor)]
    return render_template("admin_numbers.html",
                           numbers=[svc.number_doc(n) for n in svc.list_numbers(s, actor)],
                           targets=targets, error=error, form=form or {})


@web.post("/admin/numbers/<number>")
@tenant_page
def route_number(number: str) -> Page:
    target = _form().get("target", "").strip()
    refused = _change(lambda: svc.route_number(_db(), _actor(), number, target))
    if refused is None:
        return redirect(url_for("web.numbers"))
    return _refused(_numbers_page(refused, _form()), refused)


@web.get("/admin/extensions")
@tenant_page
def extensions() -> Page:
    return _extensions_page()


def _extensions_page(error: svc.ServiceError | None = None,
                     form: MultiDict[str, str] | None = None) -> str:
    rows = svc.list_extensions(_db(), _actor())
    return render_template("admin_extensions.html",
                           extensions=[{"number": e.number, "name": e.name} for e in rows],
                           error=error, form=form or {})


@web.post("/admin/extensions")
@tenant_page
def add_extension() -> Page:
    f = _form()
    refused = _change(lambda: svc.add_extension(
        _db(), _actor(), f.get("number", "").strip(), f.get("sip_password", ""),
        f.get("name", "").strip()))
    if refused is None:
        return redirect(url_for("web.extensions"))
    return _refused(_extensions_page(refused, f), refused)


@web.post("/admin/extensions/<number>/delete")
@tenant_page
def delete_extension(number: str) -> Page:
    refused = _change(lambda: svc.delete_extension(_db(), _actor(), number), "flash.deleted")
    if refused is None:
        return redirect(url_for("web.extensions"))
    return _refused(_extensions_page(refused), refused)


@web.get("/admin/users")
@tenant_page
def users() -> Page:
    return _users_page()


def _users_page(error: svc.ServiceError | None = None,
                form: MultiDict[str, str] | None = None) -> str:
    s, actor = _db(), _actor()
    return render_template(
        "admin_users.html", users=[svc.user_doc(actor, u) for u in svc.list_users(s, actor)],
        roles=[r["name"] for r in svc.list_roles(s, actor)], error=error, form=form or {})


@web.post("/admin/users")
@tenant_page
def create_user() -> Page:
    f = _form()
    refused = _change(lambda: svc.create_user(
        _db(), _actor(), staff_id=f.get("staff_id", "").strip(),
        password=f.get("password", ""), role=f.get("role", ""),
        name=f.get("name", "").strip(), phone=f.get("phone", "").strip() or None,
        language=f.get("language", "")), "flash.user_created")
    if refused is None:
        return redirect(url_for("web.users"))
    return _refused(_users_page(refused, f), refused)


@web.post("/admin/users/<staff_id>")
@tenant_page
def update_user(staff_id: str) -> Page:
    role = _form().get("role", "")
    refused = _change(lambda: svc.update_user(_db(), _actor(), staff_id, {"role": role}))
    if refused is None:
        return redirect(url_for("web.users"))
    return _refused(_users_page(refused, _form()), refused)


@web.get("/admin/roles")
@tenant_page
def roles() -> Page:
    return _roles_page()


def _roles_page(error: svc.ServiceError | None = None,
                form: MultiDict[str, str] | None = None) -> str:
    return render_template("admin_roles.html", roles=svc.list_roles(_db(), _actor()),
                           permissions=svc.TENANT_PERMISSIONS, error=error, form=form or {})


@web.post("/admin/roles")
@tenant_page
def define_role() -> Page:
    f = _form()
    refused = _change(lambda: svc.define_role(_db(), _actor(), f.get("name", "").strip(),
                                              f.getlist("permissions")))
    if refused is None:
        return redirect(url_for("web.roles"))
    return _refused(_roles_page(refused, f), refused)


def _flow_text(document: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def parse_flow(text: str) -> dict[str, Any]:
    """A flow document typed as YAML or JSON (JSON is YAML): a mapping of plain values
    (text, numbers, booleans, lists, mappings), refused with the line of a syntax
    error. Aliases are refused (``*a`` repeated could expand to gigabytes)."""
    if len(text) > MAX_FLOW_TEXT:
        raise svc.Invalid(f"a flow document has at most {MAX_FLOW_TEXT} characters")
    try:
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise svc.Invalid("YAML aliases (*name) are not accepted in a flow")
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise svc.Invalid(f"not YAML or JSON: {where}{exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise svc.Invalid(f"not YAML or JSON: {exc}") from None
    if not isinstance(document, dict):
        raise svc.Invalid("a flow is a mapping (YAML) or an object (JSON)")
    try:  # dates and other YAML-only values have no JSON form
        plain: dict[str, Any] = json.loads(json.dumps(document))
    except (TypeError, ValueError) as exc:
        raise svc.Invalid(f"a flow holds only text, numbers, lists and mappings: {exc}"
                          ) from None
    return plain


@web.get("/admin/flows")
@tenant_page
def flows() -> Page:
    return _flows_page()


def _flows_page(error: svc.ServiceError | None = None,
                form: MultiDict[str, str] | None = None) -> str:
    rows = [{"name": f.name, "updated_at": f.updated_at.strftime("%Y-%m-%d %H:%M"),
             "nodes": len(f.document.get("nodes") or {}) if isinstance(f.document, dict)
             else 0} for f in svc.list_flows(_db(), _actor())]
    return render_template("admin_flows.html", flows=rows, error=error, form=form or {})


@web.post("/admin/flows")
@tenant_page
def create_flow() -> Page:
    f = _form()
    name = f.get("name", "").strip()
    refused = _change(lambda: svc.put_flow(_db(), _actor(), name,
                                           parse_flow(f.get("document", ""))))
    if refused is None:
        return redirect(url_for("web.flow", name=name))
    return _refused(_flows_page(refused, f), refused)


@web.get("/admin/flows/<name>")
@tenant_page
def flow(name: str) -> Page:
    return _flow_page(name)


def _flow_page(name: str, error: svc.ServiceError | None = None,
               form: MultiDict[str, str] | None = None) -> str:
    row = svc.get_flow(_db(), _actor(), name)
    fmt = "json" if request.args.get("format") == "json" else "yaml"
    text = form.get("document", "") if form is not None else _flow_text(row.document, fmt)
    return render_template("admin_flow.html", name=row.name, text=text, fmt=fmt,
                           updated_at=row.updated_at.strftime("%Y-%m-%d %H:%M"), error=error)


@web.post("/admin/flows/<name>")
@tenant_page
def save_flow(name: str) -> Page:
    svc.get_flow(_db(), _actor(), name)  # another tenant's flow, or none: 404
    text = _form().get("document", "")
    refused = _change(lambda: svc.put_flow(_db(), _actor(), name, parse_flow(text)))
    if refused is None:
        return redirect(url_for("web.flow", name=name))
    return _refused(_flow_page(name, refused, _form()), refused)


@web.post("/admin/flows/<name>/delete")
@tenant_page
def delete_flow(name: str) -> Page:
    refused = _change(lambda: svc.delete_flow(_db(), _actor(), name), "flash.deleted")
    if refused is None:
        return redirect(url_for("web.flows"))
    return _refused(_flow_page(name, refused), refused)


@web.get("/admin/audit")
@tenant_page
def admin_audit() -> Page:
    return _audit_page("web.admin_export")


@web.get("/admin/export/<kind>")
@tenant_page
def admin_export(kind: str) -> Page:
    return _export(kind)
