"""The node's HTTP API: live use, call traces, voicemail and prompts (edge module;
R-4.17 monitoring by API, R-4.10 voicemail retrieval, R-4.3 prompt upload), the agents'
side of the ACD, and the agent desktop page (docs/DESK.md).

Theory of operation
-------------------
``make_app(backend)`` builds an ``aiohttp.web.Application`` over an ``ApiBackend``:
the node (or a test) provides the stores and a few callbacks, and the API is a thin
edge around them.  ``start_api(backend, host, port)`` serves it on a TCP site (by
default on 127.0.0.1 only: put a TLS reverse proxy in front, or pass ``ssl_context``,
before exposing it, since bearer tokens travel in every request) and returns the
``AppRunner``; the caller stops it with ``await runner.cleanup()``.

The backend (a ``typing.Protocol``; the node satisfies it structurally)::

    class ApiBackend(Protocol):
        voicemail: VoicemailStore          # appliance.ivr.voicemail
        prompts: PromptStore               # appliance.ivr.prompts
        trace_path: Path                   # the node's trace.jsonl
        def usage(self) -> dict[str, dict[str, int]]       # {"acme": {"calls": 2, ...}}
        def node_status(self) -> dict[str, Any]            # {"node": id, "plan_version": n}
        def authenticate(self, token: str) -> Principal | None
        def mailbox_exists(self, tenant_id: str, mailbox: str) -> bool
        def mailbox_changed(self, tenant_id: str, mailbox: str) -> None
        def ivr_ports(self, tenant_id: str | None) -> int  # limit, 0 = unlimited
        def limits(self, tenant_id: str) -> dict[str, int] # the plan's, 0 = unlimited
        def originate(self, tenant_id, number, flow, *, caller_id, ring_seconds,
                      variables) -> str                 # call id; ValueError: refused
                                                        # (CallRefused: tenant's state)
        agents: AgentDesk                                  # appliance.agents
        def desk_config(self) -> Mapping[str, str | None]  # {"ws_url", "wss_url"}

The backend's methods are called on the event loop (they read the node's live state,
which belongs to the loop) and must therefore be quick: ``authenticate`` should look a
token up (for instance by its SHA-256), not run a slow password hash.  Store calls and
trace reading block on the disk and run in worker threads (``asyncio.to_thread``).

Auth model
----------
Every route except ``GET /api/v1/health`` needs ``Authorization: Bearer <token>``;
a missing, malformed or unknown token gets 401 with ``WWW-Authenticate: Bearer``.
``authenticate`` maps a token to a ``Principal``: a tenant's (``tenant_id`` set) or
the platform operator's (``tenant_id`` None).  A suspended tenant's token is known but
refused: 403 ``tenant_suspended`` (the operator still acts for that tenant).  The
tenant a request acts for is always the token's: a tenant token that names another
tenant in ``?tenant=`` is refused (400, the same answer whatever the other tenant),
and another tenant's call, mailbox or message is simply not found (404, never 403:
existence is not revealed).  The operator names the tenant with ``?tenant=<id>`` on
the tenant-scoped routes (mailboxes, prompts; 400 without it); on ``/ports`` and the
trace routes it is an optional filter.
Tokens are never logged; changes (message marked or deleted, prompt stored or
deleted) are logged with the principal's name.

Routes (all JSON except the audio; errors are
``{"error": {"id": "<stable id>", "message": "..."}}``)
----------------------------------------------------------------------------------
- ``GET    /api/v1/health``                                   ``{"ok": true}``, no token
- ``GET    /api/v1/ports``                                    live use per tenant
- ``POST   /api/v1/calls``                                    an outbound call running a
  flow (R-4.2): ``{number, flow, caller_id?, ring_timeout?, variables?}``, 201 ``{call}``
- ``GET    /api/v1/calls/latest/trace``                       the latest call's steps
- ``GET    /api/v1/calls/{call_id}/trace``                    one call's steps
- ``GET    /api/v1/mailboxes/{mailbox}/messages``             counts and messages
- ``GET    /api/v1/mailboxes/{mailbox}/messages/{id}``        one message
- ``GET    /api/v1/mailboxes/{mailbox}/messages/{id}/audio``  its WAV (8 kHz mono)
- ``PATCH  /api/v1/mailboxes/{mailbox}/messages/{id}``        ``{"status": "saved"|"new"}``
- ``DELETE /api/v1/mailboxes/{mailbox}/messages/{id}``        204
- ``GET    /api/v1/prompts[?language=xx]``                    the tenant's recordings
- ``PUT    /api/v1/prompts/{language}/{name}``                body: a WAV, 201
- ``DELETE /api/v1/prompts/{language}/{name}``                204
- ``GET    /api/v1/plugins``                                  the tenant's plug-ins
- ``PUT    /api/v1/plugins/{name}``                           body: a WebAssembly module
  (binary or text), checked (compiles, no imports, the ABI) before it is stored, 201
- ``POST   /api/v1/agent-sessions`` (no token), ``DELETE /api/v1/agent-sessions/current``,
  ``PUT /api/v1/agents/{agent}/state``, ``PUT /api/v1/agents/{agent}/wrap-up``,
  ``PUT /api/v1/agents/{agent}/phone`` (PC + phone mode),
  ``GET /api/v1/acd``, ``GET /api/v1/acd/events`` (server-sent events),
  ``GET /api/v1/acd/daily?date=``: agents and the wallboard (docs/API.md)
- ``GET|POST /api/v1/monitors``, ``PUT|DELETE /api/v1/monitors/{id}``: a supervisor
  listens to, whispers to or barges into an agent's call (docs/API.md)
- ``POST /api/v1/assists``, ``GET|DELETE /api/v1/assists/{id}``: a flow for the
  customer of an agent's call, the agent listening in (R-4.8)
- ``POST /api/v1/conferences``, ``GET /api/v1/conferences/{id}``: an agent's call and
  its consultation joined in a three-way conference

The agent desktop (no token: static files; the page signs in with the agent's
password and then sends its session token like any client):

- ``GET    /desk/``                  the page (``web/desk/index.html``)
- ``GET    /desk/desk.js``, ``/desk/supervisor.js``, ``/desk/assist.js``,
  ``/desk/wrapup.js``, ``/desk/desk.css``,
  ``/desk/i18n/{en,zh-Hans,zh-Hant}.json``
- ``GET    /desk/softphone.js``      the built JsSIP bundle (404 ``softphone_not_built``)
- ``GET    /desk/config.json``       ``{"ws_url", "wss_url"}``: the edge's SIP/WebSocket

Every ``/desk/`` answer carries a Content-Security-Policy allowing scripts, styles and
connections from the node's own origin only, plus the edge's ws/wss URLs for SIP (no
inline script, no framing: ``X-Frame-Options: DENY``).

Path parameters are validated at the edge with the stores' own rules (400
``bad_request``).  Bodies are bounded: a prompt upload is read in chunks up to
``MAX_PROMPT_BYTES`` (413 ``too_large`` beyond, before storing anything), a JSON body up
to ``MAX_JSON_BYTES``.  A prompt that would take the tenant's storage over its
``storage_mb`` limit is refused, 413 ``quota_exceeded``; an outbound call over the
tenant's ``pstn_calls`` limit, 429 ``quota_exceeded``.  Every response carries
``Cache-Control: no-store``.
docs/API.md has examples.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from appliance.acd.errors import AcdError
from appliance.agents import STATES, AgentDesk, WrapUpError
from appliance.ivr.plugins import PluginError, PluginHost
from appliance.ivr.prompts import (
    LANGUAGE_RE,
    NAME_RE,
    PromptError,
    PromptStore,
    StorageQuotaExceeded,
    StoredPrompt,
)
from appliance.ivr.voicemail import (
    MAILBOX_RE,
    MESSAGE_ID_RE,
    STATUSES,
    TENANT_RE,
    Message,
    VoicemailError,
    VoicemailStore,
)
from appliance.pbx.b2bua import MONITOR_MODES, CallRefused, MonitorError
from appliance.storage import quota_bytes
from appliance.trace import read_trace
from appliance.web import DESK_DIR, DESK_LANGUAGES, SOFTPHONE_JS

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_PROMPT_BYTES",
    "ApiBackend",
    "Principal",
    "make_app",
    "start_api",
]

log = logging.getLogger(__name__)

MAX_PROMPT_BYTES: Final = 20 * 1024 * 1024
MAX_JSON_BYTES: Final = 64 * 1024
CALL_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
WAV_TYPES: Final = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "application/octet-stream"})
_CHUNK: Final = 64 * 1024
_REALM: Final = 'Bearer realm="branchline"'
# routes answered without a token: health, agent sign-in, the agent desktop's static files
_OPEN_ROUTES: Final = frozenset({"health", "agent_sign_in", "desk_redirect", "desk_page",
                                 "desk_files", "desk_labels", "desk_softphone", "desk_config"})
_HTTP_IDS: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to: a tenant, or the platform operator (``tenant_id`` None).
    A suspended tenant's principal is refused (403 ``tenant_suspended``)."""

    tenant_id: str | None
    name: str
    suspended: bool = False
    agent: str | None = None  # an agent's desktop session: that agent only
    supervisor: bool = False  # that agent is a supervisor: the whole tenant's ACD


