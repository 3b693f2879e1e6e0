"""docs/ACD.md's state tables are the core's tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.acd.states import AGENT_TRANSITIONS, CONTACT_TRANSITIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "ACD.md"


def table(marker: str) -> dict[tuple[str, str], set[str]]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]
    out: dict[tuple[str, str], set[str]] = {}
    for line in body.strip().splitlines()[2:]:
        state, action, _, to = (cell.strip() for cell in line.strip("|").split("|"))
        out[(state, action)] = {t.strip() for t in to.split(",")}
    return out


@pytest.mark.parametrize(("marker", "core"), [("agent-transitions", AGENT_TRANSITIONS),
                                              ("contact-transitions", CONTACT_TRANSITIONS)])
def test_the_doc_table_is_the_core_table(marker: str, core: object) -> None:
    expected = {(s.value, a): {t.value for t in to}
                for (s, a), to in core.items()}  # type: ignore[attr-defined]
    assert table(marker) == expected
