"""One load run: N concurrent two-way G.711 calls through a system, measured.

SIPp's caller (bound to the carrier address ``127.0.0.2:<carrier port>``) places ``calls``
calls at ``rate`` calls/s, at most ``calls`` at once; each answered call is announced to
``bench.rtpload``, which streams 20 ms PCMA to the system's caller-side media address for
``media_seconds`` while the callee side echoes it back; the caller hangs up one second
after its stream ends (so no packet is in flight at the BYE).  Measured: SIPp's
successful/failed calls, RTP sent/received per direction, one-way media latency, CPU of
each process group over the whole run and over a steady window with all calls up, and
optionally SIP timings on the wire (:mod:`bench.capture`) and a py-spy profile.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import capture as cap
from bench import profile as prof
from bench import scenarios
from bench.systems import (
    CARRIER_IP,
    DID,
    Callee,
    System,
    cpu_delta,
    cpu_seconds,
    cpu_split,
    snapshot,
)
from tests.harness.procs import ManagedProcess, ProcessError, free_port_range, free_udp_port
from tests.harness.sipp import Sipp

REPO = Path(__file__).resolve().parents[1]
TAIL = 1.0  # s between the end of a call's stream and its BYE


@dataclass
class LoadResult:
    system: str
    label: str
    calls: int
    rate: float
    media_seconds: float
    sipp: dict[str, Any]
    rtp: dict[str, Any]
    cpu_run: dict[str, float]
    wall_run: float
    cpu_steady: dict[str, float] = field(default_factory=dict)
    wall_steady: float = 0.0
    rtd_ms: list[float] = field(default_factory=list)
    wire: dict[str, list[float]] = field(default_factory=dict)
    generator_cpu: dict[str, float] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    cpu_split_run: dict[str, tuple[float, float]] = field(default_factory=dict)
    cpu_split_steady: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: cores busy on the machine outside the systems and the load generators (other work)
    background_cores: float = 0.0
    #: cores busy on the whole machine during the steady window
    machine_cores_steady: float = 0.0

    # ----------------------------------------------------------- derived
    @property
    def failed_pct(self) -> float:
        total = self.sipp.get("successful", 0) + self.sipp.get("failed", 0)
        missing = max(0, self.calls - total)  # never completed either way
        return 100.0 * (self.sipp.get("failed", 0) + missing) / self.calls if self.calls else 0.0

    @property
    def loss_pct(self) -> float | None:
        return self.rtp.get("loss_pct")

    def call_seconds(self) -> float:
        return self.calls * self.media_seconds

    def cpu_per_call_second(self) -> dict[str, float]:
        cs = self.call_seconds()
        out = {k: v / cs for k, v in self.cpu_run.items()} if cs else {}
        out["total"] = sum(self.cpu_run.values()) / cs if cs else 0.0
        return out

    def steady_cores(self) -> dict[str, float]:
        if not self.wall_steady:
            return {}
        out = {k: v / self.wall_steady for k, v in self.cpu_steady.items()}
        out["total"] = sum(self.cpu_steady.values()) / self.wall_steady
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["rtp"] = {k: v for k, v in self.rtp.items() if k != "per_call"}
        d["derived"] = {"failed_pct": self.failed_pct, "loss_pct": self.loss_pct,
                        "cpu_per_call_second": self.cpu_per_call_second(),
                        "steady_cores": self.steady_cores()}
        return d


def run_load(
    system: System,
    callee: Callee,
    workdir: Path,
    *,
    label: str,
    calls: int,
    rate: float,
    steady: float = 0.0,
    media_seconds: float | None = None,
    wire: bool = False,
    profile_seconds: float = 0.0,
    timeout_margin: float = 60.0,
) -> LoadResult:
    """Run ``calls`` calls at ``rate``/s, each streaming for ramp + ``steady`` seconds (all
    calls up together for ``steady`` s, CPU also measured over that window), or for
    ``media_seconds`` each when given (0: signalling only)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ramp = calls / rate
    with_window = media_seconds is None
    if media_seconds is None:
        media_seconds = round(ramp + steady, 2)
    uac_rtp = free_port_range(CARRIER_IP, 2)[0]
    ctl = ("127.0.0.1", free_udp_port("127.0.0.1"))
    result_path = workdir / "rtpload.json"
    result_path.unlink(missing_ok=True)
    rtpload = ManagedProcess(
        "rtpload",
        [sys.executable, "-m", "bench.rtpload", "--uac", f"{CARRIER_IP}:{uac_rtp}",
         "--uas", f"127.0.0.1:{callee.rtp_port}", "--ctl", f"{ctl[0]}:{ctl[1]}",
         "--seconds", str(media_seconds), "--max-calls", str(calls), "--result",
         str(result_path)],
        workdir, cwd=REPO,
    ).start()
    capture: cap.Capture | None = None
    uac: Sipp | None = None
    profile: dict[str, Any] = {}
    try:
        rtpload.wait_for_log("rtpload ready", timeout=15)
        if wire:
            capture = cap.Capture(workdir, system.sip_ports).start()
        groups = system.groups()
        uac = Sipp(
            workdir, scenarios.UAC, remote=f"127.0.0.1:{system.sip_port}", local_ip=CARRIER_IP,
            local_port=system.carrier_port, calls=calls, limit=calls, rate=rate, service=DID,
            call_duration_ms=int((media_seconds + TAIL) * 1000),
            keys=scenarios.uac_keys(uac_rtp, ctl), name="caller", trace_msg=False,
            extra_args=["-trace_rtt", "-rtt_freq", "20", "-recv_timeout", "20000"],
        )
        gen_groups = {"callee": [callee.sipp.proc.pid] if callee.sipp.proc else [],
                      "rtpload": [rtpload.pid]}
        before, gen_before = snapshot(groups), snapshot(gen_groups)
        uac.start()
        if profile_seconds > 0 and not with_window and hasattr(system, "python_pid"):
            secs = min(profile_seconds, ramp)
            if secs >= 1.0:
                profile = prof.record(system.python_pid, secs, workdir / "pyspy.txt")
        # all calls up (and streaming) from ramp + setup until ramp + steady: measure CPU
        # over that window, then (optionally) profile the rest of it
        steady_start = before.at + ramp + 1.5
        steady_end = before.at + ramp + steady - 0.5
        cpu_steady: dict[str, float] = {}
        split_steady: dict[str, tuple[float, float]] = {}
        wall_steady = machine_steady = 0.0
        if with_window and steady_end - steady_start >= 1.0:
            window = steady_end - steady_start
            prof_secs = 0.0
            if profile_seconds > 0 and hasattr(system, "python_pid"):
                prof_secs = min(profile_seconds, window / 2)
                prof_secs = prof_secs if prof_secs >= 1.0 else 0.0
            _sleep_until(steady_start, uac)
            s1 = snapshot(groups)
            _sleep_until(steady_end - prof_secs - (0.3 if prof_secs else 0.0), uac)
            s2 = snapshot(groups)
            cpu_steady, wall_steady = cpu_delta(s1, s2), s2.at - s1.at
            split_steady, machine_steady = cpu_split(s1, s2), s2.machine - s1.machine
            if prof_secs:
                profile = prof.record(system.python_pid, prof_secs, workdir / "pyspy.txt")
        assert uac.proc is not None
        uac_pid = uac.proc.pid
        deadline = before.at + media_seconds + ramp + TAIL + timeout_margin
        uac_cpu = cpu_seconds(uac_pid) or 0.0
        while uac.proc.running and time.monotonic() < deadline:
            uac_cpu = cpu_seconds(uac_pid) or uac_cpu
            time.sleep(0.05)
        rc = uac.proc.wait(max(1.0, deadline - time.monotonic()))
        after, gen_after = snapshot(groups), snapshot(gen_groups)
        sipp_result = uac.result(rc)
        gen_cpu = {"sipp_caller": uac_cpu, **cpu_delta(gen_before, gen_after)}
    except BaseException:
        if uac is not None and uac.proc is not None:
            uac.proc.stop()
        rtpload.stop()
        if capture is not None:
            capture.stop()
        raise
    rtpload.stop()
    if capture is not None:
        capture.stop()
    if not result_path.exists():
        raise ProcessError(f"rtpload wrote no result\n{rtpload.log_tail()}")
    rtp = json.loads(result_path.read_text())
    wire_t = capture.timings() if capture is not None else {}
    machine_run = after.machine - before.machine
    ours = sum(cpu_delta(before, after).values()) + sum(gen_cpu.values())
    return LoadResult(
        system=system.name, label=label, calls=calls, rate=rate, media_seconds=media_seconds,
        sipp={"rc": sipp_result.returncode, "successful": sipp_result.successful,
              "failed": sipp_result.failed, "created": sipp_result.created,
              "errors": sipp_result.errors[-2000:]},
        rtp=rtp, cpu_run=cpu_delta(before, after), wall_run=round(after.at - before.at, 3),
        cpu_steady=cpu_steady, wall_steady=round(wall_steady, 3),
        cpu_split_run=cpu_split(before, after), cpu_split_steady=split_steady,
        background_cores=round(max(0.0, machine_run - ours) / max(after.at - before.at, 1e-3),
                               3),
        machine_cores_steady=round(machine_steady / wall_steady, 3) if wall_steady else 0.0,
        rtd_ms=_read_rtt(workdir), wire=wire_t, generator_cpu=gen_cpu, profile=profile,
    )


def _sleep_until(t: float, uac: Sipp) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        if uac.proc is not None and not uac.proc.running:
            return
        time.sleep(min(left, 0.1))


def _read_rtt(workdir: Path) -> list[float]:
    """Response time 1 (INVITE -> 180) of every call, from SIPp's ``-trace_rtt`` file(s)."""
    out: list[float] = []
    for path in sorted(workdir.glob("caller_*_rtt.csv")):
        with open(path, newline="") as f:
            for row in csv.reader(f, delimiter=";"):
                if len(row) >= 3 and row[2].strip() == "1":
                    try:
                        out.append(float(row[1]))
                    except ValueError:
                        continue
    return out

