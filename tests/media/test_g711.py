"""G.711 against the ITU-T G.191 reference algorithm, sample by sample, and G.711's tables."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.media import g711

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


# -- straightforward reference: ITU-T G.191 STL ulaw_compress/alaw_compress/.._expand,
# -- transcribed one sample at a time with plain integer arithmetic.
def ref_ulaw_compress(lin: int) -> int:
    absno = ((~lin) >> 2) + 33 if lin < 0 else (lin >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    high = 8 - segno
    low = 0x0F - ((absno >> segno) & 0x0F)
    out = (high << 4) | low
    return out | 0x80 if lin >= 0 else out


def ref_alaw_compress(lin: int) -> int:
    ix = (~lin) >> 4 if lin < 0 else lin >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if lin >= 0:
        ix |= 0x80
    return ix ^ 0x55


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 8
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def test_ulaw_encode_matches_reference_for_all_65536_inputs() -> None:
    expected = bytes(ref_ulaw_compress(int(x)) for x in ALL_INT16)
    assert g711.ulaw_encode(ALL_INT16) == expected


def test_alaw_encode_matches_reference_for_all_65536_inputs() -> None:
    expected = bytes(ref_alaw_compress(int(x)) for x in ALL_INT16)
    assert g711.alaw_encode(ALL_INT16) == expected


def test_decoders_match_reference_for_all_256_codes() -> None:
    codes = bytes(range(256))
    assert g711.ulaw_decode(codes).tolist() == [ref_ulaw_expand(c) for c in range(256)]
    assert g711.alaw_decode(codes).tolist() == [ref_alaw_expand(c) for c in range(256)]


def test_decoded_levels_follow_the_g711_formula() -> None:
    # G.711 Table 2a (mu) and 1a (A): reconstruction levels in 16-bit units.
    for code in range(256):
        inv = ~code & 0xFF
        e, m = (inv >> 4) & 7, inv & 0x0F
        mag = (((2 * m + 33) << e) - 33) * 4
        assert g711.ulaw_decode(bytes([code]))[0] == (mag if code & 0x80 else -mag)
        ix = (code ^ 0x55) & 0x7F
        e, m = ix >> 4, ix & 0x0F
        mag = (2 * m + 1) * 8 if e == 0 else ((2 * m + 33) << (e - 1)) * 8
        assert g711.alaw_decode(bytes([code]))[0] == (mag if code & 0x80 else -mag)


def _step(law: str, code: int) -> int:
    """Quantisation step (16-bit units) of the segment a code belongs to (G.711 Tables 1/2)."""
    if law == "PCMU":
        e = ((~code & 0xFF) >> 4) & 7
        return 8 << e
    e = ((code ^ 0x55) & 0x7F) >> 4
    return 16 << max(e - 1, 0)


@pytest.mark.parametrize("law", ["PCMU", "PCMA"])
def test_encoder_picks_the_decision_interval_containing_the_input(law: str) -> None:
    # Independent of the algorithm: reading each integer n as the interval [n, n+1), its
    # centre lies within half a step of the level its code decodes to (the decision
    # interval of G.711), for every input below the overload point.
    codes = np.frombuffer(g711.encode(law, ALL_INT16), dtype=np.uint8)
    level = np.abs(g711.decode(law, codes.tobytes()).astype(np.float64))
    step = np.array([_step(law, c) for c in range(256)], dtype=np.float64)[codes]
    centre = np.abs(ALL_INT16.astype(np.float64) + 0.5)
    overload = 32124 if law == "PCMU" else 32256
    inside = centre < overload
    assert np.all(np.abs(centre - level)[inside] <= step[inside] / 2)
    assert inside.sum() > 64000


def test_roundtrip_code_decode_encode_is_identity() -> None:
    for law in ("PCMU", "PCMA"):
        codes = bytes(range(256))
        again = g711.encode(law, g711.decode(law, codes))
        if law == "PCMU":  # 0x7F is "negative zero" and re-encodes as +0 (0xFF)
            assert again == codes[:0x7F] + b"\xff" + codes[0x80:]
        else:
            assert again == codes


def test_silence_codes() -> None:
    assert g711.ulaw_decode(bytes([g711.ULAW_SILENCE]))[0] == 0
    assert g711.alaw_decode(bytes([g711.ALAW_SILENCE]))[0] == 8
    assert g711.silence("PCMU", 3) == b"\xff\xff\xff"
    assert g711.silence("PCMA", 2) == b"\xd5\xd5"
    assert g711.ulaw_encode(np.zeros(4, dtype=np.int16)) == b"\xff" * 4


def test_transcode_tables_are_g711_tables_3_and_4() -> None:
    u2a, a2u = g711.ULAW_TO_ALAW, g711.ALAW_TO_ULAW
    assert len(u2a) == len(a2u) == 256
    # spot values of G.711 Table 3 / Table 4 (code bytes as transmitted)
    assert u2a[0x00] == 0x2A and u2a[0x7F] == 0x55 and u2a[0xFF] == 0xD5
    assert a2u[0x00] == 0x2A and a2u[0x55] == 0x7E and a2u[0xD5] == 0xFE  # A +-8 -> mu +-8
    assert u2a[0x20] == 0x0A  # mu -7932 -> A -8064 (decode/re-encode would give -7808)
    # symmetric in sign
    for c in range(128):
        assert u2a[c | 0x80] == u2a[c] | 0x80
        assert a2u[c | 0x80] == a2u[c] | 0x80
    # monotonic: a louder mu-law level never maps to a quieter A-law level
    uval = g711.ulaw_decode(bytes(range(128, 256)))
    aval = g711.alaw_decode(bytes(u2a[128:]))
    order = np.argsort(uval, kind="stable")
    assert np.all(np.diff(aval[order]) >= 0)
    # transparency: 240 codes survive A->mu->A and mu->A->mu
    assert sum(u2a[a2u[a]] == a for a in range(256)) == 240
    assert sum(a2u[u2a[u]] == u for u in range(256)) == 240
    # and every conversion is within one step of the naive decode/re-encode
    for table, src, dst in ((u2a, "PCMU", "PCMA"), (a2u, "PCMA", "PCMU")):
        naive = g711.decode_reencode_table(src, dst)
        assert 0 < sum(x != y for x, y in zip(table, naive, strict=True)) <= 44
        v_tab = g711.decode(dst, bytes(table)).astype(int)
        v_src = g711.decode(src, bytes(range(256))).astype(int)
        assert np.all(np.abs(v_tab - v_src) <= 256)


def test_transcode_bytes() -> None:
    tone = (np.sin(np.arange(800) * 0.3) * 8000).astype(np.int16)
    mu = g711.ulaw_encode(tone)
    a = g711.transcode(mu, "PCMU", "PCMA")
    assert a == mu.translate(g711.ULAW_TO_ALAW) == g711.ulaw_to_alaw(mu)
    assert g711.transcode(a, "PCMA", "PCMU") == g711.alaw_to_ulaw(a)
    assert g711.transcode(mu, "PCMU", "PCMU") is mu
    err = g711.alaw_decode(a).astype(int) - tone
    assert np.max(np.abs(err)) < 0.07 * 8000  # within one quantisation step at 8000
    with pytest.raises(ValueError):
        g711.transcode(mu, "PCMU", "G722")


def test_encode_accepts_other_dtypes_with_clipping() -> None:
    assert g711.ulaw_encode(np.array([40000, -40000])) == g711.ulaw_encode(
        np.array([32767, -32768], dtype=np.int16)
    )
    assert g711.alaw_encode([0.4, 100.6]) == g711.alaw_encode(np.array([0, 101], dtype=np.int16))
    with pytest.raises(ValueError):
        g711.encode("G729", np.zeros(1, dtype=np.int16))
    with pytest.raises(ValueError):
        g711.decode("G729", b"\x00")


def test_decode_memoryview_and_empty() -> None:
    assert g711.ulaw_decode(memoryview(b"\xff\x7f")).tolist() == [0, 0]
    assert g711.alaw_decode(b"").size == 0
    assert g711.ulaw_encode(np.zeros(0, dtype=np.int16)) == b""
