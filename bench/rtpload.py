"""RTP load for the benchmark and the load test: G.711 streams, an echo, per-call counters.

One process plays both media ends of many calls (``python -m bench.rtpload ...``):

- the *caller* side (``--uac``, one UDP socket, e.g. ``127.0.0.2:P``, the address every
  caller SDP advertises): when SIPp's UAC announces an answered call (a datagram on
  ``--ctl`` carrying the Call-ID and the far media address taken from the 200 OK SDP),
  it sends a 20 ms PCMA packet every 20 ms to that address for ``--seconds`` seconds;
- the *callee* side (``--uas``, one socket, the address every callee SDP advertises)
  echoes each packet back to where it came from (the relay's callee-side port).

So each call carries two-way G.711 at 50 packets/s in each direction through the relay
under test (the node, or Kamailio + rtpengine).  Every payload carries a tag (magic,
call index, sequence number, send time, echo time; the rest is a tone), so both
directions are counted per call, duplicates are told apart, and the one-way latency of
each direction is measured on this process's single monotonic clock.  Both systems pass
same-codec payloads through untouched.

Bounded: sends only to addresses announced on the control socket, which must be in
127.0.0.0/8, for at most ``--seconds`` per call and ``--max-calls`` calls.

On SIGTERM/SIGINT it writes its counters as JSON to ``--result`` and exits.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time
from array import array
from pathlib import Path
from typing import Any

PTIME = 0.02
SAMPLES = 160
PAYLOAD_TYPE = 8  # PCMA
MAGIC = b"BLRT"
_HDR = struct.Struct("!BBHII")
_TAG = struct.Struct("!4sIId")  # magic, call index, sequence, send time
_ECHO = struct.Struct("!d")  # echo time, right after the tag
_TAG_AT = 12
_ECHO_AT = _TAG_AT + _TAG.size
PAYLOAD_LEN = 160
_BATCH = 256  # datagrams drained from one socket before the send schedule is looked at


def _tone_filler(n: int) -> bytes:
    """A-law bytes of a 440 Hz tone (so recordings of these calls are not silent)."""
    out = bytearray()
    for i in range(n):
        s = int(8000 * math.sin(2 * math.pi * 440 * i / 8000))
        out.append(_alaw(s))
    return bytes(out)


def _alaw(sample: int) -> int:
    sign = 0x80 if sample >= 0 else 0
    if sample < 0:
        sample = -sample - 1
    sample = min(sample, 32635)
    if sample >= 256:
        exp = 7
        mask = 0x4000
        while not sample & mask and exp > 1:
            exp -= 1
            mask >>= 1
        mant = (sample >> (exp + 3)) & 0x0F
        val = (exp << 4) | mant
    else:
        val = sample >> 4
    return (val | sign) ^ 0x55


class _Call:
    __slots__ = ("ab", "ab_dup", "ba", "ba_dup", "call_id", "idx", "n", "remote", "sent",
                 "ssrc", "t0", "ts0")

    def __init__(self, idx: int, call_id: str, remote: tuple[str, int], n: int, t0: float):
        self.idx = idx
        self.call_id = call_id
        self.remote = remote
        self.n = n
        self.t0 = t0
        self.sent = 0
        self.ssrc = random.getrandbits(32)
        self.ts0 = random.getrandbits(32)
        self.ab = bytearray(n)  # received at the callee side, by sequence number
        self.ba = bytearray(n)  # received back at the caller side
        self.ab_dup = 0
        self.ba_dup = 0


class _Stop(Exception):
    pass


def _bind(addr: tuple[str, int]) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.bind(addr)
    s.setblocking(False)
    return s


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _percentiles(samples: array, qs: tuple[float, ...] = (50, 90, 99, 100)) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)
    out = {}
    for q in qs:
        k = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
        out["max" if q == 100 else f"p{q:g}"] = round(ordered[k] * 1000, 3)
    return out


class RtpLoad:
    def __init__(self, uac: tuple[str, int], uas: tuple[str, int], ctl: tuple[str, int],
                 seconds: float, max_calls: int) -> None:
        for host in (uac[0], uas[0], ctl[0]):
            if not host.startswith("127."):
                raise SystemExit(f"rtpload: only loopback addresses, not {host}")
        self.seconds = seconds
        self.max_calls = max_calls
        self.per_call = max(0, round(seconds / PTIME))  # 0: signalling only
        self.uac = _bind(uac)
        self.uas = _bind(uas)
        # RTCP ports (RTP + 1): relays send reports there; bind them so no ICMP comes back
        self.uac_rtcp = _bind((uac[0], uac[1] + 1))
        self.uas_rtcp = _bind((uas[0], uas[1] + 1))
        self.ctl = _bind(ctl)
        self.sel = selectors.DefaultSelector()
        for sock, fn in ((self.uac, self._on_uac), (self.uas, self._on_uas),
                         (self.uac_rtcp, self._on_rtcp), (self.uas_rtcp, self._on_rtcp),
                         (self.ctl, self._on_ctl)):
            self.sel.register(sock, selectors.EVENT_READ, fn)
        self.calls: list[_Call] = []
        self.by_call_id: dict[str, _Call] = {}
        self.heap: list[tuple[float, int]] = []
        self.filler = _tone_filler(PAYLOAD_LEN - _TAG.size - _ECHO.size)
        self.lat_ab = array("d")
        self.lat_ba = array("d")
        self.late = array("d")  # how late each send was
        self.foreign = 0
        self.rtcp = 0
        self.send_errors = 0
        self.echo_errors = 0
        self.rejected = 0
        self.started = time.monotonic()

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        clock = time.monotonic
        heap = self.heap
        while True:
            now = clock()
            if heap and heap[0][0] <= now:
                self._send_due(now)
                now = clock()
            timeout = max(heap[0][0] - now, 0.001) if heap else 0.2
            for key, _ in self.sel.select(timeout):
                key.data(key.fileobj)

    def _send_due(self, now: float) -> None:
        heap, calls, sendto = self.heap, self.calls, self.uac.sendto
        pack_hdr, pack_tag = _HDR.pack, _TAG.pack
        tail = bytes(_ECHO.size) + self.filler
        late = self.late
        while heap and heap[0][0] <= now:
            due, idx = heapq.heappop(heap)
            c = calls[idx]
            k = c.sent
            late.append(now - due)
            packet = (pack_hdr(0x80, PAYLOAD_TYPE | (0x80 if k == 0 else 0), (c.ssrc + k) & 0xFFFF,
                               (c.ts0 + k * SAMPLES) & 0xFFFFFFFF, c.ssrc)
                      + pack_tag(MAGIC, idx, k, time.monotonic()) + tail)
            try:
                sendto(packet, c.remote)
            except OSError:
                self.send_errors += 1
            c.sent = k + 1
            if c.sent < c.n:
                heapq.heappush(heap, (c.t0 + c.sent * PTIME, idx))

    # ------------------------------------------------------------------ receive
    def _on_uas(self, sock: socket.socket) -> None:
        """Callee side: count, stamp the echo time, send back to the sender."""
        clock, calls, unpack, pack_echo = time.monotonic, self.calls, _TAG.unpack_from, _ECHO.pack
        recvfrom, sendto, lat = sock.recvfrom, sock.sendto, self.lat_ab
        ncalls = len(calls)
        for _ in range(_BATCH):
            try:
                data, addr = recvfrom(2048)
            except BlockingIOError:
                return
            now = clock()
            if len(data) < _ECHO_AT + _ECHO.size:
                self.foreign += 1
                continue
            magic, idx, k, sent_at = unpack(data, _TAG_AT)
            if magic != MAGIC or idx >= ncalls or k >= calls[idx].n:
                self.foreign += 1
                continue
            c = calls[idx]
            if c.ab[k]:
                c.ab_dup += 1
            else:
                c.ab[k] = 1
                lat.append(now - sent_at)
            try:
                sendto(data[:_ECHO_AT] + pack_echo(now) + data[_ECHO_AT + _ECHO.size:], addr)
            except OSError:
                self.echo_errors += 1

    def _on_uac(self, sock: socket.socket) -> None:
        """Caller side: count what came back through the relay."""
        clock, calls, unpack, unpack_echo = (time.monotonic, self.calls, _TAG.unpack_from,
                                             _ECHO.unpack_from)
        recv, lat = sock.recv, self.lat_ba
        ncalls = len(calls)
        for _ in range(_BATCH):
            try:
                data = recv(2048)
            except BlockingIOError:
                return
            now = clock()
            if len(data) < _ECHO_AT + _ECHO.size:
                self.foreign += 1
                continue
            magic, idx, k, _sent_at = unpack(data, _TAG_AT)
            if magic != MAGIC or idx >= ncalls or k >= calls[idx].n:
                self.foreign += 1
                continue
            c = calls[idx]
            if c.ba[k]:
                c.ba_dup += 1
            else:
                c.ba[k] = 1
                lat.append(now - unpack_echo(data, _ECHO_AT)[0])

    def _on_rtcp(self, sock: socket.socket) -> None:
        for _ in range(_BATCH):
            try:
                sock.recv(2048)
            except BlockingIOError:
                return
            self.rtcp += 1

    def _on_ctl(self, sock: socket.socket) -> None:
        """``MEDIA`` notices from SIPp: ``Call-ID: x`` and ``X-Media: ip port`` lines."""
        for _ in range(_BATCH):
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            fields = {}
            for line in data.decode(errors="replace").splitlines():
                name, sep, value = line.partition(":")
                if sep:
                    fields[name.strip().lower()] = value.strip()
            call_id = fields.get("call-id", "")
            media = fields.get("x-media", "").split()
            if not call_id or len(media) != 2 or call_id in self.by_call_id:
                self.rejected += 1
                continue
            ip, port = media[0], int(media[1])
            if not ip.startswith("127.") or len(self.calls) >= self.max_calls:
                self.rejected += 1
                continue
            now = time.monotonic()
            c = _Call(len(self.calls), call_id, (ip, port), self.per_call, now)
            self.calls.append(c)
            self.by_call_id[call_id] = c
            if c.n:
                heapq.heappush(self.heap, (now, c.idx))

    # ------------------------------------------------------------------ results
    def results(self) -> dict[str, Any]:
        sent = sum(c.sent for c in self.calls)
        ab = sum(c.ab.count(1) for c in self.calls)
        ba = sum(c.ba.count(1) for c in self.calls)
        late = self.late
        usage = os.times()
        return {
            "calls": len(self.calls),
            "packets_per_call": self.per_call,
            "sent": sent,
            "received_ab": ab,
            "received_ba": ba,
            "duplicates_ab": sum(c.ab_dup for c in self.calls),
            "duplicates_ba": sum(c.ba_dup for c in self.calls),
            "loss_ab_pct": round(100 * (sent - ab) / sent, 4) if sent else None,
            "loss_ba_pct": round(100 * (ab - ba) / ab, 4) if ab else None,
            "loss_pct": round(100 * (2 * sent - ab - ba) / (2 * sent), 4) if sent else None,
            "latency_ab_ms": _percentiles(self.lat_ab),
            "latency_ba_ms": _percentiles(self.lat_ba),
            "send_late_ms": _percentiles(late),
            "sends_late_over_10ms": sum(1 for x in late if x > 0.010),
            "foreign": self.foreign,
            "rtcp": self.rtcp,
            "send_errors": self.send_errors,
            "echo_errors": self.echo_errors,
            "rejected_notices": self.rejected,
            "cpu_s": round(usage.user + usage.system, 3),
            "wall_s": round(time.monotonic() - self.started, 3),
            "lost_where": _lost_where(self.calls),
            "per_call": [
                {"call_id": c.call_id, "sent": c.sent, "ab": c.ab.count(1), "ba": c.ba.count(1),
                 "lost_ab": _missing(c.ab, c.sent)[:20], "lost_ba": _missing(c.ba, c.sent)[:20]}
                for c in self.calls
            ],
        }


def _missing(marks: bytearray, sent: int) -> list[int]:
    return [k for k in range(sent) if not marks[k]]


def _lost_where(calls: list[_Call]) -> dict[str, int]:
    """Where in the calls' streams the lost packets were (first/last 10 packets, middle)."""
    out = {"first10": 0, "middle": 0, "last10": 0}
    for c in calls:
        for marks in (c.ab, c.ba):
            for k in _missing(marks, c.sent):
                out["first10" if k < 10 else "last10" if k >= c.sent - 10 else "middle"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--uac", required=True, help="caller-side media address ip:port")
    p.add_argument("--uas", required=True, help="callee-side media address ip:port")
    p.add_argument("--ctl", required=True, help="control address ip:port (SIPp notices)")
    p.add_argument("--seconds", type=float, required=True, help="media per call")
    p.add_argument("--max-calls", type=int, default=2000)
    p.add_argument("--result", type=Path, required=True)
    args = p.parse_args(argv)
    load = RtpLoad(_hostport(args.uac), _hostport(args.uas), _hostport(args.ctl),
                   args.seconds, args.max_calls)

    def stop(signum: int, frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"rtpload ready uac={args.uac} uas={args.uas} ctl={args.ctl}", flush=True)
    try:
        load.run()
    except _Stop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    results = load.results()
    tmp = args.result.with_suffix(".tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(args.result)
    print(f"rtpload done: {results['calls']} calls, {results['sent']} packets sent", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
