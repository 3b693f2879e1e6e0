"""linkd: the controller's end of the node link (QUIC, mutual TLS; see docs/LINK.md).

Theory of operation
-------------------
:class:`LinkServer` listens on UDP with aioquic (ALPN ``branchline-link/1``, a server
certificate from :mod:`controller.pki`) and asks every client for a certificate. After
the handshake a connection is one of two kinds:

- **certified** (the node sent a certificate, and proved it holds the key): linkd
  checks the certificate itself (issued by our CA, in its validity period, naming a
  node) and asks the backend whether it is still that node's current one. Anything
  else closes the connection with the reason and no plan is sent. The first message
  must be ``hello`` naming the same node; linkd then sends the node's plan if its
  version differs from what the node applied, and records ``ack`` and ``heartbeat``
  messages through the backend.
- **enrolment** (no certificate): the only message allowed is ``enrol`` (a one-time
  claim code and a CSR); linkd answers ``enrolled`` (the signed certificate) or
  ``refused``, and anything else gets ``refused`` too. The connection then ends.

A poller reads ``backend.revision()`` every ``poll_interval`` seconds; when it
changes, every connected node's certificate is checked again (a re-enrolment revokes
the old one) and its plan is pushed if its version differs from the one last sent on
that connection. A node silent for three heartbeat intervals is disconnected. One
connection per node: a newer one replaces the older.

The backend (:class:`LinkBackend`) is synchronous (a SQL store); every call runs on a
worker thread (``asyncio.to_thread``) so the event loop never waits on the database.

aioquic and client certificates
-------------------------------
aioquic 1.7 has no public switch for mutual TLS on a server: its TLS context only
sends a CertificateRequest when the private ``tls.Context._request_client_certificate``
is true ("for test purposes only"), and it then checks the client's CertificateVerify
(possession of the key) but not the chain. We set the flag on each server connection
right after aioquic builds its TLS context (wrapping ``QuicConnection._initialize``
per connection, in :class:`_NodeConnection`), read the client's certificate from
``tls.Context._peer_certificate``, and verify the chain ourselves.
:func:`check_aioquic_supports_mtls` fails loudly (at :meth:`LinkServer.start`) if a
future aioquic drops these names, and the failure mode of a silent change is closed:
a connection whose certificate linkd cannot see is an enrolment connection, which can
do nothing but redeem a claim code. Session resumption (PSK, which skips the
certificate) is never offered: the server has no session ticket store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aioquic
from aioquic import tls
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.link.protocol import (
    ALPN,
    Ack,
    CloseCode,
    EncodeError,
    Enrol,
    Enrolled,
    FrameDecoder,
    Heartbeat,
    Hello,
    Message,
    ProtocolError,
    PushPlan,
    Refused,
    encode,
)
from controller.pki import CertificateAuthority, PkiError, fingerprint, load_csr

log = logging.getLogger("branchline.linkd")

IDLE_TIMEOUT = 4.0  # QUIC idle timeout; see appliance.link.client.IDLE_TIMEOUT
MAX_QUEUED = 64  # messages of one node waiting to be handled before it is cut off
REFUSE_GRACE = 1.0  # seconds a refused peer gets to read the reason before we close


class LinkBackend(Protocol):
    """What linkd needs from the store. Synchronous; linkd calls it from worker threads
    (concurrently for different nodes), never from the event loop."""

    def redeem_claim(self, code: str) -> str | None:
        """The node id of a one-time claim code, using it up; None if the code is
        unknown, used or expired."""

    def certificate_issued(self, node_id: str, fingerprint: str) -> None:
        """Node ``node_id``'s certificate is now this one (any earlier one is revoked)."""

    def certificate_valid(self, node_id: str, fingerprint: str) -> bool:
        """Whether this is node ``node_id``'s current certificate."""

    def revision(self) -> int:
        """A number that changes whenever anything that goes into a plan changes."""

    def plan_for(self, node_id: str) -> tuple[int, dict[str, Any]] | None:
        """The node's current plan ``(version, document)``, None if it has none."""

    def plan_acknowledged(self, node_id: str, version: int, ok: bool,
                          error: str | None) -> None:
        """The node applied plan ``version`` (``ok``) or refused it (``error``). Also
        called (``ok``) after each ``hello`` with the version the node says it runs,
        which repairs an ack lost with an earlier connection."""

    def heartbeat(self, node_id: str, status: dict[str, Any]) -> None:
        """The node is alive; ``status`` is what it reports."""

    def disconnected(self, node_id: str) -> None:
        """The node's link is gone."""


