"""The IVR flow interpreter: a pure state machine, one per call.

Theory of operation
-------------------
Inputs are key presses (``digit``), the end of a prompt (``prompt_done``) and the
clock (``tick``); every entry point takes ``now``. Outputs are commands drained with
``commands()`` (:class:`PlayPrompt`, :class:`StopPrompt`, :class:`TransferCall`,
:class:`HangupCall`) and a trace of :class:`Step` records (node entered, input,
variable changes, outcome) that monitoring stores and shows step by step (R-4.17).

The interpreter is always in one of these modes::

    idle --start--> [enter node]
    playing    a play/say prompt runs; keys typed with barge-in stop it and are kept
               as type-ahead for the next input node
    prompting  a menu/collect prompt runs; keys go to the node's collector (barge-in)
    collecting the prompt has ended; the collector's timers run
    action     a data action (http, sql, socket, file) runs; keys are kept as type-ahead
    done       transferred or hung up

Entering a node that needs no input (set, branch, transfer, hangup) runs it at once
and moves on; a chain of such nodes longer than ``MAX_STEPS`` without input is an
error (a loop in the flow), which ends the call.

Menus are single-key collections whose valid keys are the menu's options; collect
nodes follow ``CollectSpec`` (R-4.4). Both retry on no input and on invalid input,
playing the node's no-input/invalid prompt, and go to ``on_failure`` (or hang up)
when retries are exhausted. Keys typed ahead are consumed by the next input node, so
a caller who knows the menus can type ``3 2 1`` through three levels; configured
shortcuts (``3*2*1``, ``99``) jump straight to a node at any depth (R-4.6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance.ivr.digits import (
    Collected,
    Collector,
    CollectSpec,
    Invalid,
    NoInput,
    Outcome,
    ShortcutMatcher,
)
from appliance.ivr.expr import ExprError, evaluate
from appliance.ivr.flow import (
    Action,
    Branch,
    Collect,
    Flow,
    Hangup,
    Menu,
    Node,
    Play,
    PromptRef,
    Say,
    SetVars,
    Transfer,
)

MAX_STEPS = 100  # nodes entered in a row without waiting for the caller
SHORTCUT_WAIT = 2.0  # seconds a typed shortcut prefix waits for its next key


@dataclass(frozen=True)
class PlayPrompt:
    """Play these prompts one after the other; ``prompt_done`` when the last ends."""

    prompts: tuple[PromptRef, ...]
    language: str
    barge_in: bool


@dataclass(frozen=True)
class StopPrompt:
    pass


@dataclass(frozen=True)
class TransferCall:
    kind: str
    target: str
    data: Mapping[str, str]


@dataclass(frozen=True)
class HangupCall:
    reason: str


@dataclass(frozen=True)
class RunAction:
    """Run a data action; answer with ``action_done``. ``params`` holds the node's
    fixed fields and its evaluated expressions (nested where names are dotted)."""

    kind: str
    params: Mapping[str, Any]
    timeout: float


@dataclass(frozen=True)
class Step:
    """One line of the call's IVR trace."""

    at: float
    node: str
    event: str
    detail: tuple[tuple[str, str], ...] = ()


IvrCommand = PlayPrompt | StopPrompt | TransferCall | HangupCall | RunAction


