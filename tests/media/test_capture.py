"""Capture endings: silence (with the tail cut), no speech, end of speech, max, stop."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from appliance.media import g711, tones
from appliance.media.capture import SPEECH_TAIL, Capture


class FakeEndpoint:
    """What Capture uses of an RtpEndpoint: the codec and audio handlers."""

    codec = "PCMU"

    def __init__(self) -> None:
        self.handlers: list[Any] = []

    def add_audio_handler(self, h: Any) -> None:
        self.handlers.append(h)

    def remove_audio_handler(self, h: Any) -> None:
        self.handlers.remove(h)


async def feed(ep: FakeEndpoint, audio: np.ndarray) -> None:
    """Send ``audio`` as 20 ms G.711 frames in real time."""
    for i in range(0, len(audio), 160):
        payload = g711.encode("PCMU", audio[i:i + 160])
        for h in list(ep.handlers):
            h(payload, i // 160, i, False)
        await asyncio.sleep(0.02)


async def run(mode: str, audio: np.ndarray, **kw: Any) -> tuple[np.ndarray, str, bool, float]:
    ep = FakeEndpoint()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[np.ndarray, str, bool]] = loop.create_future()
    start = loop.time()
    cap = Capture(ep, mode=mode, on_done=lambda a, r, s: done.set_result((a, r, s)), **kw)
    sender = asyncio.create_task(feed(ep, audio))
    got = await asyncio.wait_for(done, 10)
    sender.cancel()
    assert cap.done and ep.handlers == []
    return (*got, loop.time() - start)


async def test_record_ends_after_silence_and_cuts_the_tail() -> None:
    audio = np.concatenate([tones.tone(700, 1.0), tones.silence(3.0)])
    got, reason, speech, took = await run("record", audio, max_seconds=10,
                                          silence_seconds=0.6)
    assert reason == "silence" and speech
    assert 1.55 <= took <= 2.2
    assert 1.0 <= len(got) / 8000 <= 1.6  # the tone and half a second after it
    assert tones.goertzel_power(got[:8000], 700) > 100 * tones.goertzel_power(got[:8000], 1200)


async def test_record_max_seconds_and_stop() -> None:
    _, reason, _, took = await run("record", tones.tone(700, 5.0), max_seconds=0.5,
                                   silence_seconds=0)
    assert reason == "max" and took < 1.0
    ep = FakeEndpoint()
    results: list[str] = []
    cap = Capture(ep, mode="record", max_seconds=5, silence_seconds=0,
                  on_done=lambda a, r, s: results.append(r))
    cap.stop("hangup")
    cap.stop("again")  # once only
    assert results == ["hangup"]


@pytest.mark.parametrize("audio,reason", [
    (tones.silence(3.0), "no_speech"),
    (np.concatenate([tones.silence(0.3), tones.tone(500, 0.6), tones.silence(3.0)]),
     "end_of_speech"),
])
async def test_speech_mode(audio: np.ndarray, reason: str) -> None:
    _, got_reason, speech, took = await run("speech", audio, max_seconds=5,
                                            silence_seconds=1.0)
    assert got_reason == reason
    assert speech == (reason == "end_of_speech")
    expected = 1.0 if reason == "no_speech" else 0.9 + SPEECH_TAIL
    assert expected - 0.05 <= took <= expected + 0.5
