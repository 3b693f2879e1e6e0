"""PostgreSQL for the tests (IVR data actions, the controller's store).

``pg_url`` (session): a database of its own for this pytest run, ``branchline_test_<pid>``,
created on the local server at 127.0.0.1:5432 (port: ``$BRANCHLINE_PG_PORT``) and dropped
at the end of the session (databases left by runs that died are dropped at the next start).
``scripts/setup.sh`` (run by ``make test``) installs and starts PostgreSQL when nothing
answers there and creates the login role ``branchline_test`` (password ``branchline_test``,
CREATEDB).

Connection tried, in order: ``$BRANCHLINE_TEST_PG`` (a libpq conninfo string, e.g.
``host=db port=5432 user=me password=secret``) when set, else the role above, else the
``postgres`` superuser without a password (trust). Tests that need PostgreSQL are
skipped, with the reason, only when none of these can connect.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

PG_HOST = "127.0.0.1"
PG_PORT = int(os.environ.get("BRANCHLINE_PG_PORT", "5432"))
_CANDIDATES = (
    {"user": "branchline_test", "password": "branchline_test"},
    {"user": "postgres"},
)
_DB_RE = re.compile(r"branchline_test_(\d+)")


def _connect_admin() -> tuple[Any, dict[str, Any]]:
    """An autocommit connection to the maintenance database and its parameters."""
    import psycopg

    env = os.environ.get("BRANCHLINE_TEST_PG")
    candidates: list[dict[str, Any]]
    if env:
        candidates = [dict(psycopg.conninfo.conninfo_to_dict(env))]
    else:
        candidates = [{"host": PG_HOST, "port": PG_PORT, **c} for c in _CANDIDATES]
    errors = []
    for params in candidates:
        params = {"dbname": "postgres", "connect_timeout": 3, **params}
        try:
            return psycopg.connect(**params, autocommit=True), params
        except psycopg.Error as exc:
            who = params.get("user", "?")
            errors.append(f"{who}: {str(exc).strip().splitlines()[0]}")
    where = env or f"{PG_HOST}:{PG_PORT}"
    pytest.skip(
        f"PostgreSQL not reachable at {where} ({'; '.join(errors)}); "
        "run `make setup` (installs and starts it) or set BRANCHLINE_TEST_PG"
    )


def _drop_stale(admin: Any) -> None:
    rows = admin.execute(
        "select datname from pg_database where datname like 'branchline\\_test\\_%'"
    ).fetchall()
    for (name,) in rows:
        m = _DB_RE.fullmatch(name)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}"):
            try:
                admin.execute(f'drop database if exists "{name}" with (force)')
            except Exception:  # owned by someone else: not ours to clean
                pass


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for this test session."""
    admin, params = _connect_admin()
    name = f"branchline_test_{os.getpid()}"
    try:
        _drop_stale(admin)
        admin.execute(f'drop database if exists "{name}" with (force)')
        admin.execute(f'create database "{name}"')
        user = quote(str(params.get("user", "")), safe="")
        password = params.get("password")
        auth = f"{user}:{quote(str(password), safe='')}@" if password else f"{user}@"
        host = str(params.get("host", PG_HOST))
        port = params.get("port", PG_PORT)
        if host.startswith("/"):  # a Unix socket directory
            yield f"postgresql+psycopg://{auth}/{name}?host={quote(host, safe='')}&port={port}"
        else:
            yield f"postgresql+psycopg://{auth}{host}:{port}/{name}"
    finally:
        try:
            admin.execute(f'drop database if exists "{name}" with (force)')
        finally:
            admin.close()
