"""RTP/RTCP parsing: whole, byte by byte (every truncation), hypothesis; statistics."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.media.rtp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpUnknown,
    RtpError,
    RtpExtension,
    RtpPacket,
    RtpStats,
    SenderReport,
    SourceDescription,
    build_bye,
    build_packet,
    build_rr,
    build_sdes,
    build_sr,
    is_rtcp,
    ntp_timestamp,
    parse_fast,
    parse_rtcp,
    rewrite_header,
    seq_delta,
)

# A PCMU packet as sent by baresip (header fields chosen by hand; payload = 160 x 0xff).
SIMPLE = bytes.fromhex("8000 1234 0000a0a0 deadbeef".replace(" ", "")) + b"\xff" * 160


def test_parse_simple_packet() -> None:
    p = RtpPacket.parse(SIMPLE)
    assert (p.payload_type, p.sequence, p.timestamp, p.ssrc) == (0, 0x1234, 0xA0A0, 0xDEADBEEF)
    assert not p.marker and p.payload == b"\xff" * 160 and p.csrcs == () and p.extension is None
    assert p.to_bytes() == SIMPLE


def test_roundtrip_with_everything() -> None:
    p = RtpPacket(
        payload_type=101,
        sequence=65535,
        timestamp=2**32 - 1,
        ssrc=1,
        marker=True,
        payload=b"\x01\x8a\x03\x20",
        csrcs=(7, 8),
        extension=RtpExtension(0xBEDE, b"\x10\xaa\x00\x00"),
    )
    data = p.to_bytes()
    assert data[0] == 0x80 | 0x10 | 2 and data[1] == 0x80 | 101
    assert RtpPacket.parse(data) == p


def test_padding_is_removed() -> None:
    data = bytearray(build_packet(8, False, 1, 2, 3, b"abcd") + b"\x00\x00\x03")
    data[0] |= 0x20
    assert RtpPacket.parse(bytes(data)).payload == b"abcd"
    assert parse_fast(bytes(data))[5:] == (12, 16)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00",
        bytes(11),
        b"\x40" + bytes(11),  # version 1
        b"\x83" + bytes(11) + bytes(8),  # 3 CSRCs announced, 2 present
        b"\x90" + bytes(11) + b"\x00\x00\x00\x02" + bytes(4),  # extension longer than data
        b"\xa0" + bytes(11) + b"\x00",  # padding count 0
        b"\xa0" + bytes(11) + b"\x05",  # padding longer than payload
    ],
)
def test_garbage_raises_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)
    with pytest.raises(RtpError):
        parse_fast(data)


def test_every_truncation_parses_or_raises_rtp_error() -> None:
    full = RtpPacket(96, 5, 6, 7, True, b"xyz", (1, 2), RtpExtension(1, b"abcd")).to_bytes()
    for n in range(len(full) + 1):
        try:
            RtpPacket.parse(full[:n])
        except RtpError:
            assert n < 12 + 8 + 8
        try:
            parse_fast(full[:n])
        except RtpError:
            pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_parse_never_raises_anything_else(data: bytes) -> None:
    try:
        p = RtpPacket.parse(data)
    except RtpError:
        return
    assert RtpPacket.parse(p.to_bytes()) == p


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 127),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.binary(max_size=200),
    st.lists(st.integers(0, 2**32 - 1), max_size=15),
)
def test_roundtrip_property(
    pt: int, seq: int, ts: int, ssrc: int, marker: bool, payload: bytes, csrcs: list[int]
) -> None:
    p = RtpPacket(pt, seq, ts, ssrc, marker, payload, tuple(csrcs))
    data = p.to_bytes()
    assert RtpPacket.parse(data) == p
    fast = parse_fast(data)
    assert fast[:5] == (pt, marker, seq, ts, ssrc)
    assert data[fast[5] : fast[6]] == payload


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_rtcp_parse_or_rtp_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtpError:
        pass


def test_fast_path_helpers() -> None:
    data = build_packet(0, True, 70000, 2**32 + 5, 0xCAFEBABE, b"pp")
    assert parse_fast(data) == (0, True, 70000 & 0xFFFF, 5, 0xCAFEBABE, 12, 14)
    buf = bytearray(data)
    rewrite_header(buf, ssrc=1, sequence=2, timestamp=3, payload_type=8, marker=False)
    assert RtpPacket.parse(bytes(buf)) == RtpPacket(8, 2, 3, 1, False, b"pp")
    rewrite_header(buf, ssrc=1, sequence=2, timestamp=3, marker=True)
    assert RtpPacket.parse(bytes(buf)).marker and RtpPacket.parse(bytes(buf)).payload_type == 8
    with pytest.raises(RtpError):
        rewrite_header(bytearray(5), ssrc=1, sequence=1, timestamp=1)


def test_seq_delta_wraps() -> None:
    assert seq_delta(1, 65535) == 2
    assert seq_delta(65535, 1) == -2
    assert seq_delta(100, 100) == 0


def test_to_bytes_validates() -> None:
    with pytest.raises(ValueError):
        RtpPacket(128, 0, 0, 0).to_bytes()
    with pytest.raises(ValueError):
        RtpPacket(0, 0, 0, 0, csrcs=tuple(range(16))).to_bytes()
    with pytest.raises(ValueError):
        RtpExtension(1, b"abc")


# -- RTCP ------------------------------------------------------------------------------


def test_sender_report_roundtrip() -> None:
    block = ReportBlock(0x11, 25, 3, 70000, 12, 0x1234, 0x5678)
    ntp = ntp_timestamp(1_700_000_000.25)
    data = build_sr(
        0xABC, ntp=ntp, rtp_timestamp=160, packet_count=10, octet_count=1600, reports=[block]
    )
    assert len(data) == 28 + 24 and struct.unpack_from("!H", data, 2)[0] == 12
    assert is_rtcp(data)
    (sr,) = parse_rtcp(data)
    assert sr == SenderReport(0xABC, ntp, 160, 10, 1600, (block,))
    assert (ntp >> 32) - 2_208_988_800 == 1_700_000_000 and ntp & 0xFFFFFFFF == 1 << 30


def test_compound_rr_sdes_bye() -> None:
    block = ReportBlock(0x22, 0, -5, 1, 2)
    data = build_rr(7, [block]) + build_sdes(7, "alice@example") + build_bye([7, 8], "done")
    rr, sdes, bye = parse_rtcp(data)
    assert rr == ReceiverReport(7, (block,))
    assert sdes == SourceDescription(((7, "alice@example"),))
    assert bye == Bye((7, 8), "done")
    assert parse_rtcp(build_bye([9])) == [Bye((9,), "")]


def test_unknown_rtcp_type_is_skipped() -> None:
    app = b"\x80\xcc\x00\x02" + b"\x00\x00\x00\x07" + b"name"
    out = parse_rtcp(app + build_rr(1))
    assert isinstance(out[0], RtcpUnknown) and out[0].packet_type == 204
    assert out[1] == ReceiverReport(1)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\xc8\x00\x06" + bytes(8),  # SR length beyond datagram
        b"\x81\xc9\x00\x01" + bytes(4),  # RR announces a block that is not there
        b"\x40\xc9\x00\x01" + bytes(4),  # version 1
        build_rr(1) + b"\x80",  # trailing byte
        b"\x81\xca\x00\x01\x00\x00\x00\x01",  # SDES chunk without terminator
        b"\x82\xcb\x00\x01\x00\x00\x00\x01",  # BYE with 2 SSRCs, 1 present
    ],
)
def test_rtcp_garbage(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtcp(data)


def test_every_truncation_of_compound_rtcp() -> None:
    data = (
        build_sr(
            1,
            ntp=5,
            rtp_timestamp=6,
            packet_count=7,
            octet_count=8,
            reports=[ReportBlock(2, 1, 1, 1, 1)],
        )
        + build_sdes(1, "x")
        + build_bye([1])
    )
    for n in range(len(data)):
        try:
            parse_rtcp(data[:n])
        except RtpError:
            pass


# -- statistics ------------------------------------------------------------------------


def feed(stats: RtpStats, seqs: list[int], start_ts: int = 0) -> list[bool]:
    out = []
    for i, s in enumerate(seqs):
        out.append(stats.update(s & 0xFFFF, start_ts + 160 * (s - seqs[0]), i * 0.02, 160))
    return out


def test_stats_in_order_with_loss() -> None:
    st_ = RtpStats()
    feed(st_, [10, 11, 12, 14, 15, 18])
    assert st_.received == 6 and st_.expected == 9 and st_.lost == 3
    assert st_.octets == 6 * 160 and st_.duplicates == 0 and st_.out_of_order == 0


def test_stats_wraparound_duplicates_and_reordering() -> None:
    st_ = RtpStats()
    res = feed(st_, [65533, 65534, 65535, 65536, 65538, 65537, 65538, 65539])
    assert res == [True, True, True, True, True, True, False, True]
    assert st_.cycles == 65536 and st_.max_seq == 3
    assert st_.expected == 7 and st_.received == 7 and st_.lost == 0
    assert st_.duplicates == 1 and st_.out_of_order == 1


def test_stats_restart_after_large_jump_confirmed_by_next_packet() -> None:
    st_ = RtpStats()
    feed(st_, [100, 101])
    assert not st_.update(30000, 0, 1.0)
    assert st_.update(30001, 160, 1.02)
    assert st_.restarts == 1 and st_.received == 1 and st_.expected == 1 and st_.lost == 0


def test_jitter_zero_for_perfect_pacing_and_grows_with_jitter() -> None:
    st_ = RtpStats()
    for i in range(100):
        st_.update(i, i * 160, 5.0 + i * 0.02)
    assert st_.jitter < 1e-6
    jittery = RtpStats()
    for i in range(400):
        jittery.update(i, i * 160, i * 0.02 + (0.01 if i % 2 else 0.0))
    # alternating 10 ms: |D| = 80 units every packet -> J converges to 80
    assert jittery.jitter == pytest.approx(80, rel=0.02)
    assert jittery.jitter_seconds == pytest.approx(0.01, rel=0.02)


def test_jitter_ignores_timestamp_wrap() -> None:
    st_ = RtpStats()
    for i in range(50):
        st_.update(i, (2**32 - 800 + i * 160) & 0xFFFFFFFF, i * 0.02)
    assert st_.jitter < 1e-6


def test_report_block_fraction_lost_per_interval() -> None:
    st_ = RtpStats()
    feed(st_, [0, 1, 2, 3])
    feed(st_, [8])
    block = st_.report_block(0x99)
    assert block.ssrc == 0x99 and block.cumulative_lost == 4
    assert block.fraction_lost == (4 << 8) // 9
    assert block.highest_sequence == 8
    assert st_.report_block(0x99).fraction_lost == 0  # nothing new in the interval
