"""IVR end to end: a caller walks the demo flow with RFC 4733 keys from a real phone,
the flow collects an account number and hands the call to an extension with its data."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.e2e.conftest import PASSWORDS, NodeHandle
from tests.e2e.test_calls import carrier
from tests.harness.sipua import SipUa

pytestmark = pytest.mark.e2e


def ivr_steps(node: NodeHandle, call: str, step: str) -> list[dict[str, Any]]:
    return [e for e in node.trace()
            if e["call"] == call and e["event"] == "ivr" and e["step"] == step]


def run_ivr_call(node: NodeHandle, phones: Any, tones: dict[int, Path], keys: list[str],
                 ) -> tuple[str, dict[str, list[str]]]:
    """Call the demo flow's DID as the carrier, type ``keys`` (one send per item) and
    return the call id and the data that reached extension 1001 with the transfer."""
    agent = SipUa("1001", "acme.example", PASSWORDS["1001"], ("127.0.0.1", node.sip_port))
    try:
        assert agent.register().status == 200
        pstn = carrier(node, phones, tones[440])
        call = pstn.dial(f"sip:+862088880077@127.0.0.1:{node.sip_port}")
        call.wait_established()
        started = node.wait_trace(lambda e: e["event"] == "ivr" and e["step"] == "start"
                                  and not any(c["call_id"] == e["call"] for c in node.cdrs()))
        call_id = started[-1]["call"]
        for chunk in keys:
            pstn.send_dtmf(chunk)
        invite = agent.wait_request("INVITE", timeout=20)
        data = parse_qs(invite.headers.get("X-BL-Data") or "")
        pstn.hangup()
        call.wait_closed()
        cdr = node.wait_cdr(lambda c: c["call_id"] == call_id)
        assert cdr["destination"] == "ext:1001" and cdr["tenant_id"] == "acme"
        return call_id, data
    finally:
        agent.close()


def test_three_menu_levels_star_reset_hash_end_transfer_with_data(
        node: NodeHandle, phones: Any, tones: dict[int, Path]) -> None:
    call_id, data = run_ivr_call(node, phones, tones, ["3*1*1", "99*", "20261125#"])
    assert data == {"account": ["20261125"], "reason": ["billing"], "length": ["8"]}
    menus = [(s["node"], s["value"]) for s in ivr_steps(node, call_id, "collected")]
    assert menus == [("main", "3"), ("billing", "1"), ("pay", "1"), ("account", "20261125")]
    assert ivr_steps(node, call_id, "collected")[-1]["ended_by"] == "terminator"
    [transfer] = ivr_steps(node, call_id, "transfer")
    assert transfer["target"] == "1001" and transfer["data.account"] == "20261125"


def test_shortcut_code_and_timeout_end(node: NodeHandle, phones: Any,
                                       tones: dict[int, Path]) -> None:
    call_id, data = run_ivr_call(node, phones, tones, ["*0", "55667788"])
    assert data["account"] == ["55667788"]
    assert [s["to"] for s in ivr_steps(node, call_id, "shortcut")] == ["account"]
    assert ivr_steps(node, call_id, "collected")[-1]["ended_by"] == "timeout"
