"""``python -m controller``: set up and serve the controller.

Every command takes ``--db URL`` (SQLite or PostgreSQL) and ``--state DIR`` (default
``controller-state``: the secret key ``secret.key`` unless ``$BRANCHLINE_SECRET_KEY``
is set, and the node link's certificate authority in ``pki/``). Controller processes
that share a database must share the state directory's contents.

- ``init --admin STAFF_ID``: bring the database to the newest schema and create the
  platform's first super-admin (the password is generated and printed once, or read
  from ``$BRANCHLINE_ADMIN_PASSWORD``); refused when that staff id exists.
- ``serve [--host 127.0.0.1] [--port 8090] [--link-port 4433] [--insecure-cookies]``:
  the web pages and REST API (Flask's threaded server, for the demo and small sites;
  production puts a WSGI server in front and runs ``linkd`` on its own) and the node
  link in the same process (``--link-port 0``: without it).
- ``linkd [--link-host 127.0.0.1] [--link-port 4433]``: the node link alone.
- ``import-plan FILE``: bring a standalone node's plan (YAML or JSON) under the
  controller: the node record and its tenants.
- ``claim NODE``: print a one-time claim code that enrols a box as NODE.
- ``purge``: remove deleted tenants whose retention has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
import threading
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controller import crypto, nodes
from controller import service as svc
from controller.linkd import LinkServer
from controller.passwords import hash_password
from controller.pki import CertificateAuthority
from controller.store import User, engine_for, migrate, sessions

log = logging.getLogger("branchline.controller")
_CLI = svc.Actor("cli", None, "super_admin", svc.ROLE_PERMISSIONS["super_admin"])


def _open(db_url: str, state: Path) -> sessionmaker[Session]:
    crypto.use_key(crypto.load_key(state / "secret.key"))
    engine = engine_for(db_url)
    migrate(engine)
    return sessions(engine)


def init(db_url: str, state: Path, staff_id: str) -> int:
    password = os.environ.get("BRANCHLINE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    if len(password) < 10:
        print("error: the password needs at least 10 characters", file=sys.stderr)
        return 2
    with _open(db_url, state)() as s:
        if s.scalar(select(User).where(User.staff_id == staff_id)) is not None:
            print(f"error: staff id {staff_id} exists", file=sys.stderr)
            return 1
        s.add(User(staff_id=staff_id, tenant_id=None, role="super_admin", name=staff_id,
                   password_hash=hash_password(password), language=""))
        s.commit()
    if "BRANCHLINE_ADMIN_PASSWORD" not in os.environ:
        print(f"super-admin {staff_id} created; password: {password}")
    else:
        print(f"super-admin {staff_id} created")
    return 0


async def run_linkd(db_url: str, state: Path, host: str, port: int,
                    ready: threading.Event | None = None) -> None:
    ca = CertificateAuthority.load_or_create(state / "pki")
    server = LinkServer(host, port, ca, nodes.DbLinkBackend(_open(db_url, state)))
    await server.start()
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def serve(args: argparse.Namespace) -> int:
    from controller.app import create_app

    if args.link_port:
        ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(run_linkd(
            args.db, args.state, args.link_host, args.link_port, ready)),
            name="linkd", daemon=True).start()
        if not ready.wait(30):
            print("error: the node link did not start", file=sys.stderr)
            return 1
    app = create_app(args.db, key_file=args.state / "secret.key",
                     secure_cookies=not args.insecure_cookies)
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", required=True, help="SQLAlchemy URL (sqlite:///..., "
                        "postgresql://...)")
    common.add_argument("--state", type=Path, default=Path("controller-state"),
                        help="secret key and certificate authority")
    parser = argparse.ArgumentParser(prog="python -m controller")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    p_init = command("init", "migrate the database, create the first admin")
    p_init.add_argument("--admin", required=True, help="staff id of the super-admin")
    p_serve = command("serve", "serve the web pages, the API and the node link")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8090)
    p_serve.add_argument("--insecure-cookies", action="store_true",
                         help="session cookies over plain HTTP (loopback demo only)")
    for p in (p_serve, command("linkd", "serve the node link alone")):
        p.add_argument("--link-host", default="127.0.0.1")
        p.add_argument("--link-port", type=int, default=4433)
    p_import = command("import-plan", "bring a node's plan under the controller")
    p_import.add_argument("file", type=Path)
    p_claim = command("claim", "a one-time claim code for a node")
    p_claim.add_argument("node")
    command("purge", "remove deleted tenants past their retention")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    if args.command == "init":
        return init(args.db, args.state, args.admin)
    if args.command == "serve":
        return serve(args)
    if args.command == "linkd":
        asyncio.run(run_linkd(args.db, args.state, args.link_host, args.link_port))
        return 0
    with _open(args.db, args.state)() as s:
        try:
            if args.command == "import-plan":
                node = nodes.import_plan(s, _CLI, yaml.safe_load(args.file.read_text()))
                print(f"node {node.id} and its tenants imported")
            elif args.command == "claim":
                code, expires = nodes.issue_claim(s, _CLI, args.node)
                print(f"claim code for {args.node}: {code} "
                      f"(valid until {expires:%Y-%m-%d %H:%M} UTC)")
            else:
                print("purged:", ", ".join(svc.purge(s)) or "nothing")
            s.commit()
        except svc.ServiceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
