"""Outbound calls from the IVR (R-4.2) through the node's API: the node dials out on the
carrier trunk with the caller number the request chose (one of the tenant's), rings for
the given time, and runs the tenant's flow on the answered call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NodeHandle
from tests.e2e.test_calls import carrier
from tests.e2e.test_ivr import ivr_steps

pytestmark = pytest.mark.e2e


def test_api_call_out_runs_the_flow_with_the_chosen_caller_number(
        node: NodeHandle, phones: Any, tones: dict[int, Path]) -> None:
    customer = carrier(node, phones, tones[440], user="+8613800001111")
    status, body = node.api("POST", "/calls", body={
        "number": "013800001111", "flow": "notice", "caller_id": "+862088880077",
        "ring_timeout": 15})
    assert status == 201, body
    call_id = body["call"]
    answered = customer.wait_for_event("CALL_ESTABLISHED", timeout=10)
    assert str(answered.get("peeruri", "")).startswith("sip:+862088880077@")
    node.wait_trace(lambda e: e["call"] == call_id and e.get("step") == "enter"
                    and e.get("node") == "ask", timeout=10)
    customer.send_dtmf("1")
    node.wait_trace(lambda e: e["call"] == call_id and e.get("step") == "collected",
                    timeout=15)
    cdr = node.wait_cdr(lambda c: c["call_id"] == call_id, timeout=20)
    assert (cdr["origin"], cdr["caller"], cdr["tenant_id"]) == (
        "flow:notice", "+862088880077", "acme")
    assert [s["value"] for s in ivr_steps(node, call_id, "collected")] == ["1"]


def test_api_call_out_is_refused_for_another_tenants_flow_and_bad_input(
        node: NodeHandle) -> None:
    status, body = node.api("POST", "/calls", tenant="globex",
                            body={"number": "913800001111", "flow": "notice"})
    assert status == 400 and "no flow 'notice'" in body["error"]["message"]
    status, body = node.api("POST", "/calls", body={"number": "12; DROP", "flow": "notice"})
    assert status == 400 and body["error"]["id"] == "bad_request"
    status, _ = node.api("POST", "/calls", tenant=None,
                         body={"number": "013800001111", "flow": "notice"})
    assert status == 400  # the operator must name the tenant
