"""``python -m bench --fanout``: an agent's state change reaching many desktops.

A real node process (started as the end-to-end tests start it, with their plan: tenant
acme, agents alice and bob) and, in this one asyncio process, N concurrent readers of
``GET /api/v1/acd/events`` with acme's tenant token (aiohttp; each counts as connected
once it has the stream's ``: connected`` comment). alice signs in once; then each of
``--rounds`` rounds toggles her state (ready / not_ready) with ``PUT
/api/v1/agents/alice/state`` and measures, for every reader, the time from just before
the PUT was sent to the arrival of that change's ``AgentStateChanged`` event
(*send -> arrival*). Also shown: the node's publish time (the event's ``wall``) to
arrival, i.e. the fan-out without the HTTP request and the ACD decision.

Runs: the baseline (N = 1) and the main run (N = ``--readers``, default 500), on the
same node, in the same run; printed: p50 / p99 / max of each, the ratio of the p99s,
and whether the main run's p99 is under the target (200 ms). ``--quick``: N = 50,
5 rounds. The readers share this process's event loop and CPU with the node, so the
figures include the client's own parsing of N streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.latency import Latency, latency

TARGET_P99_MS = 200.0
CONNECT_TIMEOUT = 90.0  # all readers connected
ROUND_TIMEOUT = 10.0  # every reader has a round's event
AGENT = "alice"



@dataclass
class Run:
    label: str
    readers: int
    rounds: int
    connect_s: float
    missing: int = 0  # events that never arrived within ROUND_TIMEOUT
    send_to_arrival: Latency = field(default_factory=Latency)
    publish_to_arrival: Latency = field(default_factory=Latency)
    put_ms: Latency = field(default_factory=Latency)  # the PUT's own response time


def raise_open_files(needed: int) -> int:
    """Raise the soft limit of open files towards the hard one if ``needed`` is near
    it (the node, started after, inherits it). Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


class Reader:
    """One desktop: the tenant's event stream; the arrival times of alice's state
    changes, by round."""

    def __init__(self, bench: Fanout) -> None:
        self.bench = bench
        self.connected = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"},
                               timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)
                               ) as resp:
            resp.raise_for_status()
            while True:
                raw = await resp.content.readline()
                if not raw:
                    return
                if raw.startswith(b": connected"):
                    self.connected.set()
                elif raw.startswith(b"data: "):
                    arrived = time.perf_counter()
                    arrived_wall = time.time()
                    doc = json.loads(raw[6:])
                    if doc.get("type") == "AgentStateChanged" and doc.get("agent") == AGENT:
                        self.bench.arrived(doc, arrived, arrived_wall)


class Fanout:
    """The rounds of one run: what was sent, and what each reader saw."""

    def __init__(self) -> None:
        self.expect: str | None = None  # the state of the current round
        self.sent = 0.0
        self.send_to_arrival: list[float] = []
        self.publish_to_arrival: list[float] = []
        self.count = 0
        self.all_in = asyncio.Event()
        self.readers = 0

    def arrived(self, doc: dict[str, Any], at: float, at_wall: float) -> None:
        if self.expect is None or doc.get("state") != self.expect:
            return
        self.send_to_arrival.append((at - self.sent) * 1000)
        if isinstance(doc.get("wall"), int | float):
            self.publish_to_arrival.append(max(0.0, (at_wall - doc["wall"]) * 1000))
        self.count += 1
        if self.count >= self.readers:
            self.all_in.set()


async def _sign_in(session: aiohttp.ClientSession, api: str) -> str:
    from tests.e2e.conftest import AGENT_PASSWORDS
    async with session.post(f"{api}/agent-sessions", json={
            "domain": "acme.example", "agent": AGENT,
            "password": AGENT_PASSWORDS[AGENT]}) as resp:
        if resp.status != 201:
            raise RuntimeError(f"sign-in of {AGENT}: HTTP {resp.status}")
        return str((await resp.json())["token"])


