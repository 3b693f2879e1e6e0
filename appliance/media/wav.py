"""WAV files (stdlib ``wave``) and sample-rate conversion with numpy.

``read_wav`` returns mono int16 at the requested rate (8 kHz by default):
multi-channel files are averaged, 8/24/32-bit PCM is converted to 16-bit,
and the rate is converted by ``resample``.  ``write_wav`` writes mono
(1-D array) or interleaved multi-channel (2-D array, one column per
channel) 16-bit PCM.

``resample`` is a polyphase windowed-sinc converter for any rational ratio
``L/M`` (``L = dst/g``, ``M = src/g``): output sample ``n`` sits at input
position ``n*M/L``; its value is the dot product of the input around that
position with one of ``L`` precomputed filter phases.  The filter is a
Kaiser-windowed sinc whose cutoff is ``rolloff`` times the lower of the two
Nyquist frequencies, so downsampling (22.05 kHz espeak-ng output to 8 kHz)
is low-pass filtered before decimation and does not alias.
"""

from __future__ import annotations

import wave
from functools import lru_cache
from math import ceil, gcd
from os import PathLike, fspath
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = ["WavError", "read_wav", "read_wav_raw", "resample", "to_mono", "write_wav"]

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]
Source = str | PathLike[str] | BinaryIO


class WavError(ValueError):
    """Not a PCM WAV file we can read."""


def _openable(source: Source) -> str | BinaryIO:
    """``wave.open`` takes a str or a file object (paths only from Python 3.12)."""
    if isinstance(source, str | PathLike):
        return fspath(source)
    return source


def read_wav_raw(source: Source) -> tuple[Int16Array, int]:
    """Samples as int16 with shape ``(frames, channels)``, and the sample rate."""
    try:
        with wave.open(_openable(source), "rb") as w:
            channels = w.getnchannels()
            width = w.getsampwidth()
            rate = w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise WavError(f"unreadable WAV: {exc}") from exc
    if width in (2, 3, 4):
        raw = raw[: len(raw) - len(raw) % width]  # a file cut inside a sample
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        data = (b[:, 1].astype(np.uint16) | (b[:, 2].astype(np.uint16) << 8)).view(np.int16)
    elif width == 4:
        data = (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    else:
        raise WavError(f"unsupported sample width {width}")
    frames = len(data) // channels
    return data[: frames * channels].reshape(frames, channels), rate


def to_mono(samples: npt.ArrayLike) -> Int16Array:
    """Average the channels of a ``(frames, channels)`` array (1-D passes through)."""
    arr = np.asarray(samples)
    if arr.ndim == 1:
        return arr.astype(np.int16, copy=False)
    if arr.shape[1] == 1:
        mono: Int16Array = arr[:, 0].astype(np.int16)
        return mono
    mean = arr.astype(np.int32).sum(axis=1) / arr.shape[1]
    averaged: Int16Array = np.clip(np.rint(mean), -32768, 32767).astype(np.int16)
    return averaged


def read_wav(source: Source, rate: int | None = 8000) -> Int16Array:
    """Mono int16 samples, converted to ``rate`` (None keeps the file's rate)."""
    data, file_rate = read_wav_raw(source)
    mono = to_mono(data)
    if rate is None or rate == file_rate:
        return mono
    return resample(mono, file_rate, rate)


def write_wav(path: Source, samples: npt.ArrayLike, rate: int = 8000) -> None:
    """Write 16-bit PCM; a 2-D array is ``(frames, channels)``."""
    arr = np.asarray(samples)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"samples must be 1-D or (frames, channels), not {arr.shape}")
    if arr.dtype != np.int16:
        arr = np.clip(np.rint(arr), -32768, 32767).astype(np.int16)
    with wave.open(_openable(path), "wb") as w:
        w.setnchannels(arr.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(arr, dtype="<i2").tobytes())


@lru_cache(maxsize=16)
def _phases(up: int, down: int, zeros: int, rolloff: float, beta: float) -> tuple[FloatArray, int]:
    """Filter bank ``(up, taps)`` and the index of tap 0 relative to floor(position)."""
    fc = 0.5 * min(1.0, up / down) * rolloff  # cycles per input sample
    half = zeros / (2 * fc)  # half-width in input samples
    k = ceil(half)
    j = np.arange(-k + 1, k + 1, dtype=np.float64)  # taps relative to floor(position)
    frac = np.arange(up, dtype=np.float64)[:, None] / up
    t = j[None, :] - frac  # distance from the output position
    h = 2 * fc * np.sinc(2 * fc * t)
    inside = np.clip(1.0 - (t / half) ** 2, 0.0, None)
    h *= np.i0(beta * np.sqrt(inside)) / np.i0(beta) * (np.abs(t) < half)
    h /= h.sum(axis=1, keepdims=True)  # unity gain at DC for every phase
    h.setflags(write=False)
    return h, k - 1


def resample(
    samples: npt.ArrayLike,
    src_rate: int,
    dst_rate: int,
    *,
    zeros: int = 16,
    rolloff: float = 0.92,
    beta: float = 8.6,
) -> Int16Array:
    """Convert mono int16 audio between sample rates (band-limited)."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError("sample rates must be positive")
    if src_rate == dst_rate:
        return np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    g = gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    bank, left = _phases(up, down, zeros, rolloff, beta)
    taps = bank.shape[1]
    n_out = ceil(len(x) * up / down)
    padded = np.concatenate((np.zeros(left), x, np.zeros(taps)))
    out = np.empty(n_out, dtype=np.float64)
    offsets = np.arange(taps)
    chunk = max(1, (1 << 20) // taps)
    for start in range(0, n_out, chunk):
        n = np.arange(start, min(start + chunk, n_out), dtype=np.int64)
        pos = n * down
        base = pos // up  # floor of the input position
        phase = pos % up
        gathered = padded[base[:, None] + offsets[None, :]]
        out[start : start + len(n)] = np.einsum("ij,ij->i", gathered, bank[phase])
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)
