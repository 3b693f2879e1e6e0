"""The night-time alert on the agent desktop (R-5.2a), on a real node whose acme tenant is
in its night hours now: the ACD's offers then carry ``night_alert``, the node adds
``night=1`` to the offer's X-BL-Data, and alice's page shows a "Night-time call" badge in
the screen pop and sounds its two-tone WebAudio alert (``body[data-alerting]``) until the
call is answered, or until it ends unanswered.

The node's local time is UTC (``--timezone`` not given); the night hours are set around
the current UTC time, so the test does not depend on the time of day it runs at. What the
page plays is measured too: the test taps whatever the page connects to its audio
output with an AnalyserNode (patched in through Playwright, which the page's
Content-Security-Policy does not govern) and looks for the alert's 880 and 660 Hz.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NodeHandle, start_node
from tests.e2e.test_desk import (
    BROWSER_TONE,
    CALLER,
    QUEUE_DID,
    carrier_phone,
    desk_browser,
)
from tests.harness.procs import free_port_range, free_tcp_port, free_udp_port, release_ports

pytestmark = pytest.mark.e2e
ALERT_TONES, UNUSED = (880, 660), 1400

# Taps every node the page connects to an AudioContext's output with an AnalyserNode
# (window.alertTap, the latest one).
TAP_JS = """() => {
  const connect = AudioNode.prototype.connect;
  AudioNode.prototype.connect = function (destination, ...rest) {
    const out = connect.call(this, destination, ...rest);
    if (destination instanceof AudioDestinationNode) {
      const analyser = this.context.createAnalyser();
      analyser.fftSize = 2048;
      connect.call(this, analyser);
      window.alertTap = analyser;
    }
    return out;
  };
}"""
# The highest Goertzel power (a sine of amplitude A gives A**2 / 4) at each frequency
# over `seconds` of blocks of the tapped output.
PEAK_JS = """async ([freqs, seconds]) => {
  const analyser = window.alertTap;
  if (!analyser) return {blocks: 0, peak: {}};
  const rate = analyser.context.sampleRate;
  const block = new Float32Array(analyser.fftSize);
  const peak = Object.fromEntries(freqs.map((f) => [f, 0]));
  let blocks = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 1000 * analyser.fftSize / rate));
    analyser.getFloatTimeDomainData(block);
    for (const f of freqs) {
      const w = 2 * Math.PI * f / rate;
      let re = 0, im = 0;
      for (let k = 0; k < block.length; k++) {
        re += block[k] * Math.cos(w * k);
        im += block[k] * Math.sin(w * k);
      }
      peak[f] = Math.max(peak[f], (re * re + im * im) / (block.length * block.length));
    }
    blocks += 1;
  }
  return {blocks, peak};
}"""


def night_now(plan: dict[str, Any]) -> None:
    """acme's night hours: from an hour ago to an hour from now (UTC)."""
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)
    acme = next(t for t in plan["tenants"] if t["id"] == "acme")
    acme.setdefault("acd", {})["night_hours"] = [start.strftime("%H:%M"),
                                                 end.strftime("%H:%M")]


@pytest.fixture(scope="module")
def night_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    """test_desk's node (SIP over WebSocket, rtpengine), with acme in its night hours."""
    low, high = free_port_range("127.0.0.1", 60)
    handle = start_node(tmp_path_factory.mktemp("night-node"), plan_edit=night_now,
                        extra_args=("--ws-port", str(free_tcp_port("127.0.0.1")),
                                    "--rtpengine-port", str(free_udp_port("127.0.0.1")),
                                    "--webrtc-rtp-range", f"{low}-{high}"))
    try:
        yield handle
    finally:
        handle.stop()
        release_ports(low, high)


def alert_peaks(desk: Any, seconds: float = 1.7) -> dict[int, float]:
    """What the page played over ``seconds`` (more than one period of the alert)."""
    got = desk.page.evaluate(PEAK_JS, [[*ALERT_TONES, UNUSED], seconds])
    assert got["blocks"] > 10, got
    return {int(f): p for f, p in got["peak"].items()}


def test_a_night_time_offer_shows_a_badge_and_alerts_until_answered_or_ended(
        night_node: NodeHandle, tones: dict[int, Path]) -> None:
    node = night_node
    carrier = carrier_phone(node)
    try:
        with desk_browser(node, tones[BROWSER_TONE]) as desk:
            desk.sign_in("alice", "1001")
            desk.page.evaluate(TAP_JS)
            desk.go_ready()
            assert desk.night()["alerting"] is False

            # a night-time offer: the badge, the alert sounding while it rings
            call = carrier.answered(QUEUE_DID)
            pop = desk.wait_pop()
            assert pop["queue"] == "sales" and pop["caller"].startswith(CALLER), pop
            assert "night" not in pop, pop  # shown as the badge, not as data
            desk.wait_call("ringing")
            desk.wait("() => document.body.dataset.alerting === 'true'")
            assert desk.night() == {"badge": True, "text": "Night-time call",
                                    "alerting": True}
            peaks = alert_peaks(desk)  # the two tones, nothing else
            assert min(peaks[f] for f in ALERT_TONES) > 1e-3, peaks
            assert min(peaks[f] for f in ALERT_TONES) > 100 * peaks[UNUSED], peaks
            print(f"the alert plays {peaks}")

            # answered: the alert stops, the badge stays with the call
            desk.answer()
            assert desk.night() == {"badge": True, "text": "Night-time call",
                                    "alerting": False}
            peaks = alert_peaks(desk)
            assert max(peaks.values()) < 1e-6, peaks  # silent again
            carrier.hang_up(call)
            desk.wait_call("idle")
            assert desk.pop_hidden()
            desk.wait_own("ready")

            # the badge in the other languages
            desk.page.select_option("#language", "zh-Hant")
            desk.wait("() => document.documentElement.lang === 'zh-Hant'")
            assert desk.night()["text"] == "夜間來電"
            desk.page.select_option("#language", "zh-Hans")
            desk.wait("() => document.documentElement.lang === 'zh-Hans'")
            assert desk.night()["text"] == "夜间来电"

            # a caller who hangs up while it rings: the alert stops with the call
            call = carrier.answered(QUEUE_DID)
            desk.wait_call("ringing")
            desk.wait("() => document.body.dataset.alerting === 'true'")
            carrier.hang_up(call)
            desk.wait_call("idle")
            assert desk.night()["alerting"] is False
            assert desk.pop_hidden()
            desk.sign_out()
    finally:
        carrier.hang_up_all()
        carrier.close()
