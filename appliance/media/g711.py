"""ITU-T G.711 mu-law (PCMU) and A-law (PCMA), table driven with numpy.

Theory of operation
-------------------
G.711 defines its quantiser on 14-bit (mu-law) and 13-bit (A-law) samples held
left-justified in 16-bit words.  We follow the ITU-T reference software
(G.191 Software Tool Library, ``ulaw_compress``/``alaw_compress``) exactly,
including its one's-complement treatment of negative samples: a 16-bit value
``n < 0`` is quantised by the magnitude ``~n`` (``-n - 1``), so every integer
is read as the interval ``[n, n + 1)`` and both halves of the characteristic
are symmetric around -0.5.  Decoding returns the centre of each quantisation
interval (G.711 Tables 1a/2a), e.g. mu-law codes decode to
``+/-(((2 * m + 33) << e) - 33) * 4`` and A-law codes to ``+/-(2 * m + 1) * 8``
(segment 0) or ``+/-(2 * m + 33) << (e - 1) * 8``.

The encoder is a single 64 KiB lookup table indexed by the 16-bit sample
reinterpreted as unsigned; the decoder is a 256-entry table.  Both are built
once at import with vectorised integer arithmetic (no per-sample Python), so
``encode``/``decode`` cost one numpy gather each.

Transcoding between the laws is ``bytes.translate`` with the normative
conversion tables of G.711 (Table 3: mu-law -> A-law, Table 4: A-law -> mu-law).
They are not "decode then re-encode": for 44 mu-law and 32 A-law codes (the
magnitudes 4092..8064 and a few below, plus mu-law 0 -> A-law -8) G.711 picks
the neighbouring level, so that A -> mu -> A and mu -> A -> mu are transparent for
240 codes each.  The tables are symmetric in sign, so only the negative half
is stored below (as transmitted code bytes, i.e. mu-law inverted and A-law
with the even bits inverted); ``decode_reencode_table`` gives the naive
mapping for comparison.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE",
    "ALAW_TO_ULAW",
    "CODECS",
    "ULAW_SILENCE",
    "ULAW_TO_ALAW",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_ulaw",
    "decode",
    "decode_reencode_table",
    "encode",
    "silence",
    "transcode",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_alaw",
]

Int16Array = npt.NDArray[np.int16]

ULAW_SILENCE: Final = 0xFF
"""The mu-law code for 0 (positive zero)."""
ALAW_SILENCE: Final = 0xD5
"""The A-law code for +8, the smallest positive level (A-law has no zero)."""

CODECS: Final = ("PCMU", "PCMA")


def _ulaw_compress_all() -> npt.NDArray[np.uint8]:
    """mu-law codes for every int16 value, in int16 order (-32768 .. 32767)."""
    lin = np.arange(-32768, 32768, dtype=np.int32)
    absno = np.where(lin < 0, (~lin) >> 2, lin >> 2) + 33
    absno = np.minimum(absno, 0x1FFF)
    # segno = 1 + bit length of (absno >> 6), i.e. 1..8
    segno = np.ones_like(absno)
    i = absno >> 6
    while np.any(i):
        segno += i != 0
        i >>= 1
    high = 8 - segno
    low = 0x0F - ((absno >> segno) & 0x0F)
    code = (high << 4) | low
    code = np.where(lin >= 0, code | 0x80, code)
    out: npt.NDArray[np.uint8] = code.astype(np.uint8)
    return out


def _alaw_compress_all() -> npt.NDArray[np.uint8]:
    """A-law codes for every int16 value, in int16 order (-32768 .. 32767)."""
    lin = np.arange(-32768, 32768, dtype=np.int32)
    ix = np.where(lin < 0, (~lin) >> 4, lin >> 4)  # 0 .. 2047
    # exponent: 0 for ix <= 15, else 1 + number of halvings to get ix <= 31
    exp = np.zeros_like(ix)
    mant = ix.copy()
    big = ix > 15
    exp[big] = 1
    while True:
        more = mant > 31
        if not np.any(more):
            break
        mant = np.where(more, mant >> 1, mant)
        exp += more
    code = np.where(big, (mant - 16) + (exp << 4), ix)
    code = np.where(lin >= 0, code | 0x80, code)
    return (code ^ 0x55).astype(np.uint8)


def _ulaw_expand_all() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    inv = ~code & 0xFF
    exponent = (inv >> 4) & 0x07
    mantissa = inv & 0x0F
    magnitude = (((2 * mantissa + 33) << exponent) - 33) * 4
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


def _alaw_expand_all() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = ix & 0x0F
    seg0 = (2 * mantissa + 1) * 8
    segn = ((2 * mantissa + 33) << np.maximum(exponent - 1, 0)) * 8
    magnitude = np.where(exponent == 0, seg0, segn)
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


def _by_unsigned_index(table_in_int16_order: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Re-index a table so that it can be gathered with ``samples.view(np.uint16)``."""
    return np.roll(table_in_int16_order, -32768)


_ULAW_ENC: Final = _by_unsigned_index(_ulaw_compress_all())
_ALAW_ENC: Final = _by_unsigned_index(_alaw_compress_all())
_ULAW_DEC: Final = _ulaw_expand_all()
_ALAW_DEC: Final = _alaw_expand_all()
for _table in (_ULAW_ENC, _ALAW_ENC, _ULAW_DEC, _ALAW_DEC):
    _table.setflags(write=False)

