"""An agent's three-way conference from the desktop on a real node: the browser agent
alice (acme, extension 1001, a 1000 Hz microphone) answers a carrier call (700 Hz) from
the sales queue, consults bob's extension 1002 from the page's transfer panel (the
caller on hold) and presses "Conference".

bob is a scripted UA registered as 1002 (it answers at once and sends 1400 Hz), signed
in on the node's API, not ready. Once joined, the carrier hears alice and bob, bob hears
the carrier and alice, and alice's page hears both (Goertzel over the RTP the carrier and
bob received, and over WebAudio blocks of the page's remote audio); the page shows one
call, in conference. Then bob hangs up: alice and the carrier still hear each other and
the page shows the call again. Another tenant gets 404 on the conference.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.sip.dialog import Dialog
from appliance.sip.message import Request, Response
from appliance.sip.sdp import SessionDescription
from tests.e2e.conftest import API_TOKENS, PASSWORDS, NodeHandle
from tests.e2e.test_acd import call_api, received, send_tone, sign_in, tone
from tests.e2e.test_desk import (
    BROWSER_TONE,
    CALLER_TONE,
    UNUSED,
    Desk,
    carrier_phone,
    desk_browser,
    desk_node,
    drain,
)
from tests.e2e.test_desk_transfer import alice_answers_a_queue_call, wait_transfer
from tests.e2e.test_tenancy import Phone
from tests.harness.audio import goertzel_power
from tests.harness.sipua import SipUa, UaCall, media_of

pytestmark = pytest.mark.e2e
BOB_TONE = UNUSED  # 1400 Hz
__all__ = ["desk_node"]  # the module's fixture, shared with test_desk


class Bob(SipUa):
    """bob's phone: answers at once, and keeps its answers so that it can hang up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers: dict[str, Response] = {}

    def _answer(self, req: Request) -> Response:
        resp = super()._answer(req)
        if req.method == "INVITE" and req.to.tag is None:
            self.answers[req.call_id] = resp
        return resp

    def hang_up(self, invite: Request) -> None:
        dialog = Dialog.from_uas(invite, self.answers[invite.call_id])
        call = UaCall(dialog, invite, SessionDescription.parse(invite.body))
        assert self.in_dialog(call, "BYE").status == 200


@pytest.fixture(scope="module")
def bob(desk_node: NodeHandle) -> Iterator[Bob]:
    """bob's phone (extension 1002), bob signed in and not ready."""
    ua = Bob("1002", "acme.example", PASSWORDS["1002"], ("127.0.0.1", desk_node.sip_port))
    try:
        assert ua.register().status == 200
        status, session = sign_in(desk_node, "bob")
        assert status == 201, session
        yield ua
    finally:
        ua.close()


def hear(carrier: Phone, call: Any, desk: Desk, bob: Bob | None = None,
         invite: Request | None = None, seconds: float = 2.0) -> dict[str, dict[int, float]]:
    """Everyone sends its tone (the browser all along); what the carrier, bob (if still
    there) and alice's page receive meanwhile, as Goertzel power per tone."""
    sockets = {"carrier": carrier.rtp, **({"bob": bob.rtp} if bob is not None else {})}
    for sock in sockets.values():
        drain(sock)
    senders = [threading.Thread(target=carrier.send_audio, daemon=True,
                                args=(call, tone(CALLER_TONE, seconds + 1.5)))]
    if bob is not None and invite is not None:
        senders.append(threading.Thread(target=send_tone, daemon=True, args=(
            bob.rtp, media_of(invite), BOB_TONE, seconds + 1.5)))
    got: dict[str, np.ndarray[Any, np.dtype[np.int16]]] = {}

    def listen(name: str, sock: Any) -> None:
        received(sock, 0.4)
        got[name] = received(sock, seconds)

    listeners = [threading.Thread(target=listen, args=item, daemon=True)
                 for item in sockets.items()]
    for thread in (*senders, *listeners):
        thread.start()
    out = {"alice": desk.levels(seconds)}
    for thread in (*listeners, *senders):
        thread.join(seconds + 4)
    for name, audio in got.items():
        assert audio.size > 8000, f"{name} received under 1 s of audio"
        out[name] = {f: goertzel_power(audio, f, 8000, block=160)
                     for f in (CALLER_TONE, BROWSER_TONE, BOB_TONE)}
    print("heard:", out)
    return out


