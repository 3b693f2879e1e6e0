"""The two systems under test, started on free loopback ports, and their CPU accounting.

- :class:`NodeSystem`: a Branchline node exactly as ``make run`` starts it
  (``python -m appliance.demo --plan ...``: Kamailio edge + feature server + Python media
  plane), with a one-tenant plan whose DID rings extension 1001, registered by the
  callee SIPp; the carrier trunk is ``127.0.0.2:<carrier port>``.
- :class:`BaselineSystem`: plain Kamailio (``bench/baseline_kamailio.cfg``, same worker
  count as the node's edge) + rtpengine in userspace (``--table=-1``), relaying every
  INVITE straight to the callee SIPp.

CPU is read from ``/proc/<pid>/stat`` (utime + stime of the whole thread group) for each
process group: ``kamailio`` (all its processes), ``python`` (the node's feature server +
media process), ``rtpengine``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from appliance.edge.kamailio import module_path
from bench import scenarios
from tests.harness.procs import (
    ManagedProcess,
    ProcessError,
    free_port_pair,
    free_port_range,
    free_udp_port,
    process_group_pids,
    wait_for_file,
)
from tests.harness.sipp import Sipp

REPO = Path(__file__).resolve().parents[1]
CARRIER_IP = "127.0.0.2"
DID = "+862088880001"
EXTENSION = "1001"
DOMAIN = "acme.example"
PASSWORD = "bench-1001-pw"
_TICK = os.sysconf("SC_CLK_TCK")


def bench_plan(carrier_port: int) -> dict[str, Any]:
    return {
        "version": 1,
        "node": {"id": "bench"},
        "trunks": [{"name": "carrier", "address": CARRIER_IP, "port": carrier_port}],
        "tenants": [{
            "id": "acme", "domain": DOMAIN, "caller_id": "+862088880000",
            "extensions": [{"number": EXTENSION, "password": PASSWORD}],
            "dids": [{"number": DID, "target": EXTENSION}],
            "outbound": [{"prefix": "0", "trunk": "carrier", "strip": 1, "prepend": "+86"}],
        }],
    }


# ---------------------------------------------------------------------------- CPU
def cpu_times(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of a process, all its threads, in seconds; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return int(rest[11]) / _TICK, int(rest[12]) / _TICK


def cpu_seconds(pid: int) -> float | None:
    t = cpu_times(pid)
    return None if t is None else t[0] + t[1]


def machine_busy() -> float:
    """CPU seconds all cores of the machine spent not idle (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


@dataclass
class CpuSnapshot:
    at: float
    by_group: dict[str, float]
    user: dict[str, float]
    system: dict[str, float]
    machine: float


def snapshot(groups: dict[str, list[int]]) -> CpuSnapshot:
    user, system = {}, {}
    for name, pids in groups.items():
        times = [t for t in (cpu_times(p) for p in pids) if t is not None]
        user[name] = sum(t[0] for t in times)
        system[name] = sum(t[1] for t in times)
    return CpuSnapshot(time.monotonic(), {k: user[k] + system[k] for k in user}, user, system,
                       machine_busy())


def cpu_delta(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, float]:
    return {k: round(b.by_group[k] - a.by_group.get(k, 0.0), 3) for k in b.by_group}


def cpu_split(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, tuple[float, float]]:
    """Per group (user, system) seconds between two snapshots."""
    return {k: (round(b.user[k] - a.user.get(k, 0.0), 3),
                round(b.system[k] - a.system.get(k, 0.0), 3)) for k in b.user}


# ---------------------------------------------------------------------------- callee
class Callee:
    """The SIPp UAS that answers every call (SDP media at rtpload's echo port)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.rtp_port = free_port_range("127.0.0.1", 2)[0]
        self.sipp = Sipp(workdir, scenarios.UAS, calls=1_000_000,
                         keys=scenarios.uas_keys(self.rtp_port), name="callee",
                         trace_msg=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sipp.local_port}"

    def start(self) -> None:
        self.sipp.start().wait_ready()

    def stop(self) -> None:
        if self.sipp.proc is not None:
            self.sipp.proc.stop()


# ---------------------------------------------------------------------------- systems
@dataclass
class System:
    name: str
    workdir: Path
    sip_port: int = 0
    carrier_port: int = 0
    procs: list[ManagedProcess] = field(default_factory=list)
    #: ports whose SIP the PDD capture should see, by role
    sip_ports: dict[str, int] = field(default_factory=dict)

    def groups(self) -> dict[str, list[int]]:
        raise NotImplementedError

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()

    def describe(self) -> str:
        return ", ".join(f"{k}: {len(v)} process(es)" for k, v in self.groups().items())


class NodeSystem(System):
    def __init__(self, workdir: Path, *, rtp_ports: int = 4000, record: bool = False,
                 loop: str | None = None) -> None:
        super().__init__("node", workdir)
        self.rtp_ports = rtp_ports
        self.record = record
        self.loop = loop  # the node's --loop (None: its default)
        self.manifest: dict[str, Any] = {}
        self.fs_port = 0

    def plan(self) -> dict[str, Any]:
        """The plan the node serves (subclasses add to it)."""
        return bench_plan(self.carrier_port)

    def launch(self, ready_timeout: float = 30.0) -> None:
        """Start the node process on free ports with ``plan()`` and wait until ready
        (no HTTP API: the bench does not use it, and its port could be taken)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.carrier_port = free_port_pair(CARRIER_IP)
        self.sip_port = free_port_pair("127.0.0.1")
        self.fs_port = free_udp_port("127.0.0.1")
        low, high = free_port_range("127.0.0.1", self.rtp_ports)
        plan_path = self.workdir / "plan.yaml"
        plan_path.write_text(yaml.safe_dump(self.plan()))
        argv = [sys.executable, "-m", "appliance.demo", "--run-dir", str(self.workdir),
                "--plan", str(plan_path), "--sip-port", str(self.sip_port),
                "--fs-port", str(self.fs_port), "--rtp-range", f"{low}-{high}",
                "--flood-limit", "100000", "--ring-timeout", "30", "--api-port", "0"]
        if self.record:
            argv.append("--record")
        if self.loop:
            argv += ["--loop", self.loop]
        proc = ManagedProcess("node", argv, self.workdir, cwd=REPO, long_lived=True).start()
        self.procs.append(proc)
        try:
            wait_for_file(proc, self.workdir / "demo.json", timeout=ready_timeout)
        except ProcessError:
            self.stop()
            raise
        self.manifest = json.loads((self.workdir / "demo.json").read_text())
        self.sip_ports = {"caller": self.carrier_port, "edge": self.sip_port,
                          "fs": self.fs_port}

    def start(self, callee: Callee) -> None:
        self.launch()
        register(self.workdir, f"127.0.0.1:{self.sip_port}", callee.address)
        self.sip_ports["callee"] = callee.sipp.local_port

    @property
    def python_pid(self) -> int:
        return self.procs[0].pid

    def groups(self) -> dict[str, list[int]]:
        pids = process_group_pids(self.python_pid)
        return {
            "kamailio": sorted(p for p in pids if comm(p) == "kamailio"),
            "python": [self.python_pid],
        }

    def cdrs(self) -> list[dict[str, Any]]:
        out = subprocess.run(list(self.manifest["cdr"]["command"]), check=True,
                             capture_output=True, text=True, timeout=60, cwd=REPO).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def register(workdir: Path, edge: str, contact: str) -> None:
    """REGISTER the bench extension at the node with ``contact`` (SIPp, digest auth)."""
    result = Sipp(
        workdir, scenarios.REGISTER, remote=edge, name="register",
        keys={"user": EXTENSION, "domain": DOMAIN, "contact": contact},
        extra_args=["-au", EXTENSION, "-ap", PASSWORD],
    ).run(timeout=20)
    if not result.ok or result.successful != 1:
        raise ProcessError(f"REGISTER failed: {result.describe()}")


class BaselineSystem(System):
    def __init__(self, workdir: Path, *, rtp_ports: int = 4000, children: int = 2) -> None:
        super().__init__("baseline", workdir)
        self.rtp_ports = rtp_ports
        self.children = children

    def start(self, callee: Callee) -> None:
        if shutil.which("rtpengine") is None:
            raise ProcessError("rtpengine is not installed (Debian package rtpengine)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sip_port = free_port_pair("127.0.0.1")
        self.carrier_port = free_port_pair(CARRIER_IP)
        ng_port = free_udp_port("127.0.0.1")
        low, high = free_port_range("127.0.0.1", self.rtp_ports)
        rtpengine = ManagedProcess(
            "rtpengine",
            ["rtpengine", "--config-file=none", "--foreground", "--log-stderr", "--table=-1",
             "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{ng_port}",
             f"--port-min={low}", f"--port-max={high}", "--log-level=4"],
            self.workdir, long_lived=True,
        ).start()
        self.procs.append(rtpengine)
        try:
            rtpengine.wait_for_port(ng_port, "udp", "127.0.0.1", timeout=15)
            cfg = self.workdir / "kamailio.cfg"
            values = {
                "children": str(self.children), "listen_ip": "127.0.0.1",
                "sip_port": str(self.sip_port), "module_path": module_path(),
                "run_dir": str(self.workdir), "ng_ip": "127.0.0.1", "ng_port": str(ng_port),
                "callee": callee.address,
            }
            text = (Path(__file__).with_name("baseline_kamailio.cfg")).read_text()
            for k, v in values.items():
                text = text.replace("{{" + k + "}}", v)
            cfg.write_text(text)
            check = subprocess.run(["kamailio", "-c", "-f", str(cfg)], capture_output=True,
                                   text=True, timeout=30)
            if check.returncode != 0:
                raise ProcessError(f"baseline kamailio.cfg check failed:\n{check.stdout}"
                                   f"{check.stderr}")
            kam = ManagedProcess("kamailio", ["kamailio", "-f", str(cfg), "-DD", "-E"],
                                 self.workdir, long_lived=True).start()
            self.procs.append(kam)
            kam.wait_for_port(self.sip_port, "udp", "127.0.0.1", timeout=15)
            _wait_options(("127.0.0.1", self.sip_port), kam)
        except BaseException:
            self.stop()
            raise
        self.sip_ports = {"caller": self.carrier_port, "edge": self.sip_port,
                          "callee": callee.sipp.local_port}

    def groups(self) -> dict[str, list[int]]:
        rtpengine, kam = self.procs[0], self.procs[1]
        return {
            "kamailio": sorted(p for p in process_group_pids(kam.pid) if comm(p) == "kamailio"),
            "rtpengine": [rtpengine.pid],
        }


def _wait_options(addr: tuple[str, int], proc: ManagedProcess, timeout: float = 10.0) -> None:
    """Wait until Kamailio answers an OPTIONS (its workers are up)."""
    msg = (f"OPTIONS sip:{addr[0]}:{addr[1]} SIP/2.0\r\n"
           "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-benchready\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=r\r\nTo: <sip:bench@127.0.0.1>\r\n"
           "Call-ID: bench-ready\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.settimeout(0.2)
        data = msg.replace("127.0.0.1:9", f"127.0.0.1:{port}").encode()
        while time.monotonic() < deadline:
            if not proc.running:
                raise ProcessError(f"kamailio exited\n{proc.log_tail()}")
            s.sendto(data, addr)
            try:
                if s.recv(4096).startswith(b"SIP/2.0 200"):
                    return
            except TimeoutError:
                continue
    raise ProcessError(f"kamailio did not answer OPTIONS\n{proc.log_tail()}")
