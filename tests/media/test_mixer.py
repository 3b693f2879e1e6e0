"""Mixer: sum of others, clipping, gain/mute/deaf, whisper and barge."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.media.mixer import Mixer, MixerError


def const(v: int) -> np.ndarray:
    return np.full(160, v, dtype=np.int16)


def levels(out: dict[str, np.ndarray]) -> dict[str, int]:
    for frame in out.values():
        assert frame.dtype == np.int16 and frame.shape == (160,)
        assert np.all(frame == frame[0])
    return {k: int(v[0]) for k, v in out.items()}


def test_each_hears_the_others_not_itself() -> None:
    m = Mixer()
    for p in "abc":
        m.add(p)
    out = m.mix({"a": const(100), "b": const(20), "c": const(3)})
    assert levels(out) == {"a": 23, "b": 103, "c": 120}


def test_missing_frames_are_silence_and_two_party_is_a_swap() -> None:
    m = Mixer()
    m.add("a")
    m.add("b")
    assert levels(m.mix({"a": const(7)})) == {"a": 0, "b": 7}
    assert levels(m.mix({"a": None, "b": const(-5)})) == {"a": -5, "b": 0}


def test_clipping() -> None:
    m = Mixer()
    for p in "abc":
        m.add(p)
    out = m.mix({"a": const(30000), "b": const(30000), "c": const(-30000)})
    assert levels(out) == {"a": 0, "b": 0, "c": 32767}
    out = m.mix({"a": const(-30000), "b": const(-30000)})
    assert levels(out)["c"] == -32768


def test_gain_and_mute() -> None:
    m = Mixer()
    m.add("a", gain=0.5)
    m.add("b")
    m.add("sup", muted=True)
    out = m.mix({"a": const(1000), "b": const(10), "sup": const(999)})
    assert levels(out) == {"a": 10, "b": 500, "sup": 510}
    m.set_gain("b", 2.0)
    m.set_muted("sup", False)
    assert levels(m.mix({"a": const(1000), "b": const(10), "sup": const(1)})) == {
        "a": 21,
        "b": 501,
        "sup": 520,
    }
    with pytest.raises(MixerError):
        m.set_gain("b", -1)


def test_whisper_then_barge() -> None:
    m = Mixer()
    m.add("caller")
    m.add("agent")
    m.add("sup")
    m.whisper("sup", "agent")  # coaching: only the agent hears the supervisor
    out = m.mix({"caller": const(1), "agent": const(10), "sup": const(100)})
    assert levels(out) == {"caller": 10, "agent": 101, "sup": 11}
    m.barge("sup")
    out = m.mix({"caller": const(1), "agent": const(10), "sup": const(100)})
    assert levels(out) == {"caller": 110, "agent": 101, "sup": 11}


def test_deaf_source_and_listen_only_monitor() -> None:
    m = Mixer()
    m.add("a")
    m.add("b")
    m.add("moh", deaf=True, listeners=["a"])
    m.add("monitor", muted=True)
    out = m.mix({"a": const(1), "b": const(10), "moh": const(500), "monitor": const(7)})
    assert levels(out) == {"a": 510, "b": 1, "moh": 0, "monitor": 11}


def test_membership_errors_and_removal() -> None:
    m = Mixer()
    m.add("a")
    m.add("b")
    m.add("c", listeners=["a"])
    with pytest.raises(MixerError):
        m.add("a")
    with pytest.raises(MixerError):
        m.set_listeners("a", ["zz"])
    with pytest.raises(MixerError):
        m.mix({"zz": const(1)})
    with pytest.raises(MixerError):
        m.mix({"a": np.zeros(80, dtype=np.int16)})
    m.remove("a")
    assert "a" not in m and len(m) == 2 and m.participants == ("b", "c")
    assert m.participant("c").listeners == frozenset()
    with pytest.raises(MixerError):
        m.remove("a")


def test_listeners_never_include_self() -> None:
    m = Mixer()
    m.add("a")
    m.add("b")
    m.set_listeners("a", ["a", "b"])
    assert m.participant("a").listeners == frozenset({"b"})
    m.set_listeners("a", None)
    assert m.participant("a").listeners is None


def test_many_participants_fast_enough() -> None:
    m = Mixer()
    rng = np.random.default_rng(1)
    frames = {f"p{i}": rng.integers(-1000, 1000, 160).astype(np.int16) for i in range(20)}
    for pid in frames:
        m.add(pid)
    out = m.mix(frames)
    total = sum(f.astype(np.int32) for f in frames.values())
    for pid, frame in frames.items():
        assert np.array_equal(out[pid], np.clip(total - frame, -32768, 32767))
