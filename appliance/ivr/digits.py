"""Digit collection for IVR flows (R-4.4) and deep-menu shortcuts (R-4.6), sans-I/O.

Theory of operation
===================

A :class:`Collector` gathers one answer from the caller's keypad according to a
:class:`CollectSpec`.  It never reads a clock: every entry point takes ``now`` (monotonic
seconds), ``next_deadline()`` says when ``tick`` must be called next, and the answer is an
:data:`Outcome` returned by the call (``digit`` or ``tick``) that produced it and kept in
``outcome``.  Exactly one outcome is produced per collector.

Modes
-----

* ``single``: the first key is the answer (``Collected(key, "single")``), or
  ``Invalid(key, "not a valid choice")`` when ``valid`` is given and the key is not in it.
* ``fixed``: the ``length``-th key ends entry at once (``ended_by="length"``, no waiting).
* ``variable``: the terminator ends entry (it is not part of the value), so does the
  ``max_length``-th key (``"length"``) and the inter-digit timeout (``"timeout"``); an
  answer shorter than ``min_length`` is ``Invalid(value, "too short")``.

Keys are the sixteen RFC 4733 events ``0-9 * # A-D``.  ``terminator`` (default ``#``) and
``clear_key`` (default ``*``) are special in every mode; set either to ``None`` to make that
key an ordinary one (in ``single`` mode it is then checked against ``valid`` like any other).

* The terminator always ends entry: on an empty buffer it gives ``Collected("",
  "terminator")`` when ``allow_empty`` else ``Invalid("", "empty")``; in ``fixed`` mode
  before ``length`` keys and in ``variable`` mode before ``min_length`` keys it gives
  ``Invalid(value, "too short")``.
* The clear key empties the buffer and restarts entry: the first-digit timer runs again.
* The first-digit timeout with an empty buffer gives ``NoInput()`` (``allow_empty`` only
  concerns an explicit terminator).  The inter-digit timeout gives, in ``fixed`` mode,
  ``Invalid(value, "incomplete")``; in ``variable`` mode ``Collected(value, "timeout")``
  or ``Invalid(value, "too short")``.

Prompts, type-ahead and timers
------------------------------

A collector starts ``READY``: no timer runs and keys are type-ahead, processed as input
(they can even complete it: a caller who knows the menu need not hear it).  Keys left over
by the previous collector are passed in as ``typeahead``.  ``prompt_started`` moves to
``PROMPTING``: keys still count (barge-in) unless ``spec.barge_in`` is false, in which case
they are dropped and listed in ``discarded``.  ``barged_in`` turns true when a key was
taken before the timers started; the interpreter then stops (or skips) the prompt.
``start`` (or its alias ``prompt_finished``) starts the timers: the collector goes to
``WAITING`` (empty buffer, first-digit timer) or ``COLLECTING`` (type-ahead in the
buffer, inter-digit timer).

Timers belong to states: every transition into or within ``WAITING`` re-arms the
first-digit timer from ``now`` and every one into or within ``COLLECTING`` the
inter-digit timer; other states have none.  A timer fires when ``now >= deadline``.
``digit`` first fires an overdue timer, so a key stamped at or after the deadline comes
too late whether or not ``tick`` ran in between: it becomes leftover.

Every key given after the outcome (including one that lost to an overdue timer) is
appended to ``leftover``, in order: type-ahead for the next collector.

The table
---------

``_TABLE`` maps ``(state, input)`` to ``(action, next state)``.  An action that produces
an outcome moves to ``DONE`` whatever the row says; ``_BY_BUFFER`` as next state means
``WAITING`` when the buffer is empty, else ``COLLECTING``.  A pair missing from the table
is a mistake of the caller (say ``start`` twice) and raises :class:`CollectorError`
naming both; caller keypad input never raises.  Summary (``KEY`` is an ordinary key,
``MUTED`` a key during a prompt without barge-in)::

    READY      --prompt_started-->   PROMPTING
    READY      --start-->            WAITING or COLLECTING (by buffer)
    PROMPTING  --start-->            WAITING or COLLECTING (by buffer)
    READY      --KEY/CLEAR-->        READY (buffer updated, no timer; or DONE)
    PROMPTING  --KEY/CLEAR-->        PROMPTING (buffer updated, no timer; or DONE)
    PROMPTING  --MUTED-->            PROMPTING (key discarded)
    WAITING    --KEY-->              COLLECTING (or DONE)
    WAITING    --CLEAR-->            WAITING (first-digit timer restarted)
    WAITING    --TIMEOUT-->          DONE (NoInput)
    COLLECTING --KEY-->              COLLECTING (inter-digit timer restarted; or DONE)
    COLLECTING --CLEAR-->            WAITING (first-digit timer restarted)
    COLLECTING --TIMEOUT-->          DONE
    (not DONE) --TERMINATOR-->       DONE
    DONE       --KEY/TERMINATOR/CLEAR--> DONE (leftover)
    DONE       --start-->            DONE (prompt_finished after a barge-in completed entry)

Retries
-------

A collector is one attempt.  Retries are the interpreter's: it plays the retry prompt and
makes a new collector; :class:`Attempts` counts outcomes against a :class:`RetryPolicy`
(no-input and invalid sharing one budget, or each having its own).

Shortcuts (R-4.6)
-----------------

A :class:`ShortcutMatcher` sits in front of a menu's collector and sees the keys first.
It holds keys while what was typed is a prefix of some shortcut ("pending"), and resolves:

* to the target node id when the typed keys are a complete shortcut and no longer
  shortcut starts with them (at once), or when they are a complete shortcut that is also
  the prefix of a longer one and the inter-digit timeout passes with no further key
  (longest match wins, ambiguity is settled by the timeout);
* to the target of the longest complete shortcut among the held keys when a key arrives
  that no shortcut continues with; the keys after that shortcut are released as
  type-ahead for the target;
* to ``None`` when no shortcut can match (a key no shortcut continues with, or the
  timeout on an incomplete prefix): every held key is released as ordinary input.

Released keys keep the time they were pressed (:class:`KeyPress`): the interpreter feeds
them to the collector with those times, and does not tick the collector while the
matcher is pending, so the collector ends up exactly where it would be had the keys
reached it directly.  ``now`` is optional in ``feed``: without it no timer runs
(``next_deadline`` is ``None``, released keys carry ``at=None``) and the caller ends the
wait itself with ``expire()``.  After a result the matcher passes keys straight through (released,
result ``None``) until ``reset()`` (on entering the next menu node).  A shortcut prefix
that is also a menu choice delays that choice by the inter-digit timeout; plans that
want instant menus start their shortcuts with a key that is not a choice.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

__all__ = [
    "KEYS",
    "Attempts",
    "CollectSpec",
    "Collected",
    "Collector",
    "CollectorError",
    "Input",
    "Invalid",
    "KeyPress",
    "NoInput",
    "Outcome",
    "RetryPolicy",
    "ShortcutMatcher",
    "State",
]

KEYS: Final = "0123456789*#ABCD"
"""The keys a caller can send: RFC 4733 events 0..15, in event order."""


class CollectorError(Exception):
    """Our own mistake: a call the state machine does not allow, or a key that is not one."""


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class CollectSpec:
    """What to collect and how long to wait (see the module docstring for the rules)."""

    mode: Literal["single", "fixed", "variable"]
    length: int | None = None
    min_length: int = 1
    max_length: int = 32
    terminator: str | None = "#"
    clear_key: str | None = "*"
    first_digit_timeout: float = 5.0
    inter_digit_timeout: float = 3.0
    valid: frozenset[str] | None = None
    allow_empty: bool = False
    barge_in: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("single", "fixed", "variable"):
            raise ValueError(f"mode: must be 'single', 'fixed' or 'variable', not {self.mode!r}")
        if self.mode == "fixed":
            if self.length is None or self.length < 1:
                raise ValueError(f"length: fixed mode needs a length >= 1, not {self.length!r}")
        elif self.length is not None:
            raise ValueError(f"length: only for mode 'fixed' (mode is {self.mode!r})")
        if self.min_length < 1:
            raise ValueError(f"min_length: must be >= 1, not {self.min_length}")
        if self.max_length < self.min_length:
            raise ValueError(
                f"max_length: {self.max_length} is less than min_length {self.min_length}"
            )
        for name in ("terminator", "clear_key"):
            key = getattr(self, name)
            if key is not None and not _is_key(key):
                raise ValueError(f"{name}: {key!r} is not one of the keys {KEYS}")
        if self.terminator is not None and self.terminator == self.clear_key:
            raise ValueError(f"clear_key: {self.clear_key!r} is also the terminator")
        for name in ("first_digit_timeout", "inter_digit_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a finite number of seconds > 0, not {value!r}")
        if self.valid is not None:
            if self.mode != "single":
                raise ValueError(f"valid: only for mode 'single' (mode is {self.mode!r})")
            if not self.valid:
                raise ValueError("valid: must not be empty (None accepts every key)")
            for key in sorted(self.valid):
                if not _is_key(key):
                    raise ValueError(f"valid: {key!r} is not one of the keys {KEYS}")
                if key == self.terminator:
                    raise ValueError(
                        f"valid: {key!r} is the terminator; set terminator=None to make it a choice"
                    )
                if key == self.clear_key:
                    raise ValueError(
                        f"valid: {key!r} is the clear_key; set clear_key=None to make it a choice"
                    )


def _is_key(key: object) -> bool:
    return isinstance(key, str) and len(key) == 1 and key in KEYS


# ----------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class Collected:
    """The caller's answer; ``value`` never holds the terminator or the clear key."""

    value: str
    ended_by: Literal["terminator", "length", "timeout", "single"]


