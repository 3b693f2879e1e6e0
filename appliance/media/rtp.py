"""RTP and minimal RTCP (RFC 3550), sans-I/O.

Theory of operation
-------------------
``RtpPacket.parse`` is the careful path: it validates the whole fixed header,
CSRC list, header extension and padding and raises ``RtpError`` (a
``ValueError``) for anything that is not a well-formed RTP packet.  It never
raises anything else, whatever the input (hypothesis checks that).

The relay path does not build ``RtpPacket`` objects.  ``parse_fast`` unpacks
the fixed header with one ``struct`` call and returns the payload bounds;
``build_packet`` packs a fresh 12-byte header in front of a payload and
``rewrite_header`` patches SSRC/sequence/timestamp in place in a
``bytearray``.  Those are the only per-packet operations a bridge performs.

``RtpStats`` follows RFC 3550 appendix A.1 (sequence validation with a
restart on a long jump), A.3 (expected/lost counts, fraction lost per report
interval) and A.8 (interarrival jitter, in timestamp units).

RTCP support is what a media endpoint needs for statistics: build and parse
Sender Reports, Receiver Reports, SDES CNAME and BYE (RFC 3550 section 6.4,
6.5, 6.6); other packet types in a compound packet are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "HEADER",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpUnknown",
    "RtpError",
    "RtpExtension",
    "RtpPacket",
    "RtpStats",
    "SenderReport",
    "SourceDescription",
    "build_bye",
    "build_compound",
    "build_packet",
    "build_rr",
    "build_sdes",
    "build_sr",
    "is_rtcp",
    "ntp_timestamp",
    "parse_fast",
    "parse_rtcp",
    "rewrite_header",
    "seq_delta",
]

HEADER: Final = struct.Struct("!BBHII")
"""V/P/X/CC, M/PT, sequence, timestamp, SSRC."""

_U32: Final = struct.Struct("!I")
_EXT: Final = struct.Struct("!HH")
_RTCP_HDR: Final = struct.Struct("!BBH")
_SR_INFO: Final = struct.Struct("!IIIIII")  # ssrc, ntp msw, ntp lsw, rtp ts, packets, octets
_RR_HDR: Final = struct.Struct("!I")
_BLOCK: Final = struct.Struct("!IIIIII")

RTCP_SR: Final = 200
RTCP_RR: Final = 201
RTCP_SDES: Final = 202
RTCP_BYE: Final = 203

_NTP_EPOCH_OFFSET: Final = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


class RtpError(ValueError):
    """A datagram that is not a valid RTP/RTCP packet (the peer's fault)."""


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """RFC 3550 5.3.1 header extension: a 16-bit profile word and its data."""

    profile: int
    data: bytes

    def __post_init__(self) -> None:
        if len(self.data) % 4:
            raise ValueError("extension data must be a multiple of 4 bytes")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool = False
    payload: bytes = b""
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one RTP packet; padding is removed from the payload."""
        data = bytes(data)
        if len(data) < 12:
            raise RtpError(f"RTP packet too short ({len(data)} bytes)")
        b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            raise RtpError(f"unsupported RTP version {b0 >> 6}")
        cc = b0 & 0x0F
        offset = 12 + 4 * cc
        if len(data) < offset:
            raise RtpError("RTP packet truncated in CSRC list")
        csrcs = struct.unpack_from(f"!{cc}I", data, 12) if cc else ()
        extension = None
        if b0 & 0x10:
            if len(data) < offset + 4:
                raise RtpError("RTP packet truncated in header extension")
            profile, words = _EXT.unpack_from(data, offset)
            start = offset + 4
            offset = start + 4 * words
            if len(data) < offset:
                raise RtpError("RTP header extension longer than packet")
            extension = RtpExtension(profile, data[start:offset])
        end = len(data)
        if b0 & 0x20:
            pad = data[-1]
            if pad == 0 or end - pad < offset:
                raise RtpError(f"invalid RTP padding count {pad}")
            end -= pad
        return cls(
            payload_type=b1 & 0x7F,
            sequence=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(b1 & 0x80),
            payload=data[offset:end],
            csrcs=tuple(csrcs),
            extension=extension,
        )

    def to_bytes(self) -> bytes:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type out of range: {self.payload_type}")
        if len(self.csrcs) > 15:
            raise ValueError("at most 15 CSRCs")
        b0 = 0x80 | len(self.csrcs) | (0x10 if self.extension is not None else 0)
        b1 = self.payload_type | (0x80 if self.marker else 0)
        parts = [
            HEADER.pack(
                b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF
            )
        ]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            ext = self.extension
            parts.append(_EXT.pack(ext.profile, len(ext.data) // 4))
            parts.append(ext.data)
        parts.append(self.payload)
        return b"".join(parts)


# ---------------------------------------------------------------------------
# Relay fast path


def parse_fast(data: bytes) -> tuple[int, bool, int, int, int, int, int]:
    """Header fields and payload bounds without building a packet object.

    Returns ``(payload_type, marker, sequence, timestamp, ssrc, start, end)``
    where ``data[start:end]`` is the payload.  Raises ``RtpError``.
    """
    if len(data) < 12:
        raise RtpError("RTP packet too short")
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
    if b0 == 0x80:  # the overwhelmingly common case: V=2, no P/X/CC
        return b1 & 0x7F, b1 > 0x7F, seq, ts, ssrc, 12, len(data)
    if b0 >> 6 != 2:
        raise RtpError(f"unsupported RTP version {b0 >> 6}")
    start = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < start + 4:
            raise RtpError("RTP packet truncated in header extension")
        start += 4 + 4 * _EXT.unpack_from(data, start)[1]
    end = len(data)
    if start > end:
        raise RtpError("RTP packet truncated")
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or end - pad < start:
            raise RtpError(f"invalid RTP padding count {pad}")
        end -= pad
    return b1 & 0x7F, b1 > 0x7F, seq, ts, ssrc, start, end


def build_packet(
    payload_type: int, marker: bool, sequence: int, timestamp: int, ssrc: int, payload: bytes
) -> bytes:
    """A minimal RTP packet (12-byte header, no CSRC/extension/padding)."""
    return (
        HEADER.pack(
            0x80,
            payload_type | 0x80 if marker else payload_type,
            sequence & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc,
        )
        + payload
    )


def rewrite_header(
    buf: bytearray,
    *,
    ssrc: int,
    sequence: int,
    timestamp: int,
    payload_type: int | None = None,
    marker: bool | None = None,
) -> None:
    """Patch SSRC, sequence, timestamp (and optionally PT/marker) in place."""
    if len(buf) < 12:
        raise RtpError("RTP packet too short")
    b1 = buf[1]
    if payload_type is not None:
        b1 = (b1 & 0x80) | payload_type
    if marker is not None:
        b1 = (b1 & 0x7F) | (0x80 if marker else 0)
    HEADER.pack_into(buf, 0, buf[0], b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)


def seq_delta(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers (-32768..32767)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192..223 in the second byte."""
    return len(data) >= 2 and data[0] >> 6 == 2 and 192 <= data[1] <= 223


# ---------------------------------------------------------------------------
# Statistics (RFC 3550 appendix A)

_MAX_DROPOUT: Final = 3000
_MAX_MISORDER: Final = 100
_SEQ_MOD: Final = 1 << 16
_DUP_WINDOW: Final = 1024


@dataclass(slots=True)
class RtpStats:
    """Reception statistics for one source.

    ``update`` is called per received packet with its arrival time in
    seconds; ``jitter`` is in timestamp units (``jitter_seconds`` converts).
    """

    clock_rate: int = 8000
    received: int = 0
    octets: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    restarts: int = 0
    jitter: float = 0.0
    max_seq: int = 0
    cycles: int = 0
    base_seq: int = 0
    _bad_seq: int = -1
    _transit: float | None = None
    _seen: bytearray = field(default_factory=lambda: bytearray(_DUP_WINDOW // 8))
    _expected_prior: int = 0
    _received_prior: int = 0

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.cycles = 0
        self._bad_seq = -1
        self._seen = bytearray(_DUP_WINDOW // 8)
        self._expected_prior = 0
        self._received_prior = 0
        self._mark(seq)

    def _mark(self, ext: int) -> bool:
        """Remember an extended sequence number; True if it was already seen."""
        i = ext % _DUP_WINDOW
        byte, bit = i >> 3, 1 << (i & 7)
        seen = bool(self._seen[byte] & bit)
        self._seen[byte] |= bit
        return seen

    def _forget(self, ext: int) -> None:
        i = ext % _DUP_WINDOW
        self._seen[i >> 3] &= ~(1 << (i & 7)) & 0xFF

    def update(
        self, sequence: int, timestamp: int, arrival: float, size: int = 0, *, jitter: bool = True
    ) -> bool:
        """Account one packet; returns False if it should be dropped.

        False means a duplicate, or the first packet after a very large jump
        in sequence numbers (counted only once the next packet confirms the
        new sequence, RFC 3550 A.1).  ``jitter=False`` keeps packets that
        share a timestamp (RFC 4733 events) out of the jitter estimate.
        """
        if sequence == (self.max_seq + 1) & 0xFFFF and self.received:
            # fast path (the common case): the next packet in order
            if sequence == 0:
                self.cycles += _SEQ_MOD
            self.max_seq = sequence
            i = (self.cycles + sequence) % _DUP_WINDOW
            self._seen[i >> 3] |= 1 << (i & 7)
            self.received += 1
            self.octets += size
            if jitter:
                transit = arrival * self.clock_rate - timestamp
                last = self._transit
                self._transit = transit
                if last is not None:
                    d = transit - last
                    if d < 0:
                        d = -d
                    if d > 2**31:
                        d = 2**32 - d
                    self.jitter += (d - self.jitter) / 16.0
            return True
        if self.received == 0:
            self._init_seq(sequence)
            self.received = 1
            self.octets += size
            if jitter:
                self._jitter(timestamp, arrival)
            return True
        udelta = (sequence - self.max_seq) & 0xFFFF
        ext_max = self.cycles + self.max_seq
        if udelta == 0:
            self.duplicates += 1
            return False
        if udelta < _MAX_DROPOUT:
            # in order, with permissible gap: forget the slots we skip over
            if udelta >= _DUP_WINDOW:
                self._seen = bytearray(_DUP_WINDOW // 8)
            else:
                for skipped in range(ext_max + 1, ext_max + udelta):
                    self._forget(skipped)
            if sequence < self.max_seq:
                self.cycles += _SEQ_MOD
            self.max_seq = sequence
            self._mark(self.cycles + sequence)
        elif udelta <= _SEQ_MOD - _MAX_MISORDER:
            # a very large jump: restart if the next packet confirms it
            if sequence != self._bad_seq:
                self._bad_seq = (sequence + 1) & 0xFFFF
                return False
            self.restarts += 1  # counters restart with the new sequence (RFC 3550 A.1)
            self._init_seq(sequence)
            self.received = 0
            self._transit = None
        else:
            # duplicate or reordered packet from the recent past
            back = _SEQ_MOD - udelta
            if back >= _DUP_WINDOW:
                return False  # too old to tell apart from a duplicate
            ext = ext_max - back
            if self._mark(ext):
                self.duplicates += 1
                return False
            self.base_seq = min(self.base_seq, ext)
            self.out_of_order += 1
        self.received += 1
        self.octets += size
        if jitter:
            self._jitter(timestamp, arrival)
        return True

    def _jitter(self, timestamp: int, arrival: float) -> None:
        # RFC 3550 A.8, arrival converted to timestamp units; the difference
        # is folded into +/-2**31 so that timestamp wraparound is harmless.
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = transit - self._transit
            if d > 2**31:
                d -= 2**32
            elif d < -(2**31):
                d += 2**32
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if self.received == 0:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative number of packets lost (RFC 3550 A.3; may go negative with dups)."""
        return self.expected - self.received

    @property
    def jitter_seconds(self) -> float:
        return self.jitter / self.clock_rate

    def report_block(self, ssrc: int, lsr: int = 0, dlsr: int = 0) -> ReportBlock:
        """A report block for this source; resets the fraction-lost interval."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = (lost_interval << 8) // expected_interval
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=max(min(self.lost, 0x7FFFFF), -0x800000),
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=lsr,
            dlsr=dlsr,
        )


# ---------------------------------------------------------------------------
# RTCP


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp for a Unix time in seconds."""
    return int((unix_time + _NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    def to_bytes(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            ((self.fraction_lost & 0xFF) << 24) | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES, reduced to the CNAME of each chunk that has one."""

    cnames: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    packet_type: int
    body: bytes


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown


def _rtcp_header(count: int, packet_type: int, body_len: int) -> bytes:
    # length field: packet length in 32-bit words minus one (RFC 3550 6.4.1)
    return _RTCP_HDR.pack(0x80 | count, packet_type, (body_len + 4) // 4 - 1)


def build_sr(
    ssrc: int,
    *,
    ntp: int,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    reports: Iterable[ReportBlock] = (),
) -> bytes:
    blocks = tuple(reports)[:31]
    body = _SR_INFO.pack(
        ssrc,
        (ntp >> 32) & 0xFFFFFFFF,
        ntp & 0xFFFFFFFF,
        rtp_timestamp & 0xFFFFFFFF,
        packet_count & 0xFFFFFFFF,
        octet_count & 0xFFFFFFFF,
    ) + b"".join(b.to_bytes() for b in blocks)
    return _rtcp_header(len(blocks), RTCP_SR, len(body)) + body


def build_rr(ssrc: int, reports: Iterable[ReportBlock] = ()) -> bytes:
    blocks = tuple(reports)[:31]
    body = _RR_HDR.pack(ssrc) + b"".join(b.to_bytes() for b in blocks)
    return _rtcp_header(len(blocks), RTCP_RR, len(body)) + body


def build_sdes(ssrc: int, cname: str) -> bytes:
    text = cname.encode("utf-8")[:255]
    chunk = _U32.pack(ssrc) + bytes((1, len(text))) + text + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return _rtcp_header(1, RTCP_SDES, len(chunk)) + chunk


def build_bye(ssrcs: Iterable[int], reason: str = "") -> bytes:
    ids = tuple(ssrcs)[:31]
    body = b"".join(_U32.pack(s) for s in ids)
    if reason:
        text = reason.encode("utf-8")[:255]
        body += bytes((len(text),)) + text
        body += b"\x00" * (-len(body) % 4)
    return _rtcp_header(len(ids), RTCP_BYE, len(body)) + body


def build_compound(*packets: bytes) -> bytes:
    return b"".join(packets)


def _parse_blocks(data: bytes, offset: int, count: int, end: int) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > end:
        raise RtpError("RTCP report blocks exceed packet length")
    return tuple(ReportBlock.parse(data, offset + 24 * i) for i in range(count))


def _parse_sdes(data: bytes, start: int, count: int, end: int) -> SourceDescription:
    cnames: list[tuple[int, str]] = []
    pos = start
    for _ in range(count):
        if pos + 4 > end:
            raise RtpError("RTCP SDES chunk truncated")
        ssrc = _U32.unpack_from(data, pos)[0]
        pos += 4
        while True:
            if pos >= end:
                raise RtpError("RTCP SDES item list not terminated")
            item = data[pos]
            if item == 0:
                pos += 1
                pos += -(pos - start) % 4
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtpError("RTCP SDES item truncated")
            length = data[pos + 1]
            if item == 1:
                cnames.append((ssrc, data[pos + 2 : pos + 2 + length].decode("utf-8", "replace")))
            pos += 2 + length
    return SourceDescription(tuple(cnames))


def parse_rtcp(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a (compound) RTCP packet. Raises ``RtpError`` on malformed input."""
    data = bytes(data)
    if len(data) < 4:
        raise RtpError("RTCP packet too short")
    out: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtpError("trailing bytes after RTCP packet")
        b0, packet_type, words = _RTCP_HDR.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise RtpError(f"unsupported RTCP version {b0 >> 6}")
        count = b0 & 0x1F
        end = pos + 4 * (words + 1)
        if end > len(data):
            raise RtpError("RTCP length exceeds datagram")
        body_end = end
        if b0 & 0x20:
            pad = data[end - 1]
            if pad == 0 or end - pad < pos + 4:
                raise RtpError(f"invalid RTCP padding count {pad}")
            body_end = end - pad
        start = pos + 4
        if packet_type == RTCP_SR:
            if start + 24 > body_end:
                raise RtpError("RTCP SR truncated")
            ssrc, msw, lsw, rtp_ts, packets, octets = _SR_INFO.unpack_from(data, start)
            blocks = _parse_blocks(data, start + 24, count, body_end)
            out.append(SenderReport(ssrc, (msw << 32) | lsw, rtp_ts, packets, octets, blocks))
        elif packet_type == RTCP_RR:
            if start + 4 > body_end:
                raise RtpError("RTCP RR truncated")
            ssrc = _U32.unpack_from(data, start)[0]
            out.append(ReceiverReport(ssrc, _parse_blocks(data, start + 4, count, body_end)))
        elif packet_type == RTCP_SDES:
            out.append(_parse_sdes(data, start, count, body_end))
        elif packet_type == RTCP_BYE:
            if start + 4 * count > body_end:
                raise RtpError("RTCP BYE truncated")
            ssrcs = tuple(_U32.unpack_from(data, start + 4 * i)[0] for i in range(count))
            reason = ""
            rpos = start + 4 * count
            if rpos < body_end:
                length = data[rpos]
                if rpos + 1 + length > body_end:
                    raise RtpError("RTCP BYE reason truncated")
                reason = data[rpos + 1 : rpos + 1 + length].decode("utf-8", "replace")
            out.append(Bye(ssrcs, reason))
        else:
            out.append(RtcpUnknown(packet_type, data[start:body_end]))
        pos = end
    return out
