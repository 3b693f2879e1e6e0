"""The call detail record: the one final record every call leaves (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cdr:
    """One call's final record. Times are UNIX seconds; ``duration`` is talk time."""

    call_id: str
    tenant_id: str | None
    caller: str
    callee: str
    origin: str  # "trunk:<name>" or "ext:<number>"
    destination: str  # "ext:<number>", "trunk:<name>", "service:echo", "" when unrouted
    start: float
    answer: float | None
    end: float
    duration: float
    disposition: str
    sip_status: int
    hangup_side: str
    codec: str
