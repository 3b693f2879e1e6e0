"""The controller manages a real node over the QUIC node link (issue 4).

The controller runs in this process (its Flask app on a real HTTP server, its link
daemon on a real UDP socket, SQLite); the node is its own process
(``python -m appliance.demo --controller ...``), enrolled with a one-time claim code.
Changes go through the controller's REST API and pages as an administrator makes
them; the node's behaviour is observed as a caller sees it (SIP answers, audio).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from werkzeug.serving import make_server

from appliance.media.tts import synthesize
from controller import nodes
from controller import service as svc
from controller.app import create_app
from controller.linkd import LinkServer
from controller.passwords import hash_password
from controller.pki import CertificateAuthority
from controller.store import User
from tests.e2e.conftest import CARRIER_IP, PASSWORDS, wait_for
from tests.e2e.conftest import test_plan as e2e_plan
from tests.e2e.test_tenancy import Phone, match
from tests.harness.http import http_json
from tests.harness.procs import (
    ManagedProcess,
    free_port_pair,
    free_port_range,
    free_tcp_port,
    free_udp_port,
    release_ports,
    wait_for_file,
)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
ECHO = "+862088880099"  # acme's echo service in the e2e plan
ROOT_PASSWORD = "root password 1"


@dataclass
class Platform:
    api: str
    tokens: dict[str, str]
    app: Any
    node: ManagedProcess
    sip_port: int
    run_dir: Path

    def call(self, method: str, path: str, who: str = "root", body: Any = None
             ) -> tuple[int, Any]:
        return http_json(method, self.api + path, self.tokens[who], body)

    def node_doc(self) -> dict[str, Any]:
        status, doc = self.call("GET", "/nodes/e2e")
        assert status == 200, doc
        return dict(doc)

    def wait_applied(self, after: int, timeout: float = 5.0) -> dict[str, Any]:
        """The node record once the node acknowledged a plan newer than ``after``."""
        return wait_for(lambda: (d := self.node_doc())["applied_version"] > after and
                        d["applied_version"] == d["plan_version"] and d, timeout,
                        f"a plan newer than version {after} applied by the node")

    def carrier(self) -> Phone:
        return Phone("carrier", f"127.0.0.1:{self.sip_port}", "",
                     ("127.0.0.1", self.sip_port), local_ip=CARRIER_IP)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("platform")
    os.environ.setdefault("BRANCHLINE_SECRET_KEY", Fernet.generate_key().decode())
    carrier_port = free_port_pair(CARRIER_IP)
    app = create_app(f"sqlite:///{tmp / 'controller.sqlite'}", key_file=tmp / "secret.key",
                     secure_cookies=False)
    sessions = app.extensions["branchline.sessions"]
    cli = svc.Actor("test", None, "super_admin", svc.ROLE_PERMISSIONS["super_admin"])
    with sessions() as s:
        s.add(User(staff_id="root", tenant_id=None, role="super_admin", name="Root",
                   password_hash=hash_password(ROOT_PASSWORD), language=""))
        nodes.import_plan(s, cli, e2e_plan(carrier_port))
        svc.create_user(s, cli, staff_id="acme-admin", password="acme password",
                        role="admin", tenant_id="acme")
        claim, _ = nodes.issue_claim(s, cli, "e2e")
        s.commit()
    # the node link daemon, on its own event loop as `python -m controller serve` runs it
    ca = CertificateAuthority.load_or_create(tmp / "pki")
    link = LinkServer("127.0.0.1", 0, ca, nodes.DbLinkBackend(sessions))
    loop = asyncio.new_event_loop()
    linkd = threading.Thread(target=loop.run_forever, name="linkd", daemon=True)
    linkd.start()
    asyncio.run_coroutine_threadsafe(link.start(), loop).result(30)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, name="http", daemon=True).start()
    api = f"http://127.0.0.1:{http.server_port}/api/v1"
    run_dir = tmp / "node"
    sip_port, low_high = free_port_pair("127.0.0.1"), free_port_range("127.0.0.1", 100)
    proc = ManagedProcess("managed-node", [
        sys.executable, "-m", "appliance.demo", "--run-dir", str(run_dir),
        "--controller", f"127.0.0.1:{link.port}", "--claim", claim,
        "--ca", str(tmp / "pki" / "ca.crt"), "--sip-port", str(sip_port),
        "--fs-port", str(free_udp_port("127.0.0.1")),
        "--rtp-range", f"{low_high[0]}-{low_high[1]}",
        "--api-port", str(free_tcp_port("127.0.0.1"))], tmp, cwd=REPO, long_lived=True).start()
    p = Platform(api, {}, app, proc, sip_port, run_dir)
    try:
        for who, password in (("root", ROOT_PASSWORD), ("acme-admin", "acme password")):
            status, answer = http_json("POST", api + "/auth/tokens",
                                       body={"staff_id": who, "password": password})
            assert status == 201, answer
            p.tokens[who] = answer["token"]
        wait_for_file(proc, run_dir / "demo.json", timeout=60)
        yield p
    finally:
        proc.stop()
        release_ports(*low_high)
        http.shutdown()
        asyncio.run_coroutine_threadsafe(link.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        linkd.join(10)
        loop.close()
        http.server_close()
        app.extensions["branchline.engine"].dispose()


@pytest.fixture
def carrier(platform: Platform) -> Iterator[Phone]:
    phone = platform.carrier()
    try:
        yield phone
    finally:
        phone.hang_up_all()
        phone.close()


def test_node_enrols_applies_its_plan_and_reports(platform: Platform) -> None:
    doc = wait_for(lambda: (d := platform.node_doc())["online"] and d["status"].get("uptime")
                   and d, 10, "the node online with a heartbeat")
    assert doc["enrolled"] and doc["applied_version"] == doc["plan_version"] >= 1
    assert doc["plan_error"] is None
    status = doc["status"]
    assert status["node"] == "e2e" and status["plan_version"] == doc["applied_version"]
    assert {"calls", "load", "registered", "tenants"} <= set(status)
    assert status["tenants"]["acme"]["status"] == "active"
    # the last good plan is on the node's disk, as the link acknowledged it
    stored = json.loads((platform.run_dir / "demo" / "node" / "link" / "plan.json").read_text())
    assert stored["version"] == doc["applied_version"]


def test_a_routing_change_reaches_the_node_and_changes_calls(
        platform: Platform, carrier: Phone) -> None:
    before = platform.wait_applied(0)["applied_version"]
    started = time.monotonic()
    status, body = platform.call("PATCH", f"/numbers/{ECHO}", "acme-admin", {"target": "700"})
    assert status == 200, body
    after = platform.wait_applied(before)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"plan change took {elapsed:.2f} s to be applied"
    # the echo number now plays acme's announcement and hangs up
    heard = carrier.listen(carrier.answered(ECHO), timeout=20)
    expected = synthesize("Welcome to Acme.", "en-us")
    score, covered = match(heard, expected)
    assert score > 0.5 and covered > 0.9, (score, covered)
    status, body = platform.call("PATCH", f"/numbers/{ECHO}", "acme-admin", {"target": "echo"})
    assert status == 200, body
    platform.wait_applied(after["applied_version"])


def test_suspend_and_resume_reach_the_node_within_5_s(
        platform: Platform, carrier: Phone) -> None:
    version = platform.wait_applied(0)["applied_version"]

    def refused(code: int) -> Callable[[], bool]:
        def probe() -> bool:
            resp, call = carrier.invite(ECHO)
            if call is not None:
                carrier.hang_up(call)
            return resp.status == code
        return probe

    ext = Phone("1001", "acme.example", PASSWORDS["1001"], ("127.0.0.1", platform.sip_port))
    try:
        assert ext.register().status == 200
        wait_for(lambda: platform.node_doc()["status"].get("registered", 0) >= 1, 10,
                 "the registered phone counted in the node's heartbeat")
        started = time.monotonic()
        status, _ = platform.call("PATCH", "/tenants/acme", body={"status": "suspended"})
        assert status == 200
        wait_for(refused(503), 5, "acme's calls refused with 503")
        assert time.monotonic() - started < 5
        assert ext.register().status in (401, 403)
        version = platform.wait_applied(version)["applied_version"]
        started = time.monotonic()
        status, _ = platform.call("PATCH", "/tenants/acme", body={"status": "active"})
        assert status == 200
        wait_for(lambda: not refused(503)(), 5, "acme's calls answered again")
        assert time.monotonic() - started < 5
        assert ext.register().status == 200
    finally:
        ext.close()
    platform.wait_applied(version)


class _NewerParser:
    """A controller newer than the node: its plan parser accepts what the node's does
    not (here: any flow), as after an upgrade of the controller alone."""

    @staticmethod
    def from_dict(doc: Any) -> None:
        return None


def test_a_plan_the_node_refuses_is_reported_and_the_old_one_stays(
        platform: Platform, carrier: Phone, monkeypatch: pytest.MonkeyPatch) -> None:
    applied = platform.wait_applied(0)["applied_version"]
    monkeypatch.setattr(nodes, "Plan", _NewerParser)
    flow = {"flow": "newer", "version": 1, "start": "a", "nodes": {"a": {"type": "hologram"}}}
    status, body = platform.call("PUT", "/flows/newer", "acme-admin", flow)
    assert status == 200, body
    doc = wait_for(lambda: (d := platform.node_doc())["plan_error"] and d, 5,
                   "the node's refusal reported")
    assert "hologram" in doc["plan_error"] and doc["applied_version"] == applied
    assert doc["plan_version"] > applied
    stored = json.loads((platform.run_dir / "demo" / "node" / "link" / "plan.json").read_text())
    assert stored["version"] == applied and "newer" not in stored["plan"]["tenants"][0]["flows"]
    # the node still routes with the old plan
    heard_call = carrier.answered(ECHO)
    carrier.hang_up(heard_call)
    # the NOC page shows the refusal next to the version the node runs
    web = platform.app.test_client()
    page = web.get("/login")
    token = _csrf(page.get_data(as_text=True))
    assert web.post("/login", data={"staff_id": "root", "password": ROOT_PASSWORD,
                                    "csrf": token}).status_code in (302, 303)
    noc = web.get("/noc").get_data(as_text=True)
    row = noc[noc.index('<tr id="node-e2e">'):]
    row = row[:row.index("</tr>")]
    assert "hologram" in row and f">{applied} / {doc['plan_version']}<" in row
    # taking the flow away heals it: the next plan is applied
    status, _ = platform.call("DELETE", "/flows/newer", "acme-admin")
    assert status == 204
    doc = platform.wait_applied(applied)
    assert doc["plan_error"] is None


def _csrf(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]
