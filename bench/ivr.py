"""``python -m bench --ivr``: IVR ports per core, callers in prompt + digit collection.

A node (``appliance.demo`` with a one-tenant plan, as :class:`bench.systems.NodeSystem`)
answers a DID with the flow ``bench-ivr``: a ``collect`` node (mode ``fixed``, 4 keys,
barge-in on) whose prompt is a long TTS text (about a minute), then a ``hangup`` node
whose prompt is the same text (so the call keeps playing a prompt after the code).

SIPp, bound to the plan's carrier address (127.0.0.2, trunk port), places N calls at
``rate`` calls/s, all up together.  Each caller waits a random 1..S s (S = ramp +
steady) listening to the prompt, then replays the RFC 4733 pcaps of the keys 2 4 6 8
(``/usr/share/sip-tester/dtmf_2833_<k>.pcap``: one different pcap per key, in the
pcaps' sequence order, see ``tests/e2e/conftest.py``) 400..600 ms apart, then stays S
more seconds (in the goodbye prompt) and hangs up.  So every call is up from the end
of the ramp until S + 3.4 s after its start, with the prompt playing towards it, and
the keys arrive spread over that window (barge-in on a playing prompt).

Measured: SIPp's completed calls; from the node's trace (``event: ivr, step:
collected``), per call, whether the collected code is ``2468`` (missed = wrong or no
code); CPU (utime + stime from /proc) of the node's Python process and Kamailio over a
window with all calls up -> CPU ms per call-second and IVR ports per core
(1000 / that).  The relay baseline (Kamailio + rtpengine relaying two-way G.711, the
media phase of ``python -m bench``) runs at the same N with :func:`bench.load.run_load`,
or its numbers are taken from ``run/bench/results.json`` (``--ivr-baseline reuse``).
Everything on 127.0.0.0/8, bounded in calls and time.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import profile as prof
from bench import report
from bench.systems import (
    CARRIER_IP,
    BaselineSystem,
    Callee,
    NodeSystem,
    bench_plan,
    cpu_delta,
    cpu_split,
    snapshot,
)
from tests.harness.procs import (
    ManagedProcess,
    ProcessError,
)
from tests.harness.sipp import ACK, BYE, INVITE, PCAP_DIR, Sipp, play_pcap, recv, scenario, send

REPO = Path(__file__).resolve().parents[1]
IVR_DID = "+862088880070"
FLOW = "bench-ivr"
KEYS = ("2", "4", "6", "8")  # different pcaps, in the pcaps' sequence order
CODE = "".join(KEYS)
_PARAGRAPH = (
    "Thank you for calling Acme. Your call matters to us. Please enter your four digit "
    "customer code at any time, and we will look up your account. For billing questions, "
    "have your latest invoice ready. For technical support, please have your device serial "
    "number at hand. Our opening hours are Monday to Friday, eight in the morning to eight "
    "in the evening, and Saturday from nine to one. "
)
_PARAGRAPH_S = 22.0  # about how long espeak-ng (en-us) takes to say it


def ivr_flow(min_prompt_s: float) -> dict[str, Any]:
    text = _PARAGRAPH * max(1, math.ceil(min_prompt_s / _PARAGRAPH_S))
    return {
        "flow": FLOW, "version": 1, "language": "en-us", "start": "code",
        "nodes": {
            "code": {"type": "collect", "prompt": {"tts": text}, "variable": "code",
                     "mode": "fixed", "length": len(KEYS), "barge_in": True,
                     "first_digit_timeout": 120, "inter_digit_timeout": 5, "retries": 0,
                     "next": "bye"},
            "bye": {"type": "hangup", "prompt": {"tts": text}},
        },
    }


def ivr_plan(carrier_port: int, min_prompt_s: float) -> dict[str, Any]:
    plan = bench_plan(carrier_port)
    tenant = plan["tenants"][0]
    tenant["dids"].append({"number": IVR_DID, "target": f"flow:{FLOW}"})
    tenant["flows"] = {FLOW: ivr_flow(min_prompt_s)}
    return plan


def caller_scenario(hold_max_ms: int, after_ms: int) -> str:
    """INVITE (PCMU + telephone-event at SIPp's media port), ACK, listen 1..hold_max ms,
    the keys as RFC 4733 pcaps 400..600 ms apart, stay after_ms, BYE."""
    names = {"*": "star", "#": "pound"}
    el: list[str] = [
        send(INVITE), recv(response=100, optional=True), recv(response=180, optional=True),
        recv(response=183, optional=True), recv(response=200, rrs="true"),
        send(ACK, retrans=None),
        f'<pause distribution="uniform" min="1000" max="{max(1001, hold_max_ms)}"/>',
    ]
    for i, key in enumerate(KEYS):
        el.append(play_pcap(PCAP_DIR / f"dtmf_2833_{names.get(key, key)}.pcap"))
        if i < len(KEYS) - 1:
            el.append('<pause distribution="uniform" min="400" max="600"/>')
    el += [f'<pause milliseconds="{after_ms}"/>', send(BYE), recv(response=200, crlf="true")]
    return scenario("bench ivr caller", *el)


class IvrNode(NodeSystem):
    """A node whose plan adds the IVR DID and flow (no extension registration needed)."""

    def __init__(self, workdir: Path, *, rtp_ports: int, min_prompt_s: float,
                 loop: str | None = None) -> None:
        super().__init__(workdir, rtp_ports=rtp_ports, loop=loop)
        self.name = "node-ivr"
        self.min_prompt_s = min_prompt_s

    def plan(self) -> dict[str, Any]:
        return ivr_plan(self.carrier_port, self.min_prompt_s)

    def start(self, callee: Callee | None = None) -> None:
        self.launch(ready_timeout=60)

    @property
    def trace_path(self) -> Path:
        return Path(self.manifest["trace"]["path"])


@dataclass
class IvrResult:
    calls: int
    rate: float
    steady: float
    sipp: dict[str, Any]
    ivr_calls: int  # calls the flow started for (trace)
    right: int  # calls whose collected code == CODE
    wrong: dict[str, int]  # collected value -> calls (wrong codes)
    no_code: int  # calls started without a collected code
    dtmf_events: int
    cpu_window: dict[str, float]
    cpu_split_window: dict[str, tuple[float, float]]
    wall_window: float
    machine_cores_window: float
    wall_run: float
    generator_cpu: dict[str, float] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        return int(self.sipp.get("successful", 0))

    @property
    def missed(self) -> int:
        return self.calls - self.right

    def cpu_ms_per_call_second(self) -> dict[str, float]:
        if not self.wall_window:
            return {}
        cs = self.calls * self.wall_window
        out = {k: 1000.0 * v / cs for k, v in self.cpu_window.items()}
        out["total"] = 1000.0 * sum(self.cpu_window.values()) / cs
        return out

    def ports_per_core(self) -> float:
        t = self.cpu_ms_per_call_second().get("total", 0.0)
        return 1000.0 / t if t else 0.0

    def ratio(self) -> float | None:
        b = self.baseline.get("cpu_ms_per_call_second")
        t = self.cpu_ms_per_call_second().get("total")
        return t / b if b and t else None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["derived"] = {"completed": self.completed, "missed": self.missed,
                        "cpu_ms_per_call_second": self.cpu_ms_per_call_second(),
                        "ports_per_core": self.ports_per_core(), "ratio": self.ratio()}
        return d


def _trace_from(path: Path, offset: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    out = []
    for line in data.decode(errors="replace").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _score(events: list[dict[str, Any]]) -> tuple[int, int, dict[str, int], int, int]:
    started = {e.get("call") for e in events
               if e.get("event") == "ivr" and e.get("flow") == FLOW and e.get("step") == "start"}
    code: dict[Any, str] = {}
    for e in events:
        if (e.get("event") == "ivr" and e.get("step") == "collected"
                and e.get("call") in started and e.get("node") == "code"):
            code.setdefault(e.get("call"), str(e.get("value")))
    right = sum(1 for v in code.values() if v == CODE)
    wrong: dict[str, int] = {}
    for v in code.values():
        if v != CODE:
            wrong[v] = wrong.get(v, 0) + 1
    dtmf = sum(1 for e in events if e.get("event") == "dtmf" and e.get("call") in started)
    return len(started), right, wrong, len(started) - len(code), dtmf


def _sleep_until(t: float, proc: ManagedProcess | None) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0 or (proc is not None and not proc.running):
            return
        time.sleep(min(left, 0.1))


def run_ivr_level(node: IvrNode, workdir: Path, *, calls: int, rate: float, steady: float,
                  profile_seconds: float = 0.0, timeout_margin: float = 60.0) -> IvrResult:
    workdir.mkdir(parents=True, exist_ok=True)
    ramp = calls / rate
    hold = ramp + steady  # S
    keys_s = 0.6 * (len(KEYS) - 1) + 0.2
    sipp = Sipp(workdir, caller_scenario(int(hold * 1000), int(hold * 1000)),
                remote=f"127.0.0.1:{node.sip_port}", local_ip=CARRIER_IP,
                local_port=node.carrier_port, calls=calls, limit=calls, rate=rate,
                service=IVR_DID, name="caller", trace_msg=False,
                extra_args=["-recv_timeout", "30000"])
    offset = node.trace_path.stat().st_size if node.trace_path.exists() else 0
    groups = node.groups()
    before = snapshot(groups)
    sipp.start()
    assert sipp.proc is not None
    # every call is up from its answer (<= ramp + ~0.2 s) until >= its start + 1 + keys + S
    w_start = before.at + ramp + 1.0
    w_end = before.at + hold + 1.0 + keys_s - 0.3
    profile: dict[str, Any] = {}
    prof_secs = 0.0
    if profile_seconds > 0 and w_end - w_start >= 3.0:
        prof_secs = max(1.0, min(profile_seconds, (w_end - w_start) / 2))
    _sleep_until(w_start, sipp.proc)
    s1 = snapshot(groups)
    _sleep_until(w_end - prof_secs - (0.3 if prof_secs else 0.0), sipp.proc)
    s2 = snapshot(groups)
    if prof_secs and sipp.proc.running:
        profile = prof.record(node.python_pid, prof_secs, workdir / "pyspy.txt")
    deadline = before.at + 2 * hold + keys_s + 3 + timeout_margin
    sipp_cpu = 0.0
    from bench.systems import cpu_seconds  # local: keep the import list short
    while sipp.proc.running and time.monotonic() < deadline:
        sipp_cpu = cpu_seconds(sipp.proc.pid) or sipp_cpu
        time.sleep(0.1)
    try:
        rc = sipp.proc.wait(max(1.0, deadline - time.monotonic()))
    except ProcessError:
        sipp.proc.stop()
        rc = -1
    after = snapshot(groups)
    res = sipp.result(rc)
    time.sleep(1.0)  # the node writes its last trace lines
    started, right, wrong, no_code, dtmf = _score(_trace_from(node.trace_path, offset))
    return IvrResult(
        calls=calls, rate=rate, steady=steady,
        sipp={"rc": rc, "successful": res.successful, "failed": res.failed,
              "created": res.created, "errors": res.errors[-2000:]},
        ivr_calls=started, right=right, wrong=wrong, no_code=no_code, dtmf_events=dtmf,
        cpu_window=cpu_delta(s1, s2), cpu_split_window=cpu_split(s1, s2),
        wall_window=round(s2.at - s1.at, 3),
        machine_cores_window=round((s2.machine - s1.machine) / max(s2.at - s1.at, 1e-3), 3),
        wall_run=round(after.at - before.at, 3), generator_cpu={"sipp_caller": sipp_cpu},
        profile=profile,
    )


def _baseline_from_load(r: Any) -> dict[str, Any]:
    cores = r.steady_cores()
    if cores and r.calls:
        ms = 1000.0 * cores["total"] / r.calls
        src = "steady window"
    else:
        ms = 1000.0 * r.cpu_per_call_second()["total"]
        src = "whole run"
    return {"calls": r.calls, "cpu_ms_per_call_second": ms, "source": f"measured now ({src})",
            "completed": r.sipp.get("successful"), "loss_pct": r.loss_pct}


def _baseline_from_file(path: Path, calls: int) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    runs = [r for r in data.get("runs", []) if r.get("system") == "baseline"
            and str(r.get("label", "")).startswith("media")]
    if not runs:
        return {}
    best = min(runs, key=lambda r: abs(r["calls"] - calls))
    sc = best.get("derived", {}).get("steady_cores") or {}
    if sc.get("total"):
        ms, src = 1000.0 * sc["total"] / best["calls"], "steady window"
    else:
        ms, src = 1000.0 * best["derived"]["cpu_per_call_second"]["total"], "whole run"
    return {"calls": best["calls"], "cpu_ms_per_call_second": ms,
            "source": f"reused from {path.name} ({data['meta'].get('started')}, "
                      f"{best['calls']} calls, {src})"}


def run(args: Any, workdir: Path, doc: Path | None) -> int:
    """The IVR section of ``python -m bench`` (``--ivr``)."""
    from bench.load import run_load  # the relay baseline's media phase

    results_file = workdir.parent / "results.json"  # the media bench's last results
    ivr_dir = workdir / "ivr"
    shutil.rmtree(ivr_dir, ignore_errors=True)  # a stale demo.json would pass for a new node
    ivr_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    machine = report.machine_info()
    levels: list[int] = args.ivr_level_list
    print(f"bench ivr: {machine['cpu_model']} x {machine['nproc']}, load avg "
          f"{machine['loadavg_start']}; levels {levels}, steady {args.steady}s, "
          f"{args.setup_rate:g} calls/s", flush=True)
    reuse = _baseline_from_file(results_file, max(levels)) if args.ivr_baseline == "reuse" else {}
    max_hold = max(levels) / args.setup_rate + args.steady
    node = IvrNode(ivr_dir / "node", rtp_ports=max(400, 2 * max(levels) + 200),
                   min_prompt_s=max_hold + 15, loop=args.node_loop)
    baseline: BaselineSystem | None = None
    callee: Callee | None = None
    out: list[IvrResult] = []
    try:
        node.start()
        print(f"bench ivr: node up ({node.describe()})", flush=True)
        # warm-up: one call fills the TTS cache (espeak-ng runs once, not per caller)
        w = run_ivr_level(node, ivr_dir / "warmup", calls=1, rate=1, steady=0.5)
        print(f"bench ivr: warm-up call: completed {w.completed}, code right {w.right}",
              flush=True)
        if args.ivr_baseline == "run":
            callee = Callee(ivr_dir / "callee")
            callee.start()
            baseline = BaselineSystem(ivr_dir / "baseline",
                                      rtp_ports=max(400, 4 * max(levels) + 200))
            baseline.start(callee)
        top = max(levels)
        for n in levels:
            r = run_ivr_level(node, ivr_dir / f"ivr-{n}", calls=n, rate=args.setup_rate,
                              steady=args.steady,
                              profile_seconds=args.profile if n == top else 0.0)
            if baseline is not None and callee is not None:
                b = run_load(baseline, callee, ivr_dir / f"baseline-media-{n}",
                             label=f"media {n}", calls=n, rate=args.setup_rate,
                             steady=args.steady)
                r.baseline = _baseline_from_load(b)
            elif reuse:
                r.baseline = reuse if reuse["calls"] == n else (
                    _baseline_from_file(results_file, n))
            out.append(r)
            print(one_line(r), flush=True)
    finally:
        if baseline is not None:
            baseline.stop()
        if callee is not None:
            callee.stop()
        node.stop()
    meta = {"machine": machine, "command": "python -m bench " + " ".join(args.argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
            "duration_s": round(time.time() - started, 1), "steady": args.steady,
            "rate": args.setup_rate, "baseline": args.ivr_baseline}
    (ivr_dir / "ivr-results.json").write_text(json.dumps(
        {"meta": meta, "runs": [r.to_json() for r in out]}, indent=1))
    text = markdown(out, meta)
    print(text)
    if doc is not None:
        write_doc(doc, text)
        print(f"bench ivr: results written to {doc}")
    print(f"bench ivr: raw data in {ivr_dir / 'ivr-results.json'}")
    return 0


def one_line(r: IvrResult) -> str:
    ms = r.cpu_ms_per_call_second()
    ratio = r.ratio()
    return (f"ivr {r.calls}: completed {r.completed}/{r.calls}, code right {r.right}/{r.calls}"
            f" (wrong {sum(r.wrong.values())}, none {r.no_code}), "
            f"{ms.get('total', 0):.2f} CPU ms per call-s, {r.ports_per_core():.0f} ports/core"
            + (f", {ratio:.1f}x relay baseline ({r.baseline['cpu_ms_per_call_second']:.2f})"
               if ratio else ""))


def _by_group(r: IvrResult) -> str:
    ms = r.cpu_ms_per_call_second()
    parts = []
    for k, (u, s) in sorted(r.cpu_split_window.items()):
        tot = u + s
        parts.append(f"{k} {ms.get(k, 0):.2f} ({100 * u / tot:.0f}% user)" if tot
                     else f"{k} {ms.get(k, 0):.2f}")
    return " + ".join(parts)


def markdown(results: list[IvrResult], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        START,
        "",
        f"### Last IVR run: {meta['started']} ({meta['duration_s']:.0f} s)",
        "",
        f"- Machine: {m.get('nproc')} x {m.get('cpu_model')}, load average at start "
        f"{m.get('loadavg_start')}.",
        f"- Command: `{meta['command']}`; calls set up at {meta['rate']:g} calls/s, all up "
        f"together; steady {meta['steady']:g} s; baseline: {meta['baseline']}.",
        "",
        "| calls | completed | code right (all 4 digits) | wrong / no code | DTMF events "
        "| CPU ms per call-s (window) | by process group (ms per call-s) | IVR ports per core "
        "| relay baseline ms per call-s | IVR / relay CPU | machine cores busy (window) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ms = r.cpu_ms_per_call_second().get("total", 0.0)
        b = r.baseline.get("cpu_ms_per_call_second")
        ratio = r.ratio()
        lines.append(
            f"| {r.calls} | {r.completed}/{r.calls} | {r.right}/{r.calls} "
            f"| {sum(r.wrong.values())} / {r.no_code} | {r.dtmf_events} | {ms:.2f} "
            f"| {_by_group(r)} | {r.ports_per_core():.0f} "
            f"| {f'{b:.2f}' if b else '-'} | {f'{ratio:.1f}x' if ratio else '-'} "
            f"| {r.machine_cores_window:.2f} |")
    srcs = sorted({r.baseline.get("source", "") for r in results if r.baseline})
    if srcs:
        lines += ["", "Baseline: " + "; ".join(s for s in srcs if s) + "."]
    wrongs = {k: v for r in results for k, v in r.wrong.items()}
    if wrongs:
        lines += ["", f"Wrong codes collected (value: calls): {wrongs}."]
    prof_r = next((r for r in results if r.profile and "error" not in r.profile), None)
    if prof_r is not None:
        p = prof_r.profile
        lines += ["", f"py-spy of the node's Python process at {prof_r.calls} calls "
                  f"({p.get('samples', '?')} samples):", "",
                  "| function (self) | % of samples |", "|---|---|"]
        for name, pct in (p.get("self") or [])[:12]:
            lines.append(f"| `{name}` | {pct} |")
        lines += ["", "| function (inclusive) | % of samples |", "|---|---|"]
        for name, pct in (p.get("inclusive") or [])[:15]:
            lines.append(f"| `{name}` | {pct} |")
    lines += ["", END]
    return "\n".join(lines)


START = "<!-- bench:ivr:start (written by `python -m bench --ivr`; edits here are overwritten) -->"
END = "<!-- bench:ivr:end -->"


def write_doc(path: Path, block: str) -> None:
    """Replace the IVR results block of ``path``, or append it under an "IVR ports"
    heading at the end when there is none yet."""
    text = path.read_text() if path.exists() else ""
    pat = re.compile(re.escape(START.split(" (")[0]) + r".*?" + re.escape(END), re.S)
    if pat.search(text):
        text = pat.sub(lambda _m: block, text)
    else:
        text = text.rstrip("\n") + "\n\n## IVR ports\n\n" + block + "\n"
    path.write_text(text)
