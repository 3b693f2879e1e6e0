"""A supervisor on a real node listens to, then barges into an agent's queue call, through
the node's API (``/api/v1/monitors``): the node rings the supervisor's phone and mixes
the three legs. Everyone sends its own tone (caller 700 Hz, agent 1000 Hz, supervisor
1400 Hz) and what each side receives is analysed: listening, the supervisor hears both
and nobody hears the supervisor; barging, both hear the supervisor; after the supervisor
leaves, the caller and the agent still talk. Other agents and other tenants are refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest

from tests.e2e.conftest import API_TOKENS, CARRIER_IP, PASSWORDS, NodeHandle, start_node
from tests.e2e.test_acd import EventStream, call_api, received, send_tone, sign_in, tone
from tests.e2e.test_desk import drain
from tests.e2e.test_tenancy import Phone
from tests.harness.audio import goertzel_power
from tests.harness.sipua import SipUa, media_of

pytestmark = pytest.mark.e2e
QUEUE_DID = "+862088880088"
CALLER, AGENT, SUPERVISOR = 700, 1000, 1400


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("monitor"))
    try:
        yield handle
    finally:
        handle.stop()


def dominates(power: dict[int, float], loud: int, *quiet: int) -> bool:
    """``loud`` is heard (well above the noise floor) at 10x the power of each of ``quiet``."""
    return power[loud] > 1e4 and all(power[loud] > 10 * power[q] for q in quiet)


def levels(sockets: dict[str, Any], senders: list[threading.Thread]
           ) -> dict[str, dict[int, float]]:
    """Start every sender (2.5 s of tone each), drop what came before, then analyse 1.5 s
    of what each socket receives (after the first 0.5 s)."""
    for sock in sockets.values():
        drain(sock)
    for sender in senders:
        sender.start()
    got: dict[str, np.ndarray[Any, np.dtype[np.int16]]] = {}

    def listen(name: str, sock: Any) -> None:
        received(sock, 0.5)
        got[name] = received(sock, 1.5)

    listeners = [threading.Thread(target=listen, args=item, daemon=True)
                 for item in sockets.items()]
    for t in listeners:
        t.start()
    for t in (*listeners, *senders):
        t.join(6)
    out = {}
    for name, audio in got.items():
        assert audio.size > 8000, f"{name} received under 1 s of audio"
        out[name] = {f: goertzel_power(audio, f, 8000, block=160)
                     for f in (CALLER, AGENT, SUPERVISOR)}
    return out


def test_a_supervisor_listens_then_barges_into_a_queue_call(node: NodeHandle) -> None:
    proxy = ("127.0.0.1", node.sip_port)
    alice = SipUa("1001", "acme.example", PASSWORDS["1001"], proxy)
    sue = SipUa("1003", "acme.example", PASSWORDS["1003"], proxy)
    carrier = Phone("carrier", f"127.0.0.1:{node.sip_port}", "", proxy, local_ip=CARRIER_IP)
    events = EventStream(node, API_TOKENS["acme"])
    try:
        assert alice.register().status == 200 and sue.register().status == 200
        alice_token = sign_in(node, "alice")[1]["token"]
        status, sue_session = sign_in(node, "sue")
        assert status == 201 and sue_session["supervisor"] is True
        sue_token = sue_session["token"]
        # a supervisor changes another agent's state (an agent may not)
        assert call_api(node, "PUT", "/agents/alice/state", sue_token,
                        {"state": "ready"})[0] == 200
        call = carrier.answered(QUEUE_DID)
        to_alice = alice.wait_request("INVITE", timeout=10)
        events.wait("ContactAnswered", agent="alice")

        # refused: an agent who is no supervisor, another tenant, an agent on no call
        assert call_api(node, "POST", "/monitors", alice_token,
                        {"agent": "alice", "mode": "listen"})[0] == 403
        status, body = call_api(node, "POST", "/monitors", API_TOKENS["globex"],
                                {"agent": "alice", "supervisor": "sue", "mode": "barge"})
        assert status == 403, body
        assert call_api(node, "POST", "/monitors", sue_token,
                        {"agent": "bob", "mode": "listen"})[1]["error"]["id"] == "agent_not_talking"

        status, mon = call_api(node, "POST", "/monitors", sue_token,
                               {"agent": "alice", "mode": "listen"})
        assert status == 201 and mon["state"] == "ringing", mon
        to_sue = sue.wait_request("INVITE", timeout=10)  # sue's phone answers at once
        assert parse_qs(to_sue.headers.get("X-BL-Data") or "")["monitor"] == ["listen"]
        node.wait_trace(lambda e: e["event"] == "monitor_started")
        assert call_api(node, "GET", "/monitors", API_TOKENS["globex"])[1]["monitors"] == []
        assert call_api(node, "PUT", f"/monitors/{mon['id']}", API_TOKENS["globex"],
                        {"mode": "barge", "supervisor": "sue"})[0] == 404

        def senders() -> list[threading.Thread]:
            return [
                threading.Thread(target=carrier.send_audio, args=(call, tone(CALLER, 2.5)),
                                 daemon=True),
                threading.Thread(target=send_tone, daemon=True,
                                 args=(alice.rtp, media_of(to_alice), AGENT, 2.5)),
                threading.Thread(target=send_tone, daemon=True,
                                 args=(sue.rtp, media_of(to_sue), SUPERVISOR, 2.5))]

        sockets = {"caller": carrier.rtp, "agent": alice.rtp, "supervisor": sue.rtp}
        heard = levels(sockets, senders())
        print("listen:", heard)
        assert dominates(heard["supervisor"], CALLER, SUPERVISOR)
        assert dominates(heard["supervisor"], AGENT, SUPERVISOR)
        assert dominates(heard["caller"], AGENT, SUPERVISOR, CALLER)
        assert dominates(heard["agent"], CALLER, SUPERVISOR, AGENT)

        status, changed = call_api(node, "PUT", f"/monitors/{mon['id']}", sue_token,
                                   {"mode": "barge"})
        assert status == 200 and changed["mode"] == "barge" and changed["state"] == "active"
        heard = levels(sockets, senders())
        print("barge:", heard)
        assert dominates(heard["caller"], SUPERVISOR, CALLER)
        assert dominates(heard["agent"], SUPERVISOR, AGENT)
        assert dominates(heard["caller"], AGENT, CALLER)

        # the supervisor leaves: her phone is hung up, the caller and alice go on
        assert call_api(node, "DELETE", f"/monitors/{mon['id']}", sue_token)[0] == 204
        sue.wait_request("BYE", timeout=5)
        assert call_api(node, "GET", "/monitors", sue_token)[1]["monitors"] == []
        heard = levels({"caller": carrier.rtp, "agent": alice.rtp}, senders()[:2])
        assert dominates(heard["caller"], AGENT, SUPERVISOR, CALLER)
        assert dominates(heard["agent"], CALLER, SUPERVISOR, AGENT)
        carrier.hang_up(call)
        events.wait("ContactEnded", agent="alice")
    finally:
        events.close()
        carrier.hang_up_all()
        for ua in (alice, sue, carrier):
            ua.close()
