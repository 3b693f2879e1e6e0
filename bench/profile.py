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


_IDLE = ("select (selectors.py)", "poll (selectors.py)", "_run_once (asyncio/base_events.py)")


def summarise(raw: str, top: int = 20) -> dict[str, Any]:
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
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
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_counts[leaf] += count
        if leaf in _IDLE[:2]:
            idle += count
        for name in set(frames):
            incl_counts[name] += count
    if not total:
        return {"error": "no samples"}

    def pct(c: int) -> float:
        return round(100.0 * c / total, 1)

    return {
        "samples": total,
        "idle_pct": pct(idle),
        "self": [(name, pct(c)) for name, c in self_counts.most_common(top)],
        "inclusive": [(name, pct(c)) for name, c in incl_counts.most_common(top + 10)],
    }
