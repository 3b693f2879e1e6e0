"""The media plane on real UDP sockets (127.0.0.1): endpoints, bridge, player, echo, recording.

Topology of the bridge tests::

    phone_a <-> node_a ==Bridge== node_b <-> phone_b

The phones are plain RtpEndpoints playing tones; what each phone receives is checked with
Goertzel. Waits are on futures/conditions with timeouts, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from appliance.media import g711
from appliance.media.dtmf import DtmfDigit, dtmf_tone
from appliance.media.endpoint import (
    Bridge,
    Echo,
    MediaError,
    Player,
    PortPool,
    PortPoolExhausted,
    RtpEndpoint,
)
from appliance.media.rtp import ReceiverReport, RtpPacket, SenderReport, build_packet
from appliance.media.tones import goertzel_power, mean_square, tone
from appliance.media.wav import read_wav_raw

LOOPBACK = "127.0.0.1"


class Collector:
    """Records every packet an endpoint receives; lets a test wait for a count."""

    def __init__(self, endpoint: RtpEndpoint) -> None:
        self.endpoint = endpoint
        self.packets: list[tuple[float, int, int, bool, bytes]] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        endpoint.add_audio_handler(self._on_audio)

    def _on_audio(self, payload: bytes, seq: int, ts: int, marker: bool) -> None:
        loop = asyncio.get_running_loop()
        self.packets.append((loop.time(), seq, ts, marker, payload))
        for n, fut in self._waiters:
            if len(self.packets) >= n and not fut.done():
                fut.set_result(None)

    async def wait_for(self, n: int, timeout: float = 5.0) -> None:
        if len(self.packets) >= n:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        await asyncio.wait_for(fut, timeout)

    def audio(self) -> np.ndarray:
        codec = self.endpoint.codec
        return np.concatenate([g711.decode(codec, p[4]) for p in self.packets])


def tone_power(samples: np.ndarray, freq: float) -> float:
    """Fraction of the signal's power at ``freq``."""
    return goertzel_power(samples, freq) / max(mean_square(samples), 1.0)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition on the loop's own ticks (no fixed sleep decides the outcome)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def pair(
    codec_a: str = "PCMU", codec_b: str = "PCMU", **bridge_kw: object
) -> AsyncIterator[tuple[RtpEndpoint, RtpEndpoint, RtpEndpoint, RtpEndpoint, Bridge]]:
    phone_a = await RtpEndpoint.open(LOOPBACK)
    phone_b = await RtpEndpoint.open(LOOPBACK)
    node_a = await RtpEndpoint.open(LOOPBACK)
    node_b = await RtpEndpoint.open(LOOPBACK)
    eps = (phone_a, phone_b, node_a, node_b)
    try:
        phone_a.set_remote(LOOPBACK, node_a.port, codec=codec_a, dtmf_pt=101)
        node_a.set_remote(LOOPBACK, phone_a.port, codec=codec_a, dtmf_pt=101)
        phone_b.set_remote(LOOPBACK, node_b.port, codec=codec_b, dtmf_pt=96)
        node_b.set_remote(LOOPBACK, phone_b.port, codec=codec_b, dtmf_pt=96)
        bridge = Bridge(node_a, node_b, **bridge_kw)  # type: ignore[arg-type]
        yield phone_a, phone_b, node_a, node_b, bridge
        bridge.close()
    finally:
        await asyncio.gather(*(ep.aclose() for ep in eps))


# -- ports -----------------------------------------------------------------------------


def test_port_pool_even_ports_round_robin_and_exhaustion() -> None:
    pool = PortPool(40001, 40008)
    ports = [pool.allocate() for _ in range(3)]
    assert ports == [40002, 40004, 40006]
    with pytest.raises(PortPoolExhausted):
        pool.allocate()
    pool.release(40004)
    assert pool.available == 1 and 40002 in pool and 40004 not in pool
    assert pool.allocate() == 40004
    with pytest.raises(ValueError):
        PortPool(5000, 5000)


