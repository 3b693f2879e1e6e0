"""Micro benchmark: CPU cost of relaying bridged G.711 calls with ``appliance.media.Bridge``.

Per call the measured process holds two RtpEndpoints (the node's legs) and one Bridge
between them.  A separate generator process (this file with ``--generator``) plays both
phones of every call: 50 packets/s per direction per call, 20 ms PCMU payloads, and counts
what comes back.  Only the bridge process is measured (``time.process_time`` and
``resource.getrusage``), over a steady window after a warm-up, so the generator's cost is
not charged to the relay.

    python3 bench/media_relay.py --calls 50 100 200 --seconds 5 [--loop asyncio uvloop]
    python3 bench/media_relay.py ... --transcode     # legs in PCMU <-> PCMA
    python3 bench/media_relay.py ... --bare          # floor: raw datagram forwarding
    python3 bench/media_relay.py ... --json out.json

Printed per run: packets relayed per second, CPU seconds per call-second, CPU load, loss
seen by the generator, and calls per core (1 / CPU per call-second).  Loopback only; it is a
micro benchmark (the baseline comparison with rtpengine lives in the end-to-end bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HEADER = struct.Struct("!BBHII")
PTIME = 0.02


# --------------------------------------------------------------------------- generator


def generator() -> None:
    """Phones for N calls: reads node ports on stdin, sends 50 pps per socket, counts replies."""
    spec = json.loads(sys.stdin.readline())
    ports: list[int] = spec["ports"]  # node leg ports, two per call
    pt = spec["pt"]
    socks = []
    sel = selectors.DefaultSelector()
    for i, port in enumerate(ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, i)
    print(json.dumps({"ports": [s.getsockname()[1] for s in socks]}), flush=True)
    go = json.loads(sys.stdin.readline())
    duration = go["seconds"]
    payloads = [bytes([0xFF - (i % 50)]) * 160 for i in range(len(socks))]
    ssrcs = [0x10000 + i for i in range(len(socks))]
    sent = received = 0
    t0 = time.monotonic()
    k = 0
    while True:
        due = t0 + k * PTIME
        if due > t0 + duration:
            break
        # drain replies until the next tick
        while True:
            timeout = due - time.monotonic()
            if timeout <= 0:
                break
            for key, _ in sel.select(timeout):
                s = key.fileobj
                try:
                    while True:
                        s.recv(2048)  # type: ignore[union-attr]
                        received += 1
                except (BlockingIOError, ConnectionRefusedError):
                    pass
        header = HEADER.pack
        for i, s in enumerate(socks):
            try:
                s.send(header(0x80, pt, k & 0xFFFF, (k * 160) & 0xFFFFFFFF, ssrcs[i]) + payloads[i])
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
        k += 1
    # collect the tail
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        for key, _ in sel.select(0.05):
            try:
                while True:
                    key.fileobj.recv(2048)  # type: ignore[union-attr]
                    received += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
    print(json.dumps({"sent": sent, "received": received}), flush=True)
    for s in socks:
        s.close()


# --------------------------------------------------------------------------- relay side


def _bare_forward(src: Any, dst: Any, counter: list[int]) -> None:
    """Floor of this architecture: forward datagrams as they are, no RTP work at all."""
    transport = dst._transport

    def on_datagram(data: bytes, addr: Any) -> None:
        transport.sendto(data, dst.remote)
        counter[0] += 1

    src._protocols[0].on_datagram = on_datagram


async def relay_run(
    calls: int, seconds: float, warmup: float, transcode: bool, bare: bool = False
) -> dict[str, Any]:
    from appliance.media.endpoint import Bridge, RtpEndpoint

    legs: list[RtpEndpoint] = []
    bridges: list[Bridge] = []
    bare_count = [0]
    for _ in range(calls):
        a = await RtpEndpoint.open("127.0.0.1", rtcp=False)
        b = await RtpEndpoint.open("127.0.0.1", rtcp=False)
        legs += [a, b]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--generator"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps({"ports": [ep.port for ep in legs], "pt": 0}) + "\n")
        proc.stdin.flush()
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, proc.stdout.readline)
        phone_ports = json.loads(line)["ports"]
        for i in range(calls):
            a, b = legs[2 * i], legs[2 * i + 1]
            a.set_remote("127.0.0.1", phone_ports[2 * i], codec="PCMU", dtmf_pt=101)
            codec_b = "PCMA" if transcode else "PCMU"
            b.set_remote(
                "127.0.0.1", phone_ports[2 * i + 1], payload_type=0, codec=codec_b, dtmf_pt=101
            )
            if bare:
                _bare_forward(a, b, bare_count)
                _bare_forward(b, a, bare_count)
            else:
                bridges.append(Bridge(a, b))
        total = warmup + seconds + 0.3
        proc.stdin.write(json.dumps({"seconds": total}) + "\n")
        proc.stdin.flush()
        await asyncio.sleep(warmup)

        def relayed() -> int:
            return sum(sum(br.relayed) for br in bridges) + bare_count[0]

        p0, cpu0, ru0, w0 = (
            relayed(),
            time.process_time(),
            resource.getrusage(resource.RUSAGE_SELF),
            loop.time(),
        )
        await asyncio.sleep(seconds)
        p1, cpu1, ru1, w1 = (
            relayed(),
            time.process_time(),
            resource.getrusage(resource.RUSAGE_SELF),
            loop.time(),
        )
        line = await loop.run_in_executor(None, proc.stdout.readline)
        gen = json.loads(line)
    finally:
        proc.wait(timeout=30)
        for br in bridges:
            br.close()
        for ep in legs:
            ep.close()
        await asyncio.sleep(0)
    wall = w1 - w0
    cpu = cpu1 - cpu0
    ru_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    per_call_second = cpu / (calls * wall)
    return {
        "calls": calls,
        "mode": "bare" if bare else ("transcode" if transcode else "bridge"),
        "wall_s": round(wall, 3),
        "relayed_pps": round((p1 - p0) / wall),
        "expected_pps": calls * 100,
        "cpu_s": round(cpu, 3),
        "rusage_user_s": round(ru1.ru_utime - ru0.ru_utime, 3),
        "rusage_sys_s": round(ru1.ru_stime - ru0.ru_stime, 3),
        "rusage_cpu_s": round(ru_cpu, 3),
        "cpu_load": round(cpu / wall, 3),
        "cpu_ms_per_call_second": round(per_call_second * 1000, 4),
        "us_per_packet": round(cpu / max(p1 - p0, 1) * 1e6, 2),
        "calls_per_core": round(1 / per_call_second) if per_call_second else None,
        "generator_sent": gen["sent"],
        "generator_received": gen["received"],
        "loss_pct": round(100 * (1 - gen["received"] / max(gen["sent"], 1)), 2),
    }


def run(
    loop_name: str, calls: int, seconds: float, warmup: float, transcode: bool, bare: bool
) -> dict:
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(relay_run(calls, seconds, warmup, transcode, bare))
    result["loop"] = loop_name
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--calls", type=int, nargs="+", default=[10, 50, 100, 200])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument(
        "--loop", nargs="+", default=["asyncio", "uvloop"], choices=["asyncio", "uvloop"]
    )
    ap.add_argument("--transcode", action="store_true", help="legs in PCMU and PCMA")
    ap.add_argument(
        "--bare",
        action="store_true",
        help="baseline: forward raw datagrams between the legs' sockets (no Bridge)",
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.generator:
        generator()
        return
    loops = []
    for name in args.loop:
        if name == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                print("uvloop not installed: skipped (pip install uvloop)", file=sys.stderr)
                continue
        loops.append(name)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, pid {os.getpid()}")
    header = (
        f"{'loop':8} {'calls':>5} {'relayed/s':>9} {'expect/s':>8} {'cpu load':>8} "
        f"{'ms CPU/call-s':>13} {'us/pkt':>7} {'calls/core':>10} {'loss %':>7}"
    )
    print(header)
    results = []
    for name in loops:
        for calls in args.calls:
            r = run(name, calls, args.seconds, args.warmup, args.transcode, args.bare)
            results.append(r)
            print(
                f"{name:8} {calls:5d} {r['relayed_pps']:9d} {r['expected_pps']:8d} "
                f"{r['cpu_load']:8.3f} {r['cpu_ms_per_call_second']:13.4f} "
                f"{r['us_per_packet']:7.2f} {r['calls_per_core']:10d} {r['loss_pct']:7.2f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
