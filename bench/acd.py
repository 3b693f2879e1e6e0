"""``python -m bench --acd``: ACD routing decision latency by queue depth.

One process, the pure core only (no I/O): what a routing decision costs the feature
server's event loop. A tenant with ``--agents`` agents in ``--queues`` queues (each
agent in its home queue and one or two others; 20 skills, each agent with its home
queue's three and two more, at levels 1-10, or 1-5 for the three in ten who are
juniors; the queues' strategies a mix of longest idle, best skill, least occupied and
round robin). Callers are *hard* (one of their queue's skills at level 8-10: few
agents have it, so they make the backlog) or *easy* (no skill, or a low level: offered
at once when a free agent matches; juniors are often free, as no hard caller is for
them), and arrive so that about 85 % of the agents talk.

Setup: all agents log in, ``--depth`` hard callers arrive, the agents become ready one
by one and take (answer) what they match, hard callers arrive until ``--depth`` wait
again and easy ones until 85 % of the agents talk. ``--ops / 2`` untimed operations
as below warm it up (the first contact of each requirement in a queue builds that
requirement's pool, once). Then ``--ops`` times:

- *agent ready*: a random talking agent's call ends, its after-call work is done, and
  the timed ``set_ready`` routes it: it takes a waiting caller (an ``Offer``:
  "ready -> Offer") or stays ready;
- *arrivals*: timed ``enqueue`` of hard callers until ``--depth`` wait again, then of
  easy callers while fewer than 85 % of the agents talk: offered at once when a ready
  agent matches ("enqueue -> Offer"), otherwise it waits ("enqueue, waits") and the
  next agent ready for it takes it.

Each timed call includes the whole routing decision (indexes, offer, events). Offers
are answered (untimed) so the agent stays busy. Reported per kind: count, p50, p99,
max. Runs: the house baseline (50 agents, 10 callers, 2 queues), the main run
(5,000 agents, 1,000 callers, 200 queues) and the main run at 20x the depth (20,000
callers); printed ratios: p99 at 20x depth / p99 at 1x (target <= 2), main / baseline.
Target: p99 < 5 ms. Python's garbage collector stays on, as on a node (``--no-gc``:
off while measuring, to see its share of the tail).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.acd import Acd, AgentConfig, Offer, QueueConfig, TenantAcdConfig
from bench.latency import Latency, latency

SKILLS = [f"s{i:02d}" for i in range(20)]
STRATEGIES = ("longest_idle", "best_skill", "least_occupied", "round_robin")
OCCUPANCY = 0.85  # share of the agents kept talking by easy callers
TARGET_P99_MS = 5.0
TARGET_DEPTH_RATIO = 2.0



@dataclass
class Run:
    label: str
    agents: int
    queues: int
    depth: int
    ops: int
    setup_s: float
    kinds: dict[str, Latency] = field(default_factory=dict)


def _latency(samples_ns: list[int]) -> Latency:
    return latency((x / 1e6 for x in samples_ns), digits=4)


def build_config(agents: int, queues: int, rng: random.Random) -> TenantAcdConfig:
    names = [f"q{i:03d}" for i in range(queues)]
    qcfg = tuple(QueueConfig(name=n, strategy=STRATEGIES[i % len(STRATEGIES)],  # type: ignore[arg-type]
                             priority=i % 3, ring_timeout=3600, wrap_up=None)
                 for i, n in enumerate(names))
    acfg = []
    for i in range(agents):
        home = i % queues
        own = [names[home]]
        while len(own) < min(queues, 1 + rng.randint(1, 2)):
            extra = names[rng.randrange(queues)]
            if extra not in own:
                own.append(extra)
        top = 5 if i % 10 < 3 else 10  # three in ten are juniors: levels up to 5
        skills = {s: rng.randint(1, top) for s in _queue_skills(home)}
        for s in rng.sample(SKILLS, 2):
            skills.setdefault(s, rng.randint(1, top))
        acfg.append(AgentConfig(id=f"a{i:05d}", skills=skills, queues=tuple(own)))
    return TenantAcdConfig(tenant_id="bench", queues=qcfg, agents=tuple(acfg))


def _queue_skills(index: int) -> list[str]:
    return [SKILLS[(3 * index + k) % len(SKILLS)] for k in range(3)]


class Scenario:
    """Drives one Acd like an edge would, timing the routing inputs."""

    def __init__(self, agents: int, queues: int, depth: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.queues = queues
        self.depth = depth
        self.acd = Acd(build_config(agents, queues, self.rng))
        self.agent_ids = [a.id for a in self.acd.config.agents]
        self.now = 0.0
        self.next_contact = 0
        self.talking: dict[str, str] = {}  # agent -> contact
        self.talking_list: list[str] = []
        self.waiting = 0
        self.samples: dict[str, list[int]] = {"enqueue -> Offer": [], "ready -> Offer": [],
                                               "enqueue, waits": [], "ready, stays idle": []}

    def tick(self) -> float:
        self.now += 0.001
        return self.now

    def _answer(self) -> bool:
        """Answer every Offer (untimed); True if there was one."""
        offers = [c for c in self.acd.commands() if isinstance(c, Offer)]
        for o in offers:
            self.acd.answered(o.contact, o.agent, self.tick())
            self.talking[o.agent] = o.contact
            self.talking_list.append(o.agent)
        self.acd.events()
        return bool(offers)

    def _contact_args(self, hard: bool) -> tuple[str, dict[str, int]]:
        """A hard caller needs a skill of its queue at level 8-10, which few agents have;
        an easy one needs no skill or a low level."""
        q = self.rng.randrange(self.queues)
        skill = self.rng.choice(_queue_skills(q))
        if hard:
            return f"q{q:03d}", {skill: self.rng.randint(8, 10)}
        if self.rng.random() < 0.3:
            return f"q{q:03d}", {}
        return f"q{q:03d}", {skill: self.rng.randint(1, 3)}

    def enqueue(self, hard: bool, timed: bool) -> None:
        queue, skills = self._contact_args(hard)
        cid = f"c{self.next_contact}"
        self.next_contact += 1
        now = self.tick()
        t0 = time.perf_counter_ns()
        self.acd.enqueue(cid, queue, now, skills=skills)
        dt = time.perf_counter_ns() - t0
        offered = self._answer()
        if not offered:
            self.waiting += 1
        if timed:
            self.samples["enqueue -> Offer" if offered else "enqueue, waits"].append(dt)

    def agent_ready(self, agent: str, timed: bool) -> None:
        now = self.tick()
        t0 = time.perf_counter_ns()
        self.acd.set_ready(agent, now)
        dt = time.perf_counter_ns() - t0
        offered = self._answer()
        if offered:
            self.waiting -= 1
        if timed:
            self.samples["ready -> Offer" if offered else "ready, stays idle"].append(dt)

    def setup(self) -> None:
        for a in self.agent_ids:
            self.acd.login(a, self.tick())
        for _ in range(self.depth):
            self.enqueue(hard=True, timed=False)
        for a in self.agent_ids:
            self.agent_ready(a, timed=False)
        self.top_up(timed=False)
        self.keep_busy(timed=False)

    def top_up(self, timed: bool) -> None:
        """Hard callers until ``depth`` wait again."""
        while self.waiting < self.depth:
            self.enqueue(hard=True, timed=timed)

    def end_random_call(self) -> str | None:
        while self.talking_list:
            i = self.rng.randrange(len(self.talking_list))
            agent = self.talking_list[i]
            self.talking_list[i] = self.talking_list[-1]
            self.talking_list.pop()
            contact = self.talking.pop(agent, None)
            if contact is not None:
                self.acd.ended(contact, self.tick())  # after-call work until done
                self.acd.commands()
                self.acd.events()
                return agent
        return None

    def measure(self, ops: int, timed: bool = True) -> None:
        for _ in range(ops):
            agent = self.end_random_call()
            if agent is None:
                break
            self.agent_ready(agent, timed=timed)
            self.top_up(timed=timed)
            self.keep_busy(timed=timed)

    def keep_busy(self, timed: bool) -> None:
        """Easy callers while fewer than OCCUPANCY of the agents talk (the first one no
        free agent matches waits, and ends the burst)."""
        while len(self.talking) < OCCUPANCY * len(self.agent_ids):
            before = self.waiting
            self.enqueue(hard=False, timed=timed)
            if self.waiting > before:
                break


def run_one(label: str, agents: int, queues: int, depth: int, ops: int, seed: int,
            gc_off: bool = False) -> Run:
    started = time.perf_counter()
    sc = Scenario(agents, queues, depth, seed)
    sc.setup()
    sc.measure(ops // 2, timed=False)  # warm up: every requirement met has its pool
    setup_s = time.perf_counter() - started
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        sc.measure(ops)
    finally:
        gc.enable()
    problems = sc.acd.audit() if agents * depth <= 5_000_000 else []
    if problems:
        raise RuntimeError(f"bench: the core is inconsistent: {problems[:3]}")
    snap = sc.acd.snapshot(sc.now)
    waiting = sum(q.waiting for q in snap.queues)
    if waiting != sc.waiting or not depth <= waiting <= depth + 0.1 * depth + 10:
        raise RuntimeError(f"bench: {waiting} waiting, expected about {depth}")
    return Run(label, agents, queues, depth, ops, round(setup_s, 2),
               {k: _latency(v) for k, v in sc.samples.items()})


def report(runs: list[Run]) -> str:
    lines = [f"{'run':<36} {'decision':<20} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'max ms':>8}"]
    for r in runs:
        for kind, lat in r.kinds.items():
            lines.append(f"{r.label:<36} {kind:<20} {lat.count:>7} {lat.p50_ms:>8.3f} "
                         f"{lat.p99_ms:>8.3f} {lat.max_ms:>8.3f}")
    return "\n".join(lines)


def ratios(runs: list[Run]) -> tuple[list[str], bool]:
    by = {r.label.split(":")[0]: r for r in runs}
    out: list[str] = []
    ok = True
    base, deep, small = by.get("main"), by.get("deep"), by.get("baseline")
    for kind in ("enqueue -> Offer", "ready -> Offer"):
        if base is not None:
            p99 = base.kinds[kind].p99_ms
            worst = max(p99, deep.kinds[kind].p99_ms if deep else 0.0)
            fine = worst < TARGET_P99_MS
            ok &= fine
            out.append(f"{kind}: p99 {p99:.3f} ms at 1x depth, worst {worst:.3f} ms "
                       f"(target < {TARGET_P99_MS} ms: {'met' if fine else 'MISSED'})")
        if base is not None and deep is not None and base.kinds[kind].p99_ms:
            r = deep.kinds[kind].p99_ms / base.kinds[kind].p99_ms
            fine = r <= TARGET_DEPTH_RATIO
            ok &= fine
            out.append(f"{kind}: p99 at 20x depth / 1x = {r:.2f} "
                       f"(target <= {TARGET_DEPTH_RATIO}: {'met' if fine else 'MISSED'})")
        if base is not None and small is not None and small.kinds[kind].p99_ms:
            r = base.kinds[kind].p99_ms / small.kinds[kind].p99_ms
            out.append(f"{kind}: p99 main / baseline (50 agents, 10 callers) = {r:.2f}")
    return out, ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench --acd",
                                description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=5000)
    p.add_argument("--queues", type=int, default=200)
    p.add_argument("--depth", type=int, default=1000)
    p.add_argument("--deep-factor", type=int, default=20)
    p.add_argument("--ops", type=int, default=20000,
                   help="agent-ready operations per run (each followed by arrivals)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="smoke run: small and short")
    p.add_argument("--json", type=Path, help="also write the results there")
    p.add_argument("--no-gc", action="store_true",
                   help="garbage collector off while measuring (how much of the tail is GC)")
    args = p.parse_args(argv)
    if args.quick:
        args.agents, args.queues, args.depth, args.ops = 500, 20, 100, 2000
    if not (1 <= args.agents <= 50_000 and 1 <= args.queues <= 2000
            and 1 <= args.depth <= 100_000 and 1 <= args.deep_factor <= 100
            and 1 <= args.ops <= 1_000_000):
        p.error("sizes out of range")
    print(f"bench --acd: Python {platform.python_version()} on {platform.machine()}; "
          f"{args.ops} agent-ready operations per run", flush=True)
    plan = [
        ("baseline: 50 agents, 10 callers", 50, 2, 10),
        (f"main: {args.agents} agents, {args.depth} callers", args.agents, args.queues,
         args.depth),
        (f"deep: {args.agents} agents, {args.depth * args.deep_factor} callers",
         args.agents, args.queues, args.depth * args.deep_factor),
    ]
    runs = []
    for label, agents, queues, depth in plan:
        run = run_one(label, agents, queues, depth, args.ops, args.seed, gc_off=args.no_gc)
        print(f"bench --acd: {label} ({queues} queues) set up in {run.setup_s} s", flush=True)
        runs.append(run)
    print(report(runs))
    lines, ok = ratios(runs)
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": [asdict(r) for r in runs], "ratios": lines,
                                         "targets_met": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
