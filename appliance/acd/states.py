"""Agent and contact states, and the tables of what each state accepts.

An input the table does not list for the current state is refused with
:class:`~appliance.acd.errors.InvalidTransition` (agents) or
:class:`~appliance.acd.errors.ContactStateError` (contacts), naming both, and changes
nothing. Where a row lists several targets the core picks one: e.g. a call's end goes
to ``wrap_up``, or straight to ``ready`` when the queue has no after-call work, or to
``break`` when a break was approved during the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    NOT_READY = "not_ready"  # "busy" on the desktop; carries a reason code
    RESERVED = "reserved"  # an offer rings (or a callback is being dialled for the agent)
    TALKING = "talking"  # handling a contact (or an outbound call); carries the medium
    HOLD = "hold"
    WRAP_UP = "wrap_up"  # after-call work
    BREAK = "break"


class ContactState(StrEnum):
    WAITING = "waiting"  # in line (a live caller, or a callback entry keeping its place)
    OFFERED = "offered"  # ringing one agent (ring-all: several)
    CALLING_BACK = "calling_back"  # PlaceCallback issued, an agent reserved for it
    PARKED = "parked"  # a failed callback waiting for its retry
    CONNECTED = "connected"  # answered by an agent
    GONE = "gone"  # ended, abandoned, exited or dropped: no longer in the core


S = AgentState
# (state, action) -> the states the action may lead to.
AGENT_TRANSITIONS: Mapping[tuple[AgentState, str], frozenset[AgentState]] = {
    (S.LOGGED_OUT, "login"): frozenset({S.NOT_READY, S.READY}),
    (S.READY, "logout"): frozenset({S.LOGGED_OUT}),
    (S.READY, "not_ready"): frozenset({S.NOT_READY}),
    (S.READY, "break"): frozenset({S.BREAK}),
    (S.READY, "offer"): frozenset({S.RESERVED}),
    (S.READY, "outbound"): frozenset({S.TALKING}),
    (S.NOT_READY, "logout"): frozenset({S.LOGGED_OUT}),
    (S.NOT_READY, "ready"): frozenset({S.READY}),
    (S.NOT_READY, "not_ready"): frozenset({S.NOT_READY}),
    (S.NOT_READY, "break"): frozenset({S.BREAK}),
    (S.NOT_READY, "outbound"): frozenset({S.TALKING}),
    (S.RESERVED, "answer"): frozenset({S.TALKING}),
    (S.RESERVED, "no_answer"): frozenset({S.NOT_READY, S.BREAK}),
    (S.RESERVED, "decline"): frozenset({S.NOT_READY, S.BREAK}),
    (S.RESERVED, "withdraw"): frozenset({S.READY, S.BREAK}),
    (S.RESERVED, "logout"): frozenset({S.LOGGED_OUT}),
    (S.RESERVED, "break_request"): frozenset({S.RESERVED}),
    (S.TALKING, "hold"): frozenset({S.HOLD}),
    # logged_out: an agent a new configuration removed leaves when its call ends
    (S.TALKING, "end"): frozenset({S.WRAP_UP, S.READY, S.BREAK, S.LOGGED_OUT}),
    (S.TALKING, "outbound_end"): frozenset({S.READY, S.NOT_READY, S.BREAK, S.LOGGED_OUT}),
    (S.TALKING, "break_request"): frozenset({S.TALKING}),
    (S.HOLD, "resume"): frozenset({S.TALKING}),
    (S.HOLD, "end"): frozenset({S.WRAP_UP, S.READY, S.BREAK, S.LOGGED_OUT}),
    (S.HOLD, "outbound_end"): frozenset({S.READY, S.NOT_READY, S.BREAK, S.LOGGED_OUT}),
    (S.HOLD, "break_request"): frozenset({S.HOLD}),
    (S.WRAP_UP, "ready"): frozenset({S.READY, S.BREAK}),
    (S.WRAP_UP, "wrap_timeout"): frozenset({S.READY, S.BREAK}),
    (S.WRAP_UP, "not_ready"): frozenset({S.NOT_READY, S.BREAK}),
    (S.WRAP_UP, "logout"): frozenset({S.LOGGED_OUT}),
    (S.WRAP_UP, "break_request"): frozenset({S.WRAP_UP}),
    (S.BREAK, "ready"): frozenset({S.READY}),
    (S.BREAK, "not_ready"): frozenset({S.NOT_READY}),
    (S.BREAK, "logout"): frozenset({S.LOGGED_OUT}),
}
# Every action an agent input can name (the hypothesis test tries them all everywhere).
AGENT_ACTIONS = tuple(sorted({action for _, action in AGENT_TRANSITIONS}))
# States that count as staffing a queue (for the estimated wait).
STAFFED = frozenset({S.READY, S.RESERVED, S.TALKING, S.HOLD, S.WRAP_UP})
BUSY = frozenset({S.RESERVED, S.TALKING, S.HOLD, S.WRAP_UP})

C = ContactState
CONTACT_TRANSITIONS: Mapping[tuple[ContactState, str], frozenset[ContactState]] = {
    (C.WAITING, "offer"): frozenset({C.OFFERED}),
    (C.WAITING, "place_callback"): frozenset({C.CALLING_BACK}),
    (C.WAITING, "request_callback"): frozenset({C.WAITING}),
    (C.WAITING, "overflow"): frozenset({C.WAITING, C.GONE}),
    (C.WAITING, "abandon"): frozenset({C.GONE}),
    (C.WAITING, "max_wait"): frozenset({C.GONE}),
    (C.WAITING, "queue_removed"): frozenset({C.GONE}),  # a new configuration dropped it
    (C.OFFERED, "answer"): frozenset({C.CONNECTED}),
    (C.OFFERED, "no_answer"): frozenset({C.OFFERED, C.WAITING, C.GONE}),
    (C.OFFERED, "decline"): frozenset({C.OFFERED, C.WAITING, C.GONE}),
    (C.OFFERED, "withdraw"): frozenset({C.OFFERED, C.WAITING, C.GONE}),
    (C.OFFERED, "abandon"): frozenset({C.GONE}),
    (C.CALLING_BACK, "callback_answered"): frozenset({C.OFFERED, C.WAITING, C.GONE}),
    (C.CALLING_BACK, "callback_failed"): frozenset({C.PARKED, C.GONE}),
    (C.CALLING_BACK, "abandon"): frozenset({C.GONE}),
    (C.PARKED, "retry"): frozenset({C.WAITING}),
    (C.PARKED, "abandon"): frozenset({C.GONE}),
    (C.PARKED, "queue_removed"): frozenset({C.GONE}),
    (C.CONNECTED, "end"): frozenset({C.GONE}),
    (C.CONNECTED, "transfer"): frozenset({C.WAITING, C.GONE}),
}
IN_QUEUE = frozenset({C.WAITING, C.OFFERED, C.CALLING_BACK, C.PARKED})
