"""PromptStore: real espeak-ng TTS, WAV uploads in many formats, language fallback,
tenant isolation (other tenants, path traversal, symlinks) and the bounded cache.

Async tests run through ``run`` (``asyncio.run`` with a timeout), so no plugin is needed.
Where a test only checks which text reaches the engine, it uses ``RecordingSynth``, a
stand-in for the layer right below the store; every test of sound uses espeak-ng.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import wave
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.ivr.prompts import PromptError, PromptStore, SpeechSynthesizer, decode_wav
from appliance.media import g711
from appliance.media.tones import goertzel_power, mean_square, tone
from appliance.media.tts import Tts
from appliance.media.wav import WavError, read_wav_raw, write_wav

T = TypeVar("T")
Int16Array = npt.NDArray[np.int16]

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, 20.0)

    return asyncio.run(main())


class RecordingSynth:
    """Records (text, voice) and returns 10 ms of silence per character."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def synthesize_async(self, text: str, voice: str) -> Int16Array:
        self.calls.append((text, voice))
        return np.zeros(80 * len(text), dtype=np.int16)


def wav_bytes(
    samples: npt.ArrayLike, rate: int, *, width: int = 2, channels: int | None = None
) -> bytes:
    """A PCM WAV of ``samples`` (1-D mono, or (frames, channels)) at ``width`` bytes."""
    arr = np.asarray(samples, dtype=np.int16)
    if arr.ndim == 1:
        arr = arr[:, None]
    if width == 2:
        raw = arr.astype("<i2").tobytes()
    elif width == 1:
        raw = ((arr.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 3:
        v = arr.astype(np.int32) << 8
        triples = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=-1)
        raw = triples.astype(np.uint8).tobytes()
    else:
        raw = (arr.astype(np.int32) << 16).astype("<i4").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels or arr.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return out.getvalue()


def riff(fmt: bytes, data: bytes, *, extra_chunks: bytes = b"") -> bytes:
    """A hand-built RIFF/WAVE file with the given fmt body and data."""
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + extra_chunks
    body += b"data" + len(data).to_bytes(4, "little") + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def fmt_body(
    tag: int, channels: int, rate: int, bits: int, extensible_sub: int | None = None
) -> bytes:
    align = channels * bits // 8
    base = (
        tag.to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * align).to_bytes(4, "little")
        + align.to_bytes(2, "little")
        + bits.to_bytes(2, "little")
    )
    if extensible_sub is None:
        return base
    guid = extensible_sub.to_bytes(2, "little") + bytes.fromhex("000000001000800000aa00389b71")
    return (
        base + (22).to_bytes(2, "little") + bits.to_bytes(2, "little") + b"\x03\x00\x00\x00" + guid
    )


def beep(freq: float, seconds: float, rate: int = 8000) -> Int16Array:
    return tone(freq, seconds, rate, 8000.0)


def put_raw(root: Path, tenant: str, language: str, name: str, samples: Int16Array) -> Path:
    """Drop an 8 kHz file into the layout directly, as an operator might."""
    d = root / tenant / "prompts" / language
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.wav"
    write_wav(path, samples, 8000)
    return path


@pytest.fixture
def store(tmp_path: Path) -> PromptStore:
    return PromptStore(tmp_path / "prompts-root", RecordingSynth())


# --------------------------------------------------------------------------- real TTS
PHRASES = {
    "en-us": ("Thank you for calling.", "1234"),
    "cmn": ("欢迎致电", "1234"),
    "yue": ("歡迎致電", "1234"),
}


@needs_espeak
@pytest.mark.parametrize("language", sorted(PHRASES))
def test_real_tts_and_say_in_each_language(tmp_path: Path, language: str) -> None:
    store = PromptStore(tmp_path / "root", Tts(tmp_path / "tts-cache"))
    phrase, number = PHRASES[language]

    async def both() -> tuple[Int16Array, Int16Array]:
        spoken = await store.resolve("acme", {"tts": phrase}, language)
        said = await store.resolve("acme", {"say": number, "as": "number"}, language)
        return spoken, said

    spoken, said = run(both())
    for samples in (spoken, said):
        assert samples.dtype == np.int16 and samples.ndim == 1
        assert 0.4 * 8000 < len(samples) < 6 * 8000  # a short phrase, at 8 kHz
        assert mean_square(samples) > 300**2  # speech, not silence
    assert len(list((tmp_path / "tts-cache").glob("*.wav"))) == 2  # the Tts disk cache


