"""A real node (Kamailio edge + feature server + media) for end-to-end tests.

The node runs as its own process (``python -m appliance.demo --plan ...``) exactly as
``make run`` starts it, on free loopback ports, with a test plan of two tenants whose
carrier trunk is ``127.0.0.2``. Phones are real baresip instances; the carrier is a
baresip or SIPp bound to 127.0.0.2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from appliance.passwords import hash_secret
from appliance.plan import token_hash
from tests.harness.audio import make_tone_wav
from tests.harness.baresip import Account, BaresipPhone
from tests.harness.http import http_json
from tests.harness.procs import (
    ManagedProcess,
    free_port_pair,
    free_port_range,
    free_tcp_port,
    free_udp_port,
    release_ports,
    wait_for_file,
)
from tests.harness.sipua import SipUa

T = TypeVar("T")
CARRIER_IP = "127.0.0.2"
SAMPLE_FLOW = Path(__file__).resolve().parents[2] / "appliance/ivr/samples/acme-main.yaml"
PASSWORDS = {"1001": "acme-1001-pw", "1002": "acme-1002-pw", "1003": "acme-1003-pw",
             "2001": "globex-2001-pw", "2002": "globex-2002-pw"}


def test_plan(carrier_port: int, action_port: int = 9) -> dict[str, Any]:
    return {
        "version": 1,
        "node": {"id": "e2e", "api_tokens": [token_hash(API_TOKENS[None])]},
        "trunks": [{"name": "carrier", "address": CARRIER_IP, "port": carrier_port}],
        "tenants": [
            {
                "id": "acme", "domain": "acme.example", "caller_id": "+862088880000",
                "extensions": [{"number": n, "password": PASSWORDS[n]}
                               for n in ("1001", "1002", "1003")],
                "dids": [
                    {"number": "+862088880001", "target": "1001"},
                    {"number": "+862088880002", "target": "1002"},
                    {"number": "+862088880099", "target": "echo"},
                    {"number": "+862088880060", "target": "600"},
                    {"number": "+862088880077", "target": "flow:acme-main"},
                    {"number": "+862088880066", "target": "flow:pcap-keys"},
                    {"number": "+862088880055", "target": "flow:lookup"},
                    {"number": "+862088880044", "target": "flow:vm-leave"},
                    {"number": "+862088880033", "target": "flow:sys-voicemail"},
                    {"number": "+862088880022", "target": "flow:recorder"},
                    {"number": "+862088880011", "target": "flow:card"},
                    {"number": "+862088880012", "target": "flow:asr"},
                    {"number": "+862088880088", "target": "queue:sales"},
                ],
                "mailboxes": [{"number": "1001", "pin": hash_secret(VM_PIN)}],
                "api_tokens": [token_hash(API_TOKENS["acme"])],
                "hunt_groups": [{"number": "600", "members": ["1002", "1001"],
                                 "ring_seconds": 3}],
                "agents": [{"id": "alice", "extension": "1001",
                            "password": AGENT_HASHES["alice"]},
                           {"id": "bob", "extension": "1002",
                            "password": AGENT_HASHES["bob"]},
                           {"id": "sue", "extension": "1003", "supervisor": True,
                            "password": AGENT_HASHES["sue"]}],
                "queues": [{"name": "sales", "agents": ["alice", "bob"], "ring_seconds": 5}],
                "acd": {"crm_url": CRM_URL, "wrap_up_codes": WRAP_UP_CODES},
                "announcements": [{"number": "700", "text": "Welcome to Acme.",
                                   "voice": "en-us"}],
                "outbound": [{"prefix": "0", "trunk": "carrier", "strip": 1, "prepend": "+86"}],
                "flows": {"acme-main": yaml.safe_load(SAMPLE_FLOW.read_text()),
                          "pcap-keys": PCAP_FLOW, "lookup": lookup_flow(action_port),
                          "vm-leave": VM_LEAVE_FLOW, "notice": NOTICE_FLOW,
                          "recorder": RECORDER_FLOW, "card": CARD_FLOW, "asr": ASR_FLOW,
                          "account": ASSIST_FLOW},
                "actions": {"hosts": ["127.0.0.1"]},
            },
            {
                "id": "globex", "domain": "globex.example", "caller_id": "+85230000000",
                "extensions": [{"number": n, "password": PASSWORDS[n]} for n in ("2001", "2002")],
                "dids": [{"number": "+85230000001", "target": "2001"}],
                "announcements": [{"number": "700", "text": "欢迎致电环球公司。", "voice": "cmn"}],
                "outbound": [{"prefix": "9", "trunk": "carrier", "strip": 1}],
                "api_tokens": [token_hash(API_TOKENS["globex"])],
            },
        ],
    }


# A flow for SIPp's RFC 4733 pcaps: every key of one call must be a different pcap, in
# the pcaps' own sequence-number order (1 2 3 ... 9 * # 0), because replaying the same
# pcap twice repeats its RTP timestamp, which a receiver rightly takes for a duplicate.
PCAP_FLOW: dict[str, Any] = {
    "flow": "pcap-keys", "version": 1, "start": "level1", "shortcuts": {"*0": "entry"},
    "nodes": {
        "level1": {"type": "menu", "prompt": {"tts": "Level one."},
                   "options": {"2": "level2"}, "timeout": 8},
        "level2": {"type": "menu", "prompt": {"tts": "Level two."},
                   "options": {"3": "level3"}, "timeout": 8},
        "level3": {"type": "menu", "prompt": {"tts": "Level three."},
                   "options": {"4": "entry"}, "timeout": 8},
        "entry": {"type": "collect", "prompt": {"tts": "Enter the code."},
                  "variable": "code", "mode": "variable", "inter_digit_timeout": 2,
                  "first_digit_timeout": 8, "next": "done"},
        "done": {"type": "transfer", "extension": "1001", "data": {"code": "code"}},
    },
}


VM_PIN = "2468"
# the agents' desktop passwords (the plan holds scrypt hashes, made once per run)
AGENT_PASSWORDS = {"alice": "alice-desk-pw", "bob": "bob-desk-pw", "sue": "sue-desk-pw"}
AGENT_HASHES = {agent: hash_secret(pw) for agent, pw in AGENT_PASSWORDS.items()}
API_TOKENS = {"acme": "acme-api-token-0123456789", "globex": "globex-api-token-0123456789",
              None: "operator-api-token-0123456789"}
RECORDER_FLOW: dict[str, Any] = {  # records the caller, then plays it back
    "flow": "recorder", "version": 1, "start": "rec",
    "nodes": {"rec": {"type": "record", "prompt": {"tts": "Speak."}, "beep": False,
                      "file": "concat('take-', caller)", "max_seconds": 3,
                      "silence_seconds": 0, "result": "take", "next": "back"},
              "back": {"type": "play", "prompt": {"recording": "take.path"}, "next": "bye"},
              "bye": {"type": "hangup"}},
}
CARD_FLOW: dict[str, Any] = {  # a card number checked by the tenant's luhn plug-in
    "flow": "card", "version": 1, "start": "number",
    "nodes": {"number": {"type": "collect", "prompt": {"tts": "Card number."},
                         "variable": "card", "max_length": 19, "first_digit_timeout": 10,
                         "next": "check"},
              "check": {"type": "plugin", "plugin": "luhn", "function": "check",
                        "input": "card", "result": "luhn", "next": "agent",
                        "on_error": "agent"},
              "agent": {"type": "transfer", "extension": "1001",
                        "data": {"valid": "string(luhn.valid) if luhn_error == '' else 'error'",
                                 "error": "luhn_error"}}},
    "variables": {"luhn_error": ""},
}
ASR_FLOW: dict[str, Any] = {  # a spoken yes or no, then to 1001 with the answer
    "flow": "asr", "version": 1, "start": "ask", "variables": {"answer": "none"},
    "nodes": {"ask": {"type": "recognise", "grammar": "yesno", "variable": "answer",
                      "prompt": {"tts": "Say yes or no."}, "timeout": 5, "retries": 3,
                      "next": "agent", "on_failure": "agent"},
              "agent": {"type": "transfer", "extension": "1001",
                        "data": {"answer": "answer"}}},
}
# acme's wrap-up codes, offered by the desk after a queue call (R-5.2a)
WRAP_UP_CODES = ["sale", "no_sale", "callback"]
# acme's customer records, linked from the desk's screen pop (R-X.2)
CRM_URL = "https://crm.acme.example/customers?phone={caller}&queue={queue}"
ASSIST_FLOW: dict[str, Any] = {  # run for a customer beside the agent
    "flow": "account", "version": 1, "start": "ask",
    "nodes": {"ask": {"type": "collect", "prompt": {"file": "chime"}, "variable": "account",
                      "mode": "fixed", "length": 4, "first_digit_timeout": 20,
                      "next": "thanks"},
              "thanks": {"type": "play", "prompt": {"tts": "Thank you."}}},
}
NOTICE_FLOW: dict[str, Any] = {
    "flow": "notice", "version": 1, "start": "ask",
    "nodes": {"ask": {"type": "menu", "prompt": {"tts": "Your order has shipped. Press 1."},
                      "options": {"1": "thanks"}, "timeout": 10, "on_failure": "thanks"},
              "thanks": {"type": "hangup", "prompt": {"tts": "Thank you."}}},
}
VM_LEAVE_FLOW: dict[str, Any] = {
    "flow": "vm-leave", "version": 1, "start": "leave",
    "nodes": {"leave": {"type": "voicemail", "mailbox": "1001", "max_seconds": 20,
                        "silence_seconds": 4, "next": "thanks"},
              "thanks": {"type": "hangup", "prompt": {"tts": "Thank you."}}},
}


def lookup_flow(port: int) -> dict[str, Any]:
    """A flow with data actions: an HTTP lookup by the caller's number, a file write in
    the tenant's storage, then a transfer carrying what was found (or the error)."""
    return {
        "flow": "lookup", "version": 1, "start": "fetch", "variables": {"result_error": ""},
        "nodes": {
            "fetch": {"type": "http", "method": "GET", "result": "acct", "timeout": 2,
                      "url": f"concat('http://127.0.0.1:{port}/accounts/', caller)",
                      "next": "folder", "on_error": "broken"},
            "folder": {"type": "file", "op": "mkdir", "path": "'calls'", "next": "save",
                       "on_error": "broken"},
            "save": {"type": "file", "op": "write", "path": "'calls/last.txt'",
                     "content": "acct.json.name", "next": "go", "on_error": "broken"},
            "go": {"type": "transfer", "extension": "1001",
                   "data": {"name": "acct.json.name", "status": "string(acct.status)"}},
            "broken": {"type": "transfer", "extension": "1001",
                       "data": {"error": "concat(acct_error, result_error)"}},
        },
    }


