"""Browser softphones through a real node: Debian's Chromium (Playwright) runs the JsSIP
softphone (web/softphone) over SIP/WebSocket to the node's edge, and rtpengine turns the
browser's ICE + DTLS-SRTP into the plain RTP of the feature server.

Chromium's microphone is a tone file (``--use-file-for-fake-audio-capture``); the page
measures what it receives with a Goertzel filter over WebAudio blocks (test.html's
``measureTones``) and baresip records what it receives, so each side proves it hears the
other's tone. rtpengine's own call list (its ng ``list`` command) shows which calls it
carries: those with a browser on one side, and no other.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.web import SOFTPHONE_JS, SOFTPHONE_TEST_PAGE
from tests.e2e.conftest import PASSWORDS, NodeHandle, start_node, wait_for
from tests.harness.audio import dominant_tone_check, read_wav, rms
from tests.harness.baresip import BaresipPhone
from tests.harness.procs import free_port_range, free_tcp_port, free_udp_port, release_ports

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
BROWSER_TONE, PHONE_TONE, UNUSED = 1000, 440, 1400
ECHO = "+862088880099"  # acme's echo service in the e2e plan
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (the browser is told to accept it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "wss-cert.pem", directory / "wss-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def webrtc_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    """A node with SIP over WebSocket (ws:// and wss://) on and its own rtpengine."""
    workdir = tmp_path_factory.mktemp("webrtc-node")
    cert, key = self_signed_certificate(workdir)
    low, high = free_port_range("127.0.0.1", 100)
    handle = start_node(workdir, extra_args=(
        "--ws-port", str(free_tcp_port("127.0.0.1")),
        "--wss-port", str(free_tcp_port("127.0.0.1")), "--tls-cert", str(cert),
        "--tls-key", str(key), "--rtpengine-port", str(free_udp_port("127.0.0.1")),
        "--webrtc-rtp-range", f"{low}-{high}"))
    try:
        yield handle
    finally:
        handle.stop()
        release_ports(low, high)


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """test.html and the built softphone.js, served from a thread on 127.0.0.1."""
    if not SOFTPHONE_JS.exists():
        pytest.skip(f"{SOFTPHONE_JS} is not built: run `make setup` (npm + esbuild)")
    files = {"/test.html": (SOFTPHONE_TEST_PAGE, "text/html"),
             "/softphone.js": (SOFTPHONE_JS, "text/javascript")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, ctype = files.get(self.path, (None, ""))
            if path is None:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            body = path.read_bytes()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="softphone-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/test.html"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


class BrowserPhone:
    """The softphone in a page of test.html: commands are page calls, events are read
    from ``window.events`` in order (each wait starts after the last event returned)."""

    def __init__(self, page: Any, ws_url: str, number: str) -> None:
        self.page = page
        self.number = number
        self.ws_url = ws_url
        self.seen = 0

    def start(self, password: str | None = None) -> None:
        self.page.evaluate("o => startPhone(o)", {
            "wsUrl": self.ws_url, "uri": f"sip:{self.number}@acme.example",
            "password": PASSWORDS[self.number] if password is None else password,
            "displayName": f"Browser {self.number}"})

    def do(self, script: str) -> Any:
        return self.page.evaluate(script)

    def wait(self, name: str, timeout: float = 10.0,
             fail: tuple[str, ...] = ("failed", "registrationFailed")) -> dict[str, Any]:
        """The next event called ``name``; an event in ``fail`` first is an error."""
        index = self.page.wait_for_function(
            """([names, from]) => {
                const i = window.events.findIndex((e, k) => k >= from && names.includes(e.name));
                return i >= 0 ? i + 1 : false;
            }""", arg=[[name, *fail], self.seen], timeout=timeout * 1000).json_value()
        self.seen = int(index)
        event: dict[str, Any] = self.page.evaluate(f"window.events[{self.seen - 1}]")
        if event["name"] != name:
            raise AssertionError(f"browser {self.number}: {event} while waiting for {name}")
        return event

    def register(self) -> None:
        self.do("phone.register()")
        self.wait("registered")

    def unregister(self) -> None:
        self.do("phone.unregister()")
        self.wait("unregistered")

    def wait_remote_audio(self, timeout: float = 5.0) -> None:
        """Until the call's remote stream has an audio track (again, after a hold)."""
        self.page.wait_for_function(
            "() => phone.remoteStream && phone.remoteStream.getAudioTracks().length > 0",
            timeout=timeout * 1000)

    def levels(self, seconds: float = 1.5, *, may_lack_track: bool = False,
               ) -> dict[int, float]:
        """Mean Goertzel power of the received audio at the test's tones (full scale
        1.0: a sine of amplitude A gives A**2 / 4). On hold the browser may have removed
        the remote track (``may_lack_track``): then every power is 0."""
        got = self.page.evaluate("([f, s]) => measureTones(f, s)",
                                 [[PHONE_TONE, BROWSER_TONE, UNUSED], seconds])
        assert got["blocks"] > 10 or (may_lack_track and got["tracks"] == 0), got
        return {int(f): p for f, p in got["power"].items()}

    def hears(self, expected: int, other: int) -> dict[int, float]:
        power = self.levels()
        assert power[expected] > 1e-3, f"browser hears {expected} Hz at only {power}"
        assert power[expected] > 10 * power[other], f"browser: {power}"
        assert power[expected] > 10 * power[UNUSED], f"browser: {power}"
        return power

    def stats(self) -> dict[str, Any]:
        return dict(self.page.evaluate("phone.stats()"))


@contextmanager
def browser_phone(node: NodeHandle, page_url: str, tone: Path, number: str = "1003",
                  transport: str = "ws") -> Iterator[BrowserPhone]:
    """A fresh headless Chromium (its own profile) whose microphone plays ``tone``, on
    test.html, with a softphone for acme ``number`` over the node's ws:// (or wss://,
    trusting the node's self-signed certificate) port."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} missing: make setup installs Debian's chromium")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            *CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={tone}",
            *(["--ignore-certificate-errors"] if transport == "wss" else [])])
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(page_url)
            phone = BrowserPhone(page, node.manifest["web"][f"{transport}_url"], number)
            try:
                yield phone
            except BaseException:
                print("browser console:\n" + "\n".join(console[-40:]))
                raise
        finally:
            browser.close()


_COOKIES = itertools.count(1)


def rtpengine_calls(node: NodeHandle) -> list[str]:
    """Call-IDs rtpengine carries now (ng ``list``)."""
    argv = node.proc.argv
    port = int(argv[argv.index("--rtpengine-port") + 1])
    cookie = f"t{next(_COOKIES)}".encode()  # rtpengine answers a repeated cookie from cache
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        s.sendto(cookie + b" d7:command4:liste", ("127.0.0.1", port))
        reply = s.recv(65536)
    assert reply.startswith(cookie + b" ") and b"6:result2:ok" in reply, reply
    body = reply[reply.index(b"5:calls") + 7:]
    calls, pos = [], 1  # a bencoded list: l<len>:<id>...e
    while body[pos:pos + 1] != b"e":
        m = re.match(rb"(\d+):", body[pos:])
        assert m is not None, reply
        start = pos + m.end()
        calls.append(body[start:start + int(m.group(1))].decode())
        pos = start + int(m.group(1))
    return calls


def wait_cdrs(node: NodeHandle, origin: str, callee: str, count: int,
              ) -> list[dict[str, Any]]:
    """The CDRs of calls from ``origin`` to ``callee``, once there are ``count``."""
    def found() -> list[dict[str, Any]] | None:
        got = [c for c in node.cdrs() if c["origin"] == origin and c["callee"] == callee]
        return got if len(got) >= count else None
    return wait_for(found, 10, f"{count} CDR(s) of {origin} -> {callee}")


def assert_phone_hears(phone: BaresipPhone, expected: int, other: int) -> float:
    """The phone's newest recording of received audio carries ``expected`` Hz, not
    ``other``; returns the ratio of their powers."""
    wav = phone.wait_recording(2.0, "dec")
    rate, samples = read_wav(wav)
    ratio = dominant_tone_check((rate, samples), expected, other, skip_seconds=0.5)
    assert ratio > 10, f"{phone.name} heard {expected} Hz only {ratio:.1f}x over {other} Hz"
    assert rms(samples[int(0.5 * rate):]) > 500
    return ratio


def test_browser_calls_a_phone_two_way_audio_hold_and_hangup_by_the_phone(
        webrtc_node: NodeHandle, page_url: str, phones: Any, tones: dict[int, Path]) -> None:
    alice = phones(webrtc_node.account("1001"), tone=tones[PHONE_TONE])
    with browser_phone(webrtc_node, page_url, tones[BROWSER_TONE]) as web:
        web.start()
        web.register()
        web.do("phone.call('1001')")
        web.wait("confirmed")
        alice.wait_for_event("CALL_ESTABLISHED")
        heard = web.hears(PHONE_TONE, BROWSER_TONE)
        ratio = assert_phone_hears(alice, BROWSER_TONE, PHONE_TONE)
        print(f"browser hears {heard}, phone's {BROWSER_TONE}/{PHONE_TONE} ratio {ratio:.0f}")
        stats = web.stats()
        assert stats["codec"] in ("PCMU", "PCMA") and stats["packetsReceived"] > 50, stats
        assert len(rtpengine_calls(webrtc_node)) == 1  # the browser's leg, not alice's

        holds = len(webrtc_node.trace())
        web.do("phone.hold()")
        web.wait("hold")
        wait_for(lambda: [e for e in webrtc_node.trace()[holds:] if e["event"] == "hold"],
                 5, "the node's hold")
        held = web.levels(1.0, may_lack_track=True)  # nothing is sent to a leg on hold
        assert held[PHONE_TONE] < heard[PHONE_TONE] / 100, (held, heard)
        web.do("phone.unhold()")
        web.wait("unhold")
        wait_for(lambda: [e for e in webrtc_node.trace()[holds:] if e["event"] == "resume"],
                 5, "the node's resume")
        web.wait_remote_audio()
        print(f"on hold {held}, after unhold {web.hears(PHONE_TONE, BROWSER_TONE)}")

        alice.hangup()
        web.wait("ended")
        wait_for(lambda: not rtpengine_calls(webrtc_node), 5, "rtpengine's call deleted")
        web.unregister()
    [cdr] = wait_cdrs(webrtc_node, "ext:1003", "1001", 1)
    assert (cdr["disposition"], cdr["hangup_side"]) == ("answered", "callee")


def test_phone_calls_the_browser_cancelled_then_answered_held_and_hung_up_by_the_browser(
        webrtc_node: NodeHandle, page_url: str, phones: Any, tones: dict[int, Path]) -> None:
    alice = phones(webrtc_node.account("1001"), tone=tones[PHONE_TONE])
    with browser_phone(webrtc_node, page_url, tones[BROWSER_TONE]) as web:
        web.start()
        web.register()
        # first a call the phone gives up before the browser answers (CANCEL)
        unanswered = alice.dial("sip:1003@acme.example")
        web.wait("incoming")
        assert len(rtpengine_calls(webrtc_node)) == 1
        alice.hangup()
        unanswered.wait_closed()
        assert web.wait("failed", fail=("confirmed",))["detail"]["cause"] == "Canceled"
        wait_for(lambda: not rtpengine_calls(webrtc_node), 5, "rtpengine's call deleted")

        call = alice.dial("sip:1003@acme.example")
        incoming = web.wait("incoming")
        assert incoming["detail"]["from"].startswith("sip:1001@acme.example"), incoming
        web.do("phone.answer()")
        web.wait("confirmed")
        call.wait_established()
        heard = web.hears(PHONE_TONE, BROWSER_TONE)
        ratio = assert_phone_hears(alice, BROWSER_TONE, PHONE_TONE)
        print(f"browser hears {heard}, phone's {BROWSER_TONE}/{PHONE_TONE} ratio {ratio:.0f}")

        # the phone holds: the node's own re-INVITEs reach the browser through rtpengine
        alice.hold()
        assert web.wait("hold")["detail"]["originator"] == "remote"
        alice.resume()
        assert web.wait("unhold")["detail"]["originator"] == "remote"
        web.wait_remote_audio()
        print(f"after the phone's hold and resume {web.hears(PHONE_TONE, BROWSER_TONE)}")

        web.do("phone.hangup()")
        web.wait("ended")
        call.wait_closed()
        wait_for(lambda: not rtpengine_calls(webrtc_node), 5, "rtpengine's call deleted")
        web.unregister()
    calls = wait_cdrs(webrtc_node, "ext:1001", "1003", 2)
    assert sorted((c["disposition"], c["hangup_side"]) for c in calls) == [
        ("answered", "callee"), ("cancelled", "caller")]


def test_browser_over_wss_hears_itself_from_the_echo_service_and_phones_bypass_rtpengine(
        webrtc_node: NodeHandle, page_url: str, phones: Any, tones: dict[int, Path]) -> None:
    with browser_phone(webrtc_node, page_url, tones[BROWSER_TONE], transport="wss") as web:
        web.start(password="not-the-password")
        web.do("phone.register()")
        web.wait("registrationFailed", fail=("registered",))
        web.start()
        web.register()
        web.do(f"phone.call('{ECHO}')")
        web.wait("confirmed")
        print(f"browser hears itself: {web.hears(BROWSER_TONE, PHONE_TONE)}")
        assert len(rtpengine_calls(webrtc_node)) == 1
        web.do("phone.sendDTMF('5')")  # SIP INFO, taken by the feature server
        dtmf = webrtc_node.wait_trace(lambda e: e["event"] == "dtmf" and e["digit"] == "5")
        assert dtmf[-1]["method"] == "info", dtmf

        # two UDP phones on the same node meanwhile: the feature server relays them alone
        alice = phones(webrtc_node.account("1001"), tone=tones[PHONE_TONE])
        bob = phones(webrtc_node.account("1002"), tone=tones[UNUSED])
        call = alice.dial("sip:1002@acme.example")
        call.wait_established()
        bob.wait_for_event("CALL_ESTABLISHED")
        assert_phone_hears(bob, PHONE_TONE, UNUSED)
        assert len(rtpengine_calls(webrtc_node)) == 1
        alice.hangup()
        call.wait_closed()

        web.do("phone.hangup()")
        web.wait("ended")
        wait_for(lambda: not rtpengine_calls(webrtc_node), 5, "rtpengine's call deleted")
        web.unregister()
    [cdr] = wait_cdrs(webrtc_node, "ext:1003", ECHO, 1)
    assert cdr["disposition"] == "answered" and cdr["hangup_side"] == "caller"