async def test_endpoint_from_pool_binds_rtcp_on_next_port_and_skips_busy_ports() -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind((LOOPBACK, 0))
    base = busy.getsockname()[1]
    if base % 2:  # make the busy port the first even port of the pool
        busy.close()
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        base -= 1
        try:
            busy.bind((LOOPBACK, base))
        except OSError:
            busy.close()
            pytest.skip("could not reserve a port for the test")
    try:
        pool = PortPool(base, base + 40)
        ep = await RtpEndpoint.open(LOOPBACK, pool=pool)
        try:
            assert ep.port != base and ep.port % 2 == 0 and ep.rtcp_port == ep.port + 1
            assert ep.port in pool and base not in pool
        finally:
            await ep.aclose()
        assert ep.port not in pool
    finally:
        busy.close()


# -- bridge ----------------------------------------------------------------------------


async def test_bridge_relays_tones_both_ways() -> None:
    async with pair() as (phone_a, phone_b, _, node_b, bridge):
        got_a, got_b = Collector(phone_a), Collector(phone_b)
        play_a = phone_a.play(tone(440, 1.0, amplitude=8000))
        play_b = phone_b.play(tone(1000, 1.0, amplitude=8000))
        assert await play_a and await play_b
        await got_a.wait_for(45)
        await got_b.wait_for(45)
        heard_by_b, heard_by_a = got_b.audio(), got_a.audio()
        assert tone_power(heard_by_b, 440) > 0.8 and tone_power(heard_by_b, 1000) < 0.01
        assert tone_power(heard_by_a, 1000) > 0.8 and tone_power(heard_by_a, 440) < 0.01
        # what phone_b receives is node_b's stream: its SSRC, contiguous seq, ts + 160
        seqs = [p[1] for p in got_b.packets]
        stamps = [p[2] for p in got_b.packets]
        assert phone_b.rx_ssrc == node_b.ssrc != phone_a.ssrc
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
        assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(stamps))
        assert got_b.packets[0][3]  # marker on the first packet of the stream
        assert bridge.relayed[0] >= 45 and bridge.relayed[1] >= 45


async def test_bridge_transcodes_pcmu_to_pcma() -> None:
    async with pair("PCMU", "PCMA") as (phone_a, phone_b, _, node_b, _bridge):
        got_a, got_b = Collector(phone_a), Collector(phone_b)
        await asyncio.gather(
            phone_a.play(tone(440, 0.6, amplitude=8000)),
            phone_b.play(tone(1000, 0.6, amplitude=8000)),
        )
        await got_a.wait_for(25)
        await got_b.wait_for(25)
        assert phone_b.stats.received >= 25 and node_b.payload_type == 8
        assert tone_power(got_b.audio(), 440) > 0.8  # decoded as A-law by phone_b
        assert tone_power(got_a.audio(), 1000) > 0.8  # decoded as mu-law by phone_a
        # payload is the G.711 table translation of what phone_a sent
        sent = g711.ulaw_encode(tone(440, 0.02, amplitude=8000))
        assert got_b.packets[0][4] == sent.translate(g711.ULAW_TO_ALAW)


async def test_bridge_forwards_rfc4733_with_pt_mapping_and_reports_once() -> None:
    reported: list[tuple[RtpEndpoint, DtmfDigit]] = []
    legs = pair(on_dtmf=lambda leg, d: reported.append((leg, d)))
    async with legs as (phone_a, phone_b, node_a, _, _bridge):
        at_b: asyncio.Future[DtmfDigit] = asyncio.get_running_loop().create_future()
        seen_b: list[DtmfDigit] = []

        def on_b(d: DtmfDigit) -> None:
            seen_b.append(d)
            if not at_b.done():
                at_b.set_result(d)

        phone_b.on_dtmf = on_b
        raw_pts: list[int] = []
        phone_b.add_event_handler(lambda *a: raw_pts.append(phone_b.dtmf_pt or -1))
        await phone_a.send_dtmf("7", 0.1)
        digit = await asyncio.wait_for(at_b, 2.0)
        assert digit.digit == "7" and digit.source == "rfc4733"
        # the redundant end packets all arrived, and still one press each side
        await wait_until(lambda: len(raw_pts) >= 5)
        assert len(raw_pts) == 5 and set(raw_pts) == {96}
        assert [d.digit for d in seen_b] == ["7"]
        assert [(leg, d.digit) for leg, d in reported] == [(node_a, "7")]


