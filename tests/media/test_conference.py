"""The conference on real UDP sockets: caller, agent and supervisor phones each send their
own tone to their node endpoint; what each phone receives is analysed (Goertzel) in
each monitoring mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from appliance.media.conference import Conference
from appliance.media.endpoint import MediaError, Recorder, RtpEndpoint
from appliance.media.tones import goertzel_power, mean_square, tone
from appliance.media.wav import read_wav_raw
from tests.media.test_endpoint import LOOPBACK, Collector

TONES = {"caller": 700.0, "agent": 1000.0, "sup": 1400.0}


def share(samples: np.ndarray, freq: float) -> float:
    """Fraction of the signal's power at ``freq`` (0 for silence)."""
    return goertzel_power(samples, freq) / max(mean_square(samples), 1.0)


@asynccontextmanager
async def three_phones(codecs: dict[str, str] | None = None, tenant: str = "acme"
                       ) -> AsyncIterator[tuple[dict[str, RtpEndpoint], dict[str, RtpEndpoint]]]:
    phones: dict[str, RtpEndpoint] = {}
    nodes: dict[str, RtpEndpoint] = {}
    try:
        for pid in TONES:
            codec = (codecs or {}).get(pid, "PCMU")
            phones[pid] = await RtpEndpoint.open(LOOPBACK)
            nodes[pid] = await RtpEndpoint.open(LOOPBACK, tenant_id=tenant)
            phones[pid].set_remote(LOOPBACK, nodes[pid].port, codec=codec)
            nodes[pid].set_remote(LOOPBACK, phones[pid].port, codec=codec)
        yield phones, nodes
    finally:
        await asyncio.gather(*(ep.aclose() for ep in (*phones.values(), *nodes.values())))


async def heard(phones: dict[str, RtpEndpoint], seconds: float = 1.0) -> dict[str, np.ndarray]:
    """Each phone plays its tone for ``seconds``; what each received meanwhile (after the
    first 200 ms, while every stream is flowing)."""
    got = {pid: Collector(ep) for pid, ep in phones.items()}
    players = [ep.play(tone(TONES[pid], seconds, amplitude=6000))
               for pid, ep in phones.items()]
    await asyncio.gather(*(p.done for p in players))
    for pid, c in got.items():
        await c.wait_for(int(seconds * 50 * 0.8))
        phones[pid].remove_audio_handler(c._on_audio)
    return {pid: c.audio()[1600:] for pid, c in got.items()}


async def test_listen_whisper_barge_decide_who_hears_the_supervisor() -> None:
    async with three_phones({"agent": "PCMA"}) as (phones, nodes):
        conf = Conference(nodes)
        try:
            conf.monitor("sup", "agent", "listen")
            got = await heard(phones)
            # everyone else is heard by everyone; nobody hears the listening supervisor
            assert share(got["caller"], TONES["agent"]) > 0.3, "caller hears the agent"
            assert share(got["agent"], TONES["caller"]) > 0.3, "agent hears the caller"
            assert share(got["sup"], TONES["caller"]) > 0.2 < share(got["sup"], TONES["agent"])
            assert share(got["caller"], TONES["sup"]) < 0.01
            assert share(got["agent"], TONES["sup"]) < 0.01

            conf.monitor("sup", "agent", "whisper")
            got = await heard(phones)
            assert share(got["agent"], TONES["sup"]) > 0.2, "the agent is coached"
            assert share(got["caller"], TONES["sup"]) < 0.01, "the caller hears no coaching"

            conf.monitor("sup", "agent", "barge")
            got = await heard(phones)
            assert share(got["agent"], TONES["sup"]) > 0.2
            assert share(got["caller"], TONES["sup"]) > 0.2, "barge: the caller hears it"
            # nobody hears itself
            for pid in TONES:
                assert share(got[pid], TONES[pid]) < 0.01, pid
            assert conf.ticks > 100 and conf.frames_mixed > 200
        finally:
            conf.close()
        # closed: nothing more is sent
        sent = {pid: ep.sent_packets for pid, ep in nodes.items()}
        await asyncio.sleep(0.1)  # a window in which a live mixer would send 5 frames
        assert {pid: ep.sent_packets for pid, ep in nodes.items()} == sent


async def test_a_conference_never_mixes_two_tenants() -> None:
    async with three_phones() as (_, nodes):
        other = await RtpEndpoint.open(LOOPBACK, tenant_id="globex")
        try:
            with pytest.raises(MediaError):
                Conference({"caller": nodes["caller"], "x": other})
            with pytest.raises(MediaError):
                Conference({"caller": nodes["caller"]})
        finally:
            await other.aclose()


async def test_the_replaced_bridge_recorder_goes_on_recording_the_pair(tmp_path: Path) -> None:
    async with three_phones() as (phones, nodes):
        recorder = Recorder(tmp_path / "call.wav", channels=2)
        recorder.attach(nodes["caller"], 0)
        recorder.attach(nodes["agent"], 1)
        conf = Conference(nodes, pair=("caller", "agent"), recorder=recorder)
        conf.monitor("sup", "agent", "barge")
        await heard(phones, 0.6)
        assert conf.take_recorder() is recorder and conf.recorder is None
        conf.close()  # the recorder handed back is not closed by the conference
        assert not recorder.closed
        recorder.close()
        audio, rate = read_wav_raw(tmp_path / "call.wav")
        assert rate == 8000 and audio.shape[1] == 2
        assert share(audio[:, 0], TONES["caller"]) > 0.5
        assert share(audio[:, 1], TONES["agent"]) > 0.5


async def test_a_prompt_mixed_in_is_heard_by_the_legs_named_and_ends_by_itself() -> None:
    async with three_phones() as (phones, nodes):
        conf = Conference({pid: nodes[pid] for pid in ("caller", "agent")})
        try:
            prompt = tone(1800.0, 0.8, amplitude=6000)
            playback = conf.play(prompt, ("caller", "agent"))
            got = await heard({pid: phones[pid] for pid in ("caller", "agent")}, 0.8)
            for pid, other in (("caller", "agent"), ("agent", "caller")):
                assert share(got[pid], 1800.0) > 0.2, f"{pid} hears the prompt"
                assert share(got[pid], TONES[other]) > 0.2, f"{pid} hears {other} too"
            assert await asyncio.wait_for(playback.done, 2.0) is True
            stopped = conf.play(prompt, ("caller",))
            stopped.stop()
            assert await stopped.done is False
            assert "prompt-2" not in conf.mixer
        finally:
            conf.close()
