"""The node's plan: tenants, numbers, extensions, trunks and routes.

Theory of operation
-------------------
A plan is a versioned document (YAML or JSON) that the controller compiles for one
node; on a stand-alone node it is a file.  ``Plan.from_dict`` validates the whole
document up front and raises :class:`PlanError` naming the offending path, so a bad
plan is refused with its reason and the previous plan keeps running.

Routing is pure: :meth:`Plan.route` takes where a call came from (a trunk, or an
extension of a tenant) and the dialled number and returns a :class:`Route`.  The
tenant is decided by the DID for trunk calls and by the authenticated SIP domain
for extension calls; an extension call only ever resolves numbers of its own
tenant, so one tenant can never reach another's extensions.

Tenancy on the node: a tenant is ``active`` or ``suspended``, has ``limits`` (quotas,
0 = no limit) and ``treatments``, what a call refused because the tenant is suspended
or over a quota gets (a SIP rejection, or an announcement answered, played and hung
up). The plan only carries them; the call control (``appliance.pbx.b2bua``), the SIP
edge and the node's API enforce them. The one quota the plan itself enforces is
``ivr_flows``: a tenant with more flows than its limit is refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from appliance.acd.errors import AcdConfigError
from appliance.acd.model import AgentConfig, OverflowRule, QueueConfig, TenantAcdConfig
from appliance.ids import DOMAIN_RE, EXTENSION_RE, ID_RE, NUMBER_RE
from appliance.ivr.flow import Flow, FlowError, flow_from_dict, subflow_names
from appliance.ivr.system import SYSTEM_FLOWS
from appliance.passwords import is_hash

TargetKind = Literal["extension", "hunt_group", "announcement", "echo", "trunk", "flow",
                     "queue", "none"]

_ID_RE = ID_RE
_PREFIX_RE = re.compile(r"^[0-9+*#]{1,10}$")
_AGENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_IPV4_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
SERVICES = frozenset({"echo"})
VOICES = ("en-us", "cmn", "yue")
REJECT_CODES = (403, 480, 486, 503)  # what a treatment may answer a refused call with
LIMITS = ("ivr_ports", "pstn_calls", "web_calls", "agents", "ivr_flows", "storage_mb")
TenantStatus = Literal["active", "suspended"]


class PlanError(ValueError):
    """The plan document is invalid; ``path`` names the offending element."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Extension:
    number: str
    password: str
    name: str = ""

    def ha1(self, realm: str) -> str:
        """RFC 2617 HA1 = MD5(user:realm:password), what the SIP edge stores."""
        return hashlib.md5(f"{self.number}:{realm}:{self.password}".encode()).hexdigest()


@dataclass(frozen=True)
class HuntGroup:
    number: str
    members: tuple[str, ...]
    ring_seconds: float = 15.0


@dataclass(frozen=True)
class Announcement:
    number: str
    text: str
    voice: str = "en-us"


@dataclass(frozen=True)
class Mailbox:
    """A voicemail box (R-4.10); ``pin`` is a hash (``appliance.passwords``), and
    ``extension`` is the phone told about waiting messages."""

    number: str
    pin: str = field(repr=False)
    name: str = ""
    extension: str | None = None


@dataclass(frozen=True)
class Agent:
    """A contact-centre agent of the tenant, reached at an extension, with skills
    (``{name: 1-10}``) and a desktop password (a hash, ``python -m appliance.ivr pin``;
    "" : no desktop login)."""

    id: str
    extension: str
    name: str = ""
    skills: Mapping[str, int] = field(default_factory=dict)
    password: str = field(default="", repr=False)
    auto_answer: bool = False
    break_group: str = ""
    supervisor: bool = False  # may watch the tenant's ACD, force states, monitor calls


@dataclass(frozen=True)
class Queue:
    """A queue of agents a flow can transfer to; ``acd`` is its ACD configuration
    (strategy, priority, wrap-up, limits, overflow...: appliance/acd/model.py) and
    ``skills`` what its contacts require (``{skill: minimum level}``);
    ``callback_key`` the key a waiting caller presses to be called back (queues with
    ``callback_allowed``, docs/ACD.md)."""

    name: str
    agents: tuple[str, ...]
    ring_seconds: float = 15.0
    acd: QueueConfig | None = None
    skills: Mapping[str, int] = field(default_factory=dict)
    callback_key: str = "*"


@dataclass(frozen=True)
class Did:
    number: str
    target: str


@dataclass(frozen=True)
class OutboundRoute:
    prefix: str
    trunk: str
    strip: int = 0
    prepend: str = ""


