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

import datetime as dt
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from appliance.ids import DOMAIN_RE, EXTENSION_RE, ID_RE, NUMBER_RE
from appliance.plan import VOICES, token_hash
from controller.passwords import hash_password, verify_password
from controller.store import (
    ApiToken,
    AuditEntry,
    Extension,
    Flow,
    Number,
    Role,
    Tenant,
    User,
    utcnow,
)

_STAFF_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_FLOW_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
LANGUAGES = ("en", "zh-Hans", "zh-Hant")

# -- permissions ---------------------------------------------------------------------
# Platform permissions are held by platform staff only; tenant permissions by a
# tenant's users (built-in roles or the tenant's custom roles, which pick a subset).
# Platform staff act on any tenant's objects through tenants.read / tenants.manage.
PLATFORM_PERMISSIONS = (
    "tenants.read", "tenants.manage", "numbers.assign", "nodes.read", "nodes.manage",
    "staff.manage", "audit.read", "pii.read", "export",
)
TENANT_PERMISSIONS = (
    "numbers.read", "numbers.route", "extensions.read", "extensions.write", "users.read",
    "users.write", "roles.manage", "flows.read", "flows.write", "sections.read",
    "sections.write", "settings.write", "usage.read", "audit.read", "pii.read", "export",
)
_READ_ONLY = ("numbers.read", "extensions.read", "users.read", "flows.read",
              "sections.read", "usage.read")
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "super_admin": frozenset(PLATFORM_PERMISSIONS),
    "operations_manager": frozenset(PLATFORM_PERMISSIONS) - {"staff.manage"},
    "technician": frozenset({"tenants.read", "nodes.read", "nodes.manage"}),
    "admin": frozenset(TENANT_PERMISSIONS),
    "supervisor": frozenset({*_READ_ONLY, "pii.read", "audit.read"}),
    "agent": frozenset({"numbers.read", "extensions.read"}),
    "qa": frozenset({"flows.read", "sections.read", "usage.read", "audit.read"}),
    "read_only": frozenset(_READ_ONLY),
}
PLATFORM_ROLES = ("super_admin", "operations_manager", "technician")
TENANT_ROLES = ("admin", "supervisor", "agent", "qa", "read_only")

# -- quotas and treatments -------------------------------------------------------------
LIMITS = ("agents", "pstn_calls", "web_calls", "ivr_flows", "ivr_ports", "storage_mb")
TREATMENTS = ("suspended", "over_quota")
REJECT_CODES = (403, 480, 486, 503)
# plan sections a tenant administrator edits as documents (validated by the node's
# plan parser): hunt groups, announcements, outbound routes, mailboxes, agents, queues,
# data actions (databases, hosts), node API token hashes, ACD settings (breaks, reasons,
# night hours)
SECTIONS = ("hunt_groups", "announcements", "outbound", "mailboxes", "agents", "queues",
            "actions", "api_tokens", "acd")
RETENTION_DAYS = 30


class ServiceError(Exception):
    status = 400
    error_id = "bad_request"


class Invalid(ServiceError):
    pass


class NotFound(ServiceError):
    status, error_id = 404, "not_found"


class Conflict(ServiceError):
    status, error_id = 409, "conflict"


class QuotaExceeded(ServiceError):
    status, error_id = 409, "quota_exceeded"


class Forbidden(ServiceError):
    status, error_id = 403, "forbidden"


@dataclass(frozen=True)
class Actor:
    staff_id: str
    tenant_id: str | None  # None: platform staff
    role: str
    permissions: frozenset[str] = frozenset()
    language: str = "en"

    @property
    def platform(self) -> bool:
        return self.tenant_id is None

    def may(self, permission: str) -> bool:
        """Whether the actor holds ``permission``; platform staff hold a tenant
        permission through tenants.read (reading) or tenants.manage (changing)."""
        if permission in self.permissions:
            return True
        if self.platform and permission in TENANT_PERMISSIONS and \
                permission not in ("pii.read", "export", "audit.read"):
            reading = permission.endswith(".read")
            return ("tenants.read" if reading else "tenants.manage") in self.permissions
        return False


def _require(actor: Actor, permission: str) -> None:
    if not actor.may(permission):
        raise Forbidden(f"this needs the permission {permission}")