@dataclass(frozen=True, slots=True)
class NoInput:
    """The first-digit timer ran out with nothing in the buffer."""


InvalidReason: TypeAlias = Literal["not a valid choice", "empty", "too short", "incomplete"]


@dataclass(frozen=True, slots=True)
class Invalid:
    """Input that does not answer the question; ``value`` is what was typed."""

    value: str
    reason: InvalidReason


Outcome: TypeAlias = Collected | NoInput | Invalid


@dataclass(frozen=True, slots=True)
class KeyPress:
    """A key and when it was pressed (monotonic seconds)."""

    key: str
    at: float | None  # None: the caller did not say (ShortcutMatcher.feed without now)


# ----------------------------------------------------------------------------- the table


class State(enum.Enum):
    READY = "ready"  # created; no timer; keys are type-ahead
    PROMPTING = "prompting"  # a prompt plays; keys barge in (or are dropped)
    WAITING = "waiting"  # timers on, buffer empty: first-digit timer
    COLLECTING = "collecting"  # timers on, buffer not empty: inter-digit timer
    DONE = "done"  # the outcome is known; keys are leftover


class Input(enum.Enum):
    PROMPT_STARTED = "prompt started"
    START = "start"  # start() / prompt_finished()
    KEY = "key"  # an ordinary key
    TERMINATOR = "terminator"
    CLEAR = "clear key"
    MUTED = "key during a prompt without barge-in"
    TIMEOUT = "timeout"


