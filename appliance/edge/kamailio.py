"""Kamailio, the node's SIP edge: configuration from the plan, and its process.

The configuration file is rendered from ``templates/kamailio.cfg``; the data that
changes with the plan (subscribers as HA1 digests, tenant SIP domains, trunk
source addresses) lives in a SQLite database that Kamailio reads through
``db_sqlite``.  :func:`write_subscriber_db` updates that database in place inside
one transaction, and :meth:`KamailioEdge.reload` asks Kamailio to reload its cached
tables, so a new plan takes effect without dropping registrations or calls.
Clear-text passwords never reach Kamailio's files: only ``MD5(user:realm:pw)``.

A suspended tenant keeps its domain (calls in progress and the feature server's own
requests still route) but has no subscribers: ``auth_check`` finds no such user, so
its phones' REGISTER and INVITE are challenged again and again (401/407) and never
accepted; Kamailio reads ``subscriber`` on every request, so this holds from the
moment the plan is written, and a resumed tenant's phones register again at once.
Registrations already held stay until they expire (the tenant's new calls get the
suspended treatment before any of its phones would be called).

With a WebSocket port (``ws_port``, ``wss_port``) the same configuration also takes
browsers (SIP over WebSocket) and hands the media of their calls to rtpengine
(``appliance/edge/rtpengine.py``, docs/WEBRTC.md); without one nothing of that is loaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appliance.edge.process import die_with_parent, terminate
from appliance.plan import Plan

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("templates") / "kamailio.cfg"
MODULE_PATHS = (
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS version (
    id INTEGER PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL UNIQUE,
    table_version INTEGER DEFAULT 0 NOT NULL);
CREATE TABLE IF NOT EXISTS subscriber (
    id INTEGER PRIMARY KEY NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    password VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(128) DEFAULT '' NOT NULL,
    ha1b VARCHAR(128) DEFAULT '' NOT NULL,
    UNIQUE (username, domain));
CREATE TABLE IF NOT EXISTS domain (
    id INTEGER PRIMARY KEY NOT NULL,
    domain VARCHAR(64) NOT NULL UNIQUE,
    did VARCHAR(64) DEFAULT NULL,
    last_modified TIMESTAMP DEFAULT '2000-01-01 00:00:01' NOT NULL);
CREATE TABLE IF NOT EXISTS domain_attrs (
    id INTEGER PRIMARY KEY NOT NULL,
    did VARCHAR(64) NOT NULL,
    name VARCHAR(32) NOT NULL,
    type INTEGER NOT NULL,
    value VARCHAR(255) NOT NULL,
    last_modified TIMESTAMP DEFAULT '2000-01-01 00:00:01' NOT NULL);
CREATE TABLE IF NOT EXISTS address (
    id INTEGER PRIMARY KEY NOT NULL,
    grp INTEGER DEFAULT 1 NOT NULL,
    ip_addr VARCHAR(50) NOT NULL,
    mask INTEGER DEFAULT 32 NOT NULL,
    port SMALLINT DEFAULT 0 NOT NULL,
    tag VARCHAR(64));
CREATE TABLE IF NOT EXISTS trusted (
    id INTEGER PRIMARY KEY NOT NULL,
    src_ip VARCHAR(50) NOT NULL,
    proto VARCHAR(4) NOT NULL,
    from_pattern VARCHAR(64) DEFAULT NULL,
    ruri_pattern VARCHAR(64) DEFAULT NULL,
    tag VARCHAR(64),
    priority INTEGER DEFAULT 0 NOT NULL);
INSERT OR IGNORE INTO version (table_name, table_version) VALUES
    ('version', 1), ('subscriber', 7), ('domain', 2), ('domain_attrs', 1),
    ('address', 6), ('trusted', 6);
"""


