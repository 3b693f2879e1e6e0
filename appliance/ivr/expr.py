"""A small, safe expression language for IVR flows (requirement R-4.5).

Flows compute with it: ``tries + 1``, ``length(account) >= 4``,
``concat('+86', digits(caller.number))``, ``round(balance * 1.06, 2)``.

Theory of operation
-------------------
:func:`parse` turns the text into an immutable tree (:data:`Expr`) once, when the
flow is loaded; :func:`evaluate` walks that tree against the call's variables as
often as the flow needs. Both are pure Python written by hand: no ``eval``,
``exec``, ``compile`` or ``ast`` ever sees tenant text, and the evaluator reads
variables only through ``Mapping`` and ``Sequence`` item access, never through
attributes, so an expression can reach nothing but the data it is given.

* The tokenizer is a single loop over the text; the parser is a Pratt
  (precedence-climbing) parser. It checks everything that does not depend on
  the variables: syntax, function names and argument counts, literal ranges.
* Every problem raises :class:`ExprError` (a ``ValueError``) and nothing else,
  with ``position``: the 0-based offset in the text of the token at fault (for
  one-line expressions, the 0-based column). ``str(err)`` reads
  ``"expected ')' at column 12"``. Evaluation errors (unknown variable, wrong
  type, division by zero, a limit) point at the operator, function name or
  variable concerned.
* Typing is strict, so flow mistakes surface instead of guessing:
  ``+`` adds two numbers or joins two strings, and ``'a' + 1`` is an error (use
  ``concat()``, which stringifies); comparisons need two numbers or two strings
  (``==``/``!=`` also accept two booleans), so ``caller.number == 1234`` is an
  error and not a silent ``false``; ``and``, ``or``, ``not`` and conditions
  need booleans (there is no truthiness).

Values
------
``str``, ``bool``, and numbers, which are ``int`` or ``decimal.Decimal``, never
``float``, so ``0.1 + 0.2 == 0.3`` holds and money keeps its cents
(``1.10 + 2.20`` is ``3.30``). Integer arithmetic stays ``int``; anything
involving a decimal gives a ``Decimal``. ``/`` is exact division rounded
half-even to 20 decimal places, with trailing zeros dropped; it gives an
``int`` when both operands are ints and the quotient is whole (``6 / 3`` is
``2``, ``7 / 2`` is ``3.5``). ``//`` and ``%`` floor like Python's
(``-7 // 2`` is ``-4``, ``-7 % 2`` is ``1``), for decimals too.

Variables are looked up in the mapping given to :func:`evaluate`; ``a.b`` selects
key ``b`` of mapping ``a`` and ``a[i]`` selects item ``i`` (an int, 0-based, no
negative indexes) of a list or tuple, or key ``i`` (a string) of a mapping. The
value reached must be a ``str``, ``bool``, ``int``, ``Decimal`` or ``float``
(a float is converted through its shortest repr, so ``0.1`` becomes
``Decimal('0.1')``); a mapping, list, ``None`` or any other object is an error.

Limits (a tenant's flow must not be able to exhaust the node)
--------------------------------------------------------------
* :data:`MAX_LENGTH` characters of expression text;
* :data:`MAX_DEPTH` levels of nesting (parentheses, calls, indexes, operands,
  unary operators, conditionals);
* :data:`MAX_STRING` characters in any string the evaluator builds (checked
  before building where a result could grow, as in ``replace``);
* numbers below ``10 ** MAX_INTEGER_DIGITS`` in magnitude, with at most
  :data:`MAX_SCALE` decimal places (literals with more are refused, computed
  values and variables are rounded half-even to that many). There is no power
  operator. Every operation therefore works on at most ~50 digits.

Grammar (EBNF; lowest precedence first)
---------------------------------------
::

    expression  = condition ;
    condition   = or_expr [ "if" or_expr "else" condition ] ;   (* x if c else y *)
    or_expr     = and_expr { "or" and_expr } ;                   (* short-circuit *)
    and_expr    = not_expr { "and" not_expr } ;                  (* short-circuit *)
    not_expr    = "not" not_expr | comparison ;
    comparison  = additive [ comp_op additive ] ;                (* no chaining *)
    comp_op     = "==" | "!=" | "<" | "<=" | ">" | ">=" ;
    additive    = term { ( "+" | "-" ) term } ;
    term        = unary { ( "*" | "/" | "//" | "%" ) unary } ;
    unary       = "-" unary | primary ;
    primary     = number | string | "true" | "false" | call | variable
                | "(" expression ")" ;
    call        = name "(" [ expression { "," expression } ] ")" ;
    variable    = name { "." ( name | keyword ) | "[" expression "]" } ;
    number      = digit { digit } [ "." digit { digit } ] ;
    string      = "'" { char | escape } "'" | '"' { char | escape } '"' ;
    escape      = "\\" ( "\\" | "'" | '"' | "n" | "r" | "t"
                       | "u" hex hex hex hex ) ;
    name        = ( letter | "_" ) { letter | digit | "_" } ;   (* ASCII *)
    keyword     = "and" | "or" | "not" | "if" | "else" | "true" | "false" ;

A name that is a keyword is not a variable; ``if`` directly followed by ``(``
is the function ``if(c, a, b)``. Spaces, tabs and newlines separate tokens.

Functions
---------
=============================  ==================================================
``length(s)``                  number of characters
``replace(s, old, new)``       every occurrence of ``old`` replaced
``substring(s, start[, n])``   ``n`` characters (default: the rest) from
                               0-based ``start``; clamped to the string's end
``concat(x, ...)``             one or more values joined as text
``upper(s)`` ``lower(s)``      case mapping
``trim(s)``                    leading and trailing whitespace removed
``digits(s)``                  only the characters 0-9 kept
``contains(s, sub)``           ``startswith(s, p)``  ``endswith(s, p)``: booleans
``number(x)``                  a string such as ``" -12.50 "`` as a number
``string(x)``                  text of a value: ``12.50``, ``true``
``round(x[, n])``              half away from zero; to an int, or to ``n``
                               (0..20) decimal places
``abs(x)``                     absolute value
``min(x, ...)`` ``max(x, ...)``  of numbers, or of strings
``if(c, a, b)``                ``a`` when ``c`` is true, else ``b`` (lazy)
=============================  ==================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DecimalException,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from enum import Enum
from typing import TypeGuard

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_INTEGER_DIGITS",
    "MAX_LENGTH",
    "MAX_SCALE",
    "MAX_STRING",
    "Arithmetic",
    "ArithmeticStep",
    "Call",
    "Comparison",
    "Conditional",
    "Expr",
    "ExprError",
    "Field",
    "Index",
    "Literal",
    "Logical",
    "Unary",
    "Value",
    "Variable",
    "Variables",
    "eval_text",
    "evaluate",
    "format_value",
    "parse",
    "variables_used",
]

MAX_LENGTH = 1000
"""Longest expression text accepted by :func:`parse`, in characters."""
MAX_DEPTH = 50
"""Deepest nesting of sub-expressions accepted by :func:`parse`."""
MAX_STRING = 64 * 1024
"""Longest string the evaluator may build, in characters."""
MAX_INTEGER_DIGITS = 30
"""Numbers must stay below ``10 ** MAX_INTEGER_DIGITS`` in magnitude."""
MAX_SCALE = 20
"""Most decimal places a number keeps."""

Value = str | bool | int | Decimal
"""What an expression evaluates to (a number is an ``int`` or a ``Decimal``)."""
Variables = Mapping[str, object]
"""Variables for :func:`evaluate`: names to values, or to nested mappings and lists."""

_LIMIT = 10**MAX_INTEGER_DIGITS
# Operands have at most MAX_INTEGER_DIGITS + MAX_SCALE digits, so with this
# precision +, - and * are exact; only the final rounding to MAX_SCALE places
# (and the integer-based division below) ever round.
_CTX = Context(
    prec=4 * (MAX_INTEGER_DIGITS + MAX_SCALE),
    rounding=ROUND_HALF_EVEN,
    Emax=999_999,
    Emin=-999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
_QUANTUM = Decimal(1).scaleb(-MAX_SCALE)


class ExprError(ValueError):
    """An expression is invalid or cannot be evaluated.

    ``position`` is the 0-based offset in the expression text of the token at fault;
    ``message`` is the reason without the position.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at column {position}")
        self.message = message
        self.position = position


