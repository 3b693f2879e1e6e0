"""The web pages' message catalogs: the three languages have the same keys and the
same ``{placeholders}``; every key the templates and views use exists; Simplified and
Traditional Chinese are really written differently; the browser's language maps to
ours."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from controller import languages, nodes, web
from controller import service as svc

CONTROLLER = Path(web.__file__).resolve().parent
TEMPLATES = CONTROLLER / "templates"
# t('key') / t("key") in a template or a view (not .get('...') nor a route path)
_USED = re.compile(r"""(?<![\w.])t\(\s*['"]([^'"]+)['"]""")


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    english = languages.catalog("en")
    assert len(english) > 100
    for language in ("zh-Hans", "zh-Hant"):
        other = languages.catalog(language)
        assert set(other) == set(english), (language, set(other) ^ set(english))
        for key, text in english.items():
            assert other[key].strip(), (language, key)
            assert _placeholders(other[key]) == _placeholders(text), (language, key)


def test_every_key_used_exists() -> None:
    english = languages.catalog("en")
    used: dict[str, str] = {}
    for path in [*TEMPLATES.glob("*.html"), CONTROLLER / "web.py"]:
        for key in _USED.findall(path.read_text(encoding="utf-8")):
            used.setdefault(key, path.name)
    # keys built in Jinja (t('limit.' ~ key)) end with a dot: their families are below
    missing = {k: f for k, f in used.items() if not k.endswith(".") and k not in english}
    assert not missing, missing
    assert len(used) > 100
    # keys the views hand to templates as data (alarms, usage rows, flashes): every
    # string in web.py shaped like a key of a catalog family, permissions aside
    families = {key.split(".")[0] for key in english}
    permissions = {*svc.TENANT_PERMISSIONS, *svc.PLATFORM_PERMISSIONS}
    tree = ast.parse((CONTROLLER / "web.py").read_text(encoding="utf-8"))
    data_keys = {node.value for node in ast.walk(tree)
                 if isinstance(node, ast.Constant) and isinstance(node.value, str)
                 and re.fullmatch(r"[a-z_]+\.[a-z_0-9]+", node.value)
                 and node.value.split(".")[0] in families and node.value not in permissions
                 and not node.value.endswith(".html")}
    assert {"alarm.offline", "flash.saved", "session.ended", "usage.calls"} <= data_keys
    assert not {k for k in data_keys if k not in english}


@pytest.mark.parametrize(("family", "values"), [
    ("perm", (*svc.TENANT_PERMISSIONS, *svc.PLATFORM_PERMISSIONS)),
    ("role", tuple(svc.ROLE_PERMISSIONS)),
    ("limit", svc.LIMITS),
    ("treatment", svc.TREATMENTS),
    ("status", ("active", "suspended", "deleted")),
    ("kind", svc.NUMBER_KINDS),
    ("export", svc.EXPORTS),
    ("error", ("400", "403", "404", "405", "other")),
])
def test_every_value_shown_by_name_has_one(family: str, values: tuple[str, ...]) -> None:
    english = languages.catalog("en")
    assert [v for v in values if f"{family}.{v}" not in english] == []


def test_node_roles_and_languages_are_the_services() -> None:
    assert set(languages.NAMES) == set(svc.LANGUAGES) == set(languages.LANGUAGES)
    assert nodes.NODE_ROLES == ("hub", "branch")


def test_simplified_and_traditional_are_written_differently() -> None:
    hans, hant = languages.catalog("zh-Hans"), languages.catalog("zh-Hant")
    expected = {
        "nav.tenants": ("租户", "租戶"),
        "nav.numbers": ("号码", "號碼"),
        "tenant.settings": ("租户设置", "租戶設定"),  # Taiwan and Hong Kong say 設定
        "nav.users": ("用户", "使用者"),
        "nav.logout": ("退出登录", "登出"),
        "action.save": ("保存", "儲存"),
        "nav.audit": ("审计日志", "稽核紀錄"),
        "nav.extensions": ("分机", "分機"),
    }
    for key, (simplified, traditional) in expected.items():
        assert (hans[key], hant[key]) == (simplified, traditional), key
    differ = [k for k in hans if hans[k] != hant[k]]
    assert len(differ) > 0.8 * len(hans)
    english = languages.catalog("en")
    untranslated = [k for k in english if hans[k] == english[k] and re.search("[a-z]{4}",
                                                                              english[k])]
    assert untranslated == []


def test_translate_falls_back_and_fills_values() -> None:
    confirm = languages.translate("zh-Hant", "tenant.delete_confirm", id="acme")
    assert confirm.startswith("刪除租戶 acme") and "{" not in confirm
    assert languages.translate("fr", "nav.tenants") == "Tenants"
    assert languages.translate("en", "no.such.key") == "no.such.key"
    with pytest.raises(KeyError):
        languages.catalog("fr")


@pytest.mark.parametrize(("tags", "language"), [
    (["zh-TW", "en"], "zh-Hant"), (["zh-HK"], "zh-Hant"), (["zh-Hant-CN"], "zh-Hant"),
    (["zh-CN", "zh-TW"], "zh-Hans"), (["zh"], "zh-Hans"), (["zh_SG"], "zh-Hans"),
    (["fr", "en-GB", "zh-TW"], "en"), (["de"], "en"), ([], "en"),
])
def test_browser_language(tags: list[str], language: str) -> None:
    assert languages.from_accept(tags) == language