async def test_hold_stops_media_towards_the_held_side() -> None:
    async with pair() as (phone_a, phone_b, node_a, node_b, _bridge):
        got_b = Collector(phone_b)
        await phone_a.play(tone(440, 0.2))
        await got_b.wait_for(8)
        node_b.set_direction("recvonly")  # phone_b put the call on hold (a=sendonly)
        before = node_b.sent_packets
        await phone_a.play(tone(440, 0.3))
        await wait_until(lambda: node_a.stats.received >= 25)
        assert node_b.sent_packets == before and node_b.suppressed >= 14
        await wait_until(lambda: len(got_b.packets) == before)  # in flight before the hold
        assert phone_b.stats.received == before
        node_b.set_direction("sendrecv")
        await phone_a.play(tone(440, 0.2))
        await got_b.wait_for(before + 8)


async def test_bridge_refuses_cross_tenant_legs() -> None:
    a = await RtpEndpoint.open(LOOPBACK, tenant_id="acme")
    b = await RtpEndpoint.open(LOOPBACK, tenant_id="globex")
    try:
        with pytest.raises(MediaError):
            Bridge(a, b)
        with pytest.raises(MediaError):
            Bridge(a, a)
    finally:
        await a.aclose()
        await b.aclose()


async def test_bridge_recorder_writes_aligned_stereo(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    async with pair(recorder=path) as (phone_a, phone_b, _, node_b, bridge):
        await phone_a.play(tone(440, 0.5, amplitude=8000))
        await phone_b.play(tone(1000, 0.5, amplitude=8000))
        await wait_until(lambda: node_b.stats.received >= 25)
        bridge.close()
        assert bridge.recorder is not None and bridge.recorder.closed
    data, rate = read_wav_raw(path)
    assert rate == 8000 and data.shape[1] == 2
    left, right = data[:, 0], data[:, 1]

    def active(x: np.ndarray) -> np.ndarray:
        nz = np.flatnonzero(x)
        return x[nz[0] : nz[-1] + 1]

    assert tone_power(active(left), 440) > 0.9 and tone_power(active(left), 1000) < 0.01
    assert tone_power(active(right), 1000) > 0.9 and tone_power(active(right), 440) < 0.01
    assert len(active(left)) == pytest.approx(4000, abs=160)  # no gaps, no overlaps
    # b spoke after a: its audio starts about 0.5 s later on the timeline
    start_l = int(np.flatnonzero(left)[0])
    start_r = int(np.flatnonzero(right)[0])
    assert 0.4 * 8000 < start_r - start_l < 0.65 * 8000
    assert len(data) >= 0.95 * 8000


# -- player, echo, recording -----------------------------------------------------------


async def test_player_paces_20ms_frames_with_timestamps_plus_160() -> None:
    src = await RtpEndpoint.open(LOOPBACK)
    dst = await RtpEndpoint.open(LOOPBACK)
    try:
        src.set_remote(LOOPBACK, dst.port)
        got = Collector(dst)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        player = Player(src, tone(440, 1.0)).start()
        assert await player is True
        elapsed = loop.time() - t0
        await got.wait_for(50)
        assert len(got.packets) == 50 and player.frames_sent == 50
        assert 0.95 <= elapsed + 0.02 <= 1.15
        times = np.array([p[0] for p in got.packets])
        assert 0.9 < times[-1] - times[0] < 1.1
        # absolute scheduling: frame k is sent near t0 + 20k ms, no drift
        drift = (times - times[0]) - 0.02 * np.arange(50)
        assert np.max(np.abs(drift)) < 0.03
        stamps = [p[2] for p in got.packets]
        assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(stamps))
        assert [p[3] for p in got.packets].count(True) == 1
    finally:
        await src.aclose()
        await dst.aclose()


