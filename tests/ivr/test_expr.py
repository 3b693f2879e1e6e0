"""The IVR expression language (appliance/ivr/expr.py, requirement R-4.5).

Tables for every operator and function, errors with their positions, the limits, and
hypothesis properties: any text parses or raises ExprError (never anything else), any
parsed expression evaluates or raises ExprError, and random arithmetic agrees with a
reference computed here with Fraction.
"""

from __future__ import annotations

import ast
import dataclasses
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from appliance.ivr import expr as expr_module
from appliance.ivr.expr import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_STRING,
    Arithmetic,
    Call,
    Conditional,
    Expr,
    ExprError,
    Literal,
    Variable,
    eval_text,
    evaluate,
    format_value,
    parse,
    variables_used,
)

VARS: dict[str, Any] = {
    "caller": {"number": "+86 (20) 8888-0001", "name": "Li Wei", "vip": True},
    "result": {"items": [{"sku": "A1", "price": Decimal("9.90")}, {"sku": "B2", "price": 5}]},
    "tries": 2,
    "balance": Decimal("12.50"),
    "rate": 0.1,  # a float from JSON: becomes Decimal('0.1')
    "account": "00421337",
    "empty": "",
    "flag": False,
    "codes": ["x", "y", "z"],
    "table": {"key with space": "spaced", "if": "keyword"},
}


def ev(text: str, variables: dict[str, Any] | None = None) -> Any:
    return eval_text(text, VARS if variables is None else variables)


def error(text: str, variables: dict[str, Any] | None = None) -> ExprError:
    with pytest.raises(ExprError) as info:
        ev(text, variables)
    return info.value


# ---------------------------------------------------------------------------- literals
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("007", 7),
        ("3.25", Decimal("3.25")),
        ("12.50", Decimal("12.50")),
        ("true", True),
        ("false", False),
        ("'single'", "single"),
        ('"double"', "double"),
        ("''", ""),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'back\\\\slash'", "back\\slash"),
        ("'a\\nb\\tc\\rd'", "a\nb\tc\rd"),
        ("'caf\\u00e9'", "café"),
        ("'\"'", '"'),
        ('"\'"', "'"),
        ("'中文'", "中文"),
    ],
)
def test_literals(text: str, value: object) -> None:
    result = ev(text)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("'abc", "unterminated string", 0),
        ("1 + \"abc'", "unterminated string", 4),
        ("'abc\\", "unterminated string", 0),
        ("'a\\qb'", "unknown escape '\\q'", 2),
        ("'\\u12'", "'\\u' needs four hex digits", 1),
        ("'\\uzzzz'", "'\\u' needs four hex digits", 1),
        ("'\\ud800'", "lone surrogate", 1),
        ("1.", "invalid number", 0),
        ("1.5.2", "invalid number", 0),
        ("12abc", "invalid number", 0),
        (".5", "expected an expression, found '.'", 0),
        ("1" * 31, "number too large", 0),
        ("0.123456789012345678901", "too many decimal places", 0),
    ],
)
def test_literal_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    assert message in info.value.message
    assert info.value.position == position


def test_literal_range_edges() -> None:
    assert ev("9" * 30) == 10**30 - 1
    assert ev("0" * 40 + "1") == 1  # leading zeros do not count
    assert ev("0." + "0" * 19 + "1") == Decimal("1e-20")


# -------------------------------------------------------------------------- arithmetic
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 + 2", 3),
        ("5 - 8", -3),
        ("6 * 7", 42),
        ("7 / 2", Decimal("3.5")),
        ("6 / 3", 2),
        ("1 / 4", Decimal("0.25")),
        ("1 / 3", Decimal("0.33333333333333333333")),
        ("2 / 3", Decimal("0.66666666666666666667")),
        ("1 / 8 * 8", Decimal("1.000")),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 // -2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("7 % -3", -2),
        ("7.5 // 2", Decimal(3)),
        ("-7.5 // 2", Decimal(-4)),
        ("7.5 % 2", Decimal("1.5")),
        ("-7.5 % 2", Decimal("0.5")),
        ("-3", -3),
        ("--3", 3),
        ("- - 3", 3),
        ("-(2 - 5)", 3),
        ("-0.0", Decimal("0.0")),
        ("1.10 + 2.20", Decimal("3.30")),
        ("12.50 * 2", Decimal("25.00")),
        ("9.99 * 3", Decimal("29.97")),
        ("10 - 0.01", Decimal("9.99")),
        ("1.5 / 0.5", Decimal(3)),
        ("rate * 3", Decimal("0.3")),
        ("balance + tries", Decimal("14.50")),
    ],
)
def test_arithmetic(text: str, value: int | Decimal) -> None:
    result = ev(text)
    assert result == value
    assert type(result) is type(value)
    if isinstance(value, Decimal):  # exponent too: 3.30 keeps its cents
        assert str(result) == str(value)


