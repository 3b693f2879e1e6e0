"""The pure media modules import no I/O (reuses the repo-wide checker), tones.py included."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_purity import REPO, check_source, module_name

PURE = ["g711", "rtp", "dtmf", "jitter", "mixer", "wav", "tones"]


@pytest.mark.parametrize("name", PURE)
def test_media_core_is_pure(name: str) -> None:
    path: Path = REPO / "appliance" / "media" / f"{name}.py"
    assert check_source(path.read_text(encoding="utf-8"), module_name(path)) == []


def test_edges_are_not_pure_by_accident() -> None:
    # sanity check of the checker on our edge module
    path = REPO / "appliance" / "media" / "endpoint.py"
    assert check_source(path.read_text(encoding="utf-8"), module_name(path))
