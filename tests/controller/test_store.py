"""The controller's store and services on SQLite and on PostgreSQL: migrations, tenancy
(another tenant's objects are not found), one number one tenant, audit, passwords, and
the plan a node compiles for a node record."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from appliance.plan import Origin, Plan
from controller import nodes
from controller import service as svc
from controller.service import Actor
from controller.store import AuditEntry, User, engine_for, migrate, sessions


def actor(staff_id: str, tenant_id: str | None, role: str) -> Actor:
    return Actor(staff_id, tenant_id, role, svc.ROLE_PERMISSIONS[role])


ROOT = actor("root", None, "super_admin")
TECH = actor("tech1", None, "technician")


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = engine_for(db_url)
    with sessions(engine)() as s:
        yield s
    engine.dispose()


def two_tenants(s: Session) -> None:
    svc.create_tenant(s, ROOT, id="acme", name="Acme", domain="acme.example",
                      caller_id="+862088880000")
    svc.create_tenant(s, ROOT, id="globex", name="Globex", domain="globex.example",
                      caller_id="+85230000000")
    svc.create_user(s, ROOT, staff_id="a-admin", password="acme admin pw", role="admin",
                    tenant_id="acme")
    svc.create_user(s, ROOT, staff_id="g-admin", password="globex admin pw", role="admin",
                    tenant_id="globex")
    s.commit()


def test_migration_creates_the_schema(session: Session) -> None:
    tables = set(inspect(session.get_bind()).get_table_names())
    assert {"tenants", "users", "numbers", "extensions", "audit_log",
            "alembic_version"} <= tables
    migrate(session.get_bind())  # idempotent: already at head


def test_tenant_admin_sees_only_its_own_tenant(session: Session) -> None:
    two_tenants(session)
    acme = svc.authenticate(session, "a-admin", "acme admin pw")
    assert acme == actor("a-admin", "acme", "admin")
    assert [t.id for t in svc.list_tenants(session, acme)] == ["acme"]
    assert [t.id for t in svc.list_tenants(session, ROOT)] == ["acme", "globex"]
    with pytest.raises(svc.NotFound):
        svc.get_tenant(session, acme, "globex")
    with pytest.raises(svc.Forbidden):
        svc.create_tenant(session, acme, id="evil", name="E", domain="evil.example",
                          caller_id="+100000")


def test_numbers_belong_to_one_tenant_and_others_cannot_see_them(session: Session) -> None:
    two_tenants(session)
    acme_admin, globex_admin = actor("a-admin", "acme", "admin"), actor("g-admin", "globex",
                                                                         "admin")
    svc.add_extension(session, acme_admin, "1001", "sip-secret-1")
    svc.add_extension(session, acme_admin, "1002", "sip-secret-2")
    svc.add_extension(session, globex_admin, "2001", "sip-secret-3")
    svc.assign_number(session, ROOT, "acme", "+862088880001", "1001")
    session.commit()
    with pytest.raises(svc.Conflict, match="another tenant"):
        svc.assign_number(session, ROOT, "globex", "+862088880001", "2001")
    globex = svc.authenticate(session, "g-admin", "globex admin pw")
    assert globex is not None
    assert svc.list_numbers(session, globex) == []
    with pytest.raises(svc.NotFound):
        svc.get_number(session, globex, "+862088880001")
    with pytest.raises(svc.NotFound):
        svc.route_number(session, globex, "+862088880001", "2001")
    with pytest.raises(svc.NotFound):  # naming another tenant does not help
        svc.list_numbers(session, globex, "acme")
    acme = svc.authenticate(session, "a-admin", "acme admin pw")
    assert acme is not None
    svc.route_number(session, acme, "+862088880001", "1002")
    session.commit()
    [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "update",
                                                       AuditEntry.object.like("number/%"))
                              ).all()
    doc = {"number": "+862088880001", "tenant": "acme", "kind": "did"}
    assert (entry.actor, entry.tenant_id, entry.before, entry.after) == (
        "a-admin", "acme", {**doc, "target": "1001"}, {**doc, "target": "1002"})


def test_users_passwords_roles_and_suspension(session: Session) -> None:
    two_tenants(session)
    user = session.scalar(select(User).where(User.staff_id == "a-admin"))
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert "acme admin pw" not in user.password_hash
    assert svc.authenticate(session, "a-admin", "wrong password") is None
    assert svc.authenticate(session, "nobody", "acme admin pw") is None
    with pytest.raises(svc.Forbidden):  # only a super-admin makes platform users
        svc.create_user(session, TECH, staff_id="x", password="long enough pw",
                        role="technician")
    acme = actor("a-admin", "acme", "admin")
    with pytest.raises(svc.NotFound):  # a tenant admin cannot make users elsewhere
        svc.create_user(session, acme, staff_id="a-agent", password="agent pw 123",
                        role="agent", tenant_id="globex")
    agent = svc.create_user(session, acme, staff_id="a-agent", password="agent pw 123",
                            role="agent")
    assert agent.tenant_id == "acme"
    with pytest.raises(svc.Forbidden):  # an agent is not an administrator
        svc.create_user(session, actor("a-agent", "acme", "agent"), staff_id="a-agent2",
                        password="agent pw 123", role="admin")
    svc.set_tenant_status(session, ROOT, "acme", "suspended")
    session.commit()
    assert svc.authenticate(session, "a-admin", "acme admin pw") is None
    svc.set_tenant_status(session, ROOT, "acme", "active")
    assert svc.authenticate(session, "a-admin", "acme admin pw") is not None


def test_compiled_plan_is_what_the_node_routes(session: Session) -> None:
    two_tenants(session)
    acme = actor("a-admin", "acme", "admin")
    svc.add_extension(session, acme, "1001", "sip-secret-1", "Alice")
    svc.assign_number(session, ROOT, "acme", "+862088880001", "1001")
    svc.set_tenant_status(session, ROOT, "globex", "suspended")
    node = nodes.create_node(session, ROOT, id="branch-1")
    session.commit()
    doc = nodes.compile_plan(session, node, 7)
    plan = Plan.from_dict(doc)
    assert plan.version == 7
    # suspended tenants are in it, marked, so their callers get the suspended treatment
    assert [(t.id, t.status) for t in plan.tenants] == [("acme", "active"),
                                                        ("globex", "suspended")]
    route = plan.route(Origin("trunk", trunk="carrier"), "+862088880001")
    assert (route.tenant_id, route.kind, route.target) == ("acme", "extension", "1001")
    audit = session.scalars(select(AuditEntry).where(AuditEntry.object == "extension/1001"))
    assert all("sip-secret-1" not in str(e.after) for e in audit)


@pytest.mark.parametrize("kwargs,error", [
    ({"id": "Bad Id"}, "tenant id"),
    ({"domain": "not a domain"}, "SIP domain"),
    ({"caller_id": "12"}, "caller number"),
    ({"name": ""}, "name"),
])
def test_tenant_input_is_validated(session: Session, kwargs: dict[str, str],
                                   error: str) -> None:
    base = {"id": "acme", "name": "Acme", "domain": "acme.example", "caller_id": "+861000"}
    with pytest.raises(svc.Invalid, match=error):
        svc.create_tenant(session, ROOT, **{**base, **kwargs})
