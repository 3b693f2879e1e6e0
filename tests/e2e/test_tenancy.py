"""Tenancy on a real node: the PSTN call quota and suspension, applied by SIGHUP.

The carrier is a scripted UA (``tests/harness/sipua.py``) at 127.0.0.2, the trunk's
address, so one process can hold several calls at once; acme and globex each get an
echo DID for these tests, answered by the node itself. Extensions are scripted UAs
registering through the Kamailio edge. The announcement treatment is checked by
correlating what the carrier received with the same text spoken by espeak-ng.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml

from appliance.media import g711
from appliance.media.rtp import RtpPacket
from appliance.media.tts import synthesize
from appliance.sip.dialog import Dialog
from appliance.sip.message import Request, Response, make_response, parse_message
from appliance.sip.sdp import SessionDescription, make_offer
from tests.e2e.conftest import CARRIER_IP, PASSWORDS, NodeHandle, start_node, wait_for
from tests.harness.sipua import SipUa, UaCall

pytestmark = pytest.mark.e2e

ACME_ECHO = ("+862088880099", "+862088880098")  # two DIDs of acme, both the echo service
GLOBEX_ECHO = "+85230000099"
BUSY_TEXT = "All our lines are busy. Please call again later."


@pytest.fixture(scope="module")
def tnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("tenancy"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def plan(tnode: NodeHandle) -> Iterator[dict[str, Any]]:
    """The node's plan document with the echo DIDs these tests call; ``apply`` it. At
    the end acme is active again without limits."""
    doc = yaml.safe_load((tnode.run_dir / "plan.yaml").read_text())
    acme, globex = doc["tenants"]
    for number in ACME_ECHO:
        if not any(d["number"] == number for d in acme["dids"]):
            acme["dids"].append({"number": number, "target": "echo"})
    if not any(d["number"] == GLOBEX_ECHO for d in globex["dids"]):
        globex["dids"].append({"number": GLOBEX_ECHO, "target": "echo"})
    yield doc
    for key in ("status", "limits", "treatments"):
        acme.pop(key, None)
    apply(tnode, doc)


def apply(node: NodeHandle, doc: dict[str, Any]) -> None:
    """Write the plan as a new version, SIGHUP the node, wait until it is applied."""
    doc["version"] += 1
    (node.run_dir / "plan.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    offset = node.proc.log_offset()
    node.proc.signal(signal.SIGHUP)
    node.proc.wait_for_log(rf"plan version {doc['version']} applied\b", 10, since=offset)


class Phone(SipUa):
    """A scripted UA that reports a refused call instead of raising, and keeps the
    calls it holds so a test can hang them all up."""

    def invite(self, number: str) -> tuple[Response, UaCall | None]:
        sdp = make_offer(self.local[0], self.rtp.getsockname()[1], session_id=1,
                         version=1).to_bytes()
        req = self._new_request("INVITE", f"sip:{number}@{self.domain}",
                                to=f"<sip:{number}@{self.domain}>", body=sdp,
                                ctype="application/sdp")
        req, resp = self._authed(req)
        if not 200 <= resp.status < 300:
            return resp, None
        dialog = Dialog.from_uac(req, resp)
        self.layer.send_stateless(dialog.create_ack(resp), self._next_hop(dialog))
        call = UaCall(dialog, req, SessionDescription.parse(resp.body))
        self.calls.append(call)
        return resp, call

    def answered(self, number: str) -> UaCall:
        resp, call = self.invite(number)
        assert call is not None, f"call to {number} refused: {resp.status} {resp.reason}"
        return call

    def hang_up(self, call: UaCall) -> None:
        assert self.in_dialog(call, "BYE").status == 200
        self.calls.remove(call)

    def hang_up_all(self) -> None:
        for call in list(self.calls):
            if not any(r.method == "BYE" for r in call.received):
                self.in_dialog(call, "BYE")
        self.calls.clear()

    def listen(self, call: UaCall, timeout: float) -> npt.NDArray[np.int16]:
        """What the node sends on ``call`` until it hangs up (BYE), decoded, in order
        of arrival."""
        self.rtp.setblocking(False)
        audio: list[npt.NDArray[np.int16]] = []
        deadline = time.monotonic() + timeout
        while not any(r.method == "BYE" for r in call.received):
            assert time.monotonic() < deadline, "the node did not hang up"
            self._pump(0.02)
            while True:
                try:
                    packet = RtpPacket.parse(self.rtp.recv(2048))
                except BlockingIOError:
                    break
                if packet.payload_type in (0, 8):
                    codec = "PCMU" if packet.payload_type == 0 else "PCMA"
                    audio.append(g711.decode(codec, packet.payload))
        self.calls.remove(call)
        return np.concatenate(audio) if audio else np.zeros(0, dtype=np.int16)


@pytest.fixture
def ua(tnode: NodeHandle) -> Iterator[Any]:
    """Factory of scripted UAs (``carrier()`` or an extension number), all of whose
    calls are hung up and sockets closed at the end."""
    made: list[Phone] = []

    def make(who: str = "carrier") -> Phone:
        proxy = ("127.0.0.1", tnode.sip_port)
        if who == "carrier":
            phone = Phone("carrier", f"127.0.0.1:{tnode.sip_port}", "", proxy,
                          local_ip=CARRIER_IP)
        else:
            domain = "acme.example" if who.startswith("1") else "globex.example"
            phone = Phone(who, domain, PASSWORDS[who], proxy)
        made.append(phone)
        return phone

    try:
        yield make
    finally:
        for phone in made:
            try:
                phone.hang_up_all()
            finally:
                phone.close()


def status(node: NodeHandle) -> dict[str, Any]:
    path = Path(node.manifest["status"]["path"])
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):  # not written yet
        return {}


def tenant_status(node: NodeHandle, tenant: str) -> dict[str, Any]:
    return dict(status(node).get("tenants", {}).get(tenant, {}))


def match(heard: npt.NDArray[np.int16], expected: npt.NDArray[np.int16]) -> tuple[float, float]:
    """Normalised correlation of ``heard`` with ``expected`` at their best alignment,
    and the share of ``expected`` that alignment covers."""
    x, y = heard.astype(np.float64), expected.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(y, size)), size)
    lag = int(np.argmax(corr))
    if lag > size // 2:
        lag -= size
    xs, ys = (x[lag:], y) if lag >= 0 else (x, y[-lag:])
    n = min(len(xs), len(ys))
    xs, ys = xs[:n], ys[:n]
    return float(xs @ ys / np.sqrt((xs @ xs) * (ys @ ys))), n / len(y)


# --------------------------------------------------------------------------- PSTN quota
def test_pstn_calls_quota_rejects_the_third_call_of_acme_only(
        tnode: NodeHandle, plan: dict[str, Any], ua: Any) -> None:
    acme = plan["tenants"][0]
    acme["limits"] = {"pstn_calls": 2}
    acme["treatments"] = {"over_quota": {"reject": 480}}
    apply(tnode, plan)
    carrier = ua()
    first = carrier.answered(ACME_ECHO[0])
    carrier.answered(ACME_ECHO[1])
    # the NOC's view: live use next to the limit
    use = wait_for(lambda: (s := tenant_status(tnode, "acme")).get("pstn_calls") == 2 and s,
                   3, "acme's two PSTN calls in status.json")
    assert use["limits"]["pstn_calls"] == 2 and use["status"] == "active"
    resp, refused = carrier.invite(ACME_ECHO[0])
    assert refused is None and resp.status == 480, resp.status
    [event] = tnode.wait_trace(lambda e: e["event"] == "quota_exceeded"
                               and e["tenant"] == "acme")
    assert (event["quota"], event["limit"], event["in_use"], event["treatment"]) == (
        "pstn_calls", "2", "2", "reject 480")
    # globex, at the same time, is not affected by acme's quota
    carrier.answered(GLOBEX_ECHO)
    # one of acme's calls ends: a new one passes again
    carrier.hang_up(first)
    carrier.answered(ACME_ECHO[0])
    cdr = tnode.wait_cdr(lambda c: c["call_id"] == event["call"])
    assert (cdr["tenant_id"], cdr["destination"], cdr["sip_status"]) == (
        "acme", "treatment:over_quota", 480)


def test_over_quota_announcement_is_answered_and_played(
        tnode: NodeHandle, plan: dict[str, Any], ua: Any) -> None:
    acme = plan["tenants"][0]
    acme["limits"] = {"pstn_calls": 1}
    acme["treatments"] = {"over_quota": {"announcement": BUSY_TEXT, "voice": "en-us"}}
    apply(tnode, plan)
    holder, late = ua(), ua()
    holder.answered(ACME_ECHO[0])
    call = late.answered(ACME_ECHO[1])  # answered: the announcement plays
    # while it plays: two calls of acme, one PSTN call (a treated call is not counted)
    code, ports = tnode.api("GET", "/ports", tenant="acme")
    assert code == 200 and ports["tenants"]["acme"]["calls"] == 2
    assert ports["tenants"]["acme"]["pstn_calls"] == 1
    heard = late.listen(call, timeout=15)
    expected = synthesize(BUSY_TEXT, "en-us")
    similarity, covered = match(heard, expected)
    assert similarity > 0.8 and covered > 0.9, (similarity, covered, len(heard), len(expected))
    [event] = tnode.wait_trace(lambda e: e["event"] == "quota_exceeded"
                               and e.get("treatment") == "announcement")
    cdr = tnode.wait_cdr(lambda c: c["call_id"] == event["call"])
    assert (cdr["destination"], cdr["disposition"], cdr["hangup_side"]) == (
        "treatment:over_quota", "answered", "node")


# --------------------------------------------------------------------------- suspension
def test_suspend_then_resume_acme(tnode: NodeHandle, plan: dict[str, Any], ua: Any) -> None:
    acme = plan["tenants"][0]
    carrier, alice, carol = ua(), ua("1001"), ua("2001")
    assert alice.register().status == 200
    in_progress = carrier.answered(ACME_ECHO[0])

    acme["status"] = "suspended"
    start = time.monotonic()
    apply(tnode, plan)
    resp, refused = carrier.invite(ACME_ECHO[1])
    assert refused is None and resp.status == 503  # the default suspended treatment
    for _ in range(2):  # again and again
        assert alice.register().status in (401, 403)
    resp, refused = alice.invite("700")
    assert refused is None and resp.status in (401, 403, 407)
    code, body = tnode.api("GET", "/ports", tenant="acme")
    assert (code, body["error"]["id"]) == (403, "tenant_suspended")
    elapsed = time.monotonic() - start
    assert elapsed < 5.0, f"suspension took {elapsed:.2f} s to show"

    tnode.wait_trace(lambda e: e["event"] == "tenant_suspended" and e["tenant"] == "acme")
    assert wait_for(lambda: tenant_status(tnode, "acme").get("status") == "suspended", 3,
                    "acme suspended in status.json")
    # globex is served as before
    carrier.answered(GLOBEX_ECHO)
    assert carol.register().status == 200
    assert carol.answered("700")
    assert tnode.api("GET", "/ports", tenant="globex")[0] == 200
    # the call that was up before the suspension is left alone
    carrier.hang_up(in_progress)

    acme["status"] = "active"
    apply(tnode, plan)
    carrier.answered(ACME_ECHO[1])
    assert alice.register().status == 200
    assert alice.answered("700")
    assert tnode.api("GET", "/ports", tenant="acme")[0] == 200


def test_a_503_from_beyond_the_node_still_reaches_the_caller_as_500(
        tnode: NodeHandle, ua: Any) -> None:
    """The edge lets the feature server's own 503 through (a treatment may be one) but
    still answers 500 for a 503 of anything it relays to (RFC 3261 16.7): here the
    carrier refuses an outbound call of acme's 1001 with 503."""
    alice = ua("1001")
    assert alice.register().status == 200
    stop = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as trunk:
        trunk.bind((CARRIER_IP, tnode.carrier_port))
        trunk.settimeout(0.05)

        def refuse() -> None:
            while not stop.is_set():
                try:
                    data, addr = trunk.recvfrom(65535)
                except TimeoutError:
                    continue
                msg = parse_message(data)
                if isinstance(msg, Request) and msg.method == "INVITE":
                    trunk.sendto(make_response(msg, 503, to_tag="carrier").to_bytes(), addr)

        carrier = threading.Thread(target=refuse, name="carrier-503")
        carrier.start()
        try:
            resp, call = alice.invite("013800000000")
        finally:
            stop.set()
            carrier.join()
    assert call is None and resp.status == 500, resp.status