def test_decimal_exactness() -> None:
    assert ev("0.1 + 0.2") == Decimal("0.3")
    assert ev("0.1 + 0.2 == 0.3") is True
    assert ev("0.1 * 3 == 0.3") is True
    assert ev("1 - 0.9") == Decimal("0.1")
    assert ev("rate + 0.2 == 0.3") is True  # a float variable is converted exactly
    assert ev("string(0.1 + 0.2)") == "0.3"
    # no float ever comes out
    for text in ("0.5 * 2", "7 / 2", "rate", "1 / 3", "round(2.5, 1)"):
        assert not isinstance(ev(text), float)


def test_string_concatenation_with_plus() -> None:
    assert ev("'a' + 'b' + \"c\"") == "abc"
    assert ev("caller.name + ', ' + account") == "Li Wei, 00421337"
    err = error("'a' + 1")
    assert err.message.startswith("cannot add string and number; use concat()")
    assert err.position == 4


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("1 / 0", "division by zero", 2),
        ("1 // 0", "division by zero", 2),
        ("1 % 0.0", "division by zero", 2),
        ("balance / (tries - 2)", "division by zero", 8),
        ("'a' - 'b'", "'-' needs two numbers, got string and string", 4),
        ("2 * 'x'", "'*' needs two numbers, got number and string", 2),
        ("true + 1", "'+' needs two numbers, got boolean and number", 5),
        ("-'x'", "'-' needs a number, got string", 0),
        ("- true", "'-' needs a number, got boolean", 0),
    ],
)
def test_arithmetic_errors(text: str, message: str, position: int) -> None:
    err = error(text)
    assert err.message == message
    assert err.position == position
    assert str(err) == f"{message} at column {position}"
    assert isinstance(err, ValueError)


# ------------------------------------------------------------- comparisons and logic
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 == 1", True),
        ("1 == 1.0", True),
        ("1 != 2", True),
        ("2 < 10", True),
        ("2 <= 2", True),
        ("3 > 2.99", True),
        ("3 >= 3.01", False),
        ("'abc' == 'abc'", True),
        ("'abc' != 'abd'", True),
        ("'abc' < 'abd'", True),
        ("'b' > 'abc'", True),
        ("'B' < 'a'", True),  # code point order, no locale
        ("true == true", True),
        ("true != false", True),
        ("account == '00421337'", True),
        ("length(account) >= 4", True),
        ("true and true", True),
        ("true and false", False),
        ("false or true", True),
        ("false or false", False),
        ("not true", False),
        ("not not true", True),
        ("not 1 == 2", True),
        ("1 < 2 and 2 < 3", True),
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("not false and false", False),  # (not false) and false
        ("false and x", False),  # short-circuit: x is never looked up
        ("true or x", True),
        ("false and 1 / 0 == 1", False),
        ("true and true and true and false", False),
        ("false or false or false or true", True),
    ],
)
def test_comparisons_and_logic(text: str, value: bool) -> None:
    assert ev(text) is value


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("'1' == 1", "cannot compare string with number using '=='", 4),
        ("account == 421337", "cannot compare string with number using '=='", 8),
        ("true < false", "cannot compare boolean with boolean using '<'", 5),
        ("1 != true", "cannot compare number with boolean using '!='", 2),
        ("1 and true", "'and' needs booleans, got number", 0),
        ("true and 'x'", "'and' needs booleans, got string", 9),
        ("false or 0", "'or' needs booleans, got number", 9),
        ("not 'x'", "'not' needs a boolean, got string", 0),
        ("1 if 'yes' else 2", "condition must be a boolean, got string", 5),
        ("if(tries, 1, 2)", "condition must be a boolean, got number", 3),
    ],
)
def test_type_errors(text: str, message: str, position: int) -> None:
    err = error(text)
    assert (err.message, err.position) == (message, position)


