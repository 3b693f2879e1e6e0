"""IVR end to end: a caller walks the demo flow with RFC 4733 keys from a real phone,
the flow collects an account number and hands the call to an extension with its data."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest

from tests.e2e.conftest import API_TOKENS, CARRIER_IP, NodeHandle, wait_for
from tests.e2e.test_calls import carrier
from tests.harness.sipp import (
    ACK,
    BYE,
    INVITE,
    PCAP_DIR,
    Sipp,
    pause,
    play_pcap,
    recv,
    scenario,
    send,
)

pytestmark = pytest.mark.e2e


def ivr_steps(node: NodeHandle, call: str, step: str) -> list[dict[str, Any]]:
    return [e for e in node.trace()
            if e["call"] == call and e["event"] == "ivr" and e["step"] == step]


def run_ivr_call(node: NodeHandle, phones: Any, tones: dict[int, Path], keys: list[str],
                 ) -> tuple[str, dict[str, list[str]]]:
    """Call the demo flow's DID as the carrier, type ``keys`` (one send per item) and
    return the call id and the data that reached extension 1001 with the transfer."""
    agent = node.ua("1001")
    try:
        assert agent.register().status == 200
        pstn = carrier(node, phones, tones[440])
        call = pstn.dial(f"sip:+862088880077@127.0.0.1:{node.sip_port}")
        call.wait_established()
        started = node.wait_trace(lambda e: e["event"] == "ivr" and e["step"] == "start"
                                  and not any(c["call_id"] == e["call"] for c in node.cdrs()))
        call_id = started[-1]["call"]
        # live use: this caller holds one of acme's IVR ports
        status = Path(node.manifest["status"]["path"])
        wait_for(lambda: json.loads(status.read_text())["tenants"].get(
            "acme", {}).get("ivr_busy", 0) >= 1, 5, "a busy IVR port in status.json")
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


def pcap_keys_call(node: NodeHandle, tmp_run: Path, keys: list[str]) -> tuple[Any, str]:
    """SIPp as the carrier calls the pcap-keys flow and replays RFC 4733 pcaps
    (``/usr/share/sip-tester/dtmf_2833_<key>.pcap``), 0.5 s apart."""
    names = {"*": "star", "#": "pound"}
    elements: list[str] = [
        send(INVITE), recv(response=100, optional=True), recv(response=180, optional=True),
        recv(response=200, rrs="true"), send(ACK, retrans=None), pause(1500),
    ]
    for key in keys:
        elements += [play_pcap(PCAP_DIR / f"dtmf_2833_{names.get(key, key)}.pcap"),
                     pause(500)]
    elements += [pause(4000), send(BYE), recv(response=200, crlf="true")]
    sipp = Sipp(tmp_run / "sipp", scenario("pcap keys", *elements),
                remote=f"127.0.0.1:{node.sip_port}", local_ip=CARRIER_IP,
                local_port=node.carrier_port, service="+862088880066")
    result = sipp.run(timeout=60)
    assert result.ok, result.describe()
    started = [e for e in node.trace() if e.get("flow") == "pcap-keys"
               and e.get("step") == "start"]
    return result, started[-1]["call"]


def test_sipp_pcap_keys_three_levels_reset_and_hash(node: NodeHandle, tmp_run: Path) -> None:
    agent = node.ua("1001")
    try:
        assert agent.register().status == 200
        _, call_id = pcap_keys_call(node, tmp_run, ["2", "3", "4", "5", "6", "*", "7", "8",
                                                    "#"])
        invite = agent.wait_request("INVITE", timeout=5)
        assert parse_qs(invite.headers.get("X-BL-Data") or "") == {"code": ["78"]}
        menus = [(s["node"], s["value"], s["ended_by"])
                 for s in ivr_steps(node, call_id, "collected")]
        assert menus == [("level1", "2", "single"), ("level2", "3", "single"),
                         ("level3", "4", "single"), ("entry", "78", "terminator")]
        dtmf = [e["digit"] for e in node.trace()
                if e["call"] == call_id and e["event"] == "dtmf"]
        assert dtmf == ["2", "3", "4", "5", "6", "*", "7", "8", "#"]  # each press once
    finally:
        agent.close()


def test_sipp_pcap_shortcut_and_timeout(node: NodeHandle, tmp_run: Path) -> None:
    agent = node.ua("1001")
    try:
        assert agent.register().status == 200
        # 1 is no option of level 1 (invalid, asked again); the *0 shortcut jumps to the
        # entry; 9 and then silence: the inter-digit timeout ends the entry. (The pcaps'
        # sequence numbers jump between files: the receiver restarts its sequence, RFC
        # 3550 A.1, and still reports each press once.)
        _, call_id = pcap_keys_call(node, tmp_run, ["1", "*", "0", "9"])
        invite = agent.wait_request("INVITE", timeout=5)
        assert parse_qs(invite.headers.get("X-BL-Data") or "") == {"code": ["9"]}
        assert [s["node"] for s in ivr_steps(node, call_id, "invalid")] == ["level1"]
        assert [s["to"] for s in ivr_steps(node, call_id, "shortcut")] == ["entry"]
        assert ivr_steps(node, call_id, "collected")[-1]["ended_by"] == "timeout"
    finally:
        agent.close()


class _Accounts(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        number = self.path.rsplit("/", 1)[-1]
        body = json.dumps({"number": number, "name": "Ada Lovelace"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_flow_data_actions_http_and_file_then_error_branch(
        node: NodeHandle, phones: Any, tones: dict[int, Path]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", node.action_port), _Accounts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    agent = node.ua("1001")
    try:
        assert agent.register().status == 200
        pstn = carrier(node, phones, tones[440], user="13800138000")
        call = pstn.dial(f"sip:+862088880055@127.0.0.1:{node.sip_port}")
        call.wait_established()
        invite = agent.wait_request("INVITE", timeout=10)
        assert parse_qs(invite.headers.get("X-BL-Data") or "") == {
            "name": ["Ada Lovelace"], "status": ["200"]}
        saved = node.run_dir / "demo" / "node" / "storage" / "acme" / "files" / "calls"
        assert (saved / "last.txt").read_text() == "Ada Lovelace"
        pstn.hangup()
        call.wait_closed()
        # the service is gone: the flow takes its error branch, and says why
        server.shutdown()
        server.server_close()
        call = pstn.dial(f"sip:+862088880055@127.0.0.1:{node.sip_port}")
        call.wait_established()
        invite = agent.wait_request("INVITE", timeout=10)
        error = parse_qs(invite.headers.get("X-BL-Data") or "")["error"][0]
        assert "refused" in error.lower() or "connect" in error.lower(), error
        done = [e for e in node.trace() if e.get("step") == "action_done"]
        assert [e["ok"] for e in done[-4:]] == ["true", "true", "true", "false"]
        pstn.hangup()
        call.wait_closed()
    finally:
        agent.close()
        server.server_close()
        thread.join(5)


def test_agent_transfers_caller_to_the_ivr(node: NodeHandle, phones: Any,
                                           tones: dict[int, Path]) -> None:
    """R-4.9 agent -> IVR: the agent blind-transfers the caller to the flow's number,
    adding data of its own in the Refer-To URI; the caller walks the flow and is handed
    on with both the agent's data and what the flow collected."""
    alice = phones(node.account("1001"), tone=tones[1000])
    pstn = carrier(node, phones, tones[440])
    before = {e["call"] for e in node.trace()}
    call = pstn.dial(f"sip:+862088880001@127.0.0.1:{node.sip_port}")
    call.wait_established()
    alice.wait_for_event("CALL_ESTABLISHED")
    alice.transfer("<sip:+862088880077@acme.example?X-BL-Data=note%3Dvip%26case%3D77>")
    alice.wait_for_event("CALL_CLOSED")
    started = node.wait_trace(lambda e: e["event"] == "ivr" and e["step"] == "start"
                              and e["call"] not in before)
    call_id = started[-1]["call"]
    assert node.wait_trace(lambda e: e["call"] == call_id and e["event"] == "transfer"
                           and e.get("mode") == "blind")
    pstn.send_dtmf("3*1*1")
    pstn.send_dtmf("4321#")
    node.wait_trace(lambda e: e["call"] == call_id and e.get("step") == "transfer", 20)
    [transfer] = ivr_steps(node, call_id, "transfer")
    assert transfer["data.account"] == "4321" and transfer["target"] == "1001"
    alice.wait_for_event("CALL_ESTABLISHED")  # the flow hands the caller back to 1001
    dialing = [e for e in node.trace() if e["call"] == call_id and e["event"] == "dialing"]
    assert parse_qs(dialing[-1]["data"]) == {"note": ["vip"], "case": ["77"],
                                              "account": ["4321"], "reason": ["billing"],
                                              "length": ["4"]}
    pstn.hangup()
    call.wait_closed()