class _Action(enum.Enum):
    NOTHING = "nothing"
    APPEND = "append"
    TERMINATE = "terminate"
    CLEAR = "clear"
    DISCARD = "discard"
    FIRST_TIMEOUT = "first-digit timeout"
    INTER_TIMEOUT = "inter-digit timeout"
    LEFTOVER = "leftover"


class _ByBuffer(enum.Enum):
    BY_BUFFER = "waiting or collecting, by buffer"


_BY_BUFFER: Final = _ByBuffer.BY_BUFFER

_S = State
_X = Input
_A = _Action
_Row: TypeAlias = tuple[_Action, State | _ByBuffer]

_TABLE: Final[dict[tuple[State, Input], _Row]] = {
    (_S.READY, _X.PROMPT_STARTED): (_A.NOTHING, _S.PROMPTING),
    (_S.READY, _X.START): (_A.NOTHING, _BY_BUFFER),
    (_S.READY, _X.KEY): (_A.APPEND, _S.READY),
    (_S.READY, _X.TERMINATOR): (_A.TERMINATE, _S.DONE),
    (_S.READY, _X.CLEAR): (_A.CLEAR, _S.READY),
    (_S.PROMPTING, _X.START): (_A.NOTHING, _BY_BUFFER),
    (_S.PROMPTING, _X.KEY): (_A.APPEND, _S.PROMPTING),
    (_S.PROMPTING, _X.TERMINATOR): (_A.TERMINATE, _S.DONE),
    (_S.PROMPTING, _X.CLEAR): (_A.CLEAR, _S.PROMPTING),
    (_S.PROMPTING, _X.MUTED): (_A.DISCARD, _S.PROMPTING),
    (_S.WAITING, _X.KEY): (_A.APPEND, _S.COLLECTING),
    (_S.WAITING, _X.TERMINATOR): (_A.TERMINATE, _S.DONE),
    (_S.WAITING, _X.CLEAR): (_A.CLEAR, _S.WAITING),
    (_S.WAITING, _X.TIMEOUT): (_A.FIRST_TIMEOUT, _S.DONE),
    (_S.COLLECTING, _X.KEY): (_A.APPEND, _S.COLLECTING),
    (_S.COLLECTING, _X.TERMINATOR): (_A.TERMINATE, _S.DONE),
    (_S.COLLECTING, _X.CLEAR): (_A.CLEAR, _S.WAITING),
    (_S.COLLECTING, _X.TIMEOUT): (_A.INTER_TIMEOUT, _S.DONE),
    (_S.DONE, _X.START): (_A.NOTHING, _S.DONE),
    (_S.DONE, _X.KEY): (_A.LEFTOVER, _S.DONE),
    (_S.DONE, _X.TERMINATOR): (_A.LEFTOVER, _S.DONE),
    (_S.DONE, _X.CLEAR): (_A.LEFTOVER, _S.DONE),
}