# ----------------------------------------------------------------------------- the tree
# ``pos`` is the offset of the node's own token (operator, name, literal, ``if``); it
# does not take part in equality, so ``parse("1+2") == parse("1 + 2")``.


@dataclass(frozen=True, slots=True)
class Literal:
    value: Value
    pos: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class Field:
    """``.name`` after a variable."""

    name: str
    pos: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class Index:
    """``[expr]`` after a variable."""

    index: Expr
    pos: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class Variable:
    """``name`` followed by any ``.field`` and ``[index]`` steps."""

    name: str
    steps: tuple[Field | Index, ...]
    pos: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" or "not"
    operand: Expr
    pos: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class ArithmeticStep:
    op: str  # "+", "-", "*", "/", "//", "%"
    operand: Expr
    pos: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class Arithmetic:
    """``first op1 x1 op2 x2 ...`` of one precedence level, folded left to right.

    Kept flat (not as nested binary nodes) so that a long ``a + b + c + ...`` is a
    shallow tree and nothing that walks the tree recurses once per operator.
    """

    first: Expr
    rest: tuple[ArithmeticStep, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    op: str  # "==", "!=", "<", "<=", ">", ">="
    left: Expr
    right: Expr
    pos: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class Logical:
    """``a and b and ...`` or ``a or b or ...``, short-circuit."""

    op: str  # "and" or "or"
    operands: tuple[Expr, ...]
    pos: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class Conditional:
    """``then if condition else otherwise``, and the function ``if(c, a, b)``."""

    condition: Expr
    then: Expr
    otherwise: Expr
    pos: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    pos: int = field(compare=False)


Expr = Literal | Variable | Unary | Arithmetic | Comparison | Logical | Conditional | Call
"""A parsed expression (immutable, hashable, comparable)."""


# ------------------------------------------------------------------------------ tokens
class _Kind(Enum):
    NUMBER = "number"
    STRING = "string"
    NAME = "name"
    OP = "operator"
    END = "end"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # source text (for NAME and OP: the name or operator)
    pos: int
    value: Value = ""  # NUMBER and STRING: the literal's value


KEYWORDS = frozenset({"and", "or", "not", "if", "else", "true", "false"})
# longest first, so that '//' is not read as two '/'
_OPERATORS = tuple("// == != <= >= < > + - * / % ( ) [ ] , .".split())
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_SPACE = " \t\r\n"
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")
_HINTS = {
    "=": "unexpected '='; use '==' to compare",
    "!": "unexpected '!'; use 'not' or '!='",
    "&": "unexpected '&'; use 'and'",
    "|": "unexpected '|'; use 'or'",
}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SPACE:
            i += 1
            continue
        if c.isascii() and (c.isalpha() or c == "_"):
            m = _NAME_RE.match(text, i)
            assert m is not None
            tokens.append(_Token(_Kind.NAME, m.group(), i))
            i = m.end()
        elif "0" <= c <= "9":
            tokens.append(_number_token(text, i))
            i += len(tokens[-1].text)
        elif c in "'\"":
            tok = _string_token(text, i)
            tokens.append(tok)
            i += len(tok.text)
        elif text.startswith("**", i):
            raise ExprError("'**' (power) is not supported", i)
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None:
                hint = _HINTS.get(c, f"unexpected character {c!r}")
                raise ExprError(hint, i)
            tokens.append(_Token(_Kind.OP, op, i))
            i += len(op)
    tokens.append(_Token(_Kind.END, "", n))
    return tokens


def _number_token(text: str, start: int) -> _Token:
    m = _NUMBER_RE.match(text, start)
    assert m is not None
    end = m.end()
    if end < len(text) and (text[end].isalnum() or text[end] in "_."):
        raise ExprError("invalid number", start)
    whole, frac = m.group(1), m.group(2)
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise ExprError(f"number too large (more than {MAX_INTEGER_DIGITS} digits)", start)
    value: int | Decimal
    if frac is None:
        value = int(whole)
    elif len(frac) > MAX_SCALE:
        raise ExprError(f"too many decimal places (at most {MAX_SCALE})", start)
    else:
        value = Decimal(m.group())
    return _Token(_Kind.NUMBER, m.group(), start, value)


def _string_token(text: str, start: int) -> _Token:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return _Token(_Kind.STRING, text[start : i + 1], start, "".join(out))
        if c != "\\":
            out.append(c)
            i += 1
            continue
        esc = text[i + 1 : i + 2]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif esc == "u":
            code = text[i + 2 : i + 6]
            if len(code) != 4 or not set(code) <= _HEX:
                raise ExprError("'\\u' needs four hex digits", i)
            point = int(code, 16)
            if 0xD800 <= point <= 0xDFFF:
                raise ExprError("'\\u' escape is a lone surrogate", i)
            out.append(chr(point))
            i += 6
        elif esc == "":
            break
        else:
            raise ExprError(f"unknown escape '\\{esc}'", i)
    raise ExprError("unterminated string", start)


# ------------------------------------------------------------------------------ parser
# Binding powers, lowest first; the EBNF in the module docstring is the same grammar.
_COND, _OR, _AND, _NOT, _CMP, _ADD, _MUL, _UNARY = range(1, 9)
_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_ADDITIVE = frozenset({"+", "-"})
_MULTIPLICATIVE = frozenset({"*", "/", "//", "%"})


def parse(text: str) -> Expr:
    """Compile ``text`` into an expression tree; raise :class:`ExprError` if it is invalid.

    Checks syntax, function names and argument counts, and literal ranges; variables
    and types are checked by :func:`evaluate`.
    """
    if not isinstance(text, str):
        raise ExprError(f"an expression is text, not {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        raise ExprError(
            f"expression too long ({len(text)} characters, at most {MAX_LENGTH})", MAX_LENGTH
        )
    return _Parser(_tokenize(text)).parse()


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._i = 0
        self._depth = 0

    def parse(self) -> Expr:
        expr = self._expression(0)
        tok = self._peek()
        if tok.kind is not _Kind.END:
            raise ExprError(f"unexpected {_describe(tok)}", tok.pos)
        return expr

    # -- token helpers
    def _peek(self) -> _Token:
        return self._tokens[self._i]

    def _next(self) -> _Token:
        tok = self._tokens[self._i]
        if tok.kind is not _Kind.END:
            self._i += 1
        return tok

    def _at(self, text: str) -> bool:
        tok = self._tokens[self._i]
        return tok.kind in (_Kind.OP, _Kind.NAME) and tok.text == text

    def _expect(self, text: str) -> _Token:
        tok = self._peek()
        if not self._at(text):
            raise ExprError(f"expected '{text}'", tok.pos)
        return self._next()

    # -- expressions
    def _expression(self, min_bp: int) -> Expr:
        if self._depth >= MAX_DEPTH:
            raise ExprError(
                f"expression nested too deeply (at most {MAX_DEPTH} levels)", self._peek().pos
            )
        self._depth += 1
        try:
            return self._infix(self._prefix(min_bp), min_bp)
        finally:
            self._depth -= 1

    def _infix(self, left: Expr, min_bp: int) -> Expr:
        while True:
            tok = self._peek()
            op = tok.text if tok.kind in (_Kind.OP, _Kind.NAME) else ""
            if op == "if" and min_bp <= _COND:
                self._next()
                condition = self._expression(_OR)
                self._expect("else")
                otherwise = self._expression(_COND)
                left = Conditional(condition, left, otherwise, tok.pos)
            elif op in ("or", "and") and min_bp <= (_OR if op == "or" else _AND):
                operands = [left]
                while self._at(op):
                    self._next()
                    operands.append(self._expression((_OR if op == "or" else _AND) + 1))
                left = Logical(op, tuple(operands), tok.pos)
            elif op in _COMPARISONS and tok.kind is _Kind.OP and min_bp <= _CMP:
                self._next()
                right = self._expression(_CMP + 1)
                after = self._peek()
                if after.kind is _Kind.OP and after.text in _COMPARISONS:
                    raise ExprError("comparisons cannot be chained; use 'and'", after.pos)
                left = Comparison(op, left, right, tok.pos)
            elif tok.kind is _Kind.OP and (
                (op in _ADDITIVE and min_bp <= _ADD) or (op in _MULTIPLICATIVE and min_bp <= _MUL)
            ):
                level = _ADDITIVE if op in _ADDITIVE else _MULTIPLICATIVE
                bp = (_ADD if op in _ADDITIVE else _MUL) + 1
                steps: list[ArithmeticStep] = []
                while self._peek().kind is _Kind.OP and self._peek().text in level:
                    op_tok = self._next()
                    steps.append(ArithmeticStep(op_tok.text, self._expression(bp), op_tok.pos))
                left = Arithmetic(left, tuple(steps))
            else:
                return left

    def _prefix(self, min_bp: int) -> Expr:
        tok = self._next()
        if tok.kind is _Kind.NUMBER or tok.kind is _Kind.STRING:
            return Literal(tok.value, tok.pos)
        if tok.kind is _Kind.OP:
            if tok.text == "(":
                inner = self._expression(0)
                self._expect(")")
                return inner
            if tok.text == "-":
                return Unary("-", self._expression(_UNARY), tok.pos)
        elif tok.kind is _Kind.NAME:
            if tok.text in ("true", "false"):
                return Literal(tok.text == "true", tok.pos)
            if tok.text == "not":
                if min_bp > _NOT:
                    raise ExprError("'not' must be in parentheses here", tok.pos)
                return Unary("not", self._expression(_NOT), tok.pos)
            if self._at("(") and (tok.text == "if" or tok.text not in KEYWORDS):
                return self._call(tok)
            if tok.text not in KEYWORDS:
                return self._variable(tok)
        what = "end of expression" if tok.kind is _Kind.END else _describe(tok)
        raise ExprError(f"expected an expression, found {what}", tok.pos)

    def _call(self, name: _Token) -> Expr:
        spec = _FUNCTIONS.get(name.text)
        if spec is None:
            raise ExprError(f"unknown function '{name.text}'", name.pos)
        self._expect("(")
        args: list[Expr] = []
        if not self._at(")"):
            args.append(self._expression(0))
            while self._at(","):
                self._next()
                args.append(self._expression(0))
            if not self._at(")"):
                raise ExprError("expected ',' or ')'", self._peek().pos)
        self._next()
        lo, hi = spec.min_args, spec.max_args
        if len(args) < lo or (hi is not None and len(args) > hi):
            if hi is None:
                wanted = f"at least {lo} argument{'s' if lo != 1 else ''}"
            elif lo == hi:
                wanted = f"{lo} argument{'s' if lo != 1 else ''}"
            else:
                wanted = f"{lo} to {hi} arguments"
            raise ExprError(f"{name.text}() takes {wanted} ({len(args)} given)", name.pos)
        if name.text == "if":
            return Conditional(args[0], args[1], args[2], name.pos)
        return Call(name.text, tuple(args), name.pos)

    def _variable(self, name: _Token) -> Expr:
        steps: list[Field | Index] = []
        while True:
            tok = self._peek()
            if self._at("."):
                self._next()
                field_tok = self._next()
                if field_tok.kind is not _Kind.NAME:
                    raise ExprError("expected a field name after '.'", field_tok.pos)
                steps.append(Field(field_tok.text, field_tok.pos))
            elif self._at("["):
                self._next()
                index = self._expression(0)
                self._expect("]")
                steps.append(Index(index, tok.pos))
            else:
                return Variable(name.text, tuple(steps), name.pos)


def _describe(tok: _Token) -> str:
    if tok.kind is _Kind.END:
        return "end of expression"
    return f"'{tok.text}'" if len(tok.text) <= 20 else f"'{tok.text[:20]}...'"


# -------------------------------------------------------------------------- evaluation
def evaluate(expr: Expr, variables: Variables) -> Value:
    """The value of a parsed expression; raise :class:`ExprError` if it cannot be computed.

    ``variables`` maps names to values (str, bool, int, Decimal, float) or to nested
    mappings and lists reached with ``a.b`` and ``a[0]``. It is only read.
    """
    return _eval(expr, variables)


def eval_text(text: str, variables: Variables) -> Value:
    """Parse and evaluate in one go (parse once with :func:`parse` when reusing it)."""
    return _eval(parse(text), variables)


def variables_used(expr: Expr) -> frozenset[str]:
    """Top-level variable names the expression refers to (``caller`` for ``caller.number``).

    Every branch counts, including ones a short-circuit or condition may skip.
    """
    names: set[str] = set()
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Variable):
            names.add(node.name)
            stack.extend(s.index for s in node.steps if isinstance(s, Index))
        elif isinstance(node, Unary):
            stack.append(node.operand)
        elif isinstance(node, Arithmetic):
            stack.append(node.first)
            stack.extend(s.operand for s in node.rest)
        elif isinstance(node, Comparison):
            stack += (node.left, node.right)
        elif isinstance(node, Logical):
            stack.extend(node.operands)
        elif isinstance(node, Conditional):
            stack += (node.condition, node.then, node.otherwise)
        elif isinstance(node, Call):
            stack.extend(node.args)
    return frozenset(names)