# ----------------------------------------------------------------------------- aioquic
def check_aioquic_supports_mtls() -> None:
    """Raise RuntimeError unless aioquic still has the private names linkd relies on
    for client certificates (see the module docstring)."""
    missing = []
    context = tls.Context(is_client=False)
    for name in ("_request_client_certificate", "_peer_certificate"):
        if not hasattr(context, name):
            missing.append(f"tls.Context.{name}")
    if getattr(context, "_request_client_certificate", None) is not False:
        missing.append("tls.Context._request_client_certificate (off by default)")
    if not callable(getattr(QuicConnection, "_initialize", None)):
        missing.append("QuicConnection._initialize")
    if missing:
        raise RuntimeError(
            f"aioquic {aioquic.__version__} lacks {', '.join(missing)}: linkd cannot ask "
            "nodes for client certificates (see docs/LINK.md, 'aioquic caveat')")


def _ask_for_client_certificate(quic: QuicConnection) -> None:
    """Make this server connection send a TLS CertificateRequest (see module doc)."""
    initialize = quic._initialize

    def initialize_asking(peer_cid: bytes) -> None:
        initialize(peer_cid)
        if not hasattr(quic.tls, "_request_client_certificate"):
            raise RuntimeError("aioquic's TLS context has no _request_client_certificate")
        quic.tls._request_client_certificate = True

    quic._initialize = initialize_asking  # type: ignore[method-assign]


def _peer_certificate(quic: QuicConnection) -> x509.Certificate | None:
    return quic.tls._peer_certificate


