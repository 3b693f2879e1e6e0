"""What platform staff and tenant administrators may do, with tenancy enforced here.

Every function takes the acting user (:class:`Actor`) and a session; the caller
commits. A tenant actor only ever sees and changes its own tenant's rows: another
tenant's object is :class:`NotFound` (never "forbidden", which would confirm it
exists). Platform actors (``tenant_id`` None) manage tenants and assign numbers.
Every change writes an :class:`~controller.store.AuditEntry` with the object before
and after (secrets left out). Inputs are validated here, at the edge of the store,
with the same rules the node's plan applies.

:func:`compile_plan` turns the store into the plan a node serves and validates it
with :meth:`appliance.plan.Plan.from_dict`, so the controller never ships a plan the
node would refuse.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.ids import DOMAIN_RE, EXTENSION_RE, ID_RE, NUMBER_RE
from appliance.plan import Plan, token_hash
from controller.passwords import hash_password, verify_password
from controller.store import ApiToken, AuditEntry, Extension, Number, Tenant, User

PLATFORM_ROLES = ("super_admin", "operations_manager", "technician")
TENANT_ROLES = ("admin", "supervisor", "agent", "qa", "read_only")
_STAFF_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ServiceError(Exception):
    status = 400
    error_id = "bad_request"


class Invalid(ServiceError):
    pass


class NotFound(ServiceError):
    status, error_id = 404, "not_found"


class Conflict(ServiceError):
    status, error_id = 409, "conflict"


class Forbidden(ServiceError):
    status, error_id = 403, "forbidden"


@dataclass(frozen=True)
class Actor:
    staff_id: str
    tenant_id: str | None  # None: platform staff
    role: str

    @property
    def platform(self) -> bool:
        return self.tenant_id is None


def _audit(s: Session, actor: Actor, tenant_id: str | None, action: str, obj: str,
           before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    s.add(AuditEntry(actor=actor.staff_id, tenant_id=tenant_id, action=action, object=obj,
                     before=before, after=after))


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Invalid(f"invalid {what}: {value!r}")
    return value


def _platform_only(actor: Actor) -> None:
    if not actor.platform:
        raise Forbidden("platform staff only")


def _tenant_scope(actor: Actor, tenant_id: str | None) -> str:
    """The tenant an action is for: a tenant actor's own, whatever it asked for."""
    if actor.tenant_id is not None:
        if tenant_id not in (None, actor.tenant_id):
            raise NotFound(f"no tenant {tenant_id}")
        return actor.tenant_id
    if tenant_id is None:
        raise Invalid("name the tenant")
    return tenant_id


def _tenant_doc(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "domain": t.domain, "caller_id": t.caller_id,
            "status": t.status}


# --------------------------------------------------------------------------- tenants
def create_tenant(s: Session, actor: Actor, *, id: str, name: str, domain: str,
                  caller_id: str) -> Tenant:
    _platform_only(actor)
    _check(ID_RE, id, "tenant id")
    _check(DOMAIN_RE, domain, "SIP domain")
    _check(NUMBER_RE, caller_id, "caller number")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise Invalid("a name of 1-200 characters")
    if s.get(Tenant, id) is not None:
        raise Conflict(f"tenant {id} exists")
    if s.scalar(select(Tenant).where(Tenant.domain == domain)) is not None:
        raise Conflict(f"domain {domain} belongs to another tenant")
    tenant = Tenant(id=id, name=name, domain=domain, caller_id=caller_id, status="active")
    s.add(tenant)
    _audit(s, actor, id, "create", f"tenant/{id}", None, _tenant_doc(tenant))
    return tenant


def get_tenant(s: Session, actor: Actor, tenant_id: str) -> Tenant:
    tenant = s.get(Tenant, _tenant_scope(actor, tenant_id))
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def list_tenants(s: Session, actor: Actor) -> list[Tenant]:
    query = select(Tenant).order_by(Tenant.id)
    if not actor.platform:
        query = query.where(Tenant.id == actor.tenant_id)
    return list(s.scalars(query))