async def test_player_stop_for_barge_in() -> None:
    src = await RtpEndpoint.open(LOOPBACK)
    dst = await RtpEndpoint.open(LOOPBACK)
    try:
        src.set_remote(LOOPBACK, dst.port)
        got = Collector(dst)
        player = src.play(tone(440, 5.0))
        await got.wait_for(5)
        player.stop()
        assert await player is False
        assert player.frames_sent < 50
        sent = player.frames_sent
        await got.wait_for(sent)
        assert src.sent_packets == sent
    finally:
        await src.aclose()
        await dst.aclose()


async def test_echo_with_latching_returns_the_callers_audio() -> None:
    echo_ep = await RtpEndpoint.open(LOOPBACK, latching=True)
    phone = await RtpEndpoint.open(LOOPBACK)
    stranger = await RtpEndpoint.open(LOOPBACK)
    try:
        echo = Echo(echo_ep)
        phone.set_remote(LOOPBACK, echo_ep.port)
        got = Collector(phone)
        await phone.play(tone(1000, 0.4, amplitude=6000))
        await got.wait_for(18)
        assert tone_power(got.audio(), 1000) > 0.8
        assert echo_ep.remote == (LOOPBACK, phone.port)
        # symmetric RTP: packets from another address are ignored after latching
        stranger.set_remote(LOOPBACK, echo_ep.port)
        await stranger.play(tone(440, 0.1))
        await wait_until(lambda: echo_ep.foreign_packets >= 5)
        assert echo.packets == len(got.packets) or echo.packets >= 18
        echo.close()
    finally:
        for ep in (echo_ep, phone, stranger):
            await ep.aclose()


async def test_record_single_endpoint(tmp_path: Path) -> None:
    src = await RtpEndpoint.open(LOOPBACK)
    dst = await RtpEndpoint.open(LOOPBACK)
    try:
        src.set_remote(LOOPBACK, dst.port, codec="PCMA")
        dst.set_remote(LOOPBACK, src.port, codec="PCMA")
        recorder = dst.record(tmp_path / "in.wav")
        await src.play(tone(697, 0.4, amplitude=5000))
        await wait_until(lambda: dst.stats.received >= 20)
        recorder.close()
    finally:
        await src.aclose()
        await dst.aclose()
    data, _ = read_wav_raw(tmp_path / "in.wav")
    assert data.shape[1] == 1 and len(data) >= 0.38 * 8000
    assert tone_power(data[:, 0], 697) > 0.8


async def test_inband_dtmf_detection_on_endpoint_reports_each_press_once() -> None:
    src = await RtpEndpoint.open(LOOPBACK)
    dst = await RtpEndpoint.open(LOOPBACK, inband_dtmf=True)
    try:
        src.set_remote(LOOPBACK, dst.port, dtmf_pt=None)
        dst.set_remote(LOOPBACK, src.port, dtmf_pt=None)
        digits: list[str] = []
        dst.on_dtmf = lambda d: digits.append(d.digit)
        audio = np.concatenate(
            [np.concatenate([dtmf_tone(d, 0.08), np.zeros(640, dtype=np.int16)]) for d in "42#"]
        )
        await src.play(audio)
        await src.send_dtmf("9", 0.1)  # without an event PT this goes in-band too
        await wait_until(lambda: len(digits) >= 4)
        assert digits == ["4", "2", "#", "9"]
    finally:
        await src.aclose()
        await dst.aclose()


async def test_rtcp_reports_flow_both_ways() -> None:
    a = await RtpEndpoint.open(LOOPBACK, rtcp_interval=0.05)
    b = await RtpEndpoint.open(LOOPBACK, rtcp_interval=0.05)
    try:
        a.set_remote(LOOPBACK, b.port, rtcp_port=b.rtcp_port)
        b.set_remote(LOOPBACK, a.port, rtcp_port=a.rtcp_port)
        got_sr: asyncio.Future[SenderReport] = asyncio.get_running_loop().create_future()
        got_rr: asyncio.Future[ReceiverReport] = asyncio.get_running_loop().create_future()

        def at_b(packets: list[object]) -> None:
            for p in packets:
                if isinstance(p, SenderReport) and p.packet_count >= 10 and not got_sr.done():
                    got_sr.set_result(p)

        def at_a(packets: list[object]) -> None:
            for p in packets:
                if isinstance(p, ReceiverReport) and p.reports and not got_rr.done():
                    got_rr.set_result(p)

        b.on_rtcp, a.on_rtcp = at_b, at_a
        player = a.play(tone(440, 2.0))
        sr = await asyncio.wait_for(got_sr, 3.0)
        rr = await asyncio.wait_for(got_rr, 3.0)
        player.stop()
        assert sr.ssrc == a.ssrc and sr.octet_count == 160 * sr.packet_count
        (block,) = rr.reports
        assert rr.ssrc == b.ssrc and block.ssrc == a.ssrc and block.cumulative_lost == 0
        assert a.remote_report == block or a.remote_report.ssrc == a.ssrc
    finally:
        await a.aclose()
        await b.aclose()
    assert a.closed and b.closed


