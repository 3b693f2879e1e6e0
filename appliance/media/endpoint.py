"""The node's media plane: RTP endpoints, bridges, playback, echo, recording.

This is the asyncio edge around the pure media cores (``rtp``, ``g711``,
``dtmf``, ``wav``).  Everything runs on one event loop; nothing blocks.

Theory of operation
-------------------
An ``RtpEndpoint`` owns one UDP socket for RTP (and one for RTCP on
``port + 1``).  Received datagrams go through one function, ``_on_rtp``:
source check (symmetric RTP latching), a single ``struct`` unpack of the
fixed header, statistics, then dispatch by payload type to the *audio
handlers* (bridges, recorders, echo, in-band DTMF) or the RFC 4733 receiver
and *event handlers*.  Handlers are called as
``handler(payload, sequence, timestamp, marker)``.

What an endpoint sends always carries its own SSRC.  Every sender (a bridge
direction, a player, echo) is a *source*: ``relay(source, ...)`` maps the
source's sequence numbers and timestamps onto the endpoint's own by fixed
offsets, so deltas (gaps from loss, talk-spurt jumps, the shared timestamp
of RFC 4733 packets) pass through unchanged.  When the source changes (a
prompt starts on a bridged leg, the far end changes SSRC) new offsets are
chosen so that our sequence continues and our timestamp advances by the
wall-clock time since the last packet, and the marker bit is set.

Sending is suppressed unless the endpoint's direction allows it
(``sendrecv``/``sendonly``) and a remote address is known; received media is
ignored while the direction is ``sendonly``/``inactive``.  A ``Bridge``
therefore needs no hold logic of its own.

The bridge hot path per packet is: unpack header, update stats, (translate
the payload with a 256-byte table if the two legs use different laws),
pack a new 12-byte header, ``sendto``.  No numpy, no objects per packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from appliance.media import g711
from appliance.media.dtmf import (
    DtmfDigit,
    InbandDtmfDetector,
    Rfc4733Receiver,
    Rfc4733Sender,
    dtmf_tone,
)
from appliance.media.ports import PortPool, PortPoolExhausted
from appliance.media.rtp import (
    HEADER,
    Bye,
    ReceiverReport,
    RtpError,
    RtpPacket,
    RtpStats,
    SenderReport,
    build_bye,
    build_rr,
    build_sdes,
    build_sr,
    ntp_timestamp,
    parse_rtcp,
)

__all__ = [
    "DIRECTIONS",
    "Bridge",
    "Echo",
    "MediaError",
    "Player",
    "PortPool",
    "PortPoolExhausted",
    "Recorder",
    "RtpEndpoint",
]

log = logging.getLogger(__name__)

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
CLOCK_RATE = 8000
FRAME = 160  # samples per 20 ms packet
PTIME = 0.02
_MASK32 = 0xFFFFFFFF
_PACK = HEADER.pack
_UNPACK = HEADER.unpack_from
_STATIC_PT = {"PCMU": 0, "PCMA": 8}
_TRANSCODE = {("PCMU", "PCMA"): g711.ULAW_TO_ALAW, ("PCMA", "PCMU"): g711.ALAW_TO_ULAW}
_INBAND_SUPPRESS = 2.0  # s after an RFC 4733 packet during which in-band hits are ignored

AudioHandler = Callable[[bytes, int, int, bool], None]
DtmfCallback = Callable[[DtmfDigit], None]


class MediaError(Exception):
    """Base error of the media plane."""


class _Protocol(asyncio.DatagramProtocol):
    __slots__ = ("closed", "on_datagram", "owner")

    def __init__(self, on_datagram: Callable[[bytes, Any], None], owner: RtpEndpoint) -> None:
        self.on_datagram = on_datagram
        self.owner = owner
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable after the peer went away
        self.owner.socket_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _udp_socket(ip: str, port: int, buffer: int | None) -> socket.socket:
    """A non-blocking UDP socket bound to ``(ip, port)`` (raises OSError)."""
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if buffer:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
        sock.bind((ip, port))
    except OSError:
        sock.close()
        raise
    return sock


class _LocalSource:
    """The key under which an endpoint's own generated media is relayed."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class RtpEndpoint:
    """One RTP/RTCP socket pair; create with ``await RtpEndpoint.open(...)``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        local_ip: str,
        *,
        tenant_id: str | None,
        latching: bool,
        ssrc: int | None,
        cname: str | None,
        rtcp_interval: float,
    ) -> None:
        self._loop = loop
        self.local_ip = local_ip
        self.tenant_id = tenant_id
        self.port = 0
        self.rtcp_port: int | None = None
        self._pool: PortPool | None = None
        self._socks: list[socket.socket] = []
        self.attached: asyncio.Task[None] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._protocols: list[_Protocol] = []
        self.closed = False
        # remote side and negotiated media
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.payload_type = 0
        self.codec = "PCMU"
        self.dtmf_pt: int | None = None
        self.latching = latching
        self._latch_pending = latching
        self.direction = "sendrecv"
        self._tx_ok = False  # direction allows sending and a remote is known
        self._rx_ok = True
        # what we send
        self.ssrc = ssrc if ssrc is not None else random.getrandbits(32)
        self._seq = random.getrandbits(16)  # next sequence number
        self._last_ts = random.getrandbits(32)
        self._last_time: float | None = None
        self._src: object = None
        self._src_gen = -1
        self._seq_off = 0
        self._ts_off = 0
        self._local = _LocalSource("local")
        self._local_seq = 0
        self._local_ts = 0
        self._local_gen = 0
        self.sent_packets = 0
        self.sent_octets = 0
        self.suppressed = 0
        self.players = 0  # active Players: they pre-empt bridged audio towards this leg
        # what we receive
        self.stats = RtpStats(CLOCK_RATE)
        self.rx_ssrc: int | None = None
        self.rx_gen = 0
        self.bad_packets = 0
        self.foreign_packets = 0
        self.unknown_pt = 0
        self.socket_errors = 0
        # tuples, replaced on change: safe to iterate while a handler detaches itself
        self._audio_handlers: tuple[AudioHandler, ...] = ()
        self._event_handlers: tuple[AudioHandler, ...] = ()
        self.handler_errors = 0
        # DTMF
        self.on_dtmf: DtmfCallback | None = None
        self._dtmf_listeners: list[DtmfCallback] = []
        self._dtmf_rx = Rfc4733Receiver(CLOCK_RATE)
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._last_rfc4733 = -1e9
        self._inband: InbandDtmfDetector | None = None
        self._inband_handler: AudioHandler | None = None
        # RTCP
        self.cname = cname or f"branchline-{os.getpid()}@{local_ip}"
        self.rtcp_interval = rtcp_interval
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._last_sr: tuple[int, float] | None = None  # (middle 32 bits of NTP, arrival)
        self.remote_sr: SenderReport | None = None
        self.remote_report: Any = None  # the last ReportBlock about our stream
        self.remote_bye = False
        self.on_bye: Callable[[], None] | None = None
        self.on_rtcp: Callable[[list[Any]], None] | None = None

    # -- lifecycle --------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        local_ip: str = "127.0.0.1",
        port: int | None = None,
        *,
        pool: PortPool | None = None,
        rtcp: bool = True,
        latching: bool = False,
        inband_dtmf: bool = False,
        ssrc: int | None = None,
        tenant_id: str | None = None,
        cname: str | None = None,
        rtcp_interval: float = 5.0,
        socket_buffer: int | None = 1 << 18,
    ) -> RtpEndpoint:
        """Bind an endpoint: on ``port``, on a port from ``pool``, or on any port.

        With ``rtcp`` the RTCP socket is bound on ``port + 1`` (on any port
        when the RTP port was chosen by the OS).
        """
        loop = asyncio.get_running_loop()
        ep = cls(
            loop,
            local_ip,
            tenant_id=tenant_id,
            latching=latching,
            ssrc=ssrc,
            cname=cname,
            rtcp_interval=rtcp_interval,
        )
        if pool is not None:
            for _ in range(max(1, pool.available)):
                candidate = pool.allocate()
                try:
                    ep._bind_now(candidate, rtcp, socket_buffer)
                except OSError:
                    pool.release(candidate)
                    continue
                ep._pool = pool
                break
            else:
                raise PortPoolExhausted(f"no bindable port in {pool.low}-{pool.high}")
        else:
            ep._bind_now(port or 0, rtcp, socket_buffer)
        if inband_dtmf:
            ep.enable_inband_dtmf(True)
        assert ep.attached is not None
        await ep.attached
        return ep

    @classmethod
    def bind(
        cls,
        local_ip: str,
        port: int,
        *,
        rtcp: bool = True,
        latching: bool = False,
        tenant_id: str | None = None,
        rtcp_interval: float = 5.0,
        socket_buffer: int | None = 1 << 18,
    ) -> RtpEndpoint:
        """Bind ``port`` (and ``port + 1`` for RTCP) now, synchronously; raises OSError.

        The sockets join the event loop in the background (``attached``); packets that
        arrive before then wait in the socket, so handlers and bridges set up right
        after ``bind`` see every packet.
        """
        ep = cls(
            asyncio.get_running_loop(),
            local_ip,
            tenant_id=tenant_id,
            latching=latching,
            ssrc=None,
            cname=None,
            rtcp_interval=rtcp_interval,
        )
        ep._bind_now(port, rtcp, socket_buffer)
        return ep

    def _bind_now(self, port: int, rtcp: bool, socket_buffer: int | None) -> None:
        socks = [_udp_socket(self.local_ip, port, socket_buffer)]
        self.port = socks[0].getsockname()[1]
        if rtcp:
            try:
                socks.append(_udp_socket(self.local_ip, self.port + 1 if port else 0, None))
            except OSError:
                socks[0].close()
                raise
            self.rtcp_port = socks[1].getsockname()[1]
        self._socks = socks
        self.attached = self._loop.create_task(self._attach())

    async def _attach(self) -> None:
        socks = self._socks
        proto = _Protocol(self._on_rtp, self)
        try:
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: proto, sock=socks[0]
            )
            self._transport = transport
            self._protocols.append(proto)
            if len(socks) > 1:
                rproto = _Protocol(self._on_rtcp, self)
                rtransport, _ = await self._loop.create_datagram_endpoint(
                    lambda: rproto, sock=socks[1]
                )
                self._rtcp_transport = rtransport
                self._protocols.append(rproto)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        if self.closed:  # closed while attaching
            for attached in (self._transport, self._rtcp_transport):
                if attached is not None:
                    attached.close()
            return
        if self.remote_rtcp is not None and self._rtcp_timer is None:
            self._schedule_rtcp()

    @property
    def local_address(self) -> tuple[str, int]:
        return self.local_ip, self.port

    def close(self) -> None:
        """Stop everything and release the port (idempotent)."""
        if self.closed:
            return
        if self.remote_rtcp is not None and self._rtcp_transport is not None:
            with contextlib.suppress(OSError):
                self._rtcp_transport.sendto(
                    self._rtcp_report() + build_bye([self.ssrc]), self.remote_rtcp
                )
        self.closed = True
        self._tx_ok = False
        for timer in (self._dtmf_timer, self._rtcp_timer):
            if timer is not None:
                timer.cancel()
        self._audio_handlers = self._event_handlers = ()
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        if self.attached is not None and not self.attached.done():
            pass  # _attach finds `closed` set and closes what it attached
        elif self._transport is None:
            for sock in self._socks:  # bound, never attached
                sock.close()
        if self._pool is not None:
            self._pool.release(self.port)
            self._pool = None

    async def aclose(self) -> None:
        """``close()`` and wait until the sockets are released."""
        self.close()
        await asyncio.gather(*(p.closed for p in self._protocols))

    async def __aenter__(self) -> RtpEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- configuration ------------------------------------------------------

    def set_remote(
        self,
        ip: str,
        port: int,
        payload_type: int | None = None,
        codec: str = "PCMU",
        dtmf_pt: int | None = 101,
        *,
        rtcp_port: int | None = None,
    ) -> None:
        """Where to send and what: the negotiated audio PT/codec and RFC 4733 PT."""
        if codec not in g711.CODECS:
            raise MediaError(f"unsupported codec {codec!r}")
        self.codec = codec
        self.payload_type = _STATIC_PT[codec] if payload_type is None else payload_type
        self.dtmf_pt = dtmf_pt
        self.remote = (ip, port)
        self.remote_rtcp = (ip, rtcp_port if rtcp_port is not None else port + 1)
        self._latch_pending = self.latching
        self._update_flags()
        if self._rtcp_transport is not None and self._rtcp_timer is None and not self.closed:
            self._schedule_rtcp()

    def set_direction(self, direction: str) -> None:
        """SDP direction of this endpoint: what *we* do (RFC 3264 section 6.1)."""
        if direction not in DIRECTIONS:
            raise MediaError(f"unknown direction {direction!r}")
        self.direction = direction
        self._update_flags()

    def _update_flags(self) -> None:
        self._tx_ok = (
            not self.closed
            and self.remote is not None
            and self.direction in ("sendrecv", "sendonly")
        )
        self._rx_ok = self.direction in ("sendrecv", "recvonly")

    @property
    def can_send(self) -> bool:
        return self._tx_ok

    def add_audio_handler(self, handler: AudioHandler) -> None:
        self._audio_handlers = (*self._audio_handlers, handler)

    def remove_audio_handler(self, handler: AudioHandler) -> None:
        self._audio_handlers = tuple(h for h in self._audio_handlers if h != handler)

    def add_event_handler(self, handler: AudioHandler) -> None:
        """Raw RFC 4733 packets (payload, seq, ts, marker), e.g. for forwarding."""
        self._event_handlers = (*self._event_handlers, handler)

    def remove_event_handler(self, handler: AudioHandler) -> None:
        self._event_handlers = tuple(h for h in self._event_handlers if h != handler)

    def add_dtmf_listener(self, listener: DtmfCallback) -> None:
        self._dtmf_listeners.append(listener)

    def remove_dtmf_listener(self, listener: DtmfCallback) -> None:
        with contextlib.suppress(ValueError):
            self._dtmf_listeners.remove(listener)

    def enable_inband_dtmf(self, enabled: bool = True) -> None:
        if enabled and self._inband is None:
            self._inband = InbandDtmfDetector(CLOCK_RATE)
            self._inband_handler = self._feed_inband
            self.add_audio_handler(self._inband_handler)
        elif not enabled and self._inband is not None:
            if self._inband_handler is not None:
                self.remove_audio_handler(self._inband_handler)
            self._inband = self._inband_handler = None

    # -- receive path ---------------------------------------------------------

    def _on_rtp(self, data: bytes, addr: Any) -> None:
        if self._latch_pending:
            self._latch(addr)
        elif self.latching and addr != self.remote:
            self.foreign_packets += 1
            return
        if len(data) < 12:
            self.bad_packets += 1
            return
        b0, b1, seq, ts, ssrc = _UNPACK(data)
        if 192 <= b1 <= 223:  # RTCP multiplexed on the RTP port (RFC 5761)
            self._on_rtcp(data, addr)
            return
        pt = b1 & 0x7F
        if b0 == 0x80:
            payload = data[12:]
        else:
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                self.bad_packets += 1
                return
            payload = packet.payload
        now = self._loop.time()
        if ssrc != self.rx_ssrc:
            self.rx_ssrc = ssrc
            self.rx_gen += 1
            self.stats = RtpStats(CLOCK_RATE)
        if not self.stats.update(seq, ts, now, len(payload), jitter=pt != self.dtmf_pt):
            return
        if not self._rx_ok:
            return
        marker = b1 > 0x7F
        if pt == self.payload_type:
            for handler in self._audio_handlers:
                try:
                    handler(payload, seq, ts, marker)
                except Exception:
                    self._handler_failed()
        elif pt == self.dtmf_pt:
            try:
                self._on_event(payload, seq, ts, marker, ssrc, now)
            except Exception:
                self._handler_failed()
        else:
            self.unknown_pt += 1

    def _handler_failed(self) -> None:
        # a consumer's bug must not close the socket (asyncio would) and end the call
        self.handler_errors += 1
        if self.handler_errors <= 3:
            log.exception("media handler failed on %r (tenant %s)", self, self.tenant_id)

    def _latch(self, addr: Any) -> None:
        self._latch_pending = False
        ip, port = addr[0], addr[1]
        if self.remote != (ip, port):
            log.debug(
                "rtp %s:%d latched to %s:%d (tenant %s)",
                self.local_ip,
                self.port,
                ip,
                port,
                self.tenant_id,
            )
        self.remote = (ip, port)
        if self.remote_rtcp is None:
            self.remote_rtcp = (ip, port + 1)
        self._update_flags()
        if self._rtcp_transport is not None and self._rtcp_timer is None and not self.closed:
            self._schedule_rtcp()

    def _on_event(
        self, payload: bytes, seq: int, ts: int, marker: bool, ssrc: int, now: float
    ) -> None:
        self._last_rfc4733 = now
        for handler in self._event_handlers:
            handler(payload, seq, ts, marker)
        pt = self.dtmf_pt if self.dtmf_pt is not None else 0
        digits = self._dtmf_rx.feed(RtpPacket(pt, seq, ts, ssrc, marker, payload), now)
        self._arm_dtmf_timer()
        for digit in digits:
            self._emit_dtmf(digit)

    def _arm_dtmf_timer(self) -> None:
        deadline = self._dtmf_rx.next_deadline()
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        if deadline is not None and not self.closed:
            self._dtmf_timer = self._loop.call_at(deadline, self._dtmf_tick)

    def _dtmf_tick(self) -> None:
        self._dtmf_timer = None
        for digit in self._dtmf_rx.tick(self._loop.time()):
            self._emit_dtmf(digit)
        self._arm_dtmf_timer()

    def _feed_inband(self, payload: bytes, seq: int, ts: int, marker: bool) -> None:
        if self._inband is None:
            return
        now = self._loop.time()
        digits = self._inband.feed(g711.decode(self.codec, payload), now)
        if now - self._last_rfc4733 < _INBAND_SUPPRESS:
            return  # the sender uses RFC 4733; its audio may still carry the tone
        for digit in digits:
            self._emit_dtmf(digit)

    def _emit_dtmf(self, digit: DtmfDigit) -> None:
        log.debug("dtmf %r from %s (tenant %s)", digit.digit, digit.source, self.tenant_id)
        if self.on_dtmf is not None:
            self.on_dtmf(digit)
        for listener in list(self._dtmf_listeners):
            listener(digit)

    # -- send path --------------------------------------------------------------

    def relay(
        self,
        source: object,
        gen: int,
        payload: bytes,
        seq: int,
        ts: int,
        marker: bool,
        payload_type: int,
    ) -> bool:
        """Send a packet of ``source``'s stream with our SSRC/sequence/timestamp."""
        if not self._tx_ok:
            self.suppressed += 1
            return False
        now = self._loop.time()
        if source is not self._src or gen != self._src_gen:
            self._switch_source(source, gen, seq, ts, now)
            marker = True
        out_seq = (seq + self._seq_off) & 0xFFFF
        out_ts = (ts + self._ts_off) & _MASK32
        packet = (
            _PACK(0x80, payload_type | 0x80 if marker else payload_type, out_seq, out_ts, self.ssrc)
            + payload
        )
        try:
            if self._transport is not None:
                self._transport.sendto(packet, self.remote)
            else:  # bound but not attached to the loop yet
                self._socks[0].sendto(packet, self.remote)  # type: ignore[arg-type]
        except OSError:
            self.socket_errors += 1
            return False
        if (out_seq - self._seq) & 0xFFFF < 0x8000:
            self._seq = (out_seq + 1) & 0xFFFF
        self._last_ts = out_ts
        self._last_time = now
        self.sent_packets += 1
        self.sent_octets += len(payload)
        return True

    def _switch_source(self, source: object, gen: int, seq: int, ts: int, now: float) -> None:
        if self._last_time is None:
            out_ts = self._last_ts
        else:
            elapsed = max(1, round((now - self._last_time) * CLOCK_RATE))
            out_ts = (self._last_ts + elapsed) & _MASK32
        self._seq_off = (self._seq - seq) & 0xFFFF
        self._ts_off = (out_ts - ts) & _MASK32
        self._src, self._src_gen = source, gen

    def send_frame(self, payload: bytes, samples: int = FRAME, *, marker: bool = False) -> bool:
        """Send one locally generated audio frame (already encoded)."""
        sent = self.relay(
            self._local,
            self._local_gen,
            payload,
            self._local_seq,
            self._local_ts,
            marker,
            self.payload_type,
        )
        self._local_seq = (self._local_seq + 1) & 0xFFFF
        self._local_ts = (self._local_ts + samples) & _MASK32
        return sent

    def skip_samples(self, samples: int) -> None:
        """Advance the local timestamp without sending (e.g. frames a player dropped)."""
        self._local_ts = (self._local_ts + samples) & _MASK32

    def new_local_stream(self) -> None:
        """Make the next local frame start a new talk spurt (marker, re-timed)."""
        self._local_gen += 1

    def encode(self, samples: Any) -> bytes:
        return g711.encode(self.codec, samples)

    async def send_dtmf(self, digit: str, duration: float = 0.1, *, pause: float = 0.0) -> None:
        """Send one key press as RFC 4733 events (in-band tone without a ``dtmf_pt``)."""
        if self.dtmf_pt is None:
            player = Player(self, dtmf_tone(digit, duration, CLOCK_RATE))
            player.start()
            await player
        else:
            plan = Rfc4733Sender(CLOCK_RATE, frame=PTIME).packets(digit, duration)
            self.new_local_stream()
            start = self._loop.time()
            event_ts = self._local_ts
            self.players += 1  # bridged audio must not interleave with the event
            try:
                for packet in plan:
                    delay = start + packet.offset - self._loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    self.relay(
                        self._local,
                        self._local_gen,
                        packet.payload,
                        self._local_seq,
                        event_ts,
                        packet.marker,
                        self.dtmf_pt,
                    )
                    self._local_seq = (self._local_seq + 1) & 0xFFFF
            finally:
                self.players -= 1
            self._local_ts = (event_ts + round(duration * CLOCK_RATE)) & _MASK32
        if pause > 0:
            await asyncio.sleep(pause)

    def play(self, samples: Any, **kw: Any) -> Player:
        """Start playing int16 8 kHz samples; await the returned player to wait."""
        return Player(self, samples, **kw).start()

    def record(self, path: str | os.PathLike[str]) -> Recorder:
        """Record received audio (mono WAV) until ``recorder.close()``."""
        recorder = Recorder(path, channels=1, clock=self._loop.time)
        recorder.attach(self, 0)
        return recorder

    # -- RTCP -------------------------------------------------------------------

    def _schedule_rtcp(self) -> None:
        interval = self.rtcp_interval * random.uniform(0.5, 1.5)  # RFC 3550 6.3.1
        self._rtcp_timer = self._loop.call_later(interval, self._send_rtcp)

    def _rtcp_report(self) -> bytes:
        blocks = []
        if self.rx_ssrc is not None and self.stats.received:
            lsr, dlsr = 0, 0
            if self._last_sr is not None:
                lsr = self._last_sr[0]
                dlsr = int((self._loop.time() - self._last_sr[1]) * 65536)
            blocks.append(self.stats.report_block(self.rx_ssrc, lsr, dlsr))
        if self.sent_packets:
            report = build_sr(
                self.ssrc,
                ntp=ntp_timestamp(time.time()),
                rtp_timestamp=self._last_ts,
                packet_count=self.sent_packets,
                octet_count=self.sent_octets,
                reports=blocks,
            )
        else:
            report = build_rr(self.ssrc, blocks)
        return report + build_sdes(self.ssrc, self.cname)

    def _send_rtcp(self) -> None:
        self._rtcp_timer = None
        if self.closed:
            return
        if self.remote_rtcp is not None and self._rtcp_transport is not None:
            with contextlib.suppress(OSError):
                self._rtcp_transport.sendto(self._rtcp_report(), self.remote_rtcp)
        self._schedule_rtcp()

    def _on_rtcp(self, data: bytes, addr: Any) -> None:
        try:
            packets = parse_rtcp(data)
        except RtpError:
            self.bad_packets += 1
            return
        now = self._loop.time()
        for packet in packets:
            if isinstance(packet, SenderReport):
                self.remote_sr = packet
                self._last_sr = ((packet.ntp_timestamp >> 16) & _MASK32, now)
            if isinstance(packet, SenderReport | ReceiverReport):
                for block in packet.reports:
                    if block.ssrc == self.ssrc:
                        self.remote_report = block
            elif isinstance(packet, Bye):
                self.remote_bye = True
                if self.on_bye is not None:
                    self.on_bye()
        if self.on_rtcp is not None:
            self.on_rtcp(packets)

    def __repr__(self) -> str:
        return (
            f"<RtpEndpoint {self.local_ip}:{self.port} -> {self.remote} {self.codec}"
            f" {self.direction}{' closed' if self.closed else ''}>"
        )