# ----------------------------------------------------------------------------- collector


class Collector:
    """One attempt at collecting digits; see the module docstring."""

    def __init__(self, spec: CollectSpec, now: float, typeahead: Iterable[str] = ()) -> None:
        self.spec: Final = spec
        self.created_at: Final = now
        self._state = State.READY
        self._buffer = ""
        self._deadline: float | None = None
        self._outcome: Outcome | None = None
        self._leftover: list[str] = []
        self._discarded: list[str] = []
        self._barged_in = False
        self._actions: dict[_Action, Callable[[str], Outcome | None]] = {
            _A.NOTHING: self._nothing,
            _A.APPEND: self._append,
            _A.TERMINATE: self._terminate,
            _A.CLEAR: self._clear,
            _A.DISCARD: self._discard,
            _A.FIRST_TIMEOUT: self._first_timeout,
            _A.INTER_TIMEOUT: self._inter_timeout,
            _A.LEFTOVER: self._to_leftover,
        }
        for key in typeahead:
            self.digit(key, now)

    # -- what the caller reads

    @property
    def state(self) -> State:
        return self._state

    @property
    def buffer(self) -> str:
        """The keys that count so far (after the outcome: the last buffer)."""
        return self._buffer

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    @property
    def leftover(self) -> list[str]:
        """Keys given after the outcome, in order: type-ahead for the next collector."""
        return list(self._leftover)

    @property
    def discarded(self) -> list[str]:
        """Keys dropped because they came during a prompt without barge-in."""
        return list(self._discarded)

    @property
    def barged_in(self) -> bool:
        """A key was taken before the timers started: stop (or skip) the prompt."""
        return self._barged_in

    def next_deadline(self) -> float | None:
        return self._deadline

    # -- what the caller feeds

    def prompt_started(self, now: float) -> None:
        self._run(Input.PROMPT_STARTED, "", now)

    def start(self, now: float) -> None:
        """The prompt finished (or there is none): the timers start."""
        self._run(Input.START, "", now)

    def prompt_finished(self, now: float) -> None:
        """Alias of :meth:`start`."""
        self.start(now)

    def digit(self, key: str, now: float) -> Outcome | None:
        """Feed one key; returns the outcome if this call produced it.

        An overdue timer fires first (its outcome is returned, the key is leftover).
        """
        if not _is_key(key):
            raise CollectorError(f"not a key: {key!r} (keys are {KEYS})")
        fired = self.tick(now)
        got = self._run(self._classify(key), key, now)
        return fired if fired is not None else got

    def tick(self, now: float) -> Outcome | None:
        if self._deadline is not None and now >= self._deadline:
            return self._run(Input.TIMEOUT, "", now)
        return None

    # -- the machine

    def _classify(self, key: str) -> Input:
        if self._state is State.PROMPTING and not self.spec.barge_in:
            return Input.MUTED
        if key == self.spec.terminator:
            return Input.TERMINATOR
        if key == self.spec.clear_key:
            return Input.CLEAR
        return Input.KEY

    def _run(self, stimulus: Input, key: str, now: float) -> Outcome | None:
        row = _TABLE.get((self._state, stimulus))
        if row is None:
            raise CollectorError(
                f"digit collector: no transition for input {stimulus.value!r} "
                f"in state {self._state.value!r}"
            )
        action, next_state = row
        if self._state in (State.READY, State.PROMPTING) and action in (
            _A.APPEND,
            _A.TERMINATE,
            _A.CLEAR,
        ):
            self._barged_in = True
        outcome = self._actions[action](key)
        if outcome is not None:
            self._outcome = outcome
            next_state = State.DONE
        elif next_state is _BY_BUFFER:
            next_state = State.COLLECTING if self._buffer else State.WAITING
        assert isinstance(next_state, State)
        if next_state is State.DONE and self._outcome is None:  # pragma: no cover - table bug
            raise CollectorError(f"{action.value} in {self._state.value} gave no outcome")
        self._state = next_state
        if next_state is State.WAITING:
            self._deadline = now + self.spec.first_digit_timeout
        elif next_state is State.COLLECTING:
            self._deadline = now + self.spec.inter_digit_timeout
        else:
            self._deadline = None
        return outcome

    # -- actions: return the outcome when they produce it

    def _nothing(self, key: str) -> Outcome | None:
        return None

    def _append(self, key: str) -> Outcome | None:
        spec = self.spec
        if spec.mode == "single":
            self._buffer = key
            if spec.valid is not None and key not in spec.valid:
                return Invalid(key, "not a valid choice")
            return Collected(key, "single")
        self._buffer += key
        limit = spec.length if spec.mode == "fixed" else spec.max_length
        if len(self._buffer) == limit:
            return Collected(self._buffer, "length")
        return None

    def _terminate(self, key: str) -> Outcome:
        spec = self.spec
        value = self._buffer
        if not value:
            return Collected("", "terminator") if spec.allow_empty else Invalid("", "empty")
        # single mode never holds a key in the buffer without having ended
        needed = spec.length if spec.mode == "fixed" else spec.min_length
        assert needed is not None
        if len(value) < needed:
            return Invalid(value, "too short")
        return Collected(value, "terminator")

    def _clear(self, key: str) -> Outcome | None:
        self._buffer = ""
        return None

    def _discard(self, key: str) -> Outcome | None:
        self._discarded.append(key)
        return None

    def _first_timeout(self, key: str) -> Outcome:
        return NoInput()

    def _inter_timeout(self, key: str) -> Outcome:
        value = self._buffer
        if self.spec.mode == "fixed":
            return Invalid(value, "incomplete")
        if len(value) < self.spec.min_length:
            return Invalid(value, "too short")
        return Collected(value, "timeout")

    def _to_leftover(self, key: str) -> Outcome | None:
        self._leftover.append(key)
        return None


