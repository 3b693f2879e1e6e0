"""The controller's web pages through Flask's test client, on SQLite and PostgreSQL:
login and logout, session cookies, CSRF, 403 on platform pages for a tenant's user,
404 for another tenant's objects, a suspended tenant's session ending at once,
quotas stored, the language switch, and refusals that keep the input."""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from controller import nodes, web
from controller import service as svc
from controller.app import create_app
from controller.passwords import hash_password
from controller.store import User, engine_for, sessions

ROOT = ("root", "root password 1")
ACME = ("acme-admin", "acme password")
GLOBEX = ("globex-admin", "globex password")


@pytest.fixture
def app(db_url: str) -> Iterator[Flask]:
    engine = engine_for(db_url)
    with sessions(engine)() as s:  # the platform's first super-admin, as an installer would
        s.add(User(staff_id=ROOT[0], tenant_id=None, role="super_admin", name="Root",
                   password_hash=hash_password(ROOT[1]), language="en"))
        s.commit()
    engine.dispose()
    application = create_app(db_url, secure_cookies=False)
    yield application
    application.extensions["branchline.engine"].dispose()


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


def csrf(c: FlaskClient, path: str = "/login") -> str:
    """The session's CSRF token, as a form on ``path`` carries it."""
    r = c.get(path, follow_redirects=True)
    found = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert found, (path, r.status_code, r.text[:300])
    return found.group(1)


def login(c: FlaskClient, who: tuple[str, str]) -> str:
    r = c.post("/login", data={"csrf": csrf(c), "staff_id": who[0], "password": who[1]})
    assert r.status_code == 302, r.text
    return csrf(c, r.headers["Location"])


def alert(r: TestResponse) -> str:
    """The refusal shown in the page (tags removed)."""
    found = re.search(r'role="alert">(.*?)</p>', r.text, re.S)
    return re.sub(r"<[^>]+>", "", found.group(1)) if found else ""


def post(c: FlaskClient, token: str, path: str, **form: object) -> TestResponse:
    return c.post(path, data={"csrf": token, **form})


def setup_two(app: Flask) -> None:
    """Tenants acme and globex, each with an administrator; globex with an extension,
    a number routed to it, a flow and a user of its own."""
    c = app.test_client()  # not `with`: the caller's client keeps its own context
    token = login(c, ROOT)
    for tid, dom, cid, admin in (("acme", "acme.example", "+862088880000", ACME),
                                 ("globex", "globex.example", "+85230000000", GLOBEX)):
        assert post(c, token, "/noc/tenants", id=tid, name=tid.title(), domain=dom,
                    caller_id=cid, language="en").status_code == 302
        assert post(c, token, f"/noc/tenants/{tid}/users", staff_id=admin[0],
                    password=admin[1], role="admin", name="").status_code == 302
    token = login(c, GLOBEX)
    assert post(c, token, "/admin/extensions", number="2001", name="Gina",
                sip_password="globex sip 1").status_code == 302
    assert post(c, token, "/admin/flows", name="globex-main", document=(
        "flow: globex-main\nversion: 1\nstart: hello\nnodes:\n"
        "  hello: {type: play, prompt: {tts: Hello}}\n")).status_code == 302
    assert post(c, token, "/admin/users", staff_id="globex-bob", name="Bob",
                password="globex bob pw", role="agent", phone="", language=""
                ).status_code == 302
    token = login(c, ROOT)
    assert post(c, token, "/noc/tenants/globex/numbers", kind="did",
                number="+85230000001", target="2001", last="").status_code == 302


