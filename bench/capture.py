"""SIP timing on the wire: a ``dumpcap`` capture on loopback, decoded by ``tshark``.

Used for the post-dial delay at a fixed setup rate: for every call (paired on every hop
by the caller's unique From user) the time of the INVITE and of the 180 on each hop:

- ``pdd``: INVITE leaves the caller -> 180 reaches the caller (what the caller waits);
- ``invite_added``: INVITE leaves the caller -> INVITE reaches the callee (the system's
  share of the INVITE path), ``ringing_added``: 180 leaves the callee -> 180 reaches the
  caller; ``added`` = both, i.e. the PDD minus the callee's own answer time;
- node only: ``fs_invite``: INVITE reaches the feature server -> its B-leg INVITE leaves
  it (the B2BUA's own processing), ``fs_ringing`` likewise for the 180.

Needs root (or capture rights) and Wireshark's ``dumpcap``/``tshark``; only loopback.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.harness.procs import ManagedProcess


def available() -> bool:
    return bool(shutil.which("dumpcap") and shutil.which("tshark"))


class Capture:
    def __init__(self, workdir: Path, ports: dict[str, int], name: str = "sip") -> None:
        self.workdir = workdir
        self.ports = ports
        self.path = workdir / f"{name}.pcapng"
        self.proc: ManagedProcess | None = None

    def start(self) -> Capture:
        self.path.unlink(missing_ok=True)
        flt = "udp and (" + " or ".join(f"port {p}" for p in sorted(set(self.ports.values()))) + ")"
        self.proc = ManagedProcess("dumpcap", ["dumpcap", "-i", "lo", "-f", flt, "-w",
                                               str(self.path), "-B", "64"],
                                   self.workdir).start()
        self.proc.wait_for_log(r"Capturing on", timeout=15)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        finally:
            self.proc.stop()

    def events(self) -> list[tuple[float, int, int, str, str, str]]:
        """(time, src port, dst port, method or status, CSeq method, From user) per message."""
        argv = ["tshark", "-n", "-r", str(self.path)]
        for p in sorted(set(self.ports.values())):
            argv += ["-d", f"udp.port=={p},sip"]
        argv += ["-Y", "sip", "-T", "fields", "-E", "separator=;",
                 "-e", "frame.time_epoch", "-e", "udp.srcport", "-e", "udp.dstport",
                 "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.CSeq.method",
                 "-e", "sip.from.user"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                             check=True).stdout
        events = []
        for line in out.splitlines():
            f = line.split(";")
            if len(f) < 7 or not f[0]:
                continue
            what = f[3] or f[4]
            events.append((float(f[0]), int(f[1]), int(f[2]), what, f[5], f[6]))
        return events

    def timings(self) -> dict[str, list[float]]:
        """Per-call delays in ms (see the module docstring), each a list over calls."""
        ports = self.ports
        first: dict[tuple[str, str], float] = {}
        for t, src, dst, what, cseq, user in self.events():
            if cseq != "INVITE" or what not in ("INVITE", "180") or not user:
                continue
            hop = _hop(ports, src, dst)
            if hop is None:
                continue
            key = (user, f"{what}@{hop}")
            if key not in first:
                first[key] = t
        users = sorted({u for u, _ in first})
        out: dict[str, list[float]] = {k: [] for k in (
            "pdd", "invite_added", "ringing_added", "added", "fs_invite", "fs_ringing")}

        def d(user: str, a: str, b: str) -> float | None:
            ta, tb = first.get((user, a)), first.get((user, b))
            return None if ta is None or tb is None else (tb - ta) * 1000

        for u in users:
            pdd = d(u, "INVITE@caller>", "180@>caller")
            inv = d(u, "INVITE@caller>", "INVITE@>callee")
            ring = d(u, "180@callee>", "180@>caller")
            for k, v in (("pdd", pdd), ("invite_added", inv), ("ringing_added", ring),
                         ("fs_invite", d(u, "INVITE@>fs", "INVITE@fs>")),
                         ("fs_ringing", d(u, "180@>fs", "180@fs>"))):
                if v is not None:
                    out[k].append(v)
            if inv is not None and ring is not None:
                out["added"].append(inv + ring)
        return out


def _hop(ports: dict[str, int], src: int, dst: int) -> str | None:
    """'caller>' (sent by the caller), '>callee' (received by the callee), '>fs', 'fs>'..."""
    for role in ("caller", "callee", "fs"):
        if ports.get(role) == src:
            return f"{role}>"
    for role in ("caller", "callee", "fs"):
        if ports.get(role) == dst:
            return f">{role}"
    return None


def percentiles(values: Iterable[float], qs: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    out = {}
    for q in qs:
        k = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
        out[f"p{q:g}"] = round(ordered[k], 2)
    out["max"] = round(ordered[-1], 2)
    out["n"] = len(ordered)
    return out
