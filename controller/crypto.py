"""Sensitive fields encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

SIP passwords, users' phone numbers and the tenant's plan sections (which hold data
action database URLs) are stored encrypted with the controller's secret key, so a
copy of the database (a backup, a replica) does not give them away. The key is kept
apart from the database: ``$BRANCHLINE_SECRET_KEY`` or a key file (created 0600 on
first use). Every controller process sharing one database must use the same key.

:class:`Encrypted` and :class:`EncryptedJSON` are SQLAlchemy column types that encrypt
on write and decrypt on read with the process's key (:func:`use_key`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Dialect, Text
from sqlalchemy.types import TypeDecorator

_fernet: Fernet | None = None


def load_key(path: Path) -> bytes:
    """The key from ``$BRANCHLINE_SECRET_KEY``, else from ``path`` (created if absent)."""
    env = os.environ.get("BRANCHLINE_SECRET_KEY")
    if env:
        return env.encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    return path.read_bytes().strip()


def use_key(key: bytes) -> None:
    """Set the key this process encrypts and decrypts with."""
    global _fernet
    _fernet = Fernet(key)


def _cipher() -> Fernet:
    if _fernet is None:
        raise RuntimeError("no secret key: call controller.crypto.use_key first")
    return _fernet


class Encrypted(TypeDecorator[str]):
    """A text column stored as a Fernet token."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _cipher().encrypt(value.encode()).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        try:
            return _cipher().decrypt(value.encode()).decode()
        except InvalidToken:
            raise RuntimeError("a stored secret does not open with this controller's key "
                               "(is BRANCHLINE_SECRET_KEY the same on every controller?)"
                               ) from None


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON document stored as a Fernet token."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _cipher().encrypt(json.dumps(value, sort_keys=True).encode()).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(Encrypted().process_result_value(value, dialect) or "null")
