"""The web pages' languages: message catalogs and lookup.

A catalog is a JSON file ``controller/i18n/<language>.json`` mapping a key to its text
in that language (``{name}`` marks a value filled in at run time). English is the
fallback for a key a catalog lacks, and the key itself the last resort, so a missing
text shows up as its key rather than breaking a page (tests/controller/test_i18n.py
keeps the three catalogs in step). The languages are the service's: a user's own
choice, else the tenant's default (:attr:`controller.service.Actor.language`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from controller.service import LANGUAGES as LANGUAGES  # re-exported for the pages

CATALOGS = Path(__file__).resolve().parent / "i18n"
# each language named in itself, for the language switch
NAMES = {"en": "English", "zh-Hans": "简体中文", "zh-Hant": "繁體中文"}
# regions that write Traditional characters; other Chinese is taken as Simplified
_TRADITIONAL = ("tw", "hk", "mo", "hant")


@cache
def catalog(language: str) -> dict[str, str]:
    """The texts of ``language`` (one of :data:`LANGUAGES`), read once."""
    if language not in LANGUAGES:
        raise KeyError(f"no catalog for language {language!r}")
    with open(CATALOGS / f"{language}.json", encoding="utf-8") as fh:
        texts = json.load(fh)
    if not isinstance(texts, dict) or not all(isinstance(v, str) for v in texts.values()):
        raise ValueError(f"{language}.json: a mapping of key to text")
    return texts


def translate(language: str, key: str, **values: object) -> str:
    """The text of ``key`` in ``language`` (English when that catalog lacks it, the key
    when every catalog does) with ``values`` filled in."""
    text = catalog(language if language in LANGUAGES else "en").get(key) \
        or catalog("en").get(key) or key
    return text.format(**values) if values else text


def from_accept(tags: Iterable[str]) -> str:
    """The first of our languages among a browser's preferred language tags
    (``Accept-Language``, best first): ``zh-TW``, ``zh-HK``, ``zh-Hant-*`` are
    Traditional, other Chinese Simplified; English otherwise."""
    for tag in tags:
        parts = tag.lower().replace("_", "-").split("-")
        if parts[0] == "en":
            return "en"
        if parts[0] == "zh":
            return "zh-Hant" if any(p in _TRADITIONAL for p in parts[1:]) else "zh-Hans"
    return "en"