def loud(power: dict[int, float], tone_hz: int, *quiet: int, floor: float = 1e4) -> bool:
    """``tone_hz`` is heard (over ``floor``) at 10x the power of each of ``quiet``."""
    return power[tone_hz] > floor and all(power[tone_hz] > 10 * power[q] for q in quiet)


def test_consult_then_conference_from_the_page_and_the_third_party_leaves(
        desk_node: NodeHandle, bob: Bob, tones: dict[int, Path]) -> None:
    node = desk_node
    carrier = carrier_phone(node)
    try:
        with desk_browser(node, tones[BROWSER_TONE]) as desk:
            call = alice_answers_a_queue_call(node, desk, carrier)
            assert desk.page.is_hidden("#transfer-conference")
            desk.page.select_option("#transfer-kind", "number")
            desk.page.fill("#transfer-target", "1002")
            desk.page.click("#transfer-consult")
            desk.wait_call("held")  # the caller waits on hold while alice calls bob
            invite = bob.wait_request("INVITE", timeout=10)
            wait_transfer(desk, "consultReady")
            assert desk.page.is_visible("#transfer-conference")
            assert desk.text("#transfer-conference") == "Conference"

            desk.page.click("#transfer-conference")
            assert wait_transfer(desk, "conferenced") == \
                "In a conference with the caller and 1002."
            desk.wait_call("conference")  # one call, taken off hold, in conference
            assert desk.text("#call-status") == "In conference"
            assert desk.page.is_hidden("#transfer-conference")
            [started] = node.wait_trace(lambda e: e["event"] == "conference_started")
            conference = started["conference"]
            node.wait_trace(lambda e: e["event"] == "resume")  # alice's call off hold

            # the API: another tenant sees no such conference; a second one is refused
            assert call_api(node, "GET", f"/conferences/{conference}",
                            API_TOKENS["globex"])[0] == 404
            status, doc = call_api(node, "GET", f"/conferences/{conference}",
                                   API_TOKENS["acme"])
            assert status == 200 and doc["agent"] == "alice", doc
            assert {p["role"]: p["number"] for p in doc["parties"]}["third"] == "1002"
            assert call_api(node, "POST", "/conferences", API_TOKENS["acme"],
                            {"agent": "alice"})[0] == 409

            heard = hear(carrier, call, desk, bob, invite)
            assert loud(heard["carrier"], BROWSER_TONE, CALLER_TONE), heard["carrier"]
            assert loud(heard["carrier"], BOB_TONE, CALLER_TONE), heard["carrier"]
            assert loud(heard["bob"], CALLER_TONE, BOB_TONE), heard["bob"]
            assert loud(heard["bob"], BROWSER_TONE, BOB_TONE), heard["bob"]
            assert loud(heard["alice"], CALLER_TONE, BROWSER_TONE, floor=5e-5), heard["alice"]
            assert loud(heard["alice"], BOB_TONE, BROWSER_TONE, floor=5e-5), heard["alice"]

            # bob leaves: alice and the caller talk on
            bob.hang_up(invite)
            node.wait_trace(lambda e: e["event"] == "conference_left"
                            and e.get("role") == "third")
            desk.wait_call("talking")
            assert wait_transfer(desk, "conferenceEnded")
            assert call_api(node, "GET", f"/conferences/{conference}",
                            API_TOKENS["acme"])[0] == 404
            heard = hear(carrier, call, desk)
            assert loud(heard["carrier"], BROWSER_TONE, CALLER_TONE, BOB_TONE), heard
            assert loud(heard["alice"], CALLER_TONE, BROWSER_TONE, BOB_TONE, floor=5e-5), heard

            carrier.hang_up(call)
            desk.wait_call("idle")
            desk.wait_own("ready")
            desk.sign_out()
    finally:
        carrier.hang_up_all()
        carrier.close()
