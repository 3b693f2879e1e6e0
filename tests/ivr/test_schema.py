"""The published flow schema: in step with the validator, and it accepts every flow
the project ships and refuses what the validator refuses for the same shape reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from appliance.ivr.flow import FlowError, flow_from_dict
from appliance.ivr.schema import flow_schema
from tests.e2e.conftest import (
    NOTICE_FLOW,
    PCAP_FLOW,
    SAMPLE_FLOW,
    VM_LEAVE_FLOW,
    lookup_flow,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = flow_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_published_file_is_the_generated_schema() -> None:
    published = json.loads((REPO / "docs" / "flow.schema.json").read_text())
    assert published == SCHEMA, "run: python -m appliance.ivr schema > docs/flow.schema.json"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


SHIPPED = [yaml.safe_load(SAMPLE_FLOW.read_text()), PCAP_FLOW, lookup_flow(8080),
           VM_LEAVE_FLOW, NOTICE_FLOW,
           *(yaml.safe_load(p.read_text())
             for p in (REPO / "appliance/ivr/system").glob("*.yaml"))]


@pytest.mark.parametrize("doc", SHIPPED, ids=lambda d: d["flow"])
def test_shipped_flows_are_valid_for_both(doc: dict[str, Any]) -> None:
    flow_from_dict(doc)
    VALIDATOR.validate(doc)


BASE: dict[str, Any] = {"flow": "f", "version": 1, "start": "a",
                        "nodes": {"a": {"type": "hangup"}}}


@pytest.mark.parametrize("node", [
    {"type": "play"},                                              # prompt required
    {"type": "play", "prompt": "hi", "colour": "red"},             # unknown field
    {"type": "menu", "prompt": "x", "options": {"12": "a"}},       # a key is one key
    {"type": "collect", "variable": "1x"},                         # not an identifier
    {"type": "transfer", "extension": "1001", "number": "5"},      # exactly one target
    {"type": "record", "max_seconds": 0},                          # seconds > 0
    {"type": "mailbox", "op": "erase", "mailbox": "'1'"},          # not an operation
    {"type": "recognise", "variable": "v", "grammar": "colours"},  # not a grammar
    {"type": "warp"},                                               # no such node type
])
def test_shape_errors_are_refused_by_both(node: dict[str, Any]) -> None:
    doc = {**BASE, "nodes": {"a": node}}
    with pytest.raises(FlowError):
        flow_from_dict(doc)
    assert not VALIDATOR.is_valid(doc)


def test_every_node_type_and_field_is_described() -> None:
    from appliance.ivr.flow import _FIELDS

    for kind, fields in _FIELDS.items():
        described = set(SCHEMA["$defs"][kind]["properties"]) - {"type", "description"}
        assert described == fields, kind
