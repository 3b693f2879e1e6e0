"""The tenant's ACD configuration: queues, agents, breaks, reasons, night hours.

Frozen dataclasses, checked as a whole by :meth:`TenantAcdConfig.validate`, which raises
:class:`~appliance.acd.errors.AcdConfigError` naming the first bad element
(``queues[2].overflow[0].to_queue``), so a bad configuration is refused before a core is
built from it.

Skills are ``{name: level}`` with levels 1-10. A contact's requirement is a set of
``(skill, minimum level)``; an agent matches it when it has every skill at that level
or above (:func:`matches`). Languages are skills named ``lang:<code>``: a queue with
``match_language`` adds ``lang:<the contact's language>`` at level 1 to what its
contacts require.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from appliance.acd.errors import AcdConfigError

Strategy = Literal["longest_idle", "least_occupied", "round_robin", "best_skill", "ring_all"]
STRATEGIES: tuple[Strategy, ...] = (
    "longest_idle", "least_occupied", "round_robin", "best_skill", "ring_all")
# How abandoned contacts count in the service level (see docs/ACD.md, "Service level").
SlAbandoned = Literal["missed", "ignored", "ignored_in_target", "met_in_target"]
SL_ABANDONED: tuple[SlAbandoned, ...] = ("missed", "ignored", "ignored_in_target",
                                         "met_in_target")
MIN_LEVEL = 1
MAX_LEVEL = 10
# Not-ready reasons only the core sets; a tenant's own codes may not reuse them.
SYSTEM_REASONS = ("login", "no_answer", "declined")
LANGUAGE_SKILL = "lang:"

Requirement = tuple[tuple[str, int], ...]  # sorted (skill, minimum level) pairs

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def requirement(skills: Mapping[str, int] | None, language: str = "") -> Requirement:
    """The canonical requirement for ``skills`` (and ``lang:<language>`` when given)."""
    out = dict(skills or {})
    if language:
        key = LANGUAGE_SKILL + language
        out[key] = max(out.get(key, MIN_LEVEL), MIN_LEVEL)
    return tuple(sorted(out.items()))


def matches(skills: Mapping[str, int], req: Requirement) -> bool:
    """True when an agent with ``skills`` has every skill of ``req`` at its level."""
    return all(skills.get(name, 0) >= level for name, level in req)


def check_skills(skills: Mapping[str, int], path: str) -> None:
    for name, level in skills.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise AcdConfigError(f"{path}.{name}", "a skill name is 1-64 of A-Z a-z 0-9 _ . : -")
        if isinstance(level, bool) or not isinstance(level, int) \
                or not MIN_LEVEL <= level <= MAX_LEVEL:
            raise AcdConfigError(f"{path}.{name}",
                                 f"a skill level is an integer {MIN_LEVEL}-{MAX_LEVEL}")


@dataclass(frozen=True)
class OverflowRule:
    """After ``after`` seconds of waiting (from the first enqueue), one action:

    - ``also_match``: the contact also matches agents with these skills (a second way
      to match, e.g. another skill or lower levels; ``{}`` is any agent of the queue);
    - ``lower_levels_by``: it also matches agents with its own skills at levels this
      much lower (never below 1);
    - ``to_queue``: it moves to that queue, keeping its first enqueue time (its place
      among the contacts of the same priority, its service level clock).
    """

    after: float
    also_match: Mapping[str, int] | None = None
    lower_levels_by: int = 0
    to_queue: str | None = None


@dataclass(frozen=True)
class QueueConfig:
    """One queue (a service). Times are seconds.

    ``wrap_up``: after-call work once a contact of this queue ends; 0 goes straight back
    to ready, ``None`` lasts until the agent says it is done. ``max_length`` counts the
    contacts in the queue not yet answered; a contact beyond it, or one that waited
    ``max_wait``, leaves with ``ExitQueue`` to the route (``""``: the flow's
    ``on_failure``). ``announce_position_every``: period of position and estimated
    wait announcements (``None``: none). ``initial_aht``: the average handle time the
    estimate uses before the queue has handled contacts.
    """

    name: str
    priority: int = 0
    strategy: Strategy = "longest_idle"
    ring_timeout: float = 15.0
    wrap_up: float | None = 0.0
    service_level_target: float = 20.0
    service_level_share: float = 0.8
    sl_abandoned: SlAbandoned = "missed"
    short_abandon: float = 0.0
    max_length: int | None = None
    max_length_route: str = ""
    max_wait: float | None = None
    max_wait_route: str = ""
    overflow: tuple[OverflowRule, ...] = ()
    announce_position_every: float | None = None
    callback_allowed: bool = False
    callback_attempts: int = 3
    callback_retry_delay: float = 300.0
    callback_timeout: float = 45.0
    match_language: bool = False
    announce_agent: bool = False
    initial_aht: float = 180.0


@dataclass(frozen=True)
class AgentConfig:
    """An agent: ``skills`` ``{name: 1-10}``, the ``queues`` it serves, the break group
    whose maximum applies to it (``""``: the tenant's ``max_on_break``)."""

    id: str
    skills: Mapping[str, int] = field(default_factory=dict)
    queues: tuple[str, ...] = ()
    break_group: str = ""
    auto_answer: bool = False


@dataclass(frozen=True)
class TenantAcdConfig:
    """Everything one tenant's ACD needs. ``night_hours`` is ``("22:00", "07:00")``
    local time: offers made then carry ``night_alert``."""

    tenant_id: str
    queues: tuple[QueueConfig, ...] = ()
    agents: tuple[AgentConfig, ...] = ()
    max_on_break: int = 1
    break_groups: Mapping[str, int] = field(default_factory=dict)
    not_ready_reasons: tuple[str, ...] = ()
    night_hours: tuple[str, str] | None = None

    def validate(self) -> None:
        """Raise :class:`AcdConfigError` for the first invalid element."""
        if not isinstance(self.tenant_id, str) or not _NAME_RE.match(self.tenant_id):
            raise AcdConfigError("tenant_id", "a tenant id is 1-64 of A-Z a-z 0-9 _ . : -")
        names: set[str] = set()
        for i, q in enumerate(self.queues):
            _check_queue(q, f"queues[{i}]")
            if q.name in names:
                raise AcdConfigError(f"queues[{i}].name", f"queue {q.name!r} is defined twice")
            names.add(q.name)
        for i, q in enumerate(self.queues):
            for j, rule in enumerate(q.overflow):
                if rule.to_queue is not None and rule.to_queue not in names:
                    raise AcdConfigError(f"queues[{i}].overflow[{j}].to_queue",
                                         f"no queue {rule.to_queue!r}")
        _check_acyclic(self.queues)
        _check_count(self.max_on_break, "max_on_break")
        for group, limit in self.break_groups.items():
            if not isinstance(group, str) or not _NAME_RE.match(group):
                raise AcdConfigError(f"break_groups.{group}", "not a group name")
            _check_count(limit, f"break_groups.{group}")
        ids: set[str] = set()
        for i, a in enumerate(self.agents):
            path = f"agents[{i}]"
            if not isinstance(a.id, str) or not _NAME_RE.match(a.id):
                raise AcdConfigError(f"{path}.id", "an agent id is 1-64 of A-Z a-z 0-9 _ . : -")
            if a.id in ids:
                raise AcdConfigError(f"{path}.id", f"agent {a.id!r} is defined twice")
            ids.add(a.id)
            check_skills(a.skills, f"{path}.skills")
            if len(set(a.queues)) != len(a.queues):
                raise AcdConfigError(f"{path}.queues", "a queue is listed twice")
            for q_name in a.queues:
                if q_name not in names:
                    raise AcdConfigError(f"{path}.queues", f"no queue {q_name!r}")
            if a.break_group and a.break_group not in self.break_groups:
                raise AcdConfigError(f"{path}.break_group", f"no break group {a.break_group!r}")
        seen: set[str] = set()
        for i, reason in enumerate(self.not_ready_reasons):
            if not isinstance(reason, str) or not _NAME_RE.match(reason):
                raise AcdConfigError(f"not_ready_reasons[{i}]", "not a reason code")
            if reason in SYSTEM_REASONS or reason in seen:
                raise AcdConfigError(f"not_ready_reasons[{i}]",
                                     f"{reason!r} is reserved or listed twice")
            seen.add(reason)
        if self.night_hours is not None:
            if len(self.night_hours) != 2:
                raise AcdConfigError("night_hours", "two times, start and end")
            for i, hhmm in enumerate(self.night_hours):
                if not isinstance(hhmm, str) or not _HHMM_RE.match(hhmm):
                    raise AcdConfigError(f"night_hours[{i}]", "a time is HH:MM")


def minutes(hhmm: str) -> int:
    """``"22:30"`` -> 1350."""
    m = _HHMM_RE.match(hhmm)
    if m is None:
        raise ValueError(f"not HH:MM: {hhmm!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def _check_count(value: object, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AcdConfigError(path, "a count is an integer >= 0")


def _positive(value: object, path: str, *, zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise AcdConfigError(path, "a number of seconds " + (">= 0" if zero else "> 0"))


def _check_queue(q: QueueConfig, path: str) -> None:
    if not isinstance(q.name, str) or not _NAME_RE.match(q.name):
        raise AcdConfigError(f"{path}.name", "a queue name is 1-64 of A-Z a-z 0-9 _ . : -")
    if isinstance(q.priority, bool) or not isinstance(q.priority, int):
        raise AcdConfigError(f"{path}.priority", "an integer")
    if q.strategy not in STRATEGIES:
        raise AcdConfigError(f"{path}.strategy", f"one of {', '.join(STRATEGIES)}")
    _positive(q.ring_timeout, f"{path}.ring_timeout")
    if q.wrap_up is not None:
        _positive(q.wrap_up, f"{path}.wrap_up", zero=True)
    _positive(q.service_level_target, f"{path}.service_level_target")
    share = q.service_level_share
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise AcdConfigError(f"{path}.service_level_share", "a share in (0, 1]")
    if q.sl_abandoned not in SL_ABANDONED:
        raise AcdConfigError(f"{path}.sl_abandoned", f"one of {', '.join(SL_ABANDONED)}")
    _positive(q.short_abandon, f"{path}.short_abandon", zero=True)
    if q.max_length is not None:
        if isinstance(q.max_length, bool) or not isinstance(q.max_length, int) \
                or q.max_length < 1:
            raise AcdConfigError(f"{path}.max_length", "an integer >= 1")
    if q.max_wait is not None:
        _positive(q.max_wait, f"{path}.max_wait")
    if q.announce_position_every is not None:
        _positive(q.announce_position_every, f"{path}.announce_position_every")
    if isinstance(q.callback_attempts, bool) or not isinstance(q.callback_attempts, int) \
            or q.callback_attempts < 1:
        raise AcdConfigError(f"{path}.callback_attempts", "an integer >= 1")
    _positive(q.callback_retry_delay, f"{path}.callback_retry_delay", zero=True)
    _positive(q.callback_timeout, f"{path}.callback_timeout")
    _positive(q.initial_aht, f"{path}.initial_aht")
    for name in ("max_length_route", "max_wait_route"):
        if not isinstance(getattr(q, name), str):
            raise AcdConfigError(f"{path}.{name}", "a route name")
    last = -1.0
    for j, rule in enumerate(q.overflow):
        rp = f"{path}.overflow[{j}]"
        _positive(rule.after, f"{rp}.after", zero=True)
        if rule.after < last:
            raise AcdConfigError(f"{rp}.after", "rules are in order of waiting time")
        last = rule.after
        actions = (rule.also_match is not None) + (rule.lower_levels_by != 0) \
            + (rule.to_queue is not None)
        if actions != 1:
            raise AcdConfigError(rp, "one of also_match, lower_levels_by, to_queue")
        if rule.also_match is not None:
            check_skills(rule.also_match, f"{rp}.also_match")
        if isinstance(rule.lower_levels_by, bool) or not isinstance(rule.lower_levels_by, int) \
                or not 0 <= rule.lower_levels_by < MAX_LEVEL:
            raise AcdConfigError(f"{rp}.lower_levels_by", f"an integer 1-{MAX_LEVEL - 1}")
        if rule.to_queue == q.name:
            raise AcdConfigError(f"{rp}.to_queue", "a queue cannot overflow to itself")


def _check_acyclic(queues: tuple[QueueConfig, ...]) -> None:
    """Overflow between queues must not loop (a contact would move for ever)."""
    edges = {q.name: [r.to_queue for r in q.overflow if r.to_queue] for q in queues}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in edges.get(name, []):
            if state.get(nxt) == 1:
                loop = " -> ".join([*path[path.index(nxt):], nxt])
                idx = next(i for i, q in enumerate(queues) if q.name == name)
                raise AcdConfigError(f"queues[{idx}].overflow", f"overflow loops: {loop}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for q in queues:
        if q.name not in state:
            visit(q.name, [q.name])