# ----------------------------------------------------------------------------- server
class LinkServer:
    """The node link hub; one per controller process (see the module docstring).

    ``hostnames``: the names and addresses nodes dial (the server certificate's SANs);
    by default ``host``, or for a wildcard host this machine's name and loopback.
    """

    def __init__(self, host: str, port: int, ca: CertificateAuthority, backend: LinkBackend,
                 *, hostnames: Sequence[str] | None = None, heartbeat_interval: float = 1.0,
                 poll_interval: float = 0.2, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.host = host
        self.ca = ca
        self.backend = backend
        self.heartbeat_interval = heartbeat_interval
        self.poll_interval = poll_interval
        self.idle_timeout = idle_timeout
        if hostnames is None:
            wildcard = host in ("", "0.0.0.0", "::")
            hostnames = [socket.getfqdn(), "localhost", "127.0.0.1", "::1"] if wildcard \
                else [host]
        self.hostnames = list(hostnames)
        self._requested_port = port
        self._transport: asyncio.DatagramTransport | None = None
        self._quic_server: QuicServer | None = None
        self._poller: asyncio.Task[None] | None = None
        self._connections: set[_NodeConnection] = set()
        self._nodes: dict[str, _NodeConnection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._revision: int | None = None

    @property
    def port(self) -> int:
        """The UDP port listened on (the ephemeral one when created with port 0)."""
        if self._transport is None:
            raise RuntimeError("linkd is not started")
        return int(self._transport.get_extra_info("sockname")[1])

    @property
    def connected(self) -> frozenset[str]:
        """Ids of the nodes connected now (authenticated and said hello)."""
        return frozenset(self._nodes)

    async def start(self) -> None:
        """Listen (a fresh server certificate from the CA) and start polling."""
        check_aioquic_supports_mtls()
        cert_pem, key_pem = await asyncio.to_thread(self.ca.server_cert, self.hostnames)
        config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                                   idle_timeout=self.idle_timeout)
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        config.certificate = x509.load_pem_x509_certificate(cert_pem)
        config.private_key = key
        self._revision = await asyncio.to_thread(self.backend.revision)
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: QuicServer(configuration=config,
                               create_protocol=functools.partial(_NodeConnection, server=self)),
            local_addr=(self.host, self._requested_port))
        self._transport = transport
        self._quic_server = protocol
        self._poller = loop.create_task(self._poll(), name="linkd-poll")
        log.info("linkd listening on %s port %d", self.host, self.port)

    async def stop(self) -> None:
        """Close every link (reason: shutting down) and stop listening."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        for conn in list(self._connections):
            conn.end(CloseCode.SHUTDOWN, "controller shutting down")  # and forgets it
        if self._quic_server is not None:
            self._quic_server.close()
            self._quic_server = None
            self._transport = None
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        log.info("linkd stopped")

    # -- what connections tell the server ---------------------------------------------
    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _opened(self, conn: _NodeConnection) -> None:
        self._connections.add(conn)

    def _register(self, conn: _NodeConnection, node_id: str) -> None:
        old = self._nodes.get(node_id)
        self._nodes[node_id] = conn
        if old is not None and old is not conn:
            old.node_id = None  # its end must not report the node gone
            old.end(CloseCode.REPLACED, "replaced by a newer connection of this node")
        log.info("node %s connected from %s", node_id, conn.peer)

    def _closed(self, conn: _NodeConnection) -> None:
        self._connections.discard(conn)
        self._forget(conn)

    def _forget(self, conn: _NodeConnection) -> None:
        node_id = conn.node_id
        if node_id is None or self._nodes.get(node_id) is not conn:
            return
        del self._nodes[node_id]
        conn.node_id = None
        log.info("node %s disconnected", node_id)
        self._spawn(self._call(self.backend.disconnected, node_id), "linkd-disconnected")

    async def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception:
            log.exception("link backend %s failed", getattr(fn, "__name__", fn))
            return None

    # -- polling ----------------------------------------------------------------------
    async def _poll(self) -> None:
        while True:
            try:
                revision = await asyncio.to_thread(self.backend.revision)
            except Exception:
                log.exception("link backend revision() failed; retrying")
            else:
                if revision != self._revision:
                    self._revision = revision
                    await asyncio.gather(*(c.refresh() for c in list(self._nodes.values())))
            self._check_silence()
            await asyncio.sleep(self.poll_interval)

    def _check_silence(self) -> None:
        limit = 3 * self.heartbeat_interval
        now = time.monotonic()
        for conn in list(self._connections):
            if not conn.answering and now - conn.last_heard > limit:
                conn.end(CloseCode.TIMEOUT, f"nothing heard for {limit:g} s")


class _NodeConnection(QuicConnectionProtocol):
    """One QUIC connection from a node (or an enrolling box): see the module docstring."""

    def __init__(self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None,
                 *, server: LinkServer) -> None:
        super().__init__(quic, stream_handler)
        _ask_for_client_certificate(quic)
        self.server = server
        self.node_id: str | None = None  # set while this is the node's registered link
        self.peer = "?"
        self.last_heard = time.monotonic()
        self.answering = False  # the node waits for us (an enrolment): not silent
        self._fingerprint = ""
        self._decoder = FrameDecoder("node")
        self._stream_id: int | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._ending = False
        self._sent_version = 0
        self._sent_versions: set[int] = set()
        self._push_lock = asyncio.Lock()

    # -- aioquic events ---------------------------------------------------------------
    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.peer = f"{addr[0]}:{addr[1]}"  # the latest: QUIC lets a node change address
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.last_heard = time.monotonic()
            self.server._opened(self)
            self._task = self.server._spawn(self._serve(), f"linkd-{self.peer}")
        elif isinstance(event, StreamDataReceived):
            self._received(event)
        elif isinstance(event, ConnectionTerminated):
            self._ending = True
            if self._task is not None:
                self._task.cancel()
            self.server._closed(self)

    def _received(self, event: StreamDataReceived) -> None:
        if self._ending:
            return
        if self._stream_id is None and event.stream_id % 4 == 0:
            self._stream_id = event.stream_id  # the first client-opened bidirectional one
        if event.stream_id != self._stream_id:
            self.end(CloseCode.PROTOCOL, "one bidirectional stream per link")
            return
        try:
            messages = self._decoder.feed(event.data)
        except ProtocolError as exc:
            self.end(CloseCode.PROTOCOL, exc.reason)
            return
        for message in messages:
            self.last_heard = time.monotonic()
            self._inbox.put_nowait(message)
        if self._inbox.qsize() > MAX_QUEUED:
            self.end(CloseCode.PROTOCOL, f"over {MAX_QUEUED} messages waiting")
        elif event.end_stream:
            self.end(CloseCode.NORMAL, "stream closed by the node")

    # -- ending -----------------------------------------------------------------------
    def end(self, code: CloseCode, reason: str) -> None:
        """Close the connection now with ``reason`` (idempotent)."""
        if self._ending:
            return
        self._ending = True
        level = logging.INFO if code in (CloseCode.NORMAL, CloseCode.SHUTDOWN) \
            else logging.WARNING
        log.log(level, "closing link %s (node %s): %s", self.peer, self.node_id or "-", reason)
        self.close(error_code=int(code), reason_phrase=reason[:200])
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self.server._closed(self)

    async def _refuse(self, reason: str) -> None:
        """Send ``refused``, give the peer a moment to read it, then close."""
        log.warning("refusing %s: %s", self.peer, reason)
        self._send(Refused(reason[:1000]))
        await asyncio.sleep(REFUSE_GRACE)  # the peer normally closes first
        self.end(CloseCode.UNAUTHORISED, reason)

    def _send(self, message: Message) -> None:
        if self._ending or self._stream_id is None:
            return
        self._quic.send_stream_data(self._stream_id, encode(message))
        self.transmit()

    # -- the conversation -------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            cert = _peer_certificate(self._quic)
            if cert is None:
                await self._enrolment()
            else:
                await self._node(cert)
        except asyncio.CancelledError:
            raise
        except ProtocolError as exc:
            self.end(CloseCode.PROTOCOL, exc.reason)
        except Exception:
            log.exception("link %s (node %s) failed", self.peer, self.node_id or "-")
            self.end(CloseCode.INTERNAL, "internal error")

    async def _enrolment(self) -> None:
        message = await self._inbox.get()
        if not isinstance(message, Enrol):
            await self._refuse(f"{message.TYPE} needs a client certificate; "
                               "without one only enrol is allowed")
            return
        try:
            load_csr(message.csr)
        except PkiError as exc:
            await self._refuse(f"bad CSR: {exc}")  # before the claim is used up
            return
        backend = self.server.backend
        self.answering = True  # a loaded store or CA may take a while; the box waits
        node_id = await asyncio.to_thread(backend.redeem_claim, message.claim)
        if node_id is None:
            await self._refuse("unknown, used or expired claim code")
            return
        cert_pem = await asyncio.to_thread(self.server.ca.issue_node_cert, node_id,
                                           message.csr)
        fp = fingerprint(cert_pem)
        await asyncio.to_thread(backend.certificate_issued, node_id, fp)
        log.info("node %s enrolled from %s, certificate %s", node_id, self.peer, fp)
        self._send(Enrolled(node_id=node_id, cert=cert_pem.decode(),
                            ca=self.server.ca.cert_pem.decode()))
        await asyncio.sleep(REFUSE_GRACE)  # the node closes once it has its certificate
        self.end(CloseCode.NORMAL, "enrolled")

    async def _node(self, cert: x509.Certificate) -> None:
        try:
            node_id = self.server.ca.verify_node_cert(cert)
        except PkiError as exc:
            self.end(CloseCode.UNAUTHORISED, f"certificate refused: {exc}")
            return
        self._fingerprint = fingerprint(cert)
        valid = await asyncio.to_thread(self.server.backend.certificate_valid, node_id,
                                        self._fingerprint)
        if not valid:
            self.end(CloseCode.UNAUTHORISED,
                     f"certificate refused: not node {node_id}'s current certificate "
                     "(revoked by a re-enrolment, or unknown node)")
            return
        hello = await self._inbox.get()
        if not isinstance(hello, Hello):
            raise ProtocolError(f"expected hello, got {hello.TYPE}")
        if hello.node_id != node_id:
            self.end(CloseCode.UNAUTHORISED,
                     f"hello names node {hello.node_id} but the certificate is {node_id}'s")
            return
        self._sent_version = hello.applied_version
        self.node_id = node_id
        self.server._register(self, node_id)
        if hello.applied_version:  # repairs an ack lost with an earlier connection
            await asyncio.to_thread(self.server.backend.plan_acknowledged, node_id,
                                    hello.applied_version, True, None)
        await self.push_plan()
        while True:
            message = await self._inbox.get()
            if isinstance(message, Ack):
                if message.version not in self._sent_versions:
                    raise ProtocolError(f"ack of version {message.version}, never sent")
                await asyncio.to_thread(self.server.backend.plan_acknowledged, node_id,
                                        message.version, message.ok, message.error)
                if not message.ok:
                    log.warning("node %s refused plan %d: %s", node_id, message.version,
                                message.error)
            elif isinstance(message, Heartbeat):
                await asyncio.to_thread(self.server.backend.heartbeat, node_id,
                                        message.status)
            else:
                raise ProtocolError(f"{message.TYPE} not allowed after hello")

    async def refresh(self) -> None:
        """After a revision change: re-check the certificate, push a changed plan."""
        node_id = self.node_id
        if node_id is None or self._ending:
            return
        try:
            valid = await asyncio.to_thread(self.server.backend.certificate_valid, node_id,
                                            self._fingerprint)
            if not valid:
                self.end(CloseCode.UNAUTHORISED, "certificate revoked")
                return
            await self.push_plan()
        except Exception:
            log.exception("refreshing node %s failed", node_id)

    async def push_plan(self) -> None:
        """Send the node's plan if its version differs from the last one sent (or, right
        after hello, from the one the node applied)."""
        node_id = self.node_id
        if node_id is None:
            return
        async with self._push_lock:
            found = await asyncio.to_thread(self.server.backend.plan_for, node_id)
            if found is None or self._ending:
                return
            version, doc = found
            if version == self._sent_version:
                return
            try:
                self._send(PushPlan(version=version, plan=doc))
            except EncodeError as exc:
                log.error("plan %d for node %s cannot be sent: %s", version, node_id, exc)
                return
            self._sent_version = version
            self._sent_versions.add(version)
            log.info("plan %d sent to node %s", version, node_id)


# ----------------------------------------------------------------------------- in memory
@dataclass(frozen=True)
class AckRecord:
    node_id: str
    version: int
    ok: bool
    error: str | None
    at: float  # time.monotonic() when recorded


class InMemoryBackend:
    """A :class:`LinkBackend` in memory, for tests and ``bench/planpush.py``.

    Thread-safe (linkd calls it from worker threads). :meth:`set_plans` gives nodes new
    plans (version + 1 each) under one revision change and notes when
    (``changed_at``, ``time.monotonic()``) so latencies can be measured to
    ``acks[...].at``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[str, tuple[str, float]] = {}  # code -> (node id, expiry)
        self._revision = 0
        self.fingerprints: dict[str, str] = {}
        self.plans: dict[str, tuple[int, dict[str, Any]]] = {}
        self.acks: list[AckRecord] = []
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self.disconnects: list[str] = []
        self.changed_at = time.monotonic()

    # -- for the tests --------------------------------------------------------------
    def add_claim(self, code: str, node_id: str, ttl: float = 3600.0) -> None:
        with self._lock:
            self._claims[code] = (node_id, time.monotonic() + ttl)

    def set_plans(self, docs: Mapping[str, dict[str, Any]]) -> dict[str, int]:
        """New plans for some nodes, one revision change; returns their versions."""
        with self._lock:
            out = {}
            for node_id, doc in docs.items():
                version = self.plans.get(node_id, (0, {}))[0] + 1
                self.plans[node_id] = (version, doc)
                out[node_id] = version
            self._revision += 1
            self.changed_at = time.monotonic()
            return out

    def set_plan(self, node_id: str, doc: dict[str, Any]) -> int:
        return self.set_plans({node_id: doc})[node_id]

    def acks_of(self, node_id: str) -> list[AckRecord]:
        with self._lock:
            return [a for a in self.acks if a.node_id == node_id]

    def acknowledged(self) -> set[tuple[str, int]]:
        """Every ``(node id, version)`` acknowledged so far, applied or refused."""
        with self._lock:
            return {(a.node_id, a.version) for a in self.acks}

    def statuses_of(self, node_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.statuses.get(node_id, []))

    # -- LinkBackend ----------------------------------------------------------------
    def redeem_claim(self, code: str) -> str | None:
        with self._lock:
            found = self._claims.pop(code, None)
            if found is None or found[1] < time.monotonic():
                return None
            self._revision += 1
            return found[0]

    def certificate_issued(self, node_id: str, fingerprint: str) -> None:
        with self._lock:
            self.fingerprints[node_id] = fingerprint
            self._revision += 1

    def certificate_valid(self, node_id: str, fingerprint: str) -> bool:
        with self._lock:
            return self.fingerprints.get(node_id) == fingerprint

    def revision(self) -> int:
        with self._lock:
            return self._revision

    def plan_for(self, node_id: str) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            return self.plans.get(node_id)

    def plan_acknowledged(self, node_id: str, version: int, ok: bool,
                          error: str | None) -> None:
        with self._lock:
            self.acks.append(AckRecord(node_id, version, ok, error, time.monotonic()))

    def heartbeat(self, node_id: str, status: dict[str, Any]) -> None:
        with self._lock:
            self.statuses.setdefault(node_id, []).append(status)

    def disconnected(self, node_id: str) -> None:
        with self._lock:
            self.disconnects.append(node_id)


