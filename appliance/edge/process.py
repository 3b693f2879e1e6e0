"""The edge's child processes (Kamailio, rtpengine): tied to the node's life, stopped
politely and then by force."""

from __future__ import annotations

import asyncio
import ctypes
import signal


def die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the node process dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


async def terminate(proc: asyncio.subprocess.Process | None, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; nothing if it has ended."""
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
