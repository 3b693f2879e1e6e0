"""Child processes for end-to-end tests: start, wait for readiness, stop, and never leak.

Every external peer (kamailio, rtpengine, baresip, sipp, the demo node...) is started through
:class:`ManagedProcess`. Each one runs in its own session (process group), writes stdout and
stderr to a log file in the test's run directory, and is registered in a module-level table
so that ``tests/conftest.py`` can fail a test that forgets to stop one (and kill it).

Port helpers hand out loopback ports below the kernel's ephemeral range, checked free for UDP
and TCP, and never twice in one pytest process.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = [
    "ManagedProcess",
    "ProcessError",
    "descendant_pids",
    "free_port_pair",
    "free_port_range",
    "free_tcp_port",
    "free_udp_port",
    "live_managed",
    "port_bound",
    "process_group_pids",
]


class ProcessError(RuntimeError):
    """A managed process did not become ready, or died; the message carries its log tail."""


_LIVE: dict[int, ManagedProcess] = {}
_LIVE_LOCK = threading.Lock()


def live_managed() -> list[ManagedProcess]:
    """Managed processes started and not yet stopped (in start order)."""
    with _LIVE_LOCK:
        return list(_LIVE.values())


class ManagedProcess:
    """A command run in its own process group with its output in ``<workdir>/<name>.log``.

    >>> p = ManagedProcess("sleeper", ["sleep", "30"], workdir).start()
    >>> p.stop()
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_name: str | None = None,
        long_lived: bool = False,
    ) -> None:
        """``long_lived``: owned by a module/session fixture that stops it later; the
        per-test leak check in tests/conftest.py then leaves it alone."""
        self.name = name
        self.long_lived = long_lived
        self.argv = [str(a) for a in argv]
        self.workdir = Path(workdir)
        self.cwd = Path(cwd) if cwd is not None else self.workdir
        self.env = dict(os.environ if env is None else env)
        self.log_path = self.workdir / (log_name or f"{name}.log")
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.started_at: float | None = None
        self._log_start = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ManagedProcess:
        if self._popen is not None:
            raise ProcessError(f"{self.name}: already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab", buffering=0)  # closed in _finish()
        log.write(f"### {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
        self._log_start = log.tell()
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            log.close()
            raise ProcessError(f"{self.name}: cannot start {self.argv[0]!r}: {exc}") from exc
        self._log_file = log
        self.started_at = time.monotonic()
        with _LIVE_LOCK:
            _LIVE[self._popen.pid] = self
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ProcessError(f"{self.name}: not started")
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status (negative: killed by that signal), None while running."""
        if self._popen is None:
            return None
        return self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; ProcessError on timeout."""
        if self._popen is None:
            raise ProcessError(f"{self.name}: not started")
        try:
            rc = self._popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise ProcessError(
                f"{self.name}: still running after {timeout}s\n{self.log_tail()}"
            ) from exc
        self._finish()
        return rc

    def signal(self, sig: int) -> None:
        if self.running:
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, then SIGKILL after ``timeout``; idempotent.

        Returns the main process's exit status. Also kills any process left in its group
        (forked workers) and waits until the group is gone.
        """
        if self._popen is None:
            return None
        pgid = self._popen.pid
        if self._popen.poll() is None:
            _killpg(pgid, signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(pgid, signal.SIGKILL)
                self._popen.wait(5.0)
        # Workers that outlived the leader (or ignored SIGTERM) still belong to the group.
        if process_group_pids(pgid):
            _killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process_group_pids(pgid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if process_group_pids(pgid):
                _killpg(pgid, signal.SIGKILL)
                deadline = time.monotonic() + 5.0
                while process_group_pids(pgid) and time.monotonic() < deadline:
                    time.sleep(0.02)
        self._finish()
        return self._popen.returncode

    def _finish(self) -> None:
        if self._popen is not None:
            with _LIVE_LOCK:
                _LIVE.pop(self._popen.pid, None)
        log = self._log_file
        self._log_file = None
        if log is not None:
            try:
                log.write(f"\n### {time.strftime('%H:%M:%S')} exit: {self.returncode}\n".encode())
            finally:
                log.close()

    def __enter__(self) -> ManagedProcess:
        if self._popen is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        pid = self._popen.pid if self._popen else None
        return f"<ManagedProcess {self.name} pid={pid} rc={self.returncode}>"

    # ------------------------------------------------------------------ log
    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = self.read_log().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def log_offset(self) -> int:
        """Current size of the log, to pass as ``since`` to :meth:`wait_for_log`."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_for_log(
        self,
        pattern: str | re.Pattern[str],
        timeout: float = 10.0,
        *,
        since: int | None = None,
        poll: float = 0.02,
    ) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the log after byte offset ``since``
        (default: the start of this run's output, after the harness's own header line).

        Raises ProcessError with the log tail if the process exits first or on timeout.
        """
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(self._log_start if since is None else since)
                    text = f.read().decode(errors="replace")
            except FileNotFoundError:
                text = ""
            m = rx.search(text)
            if m:
                return m
            if not self.running:
                raise ProcessError(
                    f"{self.name}: exited ({self.returncode}) before log matched "
                    f"{rx.pattern!r}\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise ProcessError(
                    f"{self.name}: log did not match {rx.pattern!r} within {timeout}s\n"
                    f"{self.log_tail()}"
                )
            time.sleep(poll)

    def wait_for_port(
        self,
        port: int,
        proto: str = "udp",
        host: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Wait until something listens on ``port`` (``proto`` 'udp' or 'tcp').

        ``host`` restricts the match to that local address (a wildcard bind also matches).
        Raises ProcessError if the process exits first or on timeout.
        """
        deadline = time.monotonic() + timeout
        while not port_bound(port, proto, host):
            if not self.running:
                raise ProcessError(
                    f"{self.name}: exited ({self.returncode}) before {proto} port {port} "
                    f"was bound\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise ProcessError(
                    f"{self.name}: {proto} port {port} not bound within {timeout}s\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)


def wait_for_file(proc: ManagedProcess, path: Path, timeout: float = 30.0) -> None:
    """Wait until ``proc`` has written ``path`` (e.g. a node's demo.json); if the process
    dies or time runs out, stop it and raise with the end of its log."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not proc.running or time.monotonic() > deadline:
            log = proc.log_tail(60)
            proc.stop()
            raise ProcessError(f"{proc.name}: {path.name} never appeared:\n{log}")
        time.sleep(0.05)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------- /proc helpers
def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process from /proc, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    rest = data[data.rfind(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[2])


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def process_group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    out = []
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is not None and st[2] == pgid and st[0] != "Z":
            out.append(pid)
    return out


def descendant_pids(root: int | None = None, *, include_zombies: bool = False) -> set[int]:
    """All descendants of ``root`` (default: this process), found through /proc."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is None:
            continue
        states[pid] = st[0]
        children.setdefault(st[1], []).append(pid)
    out: set[int] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        if include_zombies or states.get(pid) != "Z":
            out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def process_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def port_bound(port: int, proto: str = "udp", host: str | None = None) -> bool:
    """True if a local socket is bound to ``port`` (per /proc/net/{udp,tcp}{,6}).

    For TCP only listening sockets count. ``host`` (IPv4 dotted quad) restricts the address;
    a wildcard bind (0.0.0.0 / ::) matches any host.
    """
    if proto not in ("udp", "tcp"):
        raise ValueError(f"proto must be 'udp' or 'tcp', not {proto!r}")
    want_addr = None
    if host is not None:
        want_addr = f"{int.from_bytes(socket.inet_aton(host), 'little'):08X}"
    for fname in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            with open(fname) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            addr, _, hexport = fields[1].partition(":")
            if int(hexport, 16) != port:
                continue
            if proto == "tcp" and fields[3] != "0A":  # LISTEN
                continue
            if want_addr is None or set(addr) == {"0"}:
                return True
            if len(addr) == 8 and addr == want_addr:
                return True
            if len(addr) == 32 and addr[-8:] == want_addr and addr[16:24] == "FFFF0000":
                return True
    return False


# ---------------------------------------------------------------------- ports
_HANDED_OUT: set[int] = set()
_PORT_LOCK = threading.Lock()
# Below Linux's default ephemeral range (32768-60999) so that outgoing connections made by
# other tests cannot grab a port between our check and the peer's bind.
_PORT_LOW, _PORT_HIGH = 10000, 32000
# Blocks (RTP ranges of whole nodes) come from the upper part, single ports and pairs
# from the lower: scattered small ports in one shared range left no room for a 400-port
# block once a suite had started a few hundred phones.
_BLOCK_LOW, _BLOCK_MIN = 20000, 20


def _can_bind(host: str, port: int, kinds: Sequence[int]) -> bool:
    socks = []
    try:
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def _pick(host: str, count: int, kinds: Sequence[int], align: int = 1) -> int:
    rng = random.SystemRandom()
    low, high = (_BLOCK_LOW, _PORT_HIGH) if count >= _BLOCK_MIN else (_PORT_LOW, _BLOCK_LOW)
    if count >= _BLOCK_MIN:  # blocks on a grid of their own size: no slivers between them
        align = max(align, count + count % 2)
    with _PORT_LOCK:
        for _ in range(2000):
            base = rng.randrange(low, high - count)
            base -= base % align
            ports = range(base, base + count)
            if any(p in _HANDED_OUT for p in ports):
                continue
            if all(_can_bind(host, p, kinds) for p in ports):
                _HANDED_OUT.update(ports)
                return base
    raise ProcessError(f"no free block of {count} port(s) on {host}")


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free on ``host`` now, not handed out before in this process."""
    return _pick(host, 1, (socket.SOCK_DGRAM,))


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, not handed out before in this process."""
    return _pick(host, 1, (socket.SOCK_STREAM,))


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port P free for UDP and TCP, with P+1 free too (baresip binds P+1 for TLS).

    Suits any SIP peer (sip_listen / -p): both P and P+1 are reserved.
    """
    return _pick(host, 2, (socket.SOCK_DGRAM, socket.SOCK_STREAM))


def release_ports(first: int, last: int) -> None:
    """Hand ports back (a stopped node's RTP range) for later tests to use."""
    with _PORT_LOCK:
        _HANDED_OUT.difference_update(range(first, last + 1))


def free_port_range(host: str = "127.0.0.1", count: int = 20) -> tuple[int, int]:
    """A block of ``count`` consecutive UDP ports (even start: RTP/RTCP), as (first, last)."""
    base = _pick(host, count, (socket.SOCK_DGRAM,), align=2)
    return base, base + count - 1
