"""The node's end of the node link: enrolment, then a certified QUIC connection to the
controller that brings plans down and takes acknowledgements and heartbeats up.

Theory of operation
-------------------
State lives in ``state_dir`` (mode 0700):

=============  ===========================================================
``node.key``   the node's EC P-256 key, generated here, mode 0600
``node.crt``   its certificate, signed by the controller's CA at enrolment
``ca.crt``     the controller's CA (authenticates the controller)
``node.json``  ``{"node_id": ...}``
``plan.json``  the last good plan: ``{"version": N, "plan": {...}}``
=============  ===========================================================

:meth:`LinkClient.enrol` (once, with a claim code and the CA certificate the technician
was given) connects without a client certificate, checking the controller's
certificate against that CA and the controller's host name, sends ``enrol`` and stores
what comes back. :meth:`LinkClient.run` then keeps one link up: connect with the node
certificate, ``hello`` with the last applied version, and for each ``plan``: apply it
through the callback, write it atomically as the last good plan, ``ack`` it; if the
callback raises (the node refuses the plan), ``ack`` with ``ok`` false and the error,
and the old plan file stays. Heartbeats carry ``status()`` every interval. Any loss
(idle timeout, the controller closing, a refused certificate) is retried with backoff
(0.2 s doubling to 5 s). A node boots from :meth:`LinkClient.last_good_plan` whether or
not the controller is reachable.

A dead controller is noticed by QUIC's idle timeout: heartbeats keep the connection
busy, so no packet from the controller for :data:`IDLE_TIMEOUT` seconds ends the link;
RFC 9000 section 10.1 restarts the timer on the first packet sent after one received,
so the loss is noticed within ``IDLE_TIMEOUT + heartbeat_interval`` (5 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
)
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.ids import ID_RE
from appliance.link.protocol import (
    ALPN,
    MAX_TEXT,
    Ack,
    CloseCode,
    EncodeError,
    Enrol,
    Enrolled,
    FrameDecoder,
    Heartbeat,
    Hello,
    LinkError,
    Message,
    ProtocolError,
    PushPlan,
    Refused,
    encode,
)

log = logging.getLogger("branchline.link")

IDLE_TIMEOUT = 4.0  # seconds; plus one heartbeat interval = the 5 s loss detection
CONNECT_TIMEOUT = 5.0  # for the handshake, and for the answer to enrol
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
NODE_URI_PREFIX = "urn:branchline:node:"

ApplyPlan = Callable[[int, dict[str, Any]], Awaitable[None]]
Status = Callable[[], dict[str, Any]]


class EnrolmentRefused(LinkError):
    """The controller refused the enrolment; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"enrolment refused: {reason}")
        self.reason = reason


class LinkLost(LinkError):
    """The link could not be set up or ended; the message says why."""