class ApiBackend(Protocol):
    @property
    def voicemail(self) -> VoicemailStore: ...

    @property
    def prompts(self) -> PromptStore: ...

    @property
    def trace_path(self) -> Path: ...

    @property
    def plugins(self) -> PluginHost: ...

    def usage(self) -> dict[str, dict[str, int]]: ...

    def node_status(self) -> dict[str, Any]: ...

    def authenticate(self, token: str) -> Principal | None: ...

    def mailbox_exists(self, tenant_id: str, mailbox: str) -> bool: ...

    def mailbox_changed(self, tenant_id: str, mailbox: str) -> None: ...

    def ivr_ports(self, tenant_id: str | None) -> int: ...

    def limits(self, tenant_id: str) -> dict[str, int]: ...

    def originate(self, tenant_id: str, number: str, flow: str, *, caller_id: str | None,
                  ring_seconds: float | None, variables: Mapping[str, str]) -> str: ...

    @property
    def agents(self) -> AgentDesk: ...

    def desk_config(self) -> Mapping[str, str | None]: ...


@dataclass(frozen=True)
class DeskFiles:
    """Where the agent desktop's files are (``appliance.web``; tests point elsewhere)."""

    directory: Path = DESK_DIR
    softphone_js: Path = SOFTPHONE_JS


