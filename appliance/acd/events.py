"""What the ACD reports: every agent and queue change, past tense, with the tenant, the
time (``at``, the ``now`` of the input that caused it) and a ``cause``.

The edge publishes them (agent desktops, the supervisor's wallboard, the contact's
trace, the event spool to the controller); nothing has to be done about them. What the
edge must do is in :mod:`appliance.acd.commands`.

A contact's life ends with exactly one of: :class:`ContactEnded` (cause ``ended``),
:class:`ContactAbandoned`, :class:`ContactExited`, or :class:`CallbackFailed` with
``final``. Until then it is in the core (``Acd.contact``).
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.acd.model import Requirement
from appliance.acd.states import AgentState


@dataclass(frozen=True, kw_only=True, slots=True)
class AcdEvent:
    tenant_id: str
    at: float
    cause: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentStateChanged(AcdEvent):
    """``reason``: the not-ready reason code (``no_answer``, ``declined``, ``login`` or
    the tenant's own); ``medium`` while talking (``voice``, ``video``, ``email``...)."""

    agent: str
    state: AgentState
    previous: AgentState
    reason: str = ""
    contact: str | None = None
    medium: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakApproved(AcdEvent):
    """``pending``: the agent goes on break when its current contact and after-call
    work end."""

    agent: str
    group: str
    pending: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakRefused(AcdEvent):
    agent: str
    group: str
    on_break: int
    maximum: int


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakCancelled(AcdEvent):
    agent: str
    group: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactQueued(AcdEvent):
    """A contact entered the line: cause ``enqueued``, ``transfer``, ``no_answer``,
    ``declined``, ``failed``, ``withdrawn`` (back at its original place), ``callback_retry``
    or ``callback_answered``. ``position`` is 1 at the head."""

    contact: str
    queue: str
    priority: int
    position: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactOverflowed(AcdEvent):
    """An overflow rule applied: ``to_queue`` (moved, keeping the first enqueue time) or
    ``requirement`` (another way to match agents, added)."""

    contact: str
    queue: str
    to_queue: str | None
    requirement: Requirement | None


@dataclass(frozen=True, kw_only=True, slots=True)
class OfferMade(AcdEvent):
    contact: str
    agent: str
    queue: str
    ring_all: bool
    night_alert: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class OfferCancelled(AcdEvent):
    """An offer withdrawn by the core: cause ``answered_elsewhere`` (ring-all),
    ``abandoned``, ``logout``, ``agent_removed`` (a new configuration dropped the agent)."""

    contact: str
    agent: str
    queue: str


@dataclass(frozen=True, kw_only=True, slots=True)
class NoAnswer(AcdEvent):
    """An offer the agent did not take (R-5.2e): cause ``timeout`` (the queue's ring
    time passed), ``declined`` or ``failed`` (the edge could not ring the agent). The
    agent is now not ready."""

    contact: str
    agent: str
    queue: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactAnswered(AcdEvent):
    contact: str
    agent: str
    queue: str
    waited: float
    callback: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactAbandoned(AcdEvent):
    """The caller hung up before an answer (cause ``abandoned``), or a callback entry was
    cancelled (cause ``callback_cancelled``)."""

    contact: str
    queue: str
    waited: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactExited(AcdEvent):
    """The contact left the queue by its limits: cause ``max_wait`` or ``max_length``; or
    ``queue_removed``: a new configuration dropped its queue (``route`` ``""``)."""

    contact: str
    queue: str
    route: str
    waited: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactTransferred(AcdEvent):
    contact: str
    agent: str
    from_queue: str
    to_queue: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactEnded(AcdEvent):
    """The handled contact ended (cause ``ended``); ``talked`` from the answer."""

    contact: str
    agent: str
    queue: str
    talked: float


@dataclass(frozen=True, kw_only=True, slots=True)
class CallbackRequested(AcdEvent):
    contact: str
    queue: str
    number: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallbackPlaced(AcdEvent):
    contact: str
    queue: str
    agent: str
    attempt: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CallbackFailed(AcdEvent):
    """A callback attempt failed (cause ``failed`` or ``timeout``); ``final``: no attempt
    left, the entry is dropped."""

    contact: str
    queue: str
    attempt: int
    final: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class AcdReconfigured(AcdEvent):
    """A new configuration applies from now (``Acd.reconfigure``, cause
    ``reconfigured``): the names of the queues and the ids of the agents added, removed
    or changed, and the tenant settings changed (``max_on_break``, ``break_groups``,
    ``not_ready_reasons``, ``night_hours``). What follows from it (agents logged out,
    offers withdrawn, contacts leaving a removed queue...) comes as its own events."""

    queues_added: tuple[str, ...] = ()
    queues_removed: tuple[str, ...] = ()
    queues_changed: tuple[str, ...] = ()
    agents_added: tuple[str, ...] = ()
    agents_removed: tuple[str, ...] = ()
    agents_changed: tuple[str, ...] = ()
    settings_changed: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class DayReset(AcdEvent):
    """The daily counters started again (cause ``midnight`` or ``reset``)."""


# Events that end a contact's life in the core (see the module docstring).
def is_final(event: AcdEvent) -> bool:
    if isinstance(event, ContactEnded | ContactAbandoned | ContactExited):
        return True
    return isinstance(event, CallbackFailed) and event.final