def wait_for(probe: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)


@dataclass
class NodeHandle:
    run_dir: Path
    sip_port: int
    fs_port: int
    carrier_port: int
    action_port: int
    manifest: dict[str, Any]
    proc: ManagedProcess
    rtp: tuple[int, int]

    def stop(self) -> None:
        """Stop the node and hand its RTP range back for later tests."""
        self.proc.stop()
        release_ports(*self.rtp)

    @property
    def outbound(self) -> str:
        return f"sip:127.0.0.1:{self.sip_port}"

    def cdrs(self, tenant: str | None = None) -> list[dict[str, Any]]:
        cmd = list(self.manifest["cdr"]["command"])
        if tenant:
            cmd += ["--tenant", tenant]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_cdr(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        return wait_for(lambda: next((c for c in self.cdrs() if predicate(c)), None),
                        timeout, "a matching CDR")

    def trace(self) -> list[dict[str, Any]]:
        path = Path(self.manifest["trace"]["path"])
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_trace(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        return wait_for(lambda: [e for e in self.trace() if predicate(e)], timeout,
                        "a matching trace event")

    def api(self, method: str, path: str, tenant: str | None = "acme", body: Any = None,
            ) -> tuple[int, Any]:
        """Call the node's HTTP API as ``tenant`` (None: the operator); JSON decoded,
        raw bytes for anything else."""
        return http_json(method, self.manifest["api"]["url"] + path, API_TOKENS[tenant], body)

    def ua(self, number: str) -> SipUa:
        """A scripted UA for an acme extension, through the node's edge (not registered
        yet: call ``register()``)."""
        return SipUa(number, "acme.example", PASSWORDS[number], ("127.0.0.1", self.sip_port))

    def account(self, number: str, password: str | None = None, **kw: Any) -> Account:
        domain = "acme.example" if number.startswith("1") else "globex.example"
        return Account(user=number, domain=domain,
                       password=PASSWORDS[number] if password is None else password,
                       outbound=self.outbound, **kw)


def start_node(workdir: Path, *, extra_args: tuple[str, ...] = (),
               flood_limit: int = 2000,
               plan_edit: Callable[[dict[str, Any]], None] | None = None) -> NodeHandle:
    """A node on the test plan (``plan_edit`` may change it first)."""
    carrier_port = free_port_pair(CARRIER_IP)
    sip_port = free_port_pair("127.0.0.1")
    fs_port = free_udp_port("127.0.0.1")
    low, high = free_port_range("127.0.0.1", 400)
    plan_path = workdir / "plan.yaml"
    action_port = free_tcp_port("127.0.0.1")
    api_port = free_tcp_port("127.0.0.1")
    plan = test_plan(carrier_port, action_port)
    if plan_edit is not None:
        plan_edit(plan)
    plan_path.write_text(yaml.safe_dump(plan, allow_unicode=True))
    proc = ManagedProcess(
        "node",
        [sys.executable, "-m", "appliance.demo", "--run-dir", str(workdir), "--plan",
         str(plan_path), "--sip-port", str(sip_port), "--fs-port", str(fs_port),
         "--rtp-range", f"{low}-{high}", "--flood-limit", str(flood_limit), "--ring-timeout", "20",
         "--api-port", str(api_port),
         *extra_args],
        workdir, cwd=Path(__file__).resolve().parents[2], long_lived=True,
    ).start()
    wait_for_file(proc, workdir / "demo.json")
    manifest = json.loads((workdir / "demo.json").read_text())
    return NodeHandle(workdir, sip_port, fs_port, carrier_port, action_port, manifest, proc,
                      (low, high))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("node"), extra_args=("--record",))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    d = tmp_path_factory.mktemp("tones")
    return {f: make_tone_wav(d / f"tone{f}.wav", f, 60.0) for f in (440, 1000, 1400, 700)}


@pytest.fixture
def phones(tmp_run: Path) -> Iterator[Any]:
    """Factory of started baresip phones, all stopped at the end of the test."""
    started: list[BaresipPhone] = []

    def make(account: Account, *, tone: Path | None = None, listen_host: str = "127.0.0.1",
             name: str | None = None, register: bool = True, **kw: Any) -> BaresipPhone:
        phone = BaresipPhone(tmp_run / (name or account.user), account, tone_wav=tone,
                             listen_host=listen_host, name=name, **kw)
        started.append(phone)
        phone.start()
        if register and account.password is not None and account.outbound:
            phone.wait_registered()
        return phone

    try:
        yield make
    finally:
        for p in started:
            p.stop()
