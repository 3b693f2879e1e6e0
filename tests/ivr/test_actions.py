"""IVR data actions against real peers on 127.0.0.1: an aiohttp server, SQLite files, the
local PostgreSQL (``pg_url`` in conftest.py), asyncio TCP servers and the file system.

Async tests run through ``run`` (``asyncio.run`` with a timeout), so no plugin is needed.
Timeouts are provoked by peers that never answer, never by sleeping in the test.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from appliance.ivr.actions import (
    ActionResult,
    ActionRunner,
    FileAction,
    HttpRequest,
    SocketRequest,
    SqlQuery,
    action_from_params,
    mask_secrets,
)

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, 30.0)

    return asyncio.run(main())


def make_runner(
    tmp_path: Path,
    databases: dict[tuple[str, str], str] | None = None,
    allowed: Mapping[str, Collection[str]] | None = None,
    max_body: int = 1 << 20,
) -> ActionRunner:
    dbs = databases or {}
    return ActionRunner(
        storage_root=tmp_path / "storage",
        databases=lambda tenant, name: dbs.get((tenant, name)),
        allowed_hosts=None if allowed is None else (lambda tenant: allowed.get(tenant, ())),
        max_body=max_body,
    )


@contextmanager
def refused_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 that never listens: connecting is refused at once."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
    finally:
        s.close()


# --------------------------------------------------------------------------- HTTP peer


class HttpServer:
    """aiohttp server: /echo (JSON echo), /slow (never answers), /fail (500),
    /redirect (302 to /echo), /big (5000 bytes of text)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.release = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> HttpServer:
        app = web.Application()
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/fail", self.fail)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/big", self.big)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def echo(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        body = await request.json() if request.can_read_body else None
        return web.json_response(
            {"method": request.method, "body": body, "x_test": request.headers.get("X-Test")}
        )

    async def slow(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        await self.release.wait()
        return web.Response(text="late")

    async def fail(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.json_response({"error": "backend down"}, status=500)

    async def redirect(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        raise web.HTTPFound("/echo")

    async def big(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(text="x" * 5000)


def test_http_json_round_trip(tmp_path: Path) -> None:
    async def main() -> ActionResult:
        async with HttpServer() as srv:
            runner = make_runner(tmp_path)
            try:
                return await runner.run(
                    "acme",
                    HttpRequest(
                        "POST", srv.url("/echo"), {"X-Test": "yes"}, {"id": 7, "name": "Zoë"}
                    ),
                )
            finally:
                await runner.close()

    res = run(main())
    assert res.ok and res.error is None
    assert res.value["status"] == 200
    assert res.value["json"] == {
        "method": "POST",
        "body": {"id": 7, "name": "Zoë"},
        "x_test": "yes",
    }
    assert '"method": "POST"' in res.value["text"]
    assert res.value["truncated"] is False
    assert 0 < res.elapsed < 5


def test_http_error_status_is_a_failure_with_the_response(tmp_path: Path) -> None:
    async def main() -> ActionResult:
        async with HttpServer() as srv:
            runner = make_runner(tmp_path)
            try:
                return await runner.run("acme", HttpRequest("GET", srv.url("/fail")))
            finally:
                await runner.close()

    res = run(main())
    assert not res.ok
    assert res.error == "HTTP 500"
    assert res.value["status"] == 500
    assert res.value["json"] == {"error": "backend down"}


def test_http_timeout(tmp_path: Path) -> None:
    async def main() -> ActionResult:
        async with HttpServer() as srv:
            runner = make_runner(tmp_path)
            try:
                return await runner.run("acme", HttpRequest("GET", srv.url("/slow"), timeout=0.3))
            finally:
                await runner.close()

    res = run(main())
    assert not res.ok
    assert res.error == "timeout after 0.3 s"
    assert 0.3 <= res.elapsed < 3


def test_http_redirect_is_not_followed(tmp_path: Path) -> None:
    async def main() -> tuple[ActionResult, list[str]]:
        async with HttpServer() as srv:
            runner = make_runner(tmp_path)
            try:
                return await runner.run("acme", HttpRequest("GET", srv.url("/redirect"))), srv.hits
            finally:
                await runner.close()

    res, hits = run(main())
    assert not res.ok and res.error == "HTTP 302"
    assert res.value["status"] == 302
    assert hits == ["/redirect"]  # /echo never reached


def test_http_body_is_bounded(tmp_path: Path) -> None:
    async def main() -> ActionResult:
        async with HttpServer() as srv:
            runner = make_runner(tmp_path, max_body=1000)
            try:
                return await runner.run("acme", HttpRequest("GET", srv.url("/big")))
            finally:
                await runner.close()

    res = run(main())
    assert res.ok
    assert res.value["text"] == "x" * 1000
    assert res.value["truncated"] is True and res.value["json"] is None


def test_http_only_http_and_https_urls(tmp_path: Path) -> None:
    async def main() -> list[ActionResult]:
        runner = make_runner(tmp_path)
        try:
            return [
                await runner.run("acme", HttpRequest("GET", url))
                for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/")
            ] + [
                await runner.run("acme", HttpRequest("GET", "http:///nohost")),
                await runner.run("acme", HttpRequest("TRACE", "http://127.0.0.1/")),
            ]
        finally:
            await runner.close()

    results = run(main())
    assert [r.ok for r in results] == [False] * 5
    assert results[0].error == "only http and https URLs are allowed"
    assert results[1].error == "only http and https URLs are allowed"
    assert "host" in (results[3].error or "")
    assert "method" in (results[4].error or "")


def test_http_allowed_hosts(tmp_path: Path) -> None:
    allowed = {"acme": ["127.0.0.1"], "globex": ["api.example.com"], "initech": []}

    async def main() -> tuple[list[ActionResult], list[str]]:
        async with HttpServer() as srv:
            runner = make_runner(tmp_path, allowed=allowed)
            try:
                results = [
                    await runner.run(tenant, HttpRequest("GET", url))
                    for tenant, url in [
                        ("acme", srv.url("/echo")),
                        ("globex", srv.url("/echo")),
                        ("initech", srv.url("/echo")),
                        ("acme", f"http://localhost:{srv.port}/echo"),  # names are not resolved
                        ("acme", f"http://2130706433:{srv.port}/echo"),  # 127.0.0.1 as a number
                    ]
                ]
                return results, srv.hits
            finally:
                await runner.close()

    results, hits = run(main())
    assert results[0].ok
    assert [r.error for r in results[1:]] == ["host not allowed"] * 4
    assert hits == ["/echo"]  # only the allowed request reached the server


def test_http_errors_never_show_credentials(tmp_path: Path) -> None:
    async def main(port: int) -> ActionResult:
        runner = make_runner(tmp_path)
        try:
            url = f"http://bob:hunter2pw@127.0.0.1:{port}/x"
            return await runner.run("acme", HttpRequest("GET", url, timeout=2))
        finally:
            await runner.close()

    with refused_port() as port:
        res = run(main(port))
    assert not res.ok and res.error
    assert "hunter2pw" not in res.error and "bob" not in res.error
    assert "HTTP request failed" in res.error


def test_mask_secrets() -> None:
    assert (
        mask_secrets("at postgresql+psycopg://u:p%40ss@db:5432/crm failed")
        == "at postgresql+psycopg://***@db:5432/crm failed"
    )
    assert mask_secrets("http://host/path?a=b@c") == "http://host/path?a=b@c"


# --------------------------------------------------------------------------- SQL: SQLite


def sqlite_db(path: Path) -> str:
    con = sqlite3.connect(path)
    with con:
        con.execute("create table accounts (id integer primary key, name text, balance real)")
        con.executemany(
            "insert into accounts values (?, ?, ?)",
            [(1, "alice", 12.5), (2, "bob", 0), (3, "carol", 99.25), (4, "dan", 1), (5, "eve", 2)],
        )
    con.close()
    return f"sqlite:///{path}"


def test_sqlite_select_binds_parameters(tmp_path: Path) -> None:
    dbs = {("acme", "crm"): sqlite_db(tmp_path / "crm.db")}
    select = "select name, balance from accounts where id = :id"

    async def main() -> list[ActionResult]:
        runner = make_runner(tmp_path, dbs)
        try:
            return [
                await runner.run("acme", SqlQuery("crm", select, {"id": 1})),
                await runner.run("acme", SqlQuery("crm", select, {"id": "1 or 1=1"})),
                await runner.run(
                    "acme",
                    SqlQuery(
                        "crm", "select id from accounts where name = :n", {"n": "x' or '1'='1"}
                    ),
                ),
                await runner.run("acme", SqlQuery("crm", select, {"id": "1; drop table accounts"})),
                await runner.run("acme", SqlQuery("crm", "select count(*) as n from accounts")),
            ]
        finally:
            await runner.close()

    one, inj1, inj2, inj3, count = run(main())
    assert one.ok
    assert one.value == {
        "rows": [{"name": "alice", "balance": 12.5}],
        "rowcount": 1,
        "truncated": False,
    }
    for res in (inj1, inj2, inj3):  # the values stayed literals
        assert res.ok and res.value["rows"] == []
    assert count.value["rows"] == [{"n": 5}]  # the table is intact


def test_sqlite_dml_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    dbs = {("acme", "crm"): sqlite_db(path)}

    async def main() -> list[ActionResult]:
        runner = make_runner(tmp_path, dbs)
        try:
            return [
                await runner.run(
                    "acme",
                    SqlQuery(
                        "crm",
                        "insert into accounts (name, balance) values (:n, :b)",
                        {"n": "frank", "b": 3.5},
                    ),
                ),
                await runner.run(
                    "acme",
                    SqlQuery(
                        "crm",
                        "update accounts set balance = balance + :d where id < :i",
                        {"d": 1, "i": 3},
                    ),
                ),
            ]
        finally:
            await runner.close()

    insert, update = run(main())
    assert insert.ok and insert.value == {"rowcount": 1}
    assert update.ok and update.value == {"rowcount": 2}
    con = sqlite3.connect(path)
    try:
        assert con.execute("select balance from accounts where name = 'frank'").fetchone() == (3.5,)
        assert con.execute("select balance from accounts where id = 1").fetchone() == (13.5,)
    finally:
        con.close()


def test_sqlite_errors(tmp_path: Path) -> None:
    dbs = {("acme", "crm"): sqlite_db(tmp_path / "crm.db")}

    async def main() -> dict[str, ActionResult]:
        runner = make_runner(tmp_path, dbs)
        try:
            return {
                "bad sql": await runner.run("acme", SqlQuery("crm", "selec * from accounts")),
                "no table": await runner.run(
                    "acme", SqlQuery("crm", "select * from missing_table")
                ),
                "missing param": await runner.run(
                    "acme", SqlQuery("crm", "select * from accounts where id = :id")
                ),
                "extra param": await runner.run("acme", SqlQuery("crm", "select 1", {"id": 1})),
                "unknown db": await runner.run("acme", SqlQuery("nope", "select 1")),
                "other tenant": await runner.run("globex", SqlQuery("crm", "select 1")),
                "procedure": await runner.run(
                    "acme", SqlQuery("crm", "", {"id": 1}, procedure="balance_of")
                ),
                "both": await runner.run(
                    "acme", SqlQuery("crm", "select 1", procedure="balance_of")
                ),
                "bad procedure": await runner.run(
                    "acme", SqlQuery("crm", "", procedure="x(); drop table accounts; --")
                ),
                "dict param": await runner.run(
                    "acme", SqlQuery("crm", "select :v", {"v": {"a": 1}})
                ),
            }
        finally:
            await runner.close()

    res = run(main())
    assert all(not r.ok for r in res.values())
    assert res["bad sql"].error == 'near "selec": syntax error'
    assert res["no table"].error == "no such table: missing_table"
    assert "id" in (res["missing param"].error or "")
    assert "id" in (res["extra param"].error or "")
    assert res["unknown db"].error == "no database 'nope' for tenant acme"
    assert res["other tenant"].error == "no database 'crm' for tenant globex"
    assert res["procedure"].error == "stored procedures are not supported for sqlite"
    assert res["both"].error == "give a statement or a procedure, not both"
    assert res["bad procedure"].error == "invalid procedure name"
    assert "parameter v" in (res["dict param"].error or "")


def test_sqlite_max_rows(tmp_path: Path) -> None:
    dbs = {("acme", "crm"): sqlite_db(tmp_path / "crm.db")}

    async def main() -> ActionResult:
        runner = make_runner(tmp_path, dbs)
        try:
            return await runner.run(
                "acme", SqlQuery("crm", "select id from accounts order by id", max_rows=2)
            )
        finally:
            await runner.close()

    res = run(main())
    assert res.ok
    assert res.value == {"rows": [{"id": 1}, {"id": 2}], "rowcount": 2, "truncated": True}


def test_sqlite_timeout_interrupts_the_statement(tmp_path: Path) -> None:
    dbs = {("acme", "crm"): sqlite_db(tmp_path / "crm.db")}
    endless = (
        "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"
    )

    async def main() -> tuple[ActionResult, ActionResult]:
        runner = make_runner(tmp_path, dbs)
        try:
            slow = await runner.run("acme", SqlQuery("crm", endless, timeout=0.3))
            after = await runner.run("acme", SqlQuery("crm", "select 1 as one"))
            return slow, after
        finally:
            await runner.close()

    slow, after = run(main())
    assert not slow.ok and slow.error == "timeout after 0.3 s"
    assert 0.3 <= slow.elapsed < 3
    assert after.ok and after.value["rows"] == [{"one": 1}]


def test_close_waits_for_sql_still_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dbs = {("acme", "crm"): sqlite_db(tmp_path / "crm.db")}
    endless = (
        "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"
    )

    async def main() -> list[ActionResult]:
        runner = make_runner(tmp_path, dbs)
        try:
            return list(
                await asyncio.gather(
                    *(runner.run("acme", SqlQuery("crm", endless, timeout=0.2)) for _ in range(3))
                )
            )
        finally:
            await runner.close()  # at once: the worker threads may still be stopping

    results = run(main())
    assert [r.error for r in results] == ["timeout after 0.2 s"] * 3
    assert not [t for t in threading.enumerate() if t.name.startswith("ivr-sql")]
    assert "never retrieved" not in caplog.text


def test_sql_errors_never_show_credentials(tmp_path: Path) -> None:
    with refused_port() as port:
        url = f"postgresql://bob:s3cretpw@127.0.0.1:{port}/crm"

        async def main() -> ActionResult:
            runner = make_runner(tmp_path, {("acme", "crm"): url})
            try:
                return await runner.run("acme", SqlQuery("crm", "select 1", timeout=5))
            finally:
                await runner.close()

        res = run(main())
    assert not res.ok and res.error
    assert "s3cretpw" not in res.error and "bob:" not in res.error
    assert "refused" in res.error.lower() or "failed" in res.error.lower()


# --------------------------------------------------------------------------- SQL: PostgreSQL


@pytest.fixture(scope="module")
def pg_crm(pg_url: str) -> str:
    """The session database with an accounts table and a set-returning function."""
    import psycopg

    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as con:
        con.execute("drop table if exists accounts cascade")
        con.execute(
            "create table accounts (id int primary key, name text not null,"
            " balance numeric(12, 2) not null, opened date not null)"
        )
        con.execute(
            "insert into accounts values (1, 'alice', 12.50, '2024-01-31'),"
            " (2, 'bob', 1000, '2023-06-01'), (3, 'carol', 0.10, '2022-02-02')"
        )
        con.execute(
            "create or replace function balance_of(p_id int)"
            " returns table(name text, balance numeric) language sql stable"
            " as $$ select name, balance from accounts where id = p_id $$"
        )
        con.execute(
            "create or replace function add_funds(p_id int, p_amount numeric)"
            " returns numeric language sql"
            " as $$ update accounts set balance = balance + p_amount where id = p_id"
            " returning balance $$"
        )
    return pg_url


def test_postgres_select_types_and_injection(tmp_path: Path, pg_crm: str) -> None:
    dbs = {("acme", "crm"): pg_crm}
    select = "select name, balance, opened from accounts where id = :id"

    async def main() -> list[ActionResult]:
        runner = make_runner(tmp_path, dbs)
        try:
            return [
                await runner.run("acme", SqlQuery("crm", select, {"id": 1})),
                await runner.run("acme", SqlQuery("crm", select, {"id": 2})),
                await runner.run(
                    "acme",
                    SqlQuery(
                        "crm", "select id from accounts where name = :n", {"n": "x' or 1=1 --"}
                    ),
                ),
                await runner.run(
                    "acme",
                    SqlQuery(
                        "crm", "select id from accounts where id::text = :id", {"id": "1 or 1=1"}
                    ),
                ),
                await runner.run("acme", SqlQuery("crm", "select count(*) as n from accounts")),
            ]
        finally:
            await runner.close()

    alice, bob, inj1, inj2, count = run(main())
    assert alice.ok, alice.error
    assert alice.value["rows"] == [{"name": "alice", "balance": 12.5, "opened": "2024-01-31"}]
    assert bob.value["rows"][0]["balance"] == 1000 and isinstance(
        bob.value["rows"][0]["balance"], int
    )
    assert inj1.ok and inj1.value["rows"] == []
    assert inj2.ok and inj2.value["rows"] == []
    assert count.value["rows"] == [{"n": 3}]


def test_postgres_dml_bad_sql_and_function(tmp_path: Path, pg_crm: str) -> None:
    dbs = {("acme", "crm"): pg_crm}

    async def main() -> list[ActionResult]:
        runner = make_runner(tmp_path, dbs)
        try:
            return [
                await runner.run(
                    "acme",
                    SqlQuery(
                        "crm",
                        "update accounts set name = :n where id = :id",
                        {"n": "caroline", "id": 3},
                    ),
                ),
                await runner.run("acme", SqlQuery("crm", "select name from accounts where id = 3")),
                await runner.run("acme", SqlQuery("crm", "selec name from accounts")),
                await runner.run("acme", SqlQuery("crm", "", {"p_id": 1}, procedure="balance_of")),
                await runner.run(
                    "acme",
                    SqlQuery("crm", "", {"p_id": 2, "p_amount": 5}, procedure="public.add_funds"),
                ),
                await runner.run(
                    "acme", SqlQuery("crm", "", {"p_id": 1}, procedure="no_such_function")
                ),
                await runner.run(  # read through a cursor: only 4 rows are ever produced
                    "acme",
                    SqlQuery(
                        "crm",
                        "with recursive c(g) as (select 1 union all select g + :step from c)"
                        " select g from c",
                        {"step": 1},
                        max_rows=3,
                        timeout=5,
                    ),
                ),
            ]
        finally:
            await runner.close()

    update, check, bad, func, proc, missing, huge = run(main())
    assert update.ok and update.value == {"rowcount": 1}
    assert check.value["rows"] == [{"name": "caroline"}]
    assert not bad.ok and bad.error == 'syntax error at or near "selec"'
    assert func.ok, func.error
    assert func.value["rows"] == [{"name": "alice", "balance": 12.5}]
    assert proc.ok, proc.error
    assert proc.value["rows"] == [{"add_funds": 1005}]
    assert not missing.ok and "no_such_function" in (missing.error or "")
    assert huge.ok, huge.error
    assert huge.value == {"rows": [{"g": 1}, {"g": 2}, {"g": 3}], "rowcount": 3, "truncated": True}
    # an endless result: it can only be answered because the rows are not all produced


def test_postgres_statement_timeout(tmp_path: Path, pg_crm: str) -> None:
    dbs = {("acme", "crm"): pg_crm}

    async def main() -> tuple[ActionResult, ActionResult]:
        runner = make_runner(tmp_path, dbs)
        try:
            slow = await runner.run(
                "acme", SqlQuery("crm", "select pg_sleep(:s)", {"s": 30}, timeout=0.5)
            )
            after = await runner.run(
                "acme", SqlQuery("crm", "select current_setting('statement_timeout') as t")
            )
            return slow, after
        finally:
            await runner.close()  # returns promptly: the server cancelled the sleep

    slow, after = run(main())
    assert not slow.ok and slow.error == "timeout after 0.5 s"
    assert 0.5 <= slow.elapsed < 3
    assert after.ok and after.value["rows"][0]["t"] != "0"  # the limit is per statement


# --------------------------------------------------------------------------- TCP peers


class TcpServer:
    """An asyncio TCP server on 127.0.0.1 that counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed_by_client = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for w in list(self._writers):
            w.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if reader.at_eof():
                self.closed_by_client.set()
            writer.close()
            self._writers.discard(writer)


async def line_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(b"echo:" + line.rstrip(b"\n").upper() + b"\r\n")
        await writer.drain()


async def line_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one line, then closes the connection."""
    line = await reader.readline()
    writer.write(b"once:" + line)
    await writer.drain()


async def length4_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        body = await reader.readexactly(n)
        answer = body.decode("utf-8")[::-1].encode("utf-8")
        writer.write(struct.pack(">I", len(answer)) + answer)
        await writer.drain()


async def raw_reverse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = await reader.read()  # until the client half-closes
    writer.write(body[::-1])
    await writer.drain()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(1024):  # reads everything, answers nothing
        pass


async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(b"y" * 5000 + b"\n")
    await writer.drain()


def test_socket_line_short_connections(tmp_path: Path) -> None:
    async def main() -> tuple[list[ActionResult], int]:
        async with TcpServer(line_echo) as srv:
            runner = make_runner(tmp_path)
            try:
                results = [
                    await runner.run("acme", SocketRequest("127.0.0.1", srv.port, f"hello {i}"))
                    for i in range(3)
                ]
                return results, srv.connections
            finally:
                await runner.close()

    results, connections = run(main())
    assert [r.value for r in results] == ["echo:HELLO 0", "echo:HELLO 1", "echo:HELLO 2"]
    assert all(r.ok for r in results)
    assert connections == 3  # one per request


def test_socket_length4(tmp_path: Path) -> None:
    async def main() -> ActionResult:
        async with TcpServer(length4_echo) as srv:
            runner = make_runner(tmp_path)
            try:
                return await runner.run(
                    "acme",
                    SocketRequest("127.0.0.1", srv.port, "账户 42\nline two", framing="length4"),
                )
            finally:
                await runner.close()

    res = run(main())
    assert res.ok and res.value == "owt enil\n24 户账"


def test_socket_raw(tmp_path: Path) -> None:
    async def main() -> ActionResult:
        async with TcpServer(raw_reverse) as srv:
            runner = make_runner(tmp_path)
            try:
                return await runner.run(
                    "acme", SocketRequest("127.0.0.1", srv.port, "abc\ndef", framing="raw")
                )
            finally:
                await runner.close()

    res = run(main())
    assert res.ok and res.value == "fed\ncba"


def test_socket_timeout_and_refused(tmp_path: Path) -> None:
    async def main(refused: int) -> tuple[ActionResult, ActionResult, ActionResult]:
        async with TcpServer(silent) as srv:
            runner = make_runner(tmp_path)
            try:
                short = await runner.run(
                    "acme", SocketRequest("127.0.0.1", srv.port, "hi", timeout=0.3)
                )
                pooled = await runner.run(
                    "acme",
                    SocketRequest(
                        "127.0.0.1", srv.port, "hi", framing="length4", timeout=0.3, pooled=True
                    ),
                )
                ref = await runner.run("acme", SocketRequest("127.0.0.1", refused, "hi"))
                return short, pooled, ref
            finally:
                await runner.close()

    with refused_port() as port:
        short, pooled, ref = run(main(port))
    assert not short.ok and short.error == "timeout after 0.3 s"
    assert 0.3 <= short.elapsed < 3
    assert not pooled.ok and pooled.error == "timeout after 0.3 s"
    assert not ref.ok and ref.error == f"connection refused by 127.0.0.1:{port}"
    assert ref.elapsed < 3


def test_socket_pooled_reuses_one_connection(tmp_path: Path) -> None:
    async def main() -> tuple[list[ActionResult], list[ActionResult], int, bool]:
        async with TcpServer(line_echo) as srv:
            runner = make_runner(tmp_path)
            try:
                first = [
                    await runner.run(
                        "acme", SocketRequest("127.0.0.1", srv.port, f"seq {i}", pooled=True)
                    )
                    for i in range(3)
                ]
                together = await asyncio.gather(
                    *(
                        runner.run(
                            "acme", SocketRequest("127.0.0.1", srv.port, f"par {i}", pooled=True)
                        )
                        for i in range(5)
                    )
                )
                connections = srv.connections
            finally:
                await runner.close()
            # close() ends the pooled connection: the server reads EOF
            await asyncio.wait_for(srv.closed_by_client.wait(), 5)
            return first, list(together), connections, srv.closed_by_client.is_set()

    first, together, connections, closed = run(main())
    assert [r.value for r in first] == ["echo:SEQ 0", "echo:SEQ 1", "echo:SEQ 2"]
    assert [r.value for r in together] == [f"echo:PAR {i}" for i in range(5)]
    assert connections == 1
    assert closed


def test_socket_pooled_is_per_tenant(tmp_path: Path) -> None:
    async def main() -> tuple[list[ActionResult], int]:
        async with TcpServer(line_echo) as srv:
            runner = make_runner(tmp_path)
            try:
                results = [
                    await runner.run(t, SocketRequest("127.0.0.1", srv.port, t, pooled=True))
                    for t in ("acme", "globex", "acme", "globex")
                ]
                return results, srv.connections
            finally:
                await runner.close()

    results, connections = run(main())
    assert [r.value for r in results] == ["echo:ACME", "echo:GLOBEX", "echo:ACME", "echo:GLOBEX"]
    assert connections == 2


def test_socket_pooled_reconnects_when_the_peer_closed(tmp_path: Path) -> None:
    async def main() -> tuple[list[ActionResult], int]:
        async with TcpServer(line_once) as srv:
            runner = make_runner(tmp_path)
            try:
                results = [
                    await runner.run(
                        "acme", SocketRequest("127.0.0.1", srv.port, f"r{i}", pooled=True)
                    )
                    for i in range(3)
                ]
                return results, srv.connections
            finally:
                await runner.close()

    results, connections = run(main())
    assert [(r.ok, r.value) for r in results] == [(True, f"once:r{i}") for i in range(3)]
    assert connections == 3


def test_socket_refusals(tmp_path: Path) -> None:
    allowed = {"acme": ["127.0.0.1"]}

    async def main() -> dict[str, ActionResult]:
        async with TcpServer(flood) as srv:
            runner = make_runner(tmp_path, allowed=allowed, max_body=2000)
            try:
                return {
                    "other tenant": await runner.run(
                        "globex", SocketRequest("127.0.0.1", srv.port, "x")
                    ),
                    "name": await runner.run("acme", SocketRequest("localhost", srv.port, "x")),
                    "newline": await runner.run(
                        "acme", SocketRequest("127.0.0.1", srv.port, "a\nb")
                    ),
                    "raw pooled": await runner.run(
                        "acme",
                        SocketRequest("127.0.0.1", srv.port, "x", framing="raw", pooled=True),
                    ),
                    "too long": await runner.run(
                        "acme", SocketRequest("127.0.0.1", srv.port, "x", max_response=100)
                    ),
                    "over max_body": await runner.run(
                        "acme", SocketRequest("127.0.0.1", srv.port, "x")
                    ),
                    "bad port": await runner.run("acme", SocketRequest("127.0.0.1", 0, "x")),
                    "bad encoding": await runner.run(
                        "acme", SocketRequest("127.0.0.1", srv.port, "x", encoding="nope")
                    ),
                }
            finally:
                await runner.close()

    res = run(main())
    assert all(not r.ok for r in res.values())
    assert res["other tenant"].error == "host not allowed"
    assert res["name"].error == "host not allowed"
    assert res["newline"].error == "payload contains a newline (line framing)"
    assert "cannot be pooled" in (res["raw pooled"].error or "")
    assert res["too long"].error == "answer longer than 100 bytes"
    assert res["over max_body"].error == "answer longer than 2000 bytes"
    assert "port" in (res["bad port"].error or "")
    assert res["bad encoding"].error == "unknown encoding 'nope'"


# --------------------------------------------------------------------------- files


def files_run(runner: ActionRunner, tenant: str, *actions: FileAction) -> list[ActionResult]:
    async def main() -> list[ActionResult]:
        try:
            return [await runner.run(tenant, a) for a in actions]
        finally:
            await runner.close()

    return run(main())


def test_file_operations(tmp_path: Path) -> None:
    results = files_run(
        make_runner(tmp_path),
        "acme",
        FileAction("exists", "notes/today.txt"),
        FileAction("list", ""),
        FileAction("write", "notes/today.txt", "x"),  # no directory yet
        FileAction("mkdir", "notes/2024"),
        FileAction("write", "notes/today.txt", "caller 1\n"),
        FileAction("append", "notes/today.txt", "caller 2 ✓\n"),
        FileAction("read", "notes/today.txt"),
        FileAction("exists", "notes/today.txt"),
        FileAction("list", "notes"),
        FileAction("list", "./notes/"),
        FileAction("delete", "notes"),  # not empty
        FileAction("delete", "notes/today.txt"),
        FileAction("delete", "notes/2024"),
        FileAction("list", "notes"),
        FileAction("read", "notes/today.txt"),
        FileAction("append", "log.txt", "a"),  # append creates
        FileAction("mkdir", "log.txt"),
        FileAction("delete", ""),
    )
    values = [(r.ok, r.value if r.ok else r.error) for r in results]
    assert values == [
        (True, False),
        (True, []),
        (False, "no such directory: notes"),
        (True, None),
        (True, 9),
        (True, 22),
        (True, "caller 1\ncaller 2 ✓\n"),
        (True, True),
        (True, ["2024", "today.txt"]),
        (True, ["2024", "today.txt"]),
        (False, "directory not empty: notes"),
        (True, None),
        (True, None),
        (True, []),
        (False, "no such file: notes/today.txt"),
        (True, 1),
        (False, "exists and is not a directory: log.txt"),
        (False, "path names no file"),
    ]
    assert (tmp_path / "storage" / "acme" / "files" / "log.txt").read_text() == "a"


def test_file_tenants_are_isolated(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    secret = storage / "acme" / "files" / "secret.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text("acme only")
    (storage / "globex" / "files").mkdir(parents=True)
    # a link an operator (or a bug) left in globex's space, pointing at acme's file
    (storage / "globex" / "files" / "link.txt").symlink_to(secret)
    (storage / "globex" / "files" / "linkdir").symlink_to(secret.parent)
    (storage / "globex" / "files" / "inside.txt").write_text("globex's")
    (storage / "globex" / "files" / "alias.txt").symlink_to("inside.txt")

    results = files_run(
        make_runner(tmp_path),
        "globex",
        FileAction("read", "../../acme/files/secret.txt"),
        FileAction("read", "../acme/files/secret.txt"),
        FileAction("read", "a/../../acme/files/secret.txt"),
        FileAction("read", str(secret)),
        FileAction("read", "link.txt"),
        FileAction("read", "linkdir/secret.txt"),
        FileAction("write", "linkdir/new.txt", "x"),
        FileAction("exists", "secret.txt"),
        FileAction("read", "alias.txt"),  # a link that stays inside is fine
        FileAction("delete", "link.txt"),  # removes the link, not acme's file
        FileAction("read", "nul\x00.txt"),
    )
    errors = [r.error for r in results]
    assert errors[:4] == ["'..' is not allowed in paths"] * 3 + ["absolute paths are not allowed"]
    assert errors[4] == "path leaves the tenant's storage: link.txt"
    assert errors[5] == "path leaves the tenant's storage: linkdir/secret.txt"
    assert errors[6] == "path leaves the tenant's storage: linkdir/new.txt"
    assert results[7].ok and results[7].value is False
    assert results[8].ok and results[8].value == "globex's"
    assert results[9].ok
    assert errors[10] == "path contains control characters"
    assert secret.read_text() == "acme only"
    assert not (secret.parent / "new.txt").exists()
    assert not (storage / "globex" / "files" / "link.txt").is_symlink()


def test_file_invalid_tenant_ids(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    results = files_run(runner, "../acme", FileAction("read", "secret.txt"))
    results += files_run(make_runner(tmp_path), "Acme", FileAction("list", ""))
    results += files_run(make_runner(tmp_path), "", FileAction("list", ""))
    assert [r.error for r in results] == ["invalid tenant id"] * 3


def test_file_symlinked_tenant_directory_is_refused(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    (storage / "acme" / "files").mkdir(parents=True)
    (storage / "evil").symlink_to(storage / "acme")
    (storage / "shadow").mkdir()
    (storage / "shadow" / "files").symlink_to(storage / "acme" / "files")
    results = files_run(make_runner(tmp_path), "evil", FileAction("list", ""))
    results += files_run(make_runner(tmp_path), "shadow", FileAction("write", "x.txt", "x"))
    assert [r.error for r in results] == ["tenant storage is a symlink: refused"] * 2
    assert list((storage / "acme" / "files").iterdir()) == []


def test_file_sizes_are_bounded(tmp_path: Path) -> None:
    big = tmp_path / "storage" / "acme" / "files" / "big.txt"
    big.parent.mkdir(parents=True)
    big.write_text("z" * 200)
    results = files_run(
        make_runner(tmp_path, max_body=100),
        "acme",
        FileAction("write", "a.txt", "y" * 101),
        FileAction("write", "a.txt", "y" * 60),
        FileAction("append", "a.txt", "y" * 41),
        FileAction("append", "a.txt", "y" * 40),
        FileAction("read", "big.txt"),
    )
    assert [(r.ok, r.value if r.ok else r.error) for r in results] == [
        (False, "file would be larger than 100 bytes: a.txt"),
        (True, 60),
        (False, "file would be larger than 100 bytes: a.txt"),
        (True, 100),
        (False, "file larger than 100 bytes: big.txt"),
    ]


# --------------------------------------------------------------------------- the runner


def test_run_never_raises_for_bad_requests(tmp_path: Path) -> None:
    async def main() -> list[ActionResult]:
        runner = make_runner(tmp_path)
        try:
            results = [
                await runner.run("acme", object()),  # type: ignore[arg-type]
                await runner.run("acme", HttpRequest("GET", "http://127.0.0.1/", timeout=-1)),
                await runner.run("acme", SqlQuery("crm", "select 1", timeout=True)),
                await runner.run("acme", SocketRequest("127.0.0.1", 70000, "x")),
                await runner.run("acme", FileAction("chmod", "x")),  # type: ignore[arg-type]
                await runner.run("acme", SqlQuery("crm", "select 1", max_rows=-1)),
                await runner.run("acme", HttpRequest("GET", 42)),  # type: ignore[arg-type]
            ]
        finally:
            await runner.close()
        results.append(await runner.run("acme", FileAction("list", "")))
        return results

    results = run(main())
    assert all(not r.ok and r.error for r in results), results
    assert results[-1].error == "action runner is closed"
    assert all(r.elapsed >= 0 for r in results)


def test_action_from_params() -> None:
    assert action_from_params(
        "http", {"method": "POST", "url": "http://x/", "body": {"id": 1}, "headers": {"a": 2}}, 3.0
    ) == HttpRequest("POST", "http://x/", {"a": "2"}, {"id": 1}, 3.0)
    assert action_from_params(
        "sql", {"database": "crm", "procedure": "balance_of", "params": {"p_id": 1}}, 5.0
    ) == SqlQuery("crm", "", {"p_id": 1}, 5.0, 100, "balance_of")
    assert action_from_params(
        "socket", {"host": "10.0.0.5", "port": 9000, "payload": 1234, "pooled": True}, 2.0
    ) == SocketRequest("10.0.0.5", 9000, "1234", timeout=2.0, pooled=True)
    assert action_from_params("file", {"op": "read", "path": 7}, 5.0) == FileAction("read", "7")
    for kind, params in [
        ("file", {"op": "chmod", "path": "x"}),
        ("socket", {"host": "h", "port": "many"}),
        ("sql", {"statement": "select 1"}),
        ("smtp", {}),
    ]:
        with pytest.raises(ValueError):
            action_from_params(kind, params, 5.0)


def test_import_is_light() -> None:
    code = (
        "import sys, appliance.ivr.actions; "
        "print(sorted(m for m in ('aiohttp', 'sqlalchemy', 'psycopg') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert out.stdout.strip() == "[]"
