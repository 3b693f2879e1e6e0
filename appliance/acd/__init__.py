"""Automatic call distribution (issue 5): queues, agents, routing, as a pure core.

:class:`~appliance.acd.core.Acd` is one tenant's ACD; docs/ACD.md describes the model,
the states, the strategies and what the edge must do with the commands.
"""

from appliance.acd.commands import (
    Announce,
    CancelCallback,
    CancelOffer,
    Command,
    ExitQueue,
    Offer,
    PlaceCallback,
)
from appliance.acd.core import Acd
from appliance.acd.errors import (
    AcdConfigError,
    AcdError,
    CallbackNotAllowed,
    ContactStateError,
    DuplicateContact,
    InvalidArgument,
    InvalidTransition,
    UnknownAgent,
    UnknownContact,
    UnknownQueue,
)
from appliance.acd.events import AcdEvent, is_final
from appliance.acd.model import AgentConfig, OverflowRule, QueueConfig, TenantAcdConfig
from appliance.acd.states import AgentState, ContactState

__all__ = [
    "Acd",
    "AcdConfigError",
    "AcdError",
    "AcdEvent",
    "AgentConfig",
    "AgentState",
    "Announce",
    "CallbackNotAllowed",
    "CancelCallback",
    "CancelOffer",
    "Command",
    "ContactState",
    "ContactStateError",
    "DuplicateContact",
    "ExitQueue",
    "InvalidArgument",
    "InvalidTransition",
    "Offer",
    "OverflowRule",
    "PlaceCallback",
    "QueueConfig",
    "TenantAcdConfig",
    "UnknownAgent",
    "UnknownContact",
    "UnknownQueue",
    "is_final",
]
