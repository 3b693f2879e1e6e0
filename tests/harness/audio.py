"""Audio checks for end-to-end tests: tones in, Goertzel power and RMS out.

Numpy and the standard ``wave`` module only (no sox needed). WAVs are 16-bit PCM; the
checks work on mono (multi-channel files are averaged to mono when read).
"""

from __future__ import annotations

import math
import os
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "dominant_tone_check",
    "goertzel_power",
    "make_silence_wav",
    "make_tone_wav",
    "read_wav",
    "rms",
    "wav_seconds",
    "write_wav",
]

Int16Array = npt.NDArray[np.int16]


def goertzel_power(
    samples: npt.ArrayLike, freq: float, rate: int, block: int | None = None
) -> float:
    """Power of ``samples`` at ``freq`` Hz (Goertzel), normalised by the number of samples.

    Uses the exact target frequency (no bin rounding) and returns ``|X(f)|**2 / N**2``, so a
    sine of amplitude A gives about ``A**2 / 4`` whatever the length. With ``block`` (samples)
    the signal is cut into blocks and their powers averaged: robust to the phase jumps a
    recording gets from packet loss or jitter-buffer resets.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        return 0.0
    w = 2.0 * math.pi * freq / rate
    if block is None or block >= x.size:
        k = np.arange(x.size, dtype=np.float64)
        re = float(np.dot(x, np.cos(w * k)))
        im = float(np.dot(x, np.sin(w * k)))
        return (re * re + im * im) / (x.size * x.size)
    nblocks = x.size // block
    blocks = x[: nblocks * block].reshape(nblocks, block)
    k = np.arange(block, dtype=np.float64)
    re_b = blocks @ np.cos(w * k)
    im_b = blocks @ np.sin(w * k)
    return float(np.mean(re_b * re_b + im_b * im_b)) / (block * block)


def rms(samples: npt.ArrayLike) -> float:
    """Root mean square of the samples (int16 scale for int16 input)."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(x * x)))


def _wav_layout(data: bytes, name: str) -> tuple[int, int, int, int, int]:
    """(rate, channels, bits, data_offset, data_len) from a RIFF/WAVE header."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{name}: not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            tag = int.from_bytes(data[body : body + 2], "little")
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError(f"{name}: data chunk before fmt chunk")
            tag, channels, rate, bits = fmt
            if tag not in (1, 0xFFFE):
                raise ValueError(f"{name}: format tag {tag:#x}, want PCM")
            avail = len(data) - body
            # A recording still being written has size 0 (or a placeholder): use the file.
            length = avail if size == 0 or size > avail else size
            return rate, channels, bits, body, length
        pos = body + size + (size & 1)
    raise ValueError(f"{name}: no data chunk")


def read_wav(path: str | os.PathLike[str]) -> tuple[int, Int16Array]:
    """Read a 16-bit PCM WAV: ``(rate, int16 samples)``, mono (channels averaged).

    Tolerates a file whose header sizes were not finalised yet (a recording still being
    written): the sample count is then taken from the file size.
    """
    p = Path(path)
    raw = p.read_bytes()
    rate, channels, bits, off, length = _wav_layout(raw, str(p))
    if bits != 16:
        raise ValueError(f"{p}: {bits}-bit samples, want 16-bit PCM")
    length -= length % (2 * channels)
    data = np.frombuffer(raw, dtype="<i2", count=length // 2, offset=off)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return rate, data.astype(np.int16)


def wav_seconds(path: str | os.PathLike[str]) -> float:
    """Duration of the audio in a 16-bit WAV, also while it is still being written."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(4096)
    size = p.stat().st_size
    rate, channels, bits, off, _length = _wav_layout(head, str(p))
    return max(size - off, 0) / (rate * channels * bits // 8)


def write_wav(path: str | os.PathLike[str], samples: npt.ArrayLike, rate: int = 8000) -> Path:
    """Write mono 16-bit PCM."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(samples)
    if data.dtype != np.int16:
        data = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.astype("<i2").tobytes())
    return p


def make_tone_wav(
    path: str | os.PathLike[str],
    freq: float,
    seconds: float,
    rate: int = 8000,
    amplitude: float = 0.3,
) -> Path:
    """Write a mono 16-bit sine of ``freq`` Hz (``amplitude`` of full scale)."""
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    return write_wav(path, amplitude * 32767.0 * np.sin(2.0 * math.pi * freq * t), rate)


def make_silence_wav(path: str | os.PathLike[str], seconds: float, rate: int = 8000) -> Path:
    return write_wav(path, np.zeros(round(seconds * rate), dtype=np.int16), rate)


def dominant_tone_check(
    wav: str | os.PathLike[str] | tuple[int, npt.ArrayLike],
    expected: float,
    other: float,
    *,
    skip_seconds: float = 0.0,
) -> float:
    """Ratio of Goertzel power at ``expected`` Hz to power at ``other`` Hz (100 ms blocks).

    ``wav`` is a path or an already read ``(rate, samples)``. ``skip_seconds`` drops the
    start (call setup, jitter-buffer fill). A value well over 10 means the expected tone
    dominates. Returns ``inf`` when the other frequency carries no power at all.
    """
    if isinstance(wav, tuple):
        rate, samples = wav[0], np.asarray(wav[1])
    else:
        rate, samples = read_wav(wav)
    samples = samples[int(skip_seconds * rate) :]
    block = max(rate // 10, 1)  # 100 ms blocks
    p_exp = goertzel_power(samples, expected, rate, block)
    p_other = goertzel_power(samples, other, rate, block)
    if p_other == 0.0:
        return math.inf if p_exp > 0 else 0.0
    return p_exp / p_other