@needs_espeak
def test_bare_string_is_tts_and_language_map_picks_the_voice(tmp_path: Path) -> None:
    store = PromptStore(tmp_path / "root", Tts(tmp_path / "tts-cache"))
    english = run(store.resolve("acme", "Goodbye.", "en-us"))
    assert 0.3 * 8000 < len(english) < 4 * 8000 and mean_square(english) > 300**2
    ref = {"en-us": "Goodbye.", "yue": "再見"}
    cantonese = run(store.resolve("acme", ref, "yue"))
    assert mean_square(cantonese) > 300**2 and not np.array_equal(cantonese, english)
    assert np.array_equal(run(store.resolve("acme", ref, "en-us")), english)


def test_tts_text_and_voice_reach_the_engine(tmp_path: Path) -> None:
    synth = RecordingSynth()
    store = PromptStore(tmp_path / "root", synth, voices={"en-us": "en-us", "cmn": "cmn-x"})
    run(store.resolve("acme", {"tts": "hello"}, "en-us"))
    run(store.resolve("acme", {"say": "12.50", "as": "money"}, "cmn"))
    run(store.resolve("acme", {"say": 110, "as": "digits", "yao": True}, "cmn"))
    run(store.resolve("acme", {"say": "2", "as": "money", "currency": "USD"}, "en-us"))
    run(store.resolve("acme", {"say": "1234"}, "en-us"))  # "as" defaults to digits
    assert synth.calls == [
        ("hello", "en-us"),
        ("十二元五角", "cmn-x"),
        ("幺 幺 零", "cmn-x"),
        ("two dollars", "en-us"),
        ("one two three four", "en-us"),
    ]
    with pytest.raises(PromptError, match="no TTS voice") as info:
        run(store.resolve("acme", {"tts": "你好"}, "yue"))
    assert "'acme'" in str(info.value) and "'yue'" in str(info.value)


def test_tts_engine_per_tenant(tmp_path: Path) -> None:
    engines = {"acme": RecordingSynth(), "globex": RecordingSynth()}
    store = PromptStore(tmp_path / "root", RecordingSynth(), tts_for_tenant=engines.__getitem__)
    run(store.resolve("acme", "balance", "en-us"))
    run(store.resolve("globex", "other", "en-us"))
    assert engines["acme"].calls == [("balance", "en-us")]
    assert engines["globex"].calls == [("other", "en-us")]


def test_tts_class_satisfies_the_protocol(tmp_path: Path) -> None:
    engine: SpeechSynthesizer = Tts(tmp_path)  # checked by mypy
    assert callable(engine.synthesize_async)


# --------------------------------------------------------------------------- files
def test_round_trip_16k_stereo_becomes_8k_mono(store: PromptStore) -> None:
    left = beep(1000, 0.5, rate=16000)
    stereo = np.stack([left, left], axis=1)
    path = store.add("acme", "en-us", "welcome", wav_bytes(stereo, 16000))
    assert path == store.root / "acme" / "prompts" / "en-us" / "welcome.wav"
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 8000, 2)
    samples = run(store.resolve("acme", {"file": "welcome"}, "en-us"))
    assert samples.dtype == np.int16 and samples.ndim == 1
    assert abs(len(samples) - 4000) <= 2
    mid = samples[500:3500]
    assert goertzel_power(mid, 1000) > 100 * goertzel_power(mid, 1700)
    assert 5000**2 < mean_square(mid) < 6000**2  # amplitude 8000 tone, RMS 5657
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed


def _extensible_24bit(s: Int16Array) -> bytes:
    data = wav_bytes(s, 48000, width=3)[44:]  # the frames of a plain 44-byte-header file
    fmt = fmt_body(0xFFFE, 1, 48000, 24, extensible_sub=1)
    return riff(fmt, data, extra_chunks=b"LIST\x04\x00\x00\x00INFO")


@pytest.mark.parametrize(
    ("label", "rate", "make"),
    [
        ("8-bit 11025 Hz mono", 11025, lambda s: wav_bytes(s, 11025, width=1)),
        ("24-bit 48 kHz mono", 48000, lambda s: wav_bytes(s, 48000, width=3)),
        ("32-bit 44.1 kHz stereo", 44100, lambda s: wav_bytes(np.stack([s, s], 1), 44100, width=4)),
        ("16-bit 8 kHz 6 channels", 8000, lambda s: wav_bytes(np.stack([s] * 6, 1), 8000)),
        ("mu-law 8 kHz", 8000, lambda s: riff(fmt_body(7, 1, 8000, 8), g711.ulaw_encode(s))),
        (
            "A-law 8 kHz stereo",
            8000,
            lambda s: riff(fmt_body(6, 2, 8000, 8), g711.alaw_encode(np.repeat(s, 2))),
        ),
        ("extensible PCM 24-bit 48 kHz", 48000, _extensible_24bit),
    ],
)
def test_upload_formats(store: PromptStore, label: str, rate: int, make: Any) -> None:
    store.add("acme", "en-us", "p", make(beep(1000, 1.0, rate=rate)))
    samples = run(store.resolve("acme", {"file": "p"}, "en-us"))
    assert 7990 <= len(samples) <= 8010, label
    mid = samples[1000:7000]
    assert goertzel_power(mid, 1000) > 50 * goertzel_power(mid, 2500), label
    assert 5000**2 < mean_square(mid) < 6200**2, label


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "not a WAV"),
        (b"ID3\x03 not audio at all", "not a WAV"),
        (riff(fmt_body(3, 1, 8000, 32), b"\x00" * 64), "float"),
        (riff(fmt_body(0x55, 1, 8000, 16), b"\x00" * 64), "unsupported WAV encoding"),
        (riff(fmt_body(0xFFFE, 1, 8000, 32, extensible_sub=3), b"\x00" * 64), "float"),
        (riff(fmt_body(1, 1, 1, 16), b"\x00" * 64), "sample rate 1 Hz"),
        (riff(fmt_body(1, 1, 44101, 16), b"\x00" * 64), "sample rate 44101"),
        (riff(fmt_body(1, 0, 8000, 16), b"\x00" * 64), "0 channels"),
        (riff(fmt_body(1, 1, 8000, 64), b"\x00" * 64), "64-bit samples"),
        (riff(fmt_body(1, 1, 8000, 40), b"\x00" * 64), "40-bit samples"),
        (riff(fmt_body(1, 1, 8000, 16), b""), "0 frames"),
        (riff(fmt_body(7, 1, 8000, 16), b"\x00" * 64), "G.711 WAV with 16-bit"),
        (b"RIFF\x10\x00\x00\x00WAVEdata\x00\x00\x00\x00", "data chunk before fmt"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    store: PromptStore, blob: bytes, reason: str
) -> None:
    with pytest.raises(PromptError, match=reason) as info:
        store.add("acme", "cmn", "menu", blob)
    message = str(info.value)
    assert "'acme'" in message and "'menu'" in message and "'cmn'" in message
    assert store.list("acme") == []


def test_too_long_upload_is_refused(tmp_path: Path) -> None:
    store = PromptStore(tmp_path / "root", RecordingSynth(), max_seconds=2.0)
    store.add("acme", "en-us", "short", wav_bytes(beep(440, 1.9), 8000))
    with pytest.raises(PromptError, match="3 s of audio"):
        store.add("acme", "en-us", "long", wav_bytes(beep(440, 3.0), 8000))


