"""Small builders and output filters shared by the ACD tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from appliance.acd import Acd, AgentConfig, QueueConfig, TenantAcdConfig

T = TypeVar("T")


def queue(name: str = "q", **kw: Any) -> QueueConfig:
    return QueueConfig(name=name, **kw)


def agent(agent_id: str, skills: Mapping[str, int] | None = None,
          queues: Iterable[str] = ("q",), **kw: Any) -> AgentConfig:
    return AgentConfig(id=agent_id, skills=dict(skills or {}), queues=tuple(queues), **kw)


def make(queues: Iterable[QueueConfig], agents: Iterable[AgentConfig],
         tenant: str = "acme", **kw: Any) -> Acd:
    return Acd(TenantAcdConfig(tenant_id=tenant, queues=tuple(queues), agents=tuple(agents),
                               **kw))


def only(items: Iterable[Any], cls: type[T]) -> list[T]:
    return [x for x in items if isinstance(x, cls)]


def ready_all(acd: Acd, agents: Iterable[str], now: float = 0.0) -> None:
    for a in agents:
        acd.login(a, now, ready=True)
