"""Identifier rules shared by the plan and every per-tenant store (one definition).

Use with ``fullmatch``: tenant, node, flow and trunk ids are 1-63 characters of lower
case letters, digits and ``-``, starting with a letter or digit, so an id is always a
safe single path component and never ``.`` or ``..``.
"""

from __future__ import annotations

import re
from typing import Final

ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