def test_conditional() -> None:
    assert ev("'many' if tries > 1 else 'few'") == "many"
    assert ev("'many' if tries > 5 else 'few'") == "few"
    assert ev("1 if false else 2 if false else 3") == 3  # right-associative
    assert ev("1 if true else 2 if false else 3") == 1
    assert ev("(1 if true else 2) + 10") == 11
    assert ev("1 + 1 if true else 0") == 2  # lowest precedence: (1 + 1) if ...
    assert ev("'x' if true or false else 'y'") == "x"
    assert ev("1 if true else x") == 1  # lazy: the other branch is not evaluated
    assert ev("if(true, 'a', x)") == "a"
    assert ev("if(false, x, 'b')") == "b"
    assert ev("if(tries == 2, 'two', 'other')") == "two"
    assert parse("if(c, a, b)") == parse("a if c else b")


# ------------------------------------------------------------------------- precedence
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),  # left-associative
        ("10 - (4 - 3)", 9),
        ("2 * 3 % 4", 2),
        ("2 * (3 % 4)", 6),
        ("100 / 10 / 5", 2),
        ("7 // 2 * 2", 6),
        ("-2 * 3", -6),
        ("-2 + 3", 1),
        ("-(2 + 3)", -5),
        ("2 - -3", 5),
        ("1 + 2 == 3", True),
        ("1 + 2 * 3 == 7 and not 2 > 3", True),
        ("2 * 3 + 4 * 5 - 6 // 4", 25),
        ("((((1))))", 1),
        ("'a' + 'b' == 'ab'", True),
    ],
)
def test_precedence(text: str, value: object) -> None:
    assert ev(text) == value


def test_tree_shape_and_immutability() -> None:
    tree = parse("a + b * c")
    assert isinstance(tree, Arithmetic)
    assert tree.first == Variable("a", (), 0)
    assert [s.op for s in tree.rest] == ["+"]
    assert isinstance(tree.rest[0].operand, Arithmetic)
    # positions do not take part in equality
    assert parse("1+2") == parse(" 1 +   2 ")
    assert parse("1+2") != parse("2+1")
    assert hash(parse("length(x)")) == hash(parse("length( x )"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        tree.first = Literal(1, 0)  # type: ignore[misc]
    call = parse("length('x')")
    assert call == Call("length", (Literal("x", 7),), 0)
    assert isinstance(parse("if(a, b, c)"), Conditional)


def test_long_chains_stay_shallow() -> None:
    text = "1" + " + 1" * 249  # 997 characters, 250 operands, one tree level
    assert len(text) <= MAX_LENGTH
    tree = parse(text)
    assert isinstance(tree, Arithmetic) and len(tree.rest) == 249
    assert evaluate(tree, {}) == 250
    assert evaluate(parse(" and ".join(["true"] * 100)), {}) is True
    assert variables_used(parse(" + ".join(["a"] * 250))) == {"a"}


# -------------------------------------------------------------------------- variables
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("tries", 2),
        ("caller.number", "+86 (20) 8888-0001"),
        ("caller.vip", True),
        ("result.items[0].sku", "A1"),
        ("result.items[1].price", 5),
        ("result.items[0].price", Decimal("9.90")),
        ("result.items[tries - 1].sku", "B2"),
        ("codes[0] + codes[2]", "xz"),
        ("table['key with space']", "spaced"),
        ("table.if", "keyword"),  # keywords are fine as field names
        ("result['items'][1]['sku']", "B2"),
        ("_private", 1),
        ("x9", 9),
    ],
)
def test_variables(text: str, value: object) -> None:
    variables = {**VARS, "_private": 1, "x9": 9}
    assert ev(text, variables) == value


def test_variable_values_are_converted() -> None:
    assert ev("rate") == Decimal("0.1")
    assert ev("x", {"x": 1e22}) == Decimal("1e22")
    assert ev("x", {"x": Decimal("0.1234567890123456789012345")}) == Decimal(
        "0.12345678901234567890"
    )
    assert ev("x[1]", {"x": (1, 2)}) == 2


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("nobody", "unknown variable 'nobody'", 0),
        ("1 + caller.numbr", "unknown variable 'caller.numbr'", 4),
        ("result.items[0].colour", "unknown variable 'result.items[0].colour'", 0),
        ("table['nope']", "unknown variable 'table['nope']'", 0),
        ("caller.number.x", "'caller.number' is a string, it has no field 'x'", 14),
        ("tries[0]", "'tries' is a number, it cannot be indexed", 5),
        ("codes[3]", "index 3 out of range for 'codes' (3 items)", 6),
        ("codes[-1]", "index -1 out of range for 'codes' (3 items)", 6),
        ("codes['a']", "'codes' is a list; its index must be a whole number, got string", 6),
        ("codes[true]", "'codes' is a list; its index must be a whole number, got boolean", 6),
        ("caller[0]", "'caller' is a mapping; its index must be a string, got number", 7),
        ("caller", "variable 'caller' is a mapping, not a value", 0),
        ("result.items", "variable 'result.items' is a list, not a value", 0),
        ("nothing", "variable 'nothing' is empty (None), not a value", 0),
        ("obj", "variable 'obj' is of unsupported type object, not a value", 0),
        ("nan", "variable 'nan' is not a finite number", 0),
        ("inf", "variable 'inf' is not a finite number", 0),
        ("dnan", "variable 'dnan' is not a finite number", 0),
        ("huge", "variable 'huge' is out of range", 0),
    ],
)
def test_variable_errors(text: str, message: str, position: int) -> None:
    variables = {
        **VARS,
        "nothing": None,
        "obj": object(),
        "nan": float("nan"),
        "inf": float("inf"),
        "dnan": Decimal("NaN"),
        "huge": 10**30,
    }
    err = error(text, variables)
    assert (err.message, err.position) == (message, position)


