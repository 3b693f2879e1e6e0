"""rtpengine, the node's WebRTC media gateway: its configuration and its process.

Browsers send ICE + DTLS-SRTP (``UDP/TLS/RTP/SAVPF``, RTCP multiplexed); the feature
server's media plane speaks plain RTP/AVP G.711. Kamailio asks rtpengine (the "ng"
control protocol, bencoded over UDP) to rewrite the SDP of every call that has a
WebSocket client on one side, so the browser's leg ends in rtpengine and rtpengine's
other side is ordinary RTP towards the feature server (``templates/kamailio.cfg``,
route ``WEBRTC``). Calls between UDP/TCP phones, trunks and the feature server never
touch it.

It runs in userspace only (``--table=-1``: no kernel forwarding module), one process,
from the node like Kamailio: started before the edge, stopped after it, and
SIGTERMed by the kernel if the node dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from appliance.edge.process import die_with_parent, terminate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RtpengineConfig:
    """Where rtpengine relays media and where Kamailio controls it. ``media_ip`` is
    the address rtpengine binds its RTP ports to and writes into the SDP for both
    sides (browsers and the feature server)."""

    run_dir: Path
    media_ip: str = "127.0.0.1"
    ng_ip: str = "127.0.0.1"
    ng_port: int = 2223
    port_min: int = 30000
    port_max: int = 30999
    log_level: int = 5  # 5 notice; 6 info logs every call's offer/answer/delete

    def argv(self, binary: str) -> list[str]:
        return [
            binary, "--config-file=none", "--foreground", "--log-stderr",
            "--table=-1", f"--interface={self.media_ip}",
            f"--listen-ng={self.ng_ip}:{self.ng_port}",
            f"--port-min={self.port_min}", f"--port-max={self.port_max}",
            f"--log-level={self.log_level}",
            # a call ends when Kamailio says so (BYE, failed INVITE): the feature server
            # is the only other party, so there is no late answer to wait for
            "--delete-delay=0",
            f"--pidfile={self.run_dir / 'rtpengine.pid'}",
        ]


class Rtpengine:
    """Runs rtpengine in the foreground; ready once it answers an ng ``ping``."""

    def __init__(self, cfg: RtpengineConfig) -> None:
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        logfile = open(self.cfg.run_dir / "rtpengine.log", "ab")
        self.proc = await asyncio.create_subprocess_exec(
            *self.cfg.argv(_binary()),
            stdout=logfile, stderr=logfile, preexec_fn=die_with_parent,
        )
        logfile.close()
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise
        log.info("rtpengine up: media %s ports %d-%d, ng %s:%d", self.cfg.media_ip,
                 self.cfg.port_min, self.cfg.port_max, self.cfg.ng_ip, self.cfg.ng_port)

    async def ping(self, timeout: float = 0.5) -> bool:
        """One ng ``ping`` (``<cookie> d7:command4:pinge``); True when ``pong`` came."""
        loop = asyncio.get_running_loop()
        cookie = f"bl{os.getpid()}".encode()
        got: asyncio.Future[bytes] = loop.create_future()

        class _Ping(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if not got.done() and data.startswith(cookie + b" "):
                    got.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(
            _Ping, local_addr=(self.cfg.ng_ip, 0))
        try:
            transport.sendto(cookie + b" d7:command4:pinge", (self.cfg.ng_ip, self.cfg.ng_port))
            try:
                reply = await asyncio.wait_for(got, timeout)
            except TimeoutError:
                return False
            return b"4:pong" in reply
        finally:
            transport.close()

    async def _wait_ready(self, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError("rtpengine exited during start; see rtpengine.log")
            if await self.ping(0.2):
                return
        raise TimeoutError("rtpengine did not answer ping")

    async def stop(self) -> None:
        await terminate(self.proc)


def _binary() -> str:
    path = shutil.which("rtpengine") or "/usr/bin/rtpengine"
    if not os.path.exists(path):
        raise FileNotFoundError("rtpengine is not installed; run `make setup`")
    return path
