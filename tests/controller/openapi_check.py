"""Every answer of the API tests checked against ``controller/openapi.yaml``.

:class:`OpenApiChecker` finds the documented operation for a request (method and path,
the path matched against the document's templates), then checks the answer: its
status must be documented for that operation, its content type must be one the
document gives for that status (none for a 204), and a JSON body must validate against
the documented schema, with the document's ``components`` resolved (JSON Schema
2020-12, formats checked). A request the API accepted (2xx) must also fit the
documented request body, so a field the API takes but the document lacks fails too.
Requests to no documented operation must answer the ``Error`` schema with 404 (no such
path) or 405 (no such method).

:class:`CheckedClient` is Flask's test client with every answer checked; it also keeps
each answer's text (:attr:`CheckedClient.seen`) for the tests that look for secrets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote

import yaml
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.test import TestResponse

from controller.app import OPENAPI, api

PREFIX = str(api.url_prefix)
_BASE = "urn:branchline:controller-openapi"


class Undocumented(AssertionError):
    """An answer (or an accepted request) the OpenAPI document does not describe."""


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    text: str


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to ``parts`` of the document, as a URI fragment."""
    return "#/" + "/".join(quote(p.replace("~", "~0").replace("/", "~1"), safe="")
                           for p in parts)


def _matcher(template: str) -> re.Pattern[str]:
    """``/numbers/{number}`` -> a pattern matching ``/numbers/<one path segment>``."""
    parts = re.split(r"\{[^/}]+\}", template)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


class OpenApiChecker:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self._registry: Registry[Any] = Registry().with_resource(
            _BASE, Resource(contents=doc, specification=DRAFT202012))
        # literal paths before templated ones, so /openapi.json is never a {param}
        templates = sorted(doc["paths"], key=lambda p: (p.count("{"), p))
        self._paths = [(_matcher(p), p) for p in templates]

    def template(self, path: str) -> str | None:
        """The documented path template ``path`` (with the ``/api/v1`` prefix) matches."""
        if not path.startswith(PREFIX):
            return None
        local = path[len(PREFIX):]
        return next((t for rx, t in self._paths if rx.match(local)), None)

    def _validate(self, instance: Any, *pointer: str) -> None:
        schema = {"$ref": _BASE + _pointer(*pointer)}
        validator = Draft202012Validator(schema, registry=self._registry,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            first: ValidationError = errors[0]
            where = "/".join(str(x) for x in first.absolute_path) or "(root)"
            raise Undocumented(f"{'/'.join(pointer)}: at {where}: {first.message}")

    def check_request(self, method: str, path: str, body: Any) -> None:
        """A request body the API accepted must fit the documented one."""
        template = self.template(path)
        operation = self.doc["paths"].get(template or "", {}).get(method.lower())
        if operation is None or body is None:
            return
        if "requestBody" not in operation:
            raise Undocumented(f"{method} {template} takes no body, yet one was accepted")
        self._validate(body, "paths", template or "", method.lower(), "requestBody",
                       "content", "application/json", "schema")

    def check_response(self, method: str, path: str, status: int, mimetype: str,
                       data: bytes) -> None:
        template = self.template(path)
        operation = self.doc["paths"].get(template or "", {}).get(method.lower())
        if operation is None:  # routing: no such path, or no such method on it
            expected = 404 if template is None else 405
            if status != expected:
                raise Undocumented(f"{method} {path} is not documented, yet answered "
                                   f"{status}")
            self._validate(json.loads(data), "components", "schemas", "Error")
            return
        where = f"{method} {template}"
        response = operation["responses"].get(str(status))
        if response is None:
            raise Undocumented(f"{where} answered {status}, which is not documented "
                               f"(documented: {', '.join(operation['responses'])})")
        if "$ref" in response:
            name = response["$ref"].rsplit("/", 1)[1]
            pointer: tuple[str, ...] = ("components", "responses", name)
            response = self.doc["components"]["responses"][name]
        else:
            pointer = ("paths", template or "", method.lower(), "responses", str(status))
        content = response.get("content")
        if not content:
            if data:
                raise Undocumented(f"{where} {status} has no documented body, yet sent "
                                   f"{data[:80]!r}")
            return
        if mimetype not in content:
            raise Undocumented(f"{where} {status} sent {mimetype}, documented: "
                               f"{', '.join(content)}")
        if mimetype == "application/json":
            self._validate(json.loads(data), *pointer, "content", mimetype, "schema")


def blueprint_routes() -> set[tuple[str, str]]:
    """(method, path) of every route of the ``api`` blueprint, in OpenAPI's spelling
    (``get``, ``/tenants/{tenant_id}``; HEAD and OPTIONS left out)."""
    app = Flask("routes-only")
    app.register_blueprint(api)
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule.removeprefix(PREFIX))
        routes |= {(m.lower(), path) for m in rule.methods or ()
                   if m not in ("HEAD", "OPTIONS")}
    return routes


@cache
def checker() -> OpenApiChecker:
    return OpenApiChecker(yaml.safe_load(OPENAPI.read_text(encoding="utf-8")))


class CheckedClient(FlaskClient):
    """Flask's test client; every answer is checked against the OpenAPI document."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[Seen] = []

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        response = super().open(*args, **kwargs)
        request = response.request
        data = response.get_data()
        self.seen.append(Seen(request.method, request.path, response.status_code,
                              data.decode("utf-8", "replace")))
        if request.path.startswith(PREFIX + "/"):
            checker().check_response(request.method, request.path, response.status_code,
                                     response.mimetype or "", data)
            if 200 <= response.status_code < 300:
                checker().check_request(request.method, request.path, kwargs.get("json"))
        return response
