"""``python -m appliance.trace --file trace.jsonl [--call ID] [--tenant T]``: print one
call's trace (the latest call by default) as JSON, one step per line.

Every line of the node's trace file is one step of one call (received, routed, IVR
steps with inputs and variable changes, DTMF, transfers, ended), with its tenant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def read_trace(path: Path, call: str | None = None,
               tenant: str | None = None) -> list[dict[str, Any]]:
    """The steps of ``call`` (or of the latest call), restricted to ``tenant`` if given."""
    steps = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                step = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if not isinstance(step, dict) or not isinstance(step.get("call"), str):
                continue
            if tenant is not None and step.get("tenant") != tenant:
                continue
            steps.append(step)
    if call is None:
        if not steps:
            return []
        call = steps[-1]["call"]
    return [s for s in steps if s.get("call") == call]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print a call's trace as JSON lines")
    parser.add_argument("--file", type=Path, required=True, help="the node's trace.jsonl")
    parser.add_argument("--call", help="call id (default: the latest call)")
    parser.add_argument("--tenant", help="only this tenant's calls")
    args = parser.parse_args(argv)
    if not args.file.exists():
        print(f"error: no trace file at {args.file}", file=sys.stderr)
        return 2
    steps = read_trace(args.file, args.call, args.tenant)
    if not steps:
        print("error: no such call", file=sys.stderr)
        return 1
    for step in steps:
        print(json.dumps(step, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
