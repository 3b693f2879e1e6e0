"""IVR flow documents: parsing and validation (pure).

Theory of operation
-------------------
A flow is data: a YAML (or JSON) document a tenant administrator writes, versioned,
validated here before it can be attached to a number. :func:`load_flow` parses the
text, checks every field and every reference between nodes, compiles every
expression once, and returns an immutable :class:`Flow`. Any problem raises
:class:`FlowError` naming the field path (``nodes.main.options.1``) and, when the text
came from YAML, the line, so a bad flow is refused with a precise reason and the
previous version stays live.

The document (see ``docs/IVR.md`` for the full reference)::

    flow: main-menu          # id
    version: 3
    language: en-us          # default language of prompts (en-us, cmn, yue)
    start: welcome
    variables: {tries: 0}    # initial values
    shortcuts: {"3*2*1": billing}
    nodes:
      welcome: {type: play, prompt: {tts: "Welcome"}, next: main}
      main:
        type: menu
        prompt: {tts: "For sales press 1"}
        options: {"1": sales, "2": support}
        timeout: 5
        retries: 2
        on_failure: goodbye
      ...
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import yaml

from appliance.ids import ID_RE
from appliance.ivr.digits import CollectSpec
from appliance.ivr.expr import Expr, ExprError, parse

LANGUAGES = ("en-us", "cmn", "yue")
_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_KEY_RE = re.compile(r"^[0-9*#]$")
_SHORTCUT_RE = re.compile(r"^[0-9*#]{1,32}$")
MAX_NODES = 1000
SAY_KINDS = ("digits", "number", "money", "date", "time")
TRANSFER_KINDS = ("extension", "number", "queue", "agent")


class FlowError(ValueError):
    """A flow document is invalid; ``path`` names the field, ``line`` its YAML line."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        where = f"{path} (line {line})" if line else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.message = message
        self.line = line


PromptRef = Mapping[str, Any]


@dataclass(frozen=True)
class Play:
    prompt: PromptRef
    next: str | None
    barge_in: bool = True


@dataclass(frozen=True)
class Menu:
    prompt: PromptRef
    options: Mapping[str, str]
    timeout: float = 5.0
    retries: int = 2
    invalid_prompt: PromptRef | None = None
    no_input_prompt: PromptRef | None = None
    on_failure: str | None = None
    barge_in: bool = True


@dataclass(frozen=True)
class Collect:
    prompt: PromptRef | None
    variable: str
    spec: CollectSpec
    next: str | None
    retries: int = 2
    invalid_prompt: PromptRef | None = None
    no_input_prompt: PromptRef | None = None
    on_failure: str | None = None
    barge_in: bool = True
    secret: bool = False  # a PIN: keys and value are masked in the trace


@dataclass(frozen=True)
class SetVars:
    assign: tuple[tuple[str, Expr], ...]
    next: str | None


@dataclass(frozen=True)
class Branch:
    conditions: tuple[tuple[Expr, str], ...]
    otherwise: str | None


@dataclass(frozen=True)
class Say:
    value: Expr
    kind: str
    next: str | None
    barge_in: bool = True


@dataclass(frozen=True)
class Transfer:
    kind: str  # extension, number, queue, agent
    target: Expr
    data: tuple[tuple[str, Expr], ...] = ()
    caller_id: Expr | None = None  # the number presented (one of the tenant's), R-4.2
    ring_timeout: float | None = None
    on_failure: str | None = None  # busy / no answer: the flow goes on here


@dataclass(frozen=True)
class Hangup:
    prompt: PromptRef | None = None


@dataclass(frozen=True)
class Action:
    """A data action (R-4.12, R-4.14, R-4.15, R-4.16): ``http``, ``sql``, ``socket`` or
    ``file``. ``literals`` are fixed fields, ``exprs`` are evaluated when the node runs
    (a dotted name such as ``body.id`` builds a nested mapping). The result goes to
    ``result`` and the error text (or "") to ``<result>_error``."""

    kind: str
    literals: tuple[tuple[str, Any], ...]
    exprs: tuple[tuple[str, Expr], ...]
    result: str
    next: str | None
    on_error: str | None
    timeout: float = 5.0