def test_decode_wav_never_raises_anything_but_wav_error() -> None:
    good = wav_bytes(beep(1000, 0.1, rate=16000), 16000)
    rng = np.random.default_rng(7)
    for _ in range(300):
        blob = bytearray(good)
        for i in rng.integers(0, 60, size=3):  # corrupt the header
            blob[i] = int(rng.integers(0, 256))
        cut = int(rng.integers(0, len(blob) + 1))
        try:
            decode_wav(bytes(blob[:cut]))
        except WavError:
            pass


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200).map(lambda b: b"RIFF" + b[:4] + b"WAVE" + b[4:]),
    st.sampled_from([b"fmt ", b"data", b"LIST"]),
)
def test_decode_wav_of_arbitrary_chunks_decodes_or_raises_wav_error(
    tail: bytes, cid: bytes
) -> None:
    good_fmt = fmt_body(1, 2, 16000, 16)
    for blob in (tail, tail[:12] + b"fmt " + b"\x10\x00\x00\x00" + good_fmt + cid + tail[12:]):
        try:
            samples = decode_wav(blob)
        except WavError:
            continue
        assert samples.dtype == np.int16 and samples.ndim == 1


def test_operator_copied_files_are_converted_when_loaded(store: PromptStore) -> None:
    d = store.root / "acme" / "prompts" / "yue"
    d.mkdir(parents=True)
    (d / "hold.wav").write_bytes(wav_bytes(beep(1000, 0.5, rate=22050), 22050))
    samples = run(store.resolve("acme", {"file": "hold"}, "yue"))
    assert abs(len(samples) - 4000) <= 2
    (d / "broken.wav").write_bytes(b"not a wav")
    with pytest.raises(PromptError, match="not usable") as info:
        run(store.resolve("acme", {"file": "broken"}, "yue"))
    assert "'acme'" in str(info.value) and "'broken'" in str(info.value)


def test_list_and_delete(store: PromptStore) -> None:
    tone_wav = wav_bytes(beep(500, 0.2), 8000)
    store.add("acme", "cmn", "b", tone_wav)
    store.add("acme", "en-us", "a", tone_wav)
    store.add("acme", "en-us", "b", tone_wav)
    store.add("acme", "fr", "a", tone_wav)  # any language tag can hold recordings
    assert [(p.language, p.name) for p in store.list("acme")] == [
        ("en-us", "a"),
        ("en-us", "b"),
        ("cmn", "b"),
        ("fr", "a"),
    ]
    assert [p.name for p in store.list("acme", "en-us")] == ["a", "b"]
    assert all(p.size > 44 and p.tenant_id == "acme" for p in store.list("acme"))
    assert store.list("globex") == [] and store.list("acme", "yue") == []
    store.delete("acme", "en-us", "a")
    assert [p.name for p in store.list("acme", "en-us")] == ["b"]
    with pytest.raises(PromptError, match="no such prompt") as info:
        store.delete("acme", "en-us", "a")
    assert "'acme'" in str(info.value) and "'a'" in str(info.value)
    # en-us "a" is gone, so a call in en-us now falls back to the French recording
    assert len(run(store.resolve("acme", {"file": "a"}, "en-us"))) == 1600
    store.delete("acme", "fr", "a")
    with pytest.raises(PromptError, match="no such prompt"):
        run(store.resolve("acme", {"file": "a"}, "en-us"))


# --------------------------------------------------------------------------- fallback
def _lengths(root: Path, tenant: str, table: Mapping[str, int], name: str = "menu") -> None:
    for language, ms in table.items():
        put_raw(root, tenant, language, name, beep(800, ms / 1000))