# G.711 (11/88) Table 3 (mu -> A) and Table 4 (A -> mu), negative half (codes
# 0x00..0x7F); the positive half is the same with bit 7 set.  Cross-checked
# against spandsp's g711.c, which carries the same tables.
_G711_TABLE3_NEG: Final = bytes.fromhex(
    "2a2b28292e2f2c2d22232021262724253a3b38393e3f3c3d32333031363734350a0b08090e0f0c0d0203"
    "00010607041a1b18191e1f1c1d12131011161714156a68696e6f6c6d62636061666764657a787e7f7c7d"
    "72737071767774754b494f4d42434041464744455a5b58595e5f5c5d5252535350505151565657575454"
    "5555"
)
_G711_TABLE4_NEG: Final = bytes.fromhex(
    "2a2b28292e2f2c2d2223202126272425393a37383d3e3b3c31322f30353633340a0b08090e0f0c0d0203"
    "0001060704051a1b18191e1f1c1d121310111617141562636061666764655d5d5c5c5f5f5e5e74767072"
    "7c7e787a6a6b68696e6f6c6d484946474c4d4a4b40413f3f44454243565754555a5b58594f4f4e4e5253"
    "5051"
)

ULAW_TO_ALAW: Final[bytes] = _G711_TABLE3_NEG + bytes(c | 0x80 for c in _G711_TABLE3_NEG)
"""256-byte ``bytes.translate`` table: mu-law code -> A-law code (G.711 Table 3)."""
ALAW_TO_ULAW: Final[bytes] = _G711_TABLE4_NEG + bytes(c | 0x80 for c in _G711_TABLE4_NEG)
"""256-byte ``bytes.translate`` table: A-law code -> mu-law code (G.711 Table 4)."""


def decode_reencode_table(from_codec: str, to_codec: str) -> bytes:
    """The naive transcoding table (decode with one law, encode with the other)."""
    dec = _ULAW_DEC if from_codec == "PCMU" else _ALAW_DEC
    enc = _ALAW_ENC if to_codec == "PCMA" else _ULAW_ENC
    if {from_codec, to_codec} != {"PCMU", "PCMA"}:
        raise ValueError(f"unsupported transcoding {from_codec!r} -> {to_codec!r}")
    return enc[dec.view(np.uint16)].tobytes()


def _as_int16(samples: npt.ArrayLike) -> Int16Array:
    arr = np.asarray(samples)
    if arr.dtype != np.int16:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.rint(arr)
        arr = np.clip(arr, -32768, 32767).astype(np.int16)
    return arr


def ulaw_encode(samples: npt.ArrayLike) -> bytes:
    """Encode int16 samples (other dtypes are rounded and clipped) to mu-law bytes."""
    return _ULAW_ENC[_as_int16(samples).view(np.uint16)].tobytes()


def alaw_encode(samples: npt.ArrayLike) -> bytes:
    """Encode int16 samples (other dtypes are rounded and clipped) to A-law bytes."""
    return _ALAW_ENC[_as_int16(samples).view(np.uint16)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """Decode mu-law bytes to a new int16 array."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """Decode A-law bytes to a new int16 array."""
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def ulaw_to_alaw(data: bytes) -> bytes:
    return data.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    return data.translate(ALAW_TO_ULAW)


def encode(codec: str, samples: npt.ArrayLike) -> bytes:
    """Encode for an RTP encoding name, ``"PCMU"`` or ``"PCMA"``."""
    if codec == "PCMU":
        return ulaw_encode(samples)
    if codec == "PCMA":
        return alaw_encode(samples)
    raise ValueError(f"unsupported codec {codec!r}")


def decode(codec: str, data: bytes | bytearray | memoryview) -> Int16Array:
    """Decode for an RTP encoding name, ``"PCMU"`` or ``"PCMA"``."""
    if codec == "PCMU":
        return ulaw_decode(data)
    if codec == "PCMA":
        return alaw_decode(data)
    raise ValueError(f"unsupported codec {codec!r}")


def transcode(data: bytes, from_codec: str, to_codec: str) -> bytes:
    """Convert a G.711 payload between laws (identity if the codecs are the same)."""
    if from_codec == to_codec:
        if from_codec not in CODECS:
            raise ValueError(f"unsupported codec {from_codec!r}")
        return data
    if (from_codec, to_codec) == ("PCMU", "PCMA"):
        return data.translate(ULAW_TO_ALAW)
    if (from_codec, to_codec) == ("PCMA", "PCMU"):
        return data.translate(ALAW_TO_ULAW)
    raise ValueError(f"unsupported transcoding {from_codec!r} -> {to_codec!r}")


def silence(codec: str, samples: int = 160) -> bytes:
    """A payload of silence for ``codec``."""
    if codec == "PCMU":
        return bytes((ULAW_SILENCE,)) * samples
    if codec == "PCMA":
        return bytes((ALAW_SILENCE,)) * samples
    raise ValueError(f"unsupported codec {codec!r}")