def test_plugin_uploaded_by_api_checks_a_card_number(
        node: NodeHandle, phones: Any, tones: dict[int, Path]) -> None:
    """R-4.13: the tenant uploads its WebAssembly plug-in through the API; a flow calls
    it on the digits the caller typed and hands the verdict on with the call."""
    sample = Path(__file__).resolve().parents[2] / "appliance/ivr/samples/plugins/luhn.wat"
    req = urllib.request.Request(node.manifest["api"]["url"] + "/plugins/luhn",
                                 data=sample.read_bytes(), method="PUT", headers={
                                     "Authorization": f"Bearer {API_TOKENS['acme']}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201
    assert node.api("GET", "/plugins")[1] == {"plugins": ["luhn"]}
    assert node.api("GET", "/plugins", tenant="globex")[1] == {"plugins": []}
    agent = node.ua("1001")
    try:
        assert agent.register().status == 200
        for card, verdict in (("4111111111111111", "true"), ("4111111111111112", "false")):
            pstn = carrier(node, phones, tones[440], name=f"card{verdict}")
            call = pstn.dial(f"sip:+862088880011@127.0.0.1:{node.sip_port}")
            call.wait_established()
            pstn.send_dtmf(card + "#")
            invite = agent.wait_request("INVITE", timeout=20)
            assert parse_qs(invite.headers.get("X-BL-Data") or "", keep_blank_values=True) \
                == {"valid": [verdict], "error": [""]}
            pstn.hangup()
            call.wait_closed()
            pstn.stop()
    finally:
        agent.close()


def spoken_wav(path: Path, word: str, seconds: float = 60.0) -> Path:
    """A microphone for baresip: ``word`` (espeak-ng, en-us) every two seconds."""
    from appliance.media.wav import read_wav as read_mono
    from appliance.media.wav import write_wav

    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), word], check=True,
                   timeout=30)
    speech = read_mono(raw, 8000)
    period = np.zeros(16000, dtype=np.int16)
    period[4000:4000 + len(speech)] = speech[:12000]
    write_wav(path, np.tile(period, int(seconds / 2)), 8000)
    return path


@pytest.mark.parametrize("word", ["yes", "no"])
def test_speech_answer_is_recognised_and_travels_with_the_call(
        node: NodeHandle, phones: Any, tmp_run: Path, word: str) -> None:
    """R-4.19: the caller says the answer; the recogniser, held to the node's yes/no
    grammar, gives the flow its choice, which reaches the agent with the call."""
    agent = node.ua("1001")
    try:
        assert agent.register().status == 200
        pstn = carrier(node, phones, spoken_wav(tmp_run / f"{word}.wav", word),
                       name=f"asr-{word}")
        call = pstn.dial(f"sip:+862088880012@127.0.0.1:{node.sip_port}")
        call.wait_established()
        invite = agent.wait_request("INVITE", timeout=40)
        assert parse_qs(invite.headers.get("X-BL-Data") or "") == {"answer": [word]}
        pstn.hangup()
        call.wait_closed()
        pstn.stop()
    finally:
        agent.close()
