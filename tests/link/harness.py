"""Test pieces for the node link: a controller site (CA, in-memory backend, linkd on
loopback), nodes running the real :class:`LinkClient`, a bare QUIC client that says
exactly what a test wants, and a UDP relay that can cut the link."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.link.client import LinkClient
from appliance.link.protocol import ALPN, FrameDecoder, Message
from appliance.plan import Plan
from controller.linkd import InMemoryBackend, LinkServer
from controller.pki import CertificateAuthority

HOST = "127.0.0.1"


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


# A two-tenant plan in the shape of tests/test_plan.py's (kept here so the link tests do
# not move with that module).
PLAN: dict[str, Any] = {
    "version": 1,
    "node": {"id": "branch-1"},
    "trunks": [{"name": "carrier", "address": "127.0.0.2", "port": 5070}],
    "tenants": [
        {"id": "acme", "domain": "acme.example", "caller_id": "+862088880000",
         "extensions": [{"number": "1001", "password": "password-1"},
                        {"number": "1002", "password": "password-2"}],
         "dids": [{"number": "+862088880001", "target": "1001"},
                  {"number": "+862088880060", "target": "600"}],
         "hunt_groups": [{"number": "600", "members": ["1002", "1001"]}],
         "outbound": [{"prefix": "0", "trunk": "carrier", "strip": 1, "prepend": "+86"}]},
        {"id": "globex", "domain": "globex.example", "caller_id": "+85230000000",
         "extensions": [{"number": "1001", "password": "password-g"}],
         "dids": [{"number": "+85230000001", "target": "1001"}]},
    ],
}


def plan_doc(node_id: str, version: int, **tenant0: Any) -> dict[str, Any]:
    """:data:`PLAN` as version ``version`` for ``node_id``; ``tenant0`` overrides fields
    of the first tenant (to make a plan the node refuses)."""
    doc = copy.deepcopy(PLAN)
    doc["version"] = version
    doc["node"] = {"id": node_id}
    doc["tenants"][0].update(tenant0)
    return doc


class Node:
    """A node process in miniature: a LinkClient whose plan callback validates with
    :meth:`Plan.from_dict` (so a bad plan raises PlanError) and records what it ran."""

    def __init__(self, port: int, state_dir: Path, *, heartbeat: float = 0.1,
                 idle_timeout: float | None = None, host: str = HOST) -> None:
        self.applied: list[tuple[int, Plan]] = []
        self.status_doc: dict[str, Any] = {"calls": 0}
        kwargs = {} if idle_timeout is None else {"idle_timeout": idle_timeout}
        self.client = LinkClient((host, port), state_dir, self._apply, self._status,
                                 heartbeat_interval=heartbeat, **kwargs)
        self.task: asyncio.Task[None] | None = None

    async def _apply(self, version: int, doc: dict[str, Any]) -> None:
        self.applied.append((version, Plan.from_dict(doc)))

    def _status(self) -> dict[str, Any]:
        return dict(self.status_doc)

    @property
    def versions(self) -> list[int]:
        return [v for v, _ in self.applied]

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.client.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


class Site:
    """The controller side of a test: CA, InMemoryBackend and a started LinkServer."""

    def __init__(self, root: Path, *, heartbeat: float = 0.2) -> None:
        self.root = root
        self.heartbeat = heartbeat
        self.ca = CertificateAuthority.load_or_create(root / "pki")
        self.backend = InMemoryBackend()
        self.server = self._server(0)
        self.nodes: list[Node] = []

    def _server(self, port: int) -> LinkServer:
        return LinkServer(HOST, port, self.ca, self.backend, heartbeat_interval=self.heartbeat)

    async def __aenter__(self) -> Site:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for node in self.nodes:
            await node.stop()
        await self.server.stop()

    async def restart(self) -> None:
        """Stop linkd and start a new one on the same port (same CA and store)."""
        port = self.server.port
        await self.server.stop()
        self.server = self._server(port)
        await self.server.start()

    def claim(self, node_id: str) -> str:
        code = secrets.token_hex(6).upper()
        self.backend.add_claim(code, node_id)
        return code

    def node(self, name: str, **kwargs: Any) -> Node:
        node = Node(self.server.port, self.root / name, **kwargs)
        self.nodes.append(node)
        return node

    async def enrolled_node(self, node_id: str, name: str | None = None,
                            **kwargs: Any) -> Node:
        node = self.node(name or node_id, **kwargs)
        await node.client.enrol(self.claim(node_id), self.ca.cert_pem)
        return node

    def credentials(self, node_id: str, ca: CertificateAuthority | None = None
                    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A node key and certificate made without the link (``ca``: another CA)."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
               .sign(key, hashes.SHA256()))
        pem = (ca or self.ca).issue_node_cert(node_id,
                                              csr.public_bytes(serialization.Encoding.PEM))
        return x509.load_pem_x509_certificate(pem), key


class RawLink(QuicConnectionProtocol):
    """A bare link client: sends the bytes it is told, keeps what comes back."""

    def __init__(self, quic: QuicConnection,
                 stream_handler: QuicStreamHandler | None = None) -> None:
        super().__init__(quic, stream_handler)
        self.received = bytearray()
        self.terminated: asyncio.Future[ConnectionTerminated] = \
            asyncio.get_running_loop().create_future()
        self._stream_id: int | None = None

    def send_bytes(self, data: bytes) -> None:
        if self._stream_id is None:
            self._stream_id = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(self._stream_id, data)
        self.transmit()

    def messages(self) -> list[Message]:
        return FrameDecoder("controller").feed(bytes(self.received))

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self.received += event.data
        elif isinstance(event, ConnectionTerminated) and not self.terminated.done():
            self.terminated.set_result(event)


@contextlib.asynccontextmanager
async def raw_link(site: Site, *, cert: x509.Certificate | None = None,
                   key: ec.EllipticCurvePrivateKey | None = None) -> AsyncIterator[RawLink]:
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                               cadata=site.ca.cert_pem, server_name=HOST)
    config.certificate, config.private_key = cert, key
    async with connect(HOST, site.server.port, configuration=config,
                       create_protocol=RawLink) as proto:
        yield cast(RawLink, proto)


class Relay(asyncio.DatagramProtocol):
    """A UDP relay between nodes and linkd on loopback; ``cut`` drops every datagram."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cut = False
        self.client: Any = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.cut or self.transport is None:
            return
        if addr == self.target:
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.transport.sendto(data, self.target)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


@contextlib.asynccontextmanager
async def relay(target_port: int) -> AsyncIterator[Relay]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Relay((HOST, target_port)), local_addr=(HOST, 0))
    try:
        yield protocol
    finally:
        transport.close()