class Bridge:
    """Relays media both ways between two endpoints (see the module docstring).

    Same codec: payloads are forwarded untouched.  Different laws: payloads
    are converted with the G.711 tables.  RFC 4733 events are forwarded with
    the outgoing leg's event payload type (dropped if it has none) and each
    key press is reported once to ``on_dtmf(leg, digit)``.  ``recorder``
    (a path or a ``Recorder`` with two channels) gets leg ``a``'s received
    audio on the left and leg ``b``'s on the right.
    """

    def __init__(
        self,
        a: RtpEndpoint,
        b: RtpEndpoint,
        *,
        recorder: Recorder | str | os.PathLike[str] | None = None,
        on_dtmf: Callable[[RtpEndpoint, DtmfDigit], None] | None = None,
    ) -> None:
        if a is b:
            raise MediaError("cannot bridge an endpoint to itself")
        if a.tenant_id is not None and b.tenant_id is not None and a.tenant_id != b.tenant_id:
            raise MediaError(f"refusing to bridge tenant {a.tenant_id!r} to {b.tenant_id!r}")
        self.a, self.b = a, b
        self.on_dtmf = on_dtmf
        self.closed = False
        self._a_to_b = _Direction(a, b, self)
        self._b_to_a = _Direction(b, a, self)
        self._handlers: list[tuple[RtpEndpoint, str, Any]] = []
        self._hook(a, "audio", self._a_to_b.audio)
        self._hook(a, "event", self._a_to_b.event)
        self._hook(b, "audio", self._b_to_a.audio)
        self._hook(b, "event", self._b_to_a.event)
        self._hook(a, "dtmf", lambda digit: self._digit(a, digit))
        self._hook(b, "dtmf", lambda digit: self._digit(b, digit))
        self.recorder: Recorder | None
        if recorder is None:
            self.recorder = None
        else:
            if isinstance(recorder, Recorder):
                self.recorder = recorder
            else:
                self.recorder = Recorder(recorder, channels=2, clock=a._loop.time)
            self.recorder.attach(a, 0)
            self.recorder.attach(b, 1)

    def _hook(self, ep: RtpEndpoint, kind: str, fn: Any) -> None:
        if kind == "audio":
            ep.add_audio_handler(fn)
        elif kind == "event":
            ep.add_event_handler(fn)
        else:
            ep.add_dtmf_listener(fn)
        self._handlers.append((ep, kind, fn))

    def _digit(self, leg: RtpEndpoint, digit: DtmfDigit) -> None:
        if self.on_dtmf is not None:
            self.on_dtmf(leg, digit)

    @property
    def relayed(self) -> tuple[int, int]:
        """Packets relayed (a -> b, b -> a)."""
        return self._a_to_b.packets, self._b_to_a.packets

    def close(self) -> None:
        """Stop relaying (the endpoints stay open) and finish the recording."""
        if self.closed:
            return
        self.closed = True
        for ep, kind, fn in self._handlers:
            if kind == "audio":
                ep.remove_audio_handler(fn)
            elif kind == "event":
                ep.remove_event_handler(fn)
            else:
                ep.remove_dtmf_listener(fn)
        self._handlers.clear()
        if self.recorder is not None:
            self.recorder.close()


