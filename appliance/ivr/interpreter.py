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
    action     a data action (http, sql, socket, file, plugin, mailbox) runs; keys are
               kept as type-ahead
    capture_prompt  the greeting/question before a capture plays; a key skips it
    capturing  the media plane records the caller (record, voicemail) or listens for
               speech (recognise); an end key (or, when recognising, a key of the node's
               ``dtmf`` map) stops it; ``capture_done`` brings the result
    transferring  a transfer with ``on_failure`` rings; ``transfer_failed`` brings the
               flow back (busy, no answer), ``transfer_answered`` ends it
    done       transferred or hung up

A ``subflow`` node pushes the current flow and enters another (variables are shared);
when the sub-flow ends, the caller's flow goes on at the node's ``next``. A shortcut
unwinds to the top flow, whose shortcuts are the only ones that apply.

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
    Recognise,
    Record,
    Say,
    SetVars,
    Subflow,
    Transfer,
)

MAX_STEPS = 100  # nodes entered in a row without waiting for the caller
MAX_DEPTH = 8  # sub-flows within sub-flows
VOICEMAIL_GREETING: Mapping[str, PromptRef] = {
    "en-us": {"tts": "Please leave your message after the tone. "
                     "Press the pound key when you are done."},
    "cmn": {"tts": "请在提示音后留言，完成后请按井号键。"},  # noqa: RUF001
    "yue": {"tts": "請喺提示音之後留言，完成之後請按井字鍵。"},  # noqa: RUF001
}
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
    caller_id: str | None = None
    ring_seconds: float | None = None


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
class StartCapture:
    """Record the caller or listen for speech; answer with ``capture_done(seq, ...)``.

    ``kind`` is ``record`` (``target``: a file name in the tenant's recordings, or ""
    for one named after the call), ``voicemail`` (``target``: the mailbox) or
    ``recognise`` (``grammar`` and ``choices`` as in the flow; ``silence_seconds`` is
    then how long to wait for speech to start)."""

    seq: int
    kind: str
    target: str
    max_seconds: float
    silence_seconds: float
    beep: bool
    grammar: str = ""
    choices: Mapping[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class StopCapture:
    seq: int


@dataclass(frozen=True)
class Step:
    """One line of the call's IVR trace."""

    at: float
    node: str
    event: str
    detail: tuple[tuple[str, str], ...] = ()
    flow: str = ""


IvrCommand = (PlayPrompt | StopPrompt | TransferCall | HangupCall | RunAction | StartCapture
              | StopCapture)


class Interpreter:
    def __init__(self, flow: Flow, *, variables: Mapping[str, Any] | None = None,
                 language: str | None = None, flows: Mapping[str, Flow] | None = None
                 ) -> None:
        """``flows`` are those a ``subflow`` node may enter (the tenant's)."""
        self.flow = flow
        self.flows = flows or {}
        self._stack: list[tuple[Flow, str | None]] = []  # (caller flow, its next node)
        self._capture: StartCapture | None = None  # pending until its prompt ends
        self._capture_seq = 0
        self._secrets: set[str] = set()  # values of secret inputs, masked in the trace
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
        """No more input for the flow (it may still come back: ``transferring``)."""
        return self.mode in ("done", "transferring")

    @property
    def secret_input(self) -> bool:
        """The caller is typing a secret (a PIN): keys must not be shown anywhere."""
        node = self.flow.nodes.get(self.node_id)
        return isinstance(node, Collect) and node.secret and self.mode in (
            "prompting", "collecting")

    def results(self, before: Mapping[str, Any]) -> dict[str, str]:
        """The variables the flow set or changed since ``before`` (scalars, as text), a
        secret input's value masked: what a flow run beside an agent hands back."""
        out = {}
        for name, value in self.variables.items():
            if isinstance(value, str | int | float | bool) and before.get(name) != value:
                out[name] = self._mask(_show(value))
        return out

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
        if self.mode in ("idle", "done", "transferring"):
            return
        self._step(now, self.node_id, "key", key="*" if self.secret_input else key)
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
            if self._stack:  # shortcuts name nodes of the top flow
                self.flow = self._stack[0][0]
                self._stack.clear()
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
        self._result_next(node, ok, error, now)

    def capture_done(self, seq: int, ok: bool, value: Any, error: str | None,
                     now: float) -> None:
        """The capture ``seq`` ended (a stopped or stale one is ignored)."""
        if self.mode != "capturing" or seq != self._capture_seq:
            return
        node = self.flow.nodes[self.node_id]
        if isinstance(node, Recognise):
            choice = value.get("choice") if ok and isinstance(value, Mapping) else None
            self._step(now, self.node_id, "recognised", choice=choice or "",
                       text=value.get("text", "") if isinstance(value, Mapping) else "",
                       error=error or "")
            no_speech = isinstance(value, Mapping) and value.get("speech") is False
            self._answer(node, choice, "speech", no_input=no_speech or not ok, now=now)
            return
        assert isinstance(node, Record)
        self.variables[node.result] = value
        self.variables[f"{node.result}_error"] = error or ""
        self._step(now, self.node_id, "captured", ok=ok, error=error or "",
                   value=_show(value)[:200])
        self._result_next(node, ok, error, now)

    def _result_next(self, node: Action | Record, ok: bool, error: str | None,
                     now: float) -> None:
        target = node.next if ok or node.on_error is None else node.on_error
        if not ok and node.on_error is None:
            self._finish(now, f"{node.kind} failed at {self.node_id}: {error}")
        elif target is None:
            self._flow_ended(now)
        else:
            self._enter(target, now)

    def transfer_failed(self, status: int, now: float) -> None:
        """The transfer target did not answer (``status``): on to ``on_failure``."""
        if self.mode != "transferring":
            return
        node = self.flow.nodes[self.node_id]
        assert isinstance(node, Transfer) and node.on_failure is not None
        self.variables["transfer_status"] = status
        self._step(now, self.node_id, "transfer_failed", status=status)
        self.mode = "idle"
        self._enter(node.on_failure, now)

    def transfer_answered(self, now: float) -> None:
        if self.mode == "transferring":
            self._step(now, self.node_id, "transfer_answered")
            self.mode = "done"

    def prompt_done(self, now: float) -> None:
        if self.mode == "capture_prompt":
            self._start_capture(now)
            return
        if self.mode == "playing":
            target = self._pending_node
            self._pending_node = None
            if isinstance(self.flow.nodes[self.node_id], Hangup):
                self._finish(now, "hangup node")
            elif target is None:
                self._flow_ended(now)
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
        if self.mode == "capture_prompt":  # a key skips the greeting
            if not getattr(self.flow.nodes[self.node_id], "barge_in", True):
                return
            self._commands.append(StopPrompt())
            self._start_capture(now)
            node = self.flow.nodes[self.node_id]
            if isinstance(node, Recognise):
                self._capture_key(node, key, now)
            return
        if self.mode == "capturing":
            self._capture_key(self.flow.nodes[self.node_id], key, now)
            return
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

    def _capture_key(self, node: Node, key: str, now: float) -> None:
        if isinstance(node, Recognise):
            if key in node.dtmf:
                self._commands.append(StopCapture(self._capture_seq))
                self._answer(node, node.dtmf[key], "dtmf", no_input=False, now=now)
            elif node.grammar == "digits" and key in "0123456789":
                self._commands.append(StopCapture(self._capture_seq))
                self._answer(node, key, "dtmf", no_input=False, now=now)
            return
        if isinstance(node, Record) and key in node.end_keys:
            self._commands.append(StopCapture(self._capture_seq))

    def _start_capture(self, now: float) -> None:
        assert self._capture is not None
        self._step(now, self.node_id, "capture", kind=self._capture.kind)
        self._commands.append(self._capture)
        self._capture = None
        self.mode = "capturing"

    def _answer(self, node: Recognise, choice: str | None, how: str, *, no_input: bool,
                now: float) -> None:
        """A recognise node got its answer (or none): set it, or retry."""
        self.mode = "answered"
        if choice is not None:
            old = self.variables.get(node.variable)
            self.variables[node.variable] = choice
            self._step(now, self.node_id, "set", variable=node.variable, old=_show(old),
                       new=choice, by=how)
            if node.next is None:
                self._flow_ended(now)
            else:
                self._enter(node.next, now)
            return
        self._retry(node, "no input" if no_input else "not recognised", no_input, now)

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
        if isinstance(node, Record):
            target = "" if node.target is None else self._eval(node.target, now)
            if self.mode == "done":
                return None
            self._capture_seq += 1
            self._capture = StartCapture(
                self._capture_seq, node.kind, _show(target), node.max_seconds,
                node.silence_seconds, node.beep)
            prompt = node.prompt
            if prompt is None and node.kind == "voicemail":  # the owner's own, if recorded
                prompt = {"recording": f"voicemail/{_show(target)}/greeting.wav",
                          "otherwise": VOICEMAIL_GREETING}
            self._step(now, node_id, node.kind, target=_show(target))
            self._capture_after(() if prompt is None else (prompt,), True, now)
            return None
        if isinstance(node, Recognise):
            self._listen(node, None, now)
            return None
        if isinstance(node, Subflow):
            sub = self.flows.get(node.flow)
            if sub is None or len(self._stack) >= MAX_DEPTH:
                self._finish(now, f"sub-flow {node.flow} unavailable at {node_id}"
                             if sub is None else f"sub-flows nested deeper than {MAX_DEPTH}")
                return None
            for name, expr in node.params:
                value = self._eval(expr, now)
                if self.mode == "done":
                    return None
                self.variables[name] = value
                self._step(now, node_id, "set", variable=name, new=_show(value))
            for name, value in sub.variables.items():
                self.variables.setdefault(name, value)
            self._step(now, node_id, "subflow", to=sub.id)
            self._stack.append((self.flow, node.next))
            self.flow = sub
            return sub.start
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
                self._flow_ended(now)
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
                self._flow_ended(now)
            return node.otherwise
        if isinstance(node, Transfer):
            target = self._eval(node.target, now)
            data = {}
            for name, expr in node.data:
                value = self._eval(expr, now)
                if self.mode == "done":
                    return None
                data[name] = _show(value)
            caller_id = None if node.caller_id is None else self._eval(node.caller_id, now)
            if target is None or self.mode == "done":
                return None
            self._step(now, node_id, "transfer", kind=node.kind, target=str(target),
                       **{f"data.{k}": v for k, v in data.items()})
            self._commands.append(TransferCall(
                node.kind, str(target), data, None if caller_id is None else _show(caller_id),
                node.ring_timeout))
            self.mode = "done" if node.on_failure is None else "transferring"
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
        ref = self._prompt(prompt, now)
        if ref is None:
            return
        self._commands.append(PlayPrompt((ref,), self.language, barge_in))

    def _prompt(self, ref: PromptRef, now: float) -> PromptRef | None:
        """A ``{recording: <expression>}`` prompt names its file when it plays."""
        expr = ref.get("recording")
        if expr is None or isinstance(expr, str):
            return ref
        value = self._eval(expr, now)
        return None if self.mode == "done" else {**ref, "recording": _show(value)}

    def _capture_after(self, prompts: tuple[PromptRef, ...], barge_in: bool,
                       now: float) -> None:
        """Play ``prompts`` (if any) one after the other, then start the pending
        capture."""
        self.mode = "capture_prompt"
        self.typeahead.clear()  # keys typed before a recording are not an answer to it
        refs = []
        for prompt in prompts:
            ref = self._prompt(prompt, now)
            if ref is None:  # the prompt's expression failed: the call ends
                return
            refs.append(ref)
        if refs:
            self._commands.append(PlayPrompt(tuple(refs), self.language, barge_in))
        else:
            self._start_capture(now)

    def _listen(self, node: Recognise, before: PromptRef | None, now: float) -> None:
        """Ask (after ``before``: what went wrong), then listen."""
        self._capture_seq += 1
        self._capture = StartCapture(
            self._capture_seq, "recognise", "", node.max_seconds, node.timeout, False,
            node.grammar, node.choices)
        self._capture_after(tuple(p for p in (before, node.prompt) if p is not None),
                            node.barge_in, now)

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
            if isinstance(node, Collect) and node.secret:
                self._secrets.add(outcome.value)
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
                self._flow_ended(now)
            else:
                self._enter(node.next, now)
            return
        if isinstance(outcome, Invalid):
            if isinstance(node, Collect) and node.secret:
                self._secrets.add(outcome.value)
            self._step(now, self.node_id, "invalid", value=outcome.value, reason=outcome.reason)
            self._retry(node, f"invalid: {outcome.reason}", False, now)
        else:
            self._step(now, self.node_id, "no_input")
            self._retry(node, "no input", True, now)

    def _retry(self, node: Menu | Collect | Recognise, reason: str, no_input: bool,
               now: float) -> None:
        """Ask again after no or a wrong answer, or give up when retries are spent."""
        self.tries += 1
        if self.tries > node.retries:
            self._step(now, self.node_id, "failed", reason=reason)
            self.typeahead.clear()
            if node.on_failure is not None:
                self._enter(node.on_failure, now)
            else:
                self._finish(now, f"{self.node_id}: {reason}, retries exhausted")
            return
        retry_prompt = node.no_input_prompt if no_input else node.invalid_prompt
        # say what went wrong, then ask again with the node's own prompt
        if isinstance(node, Recognise):
            self._listen(node, retry_prompt, now)
        else:
            self._ask(node, now, before=retry_prompt)

    def _eval(self, expr: Any, now: float) -> Any:
        try:
            return evaluate(expr, self.variables)
        except ExprError as exc:
            self._finish(now, f"expression error at {self.node_id}: {exc}")
            return None

    def _flow_ended(self, now: float) -> None:
        """The current flow has nowhere to go: back to the flow that called it, if any."""
        while self._stack:
            parent, then = self._stack.pop()
            self._step(now, self.node_id, "return", to=parent.id)
            self.flow = parent
            if then is not None:
                self._enter(then, now)
                return
        self._finish(now, "flow ended")

    def _finish(self, now: float, reason: str) -> None:
        if self.mode == "done":
            return
        self._step(now, self.node_id, "hangup", reason=reason)
        self._commands.append(HangupCall(reason))
        self.mode = "done"

    def _stop_prompt_if_playing(self) -> None:
        if self.mode in ("playing", "prompting", "capture_prompt"):
            self._commands.append(StopPrompt())
        if self.mode == "capturing":
            self._commands.append(StopCapture(self._capture_seq))
        self._capture = None
        self._pending_node = None

    def _step(self, now: float, node: str, event: str, **detail: Any) -> None:
        self.trace.append(Step(now, node, event, tuple((k, self._mask(_show(v))) for k, v in
                                                       detail.items()), self.flow.id))

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "****")
        return text


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
