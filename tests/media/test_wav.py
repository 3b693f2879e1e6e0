"""WAV read/write and band-limited resampling."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.media.tones import goertzel_power, mean_square, tone
from appliance.media.wav import WavError, read_wav, read_wav_raw, resample, to_mono, write_wav


def test_mono_roundtrip(tmp_path: Path) -> None:
    x = tone(440, 0.3)
    write_wav(tmp_path / "a.wav", x)
    assert np.array_equal(read_wav(tmp_path / "a.wav"), x)
    data, rate = read_wav_raw(tmp_path / "a.wav")
    assert rate == 8000 and data.shape == (2400, 1)


def test_stereo_write_and_mono_downmix(tmp_path: Path) -> None:
    left, right = tone(440, 0.2), tone(1000, 0.2)
    write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1))
    data, _ = read_wav_raw(tmp_path / "s.wav")
    assert data.shape == (1600, 2) and np.array_equal(data[:, 0], left)
    mono = read_wav(tmp_path / "s.wav")
    assert np.array_equal(mono, to_mono(data))
    assert goertzel_power(mono, 440) > 0.2 * 8000**2 / 2
    assert goertzel_power(mono, 1000) > 0.2 * 8000**2 / 2


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000, 11025])
def test_read_resamples_to_8k(tmp_path: Path, rate: int) -> None:
    write_wav(tmp_path / "r.wav", tone(1000, 1.0, rate=rate, amplitude=10000), rate)
    y = read_wav(tmp_path / "r.wav")
    assert len(y) == 8000
    assert goertzel_power(y[200:-200], 1000) == pytest.approx(10000**2 / 2, rel=0.02)
    assert read_wav(tmp_path / "r.wav", rate=None).size == rate


def test_downsampling_does_not_alias() -> None:
    # 5 kHz is above the 4 kHz Nyquist of 8 kHz: it must vanish, not fold to 3 kHz
    y = resample(tone(5000, 1.0, rate=22050, amplitude=10000), 22050, 8000)
    assert mean_square(y[200:-200]) < 1e-4 * 10000**2 / 2
    # the telephone band passes
    y = resample(tone(3300, 1.0, rate=22050, amplitude=10000), 22050, 8000)
    assert mean_square(y[200:-200]) > 0.8 * 10000**2 / 2


def test_upsampling_and_identity() -> None:
    x = tone(700, 0.5)
    y = resample(x, 8000, 16000)
    assert len(y) == 8000
    assert goertzel_power(y[100:-100], 700, 16000) == pytest.approx(8000**2 / 2, rel=0.02)
    assert np.array_equal(resample(x, 8000, 8000), x)
    with pytest.raises(ValueError):
        resample(x, 0, 8000)


def test_other_sample_widths() -> None:
    for width, raw, expected in [
        (1, bytes([128, 255, 0]), [0, 127 << 8, -32768]),
        (3, bytes([0xAA, 0x34, 0x12, 0x00, 0x00, 0x80]), [0x1234, -32768]),
        (4, (0x12345678).to_bytes(4, "little"), [0x1234]),
    ]:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(width)
            w.setframerate(8000)
            w.writeframes(raw)
        buf.seek(0)
        assert read_wav(buf).tolist() == expected


def test_not_a_wav(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(WavError):
        read_wav(tmp_path / "x.wav")
    with pytest.raises(ValueError):
        write_wav(tmp_path / "y.wav", np.zeros((2, 2, 2), dtype=np.int16))


def test_truncated_data_inside_a_sample_is_read_without_the_partial_sample(
        tmp_path: Path) -> None:
    import struct

    path = tmp_path / "cut.wav"
    write_wav(path, np.arange(100, dtype=np.int16))
    blob = bytearray(path.read_bytes())
    # claim one more byte of data than whole samples and append it (a file cut mid-sample)
    data_at = blob.index(b"data")
    size = struct.unpack_from("<I", blob, data_at + 4)[0]
    struct.pack_into("<I", blob, data_at + 4, size + 1)
    path.write_bytes(bytes(blob) + b"\x01")
    data, _ = read_wav_raw(path)
    assert data.shape == (100, 1) and data[-1, 0] == 99
