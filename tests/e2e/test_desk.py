"""The agent desktop on a real node: Debian's Chromium (Playwright) opens the page the node
serves at ``/desk/``, signs in as acme's agent alice with her extension's SIP password,
goes ready, and takes a carrier call from the sales queue in the page's softphone (JsSIP
over ws:// to the edge, rtpengine for the media).

The carrier is a scripted UA at 127.0.0.2 (``Phone`` of test_tenancy) calling the queue
DID, or acme's main flow and pressing 1 for sales (SIP INFO). The browser's microphone
is a 1000 Hz tone file, the carrier sends 700 Hz: the page measures what it receives
with a Goertzel filter over WebAudio blocks (as test_webrtc does, here on the page's own
remote audio element) and the carrier's received RTP is analysed in Python. Everything
the test reads of the page comes from its DOM: the screen pop, the call state, the live
panel (own state, team, waiting per queue).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.web import SOFTPHONE_JS
from tests.e2e.conftest import (
    AGENT_PASSWORDS,
    API_TOKENS,
    CARRIER_IP,
    PASSWORDS,
    NodeHandle,
    start_node,
    wait_for,
)
from tests.e2e.test_acd import call_api, received, sign_in, tone
from tests.e2e.test_tenancy import Phone
from tests.e2e.test_webrtc import CHROMIUM, CHROMIUM_FLAGS, rtpengine_calls
from tests.harness.audio import goertzel_power
from tests.harness.procs import free_port_range, free_tcp_port, free_udp_port, release_ports

pytestmark = pytest.mark.e2e
QUEUE_DID = "+862088880088"  # acme's sales queue in the e2e plan (ring_seconds 5)
IVR_DID = "+862088880077"  # acme-main: key 1 takes the caller to sales with reason=sales
CALLER = "+8613912345678"
ECHO = "+862088880099"  # acme's echo service
BROWSER_TONE, CALLER_TONE, UNUSED = 1000, 700, 1400

# Mean Goertzel power (full scale 1.0: a sine of amplitude A gives A**2 / 4) of what the
# page's remote audio element plays, at each frequency, over `seconds` of WebAudio blocks.
MEASURE_JS = """async ([freqs, seconds]) => {
  const stream = document.getElementById("remote-audio").srcObject;
  if (!stream || stream.getAudioTracks().length === 0) return {blocks: 0, power: {}};
  const ctx = new AudioContext();
  await ctx.resume();
  const source = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const block = new Float32Array(analyser.fftSize);
  const sums = Object.fromEntries(freqs.map((f) => [f, 0]));
  let blocks = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 1000 * analyser.fftSize / ctx.sampleRate));
    analyser.getFloatTimeDomainData(block);
    for (const f of freqs) {
      const w = 2 * Math.PI * f / ctx.sampleRate;
      let re = 0, im = 0;
      for (let k = 0; k < block.length; k++) {
        re += block[k] * Math.cos(w * k);
        im += block[k] * Math.sin(w * k);
      }
      sums[f] += (re * re + im * im) / (block.length * block.length);
    }
    blocks += 1;
  }
  source.disconnect();
  await ctx.close();
  return {blocks, power: Object.fromEntries(freqs.map((f) => [f, sums[f] / blocks]))};
}"""


@pytest.fixture(scope="module")
def desk_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    """A node with SIP over plain WebSocket and its rtpengine (as in test_webrtc)."""
    low, high = free_port_range("127.0.0.1", 60)
    handle = start_node(tmp_path_factory.mktemp("desk-node"), extra_args=(
        "--ws-port", str(free_tcp_port("127.0.0.1")),
        "--rtpengine-port", str(free_udp_port("127.0.0.1")),
        "--webrtc-rtp-range", f"{low}-{high}"))
    try:
        yield handle
    finally:
        handle.stop()
        release_ports(low, high)


class Desk:
    """The page in a browser tab: clicks and form input, and what its DOM shows."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def text(self, selector: str) -> str:
        return str(self.page.locator(selector).inner_text()).strip()

    def wait(self, script: str, arg: Any = None, timeout: float = 10.0) -> Any:
        return self.page.wait_for_function(script, arg=arg, timeout=timeout * 1000).json_value()

    def sign_in(self, agent: str, extension: str) -> None:
        self.page.fill("#domain", "acme.example")
        self.page.fill("#agent", agent)
        self.page.fill("#password", AGENT_PASSWORDS[agent])
        self.page.fill("#sip-password", PASSWORDS[extension])
        self.page.click("#sign-in-button")
        self.wait("() => !document.getElementById('desk').hidden")
        self.wait_phone("registered")
        self.wait("() => document.getElementById('stream-status').dataset.state === 'live'")

    def wait_phone(self, state: str) -> None:
        self.wait("s => document.getElementById('phone-status').dataset.state === s", state)

    def wait_call(self, state: str, timeout: float = 10.0) -> None:
        self.wait("s => document.getElementById('call-status').dataset.state === s", state,
                  timeout)

    def own(self) -> dict[str, str]:
        return dict(self.page.evaluate("""() => {
            const el = document.getElementById('own-state');
            return {state: el.dataset.state, reason: el.dataset.reason,
                    text: el.textContent, time: document.getElementById('own-time').textContent};
        }"""))

    def wait_own(self, state: str, reason: str | None = None, timeout: float = 10.0
                 ) -> dict[str, str]:
        self.wait("""([s, r]) => {
            const el = document.getElementById('own-state');
            return el.dataset.state === s && (r === null || el.dataset.reason === r);
        }""", [state, reason], timeout)
        return self.own()

    def team(self) -> dict[str, int]:
        return {key: int(self.text(f"#team-{key}"))
                for key in ("logged-in", "ready", "busy", "not-ready", "on-break")}

    def wait_team(self, key: str, count: int) -> None:
        self.wait("([k, n]) => document.getElementById('team-' + k).textContent === String(n)",
                  [key, count])

    def wait_waiting(self, queue: str, count: int) -> None:
        self.wait("""([q, n]) => {
            const cell = document.querySelector(`tr[data-queue="${q}"] td.waiting`);
            return cell !== null && cell.textContent === String(n);
        }""", [queue, count])

    def wait_pop(self) -> dict[str, str]:
        """The screen pop once shown: the caller and the call's data, by key."""
        self.wait("() => !document.getElementById('screen-pop').hidden")
        return dict(self.page.evaluate("""() => Object.fromEntries([
            ['caller', document.getElementById('pop-caller').textContent],
            ...[...document.querySelectorAll('#pop-data dd[data-key]')].map(
                (dd) => [dd.dataset.key, dd.textContent])])"""))

    def pop_hidden(self) -> bool:
        return bool(self.page.evaluate("() => document.getElementById('screen-pop').hidden"))

    def night(self) -> dict[str, Any]:
        """The night-time alert: the screen pop's badge and whether the page sounds it."""
        return dict(self.page.evaluate("""() => {
            const badge = document.getElementById('pop-night');
            return {badge: !badge.hidden, text: badge.textContent,
                    alerting: document.body.dataset.alerting === 'true'};
        }"""))

    def day(self) -> dict[str, str]:
        """The live panel's own-day figures by id without ``own-`` (``answered``,
        ``talk``, ``wrap-up``, ``outbound-calls``, ``outbound``, ``not-ready-periods``,
        ``not-ready``, ``breaks``, ``break``)."""
        return dict(self.page.evaluate("""() => Object.fromEntries(
            [...document.querySelectorAll('#own-day dd')].map(
                (dd) => [dd.id.replace(/^own-/, ''), dd.textContent]))"""))

    def wait_day(self, key: str, text: str, timeout: float = 10.0) -> dict[str, str]:
        self.wait("([k, v]) => document.getElementById('own-' + k).textContent === v",
                  [key, text], timeout)
        return self.day()

    def levels(self, seconds: float = 2.0) -> dict[int, float]:
        got = self.page.evaluate(MEASURE_JS, [[CALLER_TONE, BROWSER_TONE, UNUSED], seconds])
        assert got["blocks"] > 10, got
        return {int(f): p for f, p in got["power"].items()}

    def go_ready(self) -> dict[str, str]:
        """Click Ready; the page's own state once it shows ready."""
        self.page.click("#ready")
        return self.wait_own("ready")

    def answer(self) -> None:
        """Answer the ringing call in the page; returns once it is talking."""
        self.page.click("#answer")
        self.wait_call("talking")

    def sign_out(self) -> None:
        self.page.click("#sign-out")
        self.wait("() => !document.getElementById('sign-in').hidden")