# ----------------------------------------------------------------------------- retries


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts a question gets.

    ``max_tries`` attempts in all when ``separate`` is false (no-input and invalid share
    the budget); with ``separate``, no-input and invalid outcomes each get ``max_tries``.
    """

    max_tries: int = 3
    separate: bool = False

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError(f"max_tries: must be >= 1, not {self.max_tries}")


class Attempts:
    """Counts the outcomes of successive collectors for one question.

    ``record`` answers ``"collected"`` (go on with the value), ``"retry"`` (play the
    no-input or invalid prompt and collect again) or ``"exhausted"`` (take the failure
    branch).  Recording after ``"collected"`` or ``"exhausted"`` raises.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy: Final = policy
        self.no_input = 0
        self.invalid = 0
        self._finished = False

    @property
    def tries(self) -> int:
        """Failed attempts so far."""
        return self.no_input + self.invalid

    def record(self, outcome: Outcome) -> Literal["collected", "retry", "exhausted"]:
        if self._finished:
            raise CollectorError("attempts: an outcome recorded after the question was settled")
        if isinstance(outcome, Collected):
            self._finished = True
            return "collected"
        if isinstance(outcome, NoInput):
            self.no_input += 1
            count = self.no_input
        else:
            self.invalid += 1
            count = self.invalid
        if not self.policy.separate:
            count = self.tries
        if count >= self.policy.max_tries:
            self._finished = True
            return "exhausted"
        return "retry"


