"""Nodes: their records, one-time claim codes, the plan compiled for each, and what
they report over the node link (acknowledged plan versions, heartbeats).

A node serves a list of tenants (or all of them). Its plan is compiled from the store
and validated with the node's own parser (:meth:`appliance.plan.Plan.from_dict`), so
the controller never ships a plan the node would refuse: every change to a tenant is
checked against each node serving it before it is committed (:func:`check_tenant`).
The plan's version rises only when its content changes (a digest of the compiled
document), so a node is never sent the same plan twice.

:class:`DbLinkBackend` is what the node link daemon (:mod:`controller.linkd`) calls:
claims, certificates, the store's revision (the newest audit entry: every change is
audited), plans, acknowledgements and heartbeats.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import threading
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from appliance.ids import ID_RE
from appliance.plan import Plan, PlanError
from controller.service import (
    SECTIONS,
    Actor,
    Conflict,
    Invalid,
    NotFound,
    _audit,
    _check,
    _require,
    display_name,
    get_tenant,
    limits_of,
    tenant_plan,
)
from controller.store import AuditEntry, Extension, Flow, Node, Number, Tenant, utcnow

NODE_ROLES = ("hub", "branch")
CLAIM_TTL = dt.timedelta(hours=24)
_CLAIM_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read over the phone
SETTINGS = ("ivr_ports", "api_tokens")
# a node is shown offline when it has not been heard for this long
STALE = dt.timedelta(seconds=5)


def node_doc(n: Node, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    seen = _aware(n.last_seen)
    online = bool(n.connected and seen is not None and now - seen <= STALE)
    return {
        "id": n.id, "name": n.name, "role": n.role, "site": n.site, "tenants": n.tenants,
        "trunks": n.trunks, "settings": n.settings, "enrolled": n.cert_fingerprint is not None,
        "plan_version": n.plan_version, "applied_version": n.applied_version,
        "plan_error": n.plan_error, "online": online,
        "last_seen": seen.isoformat() if seen else None, "status": n.status or {},
    }


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back without their zone (they were stored as UTC)."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None \
        else value


# --------------------------------------------------------------------------- records
def create_node(s: Session, actor: Actor, *, id: str, name: str = "", role: str = "branch",
                site: str = "", tenants: list[str] | None = None,
                trunks: list[dict[str, Any]] | None = None,
                settings: dict[str, Any] | None = None) -> Node:
    _require(actor, "nodes.manage")
    _check(ID_RE, id, "node id")
    if s.get(Node, id) is not None:
        raise Conflict(f"node {id} exists")
    node = Node(id=id, name="", role="branch", site="", tenants=None, trunks=[], settings={},
                status={}, plan_version=0, plan_digest="", applied_version=0,
                connected=False)
    s.add(node)
    _apply(s, node, {"name": name, "role": role, "site": site, "tenants": tenants,
                     "trunks": trunks or [], "settings": settings or {}})
    _audit(s, actor, None, "create", f"node/{id}", None, _config(node))
    return node


def update_node(s: Session, actor: Actor, node_id: str, changes: dict[str, Any]) -> Node:
    _require(actor, "nodes.manage")
    node = get_node(s, actor, node_id)
    if not changes or not set(changes) <= {"name", "role", "site", "tenants", "trunks",
                                           "settings"}:
        raise Invalid("fields: name, role, site, tenants, trunks, settings")
    before = _config(node)
    _apply(s, node, changes)
    _audit(s, actor, None, "update", f"node/{node_id}", before, _config(node))
    return node


def _config(n: Node) -> dict[str, Any]:
    return {"id": n.id, "name": n.name, "role": n.role, "site": n.site, "tenants": n.tenants,
            "trunks": n.trunks, "settings": n.settings}


def _apply(s: Session, node: Node, changes: dict[str, Any]) -> None:
    if "name" in changes:
        node.name = display_name(changes["name"])
    if "role" in changes:
        if changes["role"] not in NODE_ROLES:
            raise Invalid(f"role among {', '.join(NODE_ROLES)}")
        node.role = changes["role"]
    if "site" in changes:
        if changes["site"] and not (isinstance(changes["site"], str)
                                    and ID_RE.fullmatch(changes["site"])):
            raise Invalid("a site is an identifier")
        node.site = changes["site"] or ""
    if "tenants" in changes:
        tenants = changes["tenants"]
        if tenants is not None:
            if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
                raise Invalid("tenants: a list of tenant ids, or null for all")
            for tid in tenants:
                if s.get(Tenant, tid) is None:
                    raise Invalid(f"no tenant {tid}")
        node.tenants = tenants
    if "trunks" in changes:
        if not isinstance(changes["trunks"], list):
            raise Invalid("trunks: a list")
        node.trunks = changes["trunks"]
    if "settings" in changes:
        settings = changes["settings"]
        if not isinstance(settings, dict) or not set(settings) <= set(SETTINGS):
            raise Invalid(f"settings: a mapping with some of {', '.join(SETTINGS)}")
        node.settings = settings
    try:  # the node must accept what it will now be sent
        compile_plan(s, node, 1)
    except PlanError as exc:
        raise Invalid(f"node {node.id} would refuse its plan: {exc}") from None


def get_node(s: Session, actor: Actor, node_id: str) -> Node:
    _require(actor, "nodes.read")
    node = s.get(Node, node_id)
    if node is None:
        raise NotFound(f"no node {node_id}")
    return node


def list_nodes(s: Session, actor: Actor) -> list[Node]:
    _require(actor, "nodes.read")
    return list(s.scalars(select(Node).order_by(Node.id)))


def claim_hash(code: str) -> str:
    normalized = code.strip().upper().replace("-", "").replace(" ", "")
    return "sha256:" + hashlib.sha256(normalized.encode()).hexdigest()


def issue_claim(s: Session, actor: Actor, node_id: str) -> tuple[str, dt.datetime]:
    """A one-time claim code that enrols a box as this node (valid for a day; a new
    code replaces the old; only its hash is kept and nothing logs the code)."""
    _require(actor, "nodes.manage")
    node = get_node(s, actor, node_id)
    raw = "".join(secrets.choice(_CLAIM_ALPHABET) for _ in range(12))
    code = "-".join(raw[i:i + 4] for i in range(0, 12, 4))
    node.claim_hash, node.claim_expires = claim_hash(code), utcnow() + CLAIM_TTL
    _audit(s, actor, None, "claim", f"node/{node_id}", None,
           {"expires": node.claim_expires.isoformat()})
    return code, node.claim_expires


# --------------------------------------------------------------------------- plans
def _served(s: Session, node: Node) -> list[Tenant]:
    query = select(Tenant).where(Tenant.status != "deleted").order_by(Tenant.id)
    if node.tenants is not None:
        query = query.where(Tenant.id.in_(node.tenants))
    return list(s.scalars(query))


def compile_plan(s: Session, node: Node, version: int) -> dict[str, Any]:
    """The plan of ``node`` from the store, validated as the node will validate it
    (raises :class:`PlanError`). Suspended tenants are in it, marked, so the node
    gives their callers the suspended treatment; deleted tenants are not."""
    settings = node.settings or {}
    doc = {"version": version,
           "node": {"id": node.id, "ivr_ports": settings.get("ivr_ports", 0),  # checked
                    "api_tokens": settings.get("api_tokens", [])},  # by the plan parser
           "trunks": node.trunks or [],
           "tenants": [tenant_plan(s, t) for t in _served(s, node)]}
    Plan.from_dict(doc)
    return doc


def check_tenant(s: Session, tenant: Tenant) -> None:
    """Raise :class:`Invalid` when a node serving ``tenant`` would refuse the tenant's
    part of its plan (checked once per distinct trunk set: the other tenants cannot
    clash with it, the store keeps numbers and domains unique)."""
    nodes = [n for n in s.scalars(select(Node)) if n.tenants is None or tenant.id in n.tenants]
    trunk_sets = {json.dumps(n.trunks or [], sort_keys=True): (n.id, n.trunks or [])
                  for n in nodes}
    if not trunk_sets:
        trunk_sets = {"": ("any node", [])}
    part = tenant_plan(s, tenant)
    for node_id, trunks in trunk_sets.values():
        try:
            Plan.from_dict({"version": 1, "node": {"id": "check"}, "trunks": trunks,
                            "tenants": [part]})
        except PlanError as exc:
            raise Invalid(f"node {node_id} would refuse this: {exc}") from None


def plan_for(s: Session, node_id: str) -> tuple[int, dict[str, Any]] | None:
    """The node's current plan and its version: the version rises when the compiled
    content differs from what was compiled last (the row is locked meanwhile, so two
    controller processes cannot both raise it)."""
    node = s.scalar(select(Node).where(Node.id == node_id).with_for_update())
    if node is None:
        return None
    try:
        doc = compile_plan(s, node, 1)
    except PlanError as exc:  # the checks on every change should make this impossible
        node.plan_error = f"controller: {exc}"[:1000]
        return None
    body = {k: v for k, v in doc.items() if k != "version"}
    digest = "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    if digest != node.plan_digest:
        node.plan_version += 1
        node.plan_digest = digest
    doc["version"] = node.plan_version
    return node.plan_version, doc


# --------------------------------------------------------------------------- usage
def tenant_usage(s: Session, actor: Actor, tenant_id: str | None) -> dict[str, Any]:
    """Live use of a tenant against its limits, summed over the nodes that reported in
    the last seconds."""
    tenant = get_tenant(s, actor, tenant_id or actor.tenant_id or "")
    _require(actor, "usage.read")
    usage = {"calls": 0, "ivr_busy": 0, "pstn_calls": 0}
    nodes = []
    now = utcnow()
    for node in s.scalars(select(Node).order_by(Node.id)):
        doc = node_doc(node, now)
        entry = (doc["status"].get("tenants") or {}).get(tenant.id)
        if not doc["online"] or not isinstance(entry, dict):
            continue
        for key in usage:
            usage[key] += int(entry.get(key, 0))
        nodes.append(node.id)
    return {"tenant": tenant.id, "status": tenant.status, "limits": limits_of(tenant),
            "usage": usage, "nodes": nodes}


# --------------------------------------------------------------------------- link backend
class DbLinkBackend:
    """The node link daemon's view of the store (each call its own transaction, but
    heartbeats: they are kept and written together at most once a second, so a
    hundred nodes cost one transaction a second instead of a hundred)."""

    HEARTBEAT_FLUSH = 1.0  # seconds

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._beats: dict[str, tuple[dict[str, Any], dt.datetime]] = {}
        self._beats_lock = threading.Lock()
        self._flushed = 0.0  # time.monotonic() of the last heartbeat write

    def redeem_claim(self, code: str) -> str | None:
        with self.sessions() as s:
            node = s.scalar(select(Node).where(Node.claim_hash == claim_hash(code))
                            .with_for_update())
            expires = _aware(node.claim_expires) if node is not None else None
            if node is None or expires is None or expires < utcnow():
                return None
            node.claim_hash, node.claim_expires = None, None
            _audit(s, "link", None, "enrol", f"node/{node.id}", None, None)
            s.commit()
            return node.id

    def certificate_issued(self, node_id: str, fingerprint: str) -> None:
        with self.sessions() as s:
            node = s.get(Node, node_id)
            if node is not None:
                node.cert_fingerprint = fingerprint
                s.commit()

    def certificate_valid(self, node_id: str, fingerprint: str) -> bool:
        with self.sessions() as s:
            node = s.get(Node, node_id)
            return node is not None and node.cert_fingerprint == fingerprint

    def revision(self) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.max(AuditEntry.id))) or 0)

    def plan_for(self, node_id: str) -> tuple[int, dict[str, Any]] | None:
        with self.sessions() as s:
            found = plan_for(s, node_id)
            s.commit()
            return found

    def plan_acknowledged(self, node_id: str, version: int, ok: bool,
                          error: str | None) -> None:
        with self.sessions() as s:
            node = s.get(Node, node_id)
            if node is None:
                return
            if ok:
                node.applied_version, node.plan_error = version, None
            else:
                node.plan_error = f"version {version}: {error or 'refused'}"[:1000]
            s.commit()

    def heartbeat(self, node_id: str, status: dict[str, Any]) -> None:
        with self._beats_lock:
            self._beats[node_id] = (status, utcnow())
            due = time.monotonic() - self._flushed >= self.HEARTBEAT_FLUSH
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the heartbeats kept since the last write."""
        with self._beats_lock:
            beats, self._beats = self._beats, {}
            self._flushed = time.monotonic()
        if not beats:
            return
        with self.sessions() as s:
            for node in s.scalars(select(Node).where(Node.id.in_(list(beats)))):
                node.status, node.last_seen = beats[node.id]
                node.connected = True
            s.commit()

    def disconnected(self, node_id: str) -> None:
        with self._beats_lock:
            self._beats.pop(node_id, None)
        with self.sessions() as s:
            node = s.get(Node, node_id)
            if node is not None:
                node.connected = False
                s.commit()


