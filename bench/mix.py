"""Micro benchmark: CPU cost of mixing a monitored call (``Conference``'s work per 20 ms
tick: decode each leg's frame, ``Mixer.mix``, encode each leg's own mix) against the
baseline of a transcoding two-party bridge's work for the same 20 ms (decode + encode of
two frames), in the same process.

    python -m bench --mix            # 3-party (supervisor) and 2-party + prompt (assist)

Prints µs per tick (median of ``--rounds`` runs of ``--ticks`` ticks), the ratio to the
baseline, and mixed calls per core (20 ms of CPU / cost per tick).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from appliance.media import g711
from appliance.media.mixer import Mixer

FRAME = 160


def _frames(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [g711.encode("PCMU", rng.integers(-8000, 8000, FRAME, dtype=np.int16))
            for _ in range(n)]


def _time(fn: Any, ticks: int, rounds: int) -> float:
    """Median µs per tick."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for k in range(ticks):
            fn(k)
        out.append((time.perf_counter() - start) / ticks * 1e6)
    return statistics.median(out)


def run(ticks: int, rounds: int) -> dict[str, float]:
    payloads = {leg: _frames(64, n) for n, leg in enumerate(("caller", "agent", "sup"))}

    def bridge(k: int) -> None:  # a transcoding bridge: each direction decoded + encoded
        for leg in ("caller", "agent"):
            g711.encode("PCMA", g711.decode("PCMU", payloads[leg][k % 64]))

    monitor = Mixer(FRAME)
    for leg in payloads:
        monitor.add(leg)
    monitor.whisper("sup", "agent")

    def three(k: int) -> None:
        frames = {leg: g711.decode("PCMU", p[k % 64]) for leg, p in payloads.items()}
        for out in monitor.mix(frames).values():
            g711.encode("PCMU", out)

    assist = Mixer(FRAME)
    for leg in ("caller", "agent"):
        assist.add(leg)
    assist.add("prompt", deaf=True, listeners=("caller", "agent"))
    prompt = np.zeros(FRAME, dtype=np.int16)

    def two_and_prompt(k: int) -> None:
        frames: dict[str, Any] = {leg: g711.decode("PCMU", payloads[leg][k % 64])
                                  for leg in ("caller", "agent")}
        frames["prompt"] = prompt
        for leg, out in assist.mix(frames).items():
            if leg != "prompt":
                g711.encode("PCMU", out)

    base = _time(bridge, ticks, rounds)
    return {"bridge_us": base, "monitor_us": _time(three, ticks, rounds),
            "assist_us": _time(two_and_prompt, ticks, rounds)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench --mix")
    p.add_argument("--ticks", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.ticks, args.rounds = 2000, 3
    got = run(args.ticks, args.rounds)
    base = got["bridge_us"]
    print("| work per 20 ms | µs | / baseline | calls per core |")
    print("|---|---|---|---|")
    for key, label in (("bridge_us", "baseline: transcoding bridge, 2 legs"),
                       ("monitor_us", "monitored call: 3 legs mixed"),
                       ("assist_us", "assisted IVR: 2 legs + prompt mixed")):
        print(f"| {label} | {got[key]:.1f} | x{got[key] / base:.2f} | "
              f"{20000 / got[key]:.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(got, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