class _Direction:
    """One direction of a bridge; its bound methods are the per-packet hot path."""

    __slots__ = ("bridge", "dst", "packets", "src")

    def __init__(self, src: RtpEndpoint, dst: RtpEndpoint, bridge: Bridge) -> None:
        self.src, self.dst, self.bridge = src, dst, bridge
        self.packets = 0

    def audio(self, payload: bytes, seq: int, ts: int, marker: bool) -> None:
        dst = self.dst
        if not dst._tx_ok or dst.players:
            dst.suppressed += 1
            return
        src = self.src
        if src.codec != dst.codec:
            payload = payload.translate(_TRANSCODE[src.codec, dst.codec])
        if dst.relay(self, src.rx_gen, payload, seq, ts, marker, dst.payload_type):
            self.packets += 1

    def event(self, payload: bytes, seq: int, ts: int, marker: bool) -> None:
        dst = self.dst
        if dst.dtmf_pt is None or not dst._tx_ok:
            return
        if dst.relay(self, self.src.rx_gen, payload, seq, ts, marker, dst.dtmf_pt):
            self.packets += 1


class Player:
    """Plays int16 8 kHz samples out of an endpoint in 20 ms frames.

    Frames are scheduled at absolute loop times ``t0 + k * 20 ms`` (no drift
    from accumulated sleeps).  If the loop falls behind by up to
    ``max_catch_up`` frames they are sent back to back; beyond that the
    missed frames are skipped (the timestamp still advances).  Await the
    player (or ``player.done``) for completion: True when played to the end,
    False when stopped.

    While a player is active on an endpoint, bridged audio towards that
    endpoint is held back (the prompt, e.g. "this call is recorded", replaces
    the other party for its duration); RFC 4733 events still pass.
    """

    def __init__(
        self,
        endpoint: RtpEndpoint,
        samples: Any,
        *,
        frame_samples: int = FRAME,
        max_catch_up: int = 5,
        loop_forever: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.samples = np.asarray(samples, dtype=np.int16).ravel()
        self.frame_samples = frame_samples
        self.frame_time = frame_samples / CLOCK_RATE
        self.max_catch_up = max_catch_up
        self.loop_forever = loop_forever
        self.frames = max(1, -(-len(self.samples) // frame_samples))
        self.frames_sent = 0
        self.frames_skipped = 0
        self._loop = endpoint._loop
        self.done: asyncio.Future[bool] = self._loop.create_future()
        self._handle: asyncio.TimerHandle | None = None
        self._k = 0
        self._t0 = 0.0
        self._codec: str | None = None  # what ``_payload`` is encoded with
        self._payload = b""

    def start(self) -> Player:
        if self._handle is not None or self.done.done():
            return self
        self.endpoint.players += 1
        self.done.add_done_callback(self._finished)
        self.endpoint.new_local_stream()
        self._t0 = self._loop.time()
        self._tick()
        return self

    def stop(self) -> None:
        """Stop now (barge-in); ``done`` resolves to False."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self.done.done():
            self.done.set_result(False)

    def _finished(self, _: asyncio.Future[bool]) -> None:
        self.endpoint.players -= 1

    def __await__(self) -> Any:
        return asyncio.shield(self.done).__await__()

    def _frame(self, k: int) -> bytes:
        """Frame ``k``, encoded: the whole prompt is encoded once (one vectorised pass
        instead of one per frame), again only if the leg's codec changes."""
        codec = self.endpoint.codec
        if codec != self._codec:
            padded = np.zeros(self.frames * self.frame_samples, dtype=np.int16)
            padded[: len(self.samples)] = self.samples
            self._payload, self._codec = self.endpoint.encode(padded), codec
        n = self.frame_samples  # G.711: one byte per sample
        k %= self.frames
        return self._payload[k * n : (k + 1) * n]

    def _tick(self) -> None:
        self._handle = None
        if self.done.done():
            return
        ep = self.endpoint
        if ep.closed:
            self.stop()
            return
        now = self._loop.time()
        due = int((now - self._t0) / self.frame_time + 1e-6)  # frames whose time has come
        if due - self._k > self.max_catch_up:
            skip = due - self._k - self.max_catch_up
            if not self.loop_forever:
                skip = min(skip, self.frames - self._k)
            ep.skip_samples(skip * self.frame_samples)
            self._k += skip
            self.frames_skipped += skip
        while self._k <= due and (self.loop_forever or self._k < self.frames):
            ep.send_frame(self._frame(self._k), self.frame_samples)
            self._k += 1
            self.frames_sent += 1
        if not self.loop_forever and self._k >= self.frames:
            self.done.set_result(True)
            return
        self._handle = self._loop.call_at(self._t0 + self._k * self.frame_time, self._tick)


class Echo:
    """Sends every received audio frame back to its sender (echo test)."""

    def __init__(self, endpoint: RtpEndpoint) -> None:
        self.endpoint = endpoint
        self.packets = 0
        endpoint.add_audio_handler(self._audio)

    def _audio(self, payload: bytes, seq: int, ts: int, marker: bool) -> None:
        ep = self.endpoint
        if ep.relay(self, ep.rx_gen, payload, seq, ts, marker, ep.payload_type):
            self.packets += 1

    def close(self) -> None:
        self.endpoint.remove_audio_handler(self._audio)


class Recorder:
    """Writes received audio to a 16-bit WAV, one channel per attached stream.

    Each stream is placed on a common timeline by its RTP timestamps: the
    first packet (and the first after an SSRC change or a timestamp jump of
    more than ``max_jump`` seconds from the wall clock) is anchored at the
    wall-clock position, later packets at ``anchor + (ts - ts0)``.  Gaps are
    silence.  Audio is flushed to disk ``window`` seconds behind the wall
    clock, so packets reordered within that window still land in place and
    memory stays bounded; later ones are dropped (``late``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        channels: int = 1,
        *,
        clock: Callable[[], float] | None = None,
        rate: int = CLOCK_RATE,
        window: float = 0.5,
        max_jump: float = 2.0,
    ) -> None:
        self.path = Path(path)
        self.channels = channels
        self.rate = rate
        self._clock = clock or time.monotonic
        self._start = self._clock()
        self._window = int(window * rate)
        self._max_jump = int(max_jump * rate)
        self._chunks: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(channels)]
        self._anchor: list[tuple[int, int, int] | None] = [None] * channels  # gen, ts0, pos0
        self._written = 0
        self._end = 0
        self.late = 0
        self.closed = False
        self._attached: list[tuple[RtpEndpoint, AudioHandler]] = []
        self._wave = wave.open(str(self.path), "wb")
        self._wave.setnchannels(channels)
        self._wave.setsampwidth(2)
        self._wave.setframerate(rate)

    def attach(self, endpoint: RtpEndpoint, channel: int) -> None:
        def handler(payload: bytes, seq: int, ts: int, marker: bool) -> None:
            self.feed(channel, g711.decode(endpoint.codec, payload), ts, endpoint.rx_gen)

        endpoint.add_audio_handler(handler)
        self._attached.append((endpoint, handler))

    def _now_pos(self) -> int:
        return int((self._clock() - self._start) * self.rate)

    def feed(self, channel: int, samples: np.ndarray, timestamp: int, gen: int = 0) -> None:
        if self.closed:
            return
        now_pos = self._now_pos()
        anchor = self._anchor[channel]
        pos = 0
        if anchor is not None and anchor[0] == gen:
            delta = ((timestamp - anchor[1] + 0x80000000) & _MASK32) - 0x80000000
            pos = anchor[2] + delta
            if abs(pos - now_pos) > self._max_jump:
                anchor = None
        else:
            anchor = None
        if anchor is None:
            pos = max(now_pos - len(samples), self._written)
            self._anchor[channel] = (gen, timestamp, pos)
        if pos + len(samples) <= self._written:
            self.late += 1
            return
        self._chunks[channel].append((pos, samples))
        self._end = max(self._end, pos + len(samples))
        if now_pos - self._written > 2 * self._window:
            self._flush(now_pos - self._window)

    def _flush(self, upto: int) -> None:
        if upto <= self._written:
            return
        n = upto - self._written
        block = np.zeros((n, self.channels), dtype=np.int16)
        for ch, chunks in enumerate(self._chunks):
            keep = []
            for pos, samples in chunks:
                lo = max(pos, self._written)
                hi = min(pos + len(samples), upto)
                if lo < hi:
                    block[lo - self._written : hi - self._written, ch] = samples[
                        lo - pos : hi - pos
                    ]
                if pos + len(samples) > upto:
                    keep.append((pos, samples))
            self._chunks[ch] = keep
        self._wave.writeframes(block.astype("<i2").tobytes())
        self._written = upto

    def close(self) -> None:
        if self.closed:
            return
        for endpoint, handler in self._attached:
            endpoint.remove_audio_handler(handler)
        self._attached.clear()
        self._flush(self._end)
        self.closed = True
        self._wave.close()
