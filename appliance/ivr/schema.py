"""The published JSON Schema of flow documents, built from the validator's own tables.

``flow_schema()`` describes what :func:`appliance.ivr.flow.flow_from_dict` accepts:
every node type with exactly its fields (from the same field sets the validator uses,
so the two cannot drift apart), the types and ranges of the fields, and what is
required. The validator stays the authority: it also checks what a schema cannot
express (node references resolve, expressions parse, a collect's lengths agree), so
a document the schema accepts can still be refused, with a precise message, never
the other way round. ``docs/flow.schema.json`` is this schema, written by
``python -m appliance.ivr schema`` and checked against it by the tests.
"""

from __future__ import annotations

from typing import Any

from appliance.ivr.flow import (
    _ACTION_CHOICES,
    _ACTION_REQUIRED,
    _FIELDS,
    _MAILBOX_OPS,
    GRAMMARS,
    LANGUAGES,
    SAY_KINDS,
    TRANSFER_KINDS,
)

SCHEMA_ID = "https://branchline.example/schemas/flow.schema.json"

_NODE_ID = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,63}$"}
_VAR = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"}
_EXPR = {"description": "an expression (docs/IVR.md, Expressions)",
         "type": ["string", "number", "boolean"]}
_SECONDS = {"type": "number", "exclusiveMinimum": 0, "maximum": 600}
_COUNT = {"type": "integer", "minimum": 0, "maximum": 20}
_KEY = {"type": "string", "pattern": "^[0-9*#]$"}
_BOOL = {"type": "boolean"}
_STRING = {"type": "string"}

_PROMPT_ONE: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "description": "text to speak (same as {tts: ...})"},
        {"type": "object", "required": ["tts"], "additionalProperties": False,
         "properties": {"tts": {"type": "string", "minLength": 1}}},
        {"type": "object", "required": ["file"], "additionalProperties": False,
         "properties": {"file": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}},
        {"type": "object", "required": ["say"], "additionalProperties": False,
         "properties": {"say": {"type": ["string", "number"]},
                        "as": {"enum": list(SAY_KINDS)}, "currency": _STRING,
                        "liang": _BOOL, "yao": _BOOL, "clock24": _BOOL}},
        {"type": "object", "required": ["recording"], "additionalProperties": False,
         "properties": {"recording": _EXPR, "otherwise": {"$ref": "#/$defs/prompt"}}},
    ]
}
_PROMPT: dict[str, Any] = {"oneOf": [
    _PROMPT_ONE,
    {"type": "object", "minProperties": 1, "additionalProperties": False,
     "description": "the prompt per language",
     "properties": {lang: _PROMPT_ONE for lang in LANGUAGES}},
]}


def _map(values: dict[str, Any], keys: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": values}
    if keys is not None:
        out["propertyNames"] = keys
    return out


_FIELD_TYPES: dict[str, Any] = {
    **{k: {"$ref": "#/$defs/prompt"} for k in ("prompt", "invalid_prompt", "no_input_prompt")},
    **{k: _NODE_ID for k in ("next", "on_failure", "on_error", "else", "start")},
    **{k: _SECONDS for k in ("timeout", "first_digit_timeout", "inter_digit_timeout",
                             "max_seconds", "ring_timeout")},
    "silence_seconds": {"type": "number", "minimum": 0, "maximum": 60},
    "retries": _COUNT,
    **{k: {"type": "integer", "minimum": 1, "maximum": 32}
       for k in ("length", "min_length", "max_length")},
    **{k: _BOOL for k in ("barge_in", "secret", "beep", "pooled")},
    **{k: _EXPR for k in ("value", "url", "payload", "path", "content", "mailbox", "pin",
                          "index", "id", "status", "input", "file", "caller_id", "recording",
                          *TRANSFER_KINDS)},
    **{k: _map(_EXPR, _VAR) for k in ("variables", "data", "params", "body", "headers")},
    **{k: _VAR for k in ("variable", "result")},
    "options": _map(_NODE_ID, _KEY),
    "conditions": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["when", "goto"], "additionalProperties": False,
        "properties": {"when": _EXPR, "goto": _NODE_ID}}},
    "choices": _map({"oneOf": [_STRING, {"type": "array", "items": _STRING, "minItems": 1}]},
                    _VAR),
    "dtmf": _map(_STRING, _KEY),
    "mode": {"enum": ["single", "fixed", "variable"]},
    "as": {"enum": list(SAY_KINDS)},
    "grammar": {"enum": list(GRAMMARS)},
    "terminator": {"type": ["string", "null"], "pattern": "^[0-9*#]$"},
    "clear_key": {"type": ["string", "null"], "pattern": "^[0-9*#]$"},
    "end_keys": {"type": "string", "pattern": "^[0-9*#]{0,12}$"},
    "flow": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    "max_rows": {"type": "integer", "minimum": 1},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    **{k: {"enum": list(v)} for k, v in _ACTION_CHOICES.items()},
    "description": _STRING,
    **{k: _STRING for k in ("database", "statement", "procedure", "host", "plugin",
                            "function")},
}
_REQUIRED: dict[str, list[str]] = {
    "play": ["prompt"], "menu": ["prompt", "options"], "collect": ["variable"],
    "set": ["variables"], "branch": ["conditions"], "say": ["value"],
    "voicemail": ["mailbox"], "subflow": ["flow"], "recognise": ["variable"],
    **{kind: sorted(fields) for kind, fields in _ACTION_REQUIRED.items()},
}


def _node(kind: str) -> dict[str, Any]:
    fields = sorted(_FIELDS[kind] | {"description"})
    props: dict[str, Any] = {"type": {"const": kind}}
    for name in fields:
        props[name] = _FIELD_TYPES[name]
    if kind == "mailbox":
        props["op"] = {"enum": list(_MAILBOX_OPS)}
    node: dict[str, Any] = {"type": "object", "required": ["type", *_REQUIRED.get(kind, [])],
                            "additionalProperties": False, "properties": props}
    if kind == "transfer":
        node["oneOf"] = [{"required": [k]} for k in TRANSFER_KINDS]
    return node


def flow_schema() -> dict[str, Any]:
    kinds = sorted(_FIELDS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Branchline IVR flow",
        "description": "A tenant's IVR flow (docs/IVR.md). Generated by "
                       "`python -m appliance.ivr schema`; do not edit by hand.",
        "type": "object",
        "required": ["flow", "version", "start", "nodes"],
        "additionalProperties": False,
        "properties": {
            "flow": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,63}$"},
            "version": {"type": "integer", "minimum": 1},
            "language": {"enum": list(LANGUAGES)},
            "description": _STRING,
            "start": _NODE_ID,
            "variables": _map({"type": ["string", "number", "boolean"]}, _VAR),
            "shortcuts": _map(_NODE_ID, {"pattern": "^[0-9*#]{1,32}$"}),
            "nodes": {"type": "object", "minProperties": 1, "maxProperties": 1000,
                      "propertyNames": _NODE_ID,
                      "additionalProperties": {"$ref": "#/$defs/node"}},
        },
        "$defs": {
            "prompt": _PROMPT,
            "node": {"oneOf": [{"$ref": f"#/$defs/{kind}"} for kind in kinds]},
            **{kind: _node(kind) for kind in kinds},
        },
    }