def _audit(s: Session, actor: Actor | str, tenant_id: str | None, action: str, obj: str,
           before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    s.add(AuditEntry(actor=actor if isinstance(actor, str) else actor.staff_id,
                     tenant_id=tenant_id, action=action, object=obj, before=before,
                     after=after))
    s.flush()


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Invalid(f"invalid {what}: {value!r}")
    return value


def display_name(value: object, *, required: bool = False) -> str:
    """A person's, tenant's or node's display name: text of up to 200 characters (at
    least one when ``required``)."""
    if not isinstance(value, str) or len(value) > 200 or (required and not value):
        raise Invalid("a name of 1-200 characters" if required
                      else "a name of up to 200 characters")
    return value


def _tenant_scope(actor: Actor, tenant_id: str | None) -> str:
    """The tenant an action is for: a tenant actor's own, whatever it asked for."""
    if actor.tenant_id is not None:
        if tenant_id not in (None, actor.tenant_id):
            raise NotFound(f"no tenant {tenant_id}")
        return actor.tenant_id
    if not tenant_id:
        raise Invalid("name the tenant")
    return tenant_id


def mask_number(number: str | None) -> str | None:
    """A phone number as a role without ``pii.read`` sees it: the last 4 digits."""
    if not number:
        return number
    return "*" * max(0, len(number) - 4) + number[-4:]


def tenant_doc(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "domain": t.domain, "caller_id": t.caller_id,
            "status": t.status, "language": t.language, "limits": limits_of(t),
            "treatments": treatments_of(t)}


def limits_of(t: Tenant) -> dict[str, int]:
    return {k: int((t.limits or {}).get(k, 0)) for k in LIMITS}


def treatments_of(t: Tenant) -> dict[str, dict[str, Any]]:
    given = t.treatments or {}
    return {"suspended": given.get("suspended", {"reject": 503}),
            "over_quota": given.get("over_quota", {"reject": 486})}


# --------------------------------------------------------------------------- tenants
def create_tenant(s: Session, actor: Actor, *, id: str, name: str, domain: str,
                  caller_id: str, language: str = "en") -> Tenant:
    _require(actor, "tenants.manage")
    _check(ID_RE, id, "tenant id")
    _check(DOMAIN_RE, domain, "SIP domain")
    _check(NUMBER_RE, caller_id, "caller number")
    display_name(name, required=True)
    if language not in LANGUAGES:
        raise Invalid(f"language among {', '.join(LANGUAGES)}")
    if s.get(Tenant, id) is not None:
        raise Conflict(f"tenant {id} exists")
    if s.scalar(select(Tenant).where(Tenant.domain == domain)) is not None:
        raise Conflict(f"domain {domain} belongs to another tenant")
    tenant = Tenant(id=id, name=name, domain=domain, caller_id=caller_id, status="active",
                    language=language, limits={}, treatments={}, sections={})
    s.add(tenant)
    _audit(s, actor, id, "create", f"tenant/{id}", None, tenant_doc(tenant))
    return tenant


def get_tenant(s: Session, actor: Actor, tenant_id: str) -> Tenant:
    tenant = s.get(Tenant, _tenant_scope(actor, tenant_id))
    if tenant is None or (tenant.status == "deleted" and not actor.platform):
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def list_tenants(s: Session, actor: Actor) -> list[Tenant]:
    query = select(Tenant).order_by(Tenant.id)
    if not actor.platform:
        query = query.where(Tenant.id == actor.tenant_id)
    else:
        _require(actor, "tenants.read")
    return list(s.scalars(query))


def update_tenant(s: Session, actor: Actor, tenant_id: str, changes: dict[str, Any]
                  ) -> Tenant:
    """Change a tenant: ``status`` (suspend: new calls get the suspended treatment,
    logins refused, data kept; resume), ``limits`` (quotas), ``treatments``, ``name``
    (platform staff), ``language`` (the UI default: platform or the tenant's admin)."""
    tenant = get_tenant(s, actor, tenant_id)
    allowed = {"status", "limits", "treatments", "name", "language"}
    if not changes or not set(changes) <= allowed:
        raise Invalid(f"fields that may change here: {', '.join(sorted(allowed))}")
    if not actor.platform and set(changes) - {"language"}:  # suspend, quotas: platform's
        raise Forbidden("a tenant may change only its language here")
    _require(actor, "tenants.manage" if actor.platform else "settings.write")
    if tenant.status == "deleted":
        raise Conflict(f"tenant {tenant.id} is deleted")
    before = tenant_doc(tenant)
    if "status" in changes:
        if changes["status"] not in ("active", "suspended"):
            raise Invalid("status is active or suspended")
        tenant.status = changes["status"]
    if "limits" in changes:
        tenant.limits = {**limits_of(tenant), **_limits(changes["limits"])}
    if "treatments" in changes:
        tenant.treatments = {**treatments_of(tenant), **_treatments(changes["treatments"])}
    if "name" in changes:
        tenant.name = display_name(changes["name"], required=True)
    if "language" in changes:
        if changes["language"] not in LANGUAGES:
            raise Invalid(f"language among {', '.join(LANGUAGES)}")
        tenant.language = changes["language"]
    if "limits" in changes:
        flows = s.scalar(select(func.count()).select_from(Flow)
                         .where(Flow.tenant_id == tenant.id)) or 0
        if tenant.limits["ivr_flows"] and flows > tenant.limits["ivr_flows"]:
            raise QuotaExceeded(f"{tenant.id} has {flows} IVR flows: remove some before "
                                f"lowering the limit to {tenant.limits['ivr_flows']}")
    if set(changes) & {"status", "limits", "treatments"}:  # name, language: not in plans
        _check_tenant_plan(s, tenant)
    _audit(s, actor, tenant.id, "update", f"tenant/{tenant.id}", before, tenant_doc(tenant))
    return tenant


def _limits(doc: Any) -> dict[str, int]:
    if not isinstance(doc, dict) or not set(doc) <= set(LIMITS):
        raise Invalid(f"limits: a mapping with some of {', '.join(LIMITS)}")
    for key, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100000:
            raise Invalid(f"limits.{key}: a whole number 0-100000 (0: no limit)")
    return dict(doc)


def _treatments(doc: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(doc, dict) or not set(doc) <= set(TREATMENTS):
        raise Invalid(f"treatments: a mapping with some of {', '.join(TREATMENTS)}")
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict) and set(value) == {"reject"} and \
                value["reject"] in REJECT_CODES:
            out[key] = {"reject": value["reject"]}
        elif isinstance(value, dict) and "announcement" in value and \
                set(value) <= {"announcement", "voice"} and \
                isinstance(value["announcement"], str) and \
                0 < len(value["announcement"]) <= 500 and \
                value.get("voice", "en-us") in VOICES:
            out[key] = {"announcement": value["announcement"],
                        "voice": value.get("voice", "en-us")}
        else:
            raise Invalid(f"treatments.{key}: {{\"reject\": one of {REJECT_CODES}}} or "
                          '{"announcement": text, "voice": en-us|cmn|yue}')
    return out


def set_tenant_status(s: Session, actor: Actor, tenant_id: str, status: str) -> Tenant:
    """Suspend or resume a tenant."""
    return update_tenant(s, actor, tenant_id, {"status": status})


def delete_tenant(s: Session, actor: Actor, tenant_id: str,
                  retention_days: int = RETENTION_DAYS) -> Tenant:
    """Delete a tenant: out of every plan at once, logins refused, its data kept for
    ``retention_days`` and then removed by :func:`purge`."""
    _require(actor, "tenants.manage")
    tenant = get_tenant(s, actor, tenant_id)
    if not isinstance(retention_days, int) or not 0 <= retention_days <= 3650:
        raise Invalid("retention_days: 0-3650")
    before = tenant_doc(tenant)
    tenant.status = "deleted"
    tenant.purge_after = utcnow() + dt.timedelta(days=retention_days)
    _audit(s, actor, tenant.id, "delete", f"tenant/{tenant.id}", before,
           {**tenant_doc(tenant), "purge_after": tenant.purge_after.isoformat()})
    return tenant


def purge(s: Session, now: dt.datetime | None = None) -> list[str]:
    """Remove the tenants whose retention has ended (all their rows; the audit log
    keeps what was done). Returns their ids."""
    now = now or utcnow()
    gone = []
    for tenant in s.scalars(select(Tenant).where(Tenant.status == "deleted")):
        purge_after = tenant.purge_after
        if purge_after is not None and purge_after.tzinfo is None:
            purge_after = purge_after.replace(tzinfo=dt.UTC)  # SQLite drops the zone
        if purge_after is None or purge_after > now:
            continue
        users = list(s.scalars(select(User.id).where(User.tenant_id == tenant.id)))
        s.execute(delete(ApiToken).where(ApiToken.user_id.in_(users)))
        for model in (User, Number, Extension, Flow, Role):
            s.execute(delete(model).where(model.tenant_id == tenant.id))
        s.delete(tenant)
        _audit(s, "system", tenant.id, "purge", f"tenant/{tenant.id}", None, None)
        gone.append(tenant.id)
    return gone


# --------------------------------------------------------------------------- numbers
NUMBER_KINDS = ("did", "service", "400", "range")
_SERVICE_RE = re.compile(r"(95[0-9]{3,4}|12[0-9]{3})")
_400_RE = re.compile(r"400[0-9]{7}")
MAX_RANGE = 1000


def assign_number(s: Session, actor: Actor, tenant_id: str, number: str, target: str,
                  kind: str = "did", last: str | None = None) -> Number:
    """Give a number to a tenant (platform staff): a DID, a short service code
    (95xxx, 12xxx), a 400 number, or a range of DIDs up to ``last``. One number, one
    tenant: a number inside another's range is taken too."""
    _require(actor, "numbers.assign")
    if kind not in NUMBER_KINDS:
        raise Invalid(f"kind among {', '.join(NUMBER_KINDS)}")
    pattern = {"service": _SERVICE_RE, "400": _400_RE}.get(kind, NUMBER_RE)
    _check(pattern, number, f"{kind} number")
    if kind == "range":
        _check(NUMBER_RE, last, "last number of the range")
        assert last is not None
        if len(last) != len(number) or last < number or \
                int(last.lstrip("+")) - int(number.lstrip("+")) >= MAX_RANGE:
            raise Invalid(f"a range is first..last of the same length, up to {MAX_RANGE} "
                          "numbers")
    elif last is not None:
        raise Invalid("only a range has a last number")
    _check_target(target)
    tenant = get_tenant(s, actor, tenant_id)
    high = last or number
    owner = s.scalar(select(Number).where(
        func.length(Number.number) == len(number), Number.number <= high,
        func.coalesce(Number.last, Number.number) >= number))
    if owner is not None:
        raise Conflict(f"{number} overlaps {owner.number} of "
                       f"{'this tenant' if owner.tenant_id == tenant.id else 'another tenant'}")
    row = Number(number=number, tenant_id=tenant.id, kind=kind, target=target, last=last)
    s.add(row)
    _check_tenant_plan(s, tenant)
    _audit(s, actor, tenant.id, "create", f"number/{number}", None, number_doc(row))
    return row


def _check_target(target: object) -> None:
    if not isinstance(target, str) or not 0 < len(target) <= 80:
        raise Invalid("a target of 1-80 characters")


def number_doc(n: Number) -> dict[str, Any]:
    return {"number": n.number, "tenant": n.tenant_id, "kind": n.kind, "target": n.target,
            **({"last": n.last} if n.last else {})}


def get_number(s: Session, actor: Actor, number: str) -> Number:
    row = s.get(Number, number)
    if row is None or (not actor.platform and row.tenant_id != actor.tenant_id):
        raise NotFound(f"no number {number}")
    _require(actor, "numbers.read")
    return row


def list_numbers(s: Session, actor: Actor, tenant_id: str | None = None) -> list[Number]:
    _require(actor, "numbers.read")
    if actor.platform and not tenant_id:
        return list(s.scalars(select(Number).order_by(Number.number)))
    scope = _tenant_scope(actor, tenant_id)
    return list(s.scalars(select(Number).where(Number.tenant_id == scope)
                          .order_by(Number.number)))


def route_number(s: Session, actor: Actor, number: str, target: str) -> Number:
    """A tenant points one of its numbers at an extension, a group, a service or a
    flow (``flow:<name>``); the plan check refuses a target the tenant lacks."""
    row = get_number(s, actor, number)
    _require(actor, "numbers.route")
    _check_target(target)
    before = number_doc(row)
    row.target = target
    _check_tenant_plan(s, s.get(Tenant, row.tenant_id))
    _audit(s, actor, row.tenant_id, "update", f"number/{number}", before, number_doc(row))
    return row


def release_number(s: Session, actor: Actor, number: str) -> None:
    row = get_number(s, actor, number)
    _require(actor, "numbers.assign")
    before = number_doc(row)
    s.delete(row)
    _audit(s, actor, row.tenant_id, "delete", f"number/{number}", before, None)


# --------------------------------------------------------------------------- extensions
def add_extension(s: Session, actor: Actor, number: str, sip_password: str, name: str = "",
                  tenant_id: str | None = None) -> Extension:
    scope = _tenant_scope(actor, tenant_id)
    _require(actor, "extensions.write")
    tenant = get_tenant(s, actor, scope)
    _check(EXTENSION_RE, number, "extension")
    if not isinstance(sip_password, str) or len(sip_password) < 8:
        raise Invalid("a SIP password has at least 8 characters")
    display_name(name)
    if s.scalar(select(Extension).where(Extension.tenant_id == scope,
                                        Extension.number == number)) is not None:
        raise Conflict(f"extension {number} exists")
    ext = Extension(tenant_id=scope, number=number, name=name, sip_password=sip_password)
    s.add(ext)
    _check_tenant_plan(s, tenant)
    _audit(s, actor, scope, "create", f"extension/{number}", None,
           {"number": number, "name": name})  # the password is never audited
    return ext


def _extension(s: Session, actor: Actor, number: str) -> Extension:
    ext = s.scalar(select(Extension).where(Extension.tenant_id == actor.tenant_id,
                                           Extension.number == number)) \
        if not actor.platform else None
    if ext is None:
        raise NotFound(f"no extension {number}")
    return ext


def list_extensions(s: Session, actor: Actor, tenant_id: str | None = None) -> list[Extension]:
    scope = _tenant_scope(actor, tenant_id)
    _require(actor, "extensions.read")
    return list(s.scalars(select(Extension).where(Extension.tenant_id == scope)
                          .order_by(Extension.number)))


def delete_extension(s: Session, actor: Actor, number: str) -> None:
    """Remove one of the actor's tenant's extensions (the plan check refuses it while
    a group, agent or mailbox still names it)."""
    _require(actor, "extensions.write")
    ext = _extension(s, actor, number)
    s.delete(ext)
    _check_tenant_plan(s, s.get(Tenant, ext.tenant_id))
    _audit(s, actor, ext.tenant_id, "delete", f"extension/{number}",
           {"number": number, "name": ext.name}, None)


# --------------------------------------------------------------------------- roles
def define_role(s: Session, actor: Actor, name: str, permissions: list[str]) -> Role:
    """A tenant's custom role (created or replaced): a subset of the tenant
    permissions. Built-in role names are taken."""
    _require(actor, "roles.manage")
    tenant_id = _tenant_scope(actor, None)
    _check(ID_RE, name, "role name")
    if name in ROLE_PERMISSIONS:
        raise Conflict(f"{name} is a built-in role")
    if not isinstance(permissions, list) or not all(p in TENANT_PERMISSIONS
                                                    for p in permissions):
        raise Invalid(f"permissions among {', '.join(TENANT_PERMISSIONS)}")
    if not set(permissions) <= actor.permissions:
        raise Forbidden("a role cannot hold a permission its author lacks")
    role = s.scalar(select(Role).where(Role.tenant_id == tenant_id, Role.name == name))
    before = None if role is None else {"name": name, "permissions": role.permissions}
    if role is None:
        role = Role(tenant_id=tenant_id, name=name, permissions=[])
        s.add(role)
    role.permissions = sorted(set(permissions))
    _audit(s, actor, tenant_id, "update" if before else "create", f"role/{name}", before,
           {"name": name, "permissions": role.permissions})
    return role


def list_roles(s: Session, actor: Actor) -> list[dict[str, Any]]:
    """The roles a user of the actor's level can be given, with their permissions."""
    if actor.platform:
        return [{"name": r, "permissions": sorted(ROLE_PERMISSIONS[r]), "builtin": True}
                for r in PLATFORM_ROLES]
    _require(actor, "users.read")
    custom = s.scalars(select(Role).where(Role.tenant_id == actor.tenant_id)
                       .order_by(Role.name))
    return [{"name": r, "permissions": sorted(ROLE_PERMISSIONS[r]), "builtin": True}
            for r in TENANT_ROLES] + \
        [{"name": r.name, "permissions": list(r.permissions), "builtin": False}
         for r in custom]


def _role_exists(s: Session, tenant_id: str | None, role: Any) -> bool:
    """Whether ``role`` may be given to a user of ``tenant_id`` (None: platform)."""
    if not isinstance(role, str):
        return False
    if tenant_id is None:
        return role in PLATFORM_ROLES
    return role in TENANT_ROLES or s.scalar(select(Role).where(
        Role.tenant_id == tenant_id, Role.name == role)) is not None


def _permissions(s: Session, user: User) -> frozenset[str] | None:
    return _role_permissions(s, user.tenant_id, user.role)


def _role_permissions(s: Session, tenant_id: str | None, name: str) -> frozenset[str] | None:
    """What the role ``name`` of ``tenant_id`` (None: platform) allows; None: no such role."""
    if tenant_id is None:
        return ROLE_PERMISSIONS.get(name) if name in PLATFORM_ROLES else None
    if name in TENANT_ROLES:
        return ROLE_PERMISSIONS[name]
    role = s.scalar(select(Role).where(Role.tenant_id == tenant_id, Role.name == name))
    return None if role is None else frozenset(role.permissions) & frozenset(TENANT_PERMISSIONS)


def _check_grant(s: Session, actor: Actor, tenant_id: str, role: str) -> None:
    """A tenant's user gives no role holding a permission the user lacks (a custom role
    with users.write cannot make an admin)."""
    if not actor.platform and \
            not (_role_permissions(s, tenant_id, role) or frozenset()) <= actor.permissions:
        raise Forbidden(f"the role {role} holds permissions you lack")


# --------------------------------------------------------------------------- users
def create_user(s: Session, actor: Actor, *, staff_id: str, password: str, role: str,
                tenant_id: str | None = None, name: str = "", phone: str | None = None,
                language: str = "") -> User:
    """Platform staff create platform users (super-admins only) and tenant users; a
    tenant's administrator creates users of its own tenant, with a built-in or one of
    the tenant's custom roles."""
    _check(_STAFF_RE, staff_id, "staff id")
    if not isinstance(password, str) or len(password) < 10:
        raise Invalid("a password has at least 10 characters")
    display_name(name)
    if phone is not None:
        _check(NUMBER_RE, phone, "phone number")
    if language not in ("", *LANGUAGES):
        raise Invalid(f"language among {', '.join(LANGUAGES)} (or empty: the tenant's)")
    if tenant_id is None and actor.platform:
        if role not in PLATFORM_ROLES:
            raise Invalid(f"platform roles: {', '.join(PLATFORM_ROLES)}")
        _require(actor, "staff.manage")
    else:
        tenant_id = _tenant_scope(actor, tenant_id)
        get_tenant(s, actor, tenant_id)
        _require(actor, "users.write")
        if not _role_exists(s, tenant_id, role):
            raise Invalid(f"tenant roles: {', '.join(TENANT_ROLES)} or a custom role")
        _check_grant(s, actor, tenant_id, role)
    if s.scalar(select(User).where(User.staff_id == staff_id)) is not None:
        raise Conflict(f"staff id {staff_id} is taken")
    user = User(staff_id=staff_id, tenant_id=tenant_id, role=role, name=name,
                password_hash=hash_password(password), language=language, phone=phone)
    s.add(user)
    _audit(s, actor, tenant_id, "create", f"user/{staff_id}", None,
           {"staff_id": staff_id, "role": role, "phone": mask_number(phone)})
    return user


def user_doc(actor: Actor, u: User) -> dict[str, Any]:
    """A user as ``actor`` may see it: the phone masked without ``pii.read``."""
    return {"staff_id": u.staff_id, "tenant": u.tenant_id, "role": u.role, "name": u.name,
            "language": u.language,
            "phone": u.phone if actor.may("pii.read") else mask_number(u.phone)}


def list_users(s: Session, actor: Actor, tenant_id: str | None = None) -> list[User]:
    if actor.platform and tenant_id is None:
        _require(actor, "staff.manage")
        return list(s.scalars(select(User).where(User.tenant_id.is_(None))
                              .order_by(User.staff_id)))
    scope = _tenant_scope(actor, tenant_id)
    _require(actor, "users.read")
    return list(s.scalars(select(User).where(User.tenant_id == scope)
                          .order_by(User.staff_id)))


def get_user(s: Session, actor: Actor, staff_id: str) -> User:
    user = s.scalar(select(User).where(User.staff_id == staff_id))
    if user is None or (not actor.platform and user.tenant_id != actor.tenant_id):
        raise NotFound(f"no user {staff_id}")
    if user.staff_id != actor.staff_id:
        _require(actor, "users.read" if user.tenant_id else "staff.manage")
    return user


def update_user(s: Session, actor: Actor, staff_id: str, changes: dict[str, Any]) -> User:
    """Change a user's role, name, phone, language or password. Everyone may change
    their own language and password."""
    user = get_user(s, actor, staff_id)
    own = {"language", "password"}
    if not changes or not set(changes) <= {"role", "name", "phone", "language", "password"}:
        raise Invalid("fields: role, name, phone, language, password")
    if user.staff_id != actor.staff_id or not set(changes) <= own:
        _require(actor, "users.write" if user.tenant_id else "staff.manage")
    before = user_doc(actor, user)
    if "role" in changes:
        role = changes["role"]
        if not _role_exists(s, user.tenant_id, role):
            raise Invalid(f"no role {role!r} here")
        if user.tenant_id is not None:
            _check_grant(s, actor, user.tenant_id, role)
        user.role = role
    if "name" in changes:
        user.name = display_name(changes["name"])
    if "phone" in changes:
        if changes["phone"] is not None:
            _check(NUMBER_RE, changes["phone"], "phone number")
        user.phone = changes["phone"]
    if "language" in changes:
        if changes["language"] not in ("", *LANGUAGES):
            raise Invalid(f"language among {', '.join(LANGUAGES)} (or empty: the tenant's)")
        user.language = changes["language"]
    if "password" in changes:
        if not isinstance(changes["password"], str) or len(changes["password"]) < 10:
            raise Invalid("a password has at least 10 characters")
        user.password_hash = hash_password(changes["password"])
    after = user_doc(actor, user)
    before["phone"], after["phone"] = mask_number(before["phone"]), mask_number(after["phone"])
    _audit(s, actor, user.tenant_id, "update", f"user/{staff_id}", before,
           {**after, **({"password": "changed"} if "password" in changes else {})})
    return user


def _actor_for_user(s: Session, user: User) -> Actor | None:
    if user.tenant_id is not None:
        tenant = s.get(Tenant, user.tenant_id)
        if tenant is None or tenant.status != "active":
            return None
        language = user.language or tenant.language
    else:
        language = user.language or "en"
    permissions = _permissions(s, user)
    if permissions is None:
        return None
    return Actor(user.staff_id, user.tenant_id, user.role, permissions, language)


def authenticate(s: Session, staff_id: str, password: str) -> Actor | None:
    """The actor for a staff id and password, or None. Users of a suspended or deleted
    tenant cannot log in."""
    user = s.scalar(select(User).where(User.staff_id == staff_id))
    if user is None:
        verify_password(password, None)  # same time for unknown users
        return None
    if not verify_password(password, user.password_hash):
        return None
    return _actor_for_user(s, user)


def actor_for_staff(s: Session, staff_id: str) -> Actor | None:
    """The actor of a logged-in web session, checked again on each request (a
    suspended tenant's sessions stop working at once)."""
    user = s.scalar(select(User).where(User.staff_id == staff_id))
    return None if user is None else _actor_for_user(s, user)


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
    actor = None if user is None else _actor_for_user(s, user)
    return None if actor is None else (actor, frozenset(row.scopes.split()))


# --------------------------------------------------------------------------- flows
def put_flow(s: Session, actor: Actor, name: str, document: dict[str, Any],
             tenant_id: str | None = None) -> Flow:
    """Create or replace one of the tenant's IVR flows; the node's own parser checks
    it (errors name the field), and the tenant's ``ivr_flows`` quota caps how many."""
    _require(actor, "flows.write")
    tenant = get_tenant(s, actor, _tenant_scope(actor, tenant_id))
    _check(_FLOW_NAME_RE, name, "flow name")
    if name.startswith("sys-"):
        raise Invalid("sys- flow names are the system's")
    if not isinstance(document, dict):
        raise Invalid("a flow is a JSON object")
    flow = s.scalar(select(Flow).where(Flow.tenant_id == tenant.id, Flow.name == name))
    before = None if flow is None else {"name": name, "document": flow.document}
    if flow is None:
        count = s.scalar(select(func.count()).select_from(Flow)
                         .where(Flow.tenant_id == tenant.id)) or 0
        cap = limits_of(tenant)["ivr_flows"]
        if cap and count >= cap:
            raise QuotaExceeded(f"{tenant.id} may load {cap} IVR flows")
        flow = Flow(tenant_id=tenant.id, name=name, document=document)
        s.add(flow)
    flow.document, flow.updated_at = document, utcnow()
    _check_tenant_plan(s, tenant)
    _audit(s, actor, tenant.id, "update" if before else "create", f"flow/{name}", before,
           {"name": name, "document": document})
    return flow


def list_flows(s: Session, actor: Actor) -> list[Flow]:
    _require(actor, "flows.read")
    return list(s.scalars(select(Flow).where(Flow.tenant_id == _tenant_scope(actor, None))
                          .order_by(Flow.name)))


def get_flow(s: Session, actor: Actor, name: str) -> Flow:
    _require(actor, "flows.read")
    flow = s.scalar(select(Flow).where(Flow.tenant_id == _tenant_scope(actor, None),
                                       Flow.name == name))
    if flow is None:
        raise NotFound(f"no flow {name}")
    return flow


def delete_flow(s: Session, actor: Actor, name: str) -> None:
    flow = get_flow(s, actor, name)
    _require(actor, "flows.write")
    s.delete(flow)
    _check_tenant_plan(s, s.get(Tenant, flow.tenant_id))
    _audit(s, actor, flow.tenant_id, "delete", f"flow/{name}",
           {"name": name, "document": flow.document}, None)


# --------------------------------------------------------------------------- sections
def get_section(s: Session, actor: Actor, section: str) -> Any:
    _require(actor, "sections.read")
    if section not in SECTIONS:
        raise NotFound(f"no plan section {section}")
    tenant = get_tenant(s, actor, _tenant_scope(actor, None))
    return (tenant.sections or {}).get(section, {} if section in ("actions", "acd") else [])


def put_section(s: Session, actor: Actor, section: str, value: Any,
                tenant_id: str | None = None) -> Any:
    """Replace one plan section of the tenant (checked by the node's plan parser)."""
    _require(actor, "sections.write")
    if section not in SECTIONS:
        raise NotFound(f"no plan section {section}")
    tenant = get_tenant(s, actor, _tenant_scope(actor, tenant_id))
    before = {section: (tenant.sections or {}).get(section)}
    tenant.sections = {**(tenant.sections or {}), section: value}
    _check_tenant_plan(s, tenant)
    _audit(s, actor, tenant.id, "update", f"section/{section}",  # database URLs left out
           {section: section_shown(section, before[section])},
           {section: section_shown(section, value)})
    return value


def section_shown(section: str, value: Any) -> Any:
    """A plan section as the API and the audit show it: data action database URLs hold
    passwords, so they are write-only (shown by name)."""
    if section == "actions" and isinstance(value, dict):
        return {"databases": sorted(value.get("databases") or {}),
                "hosts": value.get("hosts", [])}
    return value


# --------------------------------------------------------------------------- audit, export
def _audit_query(actor: Actor) -> Any:
    _require(actor, "audit.read")
    query = select(AuditEntry)
    if not actor.platform:
        query = query.where(AuditEntry.tenant_id == actor.tenant_id)
    return query


def list_audit(s: Session, actor: Actor) -> list[AuditEntry]:
    """The whole audit log the actor may read, newest first (for exports)."""
    return list(s.scalars(_audit_query(actor).order_by(AuditEntry.id.desc())))


def audit_page(s: Session, actor: Actor, offset: int, limit: int
               ) -> tuple[list[AuditEntry], int]:
    """One page of the audit log, newest first, and how many entries there are (the
    log only grows: the database pages it, not Python)."""
    query = _audit_query(actor)
    total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = s.scalars(query.order_by(AuditEntry.id.desc()).offset(offset).limit(limit))
    return list(rows), total


def isoformat(value: dt.datetime) -> str:
    """A stored time in ISO 8601 with its zone (SQLite hands times back without it;
    they were stored as UTC)."""
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def audit_doc(a: AuditEntry) -> dict[str, Any]:
    return {"id": a.id, "at": isoformat(a.at), "actor": a.actor, "tenant": a.tenant_id,
            "action": a.action, "object": a.object, "before": a.before, "after": a.after}


EXPORTS = ("users", "numbers", "extensions", "audit")


def export(s: Session, actor: Actor, kind: str) -> list[dict[str, Any]]:
    """The rows of an export (CSV in the API and pages); every export is logged in
    the audit log with who, what and how many rows."""
    _require(actor, "export")
    if kind not in EXPORTS:
        raise NotFound(f"no export {kind}")
    rows: list[dict[str, Any]]
    if kind == "users":
        rows = [user_doc(actor, u) for u in (
            s.scalars(select(User).order_by(User.staff_id)) if actor.platform
            else list_users(s, actor))]
    elif kind == "numbers":
        rows = [number_doc(n) for n in list_numbers(s, actor)]
    elif kind == "extensions":
        rows = [{"number": e.number, "name": e.name, "tenant": e.tenant_id}
                for e in (s.scalars(select(Extension).order_by(Extension.tenant_id,
                                                               Extension.number))
                          if actor.platform else list_extensions(s, actor))]
    else:
        rows = [{**audit_doc(a), "before": json.dumps(a.before), "after": json.dumps(a.after)}
                for a in list_audit(s, actor)]
    _audit(s, actor, actor.tenant_id, "export", f"export/{kind}", None, {"rows": len(rows)})
    return rows


# --------------------------------------------------------------------------- plan
def tenant_plan(s: Session, t: Tenant) -> dict[str, Any]:
    """One tenant's part of a node's plan."""
    exts = s.scalars(select(Extension).where(Extension.tenant_id == t.id)
                     .order_by(Extension.number))
    dids = []
    for n in s.scalars(select(Number).where(Number.tenant_id == t.id).order_by(Number.number)):
        if n.last is None:
            dids.append({"number": n.number, "target": n.target})
            continue
        plus, width = n.number.startswith("+"), len(n.number.lstrip("+"))
        for value in range(int(n.number.lstrip("+")), int(n.last.lstrip("+")) + 1):
            dids.append({"number": ("+" if plus else "") + str(value).zfill(width),
                         "target": n.target})
    flows = {f.name: f.document for f in s.scalars(
        select(Flow).where(Flow.tenant_id == t.id).order_by(Flow.name))}
    return {
        "id": t.id, "domain": t.domain, "caller_id": t.caller_id, "status": t.status,
        "limits": limits_of(t), "treatments": treatments_of(t),
        "extensions": [{"number": e.number, "password": e.sip_password, "name": e.name}
                       for e in exts],
        "dids": dids, "flows": flows,
        **{k: v for k, v in (t.sections or {}).items() if k in SECTIONS},
    }


def _check_tenant_plan(s: Session, tenant: Tenant | None) -> None:
    """Refuse a change that would give a node serving ``tenant`` a plan it rejects."""
    from controller.nodes import check_tenant  # nodes builds on this module

    if tenant is not None:
        s.flush()
        check_tenant(s, tenant)
