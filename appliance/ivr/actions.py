"""IVR data actions: HTTP, SQL, TCP sockets and tenant files (edge module).

Requirements: R-4.12 (databases: statements and stored procedures), R-4.14 (TCP, short
and long-lived connections), R-4.15 (middleware, reached over HTTP), R-4.16 (files and
directories, confined to the tenant's own space).

Theory of operation
-------------------
The flow interpreter is pure: a data node makes it emit a request, and some time later
it is told the result. This module is the edge that carries requests out.
:meth:`ActionRunner.run` takes the tenant and one request (:class:`HttpRequest`,
:class:`SqlQuery`, :class:`SocketRequest`, :class:`FileAction`), does the I/O on the
running event loop (blocking work in threads) and returns an :class:`ActionResult`.

``run`` never raises because an action failed: a timeout, a refused connection, bad SQL,
an HTTP error status, an invalid path, a host the tenant may not reach, a malformed
request... all come back as ``ok=False`` with a one-line ``error`` text meant for the
flow's ``<result>_error`` variable and the call trace. (Cancelling the task that awaits
``run`` still cancels it.) ``elapsed`` is the wall time spent in ``run``, in seconds.
``value`` is always JSON-like: dict, list, str, int, float, bool or None.

Every error text and log line goes through :func:`mask_secrets`: the user and password of
any ``scheme://user:pass@host`` URL are replaced by ``***``, and a database URL is
never shown whole.

HTTP (:class:`HttpRequest`, aiohttp)
    Only ``http``/``https`` URLs; methods GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS.
    ``json_body`` (when not None) is sent as JSON. Redirects are *not* followed (a 3xx
    could lead anywhere; the flow sees it). The value is ``{"status": int, "json":
    parsed body or None, "text": body as text, "truncated": bool}``; the body is read up
    to ``max_body`` bytes (``truncated`` says more was sent, ``json`` is then None).
    ``json`` is parsed when the response says JSON or its body starts with ``{``/``[``.
    ``ok`` is True for 2xx only; any other status gives ``ok=False`` and ``error="HTTP
    503"``, with the value still filled so a flow can read the status and body. No
    cookies are kept (tenants must never share a cookie jar) and proxy settings from
    the environment are ignored.

SQL (:class:`SqlQuery`, SQLAlchemy 2)
    ``databases(tenant, name)`` gives the SQLAlchemy URL; one engine (with its pool) per
    URL, created on first use. Values are always bound parameters
    (``text(statement).bindparams(**params)``), never pasted into SQL text: a parameter
    the statement does not name is an error, and so is one the statement needs but was
    not given. The only name put into SQL text is a validated procedure identifier.
    Blocking calls run in a small pool of worker threads owned by the runner (so slow
    databases never starve the loop's default executor, used for DNS). Rows come back as
    ``{"rows": [{column: value}], "rowcount": len(rows), "truncated": bool}`` (at most
    ``max_rows``), statements without rows as ``{"rowcount": n}``; every successful
    statement is committed, a failed one rolled back. On PostgreSQL a query (``select``,
    ``with`` or ``values``, without insert/update/delete/merge/into anywhere in its
    text) is read through a server-side cursor, so a huge result never crosses the
    network or fills memory: only ``max_rows + 1`` rows are produced (mind that with
    functions that have side effects). Values are made JSON-like:
    Decimal -> int when integral else float, date/time -> ISO text, bytes -> hex, other
    unknown types -> ``str``. Errors give the driver's message (first line).
    ``postgresql://`` URLs use psycopg 3 (``postgresql+psycopg``).

    Timeouts: the awaiting side gives up at ``timeout`` in every case; the database is
    also told, so the worker thread is freed too -- PostgreSQL: ``set_config(
    'statement_timeout', ..., true)`` (``SET LOCAL``, for this transaction only);
    SQLite: a progress handler that interrupts the statement; Oracle: the connection's
    ``call_timeout``. Other dialects have no server-side limit here: their worker
    thread waits for the database to answer.

    Stored procedures (``procedure="name"`` or ``"schema.name"``, ``statement`` empty),
    parameters passed positionally in the order of ``params``:

    ===============  ============================================  ====================
    dialect          SQL sent                                      tested here
    ===============  ============================================  ====================
    PostgreSQL       ``select * from name(:a, :b)`` (a function;   yes
                     use a statement ``call name(:a)`` for a
                     PROCEDURE)
    MySQL/MariaDB    ``call name(:a, :b)``                         no
    SQL Server       ``exec name :a, :b`` (pymssql URL)            no
    Oracle           ``begin name(:a, :b); end;`` (rowcount only;  no
                     for a function's value use a statement
                     ``select name(:a) as v from dual``) (oracledb)
    SQLite           none: an error                                yes
    ===============  ============================================  ====================

    Oracle (``oracle+oracledb://``) and SQL Server (``mssql+pymssql://``) work through
    SQLAlchemy's dialects once their driver is installed; neither is installed nor
    tested here.

Sockets (:class:`SocketRequest`, asyncio streams)
    Framing ``line``: the payload (which may not contain a newline) plus ``\\n`` out,
    one line back (without its ``\\r\\n``/``\\n``). ``length4``: a 4-byte big-endian
    length, then the bytes, both ways. ``raw`` (short connections only): the payload,
    then our side is half-closed, and everything up to EOF or ``max_response`` bytes is
    the answer. The value is the response text (decoded with ``encoding``, undecodable
    bytes replaced). A short request connects, sends, reads one answer and closes. A
    ``pooled`` request keeps one connection per (tenant, host, port) open across
    requests and calls; requests on it are serialised by a lock (the wait counts against
    the timeout). A pooled connection the peer has closed is replaced before sending; if
    a reused connection breaks before any byte of the answer arrives, the request is
    sent once more on a new connection (so a peer that died after acting on it may see
    it twice: pooled services should be idempotent or tolerate that). After any other
    failure (timeout, oversized or partial answer) the pooled connection is dropped, as
    its stream may be out of step.

Files (:class:`FileAction`)
    Paths are relative to ``storage_root/<tenant>/files/`` with ``/`` separators. Refused:
    absolute paths, ``..``, control characters, a tenant or ``files`` directory that is
    a symlink, and any path whose resolved location (following symlinks) leaves the
    tenant's ``files`` directory; so tenant A can never reach tenant B's files. Ops:
    ``read`` -> text (files over ``max_body`` are refused), ``write`` -> creates or
    replaces the file (its directory must exist; value: size in bytes), ``append`` ->
    creates or extends (value: new size; a file may not grow over ``max_body``),
    ``delete`` -> a file, a symlink (not its target) or an empty directory, ``list`` ->
    sorted names in a directory (at most 10000; ``""`` is the top), ``mkdir`` -> with
    parents, fine if it exists, ``exists`` -> bool. Text is UTF-8. (This defends against
    what flows ask for, not against a local user racing renames under the root.)

Hosts
    ``allowed_hosts(tenant)`` (when given) lists the host names and IP literals HTTP and
    socket actions of that tenant may reach (an empty list: none). The URL's or
    request's host is compared with the list, case-insensitively and with IP literals
    normalised; names are not resolved, so ``localhost`` and ``127.0.0.1`` are
    different entries (and an allowed name is trusted to resolve where the operator
    meant). Anything else is ``ok=False, error="host not allowed"`` and nothing is sent.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import datetime
import importlib
import ipaddress
import json
import logging
import re
import struct
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from appliance.ids import ID_RE

if TYPE_CHECKING:  # imported lazily at run time: keeps this module fast to import
    import aiohttp
    from sqlalchemy.engine import Connection, Engine

__all__ = [
    "Action",
    "ActionResult",
    "ActionRunner",
    "FileAction",
    "HttpRequest",
    "SocketRequest",
    "SqlQuery",
    "action_from_params",
    "mask_secrets",
]

log = logging.getLogger(__name__)

TENANT_RE: Final = ID_RE
MAX_TIMEOUT: Final = 300.0  # seconds; any action's timeout must be in (0, MAX_TIMEOUT]
MAX_ROWS: Final = 10_000
MAX_LIST: Final = 10_000
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
FILE_OPS: Final = ("read", "write", "append", "delete", "list", "mkdir", "exists")
FRAMINGS: Final = ("line", "length4", "raw")

_PARAM_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PROCEDURE_RE: Final = re.compile(
    r"[A-Za-z_][A-Za-z0-9_$]{0,62}(?:\.[A-Za-z_][A-Za-z0-9_$]{0,62})?"
)
_QUERY_RE: Final = re.compile(r"\s*(select|with|values)\b", re.IGNORECASE)
_WRITES_RE: Final = re.compile(r"\b(insert|update|delete|merge|into)\b", re.IGNORECASE)
_USERINFO_RE: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
_SQL_WORKERS: Final = 8
_PG_CONNECT_TIMEOUT: Final = 10  # seconds, per new database connection
_CLOSE_GRACE: Final = 5.0  # seconds close() waits for running SQL calls


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP call to a middleware service (R-4.15)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json_body: Any = None
    timeout: float = 5.0


@dataclass(frozen=True)
class SqlQuery:
    """A SQL statement, or a stored procedure, on one of the tenant's databases (R-4.12).

    ``statement`` uses ``:name`` parameters, bound from ``params``. With ``procedure``
    set, ``statement`` must be empty.
    """

    database: str
    statement: str
    params: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 5.0
    max_rows: int = 100
    procedure: str | None = None


@dataclass(frozen=True)
class SocketRequest:
    """One request/response over TCP, on a new or a pooled connection (R-4.14)."""

    host: str
    port: int
    payload: str
    framing: Literal["line", "length4", "raw"] = "line"
    encoding: str = "utf-8"
    timeout: float = 5.0
    pooled: bool = False
    max_response: int = 65536


@dataclass(frozen=True)
class FileAction:
    """A file or directory operation inside the tenant's storage (R-4.16)."""

    op: Literal["read", "write", "append", "delete", "list", "mkdir", "exists"]
    path: str
    content: str = ""


