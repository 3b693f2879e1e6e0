"""Tables of a bench run: plain text for the terminal, Markdown for docs/BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from bench.capture import percentiles
from bench.load import LoadResult

START = "<!-- bench:results:start (written by `make bench`; edits here are overwritten) -->"
END = "<!-- bench:results:end -->"

TARGET_CALLS_PER_CORE = 200
TARGET_FAILED_PCT = 0.1
TARGET_LOSS_PCT = 0.1
TARGET_CPU_RATIO = 3.0
TARGET_PDD_P99_MS = 20.0


def _version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "?"


def machine_info() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kamailio": _version(["kamailio", "-v"], r"version: kamailio ([\w.\-]+)"),
        "rtpengine": _version(["rtpengine", "--version"], r"Version: (\S+)"),
        "sipp": _version(["sipp", "-v"], r"SIPp (v[\w.\-]+)").rstrip("."),
        "loadavg_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "commit": _git(["rev-parse", "--short", "HEAD"]),
        "uncommitted_node_files": len([x for x in _git(["status", "--porcelain", "appliance"])
                                       .splitlines() if x.strip()]),
    }


def _git(args: list[str]) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[1])
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() if out.returncode == 0 else "?"


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def one_line(r: LoadResult) -> str:
    cores = r.steady_cores()
    rtp = r.rtp
    return (f"bench: {r.system:8s} {r.label:12s} calls={r.calls} ok={r.sipp['successful']} "
            f"failed={_f(r.failed_pct, 2)}% loss={_f(r.loss_pct, 3)}% "
            f"(a>b {_f(rtp.get('loss_ab_pct'), 3)}%, b>a {_f(rtp.get('loss_ba_pct'), 3)}%) "
            f"cpu={ {k: round(v, 2) for k, v in r.cpu_run.items()} } s over {r.wall_run:.1f} s"
            + (f", steady cores {cores['total']:.2f}" if cores else ""))


def _by(results: list[LoadResult], label: str) -> dict[str, LoadResult]:
    return {r.system: r for r in results if r.label == label}


def _levels(results: list[LoadResult]) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r.label.startswith("media") and r.label not in seen:
            seen.append(r.label)
    return seen


OVERLOAD_LATENCY_MS = 50.0


def overloaded(r: LoadResult) -> bool:
    """Did the system fall behind (queues growing) rather than just use CPU?"""
    lat = [r.rtp.get(k, {}).get("p99") for k in ("latency_ab_ms", "latency_ba_ms")]
    return (any(x is not None and x > OVERLOAD_LATENCY_MS for x in lat)
            or (r.loss_pct or 0.0) >= TARGET_LOSS_PCT or r.failed_pct > 0)


def calls_per_core(r: LoadResult) -> float | None:
    total = r.cpu_per_call_second().get("total")
    return 1.0 / total if total else None


def _groups_text(r: LoadResult, scale: float) -> str:
    parts = []
    for k, v in r.cpu_run.items():
        user, system = r.cpu_split_run.get(k, (0.0, 0.0))
        share = f" ({100 * user / (user + system):.0f}% user)" if user + system else ""
        parts.append(f"{k} {v * scale:.2f}{share}")
    return " + ".join(parts)


def _media_rows(results: list[LoadResult]) -> list[list[str]]:
    rows = []
    for label in _levels(results):
        by = _by(results, label)
        base = by.get("baseline")
        for name in ("node", "baseline"):
            r = by.get(name)
            if r is None:
                continue
            cps = r.cpu_per_call_second()
            cores = r.steady_cores()
            ratio = "-"
            if name == "node" and base is not None and base.cpu_per_call_second()["total"]:
                ratio = f"{cps['total'] / base.cpu_per_call_second()['total']:.1f}x"
            lat = r.rtp.get("latency_ab_ms", {}), r.rtp.get("latency_ba_ms", {})
            pps = r.calls * 2 / 0.02  # packets relayed per second with all calls up
            us_per_packet = cores["total"] / pps * 1e6 if cores.get("total") else None
            rows.append([
                str(r.calls), name + (" (overloaded)" if overloaded(r) else ""),
                f"{r.sipp['successful']}/{r.calls}", _f(r.failed_pct, 2), _f(r.loss_pct, 3),
                f"{_f(r.rtp.get('loss_ab_pct'), 3)} / {_f(r.rtp.get('loss_ba_pct'), 3)}",
                f"{_f(lat[0].get('p99'), 1)} / {_f(lat[1].get('p99'), 1)}",
                f"{cps['total'] * 1000:.2f}", _groups_text(r, 1000 / r.call_seconds()),
                _f(cores.get("total"), 2), _f(us_per_packet, 1), _f(calls_per_core(r), 0),
                ratio, _f(r.background_cores, 2),
            ])
    return rows


MEDIA_HEADER = ["calls", "system", "completed", "failed %", "RTP loss %",
                "loss a>b / b>a %", "media latency p99 a>b / b>a ms",
                "CPU ms per call-s", "by process group (ms per call-s)",
                "cores busy, all calls up", "CPU us per relayed packet",
                "calls per core (1000 / ms per call-s)", "node/baseline CPU",
                "other load on the machine (cores)"]


def _pdd_rows(results: list[LoadResult]) -> list[list[str]]:
    rows = []
    for r in (r for r in results if r.label.startswith("pdd")):
        name = r.system + ("" if r.label == "pdd" else f" ({r.label[5:]})")
        w = r.wire
        pdd = percentiles(w.get("pdd", []))
        added = percentiles(w.get("added", []))
        inv = percentiles(w.get("invite_added", []))
        fs = percentiles(w.get("fs_invite", []))
        rtd = percentiles(r.rtd_ms)
        rows.append([
            name, f"{r.rate:g}", f"{r.media_seconds:g}", f"{r.sipp['successful']}/{r.calls}",
            f"{_f(pdd.get('p50'))} / {_f(pdd.get('p99'))}",
            f"{_f(added.get('p50'))} / {_f(added.get('p99'))}",
            f"{_f(inv.get('p50'))} / {_f(inv.get('p99'))}",
            f"{_f(fs.get('p50'))} / {_f(fs.get('p99'))}" if fs else "-",
            f"{_f(rtd.get('p50'), 0)} / {_f(rtd.get('p99'), 0)}",
        ])
    return rows


PDD_HEADER = ["system", "calls/s", "media s per call", "completed", "PDD on the wire p50 / p99 ms",
              "added by system (INVITE + 180 paths) p50 / p99 ms",
              "INVITE path p50 / p99 ms", "feature server INVITE in->out p50 / p99 ms",
              "SIPp INVITE->180 p50 / p99 ms (1 ms ticks)"]


def _sig_rows(results: list[LoadResult]) -> list[list[str]]:
    rows = []
    by = _by(results, "signalling")
    base = by.get("baseline")
    for name, r in by.items():
        total = sum(r.cpu_run.values()) / r.calls * 1000 if r.calls else 0.0
        groups = " + ".join(f"{k} {v / r.calls * 1000:.2f}" for k, v in r.cpu_run.items())
        ratio = "-"
        if name == "node" and base is not None and sum(base.cpu_run.values()):
            ratio = f"{sum(r.cpu_run.values()) / sum(base.cpu_run.values()):.1f}x"
        rows.append([name, f"{r.rate:g}", f"{r.sipp['successful']}/{r.calls}",
                     _f(r.failed_pct, 2), f"{total:.2f}", groups,
                     f"{1000 / total:.0f}" if total else "-", ratio])
    return rows


SIG_HEADER = ["system", "calls/s", "completed", "failed %", "CPU ms per call",
              "by process group (ms per call)", "setups/s per core (CPU bound)",
              "node/baseline CPU"]


def verdicts(results: list[LoadResult]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    levels = _levels(results)
    if levels:
        top = _by(results, levels[-1])
        node, base = top.get("node"), top.get("baseline")
        if node is not None:
            per_core = calls_per_core(node)
            out.append((f">= {TARGET_CALLS_PER_CORE} calls per core at the node "
                        f"(CPU per call-second at {node.calls} calls)",
                        f"{_f(per_core, 0)} calls per core"
                        + (" (but overloaded at this level)" if overloaded(node) else ""),
                        None if per_core is None
                        else per_core >= TARGET_CALLS_PER_CORE and not overloaded(node)))
            out.append((f"failed calls < {TARGET_FAILED_PCT} % ({node.calls} calls)",
                        f"{node.failed_pct:.2f} %", node.failed_pct < TARGET_FAILED_PCT))
            loss = node.loss_pct
            out.append((f"RTP loss < {TARGET_LOSS_PCT} % ({node.calls} calls)",
                        f"{_f(loss, 3)} %", None if loss is None else loss < TARGET_LOSS_PCT))
            if base is not None and base.cpu_per_call_second()["total"]:
                ratio = node.cpu_per_call_second()["total"] / base.cpu_per_call_second()["total"]
                out.append((f"CPU within {TARGET_CPU_RATIO:g}x of Kamailio + rtpengine "
                            f"({node.calls} calls)", f"{ratio:.1f}x", ratio <= TARGET_CPU_RATIO))
    pdd = _by(results, "pdd").get("node")
    if pdd is not None and pdd.wire.get("added"):
        p99 = percentiles(pdd.wire["added"])["p99"]
        out.append((f"post-dial delay added by the node p99 < {TARGET_PDD_P99_MS:g} ms at "
                    f"{pdd.rate:g} calls/s", f"{p99:.1f} ms", p99 < TARGET_PDD_P99_MS))
    if pdd is not None and pdd.wire.get("fs_invite"):
        p99 = percentiles(pdd.wire["fs_invite"])["p99"]
        out.append((f"feature server INVITE in -> out p99 < {TARGET_PDD_P99_MS:g} ms at "
                    f"{pdd.rate:g} calls/s", f"{p99:.1f} ms", p99 < TARGET_PDD_P99_MS))
    return out


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _profiles(results: list[LoadResult]) -> list[dict[str, Any]]:
    return [{"label": r.label, **r.profile} for r in results if r.profile]


def tables(results: list[LoadResult], meta: dict[str, Any]) -> str:
    parts = ["", "== media: concurrent two-way G.711 calls", _text_table(MEDIA_HEADER,
                                                                      _media_rows(results))]
    if _pdd_rows(results):
        parts += ["", "== post-dial delay", _text_table(PDD_HEADER, _pdd_rows(results))]
    if _sig_rows(results):
        parts += ["", "== signalling only (no media)", _text_table(SIG_HEADER,
                                                                   _sig_rows(results))]
    for prof in _profiles(results):
        parts += ["", f"== node python profile ({prof['label']}, py-spy)"]
        if "error" in prof:
            parts.append(prof["error"])
        else:
            parts.append(f"event loop thread: {prof['samples']} samples; by area: "
                         + "; ".join(f"{n} {p}%" for n, p in prof["areas"]))
            parts.append("self:      " + "; ".join(f"{n} {p}%" for n, p in prof["self"][:12]))
            parts.append("inclusive: " + "; ".join(f"{n} {p}%" for n, p in
                                                   prof["inclusive"][:16]))
    parts += ["", "== targets"]
    for what, got, ok in verdicts(results):
        mark = "n/a" if ok is None else ("MET" if ok else "MISSED")
        parts.append(f"{mark:7s} {what}: {got}")
    return "\n".join(parts)


def markdown(results: list[LoadResult], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    a = meta["args"]
    out = [
        START,
        "",
        f"### Last run: {meta['started']} ({meta['duration_s']:.0f} s)",
        "",
        f"- Machine: {m['nproc']} x {m['cpu_model']}, Linux {m['kernel']}, Python "
        f"{m['python']}; Kamailio {m['kamailio']}, rtpengine {m['rtpengine']} (userspace, "
        f"`--table=-1`), SIPp {m['sipp']}. Load average when the run started: "
        f"{m['loadavg_start']}. Node code: commit {m.get('commit', '?')}"
        + (f" with {m['uncommitted_node_files']} uncommitted file(s) under appliance/"
           if m.get("uncommitted_node_files") else "")
        + (f", event loop `{a['node_loop']}`" if a.get("node_loop") else
           ", the node's default event loop") + ".",
        f"- Command: `{meta['command'].strip()}`; levels {a['level_list']} calls set up at "
        f"{a['setup_rate']:g} calls/s, all up together for {a['steady']:g} s; PDD: "
        f"{a['pdd_calls']} calls at {a['pdd_rate']:g} calls/s with {a['pdd_media']:g} s of "
        f"media each (and again without media); signalling: {a['sig_calls']} calls "
        "without media. \"Other load\" is CPU used on the machine outside the systems under "
        "test and the load generators (other jobs sharing it).",
    ]
    if meta.get("cdrs"):
        out.append(f"- Node CDRs after the run: {meta['cdrs']}.")
    out += ["", "#### Media", "", _md_table(MEDIA_HEADER, _media_rows(results)), ""]
    if _pdd_rows(results):
        out += ["#### Post-dial delay", "", _md_table(PDD_HEADER, _pdd_rows(results)), ""]
    if _sig_rows(results):
        out += ["#### Signalling only", "", _md_table(SIG_HEADER, _sig_rows(results)), ""]
    for prof in _profiles(results):
        if "error" in prof:
            continue
        out += [f"#### Node Python process, py-spy ({prof['label']}, {prof['samples']} "
                "samples of the event loop thread)", "",
                "| area (first match from the top of the stack) | % of samples |", "|---|---|"]
        out += [f"| {n} | {p} |" for n, p in prof["areas"]]
        out += ["", "| function (self) | % of samples |", "|---|---|"]
        out += [f"| `{n}` | {p} |" for n, p in prof["self"][:15]]
        out += ["", "| function (inclusive) | % of samples |", "|---|---|"]
        out += [f"| `{n}` | {p} |" for n, p in prof["inclusive"][:20]]
        out.append("")
    out += ["#### Targets (from the issue)", "", "| target | measured | |", "|---|---|---|"]
    for what, got, ok in verdicts(results):
        out.append(f"| {what} | {got} | {'n/a' if ok is None else ('met' if ok else 'MISSED')} |")
    out += ["", END]
    return "\n".join(out)


_SKELETON = """# Benchmarks

The node (Kamailio edge + Python B2BUA + Python media anchoring) against a plain
Kamailio proxy + rtpengine under the same SIPp load: `make bench` (`python -m bench`,
see `bench/__main__.py`). The section between the markers is rewritten by every run.

{results}
"""


def write_doc(path: Path, section: str) -> None:
    if path.exists():
        text = path.read_text()
        i, j = text.find(START), text.find(END)
        if i >= 0 and j > i:
            path.write_text(text[:i] + section + text[j + len(END):])
            return
        path.write_text(text.rstrip("\n") + "\n\n" + section + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_SKELETON.format(results=section))
