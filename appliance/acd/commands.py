"""What the edge must carry out for the ACD (imperative names), each with the tenant.

- :class:`Offer`: ring the agent (its phone, softphone or "PC + phone" line) with the
  contact; answer by itself when ``auto_answer``; report ``answered``, ``declined`` or
  ``no_answer`` (ring failure). The core times the ring itself and sends
  :class:`CancelOffer` when it ends an offer.
- :class:`CancelOffer`: stop ringing that agent for that contact.
- :class:`Announce`: tell the waiting caller its position and estimated wait.
- :class:`ExitQueue`: take the caller out of the queue to ``route`` (``""``: back to the
  flow's ``on_failure``; always so when its queue was removed by a new configuration).
- :class:`PlaceCallback`: call the customer back at ``number``; report
  ``callback_answered`` or ``callback_failed``. :class:`CancelCallback`: stop that call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True, slots=True)
class Offer:
    """``language`` and ``data`` are shown on ringing (screen pop); ``announce_agent``:
    say the agent's id to the caller before connecting; ``callback``: the customer on
    the line is one the platform called back."""

    tenant_id: str
    contact: str
    agent: str
    queue: str
    timeout: float
    auto_answer: bool
    language: str
    medium: str
    data: Mapping[str, str] = field(default_factory=dict)
    night_alert: bool = False
    announce_agent: bool = False
    ring_all: bool = False
    callback: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelOffer:
    tenant_id: str
    contact: str
    agent: str
    reason: str  # timeout, answered_elsewhere, abandoned, logout, agent_removed


@dataclass(frozen=True, kw_only=True, slots=True)
class Announce:
    """``ewt_seconds`` is None when no agent staffs the queue."""

    tenant_id: str
    contact: str
    queue: str
    position: int
    ewt_seconds: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ExitQueue:
    tenant_id: str
    contact: str
    queue: str
    route: str
    reason: str  # max_wait, max_length, queue_removed


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaceCallback:
    tenant_id: str
    contact: str
    queue: str
    agent: str
    number: str
    timeout: float
    attempt: int
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelCallback:
    tenant_id: str
    contact: str
    reason: str  # timeout, cancelled


Command = Offer | CancelOffer | Announce | ExitQueue | PlaceCallback | CancelCallback
