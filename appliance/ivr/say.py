"""Text to speak for IVR "say" actions: digits, numbers, money, dates, times.

Pure: a string in, the words a TTS engine should speak out (R-4.3, R-4.18).
Three languages: ``en-us``, ``cmn`` (Mandarin) and ``yue`` (Cantonese).

Theory of operation
-------------------
Every kind is parsed strictly first (``SayError``, a ``ValueError``, names
the kind, the value and what was expected), then rendered by a function of
the language.  English is written out in words, Chinese as characters:
Mandarin in simplified script, Cantonese in traditional script (萬, 億, 兩,
點, as written in Hong Kong), which is what the engines' dictionaries read.

Chinese cardinals (``zh_cardinal``) are built from groups of four digits
joined by 万/萬 (10^4) and 亿/億 (10^8); above 10^12 the part before 亿 is
itself read with 万, so 10^12 is 一万亿 (the mainland convention; 兆 is
ambiguous and not used).  The rules:

- a zero, or a run of zeros, *between* two spoken digits is read once as
  零 (101 一百零一, 1001 一千零一, 10010 一万零一十); trailing zeros are
  silent (1000 一千, 10000 一万);
- a lower group that does not fill its four places after a higher unit
  gets 零 (10001 一万零一, 100010000 一亿零一万; 110000000 一亿一千万);
- 一十 is shortened to 十 only at the very start of the number
  (10 十, 12 十二, 100000 十万), not inside it (110 一百一十);
- 两/兩 for 2 (``liang=True``) is used before 百, 千, 万 and 亿 (200 两百,
  2000 两千, 20000 两万), and for a lone 2 before a measure word (money:
  两元), but never in the tens or units place (十二, 二十二).  The default
  is the formal 二 (二百, 二千), which both languages accept and which
  reads the same in every context; callers wanting the colloquial form set
  the option.  Clock hours always use 两/兩 (两点), because 二点 is not
  said.

Cantonese uses the same structure as Mandarin (formal register): the
colloquial contractions 廿/卅 for 20/30 and the dropped final unit (百一 for
110) are not produced.

Money: en-us defaults to US dollars ("twelve dollars and fifty cents"),
cmn and yue to renminbi read with the standard units 元/角/分
(12.50 十二元五角, 12.05 十二元零五分); the Cantonese colloquial 蚊/毫/仙
for renminbi is not used.  ``currency=`` selects another table entry
(CNY, USD, HKD, EUR, GBP); Hong Kong dollars in Cantonese use 毫 and 仙,
the units on the coins.  Currencies without a tenths unit read the
hundredths as one number (十二美元五十美分).

Digits read one symbol at a time, separated by spaces (``*`` star/星号,
``#`` pound/井号); ``yao=True`` reads 1 as 幺 in Mandarin, as many do for
phone numbers (ignored for other languages, so a tenant-wide setting is
harmless).  Dates are ISO ``YYYY-MM-DD``: English "November twenty-fifth,
twenty twenty-six"; Chinese 二零二六年十一月二十五日 (the year digit by
digit).  Times are ``H:MM`` or ``HH:MM`` (24-hour input): 12-hour reading
by default ("two oh five PM", 下午两点零五分), ``clock24=True`` for
"fourteen oh five" / 十四点零五分.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal, get_args

__all__ = [
    "CURRENCIES",
    "KINDS",
    "LANGUAGES",
    "MAX_NUMBER",
    "Currency",
    "Kind",
    "Language",
    "SayError",
    "en_cardinal",
    "en_ordinal",
    "say_text",
    "zh_cardinal",
]

Language = Literal["en-us", "cmn", "yue"]
Kind = Literal["digits", "number", "money", "date", "time"]
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

MAX_NUMBER: Final = 10**16 - 1  # 九千九百九十九万九千九百九十九亿...; English up to quadrillions
MAX_INPUT: Final = 64  # characters of input accepted for any kind


class SayError(ValueError):
    """The value cannot be said as the requested kind, or kind/language is unknown."""


# --------------------------------------------------------------------------- currencies
@dataclass(frozen=True)
class Currency:
    """How one currency is read.

    ``en`` is (major singular, major plural, minor singular, minor plural).
    ``cmn``/``yue`` are (major unit, tenths unit or None, hundredths unit):
    with a tenths unit the two decimals are read as separate units (元/角/分),
    without one the hundredths are read as one number (美元/美分).
    """

    code: str
    en: tuple[str, str, str, str]
    cmn: tuple[str, str | None, str]
    yue: tuple[str, str | None, str]


_DOLLAR: Final = ("dollar", "dollars", "cent", "cents")
_HK_DOLLAR: Final = ("Hong Kong dollar", "Hong Kong dollars", "cent", "cents")
CURRENCIES: Final[dict[str, Currency]] = {
    c.code: c
    for c in (
        Currency("CNY", ("yuan", "yuan", "fen", "fen"), ("元", "角", "分"), ("元", "角", "分")),
        Currency("USD", _DOLLAR, ("美元", None, "美分"), ("美元", None, "美仙")),
        Currency("HKD", _HK_DOLLAR, ("港元", "角", "分"), ("港元", "毫", "仙")),
        Currency(
            "EUR",
            ("euro", "euros", "cent", "cents"),
            ("欧元", None, "欧分"),
            ("歐元", None, "歐分"),
        ),
        Currency(
            "GBP",
            ("pound", "pounds", "penny", "pence"),
            ("英镑", None, "便士"),
            ("英鎊", None, "便士"),
        ),
    )
}
DEFAULT_CURRENCY: Final[dict[Language, str]] = {"en-us": "USD", "cmn": "CNY", "yue": "CNY"}


# --------------------------------------------------------------------------- English
_EN_ONES: Final = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS: Final = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_SCALES: Final = ("", "thousand", "million", "billion", "trillion", "quadrillion")
_EN_ORDINAL_IRREGULAR: Final = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_EN_MONTHS: Final = (
    "January February March April May June July August September October November December"
).split()


def _en_below_1000(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_EN_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else ""))
    elif rest:
        words.append(_EN_ONES[rest])
    return words


def en_cardinal(n: int) -> str:
    """American English words for ``0 <= n <= MAX_NUMBER`` (no "and": 101 one hundred one)."""
    _check_range(n)
    if n == 0:
        return "zero"
    words: list[str] = []
    scale = 0
    while n:
        n, chunk = divmod(n, 1000)
        if chunk:
            part = _en_below_1000(chunk)
            if _EN_SCALES[scale]:
                part.append(_EN_SCALES[scale])
            words[:0] = part
        scale += 1
    return " ".join(words)


def en_ordinal(n: int) -> str:
    """1 first, 25 twenty-fifth, 100 one hundredth."""
    words = en_cardinal(n)
    head, sep, last = words.rpartition(" ")
    stem, hyphen, unit = last.rpartition("-")
    if unit in _EN_ORDINAL_IRREGULAR:
        unit = _EN_ORDINAL_IRREGULAR[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return head + sep + stem + hyphen + unit


def _en_year(y: int) -> str:
    """1999 nineteen ninety-nine, 2026 twenty twenty-six, 2005 two thousand five,
    1905 nineteen oh five, 1900 nineteen hundred, 2000 two thousand."""
    high, low = divmod(y, 100)
    if y < 1000 or y % 1000 < 10:
        return en_cardinal(y)
    if low == 0:
        return f"{en_cardinal(high)} hundred"
    if low < 10:
        return f"{en_cardinal(high)} oh {_EN_ONES[low]}"
    return f"{en_cardinal(high)} {en_cardinal(low)}"


# --------------------------------------------------------------------------- Chinese
@dataclass(frozen=True)
class _Zh:
    digits: str  # 零一二...九
    liang: str
    wan: str
    yi: str
    point: str  # decimal point, and the clock's 点
    minus: str
    star: str
    pound: str


_ZH: Final[dict[Language, _Zh]] = {
    "cmn": _Zh("零一二三四五六七八九", "两", "万", "亿", "点", "负", "星号", "井号"),
    "yue": _Zh("零一二三四五六七八九", "兩", "萬", "億", "點", "負", "星號", "井號"),
}
_ZH_PLACES: Final = ("千", "百", "十", "")


def _zh_table(language: Language) -> _Zh:
    table = _ZH.get(language)
    if table is None:
        raise SayError(f"{language!r} is not a Chinese language (cmn, yue)")
    return table


def _zh_group(n: int, zh: _Zh, *, leading: bool, liang: bool) -> str:
    """Read ``0 < n < 10000``; ``leading``: first group of the number (十二, not 一十二)."""
    if leading and 10 <= n < 20:
        return "十" + (zh.digits[n - 10] if n > 10 else "")
    out: list[str] = []
    zero_pending = False
    for place, digit in zip(_ZH_PLACES, f"{n:04d}", strict=True):
        d = int(digit)
        if d == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append(zh.digits[0])
            zero_pending = False
        two_as_liang = liang and d == 2 and place in ("千", "百")
        out.append((zh.liang if two_as_liang else zh.digits[d]) + place)
    return "".join(out)


def _zh_int(n: int, zh: _Zh, *, leading: bool, liang: bool) -> str:
    if n >= 10**8:
        unit, base = zh.yi, 10**8
    elif n >= 10**4:
        unit, base = zh.wan, 10**4
    else:
        return _zh_group(n, zh, leading=leading, liang=liang)
    high, low = divmod(n, base)
    if liang and high == 2:
        out = zh.liang + unit
    else:
        out = _zh_int(high, zh, leading=leading, liang=liang) + unit
    if low:
        if low < base // 10:  # the lower part does not fill its places: 一万零一
            out += zh.digits[0]
        out += _zh_int(low, zh, leading=False, liang=liang)
    return out


def zh_cardinal(n: int, language: Language, *, liang: bool = False, measure: bool = False) -> str:
    """Chinese characters for ``0 <= n <= MAX_NUMBER`` (see the module docstring).

    ``liang``: 两/兩 before 百/千/万/亿; with ``measure`` also a lone 2 (两元).
    """
    _check_range(n)
    zh = _zh_table(language)
    if n == 0:
        return zh.digits[0]
    if n == 2 and liang and measure:
        return zh.liang
    return _zh_int(n, zh, leading=True, liang=liang)


def _zh_digit_string(digits: str, zh: _Zh) -> str:
    return "".join(zh.digits[int(d)] for d in digits)


# --------------------------------------------------------------------------- parsing
_DIGITS_RE: Final = re.compile(r"[0-9*#]+")
_NUMBER_RE: Final = re.compile(r"(-)?([0-9]+)(?:\.([0-9]+))?")
_MONEY_RE: Final = re.compile(r"(-)?([0-9]+)(?:\.([0-9]{1,2}))?")
_DATE_RE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME_RE: Final = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def _check_range(n: int) -> None:
    if not 0 <= n <= MAX_NUMBER:
        raise SayError(f"number {n} is out of range (0 to {MAX_NUMBER})")


def _match(pattern: re.Pattern[str], value: str, kind: str, expected: str) -> re.Match[str]:
    m = pattern.fullmatch(value)
    if m is None:
        raise SayError(f"cannot say {value!r} as {kind}: expected {expected}")
    return m


def _integer(text: str, value: str, kind: str) -> int:
    n = int(text)
    if n > MAX_NUMBER:
        raise SayError(f"cannot say {value!r} as {kind}: larger than {MAX_NUMBER}")
    return n


# --------------------------------------------------------------------------- kinds
def _say_digits(value: str, language: Language, *, yao: bool) -> str:
    _match(_DIGITS_RE, value, "digits", "the symbols 0-9, * and #")
    if language == "en-us":
        names = {"*": "star", "#": "pound"} | {str(i): _EN_ONES[i] for i in range(10)}
    else:
        zh = _zh_table(language)
        names = {"*": zh.star, "#": zh.pound} | {str(i): zh.digits[i] for i in range(10)}
        if yao and language == "cmn":
            names["1"] = "幺"
    return " ".join(names[c] for c in value)


def _say_number(value: str, language: Language, *, liang: bool) -> str:
    m = _match(_NUMBER_RE, value, "number", "an integer or decimal such as -12 or 3.14")
    sign, whole, frac = m.group(1), m.group(2), m.group(3)
    n = _integer(whole, value, "number")
    negative = bool(sign) and (n > 0 or bool(frac and frac.strip("0")))
    if language == "en-us":
        words = en_cardinal(n)
        if frac:
            words += " point " + " ".join(_EN_ONES[int(d)] for d in frac)
        return ("minus " if negative else "") + words
    zh = _zh_table(language)
    text = zh_cardinal(n, language, liang=liang)
    if frac:
        text += zh.point + _zh_digit_string(frac, zh)
    return (zh.minus if negative else "") + text


def _say_money(value: str, language: Language, *, currency: str | None, liang: bool) -> str:
    code = (currency or DEFAULT_CURRENCY[language]).upper()
    table = CURRENCIES.get(code)
    if table is None:
        raise SayError(f"unknown currency {currency!r} (one of {', '.join(sorted(CURRENCIES))})")
    m = _match(_MONEY_RE, value, "money", "an amount such as 12, 12.5 or -12.50")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    major = _integer(whole, value, "money")
    minor = int(frac.ljust(2, "0"))
    negative = bool(sign) and (major > 0 or minor > 0)
    if language == "en-us":
        one, many, cent, cents = table.en
        parts: list[str] = []
        if major or not minor:
            parts.append(f"{en_cardinal(major)} {one if major == 1 else many}")
        if minor:
            parts.append(f"{en_cardinal(minor)} {cent if minor == 1 else cents}")
        return ("minus " if negative else "") + " and ".join(parts)
    zh = _zh_table(language)
    unit, tenth, hundredth = table.cmn if language == "cmn" else table.yue

    def amount(n: int) -> str:
        return zh_cardinal(n, language, liang=liang, measure=True)

    text = ""
    if major or not minor:
        text = amount(major) + unit
    if tenth is None:
        if minor:
            text += amount(minor) + hundredth
    else:
        tens, ones = divmod(minor, 10)
        if tens:
            text += amount(tens) + tenth
        if ones:
            if major and not tens:
                text += zh.digits[0]  # 十二元零五分
            text += amount(ones) + hundredth
    return (zh.minus if negative else "") + text


def _say_date(value: str, language: Language) -> str:
    m = _match(_DATE_RE, value, "date", "YYYY-MM-DD")
    y, mo, d = (int(g) for g in m.groups())
    try:
        date(y, mo, d)
    except ValueError as exc:
        raise SayError(f"cannot say {value!r} as date: {exc}") from None
    if language == "en-us":
        return f"{_EN_MONTHS[mo - 1]} {en_ordinal(d)}, {_en_year(y)}"
    zh = _zh_table(language)
    month = zh_cardinal(mo, language)
    day = zh_cardinal(d, language)
    return f"{_zh_digit_string(m.group(1), zh)}年{month}月{day}日"


def _zh_period(hour: int) -> str:
    if hour < 6:
        return "凌晨"
    if hour < 12:
        return "上午"
    if hour == 12:
        return "中午"
    if hour < 18:
        return "下午"
    return "晚上"


def _say_time(value: str, language: Language, *, clock24: bool) -> str:
    m = _match(_TIME_RE, value, "time", "H:MM or HH:MM, 24-hour (00:00 to 23:59)")
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 23 or minute > 59:
        raise SayError(f"cannot say {value!r} as time: hours 0-23, minutes 0-59")
    shown = hour if clock24 else (hour % 12 or 12)
    if language == "en-us":
        words = en_cardinal(shown)
        if minute == 0:
            words += " hundred" if clock24 else ""
        elif minute < 10:
            words += f" oh {_EN_ONES[minute]}"
        else:
            words += f" {en_cardinal(minute)}"
        return words if clock24 else f"{words} {'AM' if hour < 12 else 'PM'}"
    zh = _zh_table(language)
    text = zh_cardinal(shown, language, liang=True, measure=True) + zh.point
    if minute == 0:
        text += "整"
    else:
        text += (zh.digits[0] if minute < 10 else "") + zh_cardinal(minute, language) + "分"
    return text if clock24 else _zh_period(hour) + text


def say_text(
    value: str,
    kind: Kind,
    language: Language,
    *,
    currency: str | None = None,
    liang: bool = False,
    yao: bool = False,
    clock24: bool = False,
) -> str:
    """The words to speak for ``value`` read as ``kind`` in ``language``.

    Raises ``SayError`` (a ``ValueError``) naming the value and the expected
    form when the value cannot be read as that kind, and for an unknown kind,
    language or currency.  Surrounding whitespace is ignored.
    """
    if language not in LANGUAGES:
        raise SayError(f"unknown language {language!r} (one of {', '.join(LANGUAGES)})")
    if kind not in KINDS:
        raise SayError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    if not isinstance(value, str):
        raise SayError(f"value to say must be a string, not {type(value).__name__}")
    value = value.strip()
    if not value:
        raise SayError(f"nothing to say as {kind}: empty value")
    if len(value) > MAX_INPUT:
        raise SayError(f"cannot say a {kind} of {len(value)} characters (at most {MAX_INPUT})")
    if kind == "digits":
        return _say_digits(value, language, yao=yao)
    if kind == "number":
        return _say_number(value, language, liang=liang)
    if kind == "money":
        return _say_money(value, language, currency=currency, liang=liang)
    if kind == "date":
        return _say_date(value, language)
    return _say_time(value, language, clock24=clock24)
