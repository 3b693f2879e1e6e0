"""The agent desktop served by the node's API (appliance/api.py, web/desk): the static
files without a token, their security headers, the softphone bundle when it is not
built, the page's configuration; and the page's label catalogs (en, zh-Hans, zh-Hant)
against the keys the page uses. The page itself runs in tests/e2e/test_desk.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
import pytest

from appliance.agents import Subscription
from appliance.api import DeskFiles, Principal, make_app, start_api
from appliance.web import DESK_DIR, DESK_LANGUAGES
from tests.harness.apiapp import Client, run_app

WS_URL, WSS_URL = "ws://192.0.2.10:8080", "wss://192.0.2.10:8443"


class DeskBackend:
    """Only what the desktop's routes read (and a token, to show the rest is closed)."""

    def __init__(self, ws_url: str | None = WS_URL, wss_url: str | None = WSS_URL) -> None:
        self.urls = {"ws_url": ws_url, "wss_url": wss_url}

    def desk_config(self) -> Mapping[str, str | None]:
        return self.urls

    def authenticate(self, token: str) -> Principal | None:
        return Principal("acme", "acme-admin") if token == "tok-acme" else None


def serve(scenario: Callable[[Client], Awaitable[None]], *, backend: DeskBackend | None = None,
          softphone: Path | None = None) -> None:
    desk = DeskFiles(DESK_DIR, softphone or Path("/nonexistent/softphone.js"))
    run_app(make_app(backend or DeskBackend(), desk), scenario)  # type: ignore[arg-type]


def test_the_page_is_served_without_a_token_with_its_security_headers() -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/desk/")
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "Agent desktop" in await resp.text()
        csp = resp.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'"  # no inline script, no eval
        assert directives["style-src"] == "'self'"
        assert directives["default-src"] == "'none'"
        assert directives["connect-src"] == f"'self' {WS_URL} {WSS_URL}"
        assert directives["frame-ancestors"] == "'none'"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"

        for path, ctype in (("/desk/desk.js", "text/javascript"), ("/desk/desk.css", "text/css"),
                            ("/desk/supervisor.js", "text/javascript"),
                            ("/desk/assist.js", "text/javascript"),
                            ("/desk/wrapup.js", "text/javascript"),
                            ("/desk/i18n/zh-Hant.json", "application/json")):
            resp = await client.get(path)
            assert (resp.status, resp.content_type) == (200, ctype), path
            assert resp.headers["X-Frame-Options"] == "DENY"
        resp = await client.get("/desk", allow_redirects=False)
        assert (resp.status, resp.headers["Location"]) == (302, "desk/")

    serve(scenario)


def test_only_the_desktops_own_files_are_open() -> None:
    async def scenario(client: Client) -> None:
        for path in ("/desk/index.html", "/desk/softphone.js.map", "/desk/nothing.js",
                     "/desk/i18n/en.json/x"):
            resp = await client.get(path)
            assert resp.status == 401, path  # no route: the API's rule, nothing without a token
        resp = await client.get("/desk/i18n/fr.json")
        assert resp.status == 404 and (await resp.json())["error"]["id"] == "not_found"
        resp = await client.get("/api/v1/acd")
        assert resp.status == 401

    serve(scenario)


def test_the_softphone_bundle_or_a_clear_error_when_it_is_not_built(tmp_path: Path) -> None:
    async def missing(client: Client) -> None:
        resp = await client.get("/desk/softphone.js")
        assert resp.status == 404
        error = (await resp.json())["error"]
        assert error["id"] == "softphone_not_built" and "setup.sh" in error["message"]

    serve(missing)
    bundle = tmp_path / "softphone.js"
    bundle.write_text("globalThis.Softphone = function () {};\n")

    async def built(client: Client) -> None:
        resp = await client.get("/desk/softphone.js")
        assert resp.status == 200 and resp.content_type == "text/javascript"
        assert await resp.text() == bundle.read_text()

    serve(built, softphone=bundle)


def test_the_config_gives_the_edges_websocket_urls_and_the_policy_follows_them() -> None:
    async def both(client: Client) -> None:
        resp = await client.get("/desk/config.json")
        assert await resp.json() == {"ws_url": WS_URL, "wss_url": WSS_URL}

    serve(both)

    async def none(client: Client) -> None:
        resp = await client.get("/desk/config.json")
        assert await resp.json() == {"ws_url": None, "wss_url": None}
        resp = await client.get("/desk/")
        assert "connect-src 'self';" in resp.headers["Content-Security-Policy"]

    serve(none, backend=DeskBackend(None, None))


