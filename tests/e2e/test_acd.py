"""The ACD on a real node: a carrier caller waits in acme's sales queue, agents sign in
through the node's API and go ready, an agent who does not answer is set not ready
and the caller reaches the next agent, with the call's data and two-way audio; every
step is an event on the tenant's stream, and another tenant's token sees none of it.

Agents' phones are scripted UAs registered through the Kamailio edge (one rings and
never answers, one answers at once); audio is checked by Goertzel analysis of the RTP
each side received.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest

from appliance.media import g711
from appliance.media.rtp import RtpPacket
from tests.e2e.conftest import (
    AGENT_PASSWORDS,
    API_TOKENS,
    CARRIER_IP,
    PASSWORDS,
    NodeHandle,
    start_node,
    wait_for,
)
from tests.e2e.test_tenancy import Phone
from tests.harness.audio import goertzel_power
from tests.harness.http import http_json
from tests.harness.sipua import SipUa, media_of

pytestmark = pytest.mark.e2e
QUEUE_DID = "+862088880088"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("acd"))
    try:
        yield handle
    finally:
        handle.stop()


def call_api(node: NodeHandle, method: str, path: str, token: str, body: Any = None
             ) -> tuple[int, Any]:
    return http_json(method, node.manifest["api"]["url"] + path, token, body)


def sign_in(node: NodeHandle, agent: str, password: str | None = None) -> tuple[int, Any]:
    return http_json("POST", node.manifest["api"]["url"] + "/agent-sessions", body={
        "domain": "acme.example", "agent": agent,
        "password": password or AGENT_PASSWORDS[agent]})


class EventStream:
    """The tenant's server-sent events, read in a thread."""

    def __init__(self, node: NodeHandle, token: str) -> None:
        req = urllib.request.Request(node.manifest["api"]["url"] + "/acd/events",
                                     headers={"Authorization": f"Bearer {token}"})
        self.resp = urllib.request.urlopen(req, timeout=30)
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self.resp:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    self.events.append(json.loads(line[6:]))
        except (OSError, ValueError, AttributeError):  # closed by close()
            pass

    def wait(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        return wait_for(lambda: next((e for e in self.events if e["type"] == kind and all(
            e.get(k) == v for k, v in match.items())), None), timeout, f"a {kind} event")

    def close(self) -> None:
        self.resp.close()


def tone(freq: float, seconds: float) -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(int(8000 * seconds)) / 8000
    return (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def received(sock: Any, seconds: float) -> np.ndarray[Any, np.dtype[np.int16]]:
    """PCMU audio arriving on ``sock`` for ``seconds``."""
    sock.settimeout(0.05)
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            packet = RtpPacket.parse(sock.recv(2048))
        except TimeoutError:
            continue
        if packet.payload_type == 0:
            out.append(g711.decode("PCMU", packet.payload))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)


def send_tone(sock: Any, dest: tuple[str, int], freq: float, seconds: float) -> None:
    payload = g711.encode("PCMU", tone(freq, seconds))
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(payload), 160)):
        sock.sendto(RtpPacket(0, n, n * 160, 0x4321, n == 0,
                              payload[offset:offset + 160]).to_bytes(), dest)
        delay = start + (n + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def test_no_answer_sets_the_agent_not_ready_and_the_next_agent_gets_the_caller(
        node: NodeHandle) -> None:
    proxy = ("127.0.0.1", node.sip_port)
    alice = SipUa("1001", "acme.example", PASSWORDS["1001"], proxy)
    alice.auto_answer = False  # her phone rings, she never picks up
    bob = SipUa("1002", "acme.example", PASSWORDS["1002"], proxy)
    carrier = Phone("carrier", f"127.0.0.1:{node.sip_port}", "", proxy, local_ip=CARRIER_IP)
    events = EventStream(node, API_TOKENS["acme"])
    try:
        assert alice.register().status == 200 and bob.register().status == 200
        # wrong passwords and unknown agents get the same answer
        assert sign_in(node, "alice", "not-her-password")[0] == 401
        assert sign_in(node, "mallory", "whatever-pw")[0] == 401
        status, a_session = sign_in(node, "alice")
        assert status == 201 and a_session["tenant"] == "acme"
        status, b_session = sign_in(node, "bob")
        assert status == 201
        alice_token, bob_token = a_session["token"], b_session["token"]
        # an agent changes its own state only; alice is ready first (longest idle)
        assert call_api(node, "PUT", "/agents/bob/state", alice_token,
                        {"state": "ready"})[0] == 404
        assert call_api(node, "PUT", "/agents/alice/state", alice_token,
                        {"state": "ready"})[0] == 200
        assert call_api(node, "PUT", "/agents/bob/state", bob_token,
                        {"state": "ready"})[0] == 200
        snap = call_api(node, "GET", "/acd", API_TOKENS["acme"])[1]
        assert {a["id"]: a["state"] for a in snap["agents"]} == {
            "alice": "ready", "bob": "ready", "sue": "logged_out"}  # sue: the supervisor
        # globex sees none of acme's ACD
        assert call_api(node, "GET", "/acd", API_TOKENS["globex"])[0] == 404

        call = carrier.answered(QUEUE_DID)  # the queue answers: the caller waits
        events.wait("ContactQueued", queue="sales")
        alice.wait_request("INVITE", timeout=10)  # alice's phone rings ...
        events.wait("NoAnswer", timeout=15, agent="alice")  # ... 5 s, nobody picks up
        alice.wait_cancelled()  # the node cancels her phone's ringing
        snap = call_api(node, "GET", "/acd", API_TOKENS["acme"])[1]
        alice_now = next(a for a in snap["agents"] if a["id"] == "alice")
        assert alice_now["state"] == "not_ready" and alice_now["reason"] == "no_answer"
        invite = bob.wait_request("INVITE", timeout=10)  # the caller goes on to bob
        data = parse_qs(invite.headers.get("X-BL-Data") or "")
        assert data["queue"] == ["sales"] and data["agent"] == ["bob"]
        events.wait("ContactAnswered", agent="bob")
        # two-way audio between the caller and bob
        threading.Thread(target=send_tone, daemon=True, args=(
            bob.rtp, media_of(invite), 1400, 2.0)).start()
        threading.Thread(target=carrier.send_audio, daemon=True,
                         args=(call, tone(700, 2.0))).start()
        at_bob, at_caller = received(bob.rtp, 1.5), received(carrier.rtp, 0.5)
        assert goertzel_power(at_bob, 700, 8000) > 100 * goertzel_power(at_bob, 1400, 8000)
        assert goertzel_power(at_caller, 1400, 8000) > 100 * goertzel_power(at_caller, 700, 8000)
        # the caller hangs up: bob goes on (wrap-up 0: ready again), the contact ends
        carrier.hang_up(call)
        events.wait("ContactEnded", agent="bob")
        assert any(e["type"] == "AgentStateChanged" and e.get("agent") == "alice"
                   for e in events.events)
        # an agent signs out: logged out in the ACD
        assert call_api(node, "DELETE", "/agent-sessions/current", alice_token)[0] == 204
        assert call_api(node, "GET", "/acd", alice_token)[0] == 401
        snap = call_api(node, "GET", "/acd", bob_token)[1]
        assert next(a for a in snap["agents"] if a["id"] == "alice")["state"] == "logged_out"
        stored = (node.run_dir / "demo" / "node" / "acd-events.jsonl").read_text()
        assert '"NoAnswer"' in stored and '"tenant_id": "acme"' in stored
    finally:
        events.close()
        carrier.hang_up_all()
        for ua in (alice, bob, carrier):
            ua.close()
