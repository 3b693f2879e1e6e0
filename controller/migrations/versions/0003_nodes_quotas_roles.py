"""Nodes (enrolment, plan versions, status), flows, custom roles, quotas and
treatments, number ranges, the tenant's plan sections, and secrets encrypted at rest.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controller import crypto

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("tenants") as t:
        t.add_column(sa.Column("language", sa.String(16), nullable=False, server_default="en"))
        t.add_column(sa.Column("limits", sa.JSON, nullable=False, server_default="{}"))
        t.add_column(sa.Column("treatments", sa.JSON, nullable=False, server_default="{}"))
        t.add_column(sa.Column("sections", sa.Text, nullable=True))
        t.add_column(sa.Column("purge_after", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("users") as t:
        t.add_column(sa.Column("phone", sa.Text, nullable=True))
    with op.batch_alter_table("numbers") as t:
        t.add_column(sa.Column("last", sa.String(21), nullable=True))
    with op.batch_alter_table("extensions") as t:
        t.alter_column("sip_password", type_=sa.Text, existing_type=sa.String(128))
    # SIP passwords written in clear by 0001/0002 are encrypted with this key now
    conn = op.get_bind()
    rows = conn.execute(sa.text("select id, sip_password from extensions")).fetchall()
    for row_id, password in rows:
        conn.execute(sa.text("update extensions set sip_password = :p where id = :i"),
                     {"p": crypto.Encrypted().process_bind_param(password, conn.dialect),
                      "i": row_id})
    op.create_table(
        "roles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id"), nullable=False,
                  index=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("permissions", sa.JSON, nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_table(
        "flows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id"), nullable=False,
                  index=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("site", sa.String(63), nullable=False),
        sa.Column("tenants", sa.JSON, nullable=True),
        sa.Column("trunks", sa.JSON, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("claim_hash", sa.String(71), nullable=True, unique=True),
        sa.Column("claim_expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cert_fingerprint", sa.String(80), nullable=True),
        sa.Column("plan_version", sa.Integer, nullable=False),
        sa.Column("plan_digest", sa.String(71), nullable=False),
        sa.Column("applied_version", sa.Integer, nullable=False),
        sa.Column("plan_error", sa.String(1000), nullable=True),
        sa.Column("status", sa.JSON, nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("connected", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("nodes")
    op.drop_table("flows")
    op.drop_table("roles")
    with op.batch_alter_table("numbers") as t:
        t.drop_column("last")
    with op.batch_alter_table("users") as t:
        t.drop_column("phone")
    with op.batch_alter_table("tenants") as t:
        for name in ("purge_after", "sections", "treatments", "limits", "language"):
            t.drop_column(name)
