"""Daily counters per agent and per queue, the service level, and the wallboard view.

Counters are plain numbers the core adds to as things happen; the views the core hands
out are copies. Times are seconds. "Today" is since the last ``DayReset``.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.acd.model import QueueConfig
from appliance.acd.states import AgentState


@dataclass
class AgentCounters:
    """One agent's day (R-5.2c): contacts offered, answered, not answered, declined;
    time ready, not ready ("busy") and on break with the number of periods; talk (with
    hold), hold alone, after-call work, ringing; outbound calls and their time."""

    offered: int = 0
    answered: int = 0
    no_answer: int = 0
    declined: int = 0
    talk_time: float = 0.0
    hold_time: float = 0.0
    wrap_time: float = 0.0
    ringing_time: float = 0.0
    ready_time: float = 0.0
    not_ready_periods: int = 0
    not_ready_time: float = 0.0
    break_periods: int = 0
    break_time: float = 0.0
    outbound_calls: int = 0
    outbound_time: float = 0.0


@dataclass
class QueueCounters:
    """One queue's day. ``arrived`` counts every contact that asked to enter (also those
    refused by ``max_length``); ``answered_in_target`` within the service level target;
    abandons split by ``short_abandon`` and the target for the service level."""

    arrived: int = 0
    offered: int = 0
    answered: int = 0
    answered_in_target: int = 0
    wait_time_answered: float = 0.0
    abandoned: int = 0
    abandoned_short: int = 0
    abandoned_in_target: int = 0
    exited_max_wait: int = 0
    exited_max_length: int = 0
    overflowed_in: int = 0
    overflowed_out: int = 0
    transferred_in: int = 0
    no_answer: int = 0
    callbacks_requested: int = 0
    callbacks_placed: int = 0
    callbacks_failed: int = 0
    callbacks_dropped: int = 0
    callbacks_connected: int = 0
    talk_time: float = 0.0


def service_level(cfg: QueueConfig, c: QueueCounters) -> float | None:
    """The share of contacts answered within ``service_level_target`` (None before any).

    Abandons shorter than ``short_abandon`` never count. The others, by
    ``sl_abandoned``: ``missed`` all count as not met; ``ignored`` not at all;
    ``ignored_in_target`` those within the target do not count, later ones are missed;
    ``met_in_target`` those within the target count as met, later ones as missed.
    Contacts that left by ``max_wait`` count as missed; callbacks are not counted.
    """
    counted_abandons = c.abandoned - c.abandoned_short
    late = counted_abandons - c.abandoned_in_target
    met = c.answered_in_target
    total = c.answered + c.exited_max_wait
    mode = cfg.sl_abandoned
    if mode == "missed":
        total += counted_abandons
    elif mode == "ignored_in_target":
        total += late
    elif mode == "met_in_target":
        total += counted_abandons
        met += c.abandoned_in_target
    return met / total if total else None


@dataclass(frozen=True, kw_only=True)
class QueueSnapshot:
    name: str
    waiting: int  # in line (live callers and callback entries)
    ringing: int  # offered to an agent now
    callbacks: int  # callback entries, in line or being called
    longest_wait: float  # of the contacts in line (0 when none)
    service_level: float | None
    service_level_met: bool | None
    answered: int
    abandoned: int
    staffed: int  # agents of the queue ready, ringing, talking or in after-call work
    ready: int


@dataclass(frozen=True, kw_only=True)
class AgentSnapshot:
    id: str
    state: AgentState
    reason: str
    in_state: float  # seconds in the current state
    contact: str | None
    queue: str | None
    medium: str
    outbound: bool
    break_pending: bool


@dataclass(frozen=True, kw_only=True)
class TeamSnapshot:
    logged_in: int
    ready: int
    busy: int  # ringing, talking, on hold, in after-call work
    not_ready: int
    on_break: int


@dataclass(frozen=True, kw_only=True)
class AcdSnapshot:
    tenant_id: str
    at: float
    queues: tuple[QueueSnapshot, ...]
    agents: tuple[AgentSnapshot, ...]
    team: TeamSnapshot


@dataclass(frozen=True, kw_only=True)
class ContactView:
    """A contact as the core holds it (``Acd.contact``)."""

    id: str
    queue: str
    state: str
    priority: int
    enqueued_at: float
    offered_to: tuple[str, ...]
    agent: str | None
    live: bool  # the caller is on the line (False: a callback entry not yet reached)
    callback_number: str
    requirements: tuple[tuple[tuple[str, int], ...], ...]
    language: str
    medium: str