@dataclass(frozen=True)
class EdgeConfig:
    """Where the edge listens and where the feature server is."""

    run_dir: Path
    listen_ip: str = "127.0.0.1"
    sip_port: int = 5060
    fs_ip: str = "127.0.0.1"
    fs_port: int = 5080
    children: int = 2
    flood_requests_per_2s: int = 100
    ban_seconds: int = 300
    debug: int = 1
    # SIP over WebSocket for browsers (0 = off): plain ws:// and TLS wss:// ports on
    # listen_ip, the PEM certificate chain and key for wss, and rtpengine's ng control
    # address that handles the media of those calls (appliance/edge/rtpengine.py).
    ws_port: int = 0
    wss_port: int = 0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    rtpengine_ng: tuple[str, int] = ("127.0.0.1", 2223)

    @property
    def webrtc(self) -> bool:
        return bool(self.ws_port or self.wss_port)

    @property
    def db_path(self) -> Path:
        return self.run_dir / "edge.sqlite"

    @property
    def cfg_path(self) -> Path:
        return self.run_dir / "kamailio.cfg"

    @property
    def ctl_socket(self) -> Path:
        """Kamailio's control socket. Unix socket paths are limited to about 100 bytes,
        so it lives in the temp directory under a name derived from the run directory."""
        digest = hashlib.sha1(str(self.run_dir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"branchline-kamailio-{digest}.ctl"


def module_path() -> str:
    for p in MODULE_PATHS:
        if os.path.isdir(p):
            return p
    raise FileNotFoundError("Kamailio modules not found; run `make setup`")


def render_config(cfg: EdgeConfig) -> str:
    defines: list[str] = []
    listen: list[str] = []
    ws_ports: list[str] = []
    if cfg.wss_port and (cfg.tls_cert is None or cfg.tls_key is None):
        raise ValueError("wss needs a TLS certificate and key (tls_cert, tls_key)")
    if cfg.webrtc:
        defines.append("#!define WITH_WEBRTC")
    if cfg.ws_port:
        listen.append(f"listen=tcp:{cfg.listen_ip}:{cfg.ws_port}")
        ws_ports.append(str(cfg.ws_port))
    if cfg.wss_port:
        defines.append("#!define WITH_TLS")
        listen.append(f"listen=tls:{cfg.listen_ip}:{cfg.wss_port}")
        ws_ports.append(str(cfg.wss_port))
    values = {
        "defines": "\n".join(defines),
        "debug": str(cfg.debug),
        "children": str(cfg.children),
        "listen_ip": cfg.listen_ip,
        "sip_port": str(cfg.sip_port),
        "extra_listen": "\n".join(listen),
        "ws_port_test": " && ".join(f"$Rp != {p}" for p in ws_ports) or "1",
        "rtpengine_ng": f"{cfg.rtpengine_ng[0]}:{cfg.rtpengine_ng[1]}",
        "tls_cert": str(cfg.tls_cert or ""),
        "tls_key": str(cfg.tls_key or ""),
        "module_path": module_path(),
        "run_dir": str(cfg.run_dir),
        "ctl_socket": str(cfg.ctl_socket),
        "db_path": str(cfg.db_path),
        "fs_ip": cfg.fs_ip,
        "fs_port": str(cfg.fs_port),
        "flood_requests_per_2s": str(cfg.flood_requests_per_2s),
        "ban_seconds": str(cfg.ban_seconds),
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise ValueError("unrendered placeholder in kamailio.cfg template")
    return text


def write_subscriber_db(path: Path, plan: Plan) -> None:
    """Replace subscribers, domains and trunk addresses in one transaction."""
    con = sqlite3.connect(path)
    try:
        con.executescript(_SCHEMA)
        with con:
            con.execute("DELETE FROM subscriber")
            con.execute("DELETE FROM domain")
            con.execute("DELETE FROM address")
            for tenant in plan.tenants:
                con.execute("INSERT INTO domain (domain, did) VALUES (?, ?)",
                            (tenant.domain, tenant.id))
                if tenant.suspended:  # no login for its phones (see the module docstring)
                    continue
                con.executemany(
                    "INSERT INTO subscriber (username, domain, ha1) VALUES (?, ?, ?)",
                    [(e.number, tenant.domain, e.ha1(tenant.domain)) for e in tenant.extensions],
                )
            con.executemany(
                "INSERT INTO address (grp, ip_addr, mask, port, tag) VALUES (1, ?, 32, 0, ?)",
                [(t.address, t.name) for t in plan.trunks],
            )
    finally:
        con.close()


class KamailioEdge:
    """Runs Kamailio in the foreground under our generated configuration."""

    def __init__(self, cfg: EdgeConfig) -> None:
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None

    def prepare(self, plan: Plan) -> None:
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        write_subscriber_db(self.cfg.db_path, plan)
        self.cfg.cfg_path.write_text(render_config(self.cfg))

    async def check(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            _binary(), "-c", "-f", str(self.cfg.cfg_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"kamailio config check failed:\n{out.decode(errors='replace')}")

    async def start(self) -> None:
        await self.check()
        logfile = open(self.cfg.run_dir / "kamailio.log", "ab")
        self.proc = await asyncio.create_subprocess_exec(
            _binary(), "-f", str(self.cfg.cfg_path), "-DD", "-E",
            "-P", str(self.cfg.run_dir / "kamailio.pid"),
            stdout=logfile, stderr=logfile, preexec_fn=die_with_parent,
        )
        logfile.close()
        await self._wait_ready()

    async def _wait_ready(self, timeout: float = 10.0) -> None:
        """Ready when an OPTIONS keepalive sent to the edge is answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        probe = (
            f"OPTIONS sip:{self.cfg.listen_ip}:{self.cfg.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.cfg.listen_ip}:0;branch=z9hG4bK-ready{os.getpid()}\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@localhost>;tag=ready\r\n"
            f"To: <sip:{self.cfg.listen_ip}>\r\nCall-ID: ready-{os.getpid()}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        got: asyncio.Future[bytes] = loop.create_future()

        class _Probe(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if not got.done():
                    got.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(
            _Probe, local_addr=(self.cfg.listen_ip, 0)
        )
        try:
            while loop.time() < deadline:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError("kamailio exited during start; see kamailio.log")
                transport.sendto(probe, (self.cfg.listen_ip, self.cfg.sip_port))
                try:
                    await asyncio.wait_for(asyncio.shield(got), 0.2)
                    return
                except TimeoutError:
                    continue
            raise TimeoutError("kamailio did not answer OPTIONS")
        finally:
            transport.close()

    async def reload(self, plan: Plan) -> None:
        write_subscriber_db(self.cfg.db_path, plan)
        for cmd in ("domain.reload", "permissions.addressReload"):
            await self._rpc(cmd)

    async def registered(self) -> int:
        """How many phone registrations (contacts) the edge holds now."""
        out = await self._rpc("stats.get_statistics", "usrloc:")
        match = re.search(rb"usrloc:location_contacts\s*=\s*(\d+)", out)
        if match is None:
            raise RuntimeError(f"kamcmd: no usrloc:location_contacts in {out!r}")
        return int(match.group(1))

    async def _rpc(self, *cmd: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            "kamcmd", "-s", f"unix:{self.cfg.ctl_socket}", *cmd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"kamcmd {cmd[0]} failed: {out.decode(errors='replace')}")
        return out

    async def stop(self) -> None:
        await terminate(self.proc)


def _binary() -> str:
    path = shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not os.path.exists(path):
        raise FileNotFoundError("kamailio is not installed; run `make setup`")
    return path