# --------------------------------------------------------------------------- import
def import_plan(s: Session, actor: Actor, doc: dict[str, Any]) -> Node:
    """Bring a standalone node's plan under the controller: the node record (trunks,
    settings) and its tenants (extensions, numbers, flows, plan sections), all in the
    caller's transaction and checked as one plan at the end. Tenants that exist are
    refused (nothing is merged silently)."""
    _require(actor, "tenants.manage")
    _require(actor, "nodes.manage")
    try:
        plan = Plan.from_dict(doc)  # what the node accepts, the controller can hold
    except PlanError as exc:
        raise Invalid(f"plan: {exc}") from None
    node_doc_ = doc.get("node") or {}
    settings = {k: node_doc_[k] for k in SETTINGS if k in node_doc_}
    node = create_node(s, actor, id=plan.node_id, trunks=list(doc.get("trunks") or []),
                       settings=settings, tenants=None)
    for t_doc in doc.get("tenants") or []:
        tenant = Tenant(id=t_doc["id"], name=t_doc.get("name") or t_doc["id"],
                        domain=t_doc["domain"], caller_id=t_doc["caller_id"],
                        status=t_doc.get("status", "active"), language="en",
                        limits=dict(t_doc.get("limits") or {}),
                        treatments=dict(t_doc.get("treatments") or {}),
                        sections={k: t_doc[k] for k in SECTIONS if k in t_doc})
        if s.get(Tenant, tenant.id) is not None:
            raise Conflict(f"tenant {tenant.id} exists")
        s.add(tenant)
        s.flush()  # its rows below refer to it
        for e in t_doc.get("extensions") or []:
            s.add(Extension(tenant_id=tenant.id, number=e["number"], name=e.get("name", ""),
                            sip_password=e["password"]))
        for d in t_doc.get("dids") or []:
            if s.get(Number, d["number"]) is not None:
                raise Conflict(f"{d['number']} belongs to a tenant already")
            s.add(Number(number=d["number"], tenant_id=tenant.id, kind="did",
                         target=d["target"]))
        for name, flow in (t_doc.get("flows") or {}).items():
            s.add(Flow(tenant_id=tenant.id, name=name, document=flow))
        s.flush()
        check_tenant(s, tenant)
        _audit(s, actor, tenant.id, "import", f"tenant/{tenant.id}", None,
               {"id": tenant.id, "domain": tenant.domain,
                "extensions": len(t_doc.get("extensions") or []),
                "numbers": len(t_doc.get("dids") or []),
                "flows": sorted(t_doc.get("flows") or {})})
    return node