@contextmanager
def desk_browser(node: NodeHandle, tone_wav: Path) -> Iterator[Desk]:
    """A fresh headless Chromium whose microphone plays ``tone_wav``, on the node's
    ``/desk/`` page; a Content-Security-Policy violation or a page error fails the test."""
    with desk_browsers(node, [tone_wav]) as (desk,):
        yield desk


@contextmanager
def desk_browsers(node: NodeHandle, tone_wavs: list[Path]) -> Iterator[tuple[Desk, ...]]:
    """One browser per tone file (Chromium's fake microphone is per process), each on the
    node's ``/desk/`` page, as ``desk_browser``."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} missing: make setup installs Debian's chromium")
    if not SOFTPHONE_JS.exists():
        pytest.skip(f"{SOFTPHONE_JS} is not built: run `make setup` (npm + esbuild)")
    url = node.manifest["api"]["url"].removesuffix("/api/v1") + "/desk/"
    with sync_api.sync_playwright() as p:
        browsers: list[Any] = []
        console: list[str] = []
        try:
            desks = []
            for n, wav in enumerate(tone_wavs):
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                    *CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={wav}"])
                browsers.append(browser)
                page = browser.new_page(viewport={"width": 1024, "height": 768},
                                        locale="en-US")
                page.on("console", lambda m, n=n: console.append(f"[{n}] {m.type}: {m.text}"))
                page.on("pageerror", lambda e, n=n: console.append(f"[{n}] pageerror: {e}"))
                page.goto(url)
                page.wait_for_function("() => document.body.dataset.ready === 'true'")
                desks.append(Desk(page))
            try:
                yield tuple(desks)
                bad = [m for m in console if "Content Security Policy" in m
                       or "pageerror" in m]
                assert not bad, bad
            except BaseException:
                print("browser console:\n" + "\n".join(console[-40:]))
                raise
        finally:
            for browser in browsers:
                browser.close()


def drain(sock: socket.socket) -> None:
    """Drop what has arrived so far (the queue's hold prompt)."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(2048)
    except BlockingIOError:
        pass


def clock_seconds(text: str) -> int:
    """The page's m:ss or h:mm:ss as seconds."""
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def carrier_phone(node: NodeHandle) -> Phone:
    return Phone(CALLER, f"127.0.0.1:{node.sip_port}", "", ("127.0.0.1", node.sip_port),
                 local_ip=CARRIER_IP)


def snapshot_agent(node: NodeHandle, agent: str) -> dict[str, Any]:
    status, snap = call_api(node, "GET", "/acd", API_TOKENS["acme"])
    assert status == 200, snap
    return dict(next(a for a in snap["agents"] if a["id"] == agent))


def test_browser_agent_answers_a_queue_call_with_screen_pop_two_way_audio_and_live_panel(
        desk_node: NodeHandle, tones: dict[int, Path]) -> None:
    node = desk_node
    carrier = carrier_phone(node)
    started = time.monotonic()
    try:
        with desk_browser(node, tones[BROWSER_TONE]) as desk:
            desk.sign_in("alice", "1001")
            assert desk.text("#who") == "alice (acme), extension 1001"
            assert desk.own()["state"] == "not_ready"
            assert desk.go_ready()["text"] == "Ready"
            desk.wait_team("ready", 1)

            call = carrier.answered(QUEUE_DID)  # the queue answers, the caller waits
            pop = desk.wait_pop()  # alice's softphone rings with the call's data
            assert pop["queue"] == "sales" and pop["caller"].startswith(CALLER), pop
            # the tenant's customer record for this caller (R-X.2)
            assert desk.page.get_attribute("#pop-crm", "href") == \
                "https://crm.acme.example/customers?phone=%2B8613912345678&queue=sales"
            desk.wait_call("ringing")
            # a daytime offer: no night badge, no alert (test_desk_night has the night)
            assert desk.night() == {"badge": False, "text": "Night-time call",
                                    "alerting": False}
            assert desk.wait_own("reserved")["text"] == "Ringing"
            desk.answer()
            assert desk.wait_own("talking")["text"] == "Talking"
            desk.wait_team("busy", 1)
            assert snapshot_agent(node, "alice")["state"] == "talking"
            assert len(rtpengine_calls(node)) == 1

            # two-way audio: the carrier sends 700 Hz while the page and the carrier listen
            at_carrier: list[np.ndarray[Any, np.dtype[np.int16]]] = []

            def carrier_listens() -> None:
                drain(carrier.rtp)
                at_carrier.append(received(carrier.rtp, 2.0))

            sender = threading.Thread(target=carrier.send_audio,
                                      args=(call, tone(CALLER_TONE, 4.0)), daemon=True)
            listener = threading.Thread(target=carrier_listens, daemon=True)
            sender.start()
            listener.start()
            heard = desk.levels(2.0)
            listener.join(5)
            sender.join(5)
            assert heard[CALLER_TONE] > 1e-3, f"the page hears {heard}"
            assert heard[CALLER_TONE] > 10 * heard[BROWSER_TONE], heard
            assert heard[CALLER_TONE] > 10 * heard[UNUSED], heard
            [audio] = at_carrier
            assert audio.size > 8000, "the carrier received under 1 s of audio"
            power = {f: goertzel_power(audio, f, 8000, block=160)
                     for f in (BROWSER_TONE, CALLER_TONE, UNUSED)}
            assert power[BROWSER_TONE] > 10 * power[CALLER_TONE], power
            assert power[BROWSER_TONE] > 10 * power[UNUSED], power
            assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 500
            print(f"page hears {heard}; carrier hears {power}")

            # hold and resume, a key of the dial pad (SIP INFO), all seen by the node
            desk.page.click("#hold")
            desk.wait_call("held")
            node.wait_trace(lambda e: e["event"] == "hold")
            desk.page.click("#hold")
            desk.wait_call("talking")
            node.wait_trace(lambda e: e["event"] == "resume")
            desk.page.click("#keypad button[data-key='5']")
            node.wait_trace(lambda e: e["event"] == "dtmf" and e.get("digit") == "5")

            carrier.hang_up(call)  # the caller hangs up: the page's call ends
            desk.wait_call("idle")
            assert desk.pop_hidden()
            assert desk.wait_own("ready")["text"] == "Ready"  # no wrap-up in this queue
            desk.wait_team("busy", 0)
            wait_for(lambda: not rtpengine_calls(node), 5, "rtpengine's call deleted")

            # her own day on the live panel (the daily record): the call and its talk time
            day = desk.wait_day("answered", "1")
            assert clock_seconds(day["talk"]) >= 2, day
            assert (day["not-ready-periods"], day["outbound-calls"], day["breaks"]) == \
                ("1", "0", "0"), day  # not ready from the sign-in until "Ready"

            # another tenant's token sees nothing of acme's ACD
            assert call_api(node, "GET", "/acd/events", API_TOKENS["globex"])[0] == 404

            # breaks: refused while bob is on break (one at a time here), then approved
            status, bob = sign_in(node, "bob")
            assert status == 201
            assert call_api(node, "PUT", "/agents/bob/state", bob["token"],
                            {"state": "break"})[1]["approved"] is True
            desk.page.click("#break")
            desk.wait("() => document.getElementById('break-result').dataset.result"
                      " === 'refused'")
            assert call_api(node, "DELETE", "/agent-sessions/current", bob["token"])[0] == 204
            desk.page.click("#break")
            desk.wait("() => document.getElementById('break-result').dataset.result"
                      " === 'approved'")
            desk.wait_own("break")

            desk.sign_out()
            assert snapshot_agent(node, "alice")["state"] == "logged_out"
        print(f"desk test took {time.monotonic() - started:.1f} s")
    finally:
        carrier.hang_up_all()
        carrier.close()


def test_unanswered_offer_from_the_ivr_sets_the_browser_agent_not_ready_and_the_caller_waits(
        desk_node: NodeHandle, tones: dict[int, Path]) -> None:
    node = desk_node
    carrier = carrier_phone(node)
    try:
        with desk_browser(node, tones[BROWSER_TONE]) as desk:
            desk.sign_in("alice", "1001")
            desk.go_ready()
            # the caller goes through acme's main flow: 1 for sales (SIP INFO)
            call = carrier.answered(IVR_DID)
            node.wait_trace(lambda e: e["event"] == "ivr" and e.get("node") == "main")
            assert carrier.in_dialog(call, "INFO", b"Signal=1\r\nDuration=160\r\n",
                                     "application/dtmf-relay").status == 200
            pop = desk.wait_pop()  # with what the flow collected
            assert (pop["queue"], pop["reason"]) == ("sales", "sales"), pop
            desk.wait_own("reserved")
            # nobody answers: after the queue's 5 s the ACD sets alice not ready
            own = desk.wait_own("not_ready", "no_answer", timeout=15)
            assert own["text"] == "Not ready — no answer", own
            desk.wait_call("idle")  # the node cancelled the ringing
            assert desk.pop_hidden()
            desk.wait_waiting("sales", 1)  # the caller keeps its place in the line
            assert desk.team()["not-ready"] == 1

            # the page's labels in the other languages
            desk.page.select_option("#language", "zh-Hant")
            desk.wait("() => document.documentElement.lang === 'zh-Hant'")
            assert desk.own()["text"] == "未就緒 — 未接聽"
            desk.page.select_option("#language", "zh-Hans")
            desk.wait("() => document.documentElement.lang === 'zh-Hans'")
            assert desk.own()["text"] == "未就绪 — 未接听"
            assert desk.text("#ready") == "就绪"

            carrier.hang_up(call)  # the caller gives up
            desk.wait_waiting("sales", 0)

            # the agent dials out from the page (acme's echo service) and hangs up
            desk.page.fill("#number", ECHO)
            desk.page.click("#dial")
            desk.wait_call("talking")
            desk.page.click("#hangup")
            desk.wait_call("idle")
            desk.sign_out()

            # the browser's language picks the page's: Hong Kong and Taiwan get Traditional
            for locale, lang in (("zh-TW", "zh-Hant"), ("zh-HK", "zh-Hant"),
                                 ("zh-CN", "zh-Hans")):
                other = desk.page.context.browser.new_page(locale=locale)
                other.goto(desk.page.url)
                other.wait_for_function("() => document.body.dataset.ready === 'true'")
                assert other.evaluate("document.documentElement.lang") == lang, locale
                other.close()
    finally:
        carrier.hang_up_all()
        carrier.close()