def test_file_fallback_order(tmp_path: Path) -> None:
    defaults = {"acme": "yue", "globex": "fr"}
    store = PromptStore(tmp_path / "root", RecordingSynth(), default_language=defaults.get)
    _lengths(store.root, "acme", {"en-us": 100, "cmn": 200, "yue": 300, "de": 400})

    def length(ref: Any, language: str, tenant: str = "acme") -> int:
        return len(run(store.resolve(tenant, ref, language))) // 8

    assert length({"file": "menu"}, "cmn") == 200  # the call's language
    assert length({"file": "menu"}, "en-us") == 100
    assert length({"file": "menu"}, "fr") == 300  # no fr: the tenant's default (yue)
    (store.root / "acme" / "prompts" / "yue" / "menu.wav").unlink()
    assert length({"file": "menu"}, "fr") == 100  # no default either: en-us first
    (store.root / "acme" / "prompts" / "en-us" / "menu.wav").unlink()
    (store.root / "acme" / "prompts" / "cmn" / "menu.wav").unlink()
    assert length({"file": "menu"}, "yue") == 400  # any language at all

    _lengths(store.root, "globex", {"cmn": 250, "fr": 150})
    assert length({"file": "menu"}, "en-us", "globex") == 150  # globex defaults to fr
    with pytest.raises(PromptError, match=r"no such prompt \(looked in en-us, fr, cmn\)") as info:
        run(store.resolve("globex", {"file": "missing"}, "en-us"))
    assert "'globex'" in str(info.value) and "'missing'" in str(info.value)


def test_language_map_choice(tmp_path: Path) -> None:
    store = PromptStore(tmp_path / "root", RecordingSynth(), default_language={"acme": "cmn"}.get)
    _lengths(store.root, "acme", {"en-us": 100, "cmn": 200, "yue": 300}, name="x")
    _lengths(store.root, "acme", {"en-us": 110, "cmn": 210, "yue": 310}, name="y")
    ref = {"en-us": {"file": "x"}, "cmn": {"file": "y"}}

    def length(ref: Any, language: str) -> int:
        return len(run(store.resolve("acme", ref, language))) // 8

    assert length(ref, "en-us") == 100
    assert length(ref, "cmn") == 210
    # yue is not in the map: the tenant default's entry (cmn), resolved *in cmn*
    assert length(ref, "yue") == 210
    # neither the call's language nor the default: first of en-us, cmn, yue
    assert length({"yue": {"file": "x"}, "en-us": {"file": "y"}}, "fr") == 110
    # the only entry is de; x has no de recording, so the tenant default (cmn) comes next
    assert length({"de": {"file": "x"}}, "en-us") == 200


# --------------------------------------------------------------------------- isolation
@pytest.fixture
def two_tenants(store: PromptStore) -> PromptStore:
    store.add("globex", "en-us", "secret", wav_bytes(beep(1000, 0.25), 8000))
    store.add("acme", "en-us", "welcome", wav_bytes(beep(1000, 0.5), 8000))
    return store


def test_one_tenant_cannot_resolve_anothers_prompt(two_tenants: PromptStore) -> None:
    store = two_tenants
    with pytest.raises(PromptError, match="no such prompt") as info:
        run(store.resolve("acme", {"file": "secret"}, "en-us"))
    assert "'acme'" in str(info.value)
    assert len(run(store.resolve("globex", {"file": "secret"}, "en-us"))) == 2000
    with pytest.raises(PromptError, match="no such prompt"):
        run(store.resolve("globex", {"file": "welcome"}, "en-us"))
    assert [p.name for p in store.list("acme")] == ["welcome"]
    with pytest.raises(PromptError, match="no such prompt"):
        store.delete("acme", "en-us", "secret")
    assert (store.root / "globex" / "prompts" / "en-us" / "secret.wav").exists()


@pytest.mark.parametrize(
    "name",
    [
        "../../globex/prompts/en-us/secret",
        "../secret",
        "..",
        "/etc/passwd",
        "secret.wav",
        "a/b",
        "a\\b",
        "",
        "x" * 65,
        "welcome\x00",
        "wel come",
        "\uff57\uff45\uff4c\uff43\uff4f\uff4d\uff45",  # fullwidth "welcome"
        7,
        None,
    ],
)
def test_traversal_through_names_is_refused(two_tenants: PromptStore, name: Any) -> None:
    store = two_tenants
    with pytest.raises(PromptError, match="invalid prompt name"):
        run(store.resolve("acme", {"file": name}, "en-us"))
    with pytest.raises(PromptError, match="invalid prompt name"):
        store.add("acme", "en-us", name, wav_bytes(beep(1000, 0.1), 8000))
    with pytest.raises(PromptError, match="invalid prompt name"):
        store.delete("acme", "en-us", name)


