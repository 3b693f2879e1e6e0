"""`make run`'s contract: the controller and the demo node it manages over the node link
write run/demo.json when ready, phones and administrators can use what it lists, and
Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import wait_for
from tests.harness.baresip import Account, BaresipPhone
from tests.harness.http import http_json
from tests.harness.procs import (
    ManagedProcess,
    descendant_pids,
    free_port_pair,
    free_port_range,
    free_tcp_port,
    free_udp_port,
    wait_for_file,
)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_demo_manifest_and_clean_stop(tmp_run: Path) -> None:
    sip_port = free_port_pair("127.0.0.1")
    low, high = free_port_range("127.0.0.1", 40)
    http_port = free_tcp_port("127.0.0.1")
    proc = ManagedProcess(
        "demo", [sys.executable, "-m", "controller.demo", "--run-dir", str(tmp_run),
                 "--http-port", str(http_port), "--link-port", str(free_udp_port("127.0.0.1")),
                 "--ws-port", str(free_tcp_port("127.0.0.1")),
                 "--", "--sip-port", str(sip_port),
                 "--fs-port", str(free_port_pair("127.0.0.1")),
                 "--rtp-range", f"{low}-{high}", "--api-port",
                 str(free_tcp_port("127.0.0.1"))],
        tmp_run, cwd=REPO,
    ).start()
    manifest_path = tmp_run / "demo.json"
    try:
        wait_for_file(proc, manifest_path, timeout=60)
        m: dict[str, Any] = json.loads(manifest_path.read_text())
        # the controller: its administrator and each tenant's, and the node it manages
        ctl = m["controller"]
        assert ctl["url"] == f"http://127.0.0.1:{http_port}/" and ctl["api"].endswith("/api/v1")
        root = _token(ctl["api"], ctl["user"], ctl["password"])
        node = wait_for(lambda: (d := _get(ctl["api"], "/nodes/demo", root))["online"]
                        and d["applied_version"] == d["plan_version"] and d, 10,
                        "the demo node online with its plan applied")
        assert node["enrolled"] and node["plan_error"] is None
        for t in m["tenants"]:
            admin = _token(ctl["api"], t["admin"]["user"], t["admin"]["password"])
            seen = _get(ctl["api"], "/tenants", admin)["items"]
            assert [x["id"] for x in seen] == [t["id"]]
        assert m["sip"] == {"host": "127.0.0.1", "port": sip_port,
                            "transports": ["udp", "tcp", "ws"]}
        assert m["carrier"]["address"] == "127.0.0.2"
        assert len(m["tenants"]) >= 2
        domains = {t["domain"] for t in m["tenants"]}
        assert len(domains) == len(m["tenants"])
        for t in m["tenants"]:
            exts = {e["number"] for e in t["extensions"]}
            assert len(exts) >= 2 and all(len(e["password"]) >= 12 for e in t["extensions"])
            targets = {d["target"] for d in t["dids"]}
            assert exts <= targets, "every extension has a DID"
        # IVR: the demo flow's number, and the tools to lint and deploy flows, read traces
        assert m["tenants"][0]["ivr"] == "+862088880077"
        import subprocess as sp

        sample = REPO / "appliance" / "ivr" / "samples" / "acme-main.yaml"
        assert sp.run([*m["flows"]["lint"], str(sample)], capture_output=True,
                      timeout=60).returncode == 0
        assert m["flows"]["upload"] == ctl["api"] + "/flows/{name}"
        assert m["trace"]["command"][-2:] == ["--file", m["trace"]["path"]]
        # voicemail: the retrieval number and each mailbox's PIN (the plan has hashes)
        acme = m["tenants"][0]
        assert acme["voicemail"] == "+862088880078"
        pins = {b["number"]: b["pin"] for b in acme["mailboxes"]}
        assert set(pins) == {"1001", "1002"} and all(p.isdigit() for p in pins.values())
        plan_text = (tmp_run / "demo" / "plan.yaml").read_text()
        assert all(pin not in plan_text for pin in pins.values())
        assert acme["api_token"] not in plan_text
        # the agent desktop and its softphone's WebSocket
        assert m["web"]["desk_url"] == m["api"]["url"].removesuffix("/api/v1") + "/desk/"
        assert m["web"]["ws_url"].startswith("ws://127.0.0.1:")
        # the queue and its agents: each agent signs in at the node with its password
        assert acme["queues"] == [{"name": "sales", "did": "+862088880088"}]
        alice = next(a for a in acme["agents"] if a["id"] == "alice")
        assert alice["extension"] == "1001" and alice["password"] not in plan_text
        status, session = http_json("POST", m["api"]["url"] + "/agent-sessions", body={
            "domain": acme["domain"], "agent": "alice", "password": alice["password"]})
        assert status == 201 and session["tenant"] == "acme"
        assert alice["url"] == m["web"]["desk_url"] and alice["supervisor"] is False
        # the supervisor signs in at the same desk, and its session says so
        sup = acme["supervisor"]
        assert sup["id"] == "sue" and sup["url"] == m["web"]["desk_url"]
        status, session = http_json("POST", m["api"]["url"] + "/agent-sessions", body={
            "domain": acme["domain"], "agent": sup["id"], "password": sup["password"]})
        assert status == 201 and session["supervisor"] is True
        assert "supervisor" not in next(t for t in m["tenants"] if t["id"] == "globex")
        # the API answers each tenant with its own view, the operator with all
        def get(path: str, token: str) -> Any:
            req = urllib.request.Request(m["api"]["url"] + path,
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())

        assert set(get("/ports", acme["api_token"])["tenants"]) == {"acme"}
        assert set(get("/ports", m["api"]["operator_token"])["tenants"]) <= {"acme", "globex"}
        with pytest.raises(urllib.error.HTTPError) as denied:
            get("/ports", "not-a-token")
        assert denied.value.code == 401
        denied.value.close()
        # the credentials work
        tenant = m["tenants"][0]
        ext = tenant["extensions"][0]
        phone = BaresipPhone(tmp_run / "phone", Account(
            user=ext["number"], domain=tenant["domain"], password=ext["password"],
            outbound=f"sip:127.0.0.1:{sip_port}"))
        phone.start()
        try:
            phone.wait_registered()
        finally:
            phone.stop()
        # the CDR command runs
        import subprocess

        out = subprocess.run(m["cdr"]["command"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        children = descendant_pids(proc.pid)
        assert any("kamailio" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
                   for p in children if Path(f"/proc/{p}/cmdline").exists())
    finally:
        proc.signal(signal.SIGINT)
        rc = proc.wait(15)
    assert rc == 0, proc.log_tail()
    assert not manifest_path.exists(), "manifest removed on stop"
    assert "kamailio" not in " ".join(
        Path(f"/proc/{p}/cmdline").read_text(errors="replace") for p in descendant_pids()
        if Path(f"/proc/{p}/cmdline").exists())


def _token(api: str, user: str, password: str) -> str:
    status, answer = http_json("POST", api + "/auth/tokens",
                               body={"staff_id": user, "password": password})
    assert status == 201, answer
    return str(answer["token"])


def _get(api: str, path: str, token: str) -> Any:
    status, answer = http_json("GET", api + path, token)
    assert status == 200, answer
    return answer


def test_plan_reload_on_sighup_and_bad_plan_refused(tmp_run: Path) -> None:
    import yaml

    from tests.e2e.conftest import PASSWORDS, start_node

    node = start_node(tmp_run)
    try:
        plan_path = tmp_run / "plan.yaml"
        doc = yaml.safe_load(plan_path.read_text())
        acme = doc["tenants"][0]
        # a bad plan (duplicate DID across tenants) is refused; the old one keeps serving
        bad = yaml.safe_load(plan_path.read_text())
        bad["tenants"][1]["dids"].append({"number": "+862088880001", "target": "2001"})
        plan_path.write_text(yaml.safe_dump(bad, allow_unicode=True))
        offset = node.proc.log_offset()
        node.proc.signal(signal.SIGHUP)
        node.proc.wait_for_log(r"refused, still serving version 1: tenants\.dids", 10,
                               since=offset)
        old = BaresipPhone(tmp_run / "old", node.account("1003"))
        old.start()
        try:
            old.wait_registered()
        finally:
            old.stop()
        # a new password and a new extension take effect without a restart
        doc["version"] = 2
        acme["extensions"][2]["password"] = "a-brand-new-password"
        acme["extensions"].append({"number": "1004", "password": "password-of-1004"})
        plan_path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        offset = node.proc.log_offset()
        node.proc.signal(signal.SIGHUP)
        node.proc.wait_for_log(r"plan version 2 applied", 10, since=offset)
        stale = BaresipPhone(tmp_run / "stale", node.account("1003"))
        stale.start()
        try:
            assert stale.wait_for_event("REGISTER_FAIL")["param"].startswith(("401", "403"))
        finally:
            stale.stop()
        for number, password in (("1003", "a-brand-new-password"),
                                 ("1004", "password-of-1004")):
            phone = BaresipPhone(tmp_run / number, Account(
                user=number, domain="acme.example", password=password, outbound=node.outbound))
            phone.start()
            try:
                phone.wait_registered()
            finally:
                phone.stop()
        assert PASSWORDS["1003"] != "a-brand-new-password"
    finally:
        node.stop()