BACKEND: Final = web.AppKey[ApiBackend]("backend")
DESK: Final = web.AppKey[DeskFiles]("desk")
STREAMS: Final = web.AppKey[set[asyncio.Task[Any]]]("streams")  # live event streams
PRINCIPAL: Final = web.RequestKey[Principal]("principal")


class ApiError(Exception):
    """An error answer: HTTP status, stable id, human message."""

    def __init__(self, status: int, error_id: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return _error(self.status, self.error_id, self.message, self.headers)


def _error(status: int, error_id: str, message: str,
           headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"id": error_id, "message": message}},
                             status=status, headers=headers)


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


# --------------------------------------------------------------------------- middleware
def _authenticate(request: web.Request) -> Principal:
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "an Authorization: Bearer <token> header is required",
                       {hdrs.WWW_AUTHENTICATE: _REALM})
    principal = request.app[BACKEND].authenticate(token)
    if principal is None:
        raise ApiError(401, "unauthorized", "unknown token",
                       {hdrs.WWW_AUTHENTICATE: f'{_REALM}, error="invalid_token"'})
    if principal.suspended:
        raise ApiError(403, "tenant_suspended", f"tenant {principal.tenant_id} is suspended")
    return principal


@web.middleware
async def _edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication, and every failure as a JSON error."""
    try:
        if request.match_info.route.name not in _OPEN_ROUTES:
            request[PRINCIPAL] = _authenticate(request)
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except MonitorError as exc:  # the call control refused (monitor, assist, conference)
        response = _error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:  # the router's 404/405, aiohttp's own 413...
        if exc.status < 400:
            raise
        allow = exc.headers.get(hdrs.ALLOW)
        headers = {"Allow": allow} if allow is not None else None
        response = _error(exc.status, _HTTP_IDS.get(exc.status, "http_error"), exc.reason,
                          headers)
    except Exception:
        log.exception("api: %s %s failed", request.method, request.path)
        response = _error(500, "internal_error", "internal error (logged on the node)")
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    return response


# --------------------------------------------------------------------------- helpers
def _tenant(request: web.Request, *, required: bool) -> str | None:
    """The tenant the request acts for: the token's, or the operator's ``?tenant=``."""
    principal = request[PRINCIPAL]
    asked = request.query.get("tenant")
    if principal.tenant_id is not None:
        if asked is not None and asked != principal.tenant_id:
            raise _bad("a tenant token acts for its own tenant only: drop ?tenant=")
        return principal.tenant_id
    if asked is None:
        if required:
            raise _bad("the operator token needs ?tenant=<id> on this route")
        return None
    if not TENANT_RE.fullmatch(asked):
        raise _bad("invalid tenant id")
    return asked


def _required_tenant(request: web.Request) -> str:
    tenant = _tenant(request, required=True)
    assert tenant is not None
    return tenant


def _param(request: web.Request, key: str, pattern: re.Pattern[str], what: str) -> str:
    value = request.match_info[key]
    if not pattern.fullmatch(value):
        raise _bad(f"invalid {what} {value!r}")
    return value


def _audit(request: web.Request, tenant: str, what: str, *args: object) -> None:
    log.info("api: %s (tenant %s): " + what, request[PRINCIPAL].name, tenant, *args)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    too_large = ApiError(413, "too_large", f"the body exceeds {limit} bytes")
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _read_json_object(request: web.Request) -> dict[str, Any]:
    raw = await _read_body(request, MAX_JSON_BYTES)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad("the body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _bad("the body must be a JSON object")
    return doc


# --------------------------------------------------------------------------- monitoring
async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _ports(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    tenant = _tenant(request, required=False)
    usage = backend.usage()

    def entry(tenant_id: str) -> dict[str, Any]:
        use = usage.get(tenant_id, {})
        return {"calls": int(use.get("calls", 0)), "ivr_busy": int(use.get("ivr_busy", 0)),
                "pstn_calls": int(use.get("pstn_calls", 0)),
                "ivr_ports": backend.ivr_ports(tenant_id), "limits": backend.limits(tenant_id)}

    names = [tenant] if tenant is not None else sorted(usage)
    status = backend.node_status()
    body: dict[str, Any] = {"node": status.get("node"), "plan_version": status.get("plan_version"),
                            "tenants": {name: entry(name) for name in names}}
    if request[PRINCIPAL].tenant_id is None:
        body["ivr_ports"] = backend.ivr_ports(None)
    return web.json_response(body)


def _steps(path: Path, call: str | None, tenant: str | None) -> list[dict[str, Any]]:
    try:
        return read_trace(path, call, tenant)
    except FileNotFoundError:
        return []


async def _trace(request: web.Request) -> web.Response:
    tenant = _tenant(request, required=False)
    call: str | None = None
    if "call_id" in request.match_info:
        call = _param(request, "call_id", CALL_RE, "call id")
    steps = await asyncio.to_thread(_steps, request.app[BACKEND].trace_path, call, tenant)
    if not steps:
        raise _not_found("no such call" if call is not None else "no call traced yet")
    return web.json_response({"call": call if call is not None else steps[-1].get("call"),
                              "steps": steps})


# --------------------------------------------------------------------------- voicemail
def _mailbox(request: web.Request) -> tuple[str, str]:
    """(tenant, mailbox), 404 unless the tenant has that mailbox."""
    tenant = _required_tenant(request)
    mailbox = _param(request, "mailbox", MAILBOX_RE, "mailbox")
    if "id" in request.match_info:
        _param(request, "id", MESSAGE_ID_RE, "message id")
    if not request.app[BACKEND].mailbox_exists(tenant, mailbox):
        raise _not_found(f"no mailbox {mailbox}")
    return tenant, mailbox


def _message_doc(request: web.Request, tenant: str, msg: Message) -> dict[str, Any]:
    # the mailbox of the request's path, not the one the metadata file claims
    mailbox = request.match_info["mailbox"]
    url = request.app.router["vm_audio"].url_for(mailbox=mailbox, id=msg.id)
    if request[PRINCIPAL].tenant_id is None:
        url = url.with_query(tenant=tenant)
    return {**msg.to_dict(), "audio_url": str(url)}


async def _messages(request: web.Request) -> web.Response:
    tenant, mailbox = _mailbox(request)
    store = request.app[BACKEND].voicemail
    try:
        messages = await asyncio.to_thread(store.list, tenant, mailbox)
    except VoicemailError as exc:  # the mailbox directory refused (a planted link)
        raise _not_found(str(exc)) from None
    new = sum(1 for m in messages if m.status == "new")
    return web.json_response({
        "mailbox": mailbox, "new": new, "saved": len(messages) - new,
        "messages": [_message_doc(request, tenant, m) for m in messages],
    })


async def _message(request: web.Request) -> web.Response:
    tenant, mailbox = _mailbox(request)
    store = request.app[BACKEND].voicemail
    try:
        msg = await asyncio.to_thread(store.get, tenant, mailbox, request.match_info["id"])
    except VoicemailError as exc:
        raise _not_found(str(exc)) from None
    return web.json_response(_message_doc(request, tenant, msg))


async def _audio(request: web.Request) -> web.StreamResponse:
    tenant, mailbox = _mailbox(request)
    msg_id = request.match_info["id"]
    store = request.app[BACKEND].voicemail

    def locate() -> Path:
        path = store.audio_path(tenant, mailbox, msg_id)
        if not path.is_file():
            raise VoicemailError(f"message {msg_id} has no audio")
        return path

    try:
        path = await asyncio.to_thread(locate)
    except VoicemailError as exc:
        raise _not_found(str(exc)) from None
    return web.FileResponse(path, headers={
        hdrs.CONTENT_TYPE: "audio/wav",
        hdrs.CONTENT_DISPOSITION: f'inline; filename="{msg_id}.wav"',
    })


async def _mark(request: web.Request) -> web.Response:
    tenant, mailbox = _mailbox(request)
    doc = await _read_json_object(request)
    status = doc.get("status")
    if set(doc) != {"status"} or status not in STATUSES:
        raise _bad(f'the body is {{"status": one of {", ".join(STATUSES)}}}')
    backend = request.app[BACKEND]
    msg_id = request.match_info["id"]
    try:
        msg = await asyncio.to_thread(backend.voicemail.mark, tenant, mailbox, msg_id, status)
    except (VoicemailError, FileNotFoundError):
        raise _not_found(f"no message {msg_id} in mailbox {mailbox}") from None
    _audit(request, tenant, "voicemail %s/%s marked %s", mailbox, msg_id, status)
    backend.mailbox_changed(tenant, mailbox)
    return web.json_response(_message_doc(request, tenant, msg))


async def _delete_message(request: web.Request) -> web.Response:
    tenant, mailbox = _mailbox(request)
    backend = request.app[BACKEND]
    msg_id = request.match_info["id"]
    try:
        await asyncio.to_thread(backend.voicemail.delete, tenant, mailbox, msg_id)
    except (VoicemailError, FileNotFoundError):  # FileNotFoundError: a concurrent delete
        raise _not_found(f"no message {msg_id} in mailbox {mailbox}") from None
    _audit(request, tenant, "voicemail %s/%s deleted", mailbox, msg_id)
    backend.mailbox_changed(tenant, mailbox)
    return web.Response(status=204)


# --------------------------------------------------------------------------- calls
_NUMBER_RE: Final = re.compile(r"\+?[0-9]{2,20}")
_FLOW_RE: Final = TENANT_RE  # flow names follow the id rule
_VAR_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


async def _originate(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    doc = await _read_json_object(request)
    unknown = set(doc) - {"number", "flow", "caller_id", "ring_timeout", "variables"}
    if unknown:
        raise _bad(f"unknown fields: {', '.join(sorted(unknown))}")
    number, flow = doc.get("number"), doc.get("flow")
    if not isinstance(number, str) or not _NUMBER_RE.fullmatch(number):
        raise _bad("number: 2-20 digits, optionally with a leading +")
    if not isinstance(flow, str) or not _FLOW_RE.fullmatch(flow):
        raise _bad("flow: the name of one of the tenant's flows")
    caller_id = doc.get("caller_id")
    if caller_id is not None and (not isinstance(caller_id, str)
                                  or not _NUMBER_RE.fullmatch(caller_id)):
        raise _bad("caller_id: one of the tenant's numbers")
    ring = doc.get("ring_timeout")
    if ring is not None and (isinstance(ring, bool) or not isinstance(ring, int | float)
                             or not 1 <= ring <= 300):
        raise _bad("ring_timeout: seconds between 1 and 300")
    variables = doc.get("variables", {})
    if not isinstance(variables, dict) or len(variables) > 50 or not all(
            isinstance(k, str) and _VAR_RE.fullmatch(k) and isinstance(v, str)
            and len(v) <= 1000 for k, v in variables.items()):
        raise _bad("variables: up to 50 names (identifiers) with text values")
    try:
        call = request.app[BACKEND].originate(
            tenant, number, flow, caller_id=caller_id,
            ring_seconds=None if ring is None else float(ring), variables=variables)
    except CallRefused as exc:
        status = 403 if exc.reason == "tenant_suspended" else 429
        raise ApiError(status, exc.reason, str(exc)) from None
    except ValueError as exc:
        raise _bad(str(exc)) from None
    _audit(request, tenant, "outbound call %s to %s running flow %s", call, number, flow)
    return web.json_response({"call": call}, status=201)


# --------------------------------------------------------------------------- prompts
def _prompt_doc(prompt: StoredPrompt) -> dict[str, Any]:
    """What a client sees of a stored prompt (never its path on the node)."""
    seconds: float | None = None
    try:
        with wave.open(str(prompt.path), "rb") as w:
            seconds = round(w.getnframes() / w.getframerate(), 2)
    except (OSError, EOFError, wave.Error, ZeroDivisionError):
        pass  # a file copied in by hand in a format ``wave`` does not read
    return {"language": prompt.language, "name": prompt.name, "bytes": prompt.size,
            "seconds": seconds}


async def _prompts(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    language = request.query.get("language")
    if language is not None and not LANGUAGE_RE.fullmatch(language):
        raise _bad(f"invalid language {language!r}")
    store = request.app[BACKEND].prompts

    def listing() -> list[dict[str, Any]]:
        return [_prompt_doc(p) for p in store.list(tenant, language)]

    try:
        prompts = await asyncio.to_thread(listing)
    except PromptError as exc:
        raise _bad(str(exc)) from None
    return web.json_response({"prompts": prompts})


def _prompt_params(request: web.Request) -> tuple[str, str, str]:
    tenant = _required_tenant(request)
    language = _param(request, "language", LANGUAGE_RE, "language")
    name = _param(request, "name", NAME_RE, "prompt name")
    return tenant, language, name


async def _put_prompt(request: web.Request) -> web.Response:
    tenant, language, name = _prompt_params(request)
    if request.content_type.lower() not in WAV_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"send the WAV as one of {', '.join(sorted(WAV_TYPES))}")
    body = await _read_body(request, MAX_PROMPT_BYTES)
    backend = request.app[BACKEND]
    store = backend.prompts
    quota = quota_bytes(backend.limits(tenant).get("storage_mb", 0))

    def store_it() -> dict[str, Any]:
        path = store.add(tenant, language, name, body, quota_bytes=quota)
        return _prompt_doc(StoredPrompt(tenant, language, name, path, path.stat().st_size))

    try:
        doc = await asyncio.to_thread(store_it)
    except StorageQuotaExceeded as exc:
        raise ApiError(413, "quota_exceeded", str(exc)) from None
    except PromptError as exc:
        raise ApiError(400, "invalid_audio", str(exc)) from None
    _audit(request, tenant, "prompt %s/%s stored (%d bytes uploaded)", language, name, len(body))
    return web.json_response(doc, status=201)


async def _delete_prompt(request: web.Request) -> web.Response:
    tenant, language, name = _prompt_params(request)
    store = request.app[BACKEND].prompts
    try:
        await asyncio.to_thread(store.delete, tenant, language, name)
    except PromptError:
        raise _not_found(f"no prompt {name} in {language}") from None
    _audit(request, tenant, "prompt %s/%s deleted", language, name)
    return web.Response(status=204)


# --------------------------------------------------------------------------- plug-ins
_PLUGIN_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def _plugins(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    host = request.app[BACKEND].plugins
    try:
        names = await asyncio.to_thread(host.list, tenant)
    except PluginError as exc:
        raise _bad(str(exc)) from None
    return web.json_response({"plugins": names})


async def _put_plugin(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    name = _param(request, "name", _PLUGIN_RE, "plug-in name")
    host = request.app[BACKEND].plugins
    body = await _read_body(request, host.limits.max_module_bytes)
    try:
        await asyncio.to_thread(host.add, tenant, name, body)
    except PluginError as exc:
        raise ApiError(400, "invalid_plugin", str(exc)) from None
    _audit(request, tenant, "plug-in %s stored (%d bytes uploaded)", name, len(body))
    return web.json_response({"name": name}, status=201)


# --------------------------------------------------------------------------- agents (ACD)
def _no_agent(request: web.Request) -> None:
    """Routes for administrators and operators, not an agent's desktop session."""
    if request[PRINCIPAL].agent is not None:
        raise ApiError(403, "forbidden", "an agent's session cannot do this")


