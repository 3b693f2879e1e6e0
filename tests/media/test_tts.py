"""espeak-ng synthesis through the real binary, the cache, and the asyncio variant."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from appliance.media.tones import mean_square
from appliance.media.tts import VOICES, Tts, TtsError, cache_key

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


@pytest.mark.parametrize("voice", sorted(VOICES))
def test_synthesize_each_voice_at_8khz(tmp_path: Path, voice: str) -> None:
    text = {
        "en-us": "Thank you for calling.",
        "cmn": "您好, 欢迎致电.",
        "yue": "你好, 歡迎致電.",
    }[voice]
    samples = Tts(tmp_path).synthesize(text, voice)
    assert samples.dtype == np.int16 and 0.5 * 8000 < len(samples) < 10 * 8000
    assert mean_square(samples) > 100**2
    assert (tmp_path / f"{cache_key(text, voice)}.wav").exists()


def test_cache_hit_does_not_run_espeak(tmp_path: Path) -> None:
    first = Tts(tmp_path).synthesize("press one for sales", "en-us")
    broken = Tts(tmp_path, espeak="/nonexistent/espeak-ng")
    assert np.array_equal(broken.synthesize("press one for sales", "en-us"), first)
    with pytest.raises(TtsError):
        broken.synthesize("something else", "en-us")


async def test_async_variant_matches_and_shares_the_cache(tmp_path: Path) -> None:
    tts = Tts(tmp_path)
    a = await tts.synthesize_async("-v is not an option here", "en-us")
    assert len(a) > 4000
    assert np.array_equal(
        Tts(tmp_path, espeak="/nonexistent").synthesize("-v is not an option here", "en-us"), a
    )
    with pytest.raises(TtsError):
        await Tts(tmp_path, espeak="/nonexistent").synthesize_async("new text", "en-us")


def test_rejects_unknown_voice_and_empty_text(tmp_path: Path) -> None:
    with pytest.raises(TtsError):
        Tts(tmp_path).synthesize("hello", "klingon")
    with pytest.raises(TtsError):
        Tts(tmp_path).synthesize("   ", "en-us")


def test_cache_key_depends_on_voice_and_text() -> None:
    assert cache_key("a", "cmn") != cache_key("a", "yue") != cache_key("b", "yue")
    assert cache_key("ab", "c") != cache_key("b", "ca")  # separator between the fields


def test_tenant_caches_are_separate_directories(tmp_path: Path) -> None:
    acme, globex = tmp_path / "acme", tmp_path / "globex"
    Tts(acme).synthesize("your balance is ten dollars", "en-us")
    assert list(acme.glob("*.wav")) and not globex.exists()
    broken_globex = Tts(globex, espeak="/nonexistent")
    with pytest.raises(TtsError):  # globex cannot read acme's cached prompt
        broken_globex.synthesize("your balance is ten dollars", "en-us")
