"""Digit collection (R-4.4) and deep-menu shortcuts (R-4.6): appliance/ivr/digits.py.

Every test drives time by hand (``Clock``); nothing sleeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from appliance.ivr.digits import (
    KEYS,
    Attempts,
    Collected,
    Collector,
    CollectorError,
    CollectSpec,
    Invalid,
    KeyPress,
    NoInput,
    Outcome,
    RetryPolicy,
    ShortcutMatcher,
    State,
)
from tests.test_purity import check_source

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Clock:
    """A fake monotonic clock."""

    now: float = 100.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Driver:
    """A collector, its clock, and every outcome it handed out (to check there is one)."""

    spec: CollectSpec
    clock: Clock = field(default_factory=Clock)
    outcomes: list[Outcome] = field(default_factory=list)
    collector: Collector = field(init=False)

    def __post_init__(self) -> None:
        self.collector = Collector(self.spec, self.clock.now)

    def _note(self, outcome: Outcome | None) -> Outcome | None:
        if outcome is not None:
            self.outcomes.append(outcome)
        return outcome

    def start(self) -> None:
        self.collector.start(self.clock.now)

    def keys(self, keys: str, gap: float = 0.5) -> Outcome | None:
        """Press ``keys`` ``gap`` seconds apart (the first one ``gap`` from now)."""
        last = None
        for key in keys:
            self.clock.advance(gap)
            got = self._note(self.collector.digit(key, self.clock.now))
            last = got if got is not None else last
        return last

    def wait(self, seconds: float) -> Outcome | None:
        return self._note(self.collector.tick(self.clock.advance(seconds)))

    def run_out(self) -> Outcome | None:
        """Jump to the deadline exactly and tick."""
        deadline = self.collector.next_deadline()
        assert deadline is not None
        self.clock.now = deadline
        return self._note(self.collector.tick(deadline))


def state(c: Collector) -> State:
    """The state, read through a call (mypy would keep a narrowed attribute)."""
    return c.state


def started(spec: CollectSpec) -> Driver:
    d = Driver(spec)
    d.start()
    return d


SINGLE = CollectSpec(mode="single")
FIXED4 = CollectSpec(mode="fixed", length=4)
VAR = CollectSpec(mode="variable", min_length=3, max_length=6)


# -- purity ---------------------------------------------------------------------------


def test_module_is_pure() -> None:
    path = REPO / "appliance" / "ivr" / "digits.py"
    assert check_source(path.read_text(encoding="utf-8"), "appliance.ivr.digits") == []


# -- CollectSpec validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"mode": "multi"}, "mode"),
        ({"mode": "fixed"}, "length"),
        ({"mode": "fixed", "length": 0}, "length"),
        ({"mode": "variable", "length": 4}, "length"),
        ({"mode": "single", "length": 1}, "length"),
        ({"mode": "variable", "min_length": 0}, "min_length"),
        ({"mode": "variable", "min_length": 5, "max_length": 4}, "max_length"),
        ({"mode": "variable", "terminator": "x"}, "terminator"),
        ({"mode": "variable", "terminator": "##"}, "terminator"),
        ({"mode": "variable", "terminator": ""}, "terminator"),
        ({"mode": "variable", "clear_key": "e"}, "clear_key"),
        ({"mode": "variable", "terminator": "*"}, "clear_key"),
        ({"mode": "variable", "first_digit_timeout": 0}, "first_digit_timeout"),
        ({"mode": "variable", "first_digit_timeout": math.inf}, "first_digit_timeout"),
        ({"mode": "variable", "first_digit_timeout": math.nan}, "first_digit_timeout"),
        ({"mode": "variable", "inter_digit_timeout": -1.0}, "inter_digit_timeout"),
        ({"mode": "fixed", "length": 2, "valid": frozenset("12")}, "valid"),
        ({"mode": "single", "valid": frozenset()}, "valid"),
        ({"mode": "single", "valid": frozenset({"1", "x"})}, "valid"),
        ({"mode": "single", "valid": frozenset({"1", "*"})}, "valid"),
        ({"mode": "single", "valid": frozenset({"1", "#"})}, "valid"),
    ],
)
def test_spec_validation_names_the_field(kwargs: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field_name}:"):
        CollectSpec(**kwargs)


def test_spec_is_frozen() -> None:
    with pytest.raises(AttributeError):
        SINGLE.mode = "fixed"  # type: ignore[misc]


def test_star_and_hash_can_be_choices_when_not_special() -> None:
    spec = CollectSpec(mode="single", valid=frozenset("12*#"), clear_key=None, terminator=None)
    for key in "*#":
        d = started(spec)
        assert d.keys(key) == Collected(key, "single")


# -- single -----------------------------------------------------------------------------


def test_single_key_is_the_answer_at_once() -> None:
    d = started(SINGLE)
    assert state(d.collector) is State.WAITING
    assert d.keys("7") == Collected("7", "single")
    assert state(d.collector) is State.DONE
    assert d.collector.next_deadline() is None
    assert d.collector.outcome == Collected("7", "single")


def test_single_key_not_in_valid_is_invalid() -> None:
    d = started(CollectSpec(mode="single", valid=frozenset("123")))
    assert d.keys("5") == Invalid("5", "not a valid choice")


def test_single_star_and_hash_are_ordinary_keys_checked_against_valid() -> None:
    spec = CollectSpec(mode="single", valid=frozenset("123"), clear_key=None, terminator=None)
    assert started(spec).keys("*") == Invalid("*", "not a valid choice")
    assert started(spec).keys("#") == Invalid("#", "not a valid choice")
    assert started(CollectSpec(mode="single", clear_key=None)).keys("*") == Collected("*", "single")


def test_single_clear_key_restarts_the_first_digit_timer() -> None:
    d = started(SINGLE)
    assert d.collector.next_deadline() == 105.0
    assert d.keys("*", gap=4.0) is None
    assert state(d.collector) is State.WAITING
    assert d.collector.next_deadline() == 109.0
    assert d.wait(4.9) is None
    assert d.keys("2", gap=0.05) == Collected("2", "single")


def test_single_terminator_on_empty_input() -> None:
    assert started(SINGLE).keys("#") == Invalid("", "empty")
    spec = CollectSpec(mode="single", allow_empty=True)
    assert started(spec).keys("#") == Collected("", "terminator")


def test_first_digit_timeout_is_no_input_exactly_at_the_deadline() -> None:
    d = started(SINGLE)
    assert d.collector.tick(104.999999) is None
    assert d.collector.tick(105.0) == NoInput()
    assert d.collector.tick(200.0) is None  # one outcome only
    assert d.collector.outcome == NoInput()


def test_allow_empty_does_not_turn_a_timeout_into_input() -> None:
    d = started(CollectSpec(mode="variable", allow_empty=True))
    assert d.run_out() == NoInput()


# -- fixed ------------------------------------------------------------------------------


def test_fixed_completes_on_the_last_digit_without_waiting() -> None:
    d = started(FIXED4)
    assert d.keys("123") is None
    assert d.collector.buffer == "123"
    assert d.keys("4") == Collected("1234", "length")
    assert d.collector.next_deadline() is None


def test_fixed_terminator_before_length_is_too_short() -> None:
    d = started(FIXED4)
    assert d.keys("12#") == Invalid("12", "too short")


def test_fixed_terminator_on_empty() -> None:
    assert started(FIXED4).keys("#") == Invalid("", "empty")
    spec = CollectSpec(mode="fixed", length=4, allow_empty=True)
    assert started(spec).keys("#") == Collected("", "terminator")


def test_fixed_inter_digit_timer_restarts_on_each_key_and_ends_incomplete() -> None:
    d = started(FIXED4)
    d.keys("1", gap=1.0)
    assert d.collector.next_deadline() == 104.0
    d.keys("2", gap=2.9)
    assert d.collector.next_deadline() == pytest.approx(106.9)
    assert d.collector.tick(106.8) is None
    assert d.run_out() == Invalid("12", "incomplete")


def test_fixed_hash_is_a_digit_without_terminator() -> None:
    d = started(CollectSpec(mode="fixed", length=3, terminator=None))
    assert d.keys("1#2") == Collected("1#2", "length")


# -- variable ---------------------------------------------------------------------------


def test_variable_terminator_ends_and_is_not_in_the_value() -> None:
    d = started(VAR)
    assert d.keys("1234#") == Collected("1234", "terminator")


def test_variable_max_length_ends() -> None:
    d = started(VAR)
    assert d.keys("12345") is None
    assert d.keys("6") == Collected("123456", "length")


def test_variable_timeout_ends_with_what_was_typed() -> None:
    d = started(VAR)
    d.keys("123")
    assert d.collector.tick(d.clock.now + 2.999) is None
    assert d.run_out() == Collected("123", "timeout")


def test_variable_timeout_below_min_length_is_invalid() -> None:
    d = started(VAR)
    d.keys("12")
    assert d.run_out() == Invalid("12", "too short")


def test_variable_terminator_below_min_length_is_invalid() -> None:
    assert started(VAR).keys("12#") == Invalid("12", "too short")
    assert started(VAR).keys("#") == Invalid("", "empty")


def test_variable_custom_terminator() -> None:
    spec = CollectSpec(mode="variable", terminator="*", clear_key=None)
    assert started(spec).keys("12#4*") == Collected("12#4", "terminator")


def test_variable_without_terminator_ends_by_timeout_only() -> None:
    spec = CollectSpec(mode="variable", terminator=None)
    d = started(spec)
    assert d.keys("12#") is None
    assert d.run_out() == Collected("12#", "timeout")


def test_variable_letters_are_ordinary_keys() -> None:
    assert started(VAR).keys("1A2D#") == Collected("1A2D", "terminator")


# -- clear key --------------------------------------------------------------------------


def test_clear_mid_entry_then_completion() -> None:
    d = started(VAR)
    assert d.keys("12") is None
    assert d.keys("*") is None
    assert d.collector.buffer == ""
    assert state(d.collector) is State.WAITING
    assert d.collector.next_deadline() == d.clock.now + 5.0  # the first-digit timer again
    assert d.keys("345#") == Collected("345", "terminator")


def test_clear_then_silence_is_no_input() -> None:
    d = started(FIXED4)
    d.keys("12*")
    assert d.collector.tick(d.clock.now + 4.99) is None
    assert d.run_out() == NoInput()


def test_clear_then_fixed_completion() -> None:
    assert started(FIXED4).keys("98*1234") == Collected("1234", "length")


def test_clear_disabled_makes_star_a_digit() -> None:
    spec = CollectSpec(mode="variable", clear_key=None)
    assert started(spec).keys("1*2#") == Collected("1*2", "terminator")


# -- prompts and type-ahead -------------------------------------------------------------


def test_keys_during_a_prompt_are_buffered_without_timers() -> None:
    d = Driver(VAR)
    d.collector.prompt_started(d.clock.now)
    assert state(d.collector) is State.PROMPTING
    assert d.keys("12", gap=10.0) is None  # long gaps: no timer runs during the prompt
    assert d.collector.next_deadline() is None
    assert d.collector.barged_in
    d.clock.advance(1.0)
    d.collector.prompt_finished(d.clock.now)
    assert state(d.collector) is State.COLLECTING
    assert d.collector.next_deadline() == d.clock.now + 3.0  # inter-digit: input has begun
    assert d.keys("3#") == Collected("123", "terminator")


def test_typeahead_completes_during_the_prompt() -> None:
    d = Driver(CollectSpec(mode="single", valid=frozenset("12")))
    d.collector.prompt_started(d.clock.now)
    assert d.keys("2") == Collected("2", "single")
    assert d.collector.barged_in
    d.collector.prompt_finished(d.clock.now)  # the interpreter stopped the prompt
    assert d.collector.next_deadline() is None
    assert d.outcomes == [Collected("2", "single")]


def test_clear_during_the_prompt() -> None:
    d = Driver(FIXED4)
    d.collector.prompt_started(d.clock.now)
    d.keys("55*12")
    d.start()
    assert d.collector.buffer == "12"
    assert d.keys("34") == Collected("1234", "length")


def test_no_prompt_start_with_an_empty_buffer_waits_for_the_first_digit() -> None:
    d = Driver(VAR)
    assert state(d.collector) is State.READY
    assert d.collector.next_deadline() is None
    d.start()
    assert state(d.collector) is State.WAITING
    assert d.collector.next_deadline() == 105.0
    assert not d.collector.barged_in


def test_without_barge_in_keys_during_the_prompt_are_dropped() -> None:
    d = Driver(CollectSpec(mode="variable", barge_in=False))
    d.collector.prompt_started(d.clock.now)
    assert d.keys("12#") is None
    assert d.collector.discarded == ["1", "2", "#"]
    assert not d.collector.barged_in
    d.start()
    assert d.collector.buffer == ""
    assert d.keys("34#") == Collected("34", "terminator")


def test_leftover_keys_feed_the_next_collector() -> None:
    """A caller who knows the menus types "3", "2", "1234#" while the first prompt plays."""
    clock = Clock()
    menu = CollectSpec(mode="single", valid=frozenset("123"))
    first = Collector(menu, clock.now)
    first.prompt_started(clock.now)
    results = [first.digit(k, clock.advance(0.2)) for k in "321234#"]
    assert results[0] == Collected("3", "single")
    assert results[1:] == [None] * 6
    assert first.leftover == list("21234#")

    second = Collector(menu, clock.now, typeahead=first.leftover)
    assert second.outcome == Collected("2", "single")
    assert second.leftover == list("1234#")

    third = Collector(VAR, clock.now, typeahead=second.leftover)
    assert third.outcome == Collected("1234", "terminator")
    assert third.leftover == []
    third.start(clock.now)  # harmless after the outcome


def test_typeahead_that_does_not_complete_waits_for_more() -> None:
    c = Collector(VAR, 10.0, typeahead="12")
    assert c.outcome is None
    assert c.buffer == "12"
    c.start(11.0)
    assert c.next_deadline() == 14.0
    assert c.tick(14.0) == Invalid("12", "too short")


def test_keys_after_the_outcome_are_leftover() -> None:
    d = started(FIXED4)
    assert d.keys("123456") == Collected("1234", "length")
    assert d.collector.leftover == ["5", "6"]
    assert d.keys("#*") is None
    assert d.collector.leftover == ["5", "6", "#", "*"]
    assert d.outcomes == [Collected("1234", "length")]


def test_a_key_at_the_deadline_comes_too_late_even_without_a_tick() -> None:
    d = started(VAR)
    d.keys("123")
    deadline = d.collector.next_deadline()
    assert deadline is not None
    assert d.collector.digit("4", deadline) == Collected("123", "timeout")
    assert d.collector.leftover == ["4"]


def test_a_key_just_before_the_deadline_counts() -> None:
    d = started(VAR)
    d.keys("123")
    deadline = d.collector.next_deadline()
    assert deadline is not None
    assert d.collector.digit("4", deadline - 1e-6) is None
    assert d.collector.buffer == "1234"


# -- caller mistakes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "call", "state", "stimulus"),
    [
        ("start", "start", "waiting", "start"),
        ("start 1", "start", "collecting", "start"),
        ("start", "prompt_started", "waiting", "prompt started"),
        ("prompt_started", "prompt_started", "prompting", "prompt started"),
        ("start 1", "prompt_started", "collecting", "prompt started"),
    ],
)
def test_unknown_state_and_input_raise_naming_both(
    setup: str, call: str, state: str, stimulus: str
) -> None:
    c = Collector(VAR, 0.0)
    name, *keys = setup.split()
    getattr(c, name)(0.0)
    for k in keys:
        c.digit(k, 0.1)
    with pytest.raises(CollectorError) as info:
        getattr(c, call)(0.2)
    assert repr(state) in str(info.value)
    assert repr(stimulus) in str(info.value)


def test_prompt_after_the_outcome_is_a_mistake() -> None:
    c = Collector(SINGLE, 0.0, typeahead="5")
    with pytest.raises(CollectorError, match="'done'"):
        c.prompt_started(0.0)


@pytest.mark.parametrize("key", ["", "12", "x", "a", "!", " "])
def test_a_non_key_raises(key: str) -> None:
    with pytest.raises(CollectorError, match="not a key"):
        started(VAR).collector.digit(key, 100.0)


# -- retries ----------------------------------------------------------------------------


def test_retries_share_one_budget_by_default() -> None:
    a = Attempts(RetryPolicy(max_tries=3))
    assert a.record(NoInput()) == "retry"
    assert a.record(Invalid("9", "not a valid choice")) == "retry"
    assert a.record(NoInput()) == "exhausted"
    assert (a.no_input, a.invalid, a.tries) == (2, 1, 3)
    with pytest.raises(CollectorError):
        a.record(NoInput())


def test_retries_counted_separately() -> None:
    a = Attempts(RetryPolicy(max_tries=2, separate=True))
    assert a.record(NoInput()) == "retry"
    assert a.record(Invalid("", "empty")) == "retry"
    assert a.record(Invalid("", "empty")) == "exhausted"


def test_collected_settles_the_question() -> None:
    a = Attempts(RetryPolicy(max_tries=1))
    assert a.record(Collected("1", "single")) == "collected"
    with pytest.raises(CollectorError):
        a.record(Collected("1", "single"))
    assert Attempts(RetryPolicy(max_tries=1)).record(NoInput()) == "exhausted"


def test_retry_policy_validation() -> None:
    with pytest.raises(ValueError, match=r"^max_tries:"):
        RetryPolicy(max_tries=0)


# -- shortcuts --------------------------------------------------------------------------

SHORTCUTS = {"3*2*1": "billing", "99": "operator", "1": "sales", "12": "sales-eu"}


def test_shortcut_unique_match_resolves_at_once() -> None:
    m = ShortcutMatcher(SHORTCUTS)
    assert [m.feed(k, 1.0 + i) for i, k in enumerate("3*2*")] == ["pending"] * 4
    assert m.held == "3*2*"
    assert m.feed("1", 5.0) == "billing"
    assert not m.pending
    assert m.take_released() == []
    assert m.next_deadline() is None


def test_shortcut_no_match_releases_the_keys_with_their_times() -> None:
    m = ShortcutMatcher(SHORTCUTS)
    assert m.feed("9", 1.0) == "pending"
    assert m.feed("8", 1.5) is None
    assert m.take_released() == [KeyPress("9", 1.0), KeyPress("8", 1.5)]
    assert m.take_released() == []


def test_shortcut_key_that_starts_nothing_is_released_at_once() -> None:
    m = ShortcutMatcher(SHORTCUTS)
    assert m.feed("5", 1.0) is None
    assert m.take_released() == [KeyPress("5", 1.0)]


def test_shortcut_incomplete_prefix_times_out_to_ordinary_input() -> None:
    m = ShortcutMatcher(SHORTCUTS, inter_digit_timeout=3.0)
    m.feed("3", 1.0)
    m.feed("*", 2.0)
    assert m.next_deadline() == 5.0
    assert m.tick(4.999) == "pending"
    assert m.tick(5.0) is None
    assert [p.key for p in m.take_released()] == ["3", "*"]


def test_shortcut_complete_and_prefix_waits_for_the_timeout() -> None:
    m = ShortcutMatcher(SHORTCUTS, inter_digit_timeout=3.0)
    assert m.feed("1", 1.0) == "pending"  # "1" is complete, but "12" is longer
    assert m.tick(3.99) == "pending"
    assert m.tick(4.0) == "sales"
    assert m.take_released() == []


def test_shortcut_longest_match_wins() -> None:
    m = ShortcutMatcher(SHORTCUTS)
    m.feed("1", 1.0)
    assert m.feed("2", 2.0) == "sales-eu"


def test_shortcut_complete_then_a_key_nothing_continues_with() -> None:
    m = ShortcutMatcher(SHORTCUTS)
    m.feed("1", 1.0)
    assert m.feed("5", 2.0) == "sales"
    assert m.take_released() == [KeyPress("5", 2.0)]  # type-ahead for "sales"


def test_shortcut_key_at_the_deadline_comes_after_the_resolution() -> None:
    m = ShortcutMatcher(SHORTCUTS, inter_digit_timeout=3.0)
    m.feed("1", 1.0)
    assert m.feed("2", 4.0) == "sales"  # the wait for "12" ended at 4.0
    assert m.take_released() == [KeyPress("2", 4.0)]


def test_shortcut_after_a_result_keys_pass_through_until_reset() -> None:
    m = ShortcutMatcher(SHORTCUTS)
    assert m.feed("5", 1.0) is None
    assert m.feed("9", 2.0) is None  # not matched: entry at this node is ordinary now
    assert m.feed("9", 3.0) is None
    assert [p.key for p in m.take_released()] == ["5", "9", "9"]
    m.reset()
    m.feed("9", 4.0)
    assert m.feed("9", 5.0) == "operator"


def test_shortcut_reset_releases_held_keys() -> None:
    m = ShortcutMatcher(SHORTCUTS)
    m.feed("9", 1.0)
    m.reset()
    assert m.take_released() == [KeyPress("9", 1.0)]
    assert m.next_deadline() is None


def test_shortcut_without_now_waits_for_expire() -> None:
    m = ShortcutMatcher(SHORTCUTS)
    assert m.feed("1") == "pending"
    assert m.next_deadline() is None
    assert m.tick(1e9) == "pending"
    assert m.expire() == "sales"
    assert m.expire() is None
    m.reset()
    m.feed("3")
    assert m.expire() is None
    assert m.take_released() == [KeyPress("3", None)]


@pytest.mark.parametrize(
    ("shortcuts", "timeout"),
    [({"": "x"}, 3.0), ({"1x": "x"}, 3.0), ({"12": ""}, 3.0), ({"1": "x"}, 0.0)],
)
def test_shortcut_validation(shortcuts: dict[str, str], timeout: float) -> None:
    with pytest.raises(ValueError):
        ShortcutMatcher(shortcuts, inter_digit_timeout=timeout)


def test_shortcut_in_front_of_a_menu_collector() -> None:
    """Menu choice "3" is also the start of "3*2*1": the choice waits out the shortcut."""
    menu = CollectSpec(mode="single", valid=frozenset("123"), first_digit_timeout=5.0)

    def run(presses: list[tuple[str, float]], end: float) -> str | Outcome | None:
        matcher = ShortcutMatcher(SHORTCUTS, inter_digit_timeout=3.0)
        collector = Collector(menu, 0.0)
        collector.start(0.0)
        result: str | Outcome | None = None
        for key, at in [*presses, ("", end)]:
            got = matcher.tick(at) if not key else matcher.feed(key, at)
            if got not in (None, "pending"):
                return got
            for press in matcher.take_released():
                assert press.at is not None
                result = collector.digit(press.key, press.at) or result
            if not matcher.pending:  # only tick the collector when nothing is held
                result = collector.tick(at) or result
        return result

    assert run([("3", 1.0), ("*", 1.5), ("2", 2.0), ("*", 2.5), ("1", 3.0)], 9.0) == "billing"
    # "3" alone: released at 4.0, counted as pressed at 1.0, before the first-digit timeout
    assert run([("3", 4.0)], 7.0) == Collected("3", "single")
    assert run([("3", 1.0), ("5", 2.0)], 9.0) == Collected("3", "single")
    assert run([("2", 1.0)], 9.0) == Collected("2", "single")
    assert run([], 5.0) == NoInput()


# -- properties -------------------------------------------------------------------------


@st.composite
def specs(draw: st.DrawFn) -> CollectSpec:
    mode = draw(st.sampled_from(["single", "fixed", "variable"]))
    terminator = draw(st.sampled_from(["#", "*", "0", None]))
    clear_key = draw(st.sampled_from(["*", "#", "A", None]).filter(lambda k: k != terminator))
    kwargs: dict[str, Any] = {
        "mode": mode,
        "terminator": terminator,
        "clear_key": clear_key,
        "first_digit_timeout": draw(st.sampled_from([0.5, 1.0, 5.0])),
        "inter_digit_timeout": draw(st.sampled_from([0.5, 1.0, 3.0])),
        "allow_empty": draw(st.booleans()),
        "barge_in": draw(st.booleans()),
    }
    if mode == "fixed":
        kwargs["length"] = draw(st.integers(1, 5))
    if mode == "variable":
        kwargs["min_length"] = draw(st.integers(1, 4))
        kwargs["max_length"] = draw(st.integers(kwargs["min_length"], 8))
    if mode == "single" and draw(st.booleans()):
        choices = [k for k in KEYS if k not in (terminator, clear_key)]
        kwargs["valid"] = frozenset(draw(st.lists(st.sampled_from(choices), min_size=1)))
    return CollectSpec(**kwargs)


# gaps include the timeouts themselves, to land exactly on deadlines
GAPS = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 3.0, 5.0]), st.floats(0.0, 7.0))
EVENTS = st.lists(
    st.tuples(st.sampled_from(KEYS), GAPS, st.booleans()),  # key, gap before it, tick first
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(
    spec=specs(),
    events=EVENTS,
    prompt=st.booleans(),
    start_at=st.integers(0, 40),
    typeahead=st.text(alphabet=KEYS, max_size=4),
)
def test_any_key_sequence_ends_in_exactly_one_outcome(
    spec: CollectSpec,
    events: list[tuple[str, float, bool]],
    prompt: bool,
    start_at: int,
    typeahead: str,
) -> None:
    now = 0.0
    c = Collector(spec, now, typeahead=typeahead)
    outcomes: list[Outcome] = [c.outcome] if c.outcome is not None else []
    keys_after: list[str] = list(c.leftover)
    if prompt and c.outcome is None:
        c.prompt_started(now)
    started_ = False
    for i, (key, gap, tick_first) in enumerate(events):
        if i == start_at:
            c.start(now)
            started_ = True
        now += gap
        if tick_first and (got := c.tick(now)) is not None:
            outcomes.append(got)
        deadline = c.next_deadline()
        late = c.outcome is not None or (deadline is not None and now >= deadline)
        got = c.digit(key, now)
        if got is not None:
            outcomes.append(got)
        if late:
            keys_after.append(key)
        elif c.outcome is not None:
            assert got is not None  # this key ended entry
    if not started_:
        c.start(now)
    if c.outcome is None:
        deadline = c.next_deadline()
        assert deadline is not None and math.isfinite(deadline)
        assert deadline > now
        got = c.tick(deadline)
        assert got is not None
        outcomes.append(got)
    assert len(outcomes) == 1
    assert c.outcome == outcomes[0]
    assert state(c) is State.DONE
    assert c.next_deadline() is None
    assert c.leftover == keys_after
    outcome = outcomes[0]
    event(f"{type(outcome).__name__} {getattr(outcome, 'ended_by', '')}")
    event(f"leftover: {bool(keys_after)}")
    if isinstance(outcome, Collected):
        if spec.terminator is not None:
            assert spec.terminator not in outcome.value
        if spec.clear_key is not None:
            assert spec.clear_key not in outcome.value
        if outcome.value:
            if spec.mode == "fixed":
                assert len(outcome.value) == spec.length
            if spec.mode == "variable":
                assert spec.min_length <= len(outcome.value) <= spec.max_length
        else:
            assert spec.allow_empty and outcome.ended_by == "terminator"
        if spec.mode == "single" and spec.valid is not None and outcome.value:
            assert outcome.value in spec.valid


@settings(max_examples=300, deadline=None)
@given(
    shortcuts=st.dictionaries(
        st.text(alphabet="12*#", min_size=1, max_size=4),
        st.sampled_from(["a", "b", "c"]),
        max_size=6,
    ),
    presses=st.lists(
        st.tuples(st.sampled_from("12*#9"), st.sampled_from([0.0, 1.0, 3.0])), max_size=12
    ),
)
def test_shortcuts_never_lose_or_duplicate_a_key(
    shortcuts: dict[str, str], presses: list[tuple[str, float]]
) -> None:
    m = ShortcutMatcher(shortcuts, inter_digit_timeout=3.0)
    now = 0.0
    fed: list[str] = []
    matched: list[str] = []
    released: list[str] = []
    for key, gap in presses:
        now += gap
        fed.append(key)
        got = m.feed(key, now)
        if got not in (None, "pending"):
            assert got in shortcuts.values()
            matched.append(str(got))
        released += [p.key for p in m.take_released()]
    if m.pending:
        deadline = m.next_deadline()
        assert deadline is not None
        got = m.tick(deadline)
        assert got != "pending"
        if got is not None:
            matched.append(got)
        released += [p.key for p in m.take_released()]
    assert not m.pending and m.next_deadline() is None
    assert len(matched) <= 1
    if matched:
        # the matched sequence, then everything after it, is exactly what was fed
        seqs = [s for s in shortcuts if "".join(fed).startswith(s) and shortcuts[s] == matched[0]]
        assert any(s + "".join(released) == "".join(fed) for s in seqs)
    else:
        assert released == fed
