"""Configuration: a bad element is refused with its path; nothing else is checked later."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.acd import Acd, AcdConfigError, OverflowRule, TenantAcdConfig
from appliance.acd.model import matches, minutes, requirement
from tests.acd.helpers import agent, queue


def config(**kw: Any) -> TenantAcdConfig:
    base: dict[str, Any] = {"tenant_id": "acme", "queues": (queue("q"), queue("r")),
                            "agents": (agent("a"),)}
    base.update(kw)
    return TenantAcdConfig(**base)


def test_a_good_config_validates() -> None:
    config().validate()
    Acd(config())


@pytest.mark.parametrize(("kw", "path"), [
    ({"tenant_id": ""}, "tenant_id"),
    ({"tenant_id": "a b"}, "tenant_id"),
    ({"queues": (queue("q"), queue("q"))}, "queues[1].name"),
    ({"queues": (queue("bad name"),)}, "queues[0].name"),
    ({"queues": (queue("q", strategy="random"),)}, "queues[0].strategy"),
    ({"queues": (queue("q", ring_timeout=0),)}, "queues[0].ring_timeout"),
    ({"queues": (queue("q", ring_timeout=float("nan")),)}, "queues[0].ring_timeout"),
    ({"queues": (queue("q", wrap_up=-1),)}, "queues[0].wrap_up"),
    ({"queues": (queue("q", service_level_share=1.5),)}, "queues[0].service_level_share"),
    ({"queues": (queue("q", sl_abandoned="sometimes"),)}, "queues[0].sl_abandoned"),
    ({"queues": (queue("q", max_length=0),)}, "queues[0].max_length"),
    ({"queues": (queue("q", max_wait=0),)}, "queues[0].max_wait"),
    ({"queues": (queue("q", announce_position_every=0),)},
     "queues[0].announce_position_every"),
    ({"queues": (queue("q", callback_attempts=0),)}, "queues[0].callback_attempts"),
    ({"queues": (queue("q", priority=True),)}, "queues[0].priority"),
    ({"queues": (queue("q", overflow=(OverflowRule(after=5),)),)}, "queues[0].overflow[0]"),
    ({"queues": (queue("q", overflow=(OverflowRule(after=5, also_match={"x": 1},
                                                   to_queue="q"),)),)},
     "queues[0].overflow[0]"),
    ({"queues": (queue("q", overflow=(OverflowRule(after=5, to_queue="q"),)),)},
     "queues[0].overflow[0].to_queue"),
    ({"queues": (queue("q", overflow=(OverflowRule(after=5, to_queue="zz"),)),)},
     "queues[0].overflow[0].to_queue"),
    ({"queues": (queue("q", overflow=(OverflowRule(after=5, also_match={"x": 11}),)),)},
     "queues[0].overflow[0].also_match.x"),
    ({"queues": (queue("q", overflow=(OverflowRule(after=5, lower_levels_by=10),)),)},
     "queues[0].overflow[0].lower_levels_by"),
    ({"queues": (queue("q", overflow=(OverflowRule(after=9, lower_levels_by=1),
                                      OverflowRule(after=5, lower_levels_by=2))),)},
     "queues[0].overflow[1].after"),
    ({"agents": (agent("a"), agent("a"))}, "agents[1].id"),
    ({"agents": (agent("a", {"x": 0}),)}, "agents[0].skills.x"),
    ({"agents": (agent("a", {"x": True}),)}, "agents[0].skills.x"),
    ({"agents": (agent("a", queues=("zz",)),)}, "agents[0].queues"),
    ({"agents": (agent("a", queues=("q", "q")),)}, "agents[0].queues"),
    ({"agents": (agent("a", break_group="night"),)}, "agents[0].break_group"),
    ({"max_on_break": -1}, "max_on_break"),
    ({"break_groups": {"night": -2}}, "break_groups.night"),
    ({"not_ready_reasons": ("no_answer",)}, "not_ready_reasons[0]"),
    ({"not_ready_reasons": ("lunch", "lunch")}, "not_ready_reasons[1]"),
    ({"night_hours": ("22:00", "7:00")}, "night_hours[1]"),
    ({"night_hours": ("22:00",)}, "night_hours"),
])
def test_bad_elements_are_named(kw: dict[str, Any], path: str) -> None:
    with pytest.raises(AcdConfigError) as err:
        Acd(config(**kw))
    assert err.value.path == path
    assert err.value.to_dict()["error"] == "acd_config_invalid"


def test_overflow_loops_are_refused() -> None:
    loop = config(queues=(
        queue("q", overflow=(OverflowRule(after=5, to_queue="r"),)),
        queue("r", overflow=(OverflowRule(after=5, to_queue="s"),)),
        queue("s", overflow=(OverflowRule(after=5, to_queue="q"),))))
    with pytest.raises(AcdConfigError, match="overflow loops: q -> r -> s -> q"):
        loop.validate()
    chain = config(queues=(
        queue("q", overflow=(OverflowRule(after=5, to_queue="r"),
                             OverflowRule(after=9, to_queue="s"))),
        queue("r", overflow=(OverflowRule(after=5, to_queue="s"),)), queue("s")))
    chain.validate()


def test_requirements_and_matching() -> None:
    assert requirement({"y": 2, "x": 5}) == (("x", 5), ("y", 2))
    assert requirement({"x": 5}, "fr") == (("lang:fr", 1), ("x", 5))
    assert requirement({"lang:fr": 4}, "fr") == (("lang:fr", 4),)
    assert requirement(None) == ()
    assert matches({"x": 5, "y": 1}, (("x", 5),))
    assert not matches({"x": 4}, (("x", 5),))
    assert not matches({"x": 9}, (("x", 5), ("y", 1)))
    assert matches({}, ())
    assert minutes("22:30") == 1350
    with pytest.raises(ValueError):
        minutes("25:00")