@pytest.mark.parametrize(
    "tenant", ["../globex", "globex/../acme", "/abs", "", ".", "..", "Acme", "-acme", "a" * 64]
)
def test_traversal_through_tenant_ids_is_refused(two_tenants: PromptStore, tenant: str) -> None:
    with pytest.raises(PromptError, match="invalid tenant id"):
        run(two_tenants.resolve(tenant, {"file": "secret"}, "en-us"))
    with pytest.raises(PromptError, match="invalid tenant id"):
        two_tenants.add(tenant, "en-us", "x", wav_bytes(beep(1000, 0.1), 8000))
    with pytest.raises(PromptError, match="invalid tenant id"):
        two_tenants.list(tenant)


@pytest.mark.parametrize(
    "language", ["../../globex/prompts/en-us", "..", "en-us/..", "/tmp", "EN-US", "", "e"]
)
def test_traversal_through_languages_is_refused(two_tenants: PromptStore, language: str) -> None:
    with pytest.raises(PromptError, match="invalid language"):
        run(two_tenants.resolve("acme", {"file": "secret"}, language))
    with pytest.raises(PromptError, match="invalid language"):
        two_tenants.add("acme", language, "x", wav_bytes(beep(1000, 0.1), 8000))
    with pytest.raises(PromptError, match="invalid language"):
        two_tenants.list("acme", language)
    with pytest.raises(PromptError, match=r"invalid language|neither"):
        run(two_tenants.resolve("acme", {language: {"file": "secret"}}, "en-us"))


def test_symlinks_escaping_the_tenant_are_refused(two_tenants: PromptStore, tmp_path: Path) -> None:
    store = two_tenants
    secret = store.root / "globex" / "prompts" / "en-us" / "secret.wav"
    acme = store.root / "acme" / "prompts"
    # a file link to another tenant's prompt
    (acme / "en-us" / "stolen.wav").symlink_to(secret)
    with pytest.raises(PromptError, match="outside the tenant's directory") as info:
        run(store.resolve("acme", {"file": "stolen"}, "en-us"))
    assert "'acme'" in str(info.value) and "'stolen'" in str(info.value)
    assert [p.name for p in store.list("acme")] == ["welcome"]  # not listed either
    # a language directory linked to another tenant's
    (acme / "cmn").symlink_to(secret.parent)
    with pytest.raises(PromptError, match="outside the tenant's directory"):
        run(store.resolve("acme", {"file": "secret"}, "cmn"))
    assert [p.language for p in store.list("acme")] == ["en-us"]
    # ... and uploads through it do not land in globex
    with pytest.raises(PromptError, match="outside the tenant's directory"):
        store.add("acme", "cmn", "planted", wav_bytes(beep(1000, 0.1), 8000))
    assert not (secret.parent / "planted.wav").exists()
    # a link out of the root entirely
    outside = tmp_path / "outside"
    outside.mkdir()
    (acme / "yue").symlink_to(outside)
    with pytest.raises(PromptError, match="outside the tenant's directory"):
        store.add("acme", "yue", "planted", wav_bytes(beep(1000, 0.1), 8000))
    assert list(outside.iterdir()) == []
    # deleting a link removes the link, never what it points to
    store.delete("acme", "en-us", "stolen")
    assert secret.exists()


def test_tenant_directory_that_is_a_symlink_is_refused(two_tenants: PromptStore) -> None:
    store = two_tenants
    os.symlink(store.root / "globex", store.root / "initech")
    with pytest.raises(PromptError, match="outside the tenant's directory"):
        run(store.resolve("initech", {"file": "secret"}, "en-us"))
    assert store.list("initech") == []


