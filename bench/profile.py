"""Where the node's Python process spends its time: a py-spy sample, summarised.

Optional (``pip install py-spy`` into .venv; needs ptrace rights, e.g. root).  Samples
every thread including idle ones at ``rate`` Hz without pausing the process, then
reports the share of samples per function: *self* (the function was on top of the
stack) and *inclusive* (anywhere on the stack), over all samples, so the idle share
(``select``/``epoll`` waits) is visible too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def pyspy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 250) -> dict[str, Any]:
    exe = pyspy()
    if exe is None:
        return {"error": "py-spy not installed (.venv/bin/pip install py-spy)"}
    argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
            "--rate", str(rate), "--format", "raw", "--output", str(out), "--idle",
            "--nonblocking"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0 or not out.exists():
        return {"error": f"py-spy failed ({proc.returncode}): {proc.stderr[-500:]}"}
    return summarise(out.read_text())


def _frame_name(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:]) if path else "?"
    return f"{name} ({short})"


# Areas of the node's work, by the first matching function from the top of the stack
# (so the SIP stack inside a datagram callback counts as SIP, not as "receive").
_AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("idle: waiting in epoll", ("EpollSelector.select",)),
    # uvloop runs the loop in C: with only Runner.run on the stack the thread is either
    # idle in epoll_wait or in libuv/uvloop C code (recvmsg, dispatch) between callbacks
    ("uvloop C code or idle (only Runner.run on the stack)", ("@uvloop-top",)),
    ("RTP stats (RtpStats.update)", ("RtpStats.update",)),
    ("RTP send: asyncio transport.sendto + syscall", ("_SelectorDatagramTransport.sendto",)),
    ("RTP relay: relay(), _Direction.audio (+ the sendto syscall under uvloop, C)", (
        "RtpEndpoint.relay", "_Direction.audio", "_Direction.event", "Echo._audio")),
    ("RTP receive code (_on_rtp, datagram_received)", ("RtpEndpoint._on_rtp",
                                                       "_Protocol.datagram_received")),
    ("RTCP", ("RtpEndpoint._send_rtcp", "RtpEndpoint._on_rtcp")),
    ("CDR write (sqlite)", ("CdrStore.write",)),
    ("call trace + logging", ("Node._write_trace", "Logger.info", "Logger._log")),
    ("socket open/close (create_datagram_endpoint, close)", (
        "BaseEventLoop.create_datagram_endpoint", "RtpEndpoint.open", "RtpEndpoint.close",
        "_SelectorTransport._call_connection_lost", "_SelectorTransport.close")),
    ("SIP parse (parse_message)", ("parse_message",)),
    ("SIP transactions", ("TransactionLayer.",)),
    ("B2BUA call logic", ("B2bua.",)),
    ("media commands (MediaPlane)", ("MediaPlane.",)),
    ("node SIP plumbing (_flush, timers)", ("Node.",)),
    ("RTP/socket receive: asyncio _read_ready + recvfrom", (
        "_SelectorDatagramTransport._read_ready",)),
    ("event loop overhead (_run_once, handles, timers)", ("BaseEventLoop._run_once",)),
)


def _area(frames: list[str]) -> str:
    if frames[-1].startswith("Runner.run"):
        return _AREAS[1][0]
    for name, keys in _AREAS:
        for frame in reversed(frames):
            if any(frame.startswith(k) for k in keys):
                return name
    return "other"


def summarise(raw: str, top: int = 20) -> dict[str, Any]:
    """Shares of the event-loop (main) thread's samples; other threads are left out."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    idle = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not any(f.startswith(("BaseEventLoop.run_forever", "Runner.run")) for f in frames):
            continue  # not the event loop thread (e.g. asyncio's child watcher)
        total += count
        leaf = frames[-1]
        self_counts[leaf] += count
        area = _area(frames)
        areas[area] += count
        if area.startswith("idle"):
            idle += count
        for name in set(frames):
            incl_counts[name] += count
    if not total:
        return {"error": "no samples of the event loop thread"}

    def pct(c: int) -> float:
        return round(100.0 * c / total, 1)

    skip = ("_run_module_as_main", "_run_code", "<module>", "main (", "run (", "Runner.run",
            "Runner.run", "BaseEventLoop._run_once",
            "BaseEventLoop.run_until_complete", "BaseEventLoop.run_forever")
    return {
        "samples": total,
        "idle_pct": pct(idle),  # asyncio only: uvloop's idle time is not separable
        "areas": [(name, pct(c)) for name, c in areas.most_common()],
        "self": [(name, pct(c)) for name, c in self_counts.most_common(top)],
        "inclusive": [(name, pct(c)) for name, c in incl_counts.most_common(top + 12)
                      if not name.startswith(skip)][:top],
    }
