"""Alembic environment: migrations run on the connection :func:`controller.store.migrate`
passes in (no alembic.ini, no URL in the repository)."""

from __future__ import annotations

from alembic import context

from controller.store import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through controller.store.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