def test_variables_used() -> None:
    assert variables_used(parse("1 + 2")) == frozenset()
    assert variables_used(parse("caller.number")) == {"caller"}
    assert variables_used(parse("result.items[i + 1].sku")) == {"result", "i"}
    assert variables_used(parse("a if b else c")) == {"a", "b", "c"}
    assert variables_used(parse("if(a, b, c)")) == {"a", "b", "c"}
    assert variables_used(parse("x and not y or z < w")) == {"x", "y", "z", "w"}
    assert variables_used(parse("concat(a, length(b), -c)")) == {"a", "b", "c"}
    assert variables_used(parse("length")) == {"length"}  # a variable, not the function
    assert isinstance(variables_used(parse("a")), frozenset)


# -------------------------------------------------------------------------- functions
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("length('hello')", 5),
        ("length('')", 0),
        ("length('héllo')", 5),
        ("length(account)", 8),
        ("replace('a-b-c', '-', '')", "abc"),
        ("replace('aaa', 'a', 'bb')", "bbbbbb"),
        ("replace('abc', 'x', 'y')", "abc"),
        ("replace('ab', '', '.')", ".a.b."),
        ("substring('hello', 1)", "ello"),
        ("substring('hello', 1, 3)", "ell"),
        ("substring('hello', 0, 0)", ""),
        ("substring('hello', 3, 100)", "lo"),
        ("substring('hello', 10)", ""),
        ("substring('hello', 2.0, 1)", "l"),
        ("concat('a')", "a"),
        ("concat('a', 'b', 'c')", "abc"),
        ("concat('n=', 42, ' x=', 12.50, ' ', true, '/', false)", "n=42 x=12.50 true/false"),
        ("concat('+', digits(caller.number))", "+862088880001"),
        ("upper('Abc')", "ABC"),
        ("upper('straße')", "STRASSE"),
        ("lower('ÀBC')", "àbc"),
        ("trim('  a b \\t\\n')", "a b"),
        ("digits('+86 (20) 8888-0001')", "862088880001"),
        ("digits('١٢٣ 45')", "45"),  # only ASCII 0-9
        ("contains('hello', 'ell')", True),
        ("contains('hello', 'xyz')", False),
        ("contains('hello', '')", True),
        ("startswith(caller.number, '+86')", True),
        ("startswith('abc', 'b')", False),
        ("endswith('abc', 'bc')", True),
        ("number('42')", 42),
        ("number(' -12.50 ')", Decimal("-12.50")),
        ("number('+7')", 7),
        ("number('.5')", Decimal("0.5")),
        ("number('5.')", Decimal("5")),
        ("number(account)", 421337),
        ("number(3.5)", Decimal("3.5")),
        ("number('0.1') + number('0.2')", Decimal("0.3")),
        ("string(42)", "42"),
        ("string(-12.50)", "-12.50"),
        ("string(1 / 4)", "0.25"),
        ("string(true)", "true"),
        ("string('x')", "x"),
        ("round(2.5)", 3),
        ("round(-2.5)", -3),
        ("round(2.4)", 2),
        ("round(7)", 7),
        ("round(1.005, 2)", Decimal("1.01")),
        ("round(2.675, 1)", Decimal("2.7")),
        ("round(12.5, 2)", Decimal("12.50")),
        ("round(7, 2)", 7),
        ("round(1 / 3, 4)", Decimal("0.3333")),
        ("abs(-3)", 3),
        ("abs(3)", 3),
        ("abs(-1.25)", Decimal("1.25")),
        ("min(3, 1, 2)", 1),
        ("max(3, 1.5, 2)", 3),
        ("max(1, 2.5, -3)", Decimal("2.5")),
        ("min(7)", 7),
        ("min('b', 'a', 'c')", "a"),
        ("max('b', 'a', 'c')", "c"),
        ("if(true, 1, 2)", 1),
        ("if(false, 1, 2)", 2),
    ],
)
def test_functions(text: str, value: object) -> None:
    result = ev(text)
    assert result == value
    assert type(result) is type(value)
    if isinstance(value, Decimal):
        assert str(result) == str(value)


