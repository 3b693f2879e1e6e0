"""``say_text``: tables of cases per language and kind, errors, and round-trip properties.

The Chinese cardinals are also parsed back to integers by an independent reader below
(hypothesis over the whole range), so the 零/十/万/亿 rules are checked for every
shape of number, not only the listed ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.ivr.say import (
    CURRENCIES,
    KINDS,
    LANGUAGES,
    MAX_NUMBER,
    SayError,
    en_cardinal,
    en_ordinal,
    say_text,
    zh_cardinal,
)
from tests.test_purity import check_source

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("n", "cmn", "yue"),
    [
        (0, "零", "零"),
        (1, "一", "一"),
        (2, "二", "二"),
        (10, "十", "十"),
        (11, "十一", "十一"),
        (12, "十二", "十二"),
        (19, "十九", "十九"),
        (20, "二十", "二十"),
        (22, "二十二", "二十二"),
        (99, "九十九", "九十九"),
        (100, "一百", "一百"),
        (101, "一百零一", "一百零一"),
        (110, "一百一十", "一百一十"),
        (111, "一百一十一", "一百一十一"),
        (200, "二百", "二百"),
        (999, "九百九十九", "九百九十九"),
        (1000, "一千", "一千"),
        (1001, "一千零一", "一千零一"),
        (1010, "一千零一十", "一千零一十"),
        (1100, "一千一百", "一千一百"),
        (1234, "一千二百三十四", "一千二百三十四"),
        (2005, "二千零五", "二千零五"),
        (10000, "一万", "一萬"),
        (10001, "一万零一", "一萬零一"),
        (10010, "一万零一十", "一萬零一十"),
        (10100, "一万零一百", "一萬零一百"),
        (11000, "一万一千", "一萬一千"),
        (12345, "一万二千三百四十五", "一萬二千三百四十五"),
        (100000, "十万", "十萬"),
        (100005, "十万零五", "十萬零五"),
        (110000, "十一万", "十一萬"),
        (1000000, "一百万", "一百萬"),
        (1010000, "一百零一万", "一百零一萬"),
        (10000000, "一千万", "一千萬"),
        (10001000, "一千万一千", "一千萬一千"),
        (10000100, "一千万零一百", "一千萬零一百"),
        (100000000, "一亿", "一億"),
        (100000001, "一亿零一", "一億零一"),
        (100010000, "一亿零一万", "一億零一萬"),
        (110000000, "一亿一千万", "一億一千萬"),
        (100000010, "一亿零一十", "一億零一十"),
        (1000000000, "十亿", "十億"),
        (123456789, "一亿二千三百四十五万六千七百八十九", "一億二千三百四十五萬六千七百八十九"),
        (10**12, "一万亿", "一萬億"),
        (1000100000000, "一万零一亿", "一萬零一億"),
    ],
)
def test_chinese_cardinals(n: int, cmn: str, yue: str) -> None:
    assert zh_cardinal(n, "cmn") == cmn
    assert zh_cardinal(n, "yue") == yue
    assert say_text(str(n), "number", "cmn") == cmn
    assert say_text(str(n), "number", "yue") == yue


@pytest.mark.parametrize(
    ("n", "cmn", "yue"),
    [
        (2, "二", "二"),  # a lone 2 counts: 二 (两 only before a unit or measure word)
        (12, "十二", "十二"),
        (20, "二十", "二十"),
        (22, "二十二", "二十二"),
        (200, "两百", "兩百"),
        (222, "两百二十二", "兩百二十二"),
        (2000, "两千", "兩千"),
        (2222, "两千两百二十二", "兩千兩百二十二"),
        (20000, "两万", "兩萬"),
        (120000, "十二万", "十二萬"),
        (220000, "二十二万", "二十二萬"),
        (2000000, "两百万", "兩百萬"),
        (200000000, "两亿", "兩億"),
    ],
)
def test_liang_option(n: int, cmn: str, yue: str) -> None:
    assert say_text(str(n), "number", "cmn", liang=True) == cmn
    assert say_text(str(n), "number", "yue", liang=True) == yue


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("0", "zero"),
        ("7", "seven"),
        ("13", "thirteen"),
        ("21", "twenty-one"),
        ("40", "forty"),
        ("100", "one hundred"),
        ("101", "one hundred one"),
        ("1234", "one thousand two hundred thirty-four"),
        ("10000", "ten thousand"),
        ("100001", "one hundred thousand one"),
        ("1000000", "one million"),
        ("2000000005", "two billion five"),
        ("1000000000000", "one trillion"),
        ("007", "seven"),
        ("-5", "minus five"),
        ("-0", "zero"),
        ("3.14", "three point one four"),
        ("0.05", "zero point zero five"),
        ("-0.5", "minus zero point five"),
    ],
)
def test_english_numbers(value: str, words: str) -> None:
    assert say_text(value, "number", "en-us") == words


@pytest.mark.parametrize(
    ("value", "cmn", "yue"),
    [
        ("-5", "负五", "負五"),
        ("3.14", "三点一四", "三點一四"),
        ("0.05", "零点零五", "零點零五"),
        ("-12.5", "负十二点五", "負十二點五"),
        ("10.01", "十点零一", "十點零一"),
    ],
)
def test_chinese_signs_and_decimals(value: str, cmn: str, yue: str) -> None:
    assert say_text(value, "number", "cmn") == cmn
    assert say_text(value, "number", "yue") == yue


@pytest.mark.parametrize(
    ("n", "ordinal"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (4, "fourth"),
        (5, "fifth"),
        (8, "eighth"),
        (9, "ninth"),
        (11, "eleventh"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty-first"),
        (22, "twenty-second"),
        (25, "twenty-fifth"),
        (30, "thirtieth"),
        (31, "thirty-first"),
        (100, "one hundredth"),
    ],
)
def test_english_ordinals(n: int, ordinal: str) -> None:
    assert en_ordinal(n) == ordinal


# --------------------------------------------------------------------------- digits
@pytest.mark.parametrize(
    ("value", "language", "text"),
    [
        ("1234", "en-us", "one two three four"),
        ("0800", "en-us", "zero eight zero zero"),
        ("*72#", "en-us", "star seven two pound"),
        ("1234", "cmn", "一 二 三 四"),
        ("1234", "yue", "一 二 三 四"),
        ("13800138000", "cmn", "一 三 八 零 零 一 三 八 零 零 零"),
        ("*#", "cmn", "星号 井号"),
        ("*#", "yue", "星號 井號"),
        (" 42 ", "en-us", "four two"),
    ],
)
def test_digits(value: str, language: str, text: str) -> None:
    assert say_text(value, "digits", language) == text  # type: ignore[arg-type]


def test_yao_for_one_in_mandarin_only() -> None:
    assert say_text("110", "digits", "cmn", yao=True) == "幺 幺 零"
    assert say_text("110", "digits", "cmn") == "一 一 零"
    assert say_text("110", "digits", "yue", yao=True) == "一 一 零"  # no 幺 in Cantonese
    assert say_text("110", "digits", "en-us", yao=True) == "one one zero"
    assert say_text("11", "number", "cmn", yao=True) == "十一"  # digits only


# --------------------------------------------------------------------------- money
@pytest.mark.parametrize(
    ("value", "currency", "text"),
    [
        ("12.50", None, "twelve dollars and fifty cents"),
        ("12.5", None, "twelve dollars and fifty cents"),
        ("12", None, "twelve dollars"),
        ("1", None, "one dollar"),
        ("1.01", None, "one dollar and one cent"),
        ("0.99", None, "ninety-nine cents"),
        ("0", None, "zero dollars"),
        ("0.00", None, "zero dollars"),
        ("-3.25", None, "minus three dollars and twenty-five cents"),
        ("1250000", None, "one million two hundred fifty thousand dollars"),
        ("12.50", "CNY", "twelve yuan and fifty fen"),
        ("12.50", "cny", "twelve yuan and fifty fen"),
        ("12.50", "HKD", "twelve Hong Kong dollars and fifty cents"),
        ("2.01", "EUR", "two euros and one cent"),
        ("1.01", "GBP", "one pound and one penny"),
        ("3.20", "GBP", "three pounds and twenty pence"),
    ],
)
def test_english_money(value: str, currency: str | None, text: str) -> None:
    assert say_text(value, "money", "en-us", currency=currency) == text


@pytest.mark.parametrize(
    ("value", "currency", "cmn", "yue"),
    [
        ("12.50", None, "十二元五角", "十二元五角"),
        ("12.55", None, "十二元五角五分", "十二元五角五分"),
        ("12.05", None, "十二元零五分", "十二元零五分"),
        ("12", None, "十二元", "十二元"),
        ("0.50", None, "五角", "五角"),
        ("0.05", None, "五分", "五分"),
        ("0", None, "零元", "零元"),
        ("100.10", None, "一百元一角", "一百元一角"),
        ("10000", None, "一万元", "一萬元"),
        ("-8.80", None, "负八元八角", "負八元八角"),
        ("2", None, "二元", "二元"),
        ("12.50", "USD", "十二美元五十美分", "十二美元五十美仙"),
        ("0.05", "USD", "五美分", "五美仙"),
        ("12.50", "HKD", "十二港元五角", "十二港元五毫"),
        ("3.05", "HKD", "三港元零五分", "三港元零五仙"),
        ("9.99", "EUR", "九欧元九十九欧分", "九歐元九十九歐分"),
        ("1.50", "GBP", "一英镑五十便士", "一英鎊五十便士"),
    ],
)
def test_chinese_money(value: str, currency: str | None, cmn: str, yue: str) -> None:
    assert say_text(value, "money", "cmn", currency=currency) == cmn
    assert say_text(value, "money", "yue", currency=currency) == yue


def test_chinese_money_with_liang() -> None:
    assert say_text("2", "money", "cmn", liang=True) == "两元"
    assert say_text("2.22", "money", "cmn", liang=True) == "两元两角两分"
    assert say_text("12", "money", "cmn", liang=True) == "十二元"
    assert say_text("200", "money", "yue", liang=True) == "兩百元"


def test_every_currency_in_every_language() -> None:
    for code in CURRENCIES:
        for language in LANGUAGES:
            assert say_text("1234.56", "money", language, currency=code)


# --------------------------------------------------------------------------- dates
@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2026-11-25", "November twenty-fifth, twenty twenty-six"),
        ("2000-01-01", "January first, two thousand"),
        ("2005-02-02", "February second, two thousand five"),
        ("2010-03-03", "March third, twenty ten"),
        ("1999-12-31", "December thirty-first, nineteen ninety-nine"),
        ("1905-07-04", "July fourth, nineteen oh five"),
        ("1900-06-22", "June twenty-second, nineteen hundred"),
        ("2024-02-29", "February twenty-ninth, twenty twenty-four"),
        ("0987-05-12", "May twelfth, nine hundred eighty-seven"),
    ],
)
def test_english_dates(value: str, text: str) -> None:
    assert say_text(value, "date", "en-us") == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2026-11-25", "二零二六年十一月二十五日"),
        ("2005-02-01", "二零零五年二月一日"),  # 二月, never 两月
        ("2000-10-10", "二零零零年十月十日"),
        ("1999-12-31", "一九九九年十二月三十一日"),
        ("2024-02-20", "二零二四年二月二十日"),
    ],
)
def test_chinese_dates(value: str, text: str) -> None:
    assert say_text(value, "date", "cmn") == text
    assert say_text(value, "date", "yue") == text
    assert say_text(value, "date", "cmn", liang=True, yao=True) == text  # no 两/幺 in dates


# --------------------------------------------------------------------------- times
@pytest.mark.parametrize(
    ("value", "h12", "h24"),
    [
        ("14:05", "two oh five PM", "fourteen oh five"),
        ("9:30", "nine thirty AM", "nine thirty"),
        ("09:00", "nine AM", "nine hundred"),
        ("00:00", "twelve AM", "zero hundred"),
        ("00:15", "twelve fifteen AM", "zero fifteen"),
        ("12:00", "twelve PM", "twelve hundred"),
        ("12:45", "twelve forty-five PM", "twelve forty-five"),
        ("23:59", "eleven fifty-nine PM", "twenty-three fifty-nine"),
    ],
)
def test_english_times(value: str, h12: str, h24: str) -> None:
    assert say_text(value, "time", "en-us") == h12
    assert say_text(value, "time", "en-us", clock24=True) == h24


@pytest.mark.parametrize(
    ("value", "cmn12", "cmn24", "yue12"),
    [
        ("14:05", "下午两点零五分", "十四点零五分", "下午兩點零五分"),
        ("02:00", "凌晨两点整", "两点整", "凌晨兩點整"),
        ("08:30", "上午八点三十分", "八点三十分", "上午八點三十分"),
        ("12:10", "中午十二点十分", "十二点十分", "中午十二點十分"),
        ("00:00", "凌晨十二点整", "零点整", "凌晨十二點整"),
        ("19:45", "晚上七点四十五分", "十九点四十五分", "晚上七點四十五分"),
        ("22:02", "晚上十点零二分", "二十二点零二分", "晚上十點零二分"),
    ],
)
def test_chinese_times(value: str, cmn12: str, cmn24: str, yue12: str) -> None:
    assert say_text(value, "time", "cmn") == cmn12
    assert say_text(value, "time", "cmn", clock24=True) == cmn24
    assert say_text(value, "time", "yue") == yue12


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("value", "kind", "fragment"),
    [
        ("", "digits", "empty"),
        ("   ", "number", "empty"),
        ("12a", "digits", "0-9"),
        ("+1", "number", "integer or decimal"),
        ("1,000", "number", "integer or decimal"),
        ("1e3", "number", "integer or decimal"),
        ("1.", "number", "integer or decimal"),
        (".5", "number", "integer or decimal"),
        ("一二", "number", "integer or decimal"),
        ("١٢", "number", "integer or decimal"),  # Arabic-Indic digits are not 0-9
        ("10000000000000000", "number", "larger than"),
        ("12.505", "money", "amount"),
        ("$12", "money", "amount"),
        ("2026-13-01", "date", "month must be in 1..12"),
        ("2026-02-30", "date", "day is out of range"),
        ("2026/11/25", "date", "YYYY-MM-DD"),
        ("26-11-25", "date", "YYYY-MM-DD"),
        ("24:00", "time", "hours 0-23"),
        ("12:60", "time", "minutes 0-59"),
        ("1205", "time", "H:MM"),
        ("12:5", "time", "H:MM"),
        ("1" * 65, "digits", "at most 64"),
    ],
)
def test_invalid_values_raise_value_error_naming_them(value: str, kind: str, fragment: str) -> None:
    for language in LANGUAGES:
        with pytest.raises(ValueError, match=fragment) as info:
            say_text(value, kind, language)  # type: ignore[arg-type]
        assert isinstance(info.value, SayError)
        if value.strip() and len(value) <= 64:
            assert repr(value.strip()) in str(info.value)


def test_unknown_kind_language_currency() -> None:
    with pytest.raises(SayError, match="unknown kind 'ordinal'"):
        say_text("1", "ordinal", "en-us")  # type: ignore[arg-type]
    with pytest.raises(SayError, match="unknown language 'fr'"):
        say_text("1", "number", "fr")  # type: ignore[arg-type]
    with pytest.raises(SayError, match="unknown currency 'XYZ'"):
        say_text("1", "money", "cmn", currency="XYZ")
    with pytest.raises(SayError, match="must be a string"):
        say_text(12, "number", "en-us")  # type: ignore[arg-type]
    with pytest.raises(SayError, match="out of range"):
        zh_cardinal(-1, "cmn")
    with pytest.raises(SayError, match="not a Chinese language"):
        zh_cardinal(1, "en-us")


def test_largest_number() -> None:
    assert say_text(str(MAX_NUMBER), "number", "cmn").startswith("九千九百九十九万")
    assert en_cardinal(MAX_NUMBER).startswith("nine quadrillion")


# --------------------------------------------------------------------------- properties
_ZH_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"两": 2, "兩": 2}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}


def _read_zh(text: str) -> int:
    """An independent reader of Chinese cardinals (the reverse of ``zh_cardinal``)."""
    for big, value in (("亿", 10**8), ("億", 10**8), ("万", 10**4), ("萬", 10**4)):
        if big in text:
            high, low = text.rsplit(big, 1)
            return _read_zh(high) * value + (_read_zh(low.removeprefix("零")) if low else 0)
    total, digit = 0, None
    for ch in text:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        else:
            total += (1 if digit is None else digit) * _ZH_UNITS[ch]
            digit = None
    return total + (digit or 0)


_EN_WORDS = {w: i for i, w in enumerate(en_cardinal(i) for i in range(20))} | {
    en_cardinal(t): t for t in range(20, 100, 10)
}
_EN_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_EN_SCALES["quadrillion"] = 10**15


def _read_en(text: str) -> int:
    total = current = 0
    for word in text.replace("-", " ").split():
        if word == "hundred":
            current *= 100
        elif word in _EN_SCALES:
            total += current * _EN_SCALES[word]
            current = 0
        else:
            current += _EN_WORDS[word]
    return total + current


numbers = st.one_of(
    st.integers(0, 10**5),
    st.integers(0, MAX_NUMBER),
    # numbers with many zeros, where the 零 rules matter
    st.lists(st.sampled_from("0000001"), min_size=1, max_size=16).map(lambda d: int("".join(d))),
)


@given(numbers, st.sampled_from(["cmn", "yue"]), st.booleans())
def test_chinese_reads_back(n: int, language: str, liang: bool) -> None:
    text = zh_cardinal(n, language, liang=liang)  # type: ignore[arg-type]
    assert _read_zh(text) == n
    if n:
        assert "零零" not in text and not text.endswith("零") and not text.startswith("零")
        assert not text.startswith("一十")
        assert "两十" not in text and "兩十" not in text and not text.endswith(("两", "兩"))


@given(numbers)
def test_english_reads_back(n: int) -> None:
    text = en_cardinal(n)
    assert _read_en(text) == n
    assert " and " not in text and "  " not in text


@given(st.text(max_size=40), st.sampled_from(KINDS), st.sampled_from(LANGUAGES))
def test_any_text_is_said_or_refused_with_say_error(value: str, kind: str, language: str) -> None:
    try:
        text = say_text(value, kind, language)  # type: ignore[arg-type]
    except SayError:
        return
    assert text and text == text.strip()


@given(st.integers(0, 10**6), st.integers(0, 99), st.sampled_from(LANGUAGES))
def test_money_amounts(major: int, minor: int, language: str) -> None:
    text = say_text(f"{major}.{minor:02d}", "money", language)  # type: ignore[arg-type]
    assert text and "零零" not in text


def test_say_module_is_pure() -> None:
    path = REPO / "appliance" / "ivr" / "say.py"
    assert check_source(path.read_text(encoding="utf-8"), "appliance.ivr.say") == []
