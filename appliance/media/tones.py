"""Tone generation and single-frequency power measurement (Goertzel).

``goertzel_power`` returns the mean-square power of the ``freq`` component of
a block, scaled so that a sine of amplitude ``A`` reads ``A**2 / 2`` (the same
unit as ``mean_square``); the ratio of the two is "how much of this block is
that tone".  It computes the Goertzel filter's final output
``s1**2 + s2**2 - 2*cos(w)*s1*s2`` in closed form, which equals the squared
magnitude of the block's DFT at ``freq`` (any frequency, not only bin
centres), so numpy does it with two dot products instead of a Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

__all__ = [
    "dbm0",
    "goertzel_power",
    "goertzel_powers",
    "mean_square",
    "silence",
    "tone",
    "white_noise",
]

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

_DBM0_REF = (32768.0 / 10 ** (3.14 / 20)) ** 2 / 2
"""Mean-square power of a 0 dBm0 sine in 16-bit linear G.711 (+3.14 dBm0 full scale)."""


def tone(
    freq: float | Sequence[float],
    seconds: float,
    rate: int = 8000,
    amplitude: float = 8000.0,
    phase: float = 0.0,
) -> Int16Array:
    """A sine (or the sum of sines, each of ``amplitude``) as int16 samples."""
    freqs = [float(freq)] if isinstance(freq, int | float) else [float(f) for f in freq]
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    out = np.zeros(n, dtype=np.float64)
    for f in freqs:
        out += amplitude * np.sin(2 * np.pi * f * t + phase)
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def silence(seconds: float, rate: int = 8000) -> Int16Array:
    return np.zeros(round(seconds * rate), dtype=np.int16)


def white_noise(
    seconds: float, rate: int = 8000, amplitude: float = 1000.0, seed: int = 0
) -> Int16Array:
    """Gaussian noise with RMS ``amplitude``, reproducible by ``seed``."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, amplitude, round(seconds * rate))
    return np.clip(np.rint(noise), -32768, 32767).astype(np.int16)


def mean_square(samples: npt.ArrayLike) -> float:
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return 0.0
    return float(np.dot(x, x) / x.size)


def dbm0(power: float) -> float:
    """Convert a mean-square power (16-bit linear units) to dBm0."""
    if power <= 0:
        return float("-inf")
    return float(10 * np.log10(power / _DBM0_REF))


@lru_cache(maxsize=64)
def _basis(n: int, freqs: tuple[float, ...], rate: int) -> tuple[FloatArray, FloatArray]:
    k = np.arange(n, dtype=np.float64)
    w = 2 * np.pi * np.asarray(freqs, dtype=np.float64)[:, None] / rate
    cos, sin = np.cos(w * k), np.sin(w * k)
    cos.setflags(write=False)
    sin.setflags(write=False)
    return cos, sin


def goertzel_powers(samples: npt.ArrayLike, freqs: Sequence[float], rate: int = 8000) -> FloatArray:
    """Power of each frequency in ``samples`` (see the module docstring for the unit).

    ``samples`` may be 1-D (one block) or 2-D (one block per row); the result
    has shape ``(len(freqs),)`` or ``(rows, len(freqs))``.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = x.shape[-1]
    if n == 0:
        return np.zeros((*x.shape[:-1], len(freqs)))
    cos, sin = _basis(n, tuple(float(f) for f in freqs), rate)
    re = x @ cos.T
    im = x @ sin.T
    result: FloatArray = (re * re + im * im) * (2.0 / (n * n))
    return result


def goertzel_power(samples: npt.ArrayLike, freq: float, rate: int = 8000) -> float:
    """Power of one frequency in ``samples``: a sine of amplitude A reads A**2 / 2."""
    return float(goertzel_powers(samples, (freq,), rate)[..., 0])