@dataclass(frozen=True)
class Treatment:
    """What a refused call gets: ``reject`` (a SIP code among ``REJECT_CODES``), or,
    when ``reject`` is 0, ``announcement`` spoken in ``voice`` after answering, then
    the node hangs up."""

    reject: int = 0
    announcement: str = ""
    voice: str = "en-us"

    def describe(self) -> str:
        return f"reject {self.reject}" if self.reject else "announcement"

    def to_dict(self) -> dict[str, Any]:
        if self.reject:
            return {"reject": self.reject}
        return {"announcement": self.announcement, "voice": self.voice}


@dataclass(frozen=True)
class Treatments:
    suspended: Treatment = Treatment(reject=503)
    over_quota: Treatment = Treatment(reject=486)


@dataclass(frozen=True)
class Limits:
    """A tenant's quotas on this node, 0 meaning no limit. ``ivr_ports`` and
    ``pstn_calls`` are concurrent calls, ``storage_mb`` the tenant's files
    (``storage/<tenant>/``), ``ivr_flows`` the flows the plan may hold. ``web_calls``
    and ``agents`` are carried for the ACD and WebRTC, which will enforce them."""

    ivr_ports: int = 0
    pstn_calls: int = 0
    web_calls: int = 0
    agents: int = 0
    ivr_flows: int = 0
    storage_mb: int = 0

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in LIMITS}


@dataclass(frozen=True)
class Tenant:
    id: str
    domain: str
    caller_id: str
    extensions: tuple[Extension, ...]
    dids: tuple[Did, ...] = ()
    hunt_groups: tuple[HuntGroup, ...] = ()
    announcements: tuple[Announcement, ...] = ()
    outbound: tuple[OutboundRoute, ...] = ()
    flows: Mapping[str, Flow] = field(default_factory=dict)
    # IVR data actions: databases by name (SQLAlchemy URLs: secrets, never shown) and
    # the hosts HTTP and socket actions may reach (none unless listed)
    databases: Mapping[str, str] = field(default_factory=dict, repr=False)
    action_hosts: tuple[str, ...] = ()
    mailboxes: tuple[Mailbox, ...] = ()
    api_tokens: tuple[str, ...] = field(default=(), repr=False)  # sha256:<hex> of tokens
    limits: Limits = Limits()
    agents: tuple[Agent, ...] = ()
    queues: tuple[Queue, ...] = ()
    acd: TenantAcdConfig | None = None  # None: no queues
    # R-X.1: an agent's extension calls out only while the agent is signed in
    bind_agent_phones: bool = False
    # R-X.2: the tenant's customer record for the screen pop, ``{caller}`` and the
    # call's data keys (``{account}``...) filled in, URL-encoded ("": none)
    crm_url: str = ""
    # R-5.2a: the codes an agent files a handled contact under in after-call work
    wrap_up_codes: tuple[str, ...] = ()
    status: TenantStatus = "active"
    treatments: Treatments = Treatments()

    @property
    def suspended(self) -> bool:
        return self.status == "suspended"

    def mailbox(self, number: str) -> Mailbox | None:
        return next((m for m in self.mailboxes if m.number == number), None)

    def extension(self, number: str) -> Extension | None:
        return next((e for e in self.extensions if e.number == number), None)

    @property
    def local_numbers(self) -> frozenset[str]:
        """Extensions, hunt groups and announcements: numbers dialled inside the tenant."""
        return frozenset(
            [e.number for e in self.extensions]
            + [h.number for h in self.hunt_groups]
            + [a.number for a in self.announcements]
        )


@dataclass(frozen=True)
class Trunk:
    name: str
    address: str
    port: int = 5060
    # inbound translation rules: (prefix, replacement), longest prefix first; the
    # carrier's number formats (national, local, short) become the DIDs of the plan
    translate: tuple[tuple[str, str], ...] = ()

    def translated(self, dialled: str) -> str:
        """``dialled`` as the plan knows it: the longest matching prefix replaced."""
        for prefix, replacement in self.translate:
            if dialled.startswith(prefix):
                return replacement + dialled[len(prefix):]
        return dialled


@dataclass(frozen=True)
class Origin:
    """Where a call entered: a trunk (tenant unknown yet) or a tenant's extension."""

    kind: Literal["trunk", "extension"]
    tenant_id: str | None = None
    extension: str | None = None
    trunk: str | None = None


@dataclass(frozen=True)
class Route:
    """The routing decision for one call."""

    tenant_id: str | None
    kind: TargetKind
    target: str = ""
    members: tuple[str, ...] = ()
    trunk: Trunk | None = None
    caller_id: str = ""
    text: str = ""
    voice: str = "en-us"
    reason: str = ""
    flow: Flow | None = None
    ring_seconds: float | None = None  # per member, when the target says