def test_every_function_is_tested() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    for name in FUNCTIONS:
        assert f"{name}(" in source, name


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("length(1)", "length() argument 1 must be a string, got number", 7),
        ("length(true)", "length() argument 1 must be a string, got boolean", 7),
        ("replace('a', 1, 'b')", "replace() argument 2 must be a string, got number", 13),
        ("upper(1 + 2)", "upper() argument 1 must be a string, got number", 6),
        ("contains('a', 1)", "contains() argument 2 must be a string, got number", 14),
        ("substring('abc', 'x')", "substring() argument 2 must be a number, got string", 17),
        ("substring('abc', -1)", "substring() argument 2 must be between 0 and ", 17),
        ("substring('abc', 0, -1)", "substring() argument 3 must be between 0 and ", 20),
        ("substring('abc', 1.5)", "substring() argument 2 must be a whole number", 17),
        ("number('12a')", "not a number: '12a'", 7),
        ("number('')", "not a number: ''", 7),
        ("number('1e5')", "not a number: '1e5'", 7),
        ("number('١٢')", "not a number: '١٢'", 7),
        ("number(true)", "number() argument 1 must be a string or a number, got boolean", 7),
        ("number('" + "9" * 31 + "')", "number out of range: '" + "9" * 31 + "'", 7),
        ("round('1')", "round() argument 1 must be a number, got string", 6),
        ("round(1.5, 21)", "round() argument 2 must be between 0 and 20, got 21", 11),
        ("round(1.5, -1)", "round() argument 2 must be between 0 and 20, got -1", 11),
        ("abs('x')", "abs() argument 1 must be a number, got string", 4),
        ("min(1, 'a')", "min() argument 2 must be a number, got string", 7),
        ("max('a', 1)", "max() argument 2 must be a string, got number", 9),
        ("max(true, false)", "max() argument 1 must be a number, got boolean", 4),
    ],
)
def test_function_type_errors(text: str, message: str, position: int) -> None:
    err = error(text)
    assert err.message.startswith(message), err.message
    assert err.position == position


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("foo(1)", "unknown function 'foo'", 0),
        ("1 + Length('x')", "unknown function 'Length'", 4),
        ("length()", "length() takes 1 argument (0 given)", 0),
        ("length('a', 'b')", "length() takes 1 argument (2 given)", 0),
        ("replace('a', 'b')", "replace() takes 3 arguments (2 given)", 0),
        ("substring('a')", "substring() takes 2 to 3 arguments (1 given)", 0),
        ("round(1, 2, 3)", "round() takes 1 to 2 arguments (3 given)", 0),
        ("concat()", "concat() takes at least 1 argument (0 given)", 0),
        ("max()", "max() takes at least 1 argument (0 given)", 0),
        ("if(true, 1)", "if() takes 3 arguments (2 given)", 0),
    ],
)
def test_function_errors_at_parse_time(text: str, message: str, position: int) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    assert (info.value.message, info.value.position) == (message, position)


def test_format_value() -> None:
    assert format_value(True) == "true"
    assert format_value(Decimal("1E+3")) == "1000"
    assert format_value(Decimal("0.00000001")) == "0.00000001"
    assert format_value(-5) == "-5"
    assert format_value("x") == "x"