def test_symlinks_inside_the_tenant_are_followed(two_tenants: PromptStore) -> None:
    store = two_tenants
    acme = store.root / "acme" / "prompts"
    (acme / "yue").symlink_to(acme / "en-us")  # reuse the English recordings
    assert len(run(store.resolve("acme", {"file": "welcome"}, "yue"))) == 4000
    (acme / "en-us" / "hello.wav").symlink_to("welcome.wav")
    assert len(run(store.resolve("acme", {"file": "hello"}, "en-us"))) == 4000
    (acme / "en-us" / "dangling.wav").symlink_to("nowhere.wav")
    with pytest.raises(PromptError, match="no such prompt"):
        run(store.resolve("acme", {"file": "dangling"}, "en-us"))


# --------------------------------------------------------------------------- references
@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ({}, "a prompt is"),
        ({"file": "a", "tts": "b"}, "exactly one of file, tts, say"),
        ({"play": "a"}, "neither file/tts/say nor a language"),
        ({"file": "a", "as": "number"}, "file prompt does not take"),
        ({"tts": "hi", "yao": True}, "tts prompt does not take"),
        ({"tts": ""}, "non-empty text"),
        ({"tts": "   "}, "non-empty text"),
        ({"tts": 5}, "non-empty text"),
        ({"tts": "x" * 2001}, "at most 2000"),
        ({"say": "12a", "as": "number"}, "cannot say '12a' as number"),
        ({"say": "1", "as": "ordinal"}, "one of digits, number"),
        ({"say": 1.5, "as": "number"}, "text or an integer"),
        ({"say": True, "as": "number"}, "text or an integer"),
        ({"say": "1", "as": "money", "currency": "XYZ"}, "unknown currency"),
        ({"say": "1", "as": "number", "liang": "yes"}, "must be bool"),
        ({"en-us": {"cmn": {"tts": "x"}}}, "exactly one of"),  # maps do not nest
        ({"en-us": ["x"]}, "a prompt is"),
        (42, "a prompt is"),
    ],
)
def test_bad_references(store: PromptStore, ref: Any, fragment: str) -> None:
    with pytest.raises(PromptError, match=fragment) as info:
        run(store.resolve("acme", ref, "en-us"))
    assert "tenant 'acme'" in str(info.value) and "language 'en-us'" in str(info.value)


def test_say_in_a_language_without_rules(store: PromptStore) -> None:
    with pytest.raises(PromptError, match="say is available in en-us, cmn, yue only"):
        run(store.resolve("acme", {"say": "1", "as": "number"}, "fr"))


# --------------------------------------------------------------------------- cache
def test_cache_is_bounded_by_bytes_and_lru(tmp_path: Path) -> None:
    one = 4000 * 2  # bytes of a 0.5 s prompt at 8 kHz int16
    store = PromptStore(tmp_path / "root", RecordingSynth(), cache_bytes=3 * one)
    for i in range(5):
        put_raw(store.root, "acme", "en-us", f"p{i}", beep(500 + 100 * i, 0.5))

    def get(name: str) -> Int16Array:
        return run(store.resolve("acme", {"file": name}, "en-us"))

    for name in ("p0", "p1", "p2"):
        get(name)
    assert (len(store.cache), store.cache.bytes) == (3, 3 * one)
    get("p0")  # p0 becomes the most recently used
    assert store.cache.hits == 1
    get("p3")  # evicts p1, the least recently used
    assert store.cache.bytes <= 3 * one and len(store.cache) == 3
    misses = store.cache.misses
    get("p0")
    get("p2")
    get("p3")
    assert store.cache.misses == misses  # all still cached
    get("p1")
    assert store.cache.misses == misses + 1  # p1 was evicted
    for i in range(5):
        get(f"p{i}")
        assert store.cache.bytes <= 3 * one


def test_cache_skips_oversized_entries_and_returns_read_only_arrays(tmp_path: Path) -> None:
    store = PromptStore(tmp_path / "root", RecordingSynth(), cache_bytes=10_000)
    put_raw(store.root, "acme", "en-us", "big", beep(500, 1.0))  # 16,000 bytes
    put_raw(store.root, "acme", "en-us", "small", beep(500, 0.25))
    assert len(run(store.resolve("acme", {"file": "big"}, "en-us"))) == 8000
    assert len(store.cache) == 0
    small = run(store.resolve("acme", {"file": "small"}, "en-us"))
    assert len(store.cache) == 1
    with pytest.raises(ValueError, match="read-only"):
        small[0] = 1