@dataclass(frozen=True)
class Plan:
    version: int
    node_id: str
    tenants: tuple[Tenant, ...]
    trunks: tuple[Trunk, ...] = ()
    api_tokens: tuple[str, ...] = field(default=(), repr=False)  # the operator's (NOC)
    ivr_ports: int = 0  # IVR ports of the node (0: no limit)
    _by_domain: dict[str, Tenant] = field(default_factory=dict, compare=False, repr=False)
    _by_did: dict[str, tuple[Tenant, Did]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        for t in self.tenants:
            self._by_domain[t.domain] = t
            for d in t.dids:
                self._by_did[d.number] = (t, d)

    # -- lookups -----------------------------------------------------------
    def tenant(self, tenant_id: str) -> Tenant | None:
        return next((t for t in self.tenants if t.id == tenant_id), None)

    def tenant_by_domain(self, domain: str) -> Tenant | None:
        return self._by_domain.get(domain.lower())

    def trunk(self, name: str) -> Trunk | None:
        return next((t for t in self.trunks if t.name == name), None)

    def trunk_by_address(self, address: str) -> Trunk | None:
        return next((t for t in self.trunks if t.address == address), None)

    # -- routing -----------------------------------------------------------
    def route(self, origin: Origin, dialled: str) -> Route:
        if origin.kind == "trunk":
            trunk = self.trunk(origin.trunk or "")
            if trunk is not None:
                dialled = trunk.translated(dialled)
            found = self._by_did.get(dialled) or self._by_did.get(dialled.lstrip("+"))
            if found is None:
                return Route(None, "none", reason="unknown number")
            tenant, did = found
            return self._resolve(tenant, did.target, dialled)
        own = self.tenant(origin.tenant_id or "")
        if own is None:
            return Route(None, "none", reason="unknown tenant")
        tenant = own
        if dialled in tenant.local_numbers:
            return self._resolve(tenant, dialled, dialled)
        own_did = next((d for d in tenant.dids if d.number == dialled), None)
        if own_did is not None:
            return self._resolve(tenant, own_did.target, dialled)
        for rule in sorted(tenant.outbound, key=lambda r: -len(r.prefix)):
            if dialled.startswith(rule.prefix) and len(dialled) > len(rule.prefix):
                trunk = self.trunk(rule.trunk)
                number = rule.prepend + dialled[rule.strip :]
                return Route(
                    tenant.id, "trunk", target=number, trunk=trunk, caller_id=tenant.caller_id
                )
        return Route(tenant.id, "none", reason="unknown number")

    def transfer_route(self, tenant_id: str, kind: str, target: str) -> Route:
        """Where a flow's transfer goes: ``extension`` and ``number`` are dialled as the
        tenant's extensions would dial them; ``agent`` is an agent id of the tenant,
        ``queue`` a queue name (its agents' extensions in order)."""
        tenant = self.tenant(tenant_id)
        if tenant is None:
            return Route(None, "none", reason="unknown tenant")
        if kind in ("extension", "number"):
            return self.route(Origin("extension", tenant_id=tenant_id), target)
        if kind == "agent":
            agent = next((a for a in tenant.agents if a.id == target), None)
            if agent is None:
                return Route(tenant.id, "none", reason=f"no agent {target}")
            return Route(tenant.id, "extension", target=agent.extension)
        if kind == "queue":
            queue = next((q for q in tenant.queues if q.name == target), None)
            if queue is None:
                return Route(tenant.id, "none", reason=f"no queue {target}")
            if tenant.acd is not None:  # the ACD picks the agent
                return Route(tenant.id, "queue", target=queue.name)
            members = tuple(a.extension for name in queue.agents for a in tenant.agents
                            if a.id == name)
            return Route(tenant.id, "hunt_group", target=f"queue:{queue.name}",
                         members=members, ring_seconds=queue.ring_seconds)
        return Route(tenant.id, "none", reason=f"cannot transfer to a {kind}")

    def _resolve(self, tenant: Tenant, target: str, dialled: str) -> Route:
        if tenant.extension(target):
            return Route(tenant.id, "extension", target=target)
        group = next((h for h in tenant.hunt_groups if h.number == target), None)
        if group is not None:
            return Route(tenant.id, "hunt_group", target=target, members=group.members)
        ann = next((a for a in tenant.announcements if a.number == target), None)
        if ann is not None:
            return Route(tenant.id, "announcement", target=target, text=ann.text, voice=ann.voice)
        if target == "echo":
            return Route(tenant.id, "echo", target="echo")
        if target.startswith("flow:") and target[5:] in tenant.flows:
            return Route(tenant.id, "flow", target=target[5:], flow=tenant.flows[target[5:]])
        if target.startswith("queue:") and tenant.acd is not None and any(
                q.name == target[6:] for q in tenant.queues):
            return Route(tenant.id, "queue", target=target[6:])
        return Route(tenant.id, "none", reason=f"number {dialled} has no valid target")

    # -- parsing -----------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: Any) -> Plan:
        if not isinstance(doc, dict):
            raise PlanError("$", "plan must be a mapping")
        version = doc.get("version")
        if not isinstance(version, int) or version < 1:
            raise PlanError("version", "must be a positive integer")
        node = doc.get("node", {})
        node_id = node.get("id", "node") if isinstance(node, dict) else None
        if not isinstance(node_id, str) or not _ID_RE.fullmatch(node_id):
            raise PlanError("node.id", "must be a lower-case identifier")
        trunks = tuple(
            _trunk(f"trunks[{i}]", t) for i, t in enumerate(_list(doc, "trunks", "$"))
        )
        _unique("trunks", [t.name for t in trunks])
        tenants = tuple(
            _tenant(f"tenants[{i}]", t, {t.name for t in trunks})
            for i, t in enumerate(_list(doc, "tenants", "$"))
        )
        _unique("tenants", [t.id for t in tenants])
        _unique("tenants.domain", [t.domain for t in tenants])
        _unique("tenants.dids", [d.number for t in tenants for d in t.dids])
        api_tokens = _token_hashes(node if isinstance(node, dict) else {}, "node")
        _unique("api_tokens", [*api_tokens, *(h for t in tenants for h in t.api_tokens)])
        return cls(version=version, node_id=node_id, tenants=tenants, trunks=trunks,
                   api_tokens=api_tokens,
                   ivr_ports=_limit(node if isinstance(node, dict) else {}, "ivr_ports",
                                    "node"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "node": {"id": self.node_id, "api_tokens": list(self.api_tokens),
                     "ivr_ports": self.ivr_ports},
            "trunks": [
                {"name": t.name, "address": t.address, "port": t.port,
                 "translate": [{"prefix": p, "replace": r} for p, r in t.translate]}
                for t in self.trunks
            ],
            "tenants": [
                {
                    "id": t.id,
                    "domain": t.domain,
                    "caller_id": t.caller_id,
                    "status": t.status,
                    "treatments": {"suspended": t.treatments.suspended.to_dict(),
                                   "over_quota": t.treatments.over_quota.to_dict()},
                    "extensions": [
                        {"number": e.number, "password": e.password, "name": e.name}
                        for e in t.extensions
                    ],
                    "dids": [{"number": d.number, "target": d.target} for d in t.dids],
                    "hunt_groups": [
                        {"number": h.number, "members": list(h.members),
                         "ring_seconds": h.ring_seconds}
                        for h in t.hunt_groups
                    ],
                    "announcements": [
                        {"number": a.number, "text": a.text, "voice": a.voice}
                        for a in t.announcements
                    ],
                    "outbound": [
                        {"prefix": r.prefix, "trunk": r.trunk, "strip": r.strip,
                         "prepend": r.prepend}
                        for r in t.outbound
                    ],
                    "flows": {name: dict(f.source) for name, f in t.flows.items()
                              if name not in SYSTEM_FLOWS},
                    "mailboxes": [
                        {"number": m.number, "pin": m.pin, "name": m.name,
                         **({"extension": m.extension} if m.extension else {})}
                        for m in t.mailboxes
                    ],
                    "actions": {"databases": dict(t.databases), "hosts": list(t.action_hosts)},
                    "api_tokens": list(t.api_tokens),
                    "limits": t.limits.to_dict(),
                    "agents": [{"id": a.id, "extension": a.extension, "name": a.name,
                                "skills": dict(a.skills), "password": a.password,
                                "auto_answer": a.auto_answer, "break_group": a.break_group,
                                "supervisor": a.supervisor}
                               for a in t.agents],
                    "queues": [{"name": q.name, "agents": list(q.agents),
                                "ring_seconds": q.ring_seconds, "skills": dict(q.skills),
                                "callback_key": q.callback_key,
                                **_queue_doc(q)} for q in t.queues],
                    **({"acd": {"max_on_break": t.acd.max_on_break,
                                "break_groups": dict(t.acd.break_groups),
                                "not_ready_reasons": list(t.acd.not_ready_reasons),
                                "night_hours": list(t.acd.night_hours)
                                if t.acd.night_hours else None,
                                "bind_agent_phones": t.bind_agent_phones,
                                **({"crm_url": t.crm_url} if t.crm_url else {}),
                                **({"wrap_up_codes": list(t.wrap_up_codes)}
                                   if t.wrap_up_codes else {})}}
                       if t.acd else {}),
                }
                for t in self.tenants
            ],
        }


# -- validation helpers ----------------------------------------------------------


def _list(doc: dict[str, Any], key: str, path: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise PlanError(f"{path}.{key}".lstrip("$."), "must be a list")
    return value


def _str(doc: Any, key: str, path: str, pattern: re.Pattern[str] | None = None,
         default: str | None = None) -> str:
    if not isinstance(doc, dict):
        raise PlanError(path, "must be a mapping")
    value = doc.get(key, default)
    if not isinstance(value, str) or not value:
        raise PlanError(f"{path}.{key}", "is required and must be a string")
    if pattern is not None and not pattern.fullmatch(value):
        raise PlanError(f"{path}.{key}", f"invalid value {value!r}")
    return value


def _unique(path: str, values: list[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise PlanError(path, f"duplicate {v!r}")
        seen.add(v)


_TOKEN_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def token_hash(token: str) -> str:
    """How the plan holds an API token: its SHA-256 (tokens are long random strings,
    so a fast hash is enough; the clear token is never stored)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _token_hashes(doc: dict[str, Any], path: str) -> tuple[str, ...]:
    value = doc.get("api_tokens", [])
    if not isinstance(value, list) or not all(
            isinstance(v, str) and _TOKEN_HASH_RE.fullmatch(v) for v in value):
        raise PlanError(f"{path}.api_tokens", "a list of token hashes (sha256:<hex>)")
    return tuple(value)


def _limit(doc: dict[str, Any], key: str, path: str) -> int:
    value = doc.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
        raise PlanError(f"{path}.{key}", "a count from 0 (no limit) to 100000")
    return value


def _trunk(path: str, doc: Any) -> Trunk:
    name = _str(doc, "name", path, _ID_RE)
    address = _str(doc, "address", path, _IPV4_RE)
    if any(int(p) > 255 for p in address.split(".")):
        raise PlanError(f"{path}.address", f"invalid IPv4 address {address!r}")
    port = doc.get("port", 5060)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise PlanError(f"{path}.port", "must be a port number")
    rules = []
    for i, rule in enumerate(_list(doc, "translate", path)):
        p = f"{path}.translate[{i}]"
        prefix = _str(rule, "prefix", p, _PREFIX_RE)
        replace = rule.get("replace", "") if isinstance(rule, dict) else None
        if not isinstance(replace, str) or not re.fullmatch(r"\+?[0-9]{0,20}", replace):
            raise PlanError(f"{p}.replace", "digits, optionally with a leading + (or empty)")
        rules.append((prefix, replace))
    _unique(f"{path}.translate", [prefix for prefix, _ in rules])
    rules.sort(key=lambda r: -len(r[0]))
    return Trunk(name=name, address=address, port=port, translate=tuple(rules))


def _tenant(path: str, doc: Any, trunk_names: set[str]) -> Tenant:
    tid = _str(doc, "id", path, _ID_RE)
    domain = _str(doc, "domain", path, DOMAIN_RE)
    caller_id = _str(doc, "caller_id", path, NUMBER_RE)
    status = doc.get("status", "active")
    if status not in ("active", "suspended"):
        raise PlanError(f"{path}.status", "active or suspended")
    limits = _tenant_limits(doc, path)
    treatments = _treatments(doc, path)
    exts = []
    for i, e in enumerate(_list(doc, "extensions", path)):
        p = f"{path}.extensions[{i}]"
        pw = _str(e, "password", p)
        if len(pw) < 8:
            raise PlanError(f"{p}.password", "must be at least 8 characters")
        exts.append(Extension(_str(e, "number", p, EXTENSION_RE), pw, str(e.get("name", ""))))
    groups = []
    for i, g in enumerate(_list(doc, "hunt_groups", path)):
        p = f"{path}.hunt_groups[{i}]"
        members = g.get("members") if isinstance(g, dict) else None
        if not isinstance(members, list) or not members:
            raise PlanError(f"{p}.members", "must be a non-empty list of extensions")
        known = {e.number for e in exts}
        for m in members:
            if m not in known:
                raise PlanError(f"{p}.members", f"{m!r} is not an extension of {tid}")
        ring = g.get("ring_seconds", 15.0)
        if not isinstance(ring, int | float) or not 1 <= ring <= 300:
            raise PlanError(f"{p}.ring_seconds", "must be between 1 and 300")
        groups.append(HuntGroup(_str(g, "number", p, EXTENSION_RE), tuple(members), float(ring)))
    anns = []
    for i, a in enumerate(_list(doc, "announcements", path)):
        p = f"{path}.announcements[{i}]"
        voice = _str(a, "voice", p, default="en-us")
        if voice not in VOICES:
            raise PlanError(f"{p}.voice", "must be one of en-us, cmn, yue")
        anns.append(Announcement(_str(a, "number", p, EXTENSION_RE), _str(a, "text", p), voice))
    local = {e.number for e in exts} | {g.number for g in groups} | {a.number for a in anns}
    _unique(f"{path}.numbers", [e.number for e in exts] + [g.number for g in groups]
            + [a.number for a in anns])
    flows_doc = doc.get("flows", {}) if isinstance(doc, dict) else {}
    if not isinstance(flows_doc, dict):
        raise PlanError(f"{path}.flows", "must map flow names to flow documents")
    if limits.ivr_flows and len(flows_doc) > limits.ivr_flows:  # checked before loading any
        raise PlanError(f"{path}.flows", f"{len(flows_doc)} flows, more than "
                        f"limits.ivr_flows ({limits.ivr_flows})")
    flows = dict(SYSTEM_FLOWS)  # every tenant may use the system flows (sys-*)
    for name, flow_doc in flows_doc.items():
        if not isinstance(name, str) or not _ID_RE.fullmatch(name) or name.startswith("sys-"):
            raise PlanError(f"{path}.flows", f"invalid flow name {name!r}"
                            " (identifiers; sys- names are the system's)")
        try:
            flows[name] = flow_from_dict(flow_doc)
        except FlowError as exc:
            raise PlanError(f"{path}.flows.{name}.{exc.path}", exc.message) from None
    for name, flow in flows.items():
        for where, sub in subflow_names(flow):
            if sub not in flows:
                raise PlanError(f"{path}.flows.{name}.{where}", f"{tid} has no flow {sub!r}")
    mailboxes = []
    for i, m in enumerate(_list(doc, "mailboxes", path)):
        p = f"{path}.mailboxes[{i}]"
        pin = _str(m, "pin", p)
        if not is_hash(pin):
            raise PlanError(f"{p}.pin", "must be a PIN hash (python -m appliance.ivr pin)")
        ext = m.get("extension")
        if ext is not None and ext not in {e.number for e in exts}:
            raise PlanError(f"{p}.extension", f"{ext!r} is not an extension of {tid}")
        number = _str(m, "number", p, EXTENSION_RE)
        if ext is None and number in {e.number for e in exts}:
            ext = number
        mailboxes.append(Mailbox(number, pin, str(m.get("name", "")), ext))
    _unique(f"{path}.mailboxes", [m.number for m in mailboxes])
    agents = []
    for i, a in enumerate(_list(doc, "agents", path)):
        p = f"{path}.agents[{i}]"
        ext = _str(a, "extension", p)
        if ext not in {e.number for e in exts}:
            raise PlanError(f"{p}.extension", f"{ext!r} is not an extension of {tid}")
        password = a.get("password", "")
        if not isinstance(password, str) or (password and not is_hash(password)):
            raise PlanError(f"{p}.password", "must be a hash (python -m appliance.ivr pin)")
        agents.append(Agent(_str(a, "id", p, _AGENT_RE), ext, str(a.get("name", "")),
                            skills=_mapping(a, "skills", p), password=password,
                            auto_answer=a.get("auto_answer", False) is True,
                            break_group=_opt_str(a, "break_group", p),
                            supervisor=_bool(a, "supervisor", p)))
    _unique(f"{path}.agents", [a.id for a in agents])
    queues = []
    for i, q in enumerate(_list(doc, "queues", path)):
        p = f"{path}.queues[{i}]"
        members = q.get("agents") if isinstance(q, dict) else None
        if not isinstance(members, list) or not members or not all(
                m in {a.id for a in agents} for m in members):
            raise PlanError(f"{p}.agents", f"a non-empty list of agent ids of {tid}")
        ring = q.get("ring_seconds", 15.0)
        if isinstance(ring, bool) or not isinstance(ring, int | float) or not 1 <= ring <= 300:
            raise PlanError(f"{p}.ring_seconds", "must be between 1 and 300")
        key = q.get("callback_key", "*")
        if not isinstance(key, str) or len(key) != 1 or key not in "0123456789*#":
            raise PlanError(f"{p}.callback_key", "one key among 0-9, * and #")
        queues.append(Queue(_str(q, "name", p, _ID_RE), tuple(members), float(ring),
                            acd=_queue_config(q, p, float(ring)),
                            skills=_mapping(q, "skills", p), callback_key=key))
    _unique(f"{path}.queues", [q.name for q in queues])
    acd = _acd_config(tid, doc, path, agents, queues)
    bind = _mapping(doc, "acd", path).get("bind_agent_phones", False)
    if not isinstance(bind, bool):
        raise PlanError(f"{path}.acd.bind_agent_phones", "true or false")
    crm_url = _mapping(doc, "acd", path).get("crm_url", "")
    if not isinstance(crm_url, str) or (crm_url and not _CRM_URL_RE.fullmatch(crm_url)):
        raise PlanError(f"{path}.acd.crm_url",
                        "an http(s) URL with {caller} or {data key} placeholders")
    actions = doc.get("actions", {})
    if not isinstance(actions, dict) or not set(actions) <= {"databases", "hosts"}:
        raise PlanError(f"{path}.actions", "a mapping with databases and hosts")
    databases = actions.get("databases", {})
    if not isinstance(databases, dict) or not all(
            isinstance(k, str) and _ID_RE.fullmatch(k) and isinstance(v, str) and "://" in v
            for k, v in databases.items()):
        raise PlanError(f"{path}.actions.databases", "must map names to database URLs")
    hosts = actions.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise PlanError(f"{path}.actions.hosts", "must be a list of host names or addresses")
    hosts = tuple(hosts)
    dids = []
    for i, d in enumerate(_list(doc, "dids", path)):
        p = f"{path}.dids[{i}]"
        target = _str(d, "target", p)
        if target.startswith("flow:"):
            if target[5:] not in flows:
                raise PlanError(f"{p}.target", f"{target!r}: {tid} has no such flow")
        elif target.startswith("queue:"):
            if target[6:] not in {q.name for q in queues}:
                raise PlanError(f"{p}.target", f"{target!r}: {tid} has no such queue")
        elif target not in local and target not in SERVICES:
            raise PlanError(f"{p}.target", f"{target!r} is not a number or service of {tid}")
        dids.append(Did(_str(d, "number", p, NUMBER_RE), target))
    routes = []
    for i, r in enumerate(_list(doc, "outbound", path)):
        p = f"{path}.outbound[{i}]"
        trunk = _str(r, "trunk", p)
        if trunk not in trunk_names:
            raise PlanError(f"{p}.trunk", f"unknown trunk {trunk!r}")
        strip = r.get("strip", 0)
        if not isinstance(strip, int) or strip < 0:
            raise PlanError(f"{p}.strip", "must be a non-negative integer")
        prepend = r.get("prepend", "")
        if not isinstance(prepend, str) or not re.fullmatch(r"\+?[0-9]*", prepend):
            raise PlanError(f"{p}.prepend", "must be digits, optionally with a leading +")
        routes.append(OutboundRoute(_str(r, "prefix", p, _PREFIX_RE), trunk, strip, prepend))
    return Tenant(
        id=tid, domain=domain, caller_id=caller_id, extensions=tuple(exts), dids=tuple(dids),
        hunt_groups=tuple(groups), announcements=tuple(anns), outbound=tuple(routes),
        flows=flows, databases=databases, action_hosts=hosts, mailboxes=tuple(mailboxes),
        api_tokens=_token_hashes(doc, path), limits=limits,
        agents=tuple(agents), queues=tuple(queues), status=status, treatments=treatments,
        acd=acd, bind_agent_phones=bind, crm_url=crm_url,
        wrap_up_codes=_wrap_up_codes(doc, path, acd is not None),
    )


def _tenant_limits(doc: dict[str, Any], path: str) -> Limits:
    limits = doc.get("limits", {})
    if not isinstance(limits, dict) or not set(limits) <= set(LIMITS):
        raise PlanError(f"{path}.limits", f"a mapping with some of {', '.join(LIMITS)}")
    return Limits(**{name: _limit(limits, name, f"{path}.limits") for name in LIMITS})


def _treatments(doc: dict[str, Any], path: str) -> Treatments:
    given = doc.get("treatments", {})
    if not isinstance(given, dict) or not set(given) <= {"suspended", "over_quota"}:
        raise PlanError(f"{path}.treatments", "a mapping with suspended and over_quota")
    default = Treatments()
    return Treatments(
        suspended=_treatment(given.get("suspended"), f"{path}.treatments.suspended",
                             default.suspended),
        over_quota=_treatment(given.get("over_quota"), f"{path}.treatments.over_quota",
                              default.over_quota),
    )


def _treatment(doc: Any, path: str, default: Treatment) -> Treatment:
    if doc is None:
        return default
    if isinstance(doc, dict) and set(doc) == {"reject"}:
        code = doc["reject"]
        if isinstance(code, bool) or code not in REJECT_CODES:
            raise PlanError(f"{path}.reject", f"a SIP code among {REJECT_CODES}")
        return Treatment(reject=code)
    if isinstance(doc, dict) and "announcement" in doc and set(doc) <= {"announcement",
                                                                        "voice"}:
        text = doc["announcement"]
        if not isinstance(text, str) or not text.strip() or len(text) > 500:
            raise PlanError(f"{path}.announcement", "a text of 1-500 characters")
        voice = doc.get("voice", "en-us")
        if voice not in VOICES:
            raise PlanError(f"{path}.voice", f"must be one of {', '.join(VOICES)}")
        return Treatment(announcement=text, voice=voice)
    raise PlanError(path, '{"reject": <SIP code>} or {"announcement": <text>, "voice": ...}')


# -- the ACD's configuration -------------------------------------------------------
# plan keys of a queue beyond name, agents, ring_seconds and skills: QueueConfig fields
_QUEUE_KEYS = ("priority", "strategy", "wrap_up", "service_level_target",
               "service_level_share", "sl_abandoned", "short_abandon", "max_length",
               "max_length_route", "max_wait", "max_wait_route",
               "announce_position_every", "callback_allowed", "callback_attempts",
               "callback_retry_delay", "callback_timeout", "match_language",
               "announce_agent", "initial_aht")
_ACD_KEYS = ("max_on_break", "break_groups", "not_ready_reasons", "night_hours",
             "bind_agent_phones", "crm_url", "wrap_up_codes")
# no spaces, quotes or angle brackets; placeholders are {identifier}
_CRM_URL_RE = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[^\s\"'<>]*)?")


MAX_WRAP_UP_CODES = 50
_WRAP_UP_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _wrap_up_codes(doc: dict[str, Any], path: str, queues: bool) -> tuple[str, ...]:
    """``acd.wrap_up_codes``: identifiers (1-32 of A-Z a-z 0-9 _ -), unique, at most 50;
    kept only for a tenant with queues (as the rest of its ``acd`` settings)."""
    p = f"{path}.acd.wrap_up_codes"
    codes = _list(_mapping(doc, "acd", path), "wrap_up_codes", f"{path}.acd")
    if len(codes) > MAX_WRAP_UP_CODES:
        raise PlanError(p, f"at most {MAX_WRAP_UP_CODES} codes")
    for i, code in enumerate(codes):
        if not isinstance(code, str) or not _WRAP_UP_CODE_RE.fullmatch(code):
            raise PlanError(f"{p}[{i}]", "a code is 1-32 of A-Z a-z 0-9 _ -")
    _unique(p, codes)
    return tuple(codes) if queues else ()


def _opt_str(doc: dict[str, Any], key: str, path: str) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise PlanError(f"{path}.{key}", "must be a string")
    return value


def _bool(doc: dict[str, Any], key: str, path: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise PlanError(f"{path}.{key}", "true or false")
    return value


def _mapping(doc: Any, key: str, path: str) -> dict[str, Any]:
    value = doc.get(key, {}) if isinstance(doc, dict) else None
    if not isinstance(value, dict):
        raise PlanError(f"{path}.{key}", "must be a mapping")
    return dict(value)


def _queue_config(doc: dict[str, Any], path: str, ring: float) -> QueueConfig:
    unknown = set(doc) - {"name", "agents", "ring_seconds", "skills", "overflow",
                          "callback_key", *_QUEUE_KEYS}
    if unknown:
        raise PlanError(path, f"unknown keys: {', '.join(sorted(unknown))}")
    rules = []
    for j, r in enumerate(_list(doc, "overflow", path)):
        if not isinstance(r, dict) or not set(r) <= {"after", "also_match",
                                                     "lower_levels_by", "to_queue"}:
            raise PlanError(f"{path}.overflow[{j}]",
                            "a mapping of after, also_match, lower_levels_by, to_queue")
        rules.append(OverflowRule(**r))
    return QueueConfig(name=doc.get("name", ""), ring_timeout=ring, overflow=tuple(rules),
                       **{k: doc[k] for k in _QUEUE_KEYS if k in doc})


def _queue_doc(q: Queue) -> dict[str, Any]:
    if q.acd is None:
        return {}
    doc: dict[str, Any] = {k: getattr(q.acd, k) for k in _QUEUE_KEYS}
    doc["overflow"] = [{k: (dict(v) if isinstance(v, Mapping) else v)
                        for k, v in vars(r).items()} for r in q.acd.overflow]
    return doc


def _acd_config(tid: str, doc: Any, path: str, agents: list[Agent],
                queues: list[Queue]) -> TenantAcdConfig | None:
    """The tenant's ACD configuration, checked by the ACD's own rules (errors name the
    plan path)."""
    settings = _mapping(doc, "acd", path)
    if not set(settings) <= set(_ACD_KEYS):
        raise PlanError(f"{path}.acd", f"a mapping with some of {', '.join(_ACD_KEYS)}")
    if not queues:
        return None
    serves = {a.id: tuple(q.name for q in queues if a.id in q.agents) for a in agents}
    night = settings.get("night_hours")
    config = TenantAcdConfig(
        tenant_id=tid,
        queues=tuple(q.acd for q in queues if q.acd is not None),
        agents=tuple(AgentConfig(id=a.id, skills=a.skills, queues=serves[a.id],
                                 break_group=a.break_group, auto_answer=a.auto_answer)
                     for a in agents),
        max_on_break=settings.get("max_on_break", 1),
        break_groups=dict(settings.get("break_groups", {})),
        not_ready_reasons=tuple(settings.get("not_ready_reasons", ())),
        night_hours=tuple(night) if isinstance(night, list) else night,
    )
    try:
        config.validate()
    except AcdConfigError as exc:
        # the ACD's queues[i] and agents[i] are the plan's, in the same order
        prefix = f"{path}." if exc.path.startswith(("queues", "agents")) else f"{path}.acd."
        raise PlanError(prefix + exc.path, exc.message.split(": ", 1)[-1]) from None
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{path}.queues", str(exc)) from None
    return config