@dataclass(frozen=True)
class Record:
    """Record the caller (``record``: a file in the tenant's ``recordings/``;
    ``voicemail``: a message in a mailbox, R-4.10). ``target`` is the file name or the
    mailbox number; the capture ends on a key of ``end_keys``, after
    ``silence_seconds`` of silence, at ``max_seconds``, or when the caller hangs up
    (the recording is kept). The result (path or message id, seconds, how it ended)
    goes to ``result``."""

    kind: str  # record | voicemail
    prompt: PromptRef | None
    target: Expr | None
    result: str
    next: str | None
    on_error: str | None
    max_seconds: float = 60.0
    silence_seconds: float = 5.0
    end_keys: str = "#"
    beep: bool = True


@dataclass(frozen=True)
class Subflow:
    """Run another flow of the tenant (or a system flow, ``sys-*``) and come back to
    ``next`` when it ends; variables are shared, ``params`` are set before entering."""

    flow: str
    params: tuple[tuple[str, Expr], ...]
    next: str | None


@dataclass(frozen=True)
class Recognise:
    """Ask and recognise speech against a grammar (R-4.19): a built-in one (``yesno``,
    ``digits``) or ``choices`` (choice -> phrases); keys in ``dtmf`` (key -> choice)
    are accepted too, so a caller can always answer with the keypad."""

    prompt: PromptRef | None
    grammar: str
    choices: Mapping[str, tuple[str, ...]]
    dtmf: Mapping[str, str]
    variable: str
    next: str | None
    timeout: float = 5.0
    max_seconds: float = 10.0
    retries: int = 2
    invalid_prompt: PromptRef | None = None
    no_input_prompt: PromptRef | None = None
    on_failure: str | None = None
    barge_in: bool = True


Node = (Play | Menu | Collect | SetVars | Branch | Say | Transfer | Hangup | Action | Record
        | Subflow | Recognise)
NodeType = Literal["play", "menu", "collect", "set", "branch", "say", "transfer", "hangup",
                   "http", "sql", "socket", "file", "plugin", "mailbox", "record", "voicemail",
                   "subflow", "recognise"]


@dataclass(frozen=True)
class Flow:
    id: str
    version: int
    language: str
    start: str
    nodes: Mapping[str, Node]
    variables: Mapping[str, Any] = field(default_factory=dict)
    shortcuts: Mapping[str, str] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


# --------------------------------------------------------------------------- loading