def test_cache_sees_replaced_and_deleted_files(store: PromptStore) -> None:
    store.add("acme", "cmn", "menu", wav_bytes(beep(500, 0.5), 8000))
    assert len(run(store.resolve("acme", {"file": "menu"}, "cmn"))) == 4000
    store.add("acme", "cmn", "menu", wav_bytes(beep(500, 0.75), 8000))  # replaced by upload
    assert len(run(store.resolve("acme", {"file": "menu"}, "cmn"))) == 6000
    put_raw(store.root, "acme", "cmn", "menu", beep(500, 0.25))  # replaced on disk
    assert len(run(store.resolve("acme", {"file": "menu"}, "cmn"))) == 2000
    store.delete("acme", "cmn", "menu")
    assert store.cache.bytes == 0
    with pytest.raises(PromptError, match="no such prompt"):
        run(store.resolve("acme", {"file": "menu"}, "cmn"))


def test_concurrent_resolves(store: PromptStore) -> None:
    for i in range(8):
        store.add("acme", "yue", f"p{i}", wav_bytes(beep(600, 0.1 * (i + 1), rate=16000), 16000))

    async def many() -> list[Int16Array]:
        refs = [{"file": f"p{i % 8}"} for i in range(40)]
        return await asyncio.gather(*(store.resolve("acme", r, "yue") for r in refs))

    results = run(many())
    assert [len(r) for r in results[:8]] == [800 * (i + 1) for i in range(8)]
    assert read_wav_raw(store.root / "acme" / "prompts" / "yue" / "p0.wav")[1] == 8000


def test_recording_refs_play_files_of_the_tenant_only(tmp_path: Path) -> None:
    store = PromptStore(tmp_path, RecordingSynth())
    for tenant in ("acme", "globex"):
        folder = tmp_path / tenant / "voicemail" / "1001"
        folder.mkdir(parents=True)
        write_wav(folder / "m1.wav", beep(700 if tenant == "acme" else 1200, 0.5))
    got = run(store.resolve("acme", {"recording": "voicemail/1001/m1.wav"}, "en-us"))
    assert goertzel_power(got, 700) > 100 * goertzel_power(got, 1200)
    for bad in ("../globex/voicemail/1001/m1.wav", "/etc/passwd.wav", "voicemail/1001/m1",
                "voicemail/../../globex/voicemail/1001/m1.wav", ".hidden.wav", 7):
        with pytest.raises(PromptError):
            run(store.resolve("acme", {"recording": bad}, "en-us"))
    os.symlink(tmp_path / "globex" / "voicemail" / "1001" / "m1.wav",
               tmp_path / "acme" / "voicemail" / "1001" / "theirs.wav")
    with pytest.raises(PromptError, match="outside the tenant"):
        run(store.resolve("acme", {"recording": "voicemail/1001/theirs.wav"}, "en-us"))
    with pytest.raises(PromptError, match="no recording"):
        run(store.resolve("acme", {"recording": "voicemail/1001/none.wav"}, "en-us"))


def test_missing_recording_falls_back_to_otherwise(tmp_path: Path) -> None:
    synth = RecordingSynth()
    store = PromptStore(tmp_path, synth)
    ref = {"recording": "voicemail/1001/greeting.wav",
           "otherwise": {"en-us": {"tts": "leave a message"}, "yue": {"tts": "請留言"}}}
    run(store.resolve("acme", ref, "yue"))
    assert synth.calls == [("請留言", "yue")]
    folder = tmp_path / "acme" / "voicemail" / "1001"
    folder.mkdir(parents=True)
    write_wav(folder / "greeting.wav", beep(440, 0.5))
    got = run(store.resolve("acme", ref, "yue"))
    assert len(synth.calls) == 1 and goertzel_power(got, 440) > 1e5
    with pytest.raises(PromptError):  # a bad path is an error, not a reason to fall back
        run(store.resolve("acme", {**ref, "recording": "../globex/x.wav"}, "yue"))