async def _set_state(session: aiohttp.ClientSession, api: str, token: str, state: str) -> None:
    async with session.put(f"{api}/agents/{AGENT}/state", json={"state": state},
                           headers={"Authorization": f"Bearer {token}"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"PUT state {state}: HTTP {resp.status} {await resp.text()}")


async def run_one(label: str, api: str, tenant_token: str, agent_token: str,
                  control: aiohttp.ClientSession, readers: int, rounds: int,
                  state: list[str]) -> Run:
    """``state[0]``: alice's current state (ready or not_ready), kept across runs."""
    bench = Fanout()
    bench.readers = readers
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        pool = [Reader(bench) for _ in range(readers)]
        started = time.perf_counter()
        for r in pool:
            r.task = asyncio.create_task(r.run(session, f"{api}/acd/events", tenant_token))
        waiting = [asyncio.create_task(r.connected.wait()) for r in pool]
        try:
            done, pending = await asyncio.wait(waiting, timeout=CONNECT_TIMEOUT)
            failed = [r.task for r in pool if r.task is not None and r.task.done()]
            if pending or failed:
                detail = next((repr(t.exception()) for t in failed if t.exception()), "")
                raise RuntimeError(f"{label}: {len(done)} of {readers} readers connected "
                                   f"within {CONNECT_TIMEOUT} s {detail}")
            connect_s = round(time.perf_counter() - started, 2)
            print(f"bench --fanout: {label}: {readers} readers connected in {connect_s} s",
                  flush=True)
            await asyncio.sleep(0.5)  # let the connection burst settle
            put_ms: list[float] = []
            missing = 0
            for _ in range(rounds):
                target = "ready" if state[0] != "ready" else "not_ready"
                bench.count = 0
                bench.all_in.clear()
                bench.expect = target
                bench.sent = time.perf_counter()
                await _set_state(control, api, agent_token, target)
                put_ms.append((time.perf_counter() - bench.sent) * 1000)
                state[0] = target
                try:
                    await asyncio.wait_for(bench.all_in.wait(), ROUND_TIMEOUT)
                except TimeoutError:
                    missing += readers - bench.count
                bench.expect = None
                await asyncio.sleep(0.1)
        finally:
            for w in waiting:
                w.cancel()
            for r in pool:
                if r.task is not None:
                    r.task.cancel()
            await asyncio.gather(*(r.task for r in pool if r.task is not None),
                                 return_exceptions=True)
    return Run(label, readers, rounds, connect_s, missing,
               latency(bench.send_to_arrival), latency(bench.publish_to_arrival),
               latency(put_ms))


async def run_all(api: str, readers: int, rounds: int) -> list[Run]:
    from tests.e2e.conftest import API_TOKENS
    runs = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as control:
        agent_token = await _sign_in(control, api)  # alice: not ready (login)
        state = ["not_ready"]
        for label, n in (("baseline", 1), ("main", readers)):
            runs.append(await run_one(label, api, API_TOKENS["acme"], agent_token, control,
                                      n, rounds, state))
    return runs


def report(runs: list[Run]) -> tuple[list[str], bool]:
    lines = ["| run | readers | rounds | send -> arrival p50 / p99 / max | "
             "publish -> arrival p50 / p99 / max | PUT p50 | missing |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        s, p = r.send_to_arrival, r.publish_to_arrival
        lines.append(f"| {r.label} | {r.readers} | {r.rounds} | {s.p50_ms} / {s.p99_ms} / "
                     f"{s.max_ms} ms | {p.p50_ms} / {p.p99_ms} / {p.max_ms} ms | "
                     f"{r.put_ms.p50_ms} ms | {r.missing} |")
    base, main = runs[0], runs[-1]
    ratio = main.send_to_arrival.p99_ms / base.send_to_arrival.p99_ms \
        if base.send_to_arrival.p99_ms else float("inf")
    ok = main.missing == 0 and main.send_to_arrival.count > 0 \
        and main.send_to_arrival.p99_ms < TARGET_P99_MS
    lines.append(f"p99 {main.readers} readers / 1 reader: x{ratio:.1f}; target p99 < "
                 f"{TARGET_P99_MS:.0f} ms at {main.readers} readers: "
                 f"{'met' if ok else 'NOT met'}")
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench --fanout",
                                description=__doc__.splitlines()[0])
    p.add_argument("--readers", type=int, default=500)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="smoke run: 50 readers, 5 rounds")
    p.add_argument("--json", type=Path, help="also write the results there")
    args = p.parse_args(argv)
    if args.quick:
        args.readers, args.rounds = 50, 5
    if not (1 <= args.readers <= 5000 and 1 <= args.rounds <= 1000):
        p.error("sizes out of range")
    files = raise_open_files(args.readers + 512)
    if files < args.readers + 256:
        p.error(f"open-file limit {files}: too low for {args.readers} readers")
    print(f"bench --fanout: Python {platform.python_version()} on {platform.machine()}; "
          f"{args.readers} readers, {args.rounds} rounds, open-file limit {files}", flush=True)
    from tests.e2e.conftest import start_node
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        node = start_node(Path(tmp))
        try:
            api = node.manifest["api"]["url"]
            runs = asyncio.run(asyncio.wait_for(
                run_all(api, args.readers, args.rounds),
                CONNECT_TIMEOUT * 2 + 2 * args.rounds * (ROUND_TIMEOUT + 1) + 60))
        finally:
            node.stop()
    lines, ok = report(runs)
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": [asdict(r) for r in runs], "report": lines,
                                         "target_met": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