class Interpreter:
    def __init__(self, flow: Flow, *, variables: Mapping[str, Any] | None = None,
                 language: str | None = None) -> None:
        self.flow = flow
        self.language = language or flow.language
        self.variables: dict[str, Any] = {**flow.variables, **(variables or {})}
        self.node_id = flow.start
        self.mode = "idle"
        self.collector: Collector | None = None
        self.tries = 0
        self.typeahead: list[str] = []
        self.trace: list[Step] = []
        self._commands: list[IvrCommand] = []
        self._shortcuts = ShortcutMatcher(flow.shortcuts, SHORTCUT_WAIT) \
            if flow.shortcuts else None
        self._pending_node: str | None = None  # where to go once the current prompt ends

    # ----------------------------------------------------------------- outputs

    def commands(self) -> list[IvrCommand]:
        out, self._commands = self._commands, []
        return out

    @property
    def finished(self) -> bool:
        return self.mode == "done"

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (
            self.collector.next_deadline() if self.collector and self.mode == "collecting"
            else None,
            self._shortcuts.next_deadline() if self._shortcuts is not None else None,
        ) if d is not None]
        return min(deadlines) if deadlines else None

    # ----------------------------------------------------------------- inputs

    def start(self, now: float) -> None:
        if self.mode != "idle":
            raise RuntimeError("interpreter already started")
        self._step(now, self.flow.start, "start", language=self.language)
        self._enter(self.flow.start, now)

    def digit(self, key: str, now: float) -> None:
        if self.mode in ("idle", "done"):
            return
        self._step(now, self.node_id, "key", key=key)
        if self._shortcuts is None:
            self._key(key, now)
            return
        self._matched(self._shortcuts.feed(key, now), now)

    def _matched(self, result: str | None, now: float) -> None:
        """Act on the shortcut matcher's answer for the keys it held."""
        assert self._shortcuts is not None
        released = [press.key for press in self._shortcuts.take_released()]
        if result == "pending":
            return
        if result is not None:
            self._step(now, self.node_id, "shortcut", to=result)
            self._stop_prompt_if_playing()
            self.typeahead = released  # keys typed after the shortcut
            self._enter(result, now)
            return
        self._shortcuts.reset()  # not a shortcut: the next key may start one
        for key in released:
            self._key(key, now)
            if self.mode == "done":
                return

    def action_done(self, ok: bool, value: Any, error: str | None, now: float) -> None:
        """The data action of the current node finished."""
        if self.mode != "action":
            return
        node = self.flow.nodes[self.node_id]
        assert isinstance(node, Action)
        self.variables[node.result] = value
        self.variables[f"{node.result}_error"] = error or ""
        self._step(now, self.node_id, "action_done", ok=ok, error=error or "",
                   value=_show(value)[:200])
        target = node.next if ok or node.on_error is None else node.on_error
        if not ok and node.on_error is None:
            self._finish(now, f"{node.kind} action failed at {self.node_id}: {error}")
        elif target is None:
            self._finish(now, "flow ended")
        else:
            self._enter(target, now)

    def prompt_done(self, now: float) -> None:
        if self.mode == "playing":
            target = self._pending_node
            self._pending_node = None
            if target is None:
                self._finish(now, "flow ended")
            else:
                self._enter(target, now)
        elif self.mode == "prompting":
            self.mode = "collecting"
            assert self.collector is not None
            self.collector.start(now)
            self._feed_typeahead(now)

    def tick(self, now: float) -> None:
        if self._shortcuts is not None and self._shortcuts.pending:
            result = self._shortcuts.tick(now)
            if result == "pending":
                return  # the collector waits while keys may still be a shortcut
            self._matched(result, now)
        if self.mode == "collecting" and self.collector is not None:
            deadline = self.collector.next_deadline()
            if deadline is not None and now >= deadline:
                outcome = self.collector.tick(now)
                if outcome is not None:
                    self._outcome(outcome, now)

    # ----------------------------------------------------------------- engine

    def _key(self, key: str, now: float) -> None:
        if self.mode == "action":
            self.typeahead.append(key)  # for the next input node
            return
        if self.mode == "playing":
            node = self.flow.nodes[self.node_id]
            if getattr(node, "barge_in", True):
                self.typeahead.append(key)
                self._commands.append(StopPrompt())
                self.prompt_done(now)
            return
        if self.mode in ("prompting", "collecting") and self.collector is not None:
            node = self.flow.nodes[self.node_id]
            if self.mode == "prompting":
                if not getattr(node, "barge_in", True):
                    return
                if self._separator(node, key, now):
                    return
                self._commands.append(StopPrompt())
                self.mode = "collecting"
                self.collector.start(now)
            self._collect_key(key, now)

    def _separator(self, node: Node, key: str, now: float) -> bool:
        """In a menu, ``*`` that is not one of its options separates menu choices typed
        ahead (``3*1*1``) and is skipped."""
        if isinstance(node, Menu) and key == "*" and "*" not in node.options:
            self._step(now, self.node_id, "separator")
            return True
        return False

    def _collect_key(self, key: str, now: float) -> None:
        assert self.collector is not None
        if self._separator(self.flow.nodes[self.node_id], key, now):
            return
        outcome = self.collector.digit(key, now)
        if outcome is not None:
            self._outcome(outcome, now)

    def _feed_typeahead(self, now: float) -> None:
        while self.typeahead and self.mode == "collecting" and self.collector is not None:
            self._collect_key(self.typeahead.pop(0), now)

    def _enter(self, node_id: str, now: float) -> None:
        if self._shortcuts is not None and not self._shortcuts.pending:
            self._shortcuts.reset()  # shortcuts match again from the next key
        for _ in range(MAX_STEPS):
            self.node_id = node_id
            node = self.flow.nodes[node_id]
            self._step(now, node_id, "enter", type=type(node).__name__.lower())
            nxt = self._run(node_id, node, now)
            if nxt is None:
                return
            node_id = nxt
        self._finish(now, f"more than {MAX_STEPS} steps without input (loop in the flow?)")

    def _run(self, node_id: str, node: Node, now: float) -> str | None:
        """Run ``node``; return the next node to enter at once, or None to wait."""
        self.tries = 0
        if isinstance(node, Play):
            self._play(node.prompt, node.barge_in, node.next, now)
            return None
        if isinstance(node, Say):
            value = self._eval(node.value, now)
            if value is None:
                return None
            self._play({"say": str(value), "as": node.kind}, node.barge_in, node.next, now)
            return None
        if isinstance(node, Menu | Collect):
            self._ask(node, now)
            return None
        if isinstance(node, SetVars):
            for name, expr in node.assign:
                value = self._eval(expr, now)
                if value is None and self.mode == "done":
                    return None
                old = self.variables.get(name)
                self.variables[name] = value
                self._step(now, node_id, "set", variable=name, old=_show(old),
                           new=_show(value))
            if node.next is None:
                self._finish(now, "flow ended")
            return node.next
        if isinstance(node, Branch):
            for expr, target in node.conditions:
                value = self._eval(expr, now)
                if self.mode == "done":
                    return None
                if value is True:
                    self._step(now, node_id, "branch", to=target)
                    return target
            self._step(now, node_id, "branch", to=node.otherwise or "")
            if node.otherwise is None:
                self._finish(now, "flow ended")
            return node.otherwise
        if isinstance(node, Transfer):
            target = self._eval(node.target, now)
            data = {}
            for name, expr in node.data:
                value = self._eval(expr, now)
                if self.mode == "done":
                    return None
                data[name] = _show(value)
            if target is None:
                return None
            self._step(now, node_id, "transfer", kind=node.kind, target=str(target),
                       **{f"data.{k}": v for k, v in data.items()})
            self._commands.append(TransferCall(node.kind, str(target), data))
            self.mode = "done"
            return None
        if isinstance(node, Action):
            params: dict[str, Any] = dict(node.literals)
            for name, expr in node.exprs:
                value = self._eval(expr, now)
                if self.mode == "done":
                    return None
                head, _, tail = name.partition(".")
                if tail:
                    params.setdefault(head, {})[tail] = value
                else:
                    params[name] = value
            self._step(now, node_id, "action", kind=node.kind)
            self.mode = "action"
            self._commands.append(RunAction(node.kind, params, node.timeout))
            return None
        if isinstance(node, Hangup):
            if node.prompt is not None:
                self._play(node.prompt, False, None, now)
                return None
            self._finish(now, "hangup node")
            return None
        raise TypeError(f"unknown node type {type(node).__name__} at {node_id}")

    def _play(self, prompt: PromptRef, barge_in: bool, then: str | None, now: float) -> None:
        self.mode = "playing"
        self._pending_node = then
        if barge_in and self.typeahead:  # keys already typed skip the prompt
            self.prompt_done(now)
            return
        self._commands.append(PlayPrompt((prompt,), self.language, barge_in))

    def _ask(self, node: Menu | Collect, now: float,
             before: PromptRef | None = None) -> None:
        if isinstance(node, Menu):
            spec = CollectSpec(mode="single", valid=frozenset(node.options),
                               first_digit_timeout=node.timeout, clear_key=None,
                               terminator=None)
        else:
            spec = node.spec
        self.collector = Collector(spec, now)
        prompts = tuple(p for p in (before, node.prompt) if p is not None)
        if not prompts or (node.barge_in and self.typeahead):
            self.mode = "collecting"
            self.collector.start(now)
            self._feed_typeahead(now)
            return
        self.mode = "prompting"
        self._commands.append(PlayPrompt(prompts, self.language, node.barge_in))

    def _outcome(self, outcome: Outcome, now: float) -> None:
        node = self.flow.nodes[self.node_id]
        assert isinstance(node, Menu | Collect)
        assert self.collector is not None
        self.typeahead = list(self.collector.leftover) + self.typeahead
        if isinstance(outcome, Collected):
            self._step(now, self.node_id, "collected", value=outcome.value,
                       ended_by=outcome.ended_by)
            if isinstance(node, Menu):
                self._enter(node.options[outcome.value], now)
                return
            old = self.variables.get(node.variable)
            self.variables[node.variable] = outcome.value
            self._step(now, self.node_id, "set", variable=node.variable, old=_show(old),
                       new=outcome.value)
            if node.next is None:
                self._finish(now, "flow ended")
            else:
                self._enter(node.next, now)
            return
        reason = "no input" if isinstance(outcome, NoInput) else f"invalid: {outcome.reason}"
        if isinstance(outcome, Invalid):
            self._step(now, self.node_id, "invalid", value=outcome.value, reason=outcome.reason)
        else:
            self._step(now, self.node_id, "no_input")
        self.tries += 1
        if self.tries > node.retries:
            self._step(now, self.node_id, "failed", reason=reason)
            self.typeahead.clear()
            if node.on_failure is not None:
                self._enter(node.on_failure, now)
            else:
                self._finish(now, f"{self.node_id}: {reason}, retries exhausted")
            return
        retry_prompt = node.no_input_prompt if isinstance(outcome, NoInput) else \
            node.invalid_prompt
        # say what went wrong, then ask again with the node's own prompt
        self._ask(node, now, before=retry_prompt)

    def _eval(self, expr: Any, now: float) -> Any:
        try:
            return evaluate(expr, self.variables)
        except ExprError as exc:
            self._finish(now, f"expression error at {self.node_id}: {exc}")
            return None

    def _finish(self, now: float, reason: str) -> None:
        if self.mode == "done":
            return
        self._step(now, self.node_id, "hangup", reason=reason)
        self._commands.append(HangupCall(reason))
        self.mode = "done"

    def _stop_prompt_if_playing(self) -> None:
        if self.mode in ("playing", "prompting"):
            self._commands.append(StopPrompt())
        self._pending_node = None

    def _step(self, now: float, node: str, event: str, **detail: Any) -> None:
        self.trace.append(Step(now, node, event, tuple((k, _show(v)) for k, v in
                                                       detail.items())))


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
