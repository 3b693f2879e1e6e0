"""Identifier rules shared by the plan, every per-tenant store and the controller (one
definition each; use them with ``fullmatch``).

Tenant, node, flow and trunk ids are 1-63 characters of lower case letters, digits and
``-``, starting with a letter or digit, so an id is always a safe single path component
and never ``.`` or ``..``. Extensions (and mailboxes) are 2-8 digits; numbers (DIDs,
caller numbers) 3-20 digits with an optional ``+``; SIP domains are DNS names.
"""

from __future__ import annotations

import re
from typing import Final

ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
EXTENSION_RE: Final = re.compile(r"[0-9]{2,8}")
NUMBER_RE: Final = re.compile(r"\+?[0-9]{3,20}")
DOMAIN_RE: Final = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
