"""System flows every tenant may use (names ``sys-*``): sub-flows and DID targets.

``sys-voicemail``: voicemail retrieval by phone (R-4.10). Callers enter a mailbox
number (skipped when the variable ``mailbox`` is already set, e.g. by a sub-flow
``params``) and its PIN, hear how many new messages wait, then each message with its
caller and time, and keep (2), replay (1) or delete (3) it. Runs in the calling
tenant's own context like any of its flows.
"""

from __future__ import annotations

from importlib import resources

from appliance.ivr.flow import Flow, load_flow


def _load() -> dict[str, Flow]:
    out = {}
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(".yaml"):
            flow = load_flow(entry.read_text(encoding="utf-8"))
            out[flow.id] = flow
    return out


SYSTEM_FLOWS: dict[str, Flow] = _load()
