"""`make run`: the controller (SQLite) and one demo node it manages over the node link.

The first run creates the controller's database and state under ``run/demo/controller``
(secret key, certificate authority), the platform's super-admin, imports the demo plan
(two tenants, see :mod:`appliance.demo`) with an administrator per tenant, and issues
the node a claim code. It then starts ``python -m controller serve`` (web pages, REST
API, node link) and the node, which enrols with the claim code, receives its plan over
the QUIC link and writes ``run/demo.json`` (with the ``controller`` section and each
tenant's ``admin``). Later runs reuse all of it: the node is enrolled already and
starts from its last good plan. Ctrl-C or SIGTERM stops both processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from appliance.demo import load_or_create_plan, read_secrets
from controller import crypto, nodes
from controller import service as svc
from controller.passwords import hash_password
from controller.store import Node, User, engine_for, migrate, sessions

log = logging.getLogger("branchline.demo")
ADMIN = "noc-admin"
TENANT_NAMES = {"acme": ("Acme Corporation", "en"), "globex": ("Globex Hong Kong", "zh-Hant")}


def seed(run_root: Path, db_url: str, state: Path) -> dict[str, Any]:
    """Create the platform once (idempotent); returns the controller's clear secrets
    (kept in ``run/demo/secrets.json``, mode 0600) and a claim code when the node still
    has to enrol."""
    plan_file = run_root / "demo" / "plan.yaml"
    load_or_create_plan(plan_file)
    clear = read_secrets(plan_file)
    crypto.use_key(crypto.load_key(state / "secret.key"))
    engine = engine_for(db_url)
    migrate(engine)
    cli = svc.Actor("make-run", None, "super_admin", svc.ROLE_PERMISSIONS["super_admin"])
    with sessions(engine)() as s:
        if s.scalar(select(User).where(User.staff_id == ADMIN)) is None:
            password = secrets.token_urlsafe(12)
            s.add(User(staff_id=ADMIN, tenant_id=None, role="super_admin", name="NOC admin",
                       password_hash=hash_password(password), language=""))
            node = nodes.import_plan(s, cli, yaml.safe_load(plan_file.read_text()))
            node.name, node.role, node.site = "Demo node", "hub", "centre"
            admins = {}
            for tenant_id, (name, language) in TENANT_NAMES.items():
                svc.update_tenant(s, cli, tenant_id, {"name": name, "language": language})
                admins[tenant_id] = {"user": f"{tenant_id}-admin",
                                     "password": secrets.token_urlsafe(12)}
                svc.create_user(s, cli, staff_id=admins[tenant_id]["user"],
                                password=admins[tenant_id]["password"], role="admin",
                                tenant_id=tenant_id, name=f"{name} administrator")
            clear["controller"] = {"user": ADMIN, "password": password, "admins": admins}
            _write_secrets(plan_file, clear)
            s.commit()
        node_row = s.get(Node, "demo")
        assert node_row is not None
        if node_row.cert_fingerprint is None:  # not enrolled yet: a fresh claim code
            clear["claim_code"], _ = nodes.issue_claim(s, cli, "demo")
            s.commit()
    engine.dispose()
    return clear


def _write_secrets(plan_file: Path, clear: dict[str, Any]) -> None:
    path = plan_file.parent / "secrets.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v for k, v in clear.items() if k != "claim_code"}, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the controller exited ({proc.returncode}); see its log")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Branchline demo platform")
    parser.add_argument("--run-dir", type=Path, default=Path("run"))
    parser.add_argument("--http-port", type=int, default=8090, help="controller web + API")
    parser.add_argument("--link-port", type=int, default=4433, help="node link (QUIC, UDP)")
    parser.add_argument("--ws-port", type=int, default=8080,
                        help="the node's SIP over WebSocket, for the desktop's softphone "
                        "(0: off)")
    parser.add_argument("node_args", nargs=argparse.REMAINDER,
                        help="after --: options for the node (python -m appliance.demo)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_root = args.run_dir.resolve()
    state = run_root / "demo" / "controller"
    db_url = f"sqlite:///{state / 'controller.sqlite'}"
    state.mkdir(parents=True, exist_ok=True)
    clear = seed(run_root, db_url, state)
    base = f"http://127.0.0.1:{args.http_port}"
    extra = {
        "controller": {"url": base + "/", "api": base + "/api/v1",
                       "user": clear["controller"]["user"],
                       "password": clear["controller"]["password"],
                       "link": f"127.0.0.1:{args.link_port}"},
        "tenant_admins": clear["controller"]["admins"],
    }
    extra_file = run_root / "demo" / "controller.json"
    fd = os.open(extra_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(extra, fh)
    env = {**os.environ, "BRANCHLINE_SECRET_KEY": crypto.load_key(state / "secret.key").decode()}
    controller = subprocess.Popen(
        [sys.executable, "-m", "controller", "serve", "--db", db_url, "--state", str(state),
         "--port", str(args.http_port), "--link-port", str(args.link_port),
         "--insecure-cookies"], env=env)
    node: subprocess.Popen[bytes] | None = None
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        _wait_http(base + "/login", controller)
        node_cmd = [sys.executable, "-m", "appliance.demo", "--run-dir", str(run_root),
                    "--controller", f"127.0.0.1:{args.link_port}",
                    "--ca", str(state / "pki" / "ca.crt"), "--manifest-extra", str(extra_file),
                    "--ws-port", str(args.ws_port), *[a for a in args.node_args if a != "--"]]
        if "claim_code" in clear:
            node_cmd += ["--claim", clear["claim_code"]]
        node = subprocess.Popen(node_cmd)
        log.info("controller %s (user %s), node enrolling over the link", base,
                 clear["controller"]["user"])
        while not stopping and controller.poll() is None and node.poll() is None:
            time.sleep(0.2)
    finally:
        for proc in (node, controller):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in (node, controller):
            if proc is not None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return 0 if stopping else 1


if __name__ == "__main__":
    raise SystemExit(main())