async def _agent_sign_in(request: web.Request) -> web.Response:
    body = await _read_json_object(request)
    domain, agent, password = (body.get(k) for k in ("domain", "agent", "password"))
    if not (isinstance(domain, str) and isinstance(agent, str) and isinstance(password, str)
            and domain and agent and password):
        raise _bad('the body is {"domain", "agent", "password"}')
    desk = request.app[BACKEND].agents
    tenant = await asyncio.to_thread(desk.check_password, domain, agent, password)
    token = desk.open_session(tenant, agent) if tenant is not None else None
    if tenant is None or token is None:
        raise ApiError(401, "unauthorized", "unknown agent or wrong password")
    log.info("api: agent %s of %s signed in", agent, tenant)
    return web.json_response({"token": token, "tenant": tenant, "agent": agent,
                              **desk.profile(tenant, agent)}, status=201)


async def _agent_sign_out(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    if principal.agent is None:
        raise _bad("only an agent's session signs out")
    token = request.headers[hdrs.AUTHORIZATION].partition(" ")[2].strip()
    request.app[BACKEND].agents.sign_out(token)
    return web.Response(status=204)


async def _agent_state(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    agent = request.match_info["agent"]
    if principal.agent not in (None, agent) and not principal.supervisor:
        raise _not_found(f"no agent {agent}")  # another agent: not yours to see
    tenant = _required_tenant(request)
    body = await _read_json_object(request)
    state, reason = body.get("state"), body.get("reason", "")
    if state not in STATES or not isinstance(reason, str):
        raise _bad(f'the body is {{"state": one of {", ".join(STATES)}, "reason": code}}')
    try:
        approved = request.app[BACKEND].agents.set_state(
            tenant, agent, state, reason, forced=principal.agent != agent)
    except KeyError:
        raise _not_found(f"{tenant} has no queues") from None
    except AcdError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return web.json_response({"agent": agent, "requested": state, "approved": approved})


async def _agent_wrap_up(request: web.Request) -> web.Response:
    """R-5.2a: the agent files a contact it handled under a wrap-up code, with a note
    (its own session or a tenant token; the note is never logged)."""
    principal = request[PRINCIPAL]
    agent = request.match_info["agent"]
    if principal.agent not in (None, agent):
        raise _not_found(f"no agent {agent}")  # another agent's contacts: not yours
    tenant = _required_tenant(request)
    body = await _read_json_object(request)
    contact, code, note = body.get("contact"), body.get("code"), body.get("note", "")
    if not (isinstance(contact, str) and contact and isinstance(code, str)
            and isinstance(note, str)):
        raise _bad('the body is {"contact": "<call id>", "code": "<wrap-up code>", '
                   '"note": "<text>"}')
    try:
        doc = request.app[BACKEND].agents.wrap_up(tenant, agent, contact, code, note)
    except WrapUpError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return web.json_response(doc)


async def _agent_phone(request: web.Request) -> web.Response:
    """PC + phone mode (R-5.1): the agent's queue calls ring the number it gives (its
    mobile or landline) instead of its extension; ``{"number": ""}`` undoes it."""
    principal = request[PRINCIPAL]
    agent = request.match_info["agent"]
    if principal.agent not in (None, agent):
        raise _not_found(f"no agent {agent}")
    tenant = _required_tenant(request)
    body = await _read_json_object(request)
    number = body.get("number")
    if not isinstance(number, str) or (number and not _NUMBER_RE.fullmatch(number)):
        raise _bad('the body is {"number": "+8613912345678" (or "" for the extension)}')
    try:
        request.app[BACKEND].agents.set_phone(tenant, agent, number or None)
    except LookupError:
        raise _not_found(f"no agent {agent}") from None
    except ValueError as exc:
        raise _bad(str(exc)) from None
    _audit(request, tenant, "agent %s answers on %s", agent,
           "its extension" if not number else "another phone")
    return web.json_response({"agent": agent, "number": number})


async def _acd_snapshot(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    snap = request.app[BACKEND].agents.snapshot(tenant)
    if snap is None:
        raise _not_found(f"{tenant} has no queues")
    return web.json_response(snap)


async def _acd_daily(request: web.Request) -> web.Response:
    """The tenant's daily statistics record of ``?date=YYYY-MM-DD`` (today by default):
    ``{date, timezone, final, agents, queues}``; an agent's session (not a
    supervisor's) gets its own agent record and the queues'."""
    principal = request[PRINCIPAL]
    tenant = _required_tenant(request)
    try:
        doc = await request.app[BACKEND].agents.daily(
            tenant, request.query.get("date"),
            None if principal.supervisor else principal.agent)
    except ValueError as exc:
        raise _bad(f"date: {exc}") from None
    if doc is None:
        raise _not_found(f"{tenant} has no queues")
    return web.json_response(doc)


async def _acd_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every ACD event of the tenant (an agent: its own and the
    queues'), as they happen, until the client goes."""
    principal = request[PRINCIPAL]
    tenant = _required_tenant(request)
    desk = request.app[BACKEND].agents
    if desk.snapshot(tenant) is None:
        raise _not_found(f"{tenant} has no queues")
    response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "text/event-stream",
                                           hdrs.CACHE_CONTROL: "no-store"})
    await response.prepare(request)
    sub = desk.subscribe(tenant, None if principal.supervisor else principal.agent)
    task = asyncio.current_task()
    streams = request.app[STREAMS]
    if task is not None:
        streams.add(task)  # ended when the API shuts down (_end_streams)
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                doc = await asyncio.wait_for(sub.queue.get(), 15.0)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if sub.dropped:
                doc = {**doc, "dropped_before": sub.dropped}
                sub.dropped = 0
            await response.write(f"event: {doc['type']}\ndata: "
                                 f"{json.dumps(doc, default=str)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if task is not None:
            streams.discard(task)
        desk.unsubscribe(sub)
    return response


# --------------------------------------------------------------------------- monitoring
def _supervisor(request: web.Request, body: Mapping[str, Any] | None = None) -> str:
    """Who monitors: the supervisor's own session, or one the tenant's admin names."""
    principal = request[PRINCIPAL]
    if principal.agent is not None:
        if not principal.supervisor:
            raise ApiError(403, "forbidden", "only a supervisor monitors calls")
        return principal.agent
    named = (body or {}).get("supervisor")
    if body is not None and not (isinstance(named, str) and named):
        raise _bad('an administrator names the "supervisor" whose phone joins the call')
    return str(named or "")


async def _monitors(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    _supervisor(request)
    return web.json_response({"monitors": request.app[BACKEND].agents.monitors(tenant)})


async def _start_monitor(request: web.Request) -> web.Response:
    """A supervisor listens to, whispers to or barges into an agent's call: the node
    rings the supervisor's extension (the desktop's softphone) and mixes it in."""
    tenant = _required_tenant(request)
    body = await _read_json_object(request)
    supervisor = _supervisor(request, body)
    agent, mode = body.get("agent"), body.get("mode", "listen")
    if not isinstance(agent, str) or not isinstance(mode, str):
        raise _bad(f'the body is {{"agent", "mode": one of {", ".join(MONITOR_MODES)}}}')
    doc = request.app[BACKEND].agents.monitor(tenant, agent, supervisor, mode)
    _audit(request, tenant, "%s monitors %s (%s)", supervisor, agent, mode)
    return web.json_response(doc, status=201)


async def _change_monitor(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    _supervisor(request)
    body = await _read_json_object(request)
    mode = body.get("mode")
    if not isinstance(mode, str):
        raise _bad(f'the body is {{"mode": one of {", ".join(MONITOR_MODES)}}}')
    doc = request.app[BACKEND].agents.set_monitor_mode(
        tenant, request.match_info["monitor"], mode)
    return web.json_response(doc)


async def _stop_monitor(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    _supervisor(request)
    request.app[BACKEND].agents.stop_monitor(tenant, request.match_info["monitor"])
    return web.Response(status=204)


# --------------------------------------------------------------------------- assisted IVR
def _acting_agent(request: web.Request, body: Mapping[str, Any], whose: str, *,
                  supervisor_names: bool) -> str:
    """The agent whose calls a request acts on: an agent's own session (with
    ``supervisor_names``, a supervisor may name another), or the ``agent`` a tenant
    token names (``whose``: what the error says it names)."""
    principal = request[PRINCIPAL]
    named = body.get("agent")
    if principal.agent is not None and (named is None or named == principal.agent):
        return principal.agent
    if principal.agent is not None and not (supervisor_names and principal.supervisor):
        raise _not_found(f"no agent {named}")  # another agent's calls: not yours
    if not isinstance(named, str) or not named:
        raise _bad(f'name the "agent" {whose}')
    return named


async def _start_assist(request: web.Request) -> web.Response:
    """R-4.8: a flow of the tenant for the customer of an agent's call, the agent on the
    line hearing it; the customer is handed back when the flow ends."""
    tenant = _required_tenant(request)
    body = await _read_json_object(request)
    agent = _acting_agent(request, body, "whose customer the flow is for",
                          supervisor_names=True)
    flow = body.get("flow")
    if not isinstance(flow, str) or not flow:
        raise _bad('the body is {"flow": "<one of the tenant\'s flows>"}')
    doc = request.app[BACKEND].agents.assist(tenant, agent, flow)
    _audit(request, tenant, "flow %s beside agent %s", flow, agent)
    return web.json_response(doc, status=201)


def _assist_owner(request: web.Request) -> str | None:
    principal = request[PRINCIPAL]
    return None if principal.agent is None or principal.supervisor else principal.agent


async def _assist(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    doc = request.app[BACKEND].agents.assisted(tenant, request.match_info["assist"],
                                               _assist_owner(request))
    return web.json_response(doc)


async def _stop_assist(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    doc = request.app[BACKEND].agents.stop_assist(tenant, request.match_info["assist"],
                                                  _assist_owner(request))
    return web.json_response(doc)


# --------------------------------------------------------------------------- conferences
async def _start_conference(request: web.Request) -> web.Response:
    """The agent's call and the consultation it placed become one three-way conference
    (the agent's own session; a tenant token names the ``agent``)."""
    tenant = _required_tenant(request)
    body = await _read_json_object(request)
    agent = _acting_agent(request, body, "whose calls are joined", supervisor_names=False)
    doc = request.app[BACKEND].agents.conference(tenant, agent)
    _audit(request, tenant, "agent %s joins its calls in a conference", agent)
    return web.json_response(doc, status=201)


async def _conference(request: web.Request) -> web.Response:
    tenant = _required_tenant(request)
    doc = request.app[BACKEND].agents.conferenced(
        tenant, request.match_info["conference"], _assist_owner(request))
    return web.json_response(doc)


async def _end_streams(app: web.Application) -> None:
    """On shutdown: end the event streams, which would otherwise hold the server's
    graceful shutdown until they end by themselves (never, while a desktop reads)."""
    streams: set[asyncio.Task[Any]] = app[STREAMS]
    for task in list(streams):
        task.cancel()


# --------------------------------------------------------------------------- agent desktop
_DESK_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".json": "application/json; charset=utf-8",
}


def _desk_headers(backend: ApiBackend) -> dict[str, str]:
    """The page's security headers: its own origin for everything, plus the edge's
    WebSocket URLs for SIP; no inline script or style, no framing, no referrer."""
    edge = " ".join(url for url in backend.desk_config().values() if url)
    policy = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              f"connect-src 'self'{' ' + edge if edge else ''}; media-src 'self' blob: "
              "mediastream:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Permissions-Policy": "microphone=(self), camera=(), geolocation=()"}


async def _desk_file(request: web.Request, path: Path, missing: ApiError) -> web.StreamResponse:
    try:
        body = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        raise missing from None
    return web.Response(body=body, headers={
        hdrs.CONTENT_TYPE: _DESK_TYPES[path.suffix],
        **_desk_headers(request.app[BACKEND])})


async def _desk_static(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("file", "index.html")
    language = request.match_info.get("language")
    files = request.app[DESK]
    if language is not None:
        if language not in DESK_LANGUAGES:
            raise _not_found(f"no labels in {language!r}")
        path = files.directory / "i18n" / f"{language}.json"
    else:
        path = files.directory / name
    return await _desk_file(request, path, _not_found(f"no desktop file {path.name}"))


async def _desk_softphone(request: web.Request) -> web.StreamResponse:
    return await _desk_file(request, request.app[DESK].softphone_js, ApiError(
        404, "softphone_not_built",
        "the softphone bundle is not built on this node: run scripts/setup.sh (npm + esbuild)"))


async def _desk_config(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    return web.json_response(dict(backend.desk_config()), headers=_desk_headers(backend))


async def _desk_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("desk/")  # relative: also right behind a proxy's path prefix


# --------------------------------------------------------------------------- app
def make_app(backend: ApiBackend, desk: DeskFiles | None = None) -> web.Application:
    """The API over ``backend``; ``desk``: where the agent desktop's files are."""
    app = web.Application(middlewares=[_edge], client_max_size=MAX_PROMPT_BYTES)
    app[BACKEND] = backend
    app[DESK] = desk or DeskFiles()
    app[STREAMS] = set()
    app.on_shutdown.append(_end_streams)
    r = app.router
    r.add_get("/api/v1/health", _health, name="health")
    r.add_get("/api/v1/ports", _ports)
    r.add_post("/api/v1/calls", _originate)
    r.add_get("/api/v1/calls/latest/trace", _trace)  # before {call_id}: routes match in order
    r.add_get("/api/v1/calls/{call_id}/trace", _trace)
    box = "/api/v1/mailboxes/{mailbox}/messages"
    r.add_get(box, _messages)
    r.add_get(box + "/{id}", _message)
    r.add_patch(box + "/{id}", _mark)
    r.add_delete(box + "/{id}", _delete_message)
    r.add_get(box + "/{id}/audio", _audio, name="vm_audio")
    r.add_get("/api/v1/prompts", _prompts)
    r.add_put("/api/v1/prompts/{language}/{name}", _put_prompt)
    r.add_delete("/api/v1/prompts/{language}/{name}", _delete_prompt)
    r.add_get("/api/v1/plugins", _plugins)
    r.add_put("/api/v1/plugins/{name}", _put_plugin)
    r.add_post("/api/v1/agent-sessions", _agent_sign_in, name="agent_sign_in")
    r.add_delete("/api/v1/agent-sessions/current", _agent_sign_out)
    r.add_put("/api/v1/agents/{agent}/state", _agent_state)
    r.add_put("/api/v1/agents/{agent}/phone", _agent_phone)
    r.add_put("/api/v1/agents/{agent}/wrap-up", _agent_wrap_up)
    r.add_get("/api/v1/acd", _acd_snapshot)
    r.add_get("/api/v1/acd/events", _acd_events)
    r.add_get("/api/v1/acd/daily", _acd_daily)
    r.add_get("/api/v1/monitors", _monitors)
    r.add_post("/api/v1/monitors", _start_monitor)
    r.add_put("/api/v1/monitors/{monitor}", _change_monitor)
    r.add_delete("/api/v1/monitors/{monitor}", _stop_monitor)
    r.add_post("/api/v1/assists", _start_assist)
    r.add_get("/api/v1/assists/{assist}", _assist)
    r.add_delete("/api/v1/assists/{assist}", _stop_assist)
    r.add_post("/api/v1/conferences", _start_conference)
    r.add_get("/api/v1/conferences/{conference}", _conference)
    r.add_get("/desk", _desk_redirect, name="desk_redirect")
    r.add_get("/desk/", _desk_static, name="desk_page")
    r.add_get(r"/desk/{file:(?:desk\.(?:js|css)|supervisor\.js|assist\.js|wrapup\.js)}",
              _desk_static, name="desk_files")
    r.add_get("/desk/i18n/{language}.json", _desk_static, name="desk_labels")
    r.add_get("/desk/softphone.js", _desk_softphone, name="desk_softphone")
    r.add_get("/desk/config.json", _desk_config, name="desk_config")
    return app


async def start_api(backend: ApiBackend, host: str = "127.0.0.1", port: int = 8088, *,
                    ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Serve the API on ``host:port`` (0: any free port, see ``runner.addresses``)."""
    runner = web.AppRunner(make_app(backend))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("api: listening on %s", ", ".join(map(str, runner.addresses)))
    return runner
