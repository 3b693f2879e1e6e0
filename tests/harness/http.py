"""JSON over HTTP for the tests: one request, the status and the decoded answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def http_json(method: str, url: str, token: str | None = None, body: Any = None,
              timeout: float = 10.0) -> tuple[int, Any]:
    """``(status, answer)``: JSON decoded, raw bytes for anything else, None when
    empty; error statuses are returned, not raised."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, ctype, raw = resp.status, resp.headers.get_content_type(), resp.read()
    except urllib.error.HTTPError as err:
        status, ctype, raw = err.code, err.headers.get_content_type(), err.read()
        err.close()
    if not raw:
        return status, None
    return status, json.loads(raw) if ctype == "application/json" else raw
