"""``db_url``: an empty, migrated controller database, once on SQLite and once on the
suite's PostgreSQL (whose database is shared by the session, so it is emptied after)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from controller.store import Base, engine_for, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'controller.sqlite'}" if request.param == "sqlite" \
        else str(request.getfixturevalue("pg_url"))
    engine = engine_for(url)
    migrate(engine)
    yield url
    if request.param == "postgresql":
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("drop table if exists alembic_version"))
    engine.dispose()