# ----------------------------------------------------------------------- syntax errors
@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "expected an expression, found end of expression", 0),
        ("   ", "expected an expression, found end of expression", 3),
        ("(1 + 2", "expected ')'", 6),
        ("length(account", "expected ',' or ')'", 14),
        ("length(account, 'x' 'y')", "expected ',' or ')'", 20),
        ("(tries + 1) * (2 - 1", "expected ')'", 20),
        ("1 +", "expected an expression, found end of expression", 3),
        ("1 + * 2", "expected an expression, found '*'", 4),
        ("1 2", "unexpected '2'", 2),
        ("1)", "unexpected ')'", 1),
        ("a b", "unexpected 'b'", 2),
        ("x.", "expected a field name after '.'", 2),
        ("x.1", "expected a field name after '.'", 2),
        ("x[1", "expected ']'", 3),
        ("x[]", "expected an expression, found ']'", 2),
        ("1 < 2 < 3", "comparisons cannot be chained; use 'and'", 6),
        ("a == b != c", "comparisons cannot be chained; use 'and'", 7),
        ("1 if true", "expected 'else'", 9),
        ("if true", "expected an expression, found 'if'", 0),
        ("else", "expected an expression, found 'else'", 0),
        ("true and", "expected an expression, found end of expression", 8),
        ("1 + not true", "'not' must be in parentheses here", 4),
        ("1 == not true", "'not' must be in parentheses here", 5),
        ("-not true", "'not' must be in parentheses here", 1),
        ("a = 1", "unexpected '='; use '==' to compare", 2),
        ("!a", "unexpected '!'; use 'not' or '!='", 0),
        ("a && b", "unexpected '&'; use 'and'", 2),
        ("a || b", "unexpected '|'; use 'or'", 2),
        ("2 ** 8", "'**' (power) is not supported", 2),
        ("a @ b", "unexpected character '@'", 2),
        ("café", "unexpected character 'é'", 3),
        ("f(1,)", "unknown function 'f'", 0),
        ("length(1,)", "expected an expression, found ')'", 9),
        ("1 if true else", "expected an expression, found end of expression", 14),
    ],
)
def test_syntax_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    err = info.value
    assert (err.message, err.position) == (message, position)
    assert str(err) == f"{message} at column {position}"


