"""``make bench``: the node against Kamailio + rtpengine under the same SIPp load.

Phases (each on both systems, node first, interleaved so background load hits both alike):

1. media: for each level N (default 50, 100, 200), N concurrent two-way G.711 calls,
   set up at ``--setup-rate`` calls/s, all up together for ``--steady`` seconds;
2. pdd: ``--pdd-calls`` calls at ``--pdd-rate`` calls/s (default 20/s), each with
   ``--pdd-media`` s of media, SIP captured on loopback for per-hop delays; then the same
   without media (is the delay SIP processing, or the media sharing the event loop?);
3. signalling: ``--sig-calls`` calls without media at ``--setup-rate``: CPU per call set up
   and torn down.

Prints the tables, writes ``run/bench/results.json`` and the results section of
``docs/BENCHMARKS.md`` (``--no-write`` to skip).  ``--quick``: a smoke run of seconds.
``--ivr``: instead, the IVR ports benchmark (callers in prompt + digit collection, see
``bench/ivr.py``), with its own section of ``docs/BENCHMARKS.md``.
``--planpush``: instead, the node link benchmark (a plan change reaching 100 nodes over
QUIC, against 1 node, see ``bench/planpush.py``); it prints its results.
``--acd``: instead, the ACD routing benchmark (routing decision latency at 1,000 and
20,000 waiting callers with 5,000 agents, against 50 agents, see ``bench/acd.py``).
``--fanout``: instead, the ACD event fan-out benchmark (an agent's state change reaching
500 desktops' event streams on a real node, against 1, see ``bench/fanout.py``).
``--mix``: instead, the CPU cost of a monitored or assisted call's mixing per 20 ms
against a transcoding bridge's (``bench/mix.py``).
Everything runs on 127.0.0.0/8, bounded in calls and time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench import capture, report
from bench.load import LoadResult, run_load
from bench.systems import BaselineSystem, Callee, NodeSystem, System

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="50,100,200",
                   help="concurrent call counts of the media phase (comma separated)")
    p.add_argument("--steady", type=float, default=15.0,
                   help="seconds all calls of a level are up together")
    p.add_argument("--setup-rate", type=float, default=50.0, help="calls/s while ramping up")
    p.add_argument("--pdd-rate", type=float, default=20.0)
    p.add_argument("--pdd-calls", type=int, default=200)
    p.add_argument("--pdd-media", type=float, default=5.0, help="media seconds per PDD call")
    p.add_argument("--sig-calls", type=int, default=200)
    p.add_argument("--systems", default="node,baseline")
    p.add_argument("--node-loop", choices=("uvloop", "asyncio"),
                   help="the node's event loop (appliance.demo --loop; default: its default)")
    p.add_argument("--no-pdd-idle", action="store_true",
                   help="skip the PDD run without media (tells media load from SIP cost)")
    p.add_argument("--profile", type=float, default=8.0,
                   help="seconds of py-spy sampling of the node at the largest level and "
                        "in the signalling phase (0: off; skipped without py-spy)")
    p.add_argument("--quick", action="store_true", help="smoke run: 20 calls, a few seconds")
    p.add_argument("--workdir", type=Path, default=REPO / "run" / "bench")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    p.add_argument("--ivr", action="store_true",
                   help="run the IVR ports benchmark (bench/ivr.py) instead of the phases above")
    p.add_argument("--ivr-levels", default="50,100,200,300",
                   help="concurrent IVR callers per level (--ivr; --quick: 20)")
    p.add_argument("--ivr-baseline", choices=("run", "reuse", "none"), default="run",
                   help="relay baseline of --ivr: run Kamailio + rtpengine at the same N, "
                        "reuse run/bench/results.json, or none")
    p.add_argument("--planpush", action="store_true",
                   help="run the node link plan push benchmark (bench/planpush.py) instead")
    p.add_argument("--planpush-nodes", type=int, default=100,
                   help="simulated nodes of --planpush (--quick: 10)")
    p.add_argument("--planpush-rounds", type=int, default=20,
                   help="plan changes of --planpush (--quick: 3)")
    p.add_argument("--acd", action="store_true",
                   help="run the ACD routing latency benchmark (bench/acd.py) instead")
    p.add_argument("--fanout", action="store_true",
                   help="run the ACD event fan-out benchmark (bench/fanout.py) instead")
    p.add_argument("--mix", action="store_true",
                   help="run the call mixing micro benchmark (bench/mix.py) instead")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.quick:
        args.levels, args.steady = "20", 3.0
        args.pdd_calls, args.pdd_media, args.sig_calls = 40, 1.0, 40
        args.profile = min(args.profile, 2.0)
        args.ivr_levels = "20"
    args.ivr_level_list = [int(x) for x in str(args.ivr_levels).split(",") if x.strip()]
    if args.ivr and (not args.ivr_level_list
                     or not all(1 <= n <= 1000 for n in args.ivr_level_list)):
        p.error("--ivr-levels must be between 1 and 1000 calls")
    args.level_list = [int(x) for x in str(args.levels).split(",") if x.strip()]
    bad = [n for n in args.level_list if not 1 <= n <= 1000]
    if bad or not args.level_list:
        p.error("levels must be between 1 and 1000 calls")
    if not 1 <= args.pdd_calls <= 5000 or not 1 <= args.sig_calls <= 5000:
        p.error("--pdd-calls/--sig-calls must be between 1 and 5000")
    if not 0.5 <= args.steady <= 600 or not 0 <= args.pdd_media <= 120:
        p.error("--steady must be 0.5..600 s and --pdd-media 0..120 s")
    if not 0.1 <= args.setup_rate <= 500 or not 0.1 <= args.pdd_rate <= 500:
        p.error("rates must be between 0.1 and 500 calls/s")
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not set(args.system_list) <= {"node", "baseline"} or not args.system_list:
        p.error("--systems: node and/or baseline")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.planpush:
        from bench import planpush
        return planpush.main(["--quick"] if args.quick else
                             ["--nodes", str(args.planpush_nodes),
                              "--rounds", str(args.planpush_rounds),
                              "--json", str(args.workdir / "planpush.json")])
    if args.acd:
        from bench import acd
        return acd.main(["--quick"] if args.quick else
                        ["--json", str(args.workdir / "acd.json")])
    if args.fanout:
        from bench import fanout
        return fanout.main(["--quick"] if args.quick else
                           ["--json", str(args.workdir / "fanout.json")])
    if args.mix:
        from bench import mix
        return mix.main(["--quick"] if args.quick else
                        ["--json", str(args.workdir / "mix.json")])
    if args.ivr:
        from bench import ivr
        return ivr.run(args, args.workdir, None if args.no_write else args.doc)
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.time()
    machine = report.machine_info()
    print(f"bench: {machine['cpu_model']} x {machine['nproc']}, load avg "
          f"{machine['loadavg_start']}; levels {args.level_list}, steady {args.steady}s",
          flush=True)
    callee = Callee(workdir / "callee")
    systems: list[System] = []
    results: list[LoadResult] = []
    try:
        callee.start()
        max_calls = max([*args.level_list, args.pdd_calls, args.sig_calls])
        rtp_ports = max(400, 4 * max_calls + 200)
        for name in args.system_list:
            s: System
            if name == "node":
                s = NodeSystem(workdir / "node", rtp_ports=rtp_ports, loop=args.node_loop)
            else:
                s = BaselineSystem(workdir / "baseline", rtp_ports=rtp_ports)
            s.start(callee)  # type: ignore[attr-defined]
            systems.append(s)
            print(f"bench: {name} up ({s.describe()})", flush=True)
        top = max(args.level_list)
        for n in args.level_list:
            for s in systems:
                prof = args.profile if (s.name == "node" and n == top) else 0.0
                r = run_load(s, callee, workdir / f"{s.name}-media-{n}", label=f"media {n}",
                             calls=n, rate=args.setup_rate, steady=args.steady,
                             profile_seconds=prof)
                results.append(r)
                print(report.one_line(r), flush=True)
        wire = capture.available()
        for s in systems:
            r = run_load(s, callee, workdir / f"{s.name}-pdd", label="pdd",
                         calls=args.pdd_calls, rate=args.pdd_rate,
                         media_seconds=args.pdd_media, wire=wire)
            results.append(r)
            print(report.one_line(r), flush=True)
        for s in systems if not args.no_pdd_idle else []:
            r = run_load(s, callee, workdir / f"{s.name}-pdd-nomedia", label="pdd, no media",
                         calls=args.pdd_calls, rate=args.pdd_rate, media_seconds=0.0, wire=wire)
            results.append(r)
            print(report.one_line(r), flush=True)
        for s in systems:
            r = run_load(s, callee, workdir / f"{s.name}-signalling", label="signalling",
                         calls=args.sig_calls, rate=args.setup_rate, media_seconds=0.0,
                         profile_seconds=args.profile if s.name == "node" else 0.0)
            results.append(r)
            print(report.one_line(r), flush=True)
        node = next((s for s in systems if isinstance(s, NodeSystem)), None)
        cdr_summary = _cdr_summary(node) if node is not None else {}
    finally:
        for s in reversed(systems):
            s.stop()
        callee.stop()
    meta: dict[str, Any] = {
        "machine": machine, "args": {k: v for k, v in vars(args).items()
                                     if k not in ("workdir", "doc")},
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 1), "cdrs": cdr_summary,
    }
    (workdir / "results.json").write_text(json.dumps(
        {"meta": meta, "runs": [r.to_json() for r in results]}, indent=1))
    text = report.tables(results, meta)
    print(text)
    if not args.no_write:
        report.write_doc(args.doc, report.markdown(results, meta))
        print(f"bench: results written to {args.doc}")
    print(f"bench: raw data in {workdir / 'results.json'}")
    return 0


def _cdr_summary(node: NodeSystem) -> dict[str, int]:
    try:
        cdrs = node.cdrs()
    except Exception as exc:  # the report still stands without CDRs
        return {"error": 1, "detail": len(str(exc))}
    out: dict[str, int] = {}
    for c in cdrs:
        out[c.get("disposition", "?")] = out.get(c.get("disposition", "?"), 0) + 1
    return out


if __name__ == "__main__":
    sys.exit(main())