# --------------------------------------------------------------------------- sessions
def test_login_and_logout(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    r = client.get("/noc")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/noc"
    caplog.set_level(logging.INFO, logger="branchline.controller.web")
    token = csrf(client)
    wrong = post(client, token, "/login", staff_id="root", password="guess 12345")
    unknown = post(client, token, "/login", staff_id="nobody", password="guess 12345")
    assert wrong.status_code == unknown.status_code == 401
    assert alert(wrong) == alert(unknown) != ""  # says nothing about the staff id
    assert 'value="root"' in wrong.text and "guess 12345" not in wrong.text
    failed = [x.getMessage() for x in caplog.records if "failed login" in x.getMessage()]
    assert len(failed) == 2 and "'root'" in failed[0] and "'nobody'" in failed[1]
    assert "guess 12345" not in caplog.text

    r = post(client, token, "/login", staff_id="root", password=ROOT[1], next="/noc/audit")
    assert r.status_code == 302 and r.headers["Location"] == "/noc/audit"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/").headers["Location"] == "/noc"
    assert client.get("/noc").status_code == 200
    assert client.post("/login", data={"csrf": token}).status_code == 400  # a new token
    token = csrf(client, "/noc")
    r = post(client, token, "/logout")
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    assert client.get("/noc").status_code == 302
    assert client.get("/logout").status_code == 405


def test_login_goes_back_only_to_this_site(client: FlaskClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        r = post(client, csrf(client), "/login", staff_id=ROOT[0], password=ROOT[1],
                 next=target)
        assert r.headers["Location"] == "/", target
        post(client, csrf(client, "/noc"), "/logout")


def test_session_cookie_secure_by_default_and_shared_by_controllers(db_url: str) -> None:
    """Sessions are signed with a key derived from the controller's secret key: a
    second controller process with the same key accepts them, one with another key
    does not; the cookie is Secure unless configured off."""
    engine = engine_for(db_url)
    with sessions(engine)() as s:
        s.add(User(staff_id="root", tenant_id=None, role="super_admin", name="Root",
                   password_hash=hash_password(ROOT[1]), language="en"))
        s.commit()
    engine.dispose()
    first, second = create_app(db_url), create_app(db_url, secure_cookies=False)
    try:
        key = os.environ["BRANCHLINE_SECRET_KEY"].encode()
        assert first.config["SECRET_KEY"] == web.session_key(key) != key
        assert first.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 8 * 3600
        c = first.test_client()
        cookie = c.get("/login").headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        first.config["SESSION_COOKIE_SECURE"] = False  # the test client speaks http
        login(c, ROOT)
        session_cookie = c.get_cookie("branchline_session")
        assert session_cookie is not None
        other = second.test_client()
        other.set_cookie("branchline_session", session_cookie.value)
        assert other.get("/noc").status_code == 200
        second.config["SECRET_KEY"] = web.session_key(Fernet.generate_key())
        assert other.get("/noc").status_code == 302  # signed with a key it does not know
    finally:
        first.extensions["branchline.engine"].dispose()
        second.extensions["branchline.engine"].dispose()


def test_session_ends_eight_hours_after_login(client: FlaskClient,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    login(client, ROOT)
    assert client.get("/noc").status_code == 200
    later = web.time.time() + 8 * 3600 + 1
    monkeypatch.setattr(web.time, "time", lambda: later)
    r = client.get("/noc")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


def test_csrf_token_is_required_on_every_post(client: FlaskClient, app: Flask) -> None:
    assert client.post("/login", data={"staff_id": "root", "password": ROOT[1]}
                       ).status_code == 400
    token = login(client, ROOT)
    for data in ({}, {"csrf": "forged"}, {"csrf": token + "x"}):
        r = client.post("/noc/tenants", data={**data, "id": "acme", "name": "Acme",
                                              "domain": "acme.example",
                                              "caller_id": "+862088880000"})
        assert r.status_code == 400 and "<html" in r.text
    other_token = csrf(app.test_client())  # another session's token is no good here
    assert other_token != token
    r = post(client, other_token, "/noc/tenants", id="acme", name="Acme",
             domain="acme.example", caller_id="+862088880000")
    assert r.status_code == 400
    assert "acme" not in client.get("/noc/tenants").text
    assert post(client, token, "/language", language="zh-Hans").status_code == 302


# --------------------------------------------------------------------------- tenancy
NOC_GETS = ("/noc", "/noc/tenants", "/noc/tenants/acme", "/noc/tenants/globex",
            "/noc/nodes/hub1", "/noc/audit", "/noc/export/users")
NOC_POSTS = ("/noc/tenants", "/noc/tenants/acme/limits", "/noc/tenants/acme/status",
             "/noc/tenants/globex/delete", "/noc/tenants/acme/numbers", "/noc/nodes",
             "/noc/nodes/hub1", "/noc/nodes/hub1/claim", "/noc/tenants/acme/users")


def test_platform_pages_are_forbidden_to_tenant_users(app: Flask, client: FlaskClient) -> None:
    setup_two(app)
    token = login(client, ROOT)
    assert post(client, token, "/noc/nodes", id="hub1", name="", role="hub",
                site="").status_code == 302
    token = login(client, ACME)
    for path in NOC_GETS:
        r = client.get(path)
        assert r.status_code == 403 and "<html" in r.text, path
    for path in NOC_POSTS:
        assert post(client, token, path, status="suspended", agents="1").status_code == 403, \
            path
    assert "/noc" not in client.get("/admin").text  # no link to them either
    token = login(client, ROOT)
    assert client.get("/noc/tenants/acme").text.count('class="badge active"') == 1
    assert client.get("/admin").headers["Location"] == "/noc"


def test_a_tenant_admin_never_reaches_another_tenants_objects(app: Flask,
                                                              client: FlaskClient) -> None:
    setup_two(app)
    token = login(client, ACME)
    assert client.get("/admin/flows/globex-main").status_code == 404
    r = post(client, token, "/admin/flows/globex-main", document="flow: x")
    assert r.status_code == 404
    assert post(client, token, "/admin/flows/globex-main/delete").status_code == 404
    r = post(client, token, "/admin/numbers/+85230000001", target="1001")
    assert r.status_code == 404 and "+85230000001" in alert(r)
    assert post(client, token, "/admin/extensions/2001/delete").status_code == 404
    assert post(client, token, "/admin/users/globex-bob", role="admin").status_code == 404
    assert post(client, token, "/admin/users/root", role="admin").status_code == 404
    for page in ("/admin", "/admin/numbers", "/admin/extensions", "/admin/users",
                 "/admin/roles", "/admin/flows", "/admin/audit", "/admin/export/users",
                 "/admin/export/numbers", "/admin/export/extensions", "/admin/export/audit"):
        r = client.get(page)
        assert r.status_code == 200, page
        assert "globex" not in r.text.lower() and "2001" not in r.text, page
    # globex's objects are untouched
    token = login(client, GLOBEX)
    assert "globex-main" in client.get("/admin/flows").text
    assert 'id="extension-2001"' in client.get("/admin/extensions").text
    assert 'value="agent" selected' in client.get("/admin/users").text


def test_a_suspended_tenants_sessions_end_at_once(app: Flask, client: FlaskClient) -> None:
    setup_two(app)
    login(client, ACME)
    assert client.get("/admin").status_code == 200
    root = app.test_client()
    token = login(root, ROOT)
    r = post(root, token, "/noc/tenants/acme/status", status="suspended")
    assert r.status_code == 302
    assert 'id="tenant-status">suspended' in root.get("/noc/tenants/acme").text
    r = client.get("/admin/users")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    r = client.get(r.headers["Location"])
    assert "session has ended" in r.text
    r = post(client, csrf(client), "/login", staff_id=ACME[0], password=ACME[1])
    assert r.status_code == 401
    assert client.get("/admin").status_code == 302
    assert login(client, GLOBEX)  # the other tenant is not affected
    assert post(root, token, "/noc/tenants/acme/status", status="active"
                ).status_code == 302
    login(client, ACME)
    assert client.get("/admin").status_code == 200


# --------------------------------------------------------------------------- NOC
def test_quota_edit_is_stored_and_shown(app: Flask, client: FlaskClient) -> None:
    setup_two(app)
    token = login(client, ROOT)
    limits = {"agents": "20", "pstn_calls": "7", "web_calls": "3", "ivr_flows": "4",
              "ivr_ports": "6", "storage_mb": "500"}
    r = post(client, token, "/noc/tenants/acme/limits", **limits)
    assert r.status_code == 302 and r.headers["Location"] == "/noc/tenants/acme"
    page = client.get("/noc/tenants/acme").text
    assert 'name="pstn_calls" value="7"' in page and 'name="storage_mb" value="500"' in page
    with app.extensions["branchline.sessions"]() as s:
        actor = svc.authenticate(s, *ROOT)
        assert actor is not None
        assert svc.limits_of(svc.get_tenant(s, actor, "acme")) == {
            k: int(v) for k, v in limits.items()}
        assert svc.limits_of(svc.get_tenant(s, actor, "globex"))["pstn_calls"] == 0
    r = post(client, token, "/noc/tenants/acme/treatments", **{
        "suspended.mode": "announcement", "suspended.announcement": "Closed for now.",
        "suspended.voice": "en-us", "over_quota.mode": "reject", "over_quota.reject": "480"})
    assert r.status_code == 302
    page = client.get("/noc/tenants/acme").text
    assert 'value="Closed for now."' in page and "<option selected>480</option>" in page
    login(client, ACME)  # the tenant sees its limits
    page = client.get("/admin").text
    assert re.search(r"Concurrent PSTN calls</th>\s*<td>0</td>\s*<td>7</td>", page)


def test_noc_shows_nodes_alarms_and_a_claim_code_once(app: Flask, client: FlaskClient) -> None:
    setup_two(app)
    token = login(client, ROOT)
    for node_id in ("hub1", "branch1"):
        assert post(client, token, "/noc/nodes", id=node_id, name="", role="branch",
                    site="").status_code == 302
    link = nodes.DbLinkBackend(app.extensions["branchline.sessions"])
    link.heartbeat("hub1", {"uptime": 93784, "load": [0.5, 0.25, 0.1], "registered": 12,
                            "tenants": {"acme": {"calls": 3, "pstn_calls": 2, "ivr_busy": 1}}})
    link.plan_acknowledged("branch1", 1, False, "trunk gw1 unknown")
    page = client.get("/noc").text
    row = page[page.index('id="node-hub1"'):page.index("</tbody>")]
    assert "1d 02h 03m" in row and "0.50 / 0.25 / 0.10" in row and ">12<" in row
    assert ">3<" in row and "badge ok" in row
    alarms = page[page.index("Alarms"):page.index('class="nodes"')]
    assert "branch1" in alarms and "offline" in alarms and "trunk gw1 unknown" in alarms
    assert "hub1" not in alarms
    usage = client.get("/noc/tenants/acme").text
    assert re.search(r"Concurrent PSTN calls</th>\s*<td>2</td>", usage)

    r = post(client, token, "/noc/nodes/hub1/claim")
    code = re.search(r'id="claim-code">([A-Z0-9-]+)<', r.text)
    assert r.status_code == 200 and code and r.headers["Cache-Control"] == "no-store"
    assert code.group(1) not in client.get("/noc/nodes/hub1").text
    assert code.group(1) not in client.get("/noc/audit").text
    assert link.redeem_claim(code.group(1)) == "hub1"

    r = post(client, token, "/noc/nodes/branch1", name="Branch one", site="shenzhen",
             role="branch", serves="some", tenants=["acme"])
    assert r.status_code == 302
    page = client.get("/noc/nodes/branch1").text
    assert 'value="acme" checked' in page and 'value="globex">' in page
    r = post(client, token, "/noc/nodes/branch1", name="", site="Not An Id", role="branch",
             serves="all")
    assert r.status_code == 400 and "site" in alert(r) and 'value="Not An Id"' in r.text


def test_tenant_lifecycle_from_the_noc(app: Flask, client: FlaskClient) -> None:
    setup_two(app)
    token = login(client, ROOT)
    r = post(client, token, "/noc/tenants/acme/numbers", kind="range", number="+862088881000",
             last="+862088881009", target="flow:none")
    assert r.status_code == 400 and "flow" in alert(r)  # acme has no such flow
    assert 'value="+862088881009"' in r.text
    assert post(client, token, "/noc/tenants/acme/numbers", kind="service", number="95001",
                target="flow:none", last="").status_code == 400
    r = post(client, token, "/noc/tenants/acme/numbers/+85230000001/release")
    assert r.status_code == 404  # globex's number, named under acme
    r = post(client, token, "/noc/tenants/acme/delete", retention_days="7")
    assert r.status_code == 302
    page = client.get("/noc/tenants/acme").text
    assert "This tenant is deleted" in page and 'id="limits"' not in page
    assert post(client, csrf(client), "/login", staff_id=ACME[0],
                password=ACME[1]).status_code == 401


# --------------------------------------------------------------------------- languages
def test_language_switch_changes_the_rendered_text(app: Flask, client: FlaskClient) -> None:
    r = client.get("/login", headers={"Accept-Language": "zh-TW,zh;q=0.8,en;q=0.5"})
    assert '<html lang="zh-Hant">' in r.text and "員工編號" in r.text
    token = csrf(client)
    assert post(client, token, "/language", language="zh-Hans", next="/login"
                ).headers["Location"] == "/login"
    assert "工号" in client.get("/login").text
    token = login(client, ROOT)
    page = client.get("/noc/tenants").text  # the user's own setting (English) now
    assert '<html lang="en">' in page and ">Tenants</a>" in page
    r = post(client, token, "/language", language="zh-Hant", next="/noc/tenants")
    assert r.status_code == 302 and r.headers["Location"] == "/noc/tenants"
    page = client.get("/noc/tenants").text
    assert '<html lang="zh-Hant">' in page and ">租戶</a>" in page and "建立租戶" in page
    post(client, token, "/language", language="zh-Hans")
    page = client.get("/noc/tenants").text
    assert '<html lang="zh-Hans">' in page and ">租户</a>" in page and "创建租户" in page
    assert post(client, token, "/language", language="fr").status_code == 400
    with app.extensions["branchline.sessions"]() as s:  # stored as the user's setting
        actor = svc.actor_for_staff(s, "root")
        assert actor is not None and actor.language == "zh-Hans"


def test_a_tenants_users_see_its_default_language(app: Flask, client: FlaskClient) -> None:
    setup_two(app)
    token = login(client, ROOT)
    assert post(client, token, "/noc/tenants/globex/settings", name="Globex",
                language="zh-Hant").status_code == 302
    login(client, GLOBEX)
    page = client.get("/admin/numbers").text
    assert '<html lang="zh-Hant">' in page and "號碼" in page
    login(client, ACME)
    assert '<html lang="en">' in client.get("/admin/numbers").text


# --------------------------------------------------------------------------- refusals
def test_bad_input_shows_the_reason_and_keeps_the_input(app: Flask,
                                                        client: FlaskClient) -> None:
    setup_two(app)
    token = login(client, ROOT)
    r = post(client, token, "/noc/tenants", id="initech", name="Initech Ltd",
             domain="not a domain", caller_id="+14155550100", language="en")
    assert r.status_code == 400 and "invalid SIP domain" in alert(r)
    assert 'value="Initech Ltd"' in r.text and 'value="not a domain"' in r.text
    r = post(client, token, "/noc/tenants", id="globex2", name="G", domain="globex.example",
             caller_id="+85230000009", language="en")
    assert r.status_code == 409 and "another tenant" in alert(r)
    r = post(client, token, "/noc/tenants/acme/limits", agents="5", pstn_calls="lots",
             web_calls="0", ivr_flows="0", ivr_ports="0", storage_mb="0")
    assert r.status_code == 400 and "limits.pstn_calls" in alert(r)
    assert 'value="lots"' in r.text and 'name="agents" value="5"' in r.text

    token = login(client, ACME)
    document = ("flow: acme-hello\nversion: 1\nstart: hello\nnodes:\n"
                "  hello: {type: play, prompt: {tts: Hello}, next: missing}\n")
    r = post(client, token, "/admin/flows", name="acme-hello", document=document)
    assert r.status_code == 400 and "nodes.hello.next" in alert(r)
    assert "next: missing}" in r.text and 'value="acme-hello"' in r.text
    r = post(client, token, "/admin/flows", name="acme-hello", document="nodes: [1, 2")
    assert r.status_code == 400 and "line 1" in alert(r)
    r = post(client, token, "/admin/users", staff_id="carol", name="Carol",
             password="short", role="agent", phone="+8613800000000", language="")
    assert r.status_code == 400 and "10 characters" in alert(r)
    assert 'value="carol"' in r.text and 'value="+8613800000000"' in r.text
    assert 'value="short"' not in r.text  # never a password
    r = post(client, token, "/admin/roles", new="1", name="Night Shift",
             permissions=["usage.read", "numbers.read"])
    assert r.status_code == 400 and "role name" in alert(r)
    assert 'value="Night Shift"' in r.text and 'value="usage.read" checked' in r.text


def test_tenant_administration_round_trip(app: Flask, client: FlaskClient) -> None:
    setup_two(app)
    token = login(client, ACME)
    assert post(client, token, "/admin/extensions", number="1001", name="Alice",
                sip_password="acme sip 1").status_code == 302
    assert post(client, token, "/admin/roles", new="1", name="night",
                permissions=["numbers.read", "usage.read"]).status_code == 302
    assert 'value="usage.read" checked' in client.get("/admin/roles").text
    assert post(client, token, "/admin/users", staff_id="dave", name="Dave",
                password="dave password", role="night", phone="+8613811112222",
                language="zh-Hans").status_code == 302
    assert "+8613811112222" in client.get("/admin/users").text  # admin holds pii.read
    assert post(client, token, "/admin/users/dave", role="supervisor").status_code == 302
    flow = ("flow: acme-hello\nversion: 1\nstart: hello\nnodes:\n"
            "  hello: {type: play, prompt: {tts: Hello}}\n")
    r = post(client, token, "/admin/flows", name="acme-hello", document=flow)
    assert r.status_code == 302 and r.headers["Location"] == "/admin/flows/acme-hello"
    assert '"start": "hello"' in html.unescape(
        client.get("/admin/flows/acme-hello?format=json").text)
    json_flow = ('{"flow": "acme-hello", "version": 2, "start": "hello", "nodes": '
                 '{"hello": {"type": "play", "prompt": {"tts": "Hi"}}}}')
    assert post(client, token, "/admin/flows/acme-hello", document=json_flow
                ).status_code == 302
    assert "tts: Hi" in client.get("/admin/flows/acme-hello").text
    r = post(client, token, "/admin/extensions/1001/delete")
    assert r.status_code == 302
    r = client.get("/admin/export/extensions")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    audit = client.get("/admin/audit").text
    assert "export/extensions" in audit and "flow/acme-hello" in audit
    assert "acme sip 1" not in audit
    login(client, ("dave", "dave password"))  # a supervisor: reads, changes nothing
    page = client.get("/admin/users").text
    assert "+8613811112222" in page  # supervisors hold pii.read
    assert 'id="add-user"' not in page and 'id="add-extension"' not in client.get(
        "/admin/extensions").text
    assert '<html lang="zh-Hans">' in page
    token = csrf(client, "/admin/users")
    r = post(client, token, "/admin/extensions", number="1002", name="",
             sip_password="acme sip 2")
    assert r.status_code == 403 and "extensions.write" in alert(r)
