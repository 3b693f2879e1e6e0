"""Callbacks on a real node (docs/ACD.md, "Callbacks"): a carrier caller waiting in
acme's sales queue presses * (SIP INFO) and hangs up; its entry keeps its place; when
an agent goes ready the node calls the customer back out of the carrier trunk,
presenting the DID it dialled, and once the customer answers the agent's phone rings
with the call's data; then both sides hear each other (Goertzel analysis of the RTP
each side received).

The carrier is a scripted UA bound to the trunk's own address and port, so that it
both places the customer's call and receives the node's callback INVITE.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from appliance.sip.dialog import Dialog
from appliance.sip.message import Request, Response
from appliance.sip.sdp import SessionDescription
from tests.e2e.conftest import (
    API_TOKENS,
    CARRIER_IP,
    PASSWORDS,
    NodeHandle,
    start_node,
    wait_for,
)
from tests.e2e.test_acd import EventStream, call_api, received, send_tone, sign_in, tone
from tests.e2e.test_tenancy import Phone
from tests.harness.audio import goertzel_power
from tests.harness.sipua import SipUa, UaCall, media_of

pytestmark = pytest.mark.e2e
QUEUE_DID = "+862088880088"
CUSTOMER = "013800001111"  # as the carrier presents it; dialled back as +8613800001111


def with_callbacks(plan: dict[str, Any]) -> None:
    acme = plan["tenants"][0]
    acme["queues"][0].update(callback_allowed=True, callback_timeout=20,
                             callback_attempts=2, callback_retry_delay=5)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("callback"), plan_edit=with_callbacks)
    try:
        yield handle
    finally:
        handle.stop()


class Carrier(Phone):
    """The carrier trunk: places calls from ``CUSTOMER`` and answers the node's INVITEs
    (keeping what it answered, to hang up later)."""

    def __init__(self, node: NodeHandle) -> None:
        super().__init__(CUSTOMER, f"127.0.0.1:{node.sip_port}", "",
                         ("127.0.0.1", node.sip_port), local_ip=CARRIER_IP,
                         port=node.carrier_port)
        self.answers: list[tuple[Request, Response]] = []

    def _answer(self, req: Request) -> Response:
        resp = super()._answer(req)
        if req.method == "INVITE" and req.to.tag is None:
            self.answers.append((req, resp))
        return resp

    def incoming(self, timeout: float) -> UaCall:
        """The next INVITE the node sends to the trunk, answered: a call to talk on."""
        req = self.wait_request("INVITE", timeout)
        resp = next(r for q, r in self.answers if q is req)
        call = UaCall(Dialog.from_uas(req, resp), req, SessionDescription.parse(req.body))
        self.calls.append(call)
        return call


def drain(sock: Any) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(2048)
    except BlockingIOError:
        pass


def test_the_caller_keeps_its_place_and_is_called_back_for_the_agent(
        node: NodeHandle) -> None:
    proxy = ("127.0.0.1", node.sip_port)
    alice = SipUa("1001", "acme.example", PASSWORDS["1001"], proxy)
    carrier = Carrier(node)
    events = EventStream(node, API_TOKENS["acme"])
    try:
        call = carrier.answered(QUEUE_DID)  # the queue answers: nobody is ready
        events.wait("ContactQueued", queue="sales")
        ok = carrier.in_dialog(call, "INFO", b"Signal=*\r\nDuration=160\r\n",
                               "application/dtmf-relay")
        assert ok.status == 200
        asked = events.wait("CallbackRequested", queue="sales")
        assert asked["number"] == CUSTOMER
        carrier.hang_up(call)  # the caller goes; the entry stays in line
        sales = wait_for(lambda: next(
            (q for q in call_api(node, "GET", "/acd", API_TOKENS["acme"])[1]["queues"]
             if q["name"] == "sales" and (q["waiting"], q["callbacks"]) == (1, 1)), None),
            5, "the callback entry in line")
        assert sales["abandoned"] == 0

        # alice signs in and goes ready: the node calls the customer back for her
        assert alice.register().status == 200
        status, session = sign_in(node, "alice")
        assert status == 201
        assert call_api(node, "PUT", "/agents/alice/state", session["token"],
                        {"state": "ready"})[0] == 200
        placed = events.wait("CallbackPlaced", agent="alice")
        assert placed["contact"] == asked["contact"] and placed["attempt"] == 1
        back = carrier.incoming(timeout=10)
        assert back.invite.uri.user == "+8613800001111"
        assert back.invite.from_.uri.user == QUEUE_DID  # the number the customer dialled
        # the customer answered: alice's phone rings with the call's data
        ring = alice.wait_request("INVITE", timeout=10)
        data = parse_qs(ring.headers.get("X-BL-Data") or "")
        assert data["queue"] == ["sales"] and data["agent"] == ["alice"]
        assert data["callback"] == ["true"]
        answered = events.wait("ContactAnswered", agent="alice")
        assert answered["contact"] == asked["contact"] and answered["callback"] is True

        # two-way audio between the customer and alice
        threading.Thread(target=send_tone, daemon=True, args=(
            alice.rtp, media_of(ring), 1400, 3.0)).start()
        threading.Thread(target=carrier.send_audio, daemon=True,
                         args=(back, tone(700, 3.0))).start()
        received(alice.rtp, 0.4)  # the streams start; what came before is dropped
        drain(alice.rtp)
        drain(carrier.rtp)
        at_alice, at_customer = received(alice.rtp, 1.2), received(carrier.rtp, 0.8)
        assert len(at_alice) > 4000 and len(at_customer) > 4000
        assert goertzel_power(at_alice, 700, 8000) > 100 * goertzel_power(at_alice, 1400, 8000)
        assert goertzel_power(at_customer, 1400, 8000) > \
            100 * goertzel_power(at_customer, 700, 8000)

        # the customer hangs up: the contact ends; the callback has its own CDR
        carrier.hang_up(back)
        events.wait("ContactEnded", agent="alice")
        cdr = node.wait_cdr(lambda c: c["origin"] == "callback:sales", timeout=10)
        assert (cdr["caller"], cdr["callee"], cdr["disposition"]) == (
            QUEUE_DID, CUSTOMER, "answered")
        trace = node.trace()
        kinds = [e["event"] for e in trace if e.get("contact") == asked["contact"]
                 or e["call"] == asked["contact"]]
        for step in ("callback_requested", "callback_placed", "callback_answered"):
            assert step in kinds
        assert not any(e["type"] == "ContactAbandoned" for e in events.events)
    finally:
        events.close()
        carrier.hang_up_all()
        for ua in (alice, carrier):
            ua.close()


def test_an_agent_answers_queue_calls_on_its_own_mobile(node: NodeHandle) -> None:
    """PC + phone mode (R-5.1): bob, signed in on the desktop, has his queue calls ring
    his mobile through the carrier trunk (the call's data stays inside)."""
    carrier = Carrier(node)
    events = EventStream(node, API_TOKENS["acme"])
    try:
        status, session = sign_in(node, "bob")
        assert status == 201
        bob = session["token"]
        call_api(node, "PUT", "/agents/alice/state", API_TOKENS["acme"],
                 {"state": "logged_out"})  # the queue's other agent is away
        mobile_number = {"number": "013955556666"}
        assert call_api(node, "PUT", "/agents/alice/phone", bob, mobile_number)[0] == 404
        assert call_api(node, "PUT", "/agents/bob/phone", API_TOKENS["globex"],
                        mobile_number)[0] == 404
        assert call_api(node, "PUT", "/agents/bob/phone", bob, {"number": "x1"})[0] == 400
        assert call_api(node, "PUT", "/agents/bob/phone", bob, {"number": "77"})[0] == 400
        assert call_api(node, "PUT", "/agents/bob/phone", bob, mobile_number)[0] == 200
        assert call_api(node, "PUT", "/agents/bob/state", bob, {"state": "ready"})[0] == 200

        call = carrier.answered(QUEUE_DID)
        mobile = carrier.incoming(timeout=10)  # the offer rings bob's mobile
        assert mobile.invite.uri.user == "+8613955556666"
        assert mobile.invite.headers.get("X-BL-Data") is None
        events.wait("ContactAnswered", agent="bob")
        carrier.hang_up(call)
        events.wait("ContactEnded", agent="bob")
        assert call_api(node, "PUT", "/agents/bob/phone", bob, {"number": ""})[0] == 200
        assert call_api(node, "DELETE", "/agent-sessions/current", bob)[0] == 204
    finally:
        events.close()
        carrier.hang_up_all()
        carrier.close()
