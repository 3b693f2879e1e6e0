"""The controller's store: SQLAlchemy 2 models and the migration entry point.

One schema for SQLite (``make run``) and PostgreSQL (production and the test suite);
several controller processes can share one PostgreSQL. The schema is created and
changed only by Alembic migrations (``controller/migrations``): :func:`migrate`
brings a database to the newest revision, so a fresh database and an old one end up
the same. Every tenant-owned row carries ``tenant_id``; queries for tenant data go
through :mod:`controller.service`, which always filters by the caller's tenant.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from controller.crypto import Encrypted, EncryptedJSON

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    caller_id: Mapped[str] = mapped_column(String(21))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, suspended,
    # deleted (kept until purge_after, then removed by ``python -m controller purge``)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    language: Mapped[str] = mapped_column(String(16), default="en")  # the UI's default
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # quotas, 0: none
    treatments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # plan sections the controller carries as validated documents (hunt groups,
    # announcements, outbound routes, mailboxes, agents, queues, data action hosts and
    # databases): encrypted, as database URLs hold passwords
    sections: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON, default=dict)
    purge_after: Mapped[dt.datetime | None] = mapped_column(default=None)


class User(Base):
    """A person who logs in, by staff id: platform staff (``tenant_id`` None) or a
    tenant's administrator, supervisor, agent..."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    staff_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(16), default="")  # "": the tenant's
    phone: Mapped[str | None] = mapped_column(Encrypted, default=None)  # personal data


class Role(Base):
    """A tenant's custom role: a name and a subset of the tenant permissions."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)


class Number(Base):
    """An access number (DID, service code, 400 number) of exactly one tenant, or a
    range of DIDs ``number``..``last`` (same length) with one target."""

    __tablename__ = "numbers"

    number: Mapped[str] = mapped_column(String(21), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="did")
    target: Mapped[str] = mapped_column(String(80))
    last: Mapped[str | None] = mapped_column(String(21), default=None)


class Flow(Base):
    """A tenant's IVR flow document (validated as the node parses it)."""

    __tablename__ = "flows"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Node(Base):
    """An appliance or hub node: what it serves, its enrolment, and what it last said.

    ``plan_version`` rises each time the plan compiled for the node differs from the
    last one (``plan_digest``); ``applied_version`` is what the node acknowledged."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default="branch")  # hub, branch
    site: Mapped[str] = mapped_column(String(63), default="")
    tenants: Mapped[list[str] | None] = mapped_column(JSON, default=None)  # None: all
    trunks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # ivr_ports...
    claim_hash: Mapped[str | None] = mapped_column(String(71), unique=True, default=None)
    claim_expires: Mapped[dt.datetime | None] = mapped_column(default=None)
    cert_fingerprint: Mapped[str | None] = mapped_column(String(80), default=None)
    plan_version: Mapped[int] = mapped_column(Integer, default=0)
    plan_digest: Mapped[str] = mapped_column(String(71), default="")
    applied_version: Mapped[int] = mapped_column(Integer, default=0)
    plan_error: Mapped[str | None] = mapped_column(String(1000), default=None)
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # last heartbeat
    last_seen: Mapped[dt.datetime | None] = mapped_column(default=None)
    connected: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Extension(Base):
    __tablename__ = "extensions"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    number: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(200), default="")
    sip_password: Mapped[str] = mapped_column(Encrypted)  # the edge needs it (HA1)


class ApiToken(Base):
    """A user's API token: only its SHA-256 is kept (the token is shown once)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(71), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))  # space separated: read write
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who changed what, when, with the object before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str | None] = mapped_column(String(63), index=True)
    action: Mapped[str] = mapped_column(String(32))
    object: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


def engine_for(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys on and a busy timeout."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 15})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` with the project's Alembic migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def sessions(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)
