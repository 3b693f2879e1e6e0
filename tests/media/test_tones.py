"""Goertzel power and tone generation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from appliance.media.tones import (
    dbm0,
    goertzel_power,
    goertzel_powers,
    mean_square,
    silence,
    tone,
    white_noise,
)


def goertzel_recurrence(samples: np.ndarray, freq: float, rate: int) -> float:
    """The textbook Goertzel filter, one sample at a time."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples.astype(float):
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


@pytest.mark.parametrize("freq", [440.0, 697.0, 1000.0, 1633.0, 3100.0])
def test_closed_form_equals_recurrence(freq: float) -> None:
    x = white_noise(0.05, amplitude=3000, seed=4) + tone(freq, 0.05, amplitude=2000)
    n = len(x)
    expected = goertzel_recurrence(x, freq, 8000) * 2 / (n * n)
    assert goertzel_power(x, freq) == pytest.approx(expected, rel=1e-9)


def test_power_scale_is_mean_square_of_the_sine() -> None:
    x = tone(1000, 1.0, amplitude=10000)
    assert goertzel_power(x, 1000) == pytest.approx(10000**2 / 2, rel=1e-3)
    assert mean_square(x) == pytest.approx(10000**2 / 2, rel=1e-3)
    assert goertzel_power(x, 1100) < 1e-3 * goertzel_power(x, 1000)


def test_batched_blocks() -> None:
    x = tone((697, 1209), 0.1025, amplitude=3000).reshape(4, -1)  # 4 x 205 samples
    p = goertzel_powers(x, (697, 1209, 941))
    assert p.shape == (4, 3)
    assert np.all(p[:, :2] > 3e6) and np.all(p[:, 2] < 1e5)
    assert goertzel_powers(np.zeros((2, 0)), (1.0,)).shape == (2, 1)


def test_tone_helpers() -> None:
    assert tone(440, 0.5).dtype == np.int16 and len(tone(440, 0.5)) == 4000
    assert len(tone(440, 0.5, rate=16000)) == 8000
    assert np.all(silence(0.1) == 0) and len(silence(0.1)) == 800
    assert np.max(np.abs(tone(100, 0.1, amplitude=40000))) == 32767  # clipped
    assert mean_square([]) == 0.0
    n = white_noise(1.0, amplitude=1000, seed=1)
    assert math.sqrt(mean_square(n)) == pytest.approx(1000, rel=0.05)
    assert np.array_equal(n, white_noise(1.0, amplitude=1000, seed=1))


def test_dbm0() -> None:
    full = tone(1000, 1.0, amplitude=32767)
    assert dbm0(mean_square(full)) == pytest.approx(3.14, abs=0.05)
    assert dbm0(0.0) == float("-inf")
