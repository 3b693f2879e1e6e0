"""Suite-wide guards and the ``tmp_run`` fixture.

- Every test must stop what it started: a process started through
  ``tests/harness/procs.py`` (or any other child process of pytest) still alive after the
  test, or a new non-daemon thread still running, fails the test (and is killed).
  Processes of module/session fixtures are exempt when created with
  ``ManagedProcess(..., long_lived=True)`` or when they existed before the test started.
- Warnings are errors (``filterwarnings = ["error"]`` in pyproject.toml).
- ``@pytest.mark.root`` tests are skipped when not running as root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import procs
from tests.pg import pg_url  # noqa: F401  (a fixture for the whole suite)

REPO = Path(__file__).resolve().parent.parent
# Short and independent of where the checkout lives: baresip and Kamailio silently fail
# on long paths (recording files, Unix sockets).
RUN_ROOT = Path(tempfile.gettempdir()) / "branchline-tests"
_SESSION_DIR: Path | None = None
_GRACE = 2.0  # seconds a test's children/threads get to finish after it returns


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, nftables): run as root, as CI does")


def _session_dir() -> Path:
    """``<tmp>/branchline-tests/<pid>``, once per pytest process; dead runs' dirs are removed."""
    global _SESSION_DIR
    if _SESSION_DIR is None:
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        for old in RUN_ROOT.iterdir():
            if old.is_dir() and old.name.isdigit() and not Path(f"/proc/{old.name}").exists():
                shutil.rmtree(old, ignore_errors=True)
        _SESSION_DIR = RUN_ROOT / str(os.getpid())
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)
        _SESSION_DIR.mkdir(parents=True)
    return _SESSION_DIR


@pytest.fixture
def tmp_run(request: pytest.FixtureRequest) -> Path:
    """A fresh directory for this test's configs, logs and recordings.

    ``<tmp>/branchline-tests/<pytest pid>/<test name>-<hash>`` (kept after the test for
    inspection; the next pytest run removes it). Short enough for Unix socket paths and
    for baresip's recording paths inside it.
    """
    node = request.node
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name)[:24]
    digest = f"{zlib.crc32(node.nodeid.encode()):08x}"
    d = _session_dir() / f"{name}-{digest}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def _exempt_pids() -> set[int]:
    out: set[int] = set()
    for p in procs.live_managed():
        if p.long_lived:
            out.add(p.pid)
            out.update(procs.process_group_pids(p.pid))
    return out


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves child processes or non-daemon threads running."""
    children_before = procs.descendant_pids()
    managed_before = {id(p) for p in procs.live_managed()}
    threads_before = set(threading.enumerate())
    yield
    problems: list[str] = []

    # 1. Managed processes the test started and did not stop.
    for p in procs.live_managed():
        if id(p) in managed_before or p.long_lived:
            continue
        problems.append(f"process left running: {p!r} ({' '.join(p.argv)}); log {p.log_path}")
        p.stop(timeout=2.0)

    # 2. Any other child process of pytest (asyncio subprocesses, Popen...).
    deadline = time.monotonic() + _GRACE
    while True:
        leaked = procs.descendant_pids() - children_before - _exempt_pids()
        if not leaked or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for pid in sorted(leaked):
        problems.append(f"child process left running: pid {pid}: {procs.process_cmdline(pid)}")
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in leaked:  # reap our direct children so they do not linger as zombies
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    # 3. Non-daemon threads the test started.
    deadline = time.monotonic() + _GRACE
    for t in threading.enumerate():
        if t in threads_before or t.daemon or t is threading.current_thread():
            continue
        t.join(max(deadline - time.monotonic(), 0.0))
        if t.is_alive():
            problems.append(f"non-daemon thread left running: {t!r}")

    if problems:
        pytest.fail("test leaked resources:\n  " + "\n  ".join(problems), pytrace=False)