def format_value(value: Value) -> str:
    """The text of a value, as ``string()`` and ``concat()`` give it.

    Booleans are ``true``/``false``; decimals are written without exponent and keep
    their places (``12.50``).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _eval(expr: Expr, variables: Variables) -> Value:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Variable):
        return _lookup(expr, variables)
    if isinstance(expr, Arithmetic):
        acc = _eval(expr.first, variables)
        for step in expr.rest:
            acc = _arithmetic(step.op, acc, _eval(step.operand, variables), step.pos)
        return acc
    if isinstance(expr, Comparison):
        left = _eval(expr.left, variables)
        return _compare(expr.op, left, _eval(expr.right, variables), expr.pos)
    if isinstance(expr, Logical):
        stop = expr.op == "or"  # the value that decides the result early
        for operand in expr.operands:
            value = _eval(operand, variables)
            if not isinstance(value, bool):
                raise ExprError(f"'{expr.op}' needs booleans, got {_kind(value)}", _start(operand))
            if value is stop:
                return stop
        return not stop
    if isinstance(expr, Conditional):
        cond = _eval(expr.condition, variables)
        if not isinstance(cond, bool):
            raise ExprError(
                f"condition must be a boolean, got {_kind(cond)}", _start(expr.condition)
            )
        return _eval(expr.then if cond else expr.otherwise, variables)
    if isinstance(expr, Unary):
        value = _eval(expr.operand, variables)
        if expr.op == "not":
            if not isinstance(value, bool):
                raise ExprError(f"'not' needs a boolean, got {_kind(value)}", expr.pos)
            return not value
        if not _is_number(value):
            raise ExprError(f"'-' needs a number, got {_kind(value)}", expr.pos)
        return _number(_negate(value), expr.pos)
    # Call
    args = tuple(_eval(arg, variables) for arg in expr.args)
    return _FUNCTIONS[expr.name].impl(args, expr)


def _start(expr: Expr) -> int:
    """Offset where the text of ``expr`` begins (for errors about a whole operand)."""
    while True:
        if isinstance(expr, Arithmetic):
            expr = expr.first
        elif isinstance(expr, Comparison):
            expr = expr.left
        elif isinstance(expr, Logical):
            expr = expr.operands[0]
        elif isinstance(expr, Conditional):  # 'then if c else x' or 'if(c, then, x)'
            return min(expr.pos, _start(expr.then))
        else:
            return expr.pos


def _lookup(var: Variable, variables: Variables) -> Value:
    if var.name not in variables:
        raise ExprError(f"unknown variable '{var.name}'", var.pos)
    value: object = variables[var.name]
    shown = var.name
    for step in var.steps:
        if isinstance(step, Field):
            if not isinstance(value, Mapping):
                raise ExprError(
                    f"'{shown}' is {_describe_object(value)}, it has no field '{step.name}'",
                    step.pos,
                )
            shown = f"{shown}.{step.name}"
            if step.name not in value:
                raise ExprError(f"unknown variable '{shown}'", var.pos)
            value = value[step.name]
            continue
        key = _eval(step.index, variables)
        if isinstance(value, Mapping):
            if not isinstance(key, str):
                raise ExprError(
                    f"'{shown}' is a mapping; its index must be a string, got {_kind(key)}",
                    _start(step.index),
                )
            shown = f"{shown}[{key!r}]"
            if key not in value:
                raise ExprError(f"unknown variable '{shown}'", var.pos)
            value = value[key]
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
            if isinstance(key, bool) or not isinstance(key, int):
                raise ExprError(
                    f"'{shown}' is a list; its index must be a whole number, got {_kind(key)}",
                    _start(step.index),
                )
            if not 0 <= key < len(value):
                raise ExprError(
                    f"index {key} out of range for '{shown}' ({len(value)} items)",
                    _start(step.index),
                )
            shown = f"{shown}[{key}]"
            value = value[key]
        else:
            raise ExprError(
                f"'{shown}' is {_describe_object(value)}, it cannot be indexed", step.pos
            )
    return _from_variable(value, shown, var.pos)


def _from_variable(value: object, shown: str, pos: int) -> Value:
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int | Decimal | float):
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ExprError(f"variable '{shown}' is not a finite number", pos)
            value = Decimal(repr(value))
        elif isinstance(value, Decimal) and not value.is_finite():
            raise ExprError(f"variable '{shown}' is not a finite number", pos)
        return _number(value, pos, f"variable '{shown}' is out of range")
    raise ExprError(f"variable '{shown}' is {_describe_object(value)}, not a value", pos)


def _describe_object(value: object) -> str:
    if value is None:
        return "empty (None)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return "a list"
    if isinstance(value, str | bool | int | Decimal | float):
        return f"a {_kind(value) if not isinstance(value, float) else 'number'}"
    return f"of unsupported type {type(value).__name__}"


# ----------------------------------------------------------------------------- numbers
def _is_number(value: Value) -> TypeGuard[int | Decimal]:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _number(value: int | Decimal, pos: int, message: str = "") -> int | Decimal:
    """Check the magnitude limit; round a decimal to MAX_SCALE places; drop a '-' on zero."""
    if isinstance(value, int):
        if -_LIMIT < value < _LIMIT:
            return value
    else:
        try:
            exponent = value.as_tuple().exponent
            if isinstance(exponent, int) and exponent < -MAX_SCALE:
                if value.adjusted() >= MAX_INTEGER_DIGITS:
                    raise Overflow  # too big to round within the precision
                value = value.quantize(_QUANTUM, context=_CTX)
                if value.is_zero():  # it was below the last place
                    return Decimal(0)
            if value.is_zero():
                return value.copy_abs()
            if value.adjusted() < MAX_INTEGER_DIGITS:
                return value
        except DecimalException:
            pass
    raise ExprError(
        message
        or f"number out of range (at most {MAX_INTEGER_DIGITS} digits before the decimal point)",
        pos,
    )


def _negate(value: int | Decimal) -> int | Decimal:
    # copy_negate is exact; unary '-' on a Decimal would round to the thread's context
    return value.copy_negate() if isinstance(value, Decimal) else -value


def _ratio(value: int | Decimal) -> tuple[int, int]:
    if isinstance(value, int):
        return value, 1
    return value.as_integer_ratio()


def _divide(a: int | Decimal, b: int | Decimal, pos: int) -> int | Decimal:
    """Exact ``a / b`` rounded half-even to MAX_SCALE places, trailing zeros dropped."""
    (na, da), (nb, db) = _ratio(a), _ratio(b)
    num, den = na * db, da * nb
    if den < 0:
        num, den = -num, -den
    q, r = divmod(num * 10**MAX_SCALE, den)
    if 2 * r > den or (2 * r == den and q % 2 == 1):
        q += 1
    scale = MAX_SCALE
    while scale and q % 10 == 0:
        q //= 10
        scale -= 1
    if scale == 0 and isinstance(a, int) and isinstance(b, int):
        return _number(q, pos)
    return _number(Decimal(q).scaleb(-scale, _CTX), pos)


def _arithmetic(op: str, a: Value, b: Value, pos: int) -> Value:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > MAX_STRING:
            raise ExprError(_too_long(len(a) + len(b)), pos)
        return a + b
    if not (_is_number(a) and _is_number(b)):
        if op == "+" and (isinstance(a, str) or isinstance(b, str)):
            raise ExprError(
                f"cannot add {_kind(a)} and {_kind(b)}; use concat() to join text and numbers", pos
            )
        raise ExprError(f"'{op}' needs two numbers, got {_kind(a)} and {_kind(b)}", pos)
    if op in ("/", "//", "%") and b == 0:
        raise ExprError("division by zero", pos)
    both_int = isinstance(a, int) and isinstance(b, int)
    try:
        if op == "/":
            return _divide(a, b, pos)
        if op == "//" or op == "%":
            (na, da), (nb, db) = _ratio(a), _ratio(b)
            floor = (na * db) // (da * nb)
            if op == "//":
                return _number(floor if both_int else Decimal(floor), pos)
            if both_int:
                return _number(a % b, pos)
            return _number(_CTX.subtract(a, _CTX.multiply(b, floor)), pos)
        if isinstance(a, int) and isinstance(b, int):
            result: int | Decimal = a + b if op == "+" else a - b if op == "-" else a * b
            return _number(result, pos)
        if op == "+":
            return _number(_CTX.add(a, b), pos)
        if op == "-":
            return _number(_CTX.subtract(a, b), pos)
        return _number(_CTX.multiply(a, b), pos)
    except DecimalException:
        raise ExprError("number out of range", pos) from None


def _compare(op: str, a: Value, b: Value, pos: int) -> bool:
    if _is_number(a) and _is_number(b):
        pass
    elif isinstance(a, str) and isinstance(b, str):
        pass
    elif isinstance(a, bool) and isinstance(b, bool) and op in ("==", "!="):
        pass
    else:
        raise ExprError(f"cannot compare {_kind(a)} with {_kind(b)} using '{op}'", pos)
    if isinstance(a, str) and isinstance(b, str):
        order = (a > b) - (a < b)
    elif isinstance(a, bool) or isinstance(b, bool):
        order = 0 if a == b else 1  # two booleans, '==' or '!='
    else:
        x, y = _as_decimal(a), _as_decimal(b)
        order = (x > y) - (x < y)
    if op == "==":
        return order == 0
    if op == "!=":
        return order != 0
    if op == "<":
        return order < 0
    if op == "<=":
        return order <= 0
    if op == ">":
        return order > 0
    return order >= 0


def _as_decimal(value: Value) -> Decimal:
    assert isinstance(value, int | Decimal)
    return value if isinstance(value, Decimal) else Decimal(value)


def _too_long(n: int) -> str:
    return f"string too long ({n} characters, at most {MAX_STRING})"


# --------------------------------------------------------------------------- functions
@dataclass(frozen=True, slots=True)
class _Function:
    min_args: int
    max_args: int | None  # None: any number
    impl: Callable[[tuple[Value, ...], Call], Value]


def _arg_error(call: Call, i: int, wanted: str, got: Value) -> ExprError:
    return ExprError(
        f"{call.name}() argument {i + 1} must be {wanted}, got {_kind(got)}", _start(call.args[i])
    )


def _str_arg(args: tuple[Value, ...], call: Call, i: int) -> str:
    value = args[i]
    if not isinstance(value, str):
        raise _arg_error(call, i, "a string", value)
    return value


def _num_arg(args: tuple[Value, ...], call: Call, i: int) -> int | Decimal:
    value = args[i]
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _arg_error(call, i, "a number", value)
    return value


def _whole_arg(args: tuple[Value, ...], call: Call, i: int, lo: int, hi: int) -> int:
    value = _num_arg(args, call, i)
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ExprError(
                f"{call.name}() argument {i + 1} must be a whole number", _start(call.args[i])
            )
        value = int(value)
    if not lo <= value <= hi:
        raise ExprError(
            f"{call.name}() argument {i + 1} must be between {lo} and {hi}, got {value}",
            _start(call.args[i]),
        )
    return value


def _checked(text: str, call: Call) -> str:
    if len(text) > MAX_STRING:
        raise ExprError(_too_long(len(text)), call.pos)
    return text


def _fn_length(args: tuple[Value, ...], call: Call) -> Value:
    return len(_str_arg(args, call, 0))


def _fn_replace(args: tuple[Value, ...], call: Call) -> Value:
    s, old, new = (_str_arg(args, call, i) for i in range(3))
    count = s.count(old)  # for old == "": len(s) + 1, as str.replace inserts
    size = len(s) + count * (len(new) - len(old))
    if size > MAX_STRING:  # refuse before building it
        raise ExprError(_too_long(size), call.pos)
    return s.replace(old, new)


def _fn_substring(args: tuple[Value, ...], call: Call) -> Value:
    s = _str_arg(args, call, 0)
    start = _whole_arg(args, call, 1, 0, _LIMIT)
    if len(args) == 2:
        return s[start:]
    length = _whole_arg(args, call, 2, 0, _LIMIT)
    return s[start : start + length]


def _fn_concat(args: tuple[Value, ...], call: Call) -> Value:
    parts = [format_value(a) for a in args]
    size = sum(len(p) for p in parts)
    if size > MAX_STRING:
        raise ExprError(_too_long(size), call.pos)
    return "".join(parts)


def _fn_upper(args: tuple[Value, ...], call: Call) -> Value:
    return _checked(_str_arg(args, call, 0).upper(), call)  # may grow: 'ß' -> 'SS'


def _fn_lower(args: tuple[Value, ...], call: Call) -> Value:
    return _checked(_str_arg(args, call, 0).lower(), call)


def _fn_trim(args: tuple[Value, ...], call: Call) -> Value:
    return _str_arg(args, call, 0).strip()


_NOT_DIGITS_RE = re.compile(r"[^0-9]+")


def _fn_digits(args: tuple[Value, ...], call: Call) -> Value:
    return _NOT_DIGITS_RE.sub("", _str_arg(args, call, 0))


def _fn_contains(args: tuple[Value, ...], call: Call) -> Value:
    return _str_arg(args, call, 1) in _str_arg(args, call, 0)


def _fn_startswith(args: tuple[Value, ...], call: Call) -> Value:
    return _str_arg(args, call, 0).startswith(_str_arg(args, call, 1))


def _fn_endswith(args: tuple[Value, ...], call: Call) -> Value:
    return _str_arg(args, call, 0).endswith(_str_arg(args, call, 1))


_NUMERIC_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


def _fn_number(args: tuple[Value, ...], call: Call) -> Value:
    value = args[0]
    if _is_number(value):
        return value
    if not isinstance(value, str):
        raise _arg_error(call, 0, "a string or a number", value)
    text = value.strip()
    if len(text) > 2 * (MAX_INTEGER_DIGITS + MAX_SCALE) or not _NUMERIC_RE.fullmatch(text):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ExprError(f"not a number: {shown!r}", _start(call.args[0]))
    result: int | Decimal = int(text) if "." not in text else Decimal(text)
    return _number(result, _start(call.args[0]), f"number out of range: {text!r}")


def _fn_string(args: tuple[Value, ...], call: Call) -> Value:
    return _checked(format_value(args[0]), call)


def _fn_round(args: tuple[Value, ...], call: Call) -> Value:
    x = _num_arg(args, call, 0)
    if len(args) == 1:
        if isinstance(x, int):
            return x
        return _number(int(x.quantize(Decimal(1), ROUND_HALF_UP, _CTX)), call.pos)
    places = _whole_arg(args, call, 1, 0, MAX_SCALE)
    if isinstance(x, int):
        return x
    return _number(x.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP, _CTX), call.pos)


def _fn_abs(args: tuple[Value, ...], call: Call) -> Value:
    x = _num_arg(args, call, 0)
    return x if x >= 0 else _number(_negate(x), call.pos)


def _extreme(args: tuple[Value, ...], call: Call, pick_max: bool) -> Value:
    if isinstance(args[0], str):
        strings = [_str_arg(args, call, i) for i in range(len(args))]
        return max(strings) if pick_max else min(strings)
    numbers = [_as_decimal(_num_arg(args, call, i)) for i in range(len(args))]
    best = (
        max(range(len(args)), key=numbers.__getitem__)
        if pick_max
        else min(range(len(args)), key=numbers.__getitem__)
    )
    return args[best]


def _fn_min(args: tuple[Value, ...], call: Call) -> Value:
    return _extreme(args, call, pick_max=False)


def _fn_max(args: tuple[Value, ...], call: Call) -> Value:
    return _extreme(args, call, pick_max=True)


def _fn_if(args: tuple[Value, ...], call: Call) -> Value:  # pragma: no cover
    raise AssertionError("if() is parsed into a Conditional")


_FUNCTIONS: dict[str, _Function] = {
    "length": _Function(1, 1, _fn_length),
    "replace": _Function(3, 3, _fn_replace),
    "substring": _Function(2, 3, _fn_substring),
    "concat": _Function(1, None, _fn_concat),
    "upper": _Function(1, 1, _fn_upper),
    "lower": _Function(1, 1, _fn_lower),
    "trim": _Function(1, 1, _fn_trim),
    "digits": _Function(1, 1, _fn_digits),
    "contains": _Function(2, 2, _fn_contains),
    "startswith": _Function(2, 2, _fn_startswith),
    "endswith": _Function(2, 2, _fn_endswith),
    "number": _Function(1, 1, _fn_number),
    "string": _Function(1, 1, _fn_string),
    "round": _Function(1, 2, _fn_round),
    "abs": _Function(1, 1, _fn_abs),
    "min": _Function(1, None, _fn_min),
    "max": _Function(1, None, _fn_max),
    "if": _Function(3, 3, _fn_if),
}

FUNCTIONS = frozenset(_FUNCTIONS)
"""Names of the functions an expression may call."""
