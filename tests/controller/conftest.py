"""``db_url``: an empty, migrated controller database, once on SQLite and once on the
suite's PostgreSQL (whose database is shared by the session, so it is emptied after)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from controller import crypto
from controller.store import Base, engine_for, migrate

# one key for the tests of this process and the controllers they start
os.environ.setdefault("BRANCHLINE_SECRET_KEY", Fernet.generate_key().decode())
crypto.use_key(os.environ["BRANCHLINE_SECRET_KEY"].encode())


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