def set_tenant_status(s: Session, actor: Actor, tenant_id: str, status: str) -> Tenant:
    """Suspend (new calls refused, logins refused, data kept) or resume a tenant."""
    _platform_only(actor)
    if status not in ("active", "suspended"):
        raise Invalid("status is active or suspended")
    tenant = get_tenant(s, actor, tenant_id)
    before = _tenant_doc(tenant)
    tenant.status = status
    _audit(s, actor, tenant.id, "status", f"tenant/{tenant.id}", before, _tenant_doc(tenant))
    return tenant


# --------------------------------------------------------------------------- numbers
def assign_number(s: Session, actor: Actor, tenant_id: str, number: str, target: str,
                  kind: str = "did") -> Number:
    """Give a number to a tenant (platform staff): one number, one tenant."""
    _platform_only(actor)
    _check(NUMBER_RE, number, "number")
    if kind not in ("did", "service", "400"):
        raise Invalid("kind is did, service or 400")
    get_tenant(s, actor, tenant_id)
    owner = s.get(Number, number)
    if owner is not None:
        raise Conflict(f"{number} already belongs to "
                       f"{'this tenant' if owner.tenant_id == tenant_id else 'another tenant'}")
    row = Number(number=number, tenant_id=tenant_id, kind=kind, target=target)
    s.add(row)
    _audit(s, actor, tenant_id, "create", f"number/{number}", None,
           {"number": number, "kind": kind, "target": target})
    return row


def get_number(s: Session, actor: Actor, number: str) -> Number:
    row = s.get(Number, number)
    if row is None or (not actor.platform and row.tenant_id != actor.tenant_id):
        raise NotFound(f"no number {number}")
    return row


def list_numbers(s: Session, actor: Actor, tenant_id: str | None = None) -> list[Number]:
    scope = _tenant_scope(actor, tenant_id)
    return list(s.scalars(select(Number).where(Number.tenant_id == scope)
                          .order_by(Number.number)))


def route_number(s: Session, actor: Actor, number: str, target: str) -> Number:
    """A tenant points one of its numbers at an extension, a group or a flow."""
    row = get_number(s, actor, number)
    before = {"target": row.target}
    row.target = target
    _audit(s, actor, row.tenant_id, "update", f"number/{number}", before, {"target": target})
    return row


# --------------------------------------------------------------------------- extensions
def add_extension(s: Session, actor: Actor, number: str, sip_password: str, name: str = "",
                  tenant_id: str | None = None) -> Extension:
    scope = _tenant_scope(actor, tenant_id)
    _check(EXTENSION_RE, number, "extension")
    if not isinstance(sip_password, str) or len(sip_password) < 8:
        raise Invalid("a SIP password has at least 8 characters")
    if s.scalar(select(Extension).where(Extension.tenant_id == scope,
                                        Extension.number == number)) is not None:
        raise Conflict(f"extension {number} exists")
    ext = Extension(tenant_id=scope, number=number, name=name, sip_password=sip_password)
    s.add(ext)
    _audit(s, actor, scope, "create", f"extension/{number}", None,
           {"number": number, "name": name})  # the password is never audited
    return ext


def list_extensions(s: Session, actor: Actor, tenant_id: str | None = None) -> list[Extension]:
    scope = _tenant_scope(actor, tenant_id)
    return list(s.scalars(select(Extension).where(Extension.tenant_id == scope)
                          .order_by(Extension.number)))