def load_flow(text: str) -> Flow:
    """Parse and validate a flow document (YAML or JSON text)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise FlowError("$", f"not valid YAML: {getattr(exc, 'problem', exc)}", line) from None
    lines = _LineIndex(root)
    try:
        return flow_from_dict(doc)
    except FlowError as exc:
        raise FlowError(exc.path, exc.message, lines.line_of(exc.path)) from None


def flow_from_dict(doc: Any) -> Flow:
    if not isinstance(doc, dict):
        raise FlowError("$", "a flow is a mapping with flow, version, start and nodes")
    known = {"flow", "version", "language", "start", "variables", "shortcuts", "nodes",
             "description"}
    for key in doc:
        if key not in known:
            raise FlowError(str(key), f"unknown field (known: {', '.join(sorted(known))})")
    flow_id = _req(doc, "flow", "", str)
    if not _ID_RE.match(flow_id):
        raise FlowError("flow", "must be an identifier (letters, digits, - and _)")
    version = _req(doc, "version", "", int)
    if isinstance(version, bool) or version < 1:
        raise FlowError("version", "must be a positive integer")
    language = doc.get("language", "en-us")
    if language not in LANGUAGES:
        raise FlowError("language", f"must be one of {', '.join(LANGUAGES)}")
    nodes_doc = doc.get("nodes")
    if not isinstance(nodes_doc, dict) or not nodes_doc:
        raise FlowError("nodes", "must be a non-empty mapping of node id to node")
    if len(nodes_doc) > MAX_NODES:
        raise FlowError("nodes", f"at most {MAX_NODES} nodes")
    for node_id in nodes_doc:
        if not isinstance(node_id, str) or not _ID_RE.match(node_id):
            raise FlowError(f"nodes.{node_id}", "node ids are identifiers")
    nodes = {nid: _node(f"nodes.{nid}", nd) for nid, nd in nodes_doc.items()}
    start = _req(doc, "start", "", str)
    if start not in nodes:
        raise FlowError("start", f"no node {start!r}")
    variables = doc.get("variables", {})
    if not isinstance(variables, dict):
        raise FlowError("variables", "must be a mapping of name to initial value")
    for name, value in variables.items():
        if not isinstance(name, str) or not _VAR_RE.match(name):
            raise FlowError(f"variables.{name}", "variable names are identifiers")
        if not isinstance(value, str | int | float | bool):
            raise FlowError(f"variables.{name}", "initial values are strings or numbers")
    shortcuts = doc.get("shortcuts", {})
    if not isinstance(shortcuts, dict):
        raise FlowError("shortcuts", "must be a mapping of key sequence to node")
    shortcuts = {str(k): v for k, v in shortcuts.items()}
    for seq, target in shortcuts.items():
        if not _SHORTCUT_RE.match(seq):
            raise FlowError(f"shortcuts.{seq}", "a shortcut is 1-32 keys of 0-9 * #")
        if target not in nodes:
            raise FlowError(f"shortcuts.{seq}", f"no node {target!r}")
    for nid, node in nodes.items():
        for path, target in _targets(f"nodes.{nid}", node):
            if target is not None and target not in nodes:
                raise FlowError(path, f"no node {target!r}")
    return Flow(id=flow_id, version=version, language=language, start=start, nodes=nodes,
                variables=dict(variables), shortcuts=shortcuts, source=copy.deepcopy(doc))


def subflow_names(flow: Flow) -> list[tuple[str, str]]:
    """(field path, flow name) of every sub-flow the flow calls, for the plan to check."""
    return [(f"nodes.{nid}.flow", node.flow) for nid, node in flow.nodes.items()
            if isinstance(node, Subflow)]


def _targets(path: str, node: Node) -> list[tuple[str, str | None]]:
    if isinstance(node, Play | Collect | SetVars | Say | Action | Record | Subflow
                  | Recognise):
        out = [(f"{path}.next", node.next)]
        if isinstance(node, Collect | Recognise):
            out.append((f"{path}.on_failure", node.on_failure))
        if isinstance(node, Action | Record):
            out.append((f"{path}.on_error", node.on_error))
        return out
    if isinstance(node, Transfer):
        return [(f"{path}.on_failure", node.on_failure)]
    if isinstance(node, Menu):
        return [(f"{path}.options.{k}", v) for k, v in node.options.items()] + [
            (f"{path}.on_failure", node.on_failure)]
    if isinstance(node, Branch):
        return [(f"{path}.conditions.{i}.goto", t) for i, (_, t) in
                enumerate(node.conditions)] + [(f"{path}.else", node.otherwise)]
    return []


def _node(path: str, doc: Any) -> Node:
    if not isinstance(doc, dict):
        raise FlowError(path, "a node is a mapping with a type")
    kind = doc.get("type")
    if not isinstance(kind, str) or kind not in _BUILDERS:
        raise FlowError(f"{path}.type", f"unknown node type {kind!r} "
                        f"(one of {', '.join(_BUILDERS)})")
    allowed = _FIELDS[kind] | {"type", "description"}
    for key in doc:
        if key not in allowed:
            raise FlowError(f"{path}.{key}", f"unknown field for a {kind} node "
                            f"(allowed: {', '.join(sorted(allowed))})")
    node: Node = _BUILDERS[kind](path, doc)
    return node


def _play(path: str, d: dict[str, Any]) -> Play:
    return Play(prompt=_prompt(f"{path}.prompt", d.get("prompt"), required=True) or {},
                next=_opt_id(d, "next", path), barge_in=_bool(d, "barge_in", path, True))


def _menu(path: str, d: dict[str, Any]) -> Menu:
    options = d.get("options")
    if not isinstance(options, dict) or not options:
        raise FlowError(f"{path}.options", "must map keys (0-9 * #) to nodes")
    opts = {str(k): v for k, v in options.items()}
    for key, target in opts.items():
        if not _KEY_RE.match(key):
            raise FlowError(f"{path}.options.{key}", "a menu key is one of 0-9 * #")
        if not isinstance(target, str):
            raise FlowError(f"{path}.options.{key}", "must name a node")
    return Menu(
        prompt=_prompt(f"{path}.prompt", d.get("prompt"), required=True) or {},
        options=opts, timeout=_seconds(d, "timeout", path, 5.0),
        **_asking(path, d),
    )


def _asking(path: str, d: dict[str, Any]) -> dict[str, Any]:
    """The fields menus and collects share: retries, retry prompts, failure, barge-in."""
    return {
        "retries": _count(d, "retries", path, 2),
        "invalid_prompt": _prompt(f"{path}.invalid_prompt", d.get("invalid_prompt")),
        "no_input_prompt": _prompt(f"{path}.no_input_prompt", d.get("no_input_prompt")),
        "on_failure": _opt_id(d, "on_failure", path),
        "barge_in": _bool(d, "barge_in", path, True),
    }


def _collect(path: str, d: dict[str, Any]) -> Collect:
    variable = _req(d, "variable", path, str)
    if not _VAR_RE.match(variable):
        raise FlowError(f"{path}.variable", "variable names are identifiers")
    mode = d.get("mode", "variable")
    if mode not in ("single", "fixed", "variable"):
        raise FlowError(f"{path}.mode", "one of single, fixed, variable")
    try:
        spec = CollectSpec(
            mode=mode,
            length=d.get("length"),
            min_length=d.get("min_length", 1),
            max_length=d.get("max_length", 32),
            terminator=d.get("terminator", "#"),
            clear_key=d.get("clear_key", "*"),
            first_digit_timeout=float(d.get("first_digit_timeout", 5.0)),
            inter_digit_timeout=float(d.get("inter_digit_timeout", 3.0)),
        )
    except (ValueError, TypeError) as exc:
        raise FlowError(path, str(exc)) from None
    return Collect(
        prompt=_prompt(f"{path}.prompt", d.get("prompt")), variable=variable, spec=spec,
        next=_opt_id(d, "next", path), secret=_bool(d, "secret", path, False),
        **_asking(path, d),
    )


def _set(path: str, d: dict[str, Any]) -> SetVars:
    return SetVars(_expr_map(d, "variables", path, required=True), _opt_id(d, "next", path))


def _expr_map(d: dict[str, Any], key: str, path: str,
              required: bool = False) -> tuple[tuple[str, Expr], ...]:
    """A field mapping variable names to expressions (``set``, ``data``, ``params``)."""
    value = d.get(key, {})
    if not isinstance(value, dict) or (required and not value):
        raise FlowError(f"{path}.{key}", "must map variable names to expressions")
    out = []
    for name, text in value.items():
        if not isinstance(name, str) or not _VAR_RE.match(name):
            raise FlowError(f"{path}.{key}.{name}", "variable names are identifiers")
        out.append((name, _expr(f"{path}.{key}.{name}", text)))
    return tuple(out)


def _branch(path: str, d: dict[str, Any]) -> Branch:
    conds = d.get("conditions")
    if not isinstance(conds, list) or not conds:
        raise FlowError(f"{path}.conditions", "a list of {when: <expression>, goto: <node>}")
    out = []
    for i, c in enumerate(conds):
        p = f"{path}.conditions.{i}"
        if not isinstance(c, dict) or set(c) != {"when", "goto"}:
            raise FlowError(p, "each condition has exactly when and goto")
        out.append((_expr(f"{p}.when", c["when"]), _req(c, "goto", p, str)))
    return Branch(tuple(out), _opt_id(d, "else", path))


def _say(path: str, d: dict[str, Any]) -> Say:
    kind = d.get("as", "digits")
    if kind not in SAY_KINDS:
        raise FlowError(f"{path}.as", f"one of {', '.join(SAY_KINDS)}")
    return Say(_expr(f"{path}.value", d.get("value")), kind, _opt_id(d, "next", path),
               _bool(d, "barge_in", path, True))


def _transfer(path: str, d: dict[str, Any]) -> Transfer:
    kinds = [k for k in TRANSFER_KINDS if k in d]
    if len(kinds) != 1:
        raise FlowError(path, f"a transfer names exactly one of {', '.join(TRANSFER_KINDS)}")
    pairs = _expr_map(d, "data", path)
    target = d[kinds[0]]
    # a literal number (extension, number) or name (queue, agent) is the common case:
    # quote it so it is a string expression; "(name)" reads a variable instead
    literal = r"\+?[0-9*#]+" if kinds[0] in ("extension", "number") else r"[A-Za-z0-9_-]{1,64}"
    text = f"'{target}'" if isinstance(target, int) or (
        isinstance(target, str) and re.fullmatch(literal, target)) else target
    caller_id = d.get("caller_id")
    if isinstance(caller_id, int) or (isinstance(caller_id, str)
                                      and re.fullmatch(r"\+?[0-9]+", caller_id)):
        caller_id = f"'{caller_id}'"
    return Transfer(kinds[0], _expr(f"{path}.{kinds[0]}", text), tuple(pairs),
                    None if caller_id is None else _expr(f"{path}.caller_id", caller_id),
                    _seconds(d, "ring_timeout", path, 0) if "ring_timeout" in d else None,
                    _opt_id(d, "on_failure", path))


def _hangup(path: str, d: dict[str, Any]) -> Hangup:
    return Hangup(_prompt(f"{path}.prompt", d.get("prompt")))


def _record(kind: str) -> Any:
    def build(path: str, d: dict[str, Any]) -> Record:
        target_key = "file" if kind == "record" else "mailbox"
        if kind == "voicemail" and target_key not in d:
            raise FlowError(f"{path}.mailbox", "is required")
        target = d.get(target_key)
        if isinstance(target, int) or (isinstance(target, str)
                                       and re.fullmatch(r"[0-9]+", target)):
            target = f"'{target}'"  # a literal mailbox number
        end_keys = d.get("end_keys", "#")
        if not isinstance(end_keys, str) or not re.fullmatch(r"[0-9*#]{0,12}", end_keys):
            raise FlowError(f"{path}.end_keys", "keys among 0-9 * # (may be empty)")
        silence = d.get("silence_seconds", 5.0)
        if isinstance(silence, bool) or not isinstance(silence, int | float) or \
                not 0 <= silence <= 60:
            raise FlowError(f"{path}.silence_seconds", "seconds between 0 (off) and 60")
        return Record(
            kind=kind, prompt=_prompt(f"{path}.prompt", d.get("prompt")),
            target=None if target is None else _expr(f"{path}.{target_key}", target),
            result=_var(d, "result", path, kind),
            next=_opt_id(d, "next", path), on_error=_opt_id(d, "on_error", path),
            max_seconds=_seconds(d, "max_seconds", path, 60.0 if kind == "record" else 120.0),
            silence_seconds=float(silence), end_keys=end_keys,
            beep=_bool(d, "beep", path, True),
        )

    return build


def _subflow(path: str, d: dict[str, Any]) -> Subflow:
    name = _req(d, "flow", path, str)
    if not ID_RE.fullmatch(name):
        raise FlowError(f"{path}.flow", "must name a flow of the tenant")
    return Subflow(name, _expr_map(d, "params", path), _opt_id(d, "next", path))


GRAMMARS = ("yesno", "digits", "choices")
_PHRASE_RE = re.compile(r"^[a-z][a-z' ]{0,63}$")


def _recognise(path: str, d: dict[str, Any]) -> Recognise:
    grammar = d.get("grammar", "choices")
    if grammar not in GRAMMARS:
        raise FlowError(f"{path}.grammar", f"one of {', '.join(GRAMMARS)}")
    choices: dict[str, tuple[str, ...]] = {}
    raw = d.get("choices")
    if grammar == "choices":
        if not isinstance(raw, dict) or not raw or len(raw) > 100:
            raise FlowError(f"{path}.choices", "must map 1-100 choices to spoken phrases")
        for choice, phrases in raw.items():
            p = f"{path}.choices.{choice}"
            if isinstance(phrases, str):
                phrases = [phrases]
            if not isinstance(choice, str) or not _VAR_RE.match(choice) or \
                    not isinstance(phrases, list) or not phrases or not all(
                        isinstance(x, str) and _PHRASE_RE.match(x) for x in phrases):
                raise FlowError(p, "a choice (identifier) maps to lower-case phrases")
            choices[choice] = tuple(phrases)
    elif raw is not None:
        raise FlowError(f"{path}.choices", f"the {grammar} grammar takes no choices")
    dtmf_doc = d.get("dtmf", {})
    if not isinstance(dtmf_doc, dict):
        raise FlowError(f"{path}.dtmf", "must map keys to choices")
    dtmf = {str(k): str(v) for k, v in dtmf_doc.items()}
    for key, choice in dtmf.items():
        if not _KEY_RE.match(key):
            raise FlowError(f"{path}.dtmf.{key}", "a key is one of 0-9 * #")
        if grammar == "choices" and choice not in choices:
            raise FlowError(f"{path}.dtmf.{key}", f"no choice {choice!r}")
    if grammar == "yesno" and not dtmf:
        dtmf = {"1": "yes", "2": "no"}
    return Recognise(
        prompt=_prompt(f"{path}.prompt", d.get("prompt")), grammar=grammar, choices=choices,
        dtmf=dtmf, variable=_var(d, "variable", path, None), next=_opt_id(d, "next", path),
        timeout=_seconds(d, "timeout", path, 5.0),
        max_seconds=_seconds(d, "max_seconds", path, 10.0), **_asking(path, d),
    )


_ACTION_FIELDS: dict[str, tuple[dict[str, type], set[str], set[str]]] = {
    # kind: (literal fields with their types, expression fields, expression maps)
    "http": ({"method": str}, {"url"}, {"body", "headers"}),
    "sql": ({"database": str, "statement": str, "procedure": str, "max_rows": int},
            set(), {"params"}),
    "socket": ({"host": str, "port": int, "framing": str, "pooled": bool}, {"payload"},
               set()),
    "file": ({"op": str}, {"path", "content"}, set()),
    "plugin": ({"plugin": str, "function": str}, {"input"}, set()),
    "mailbox": ({"op": str}, {"mailbox", "pin", "index", "id", "status", "recording"},
                set()),
}
_ACTION_REQUIRED = {"http": {"url"}, "sql": {"database"}, "socket": {"host", "port"},
                    "file": {"op", "path"}, "plugin": {"plugin", "function"},
                    "mailbox": {"op", "mailbox"}}
_ACTION_CHOICES = {
    "method": ("GET", "POST", "PUT", "DELETE", "PATCH"),
    "framing": ("line", "length4", "raw"),
    "op": ("read", "write", "append", "delete", "list", "mkdir", "exists"),
}
_MAILBOX_OPS = ("login", "count", "message", "mark", "delete", "greeting")


def _action(kind: str) -> Any:
    literal_types, expr_fields, expr_maps = _ACTION_FIELDS[kind]

    def build(path: str, d: dict[str, Any]) -> Action:
        for key in _ACTION_REQUIRED[kind]:
            if key not in d:
                raise FlowError(f"{path}.{key}", "is required")
        literals = []
        for key, kind_type in literal_types.items():
            if key in d:
                value = d[key]
                if isinstance(value, bool) != (kind_type is bool) or not isinstance(
                        value, kind_type):
                    raise FlowError(f"{path}.{key}", f"must be a {kind_type.__name__}")
                choices = _MAILBOX_OPS if kind == "mailbox" and key == "op" else \
                    _ACTION_CHOICES.get(key)
                if choices is not None and value not in choices:
                    raise FlowError(f"{path}.{key}", f"one of {', '.join(choices)}")
                literals.append((key, value))
        if kind == "sql" and ("statement" in d) == ("procedure" in d):
            raise FlowError(path, "an sql node has exactly one of statement, procedure")
        exprs = [(key, _expr(f"{path}.{key}", d[key])) for key in sorted(expr_fields)
                 if key in d]
        for key in sorted(expr_maps):
            if key not in d:
                continue
            if not isinstance(d[key], dict):
                raise FlowError(f"{path}.{key}", "must map names to expressions")
            for name, text in d[key].items():
                if not isinstance(name, str) or not _VAR_RE.match(name):
                    raise FlowError(f"{path}.{key}.{name}", "names are identifiers")
                exprs.append((f"{key}.{name}", _expr(f"{path}.{key}.{name}", text)))
        result = _var(d, "result", path, "result")
        return Action(kind, tuple(literals), tuple(exprs), result, _opt_id(d, "next", path),
                      _opt_id(d, "on_error", path), _seconds(d, "timeout", path, 5.0))

    return build


_BUILDERS: dict[str, Any] = {
    "play": _play, "menu": _menu, "collect": _collect, "set": _set, "branch": _branch,
    "say": _say, "transfer": _transfer, "hangup": _hangup,
    "record": _record("record"), "voicemail": _record("voicemail"), "subflow": _subflow,
    "recognise": _recognise,
    **{kind: _action(kind) for kind in _ACTION_FIELDS},
}
_RECORD_FIELDS = {"prompt", "result", "next", "on_error", "max_seconds", "silence_seconds",
                  "end_keys", "beep"}
_FIELDS: dict[str, set[str]] = {
    "play": {"prompt", "next", "barge_in"},
    "menu": {"prompt", "options", "timeout", "retries", "invalid_prompt", "no_input_prompt",
             "on_failure", "barge_in"},
    "collect": {"prompt", "variable", "mode", "length", "min_length", "max_length",
                "terminator", "clear_key", "first_digit_timeout", "inter_digit_timeout",
                "retries", "invalid_prompt", "no_input_prompt", "next", "on_failure",
                "barge_in", "secret"},
    "set": {"variables", "next"},
    "branch": {"conditions", "else"},
    "say": {"value", "as", "next", "barge_in"},
    "transfer": {*TRANSFER_KINDS, "data", "caller_id", "ring_timeout", "on_failure"},
    "hangup": {"prompt"},
    "record": {*_RECORD_FIELDS, "file"},
    "voicemail": {*_RECORD_FIELDS, "mailbox"},
    "subflow": {"flow", "params", "next"},
    "recognise": {"prompt", "grammar", "choices", "dtmf", "variable", "next", "timeout",
                  "max_seconds", "retries", "invalid_prompt", "no_input_prompt",
                  "on_failure", "barge_in"},
    **{kind: {*lits, *exprs, *maps, "result", "next", "on_error", "timeout"}
       for kind, (lits, exprs, maps) in _ACTION_FIELDS.items()},
}


# --------------------------------------------------------------------------- fields


def _req(d: dict[str, Any], key: str, path: str, kind: type) -> Any:
    value = d.get(key)
    where = f"{path}.{key}" if path else key
    if value is None:
        raise FlowError(where, "is required")
    if not isinstance(value, kind):
        raise FlowError(where, f"must be a {kind.__name__}")
    return value


def _var(d: dict[str, Any], key: str, path: str, default: str | None) -> str:
    value = d.get(key, default)
    if value is None:
        raise FlowError(f"{path}.{key}", "is required")
    if not isinstance(value, str) or not _VAR_RE.match(value):
        raise FlowError(f"{path}.{key}", "variable names are identifiers")
    return value


def _opt_id(d: dict[str, Any], key: str, path: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise FlowError(f"{path}.{key}", "must name a node")
    return value


def _bool(d: dict[str, Any], key: str, path: str, default: bool) -> bool:
    value = d.get(key, default)
    if not isinstance(value, bool):
        raise FlowError(f"{path}.{key}", "must be true or false")
    return value


def _seconds(d: dict[str, Any], key: str, path: str, default: float) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 600:
        raise FlowError(f"{path}.{key}", "must be seconds between 0 and 600")
    return float(value)


def _count(d: dict[str, Any], key: str, path: str, default: int) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
        raise FlowError(f"{path}.{key}", "must be an integer between 0 and 20")
    return value


def _expr(path: str, text: Any) -> Expr:
    if isinstance(text, bool):
        text = "true" if text else "false"
    elif isinstance(text, int):
        text = str(text)
    elif isinstance(text, float):  # YAML may write 1e-05; the language has no exponent
        text = format(Decimal(repr(text)), "f")
    if not isinstance(text, str):
        raise FlowError(path, "must be an expression (text)")
    try:
        return parse(text)
    except ExprError as exc:
        raise FlowError(path, f"bad expression: {exc}") from None


def _prompt(path: str, value: Any, required: bool = False) -> PromptRef | None:
    """``{tts: text}``, ``{file: name}``, ``{say: value, as: kind}``, or a map from
    language to one of those."""
    if value is None:
        if required:
            raise FlowError(path, "is required")
        return None
    if isinstance(value, str):
        return {"tts": value}
    if not isinstance(value, dict) or not value:
        raise FlowError(path, "a prompt is {tts: ...}, {file: ...} or {say: ..., as: ...}")
    if set(value) <= set(LANGUAGES):
        for lang, inner in value.items():
            _prompt(f"{path}.{lang}", inner, required=True)
        return dict(value)
    if "recording" in value and set(value) <= {"recording", "otherwise"}:
        # an expression naming a file in the tenant's storage, and what to play instead
        # when there is no such file
        out: dict[str, Any] = {"recording": _expr(f"{path}.recording", value["recording"])}
        if "otherwise" in value:
            out["otherwise"] = _prompt(f"{path}.otherwise", value["otherwise"], required=True)
        return out
    kinds = [k for k in ("tts", "file", "say") if k in value]
    if len(kinds) != 1 or not set(value) <= {"tts", "file", "say", "as", "currency", "liang",
                                             "yao", "clock24"}:
        raise FlowError(path, "a prompt has exactly one of tts, file, say, recording")
    if kinds[0] == "file" and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(value["file"])):
        raise FlowError(f"{path}.file", "prompt names are 1-64 letters, digits, - or _")
    if kinds[0] == "say" and value.get("as", "digits") not in SAY_KINDS:
        raise FlowError(f"{path}.as", f"one of {', '.join(SAY_KINDS)}")
    return dict(value)


class _LineIndex:
    """Maps a field path (``nodes.main.options.1``) to its line in the YAML text."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line_of(self, path: str) -> int | None:
        node = self.root
        best: int | None = node.start_mark.line + 1 if node is not None else None
        if path in ("$", "") or node is None:
            return best
        for part in path.split("."):
            nxt: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if str(key.value) == part:
                        best = key.start_mark.line + 1
                        nxt = value
                        break
            elif isinstance(node, yaml.SequenceNode) and part.isdigit():
                items = node.value
                if int(part) < len(items):
                    nxt = items[int(part)]
                    best = nxt.start_mark.line + 1
            if nxt is None:
                return best
            node = nxt
        return best