class _Closed:
    """Put in the inbox when the connection ends."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _LinkProtocol(QuicConnectionProtocol):
    """A client connection: frames on one stream we open, decoded into ``inbox``."""

    def __init__(self, quic: QuicConnection,
                 stream_handler: QuicStreamHandler | None = None) -> None:
        super().__init__(quic, stream_handler)
        self.inbox: asyncio.Queue[Message | _Closed] = asyncio.Queue()
        self.close_reason: str | None = None
        # set when the handshake completes or the connection ends, whichever comes
        # first: aioquic's wait_connected() misses a handshake that completes before
        # it is called (it only records completion for a waiter already there)
        self.settled = asyncio.Event()
        self._decoder = FrameDecoder("controller")
        self._stream_id: int | None = None

    def send(self, message: Message) -> None:
        if self.close_reason is not None:
            raise LinkLost(self.close_reason)
        if self._stream_id is None:
            self._stream_id = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(self._stream_id, encode(message))
        self.transmit()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.settled.set()
        elif isinstance(event, StreamDataReceived):
            if event.stream_id != self._stream_id:
                self._fail("controller used an unexpected stream")
                return
            try:
                messages = self._decoder.feed(event.data)
            except ProtocolError as exc:
                self._fail(f"bad frame from the controller: {exc.reason}")
                return
            for message in messages:
                self.inbox.put_nowait(message)
        elif isinstance(event, ConnectionTerminated) and self.close_reason is None:
            reason = event.reason_phrase or f"connection closed (code {event.error_code})"
            self.close_reason = reason
            self.inbox.put_nowait(_Closed(reason))
            self.settled.set()

    def _fail(self, reason: str) -> None:
        self.close(error_code=int(CloseCode.PROTOCOL), reason_phrase=reason[:200])
        if self.close_reason is None:
            self.close_reason = reason
            self.inbox.put_nowait(_Closed(reason))
            self.settled.set()


class LinkClient:
    """A node's link to the controller (see the module docstring).

    ``apply_plan(version, plan)`` applies a plan and raises (e.g.
    :class:`appliance.plan.PlanError`) to refuse it; ``status()`` is what each heartbeat
    reports. ``connected`` is set while a link is up (handshake done, ``hello`` sent;
    a controller that then refuses the certificate closes it at once).
    """

    def __init__(self, controller: tuple[str, int], state_dir: Path, apply_plan: ApplyPlan,
                 status: Status, heartbeat_interval: float = 1.0, *,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.host, self.port = controller
        self.state_dir = state_dir
        self.apply_plan = apply_plan
        self.status = status
        self.heartbeat_interval = heartbeat_interval
        self.idle_timeout = idle_timeout
        self.connected = asyncio.Event()
        self._since: float | None = None
        self._up_at: float | None = None  # time.monotonic() of the last link up
        self._last_error: str | None = None
        last = self.last_good_plan(state_dir)
        self._applied_version = last[0] if last else 0

    # -- state --------------------------------------------------------------------
    @property
    def enrolled(self) -> bool:
        return self.node_id is not None and all(
            (self.state_dir / name).is_file() for name in ("node.key", "node.crt", "ca.crt"))

    @property
    def node_id(self) -> str | None:
        try:
            doc = json.loads((self.state_dir / "node.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        node_id = doc.get("node_id") if isinstance(doc, dict) else None
        return node_id if isinstance(node_id, str) and ID_RE.fullmatch(node_id) else None

    @property
    def applied_version(self) -> int:
        return self._applied_version

    def link_state(self) -> dict[str, Any]:
        """For the node's status page: ``connected``, ``since`` (epoch seconds of the
        last change), ``last_error``, ``node_id``, ``applied_version``."""
        return {"connected": self.connected.is_set(), "since": self._since,
                "last_error": self._last_error, "node_id": self.node_id,
                "applied_version": self._applied_version}

    @staticmethod
    def last_good_plan(state_dir: Path) -> tuple[int, dict[str, Any]] | None:
        """The last plan this node applied and acknowledged, ``(version, plan)``, or None
        (no plan yet, or an unreadable file, which is logged)."""
        path = state_dir / "plan.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("last good plan %s is unreadable: %s", path, exc)
            return None
        version = doc.get("version") if isinstance(doc, dict) else None
        plan = doc.get("plan") if isinstance(doc, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1 \
                or not isinstance(plan, dict):
            log.error("last good plan %s is not {version, plan}", path)
            return None
        return version, plan

    # -- enrolment ----------------------------------------------------------------
    async def enrol(self, claim_code: str, ca_pem: bytes | str) -> str:
        """Enrol this box with a one-time claim code; returns the node id.

        Raises :class:`EnrolmentRefused` when the controller refuses (the reason is the
        controller's), :class:`LinkLost` when it cannot be reached or authenticated.
        """
        ca_bytes = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
        ca_cert = x509.load_pem_x509_certificate(ca_bytes)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        new_key = self.state_dir / "node.key.new"
        new_key.unlink(missing_ok=True)
        _write_file(new_key, key_pem, 0o600, exclusive=True)
        try:
            csr = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                               "branchline-node")]))
                   .sign(key, hashes.SHA256()))
            config = self._config(ca_bytes)
            answer = await self._exchange(config, Enrol(
                claim=claim_code.strip(),
                csr=csr.public_bytes(serialization.Encoding.PEM).decode()))
            if isinstance(answer, Refused):
                raise EnrolmentRefused(answer.reason)
            if not isinstance(answer, Enrolled):
                raise LinkLost(f"controller answered enrol with {answer.TYPE}")
            cert = _check_enrolled(answer, key, ca_cert)
            _write_file(self.state_dir / "node.crt", cert, 0o644)
            _write_file(self.state_dir / "ca.crt", ca_bytes, 0o644)
            _write_file(self.state_dir / "node.json",
                        json.dumps({"node_id": answer.node_id}).encode(), 0o644)
            new_key.replace(self.state_dir / "node.key")
            _sync_dir(self.state_dir)
        finally:
            new_key.unlink(missing_ok=True)
        log.info("enrolled as node %s", answer.node_id)
        return answer.node_id

    async def _exchange(self, config: QuicConfiguration, request: Message) -> Message:
        async with self._connect(config) as proto:
            proto.send(request)
            try:
                item = await asyncio.wait_for(proto.inbox.get(), CONNECT_TIMEOUT)
            except TimeoutError:
                raise LinkLost("no answer from the controller") from None
            if isinstance(item, _Closed):
                raise LinkLost(item.reason)
            return item

    # -- the link -----------------------------------------------------------------
    async def run(self) -> None:
        """Keep the link up until cancelled (see the module docstring)."""
        if not self.enrolled:
            raise LinkError(f"{self.state_dir} holds no enrolment: enrol first")
        delay = BACKOFF_FIRST
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                self._set_down(None)
                raise
            except (LinkError, ConnectionError, OSError, TimeoutError) as exc:
                self._set_down(str(exc) or type(exc).__name__)
                log.warning("link to %s:%d: %s", self.host, self.port, self._last_error)
            except Exception as exc:  # a bug or bad state files: keep trying, loudly
                self._set_down(f"{type(exc).__name__}: {exc}")
                log.exception("link to %s:%d failed", self.host, self.port)
            if self._up_at is not None and self._up_at >= started \
                    and time.monotonic() - self._up_at >= BACKOFF_MAX:
                delay = BACKOFF_FIRST  # a link that held: reconnect at once
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _session(self) -> None:
        """One connection, until it ends: always by an exception saying why."""
        node_id = self.node_id
        if node_id is None:
            raise LinkError("node.json is missing or bad")
        config = self._config((self.state_dir / "ca.crt").read_bytes())
        config.load_cert_chain(self.state_dir / "node.crt", self.state_dir / "node.key")
        async with self._connect(config) as proto:
            proto.send(Hello(node_id=node_id, applied_version=self._applied_version))
            self._set_up()
            beats = asyncio.get_running_loop().create_task(self._heartbeats(proto))
            try:
                while True:
                    item = await proto.inbox.get()
                    if isinstance(item, _Closed):
                        raise LinkLost(item.reason)
                    if isinstance(item, PushPlan):
                        await self._apply(proto, item)
                    elif isinstance(item, Refused):
                        raise LinkLost(f"refused: {item.reason}")
                    else:
                        proto._fail(f"{item.TYPE} not expected on a node link")
            finally:
                beats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beats

    @contextlib.asynccontextmanager
    async def _connect(self, config: QuicConfiguration) -> AsyncIterator[_LinkProtocol]:
        """A connection with the handshake done; closed on leaving."""
        async with connect(self.host, self.port, configuration=config,
                           create_protocol=_LinkProtocol, wait_connected=False) as base:
            proto = cast(_LinkProtocol, base)
            proto.transmit()
            try:
                await asyncio.wait_for(proto.settled.wait(), CONNECT_TIMEOUT)
            except TimeoutError:
                raise LinkLost(f"no answer from {self.host}:{self.port}") from None
            if proto.close_reason is not None:
                raise LinkLost(proto.close_reason)
            yield proto

    async def _apply(self, proto: _LinkProtocol, push: PushPlan) -> None:
        try:
            await self.apply_plan(push.version, push.plan)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = (str(exc) or type(exc).__name__)[:MAX_TEXT]
            log.warning("plan %d refused: %s", push.version, error)
            proto.send(Ack(version=push.version, ok=False, error=error))
            return
        try:
            await asyncio.to_thread(_write_plan, self.state_dir, push.version, push.plan)
        except OSError as exc:
            error = f"applied, but the last good plan could not be saved: {exc}"[:MAX_TEXT]
            log.error("plan %d: %s", push.version, error)
            proto.send(Ack(version=push.version, ok=False, error=error))
            return
        self._applied_version = push.version
        log.info("plan %d applied", push.version)
        proto.send(Ack(version=push.version, ok=True))

    async def _heartbeats(self, proto: _LinkProtocol) -> None:
        while True:
            try:
                status = self.status()
            except Exception as exc:  # the link must not die with the status page
                log.exception("status() failed")
                status = {"status_error": str(exc)[:MAX_TEXT]}
            try:
                try:
                    proto.send(Heartbeat(status=status))
                except EncodeError as exc:
                    proto.send(Heartbeat(status={"status_error": str(exc)[:MAX_TEXT]}))
            except LinkLost:
                return
            await asyncio.sleep(self.heartbeat_interval)

    # -- helpers ------------------------------------------------------------------
    def _config(self, ca_pem: bytes) -> QuicConfiguration:
        return QuicConfiguration(is_client=True, alpn_protocols=[ALPN], cadata=ca_pem,
                                 server_name=self.host, idle_timeout=self.idle_timeout)

    def _set_up(self) -> None:
        self.connected.set()
        self._up_at = time.monotonic()
        self._since = time.time()
        self._last_error = None
        log.info("link to %s:%d up", self.host, self.port)

    def _set_down(self, error: str | None) -> None:
        if self.connected.is_set() or self._since is None:
            self._since = time.time()
        self.connected.clear()
        if error is not None:
            self._last_error = error


def _check_enrolled(answer: Enrolled, key: ec.EllipticCurvePrivateKey,
                    ca_cert: x509.Certificate) -> bytes:
    """The certificate of an ``enrolled`` answer, after checking it is for our key,
    names the node, was issued by the CA we trust and the CA sent is that CA."""
    try:
        cert = x509.load_pem_x509_certificate(answer.cert.encode())
        sent_ca = x509.load_pem_x509_certificate(answer.ca.encode())
    except ValueError as exc:
        raise LinkLost(f"enrolled: unreadable certificate: {exc}") from None
    if sent_ca != ca_cert:
        raise LinkLost("enrolled: the controller sent a different CA than the one given")
    if cert.public_key() != key.public_key():
        raise LinkLost("enrolled: the certificate is not for this node's key")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise LinkLost("enrolled: the certificate was not issued by the CA") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    if NODE_URI_PREFIX + answer.node_id not in san.get_values_for_type(
            x509.UniformResourceIdentifier):
        raise LinkLost(f"enrolled: the certificate does not name node {answer.node_id}")
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_plan(state_dir: Path, version: int, plan: dict[str, Any]) -> None:
    data = json.dumps({"version": version, "plan": plan}, separators=(",", ":")).encode()
    _write_file(state_dir / "plan.json", data, 0o600)
    _sync_dir(state_dir)


def _write_file(path: Path, data: bytes, mode: int, *, exclusive: bool = False) -> None:
    """Write ``path`` atomically (a synced temporary file renamed over it), created
    with ``mode``; ``exclusive``: create ``path`` itself, failing if it exists."""
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
