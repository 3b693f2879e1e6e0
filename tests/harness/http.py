"""JSON over HTTP for the tests: one request, the status and the decoded answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def http_json(method: str, url: str, token: str | None = None, body: Any = None,
              timeout: float = 10.0, content_type: str = "application/json"
              ) -> tuple[int, Any]:
    """``(status, answer)``: JSON decoded, raw bytes for anything else, None when
    empty; error statuses are returned, not raised. A ``bytes`` body is sent as it is
    (as ``content_type``), anything else as JSON."""
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, method=method, headers=headers, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, ctype, raw = resp.status, resp.headers.get_content_type(), resp.read()
    except urllib.error.HTTPError as err:
        status, ctype, raw = err.code, err.headers.get_content_type(), err.read()
        err.close()
    if not raw:
        return status, None
    return status, json.loads(raw) if ctype == "application/json" else raw