@dataclass(frozen=True)
class ActionResult:
    """What a flow gets back. ``value`` is JSON-like; ``error`` is set when not ``ok``."""

    ok: bool
    value: Any = None
    error: str | None = None
    elapsed: float = 0.0


Action = HttpRequest | SqlQuery | SocketRequest | FileAction


class _Failure(Exception):
    """The action failed; ``value`` (if any) still goes to the flow."""

    def __init__(self, message: str, value: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.value = value


def _timeout_text(timeout: float) -> str:
    return f"timeout after {float(timeout)} s"


def mask_secrets(text: str) -> str:
    """``text`` with the user:password part of any URL replaced by ``***``."""
    return _USERINFO_RE.sub(r"\1***@", text)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line[:500]


# --------------------------------------------------------------------------- validation


def _check_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Failure("timeout must be a number of seconds")
    if not 0 < value <= MAX_TIMEOUT:
        raise _Failure(f"timeout must be more than 0 and at most {MAX_TIMEOUT:g} s")
    return float(value)


def _check_int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Failure(f"{name} must be an integer from {low} to {high}")
    return value


def _norm_host(host: str) -> str:
    h = host.strip().lower().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    try:
        return ipaddress.ip_address(h).compressed
    except ValueError:
        return h


def action_from_params(kind: str, params: Mapping[str, Any], timeout: float) -> Action:
    """Build a request from a flow's data node (``RunAction.kind/params/timeout``).

    Expression values are turned into the types the request wants (a number used as a
    path, payload or content becomes text). Raises ``ValueError`` naming the field when
    the node's parameters cannot make a request.
    """

    def text(name: str, default: str | None = None) -> str:
        value = params.get(name, default)
        if value is None:
            raise ValueError(f"{kind} action: {name} is required")
        if isinstance(value, Mapping | list):
            raise ValueError(f"{kind} action: {name} must be text")
        return _text_value(value)

    def number(name: str, default: int | None = None) -> int:
        value = params.get(name, default)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{kind} action: {name} must be a number") from None

    def mapping(name: str) -> dict[str, Any]:
        value = params.get(name) or {}
        if not isinstance(value, Mapping):
            raise ValueError(f"{kind} action: {name} must be a mapping")
        return dict(value)

    if kind == "http":
        headers = {str(k): _text_value(v) for k, v in mapping("headers").items()}
        return HttpRequest(text("method", "GET"), text("url"), headers, params.get("body"), timeout)
    if kind == "sql":
        procedure = params.get("procedure")
        return SqlQuery(
            text("database"),
            text("statement", ""),
            mapping("params"),
            timeout,
            number("max_rows", 100),
            None if procedure is None else str(procedure),
        )
    if kind == "socket":
        framing = text("framing", "line")
        if framing not in FRAMINGS:
            raise ValueError(f"socket action: framing must be one of {', '.join(FRAMINGS)}")
        return SocketRequest(
            text("host"),
            number("port"),
            text("payload", ""),
            framing,  # type: ignore[arg-type]
            timeout=timeout,
            pooled=bool(params.get("pooled", False)),
        )
    if kind == "file":
        op = text("op")
        if op not in FILE_OPS:
            raise ValueError(f"file action: op must be one of {', '.join(FILE_OPS)}")
        return FileAction(op, text("path"), text("content", ""))  # type: ignore[arg-type]
    raise ValueError(f"unknown action kind {kind!r}")


def _text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- runner


class _PooledSocket:
    """One long-lived connection of a tenant to host:port, used by one request at a time."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def usable(self) -> bool:
        return (
            self.reader is not None
            and self.writer is not None
            and not self.writer.is_closing()
            and not self.reader.at_eof()
        )

    async def drop(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            await _close_writer(writer, abort=True)


async def _close_writer(writer: asyncio.StreamWriter, *, abort: bool = False) -> None:
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (OSError, TimeoutError):
        pass


class ActionRunner:
    """Executes IVR data actions for any tenant; one per node process.

    ``databases(tenant_id, name)`` maps a database name of the tenant to a SQLAlchemy
    URL (None: the tenant has no such database); ``allowed_hosts(tenant_id)`` lists the
    hosts its HTTP and socket actions may reach (None: any host); ``max_body`` bounds
    HTTP bodies, files and socket answers, in bytes. Use from one event loop; call
    :meth:`close` when done.
    """

    def __init__(
        self,
        *,
        storage_root: Path,
        databases: Callable[[str, str], str | None],
        allowed_hosts: Callable[[str], Collection[str]] | None = None,
        max_body: int = 1 << 20,
    ) -> None:
        self._storage_root = Path(storage_root)
        self._databases = databases
        self._allowed_hosts = allowed_hosts
        self._max_body = max_body
        self._closed = False
        self._http: aiohttp.ClientSession | None = None
        self._pool: dict[tuple[str, str, int], _PooledSocket] = {}
        self._engines: dict[str, Engine] = {}
        self._engines_lock = threading.Lock()
        self._sql_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._sql_running: set[concurrent.futures.Future[Any]] = set()

    async def run(self, tenant_id: str, action: Action) -> ActionResult:
        """Execute ``action`` for ``tenant_id``; failures come back as ``ok=False``."""
        start = time.monotonic()
        kind = type(action).__name__
        ok, value, error = False, None, None
        try:
            if self._closed:
                raise _Failure("action runner is closed")
            if not isinstance(tenant_id, str) or not TENANT_RE.fullmatch(tenant_id):
                raise _Failure("invalid tenant id")
            if isinstance(action, HttpRequest):
                ok, value, error = await self._run_http(tenant_id, action)
            elif isinstance(action, SqlQuery):
                ok, value = True, await self._run_sql(tenant_id, action)
            elif isinstance(action, SocketRequest):
                ok, value = True, await self._run_socket(tenant_id, action)
            elif isinstance(action, FileAction):
                ok, value = True, await asyncio.to_thread(self._run_file, tenant_id, action)
            else:
                raise _Failure(f"unknown action {kind}")
        except _Failure as exc:
            ok, value, error = False, exc.value, mask_secrets(exc.message)
        except Exception as exc:  # a bug of ours: still an answer for the flow
            log.exception("ivr action tenant=%r kind=%s: internal error", tenant_id, kind)
            ok, value, error = False, None, mask_secrets(f"internal error: {exc!r}")
        elapsed = time.monotonic() - start
        if ok:
            log.debug("ivr action tenant=%r kind=%s ok elapsed=%.3f", tenant_id, kind, elapsed)
        else:
            log.info(
                "ivr action tenant=%r kind=%s failed elapsed=%.3f: %s",
                tenant_id,
                kind,
                elapsed,
                error,
            )
        return ActionResult(ok, value, error, elapsed)

    async def close(self) -> None:
        """Close pooled sockets, the HTTP session and database engines (idempotent)."""
        self._closed = True
        pool, self._pool = self._pool, {}
        for slot in pool.values():
            await slot.drop()
        session, self._http = self._http, None
        if session is not None:
            await session.close()
        executor, self._sql_executor = self._sql_executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            running = [asyncio.wrap_future(f) for f in list(self._sql_running) if not f.done()]
            if running:
                await asyncio.wait(running, timeout=_CLOSE_GRACE)
                for f in running:  # their callers have gone: mark the outcome as seen
                    if f.done() and not f.cancelled():
                        f.exception()
            if all(f.done() for f in running):
                await asyncio.to_thread(executor.shutdown, wait=True)
            else:
                log.warning("ivr actions: %d SQL call(s) still running at close", len(running))
        with self._engines_lock:
            engines, self._engines = list(self._engines.values()), {}
        if engines:
            await asyncio.to_thread(_dispose_engines, engines)

    # ------------------------------------------------------------------ hosts

    def _check_host(self, tenant_id: str, host: str) -> None:
        if self._allowed_hosts is None:
            return
        try:
            allowed = {_norm_host(h) for h in self._allowed_hosts(tenant_id)}
        except Exception as exc:
            raise _Failure(f"allowed hosts lookup failed: {exc}") from None
        if _norm_host(host) not in allowed:
            raise _Failure("host not allowed")

    # ------------------------------------------------------------------ HTTP

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            # the first import takes a while: do it off the loop
            await asyncio.to_thread(importlib.import_module, "aiohttp")
            import aiohttp

            if self._http is None:
                self._http = aiohttp.ClientSession(
                    cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
                )
        return self._http

    async def _run_http(self, tenant_id: str, req: HttpRequest) -> tuple[bool, Any, str | None]:
        timeout = _check_timeout(req.timeout)
        method = req.method.upper() if isinstance(req.method, str) else ""
        if method not in HTTP_METHODS:
            raise _Failure(f"HTTP method must be one of {', '.join(sorted(HTTP_METHODS))}")
        if not isinstance(req.headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in req.headers.items()
        ):
            raise _Failure("HTTP headers must map names to text")
        if not isinstance(req.url, str):
            raise _Failure("invalid URL")
        session = await self._session()
        import aiohttp
        import yarl

        try:
            url = yarl.URL(req.url)
        except (ValueError, TypeError) as exc:
            raise _Failure(f"invalid URL: {exc}") from None
        if url.scheme not in ("http", "https"):
            raise _Failure("only http and https URLs are allowed")
        if not url.raw_host:
            raise _Failure("URL has no host")
        self._check_host(tenant_id, url.raw_host)
        headers = dict(req.headers)
        data: bytes | None = None
        if req.json_body is not None:
            try:
                data = json.dumps(_jsonable(req.json_body), ensure_ascii=False).encode()
            except (TypeError, ValueError) as exc:
                raise _Failure(f"body is not JSON: {exc}") from None
            if len(data) > self._max_body:
                raise _Failure(f"body longer than {self._max_body} bytes")
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        try:
            async with (
                asyncio.timeout(timeout),
                session.request(
                    method, url, headers=headers, data=data, allow_redirects=False
                ) as resp,
            ):
                body, truncated = await _read_bounded(resp.content, self._max_body)
                status, charset, ctype = resp.status, resp.charset, resp.content_type
        except TimeoutError:
            raise _Failure(_timeout_text(timeout)) from None
        except aiohttp.ClientError as exc:
            message = _first_line(str(exc)) or type(exc).__name__
            raise _Failure(f"HTTP request failed: {message}") from None
        except (OSError, ValueError) as exc:
            raise _Failure(f"HTTP request failed: {_first_line(str(exc)) or exc!r}") from None
        try:
            text = body.decode(charset or "utf-8", errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        parsed: Any = None
        if not truncated and ("json" in ctype or text.lstrip()[:1] in ("{", "[")):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        value = {"status": status, "json": parsed, "text": text, "truncated": truncated}
        if 200 <= status < 300:
            return True, value, None
        return False, value, f"HTTP {status}"

    # ------------------------------------------------------------------ SQL

    async def _run_sql(self, tenant_id: str, q: SqlQuery) -> Any:
        timeout = _check_timeout(q.timeout)
        max_rows = _check_int(q.max_rows, "max_rows", 0, MAX_ROWS)
        if not isinstance(q.database, str) or not q.database:
            raise _Failure("database name missing")
        if not isinstance(q.statement, str):
            raise _Failure("statement must be text")
        if not isinstance(q.params, Mapping):
            raise _Failure("params must map names to values")
        params: dict[str, Any] = {}
        for name, value in q.params.items():
            if not isinstance(name, str) or not _PARAM_RE.fullmatch(name):
                raise _Failure(f"invalid parameter name {name!r}")
            if value is not None and not isinstance(value, str | int | float | bool):
                raise _Failure(f"parameter {name} must be text, a number, a boolean or null")
            params[name] = value
        if q.procedure is not None:
            if q.statement.strip():
                raise _Failure("give a statement or a procedure, not both")
            if not isinstance(q.procedure, str) or not _PROCEDURE_RE.fullmatch(q.procedure):
                raise _Failure("invalid procedure name")
        elif not q.statement.strip():
            raise _Failure("empty SQL statement")
        try:
            url = self._databases(tenant_id, q.database)
        except Exception as exc:
            raise _Failure(f"database lookup failed: {exc}") from None
        if not url:
            raise _Failure(f"no database {q.database!r} for tenant {tenant_id}")
        if self._sql_executor is None:
            self._sql_executor = concurrent.futures.ThreadPoolExecutor(
                _SQL_WORKERS, thread_name_prefix="ivr-sql"
            )
        deadline = time.monotonic() + timeout
        future = self._sql_executor.submit(
            self._sql_blocking, url, q, params, max_rows, deadline, timeout
        )
        self._sql_running.add(future)
        future.add_done_callback(self._sql_running.discard)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            raise _Failure(_timeout_text(timeout)) from None

    def _engine(self, url: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(url)
            if engine is None:
                engine = _create_engine(url)
                self._engines[url] = engine
            return engine

    def _sql_blocking(
        self,
        url: str,
        q: SqlQuery,
        params: dict[str, Any],
        max_rows: int,
        deadline: float,
        timeout: float,
    ) -> Any:
        """Runs in a worker thread; raises only ``_Failure``."""
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text

        def hide_url(message: str) -> str:
            return mask_secrets(message.replace(url, "<database URL>"))

        try:
            engine = self._engine(url)
            backend = engine.dialect.name
            sql = (
                q.statement
                if q.procedure is None
                else _procedure_sql(backend, q.procedure, list(params))
            )
            statement = text(sql).bindparams(**params)
            if backend == "postgresql" and _QUERY_RE.match(sql) and not _WRITES_RE.search(sql):
                # a server-side cursor: only the rows we keep cross the network
                statement = statement.execution_options(
                    stream_results=True, max_row_buffer=max_rows + 1
                )
            with engine.connect() as conn:
                undo = _limit_statement_time(conn, backend, deadline)
                try:
                    result = conn.execute(statement)
                    if result.returns_rows:
                        keys = [str(k) for k in result.keys()]
                        fetched = result.fetchmany(max_rows + 1) if max_rows else []
                        rows = [
                            {k: _jsonable(v) for k, v in zip(keys, row, strict=False)}
                            for row in fetched[:max_rows]
                        ]
                        truncated = len(fetched) > max_rows or (
                            max_rows == 0 and result.fetchone() is not None
                        )
                        value: Any = {"rows": rows, "rowcount": len(rows), "truncated": truncated}
                    else:
                        value = {"rowcount": result.rowcount}
                    result.close()
                    conn.commit()
                finally:
                    undo()
            return value
        except _Failure:
            raise
        except sa_exc.DBAPIError as exc:
            if _is_timeout(exc.orig, deadline):
                raise _Failure(_timeout_text(timeout)) from None
            message = _first_line(str(exc.orig)) or type(exc.orig).__name__
            raise _Failure(hide_url(message)) from None
        except sa_exc.SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            message = _first_line(str(orig if orig is not None else exc))
            raise _Failure(hide_url(message or type(exc).__name__)) from None
        except ImportError as exc:
            raise _Failure(hide_url(f"database driver missing: {exc}")) from None
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise _Failure(_timeout_text(timeout)) from None
            raise _Failure(hide_url(f"{type(exc).__name__}: {_first_line(str(exc))}")) from None

    # ------------------------------------------------------------------ sockets

    async def _run_socket(self, tenant_id: str, req: SocketRequest) -> str:
        timeout = _check_timeout(req.timeout)
        if not isinstance(req.host, str) or not req.host.strip():
            raise _Failure("socket host missing")
        port = _check_int(req.port, "port", 1, 65535)
        max_response = min(_check_int(req.max_response, "max_response", 1, 1 << 31), self._max_body)
        if req.framing not in FRAMINGS:
            raise _Failure(f"framing must be one of {', '.join(FRAMINGS)}")
        if req.framing == "raw" and req.pooled:
            raise _Failure("raw framing reads to the end of the connection: it cannot be pooled")
        try:
            codecs.lookup(req.encoding)
            data = req.payload.encode(req.encoding)
        except LookupError:
            raise _Failure(f"unknown encoding {req.encoding!r}") from None
        except (UnicodeError, AttributeError, TypeError):
            raise _Failure(f"payload cannot be encoded as {req.encoding}") from None
        if len(data) > self._max_body:
            raise _Failure(f"payload longer than {self._max_body} bytes")
        if req.framing == "line" and b"\n" in data:
            raise _Failure("payload contains a newline (line framing)")
        host = _norm_host(req.host)
        self._check_host(tenant_id, host)
        where = f"{host}:{port}"
        try:
            if req.pooled:
                raw = await self._pooled_exchange(
                    (tenant_id, host, port), host, port, data, req.framing, max_response, timeout
                )
            else:
                raw = await _short_exchange(host, port, data, req.framing, max_response, timeout)
        except TimeoutError:
            raise _Failure(_timeout_text(timeout)) from None
        except ConnectionRefusedError:
            raise _Failure(f"connection refused by {where}") from None
        except asyncio.IncompleteReadError:
            raise _Failure(f"connection closed by {where} before a complete answer") from None
        except (asyncio.LimitOverrunError, ValueError):
            raise _Failure(f"answer longer than {max_response} bytes") from None
        except OSError as exc:
            raise _Failure(f"connection to {where} failed: {exc.strerror or exc}") from None
        return raw.decode(req.encoding, errors="replace")

    async def _pooled_exchange(
        self,
        key: tuple[str, str, int],
        host: str,
        port: int,
        data: bytes,
        framing: str,
        max_response: int,
        timeout: float,
    ) -> bytes:
        slot = self._pool.get(key)
        if slot is None:
            slot = self._pool[key] = _PooledSocket()
        async with asyncio.timeout(timeout), slot.lock:
            for attempt in range(2):
                fresh = not slot.usable()
                if fresh:
                    await slot.drop()
                    slot.reader, slot.writer = await asyncio.open_connection(
                        host, port, limit=self._max_body + 1
                    )
                assert slot.reader is not None and slot.writer is not None
                try:
                    await _send(slot.writer, data, framing)
                    return await _receive(slot.reader, framing, max_response)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    await slot.drop()
                    partial = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
                    if fresh or partial or attempt:
                        raise
                    log.debug(
                        "ivr actions: pooled connection to %s:%d broke; reconnecting", host, port
                    )
                except BaseException:
                    await slot.drop()
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ files

    def _run_file(self, tenant_id: str, fa: FileAction) -> Any:
        """Runs in a thread; raises only ``_Failure``."""
        op = fa.op
        if op not in FILE_OPS:
            raise _Failure(f"file op must be one of {', '.join(FILE_OPS)}")
        if not isinstance(fa.content, str):
            raise _Failure("file content must be text")
        parts = _path_parts(fa.path, allow_top=op in ("list", "exists", "mkdir"))
        rel = "/".join(parts) or "/"
        root = self._storage_root.resolve()
        tenant_dir = root / tenant_id
        base = tenant_dir / "files"
        for d in (tenant_dir, base):
            if d.is_symlink():
                raise _Failure("tenant storage is a symlink: refused")
        try:
            if op in ("write", "append", "mkdir"):
                base.mkdir(parents=True, exist_ok=True)
            elif not base.is_dir():
                if op == "exists":
                    return False
                if op == "list" and not parts:
                    return []
                raise _Failure(f"no such file or directory: {rel}")
            if not parts:
                target = base
            else:
                parent = base.joinpath(*parts[:-1]).resolve()
                if parent != base and base not in parent.parents:
                    raise _Failure(f"path leaves the tenant's storage: {rel}")
                target = parent / parts[-1]
                if op == "delete" and target.is_symlink():
                    target.unlink()  # the link itself, never its target
                    return None
                resolved = target.resolve()
                if resolved != base and base not in resolved.parents:
                    raise _Failure(f"path leaves the tenant's storage: {rel}")
                target = resolved
            return self._file_op(op, target, base, rel, fa.content)
        except _Failure:
            raise
        except OSError as exc:
            raise _Failure(f"{op} {rel}: {exc.strerror or type(exc).__name__}") from None

    def _file_op(self, op: str, target: Path, base: Path, rel: str, content: str) -> Any:
        if op == "exists":
            return target.exists()
        if op == "mkdir":
            if target.exists() and not target.is_dir():
                raise _Failure(f"exists and is not a directory: {rel}")
            target.mkdir(parents=True, exist_ok=True)
            return None
        if op == "list":
            if not target.is_dir():
                raise _Failure(f"no such directory: {rel}")
            names = sorted(p.name for p in target.iterdir())
            return names[:MAX_LIST]
        if op == "read":
            if not target.is_file():
                raise _Failure(f"no such file: {rel}")
            size = target.stat().st_size
            if size > self._max_body:
                raise _Failure(f"file larger than {self._max_body} bytes: {rel}")
            return target.read_bytes()[: self._max_body].decode("utf-8", errors="replace")
        if op == "delete":
            if target == base:
                raise _Failure("cannot delete the top directory")
            if target.is_dir():
                try:
                    target.rmdir()
                except OSError:
                    raise _Failure(f"directory not empty: {rel}") from None
            elif target.exists():
                target.unlink()
            else:
                raise _Failure(f"no such file or directory: {rel}")
            return None
        # write / append
        data = content.encode("utf-8")
        if not target.parent.is_dir():
            raise _Failure(f"no such directory: {rel.rpartition('/')[0] or '/'}")
        if target.is_dir():
            raise _Failure(f"is a directory: {rel}")
        size = target.stat().st_size if op == "append" and target.exists() else 0
        if size + len(data) > self._max_body:
            raise _Failure(f"file would be larger than {self._max_body} bytes: {rel}")
        with target.open("ab" if op == "append" else "wb") as f:
            f.write(data)
        return size + len(data)


# --------------------------------------------------------------------------- helpers


async def _read_bounded(content: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    return body[:limit], size > limit


async def _send(writer: asyncio.StreamWriter, data: bytes, framing: str) -> None:
    if framing == "line":
        writer.write(data + b"\n")
    elif framing == "length4":
        writer.write(struct.pack(">I", len(data)) + data)
    else:
        writer.write(data)
        if writer.can_write_eof():
            writer.write_eof()
    await writer.drain()


async def _receive(reader: asyncio.StreamReader, framing: str, max_response: int) -> bytes:
    if framing == "line":
        line = await reader.readuntil(b"\n")
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > max_response:
            raise ValueError("answer too long")
        return line
    if framing == "length4":
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        if size > max_response:
            raise ValueError("answer too long")
        return await reader.readexactly(size)
    chunks: list[bytes] = []
    got = 0
    while got < max_response:
        chunk = await reader.read(max_response - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


async def _short_exchange(
    host: str, port: int, data: bytes, framing: str, max_response: int, timeout: float
) -> bytes:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=max_response + 2)
            await _send(writer, data, framing)
            answer = await _receive(reader, framing, max_response)
    except BaseException:
        if writer is not None:
            await _close_writer(writer, abort=True)
        raise
    await _close_writer(writer)
    return answer


def _path_parts(path: Any, *, allow_top: bool) -> list[str]:
    if not isinstance(path, str):
        raise _Failure("path must be text")
    if len(path) > 1024:
        raise _Failure("path too long")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise _Failure("path contains control characters")
    if path.startswith("/"):
        raise _Failure("absolute paths are not allowed")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Failure("'..' is not allowed in paths")
    if any(len(p.encode("utf-8")) > 255 for p in parts):
        raise _Failure("path component too long")
    if not parts and not allow_top:
        raise _Failure("path names no file")
    return parts


def _procedure_sql(backend: str, name: str, params: list[str]) -> str:
    args = ", ".join(f":{p}" for p in params)
    if backend == "postgresql":
        return f"select * from {name}({args})"
    if backend in ("mysql", "mariadb"):
        return f"call {name}({args})"
    if backend == "mssql":
        return f"exec {name} {args}".rstrip()
    if backend == "oracle":
        return f"begin {name}({args}); end;"
    raise _Failure(f"stored procedures are not supported for {backend}")


def _create_engine(url: str) -> Engine:
    from sqlalchemy import create_engine, make_url

    u = make_url(url)
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if u.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": _PG_CONNECT_TIMEOUT}
    return create_engine(u, **kwargs)


def _limit_statement_time(conn: Connection, backend: str, deadline: float) -> Callable[[], None]:
    """Tell the database to stop the statement at ``deadline``; returns the undo."""
    from sqlalchemy import text

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    ms = max(1, int(remaining * 1000))
    if backend == "postgresql":
        # transaction-local, like SET LOCAL, but with a bound value
        conn.execute(text("select set_config('statement_timeout', :ms, true)"), {"ms": str(ms)})
        return lambda: None
    raw: Any = conn.connection.driver_connection
    if backend == "sqlite":
        raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        return lambda: raw.set_progress_handler(None, 0)
    if backend == "oracle":  # python-oracledb; not tested here
        raw.call_timeout = ms
        return lambda: setattr(raw, "call_timeout", 0)
    return lambda: None


def _is_timeout(orig: BaseException | None, deadline: float) -> bool:
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) == "57014":  # PostgreSQL query_canceled
        return True
    message = str(orig)
    if "interrupted" in message or "DPI-1067" in message:  # SQLite, Oracle call timeout
        return True
    return time.monotonic() >= deadline


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return float(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


def _dispose_engines(engines: list[Engine]) -> None:
    for engine in engines:
        try:
            engine.dispose()
        except Exception:
            log.exception("ivr actions: closing database engine failed")
