"""Latency summaries the benchmarks print: count, p50, p99, max (nearest rank)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Latency:
    count: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` (0-1) percentile of sorted ``ordered`` (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def latency(samples_ms: Iterable[float], digits: int = 2) -> Latency:
    ordered = sorted(samples_ms)
    if not ordered:
        return Latency()
    return Latency(len(ordered), round(percentile(ordered, 0.5), digits),
                   round(percentile(ordered, 0.99), digits), round(ordered[-1], digits))