async def test_garbage_datagrams_are_counted_not_fatal() -> None:
    ep = await RtpEndpoint.open(LOOPBACK)
    peer = await RtpEndpoint.open(LOOPBACK)
    try:
        ep.set_remote(LOOPBACK, peer.port)
        got = Collector(ep)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for junk in (b"", b"\x00" * 5, b"\x40" + bytes(20), b"\xa0" + bytes(11) + b"\x09"):
                sock.sendto(junk, (LOOPBACK, ep.port))
            sock.sendto(build_packet(0, False, 1, 160, 5, b"\xff" * 160), (LOOPBACK, ep.port))
            # a valid packet with CSRCs takes the careful path
            sock.sendto(
                RtpPacket(0, 2, 320, 5, False, b"\xff" * 160, (1,)).to_bytes(), (LOOPBACK, ep.port)
            )
            await got.wait_for(2)
        finally:
            sock.close()
        assert ep.bad_packets == 4 and len(got.packets[1][4]) == 160
    finally:
        await ep.aclose()
        await peer.aclose()


async def test_direction_validation_and_close_is_idempotent() -> None:
    ep = await RtpEndpoint.open(LOOPBACK)
    with pytest.raises(MediaError):
        ep.set_direction("sideways")
    with pytest.raises(MediaError):
        ep.set_remote(LOOPBACK, 9, codec="G729")
    assert not ep.can_send
    ep.set_remote(LOOPBACK, 9)
    assert ep.can_send
    ep.set_direction("inactive")
    assert not ep.can_send
    await ep.aclose()
    ep.close()
    assert not ep.send_frame(b"\xff" * 160)


async def test_a_failing_handler_does_not_kill_the_socket() -> None:
    src = await RtpEndpoint.open(LOOPBACK)
    dst = await RtpEndpoint.open(LOOPBACK)
    try:
        src.set_remote(LOOPBACK, dst.port)

        def broken(payload: bytes, seq: int, ts: int, marker: bool) -> None:
            raise RuntimeError("consumer bug")

        dst.add_audio_handler(broken)
        got = Collector(dst)
        await src.play(tone(440, 0.2))
        await got.wait_for(10)
        assert dst.handler_errors == 10 and not dst.closed
        dst.remove_audio_handler(broken)
        await src.play(tone(440, 0.1))
        await got.wait_for(15)
        assert dst.handler_errors == 10
    finally:
        await src.aclose()
        await dst.aclose()


async def test_prompt_on_a_bridged_leg_replaces_the_other_party_while_it_plays() -> None:
    async with pair() as (phone_a, phone_b, _, node_b, _bridge):
        got_b = Collector(phone_b)
        talk = phone_a.play(tone(440, 1.2, amplitude=8000))
        await got_b.wait_for(5)
        prompt = node_b.play(tone(1000, 0.4, amplitude=8000))
        start = len(got_b.packets)
        assert await prompt
        during = got_b.packets[start + 2 : start + 18]
        audio = np.concatenate([g711.ulaw_decode(p[4]) for p in during])
        assert tone_power(audio, 1000) > 0.8 and tone_power(audio, 440) < 0.05
        await talk
        await wait_until(lambda: node_b.players == 0)
        tail = np.concatenate([g711.ulaw_decode(p[4]) for p in got_b.packets[-10:]])
        assert tone_power(tail, 440) > 0.8  # the other party is back after the prompt