def test_parse_rejects_non_text() -> None:
    with pytest.raises(ExprError):
        parse(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ limits
def test_expression_length_limit() -> None:
    ok = "1" + " + 1" * ((MAX_LENGTH - 1) // 4)
    assert len(ok) <= MAX_LENGTH
    parse(ok)
    parse("'" + "x" * (MAX_LENGTH - 2) + "'")
    with pytest.raises(ExprError) as info:
        parse("'" + "x" * (MAX_LENGTH - 1) + "'")
    assert info.value.message == f"expression too long ({MAX_LENGTH + 1} characters, at most 1000)"
    assert info.value.position == MAX_LENGTH


@pytest.mark.parametrize(
    ("make", "ok_at"),
    [
        (lambda n: "(" * n + "1" + ")" * n, MAX_DEPTH - 1),
        (lambda n: "-" * n + "1", MAX_DEPTH - 1),
        (lambda n: "not " * n + "true", MAX_DEPTH - 1),
        (lambda n: "abs(" * n + "1" + ")" * n, MAX_DEPTH - 1),
        (lambda n: "x[" * n + "0" + "]" * n, MAX_DEPTH - 1),
        (lambda n: "1 if true else " * n + "2", MAX_DEPTH - 1),
        (lambda n: "1 + (" * n + "1" + ")" * n, (MAX_DEPTH - 1) // 2),
    ],
)
def test_nesting_limit(make: Any, ok_at: int) -> None:
    """The whole expression is level 1; each nested construct adds one."""
    parse(make(ok_at))
    with pytest.raises(ExprError) as info:
        parse(make(ok_at + 1))
    assert info.value.message == f"expression nested too deeply (at most {MAX_DEPTH} levels)"


def test_deep_nesting_never_overflows_the_stack() -> None:
    for text in ("(" * MAX_LENGTH, "-" * MAX_LENGTH, "not " * 250, "abs(" * 250, "x[" * 500):
        with pytest.raises(ExprError):
            parse(text)
    deepest = "(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1)
    assert eval_text(deepest, {}) == 1


def test_string_length_limit() -> None:
    half = "x" * (MAX_STRING // 2)
    variables = {"half": half, "big": half + "y", "a": "a" * 1000}
    assert len(ev("half + half", variables)) == MAX_STRING
    assert len(ev("concat(half, half)", variables)) == MAX_STRING
    for text, size in [
        ("half + big", MAX_STRING + 1),
        ("concat(half, big)", MAX_STRING + 1),
        ("concat(half, 1, half)", MAX_STRING + 1),
        ("replace(a, 'a', a)", 1000 * 1000),  # refused before it is built
        ("replace(a, '', a)", 1000 + 1001 * 1000),
        ("replace(replace(half, 'x', 'xx'), 'x', 'xx')", 4 * len(half)),
    ]:
        err = error(text, variables)
        assert err.message == f"string too long ({size} characters, at most {MAX_STRING})", text
    assert ev("length(replace(a, 'a', 'aaaaaaaaaaaaaaaa'))", variables) == 16000


def test_number_limits() -> None:
    assert ev("99999999999999999999999999999 * 10") == 10**30 - 10
    for text in (
        "999999999999999999999999999999 + 1",
        "-999999999999999999999999999999 - 1",
        "100000000000000 * 10000000000000000",
        "1 / 0.00000000000000000001 * 10000000000",
        "999999999999999999999999999999.5 + 0.5",
        "number('1000000000000000000000000000000') ",
    ):
        err = error(text)
        assert "out of range" in err.message, text
    # more than MAX_SCALE places are rounded half-even
    assert ev("0.00000000000000000001 / 2") == Decimal(0)
    assert ev("0.00000000000000000003 / 2") == Decimal("0.00000000000000000002")
    assert ev("0.0000000001 * 0.00000000015") == Decimal("0.00000000000000000002")
    assert ev("number('0.1234567890123456789012345')") == Decimal("0.12345678901234567890")
    with pytest.raises(ExprError):
        ev("number('" + "1" * 200 + "')")  # long input is refused before int() sees it


def test_error_is_value_error_with_position() -> None:
    err = error("1 + nobody")
    assert isinstance(err, ValueError)
    assert err.position == 4
    assert "nobody" in str(err)


# --------------------------------------------------------------------- module hygiene
def test_module_is_pure_and_never_evaluates_text() -> None:
    """Only the allowed stdlib modules, and no eval/exec/compile/__import__/getattr."""
    tree = ast.parse(Path(expr_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {
                "eval",
                "exec",
                "compile",
                "__import__",
                "getattr",
                "setattr",
                "open",
            }, node.func.id
    assert imported <= {
        "__future__",
        "collections.abc",
        "dataclasses",
        "decimal",
        "enum",
        "re",
        "typing",
    }


# ------------------------------------------------------------------ hypothesis: parsing
_TOKENS = [
    "1",
    "0",
    "42",
    "3.5",
    "0.1",
    "'s'",
    '"t"',
    "'\\n'",
    "true",
    "false",
    "a",
    "b",
    "s",
    "m",
    "m.k",
    "m.k[0]",
    "m['k']",
    "x",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "and",
    "or",
    "not",
    "if",
    "else",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    *(f"{name}(" for name in sorted(FUNCTIONS)),
    "'",
    '"',
    "\\",
    "**",
    "=",
    "@",
    "é",
    "9" * 31,
    "1.000000000000000000001",
]
_EVAL_VARS: dict[str, Any] = {
    "a": 7,
    "b": Decimal("-2.5"),
    "s": "hello",
    "m": {"k": [1, "y", {"z": None}], "f": 0.5},
    "t": True,
    "x": "x" * 40000,
}
_ALPHABET = st.sampled_from([*"0123456789.+-*/%<>=!()[],'\"\\ abmstx_ifnote", "é", "\t"])


def _parse_or_error(text: str) -> Expr | None:
    try:
        return parse(text)
    except ExprError as exc:  # our error, with a position inside (or just past) the text
        assert 0 <= exc.position <= max(len(text), MAX_LENGTH)
        assert exc.message
        return None


def _evaluate_or_error(tree: Expr) -> None:
    try:
        value = evaluate(tree, _EVAL_VARS)
    except ExprError as exc:
        assert exc.position >= 0
        return
    assert isinstance(value, str | bool | int | Decimal)
    assert not isinstance(value, float)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_expr_error(text: str) -> None:
    _parse_or_error(text)


@settings(max_examples=500, deadline=None)
@given(st.text(_ALPHABET, max_size=80))
def test_grammar_characters_parse_or_raise_expr_error(text: str) -> None:
    tree = _parse_or_error(text)
    if tree is not None:
        _evaluate_or_error(tree)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30))
def test_token_soup_parses_or_raises_and_evaluates_or_raises(tokens: list[str]) -> None:
    tree = _parse_or_error(" ".join(tokens))
    if tree is not None:
        _evaluate_or_error(tree)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        [
            "concat('+86', digits(caller.number)) if startswith(caller.number, '+86') else 'x'",
            "round(number(substring(account, 2, 4)) * 1.06, 2) >= 10 and not caller.vip",
            "replace(upper(trim(caller.name)), ' ', '_') + string(tries)",
        ]
    )
)
def test_every_prefix_parses_or_raises(text: str) -> None:
    """Like feeding a parser byte by byte: each prefix is valid or a clean ExprError."""
    for end in range(len(text) + 1):
        _parse_or_error(text[:end])
    assert parse(text) is not None


# ---------------------------------------------- hypothesis: arithmetic vs a reference
# A node is (text, precedence, reference) where reference is ("ok", Fraction, is_int)
# or ("error", kind). Precedence: 1 additive, 2 multiplicative, 3 unary, 4 atom.
_SCALE = 10**20
_BOUND = 10**30
Node = tuple[str, int, tuple[Any, ...]]


def _rounded(x: Fraction) -> Fraction:
    return Fraction(round(x * _SCALE), _SCALE)  # Fraction.__round__ is half-even


def _checked(x: Fraction, is_int: bool) -> tuple[Any, ...]:
    x = _rounded(x)
    if abs(x) >= _BOUND:
        return ("error", "out of range")
    return ("ok", x, is_int)


def _apply(op: str, left: tuple[Any, ...], right: tuple[Any, ...]) -> tuple[Any, ...]:
    if left[0] == "error":
        return left
    if right[0] == "error":
        return right
    _, a, a_int = left
    _, b, b_int = right
    both = a_int and b_int
    if op in ("/", "//", "%") and b == 0:
        return ("error", "division by zero")
    if op == "+":
        return _checked(a + b, both)
    if op == "-":
        return _checked(a - b, both)
    if op == "*":
        return _checked(a * b, both)
    if op == "/":
        q = a / b
        return _checked(q, both and q.denominator == 1)
    floor = (a / b).__floor__()
    if op == "//":
        return _checked(Fraction(floor), both)
    return _checked(a - b * floor, both)


@st.composite
def _literal(draw: st.DrawFn) -> Node:
    whole = draw(st.integers(0, 10 ** draw(st.integers(0, 12))))
    places = draw(st.integers(0, 3))
    if places == 0:
        return (str(whole), 4, ("ok", Fraction(whole), True))
    frac = draw(st.integers(0, 10**places - 1))
    text = f"{whole}.{frac:0{places}d}"
    return (text, 4, ("ok", Fraction(text), False))


def _wrap(text: str, needed: bool) -> str:
    return f"({text})" if needed else text


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    @st.composite
    def binary(draw: st.DrawFn) -> Node:
        op = draw(st.sampled_from(["+", "-", "*", "/", "//", "%"]))
        prec = 1 if op in "+-" else 2
        left, right = draw(children), draw(children)
        extra = draw(st.booleans())  # sometimes redundant parentheses
        space = draw(st.sampled_from(["", " "]))
        text = (
            _wrap(left[0], left[1] < prec or extra)
            + f"{space}{op}{space}"
            + _wrap(right[0], right[1] <= prec)
        )
        return (text, prec, _apply(op, left[2], right[2]))

    @st.composite
    def negate(draw: st.DrawFn) -> Node:
        child = draw(children)
        ref = child[2]
        if ref[0] == "ok":
            ref = ("ok", -ref[1], ref[2])
        return ("-" + _wrap(child[0], child[1] < 3), 3, ref)

    return st.one_of(binary(), negate())


_ARITHMETIC = st.recursive(_literal(), _extend, max_leaves=12)


@settings(max_examples=1500, deadline=None)
@given(_ARITHMETIC)
def test_arithmetic_matches_fraction_reference(node: Node) -> None:
    text, _, ref = node
    assume(len(text) <= MAX_LENGTH)
    if ref[0] == "error":
        with pytest.raises(ExprError) as info:
            eval_text(text, {})
        assert ref[1] in info.value.message, text
        return
    _, expected, is_int = ref
    value = eval_text(text, {})
    assert isinstance(value, int | Decimal) and not isinstance(value, bool), text
    assert Fraction(value) == expected, text
    assert isinstance(value, int) == is_int, text


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(10**12), 10**12),
    st.integers(-(10**12), 10**12).filter(bool),
    st.integers(0, 4),
    st.integers(0, 4),
)
def test_division_rounds_half_even_to_twenty_places(a: int, b: int, pa: int, pb: int) -> None:
    x, y = Fraction(a, 10**pa), Fraction(b, 10**pb)
    text = f"{format_value(Decimal(a).scaleb(-pa))} / ({format_value(Decimal(b).scaleb(-pb))})"
    assert Fraction(eval_text(text, {})) == _rounded(x / y), text