# --------------------------------------------------------------------------- users
def create_user(s: Session, actor: Actor, *, staff_id: str, password: str, role: str,
                tenant_id: str | None = None, name: str = "") -> User:
    """Platform staff create platform users and tenant administrators; a tenant's
    administrator creates users of its own tenant only."""
    _check(_STAFF_RE, staff_id, "staff id")
    if not isinstance(password, str) or len(password) < 10:
        raise Invalid("a password has at least 10 characters")
    if tenant_id is None and actor.platform:
        if role not in PLATFORM_ROLES:
            raise Invalid(f"platform roles: {', '.join(PLATFORM_ROLES)}")
        if actor.role != "super_admin":
            raise Forbidden("only a super-admin creates platform users")
    else:
        tenant_id = _tenant_scope(actor, tenant_id)
        get_tenant(s, actor, tenant_id)
        if role not in TENANT_ROLES:
            raise Invalid(f"tenant roles: {', '.join(TENANT_ROLES)}")
        if not actor.platform and actor.role != "admin":
            raise Forbidden("only a tenant administrator creates users")
    if s.scalar(select(User).where(User.staff_id == staff_id)) is not None:
        raise Conflict(f"staff id {staff_id} is taken")
    user = User(staff_id=staff_id, tenant_id=tenant_id, role=role, name=name,
                password_hash=hash_password(password), language="en")
    s.add(user)
    _audit(s, actor, tenant_id, "create", f"user/{staff_id}", None,
           {"staff_id": staff_id, "role": role})
    return user


def authenticate(s: Session, staff_id: str, password: str) -> Actor | None:
    """The actor for a staff id and password, or None. Users of a suspended tenant
    cannot log in."""
    user = s.scalar(select(User).where(User.staff_id == staff_id))
    if user is None:
        verify_password(password, None)  # same time for unknown users
        return None
    if not verify_password(password, user.password_hash):
        return None
    if user.tenant_id is not None:
        tenant = s.get(Tenant, user.tenant_id)
        if tenant is None or tenant.status != "active":
            return None
    return Actor(user.staff_id, user.tenant_id, user.role)


# --------------------------------------------------------------------------- tokens
SCOPES = ("read", "write")


def issue_token(s: Session, actor: Actor, scopes: tuple[str, ...] = SCOPES) -> str:
    """A new API token for the actor (returned once; the store keeps its hash)."""
    if not scopes or any(x not in SCOPES for x in scopes):
        raise Invalid(f"scopes among {', '.join(SCOPES)}")
    user = s.scalar(select(User).where(User.staff_id == actor.staff_id))
    if user is None:
        raise NotFound("no such user")
    token = secrets.token_urlsafe(32)
    s.add(ApiToken(user_id=user.id, token_hash=token_hash(token), scopes=" ".join(scopes)))
    _audit(s, actor, actor.tenant_id, "create", f"token/{actor.staff_id}", None,
           {"scopes": list(scopes)})
    return token


def actor_for_token(s: Session, token: str) -> tuple[Actor, frozenset[str]] | None:
    """The actor and scopes of an API token, or None (unknown, or its tenant is
    suspended)."""
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if row is None:
        return None
    user = s.get(User, row.user_id)
    if user is None:
        return None
    if user.tenant_id is not None:
        tenant = s.get(Tenant, user.tenant_id)
        if tenant is None or tenant.status != "active":
            return None
    return Actor(user.staff_id, user.tenant_id, user.role), frozenset(row.scopes.split())


# --------------------------------------------------------------------------- plan
def compile_plan(s: Session, *, node_id: str, version: int,
                 trunks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The plan of a node from the store, validated as the node will validate it.
    Suspended tenants are left out: the node then refuses their calls."""
    tenants = []
    for t in s.scalars(select(Tenant).where(Tenant.status == "active").order_by(Tenant.id)):
        exts = s.scalars(select(Extension).where(Extension.tenant_id == t.id)
                         .order_by(Extension.number))
        numbers = s.scalars(select(Number).where(Number.tenant_id == t.id)
                            .order_by(Number.number))
        tenants.append({
            "id": t.id, "domain": t.domain, "caller_id": t.caller_id,
            "extensions": [{"number": e.number, "password": e.sip_password, "name": e.name}
                           for e in exts],
            "dids": [{"number": n.number, "target": n.target} for n in numbers],
        })
    doc = {"version": version, "node": {"id": node_id}, "trunks": trunks or [],
           "tenants": tenants}
    Plan.from_dict(doc)  # raises PlanError naming what the node would refuse
    return doc
