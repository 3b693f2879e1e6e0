"""``python -m controller``: set up and serve the controller.

- ``init --db URL --admin STAFF_ID``: bring the database to the newest schema and create
  the platform's first super-admin (the password is generated and printed once, or read
  from ``$BRANCHLINE_ADMIN_PASSWORD``); refused when that staff id exists.
- ``serve --db URL [--host 127.0.0.1] [--port 8090]``: the REST API (Flask's server,
  for the demo and tests; production puts a WSGI server in front).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from sqlalchemy import select

from controller.passwords import hash_password
from controller.store import User, engine_for, migrate, sessions


def init(db_url: str, staff_id: str) -> int:
    engine = engine_for(db_url)
    migrate(engine)
    password = os.environ.get("BRANCHLINE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    if len(password) < 10:
        print("error: the password needs at least 10 characters", file=sys.stderr)
        return 2
    with sessions(engine)() as s:
        if s.scalar(select(User).where(User.staff_id == staff_id)) is not None:
            print(f"error: staff id {staff_id} exists", file=sys.stderr)
            return 1
        s.add(User(staff_id=staff_id, tenant_id=None, role="super_admin", name=staff_id,
                   password_hash=hash_password(password), language="en"))
        s.commit()
    engine.dispose()
    if "BRANCHLINE_ADMIN_PASSWORD" not in os.environ:
        print(f"super-admin {staff_id} created; password: {password}")
    else:
        print(f"super-admin {staff_id} created")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller")
    sub = parser.add_subparsers(dest="command", required=True)
    p_init = sub.add_parser("init", help="migrate the database, create the first admin")
    p_init.add_argument("--db", required=True, help="SQLAlchemy URL (sqlite:///..., "
                        "postgresql://...)")
    p_init.add_argument("--admin", required=True, help="staff id of the super-admin")
    p_serve = sub.add_parser("serve", help="serve the REST API")
    p_serve.add_argument("--db", required=True)
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    if args.command == "init":
        return init(args.db, args.admin)
    from controller.app import create_app

    create_app(args.db).run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
