"""The ACD's errors: one base, each with a stable id the API shows.

Every error is a refused input (the edge, a desktop or a supervisor asked for something
the core cannot do in its current state), so none of them is "our fault": a refused
input changes nothing in the core. ``status`` is the HTTP status an API should answer.
"""

from __future__ import annotations

from typing import Any


class AcdError(Exception):
    """Base of every ACD error; ``code`` is a stable id, ``details`` is what it concerns."""

    code = "acd_error"
    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": dict(self.details)}


class AcdConfigError(AcdError):
    """The tenant's ACD configuration is invalid; ``path`` names the offending element."""

    code = "acd_config_invalid"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}", path=path)
        self.path = path


class InvalidArgument(AcdError):
    """A value of an input is out of its range (a skill level, a reason code...)."""

    code = "invalid_argument"


class UnknownAgent(AcdError):
    code = "agent_not_found"
    status = 404


class UnknownQueue(AcdError):
    code = "queue_not_found"
    status = 404


class UnknownContact(AcdError):
    code = "contact_not_found"
    status = 404


class DuplicateContact(AcdError):
    code = "contact_exists"
    status = 409


class CallbackNotAllowed(AcdError):
    code = "callback_not_allowed"
    status = 409


class InvalidTransition(AcdError):
    """An agent in ``state`` cannot take ``action`` (see ``AGENT_TRANSITIONS``)."""

    code = "invalid_agent_transition"
    status = 409

    def __init__(self, agent: str, state: str, action: str, why: str = "") -> None:
        text = f"agent {agent!r} in state {state!r} cannot {action!r}"
        super().__init__(text + (f": {why}" if why else ""), agent=agent, state=state,
                         action=action)
        self.agent = agent
        self.state = state
        self.action = action


class ContactStateError(AcdError):
    """A contact in ``state`` cannot take ``action`` (see ``CONTACT_TRANSITIONS``); for
    ``answer`` it means the offer is gone (another agent won a ring-all, the caller hung
    up, the ring timed out): the edge releases the agent's leg."""

    code = "invalid_contact_transition"
    status = 409

    def __init__(self, contact: str, state: str, action: str, why: str = "") -> None:
        text = f"contact {contact!r} in state {state!r} cannot {action!r}"
        super().__init__(text + (f": {why}" if why else ""), contact=contact, state=state,
                         action=action)
        self.contact = contact
        self.state = state
        self.action = action
