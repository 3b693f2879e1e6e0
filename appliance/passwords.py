"""Hashing of short secrets the plan carries (voicemail PINs): scrypt, never clear text.

The format is ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` so the cost can rise later
without invalidating stored hashes. :func:`verify` compares in constant time and
answers False (never raises) for a malformed hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_N, _R, _P = 2**14, 8, 1
_FORMAT = re.compile(r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(("scrypt", str(_N), str(_R), str(_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()))


def is_hash(value: object) -> bool:
    return isinstance(value, str) and _FORMAT.match(value) is not None


def verify(secret: str, hashed: str) -> bool:
    m = _FORMAT.match(hashed)
    if m is None:
        return False
    n, r, p = (int(m.group(i)) for i in (1, 2, 3))
    if n > 2**20 or r > 32 or p > 16:  # refuse costs a stored hash could abuse
        return False
    salt, expected = base64.b64decode(m.group(4)), base64.b64decode(m.group(5))
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected),
                            maxmem=256 * 1024 * 1024)
    return hmac.compare_digest(digest, expected)