# ----------------------------------------------------------------------------- shortcuts


class ShortcutMatcher:
    """Deep-menu shortcuts: key sequences that jump to a node (see the module docstring).

    ``feed`` and ``tick`` return the target node id, ``"pending"`` while the held keys may
    still become a shortcut, or ``None`` when they are not one.  After every call the
    interpreter drains ``take_released()``: after ``None`` those keys are ordinary input
    for this node's collector, after a target they are type-ahead for the target.
    """

    def __init__(self, shortcuts: Mapping[str, str], inter_digit_timeout: float = 3.0) -> None:
        for seq, target in shortcuts.items():
            if not seq or not all(_is_key(k) for k in seq):
                raise ValueError(f"shortcuts: {seq!r} is not a sequence of the keys {KEYS}")
            if not isinstance(target, str) or not target:
                raise ValueError(f"shortcuts: {seq!r} has no target node id")
        if not (math.isfinite(inter_digit_timeout) and inter_digit_timeout > 0):
            raise ValueError(
                f"inter_digit_timeout: must be a finite number of seconds > 0, "
                f"not {inter_digit_timeout!r}"
            )
        self.shortcuts: Final = dict(shortcuts)
        self.inter_digit_timeout: Final = inter_digit_timeout
        self._prefixes = {seq[:i] for seq in self.shortcuts for i in range(1, len(seq))}
        self._held: list[KeyPress] = []
        self._released: list[KeyPress] = []
        self._deadline: float | None = None
        self._active = True

    @property
    def pending(self) -> bool:
        return bool(self._held)

    @property
    def held(self) -> str:
        return "".join(p.key for p in self._held)

    def next_deadline(self) -> float | None:
        return self._deadline

    def reset(self) -> None:
        """Match again from the next key (entering a menu node).  Held keys are released."""
        self._released.extend(self._held)
        self._held.clear()
        self._deadline = None
        self._active = True

    def take_released(self) -> list[KeyPress]:
        out, self._released = self._released, []
        return out

    def feed(self, key: str, now: float | None = None) -> str | Literal["pending"] | None:
        """One key.  With ``now`` the matcher times the wait itself (``next_deadline``,
        ``tick``); without it no timer runs and the caller calls ``expire`` when its own
        inter-digit wait ends."""
        if not _is_key(key):
            raise CollectorError(f"not a key: {key!r} (keys are {KEYS})")
        fired = self.tick(now) if now is not None else None
        if fired is not None and fired != "pending":
            self._released.append(KeyPress(key, now))  # type-ahead for the target
            return fired
        if not self._active:
            self._released.append(KeyPress(key, now))
            return None
        self._held.append(KeyPress(key, now))
        typed = self.held
        if typed in self._prefixes:
            self._deadline = None if now is None else now + self.inter_digit_timeout
            return "pending"
        if typed in self.shortcuts:
            return self._resolve(len(typed))
        return self._resolve(self._longest_complete(typed[:-1]))

    def tick(self, now: float) -> str | Literal["pending"] | None:
        """Resolve the wait when its deadline has come (``now >= deadline``)."""
        if not self._held:
            return None
        if self._deadline is None or now < self._deadline:
            return "pending"
        return self.expire()

    def expire(self) -> str | None:
        """The inter-digit wait ended: the longest complete shortcut held wins, else None."""
        if not self._held:
            return None
        return self._resolve(self._longest_complete(self.held))

    def _longest_complete(self, typed: str) -> int:
        for n in range(len(typed), 0, -1):
            if typed[:n] in self.shortcuts:
                return n
        return 0

    def _resolve(self, matched: int) -> str | None:
        """End matching: the first ``matched`` held keys are a shortcut (0: none)."""
        target = self.shortcuts[self.held[:matched]] if matched else None
        self._released.extend(self._held[matched:])
        self._held.clear()
        self._deadline = None
        self._active = False
        return target