class StreamingBackend(DeskBackend):
    """An ACD with queues for acme whose event stream never says anything."""

    def __init__(self) -> None:
        super().__init__()
        self.agents = self
        self.subscribers: set[Subscription] = set()

    def snapshot(self, tenant_id: str) -> dict[str, object] | None:
        return {"tenant_id": tenant_id}

    def subscribe(self, tenant_id: str, agent: str | None) -> Subscription:
        sub = Subscription(tenant_id, agent)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)


def test_a_desktop_reading_events_does_not_hold_up_the_apis_shutdown() -> None:
    backend = StreamingBackend()

    async def main() -> float:
        runner = await start_api(backend, "127.0.0.1", 0)  # type: ignore[arg-type]
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as http:
            resp = await http.get(f"http://{host}:{port}/api/v1/acd/events",
                                  headers={"Authorization": "Bearer tok-acme"})
            assert resp.status == 200
            assert await resp.content.readline() == b": connected\n"
            assert len(backend.subscribers) == 1
            started = time.monotonic()
            await asyncio.wait_for(runner.cleanup(), 5.0)
            return time.monotonic() - started

    assert asyncio.run(main()) < 1.0
    assert backend.subscribers == set()


# ------------------------------------------------------------------ the page's own rules
PAGE = (DESK_DIR / "index.html").read_text(encoding="utf-8")
SCRIPT = "\n".join((DESK_DIR / name).read_text(encoding="utf-8")
                   for name in ("desk.js", "supervisor.js", "assist.js", "wrapup.js"))


def catalog(language: str) -> dict[str, str]:
    doc: dict[str, str] = json.loads((DESK_DIR / "i18n" / f"{language}.json").read_text(
        encoding="utf-8"))
    return doc


def test_the_page_has_no_inline_script_or_style_and_every_input_a_label() -> None:
    assert re.findall(r"<script(?![^>]*\bsrc=)", PAGE) == []
    assert not re.search(r"\son[a-z]+\s*=", PAGE) and " style=" not in PAGE
    assert "<style" not in PAGE
    labelled = set(re.findall(r'<label for="([^"]+)"', PAGE))
    fields = set(re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', PAGE))
    assert "wrapup-note" in fields
    assert fields - labelled <= {"reason-text"}  # desk.js points the reason label at it


@pytest.mark.parametrize("language", DESK_LANGUAGES)
def test_every_label_the_page_uses_is_in_each_catalog(language: str) -> None:
    labels = catalog(language)
    assert set(labels) == set(catalog("en"))
    used = set(re.findall(r'data-i18n(?:-label)?="([^"]+)"', PAGE))
    used |= set(re.findall(r'\bt\("([^"]+)"', SCRIPT))
    used |= set(re.findall(r'"(phone\.[A-Za-z]+)"', SCRIPT))  # setPhone("phone.<key>")
    states = re.search(r"const STATES = \[([^\]]+)\]", SCRIPT)
    assert states is not None
    used |= {f"state.{s}" for s in re.findall(r'"([a-z_]+)"', states.group(1))}
    used |= {f"call.{s}" for s in ("idle", "ringing", "calling", "talking", "held")}
    used |= {f"stream.{s}" for s in ("connecting", "live", "retrying")}
    used |= {f"reason.{s}" for s in ("no_answer", "declined", "login", "supervisor")}
    used |= {f"pop.{s}" for s in ("queue", "language")}
    used |= {f"sup.{s}" for s in ("listen", "whisper", "barge")}  # sup.${mode}
    used |= {f"assist.{s}" for s in ("running", "done", "ended")}  # assist.${job.state}
    used |= {f"sup.force.{s}" for s in ("ready", "not_ready", "break", "logged_out")}
    assert used - set(labels) == set(), f"{language} lacks labels"
    assert all(text.strip() for text in labels.values())


def test_simplified_and_traditional_chinese_are_written_separately() -> None:
    hans, hant = catalog("zh-Hans"), catalog("zh-Hant")
    assert hans["signIn.title"] == "登录" and hant["signIn.title"] == "登入"
    assert hans["state.ready"] == "就绪" and hant["state.ready"] == "就緒"
    same = [k for k in hans if hans[k] == hant[k] and re.search(r"[\u4e00-\u9fff]", hans[k])]
    assert len(same) < len(hans) // 4, same  # a handful of words are the same in both
