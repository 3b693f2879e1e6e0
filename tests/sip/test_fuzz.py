"""Property tests: peer bytes are parsed or refused with our protocol error, nothing else.

Seeds: the RFC 4475 valid messages (tests/data/rfc4475/valid) and a
typical INVITE with SDP written for these tests. Mutations are insertions,
deletions, byte flips and splices of those seeds, plus arbitrary bytes.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.sip.errors import SipParseError
from appliance.sip.fuzz import test_one_input as fuzz_one_input
from appliance.sip.message import (
    Request,
    StreamFramer,
    check_request,
    error_response_for,
    make_response,
    parse_message,
    rejection_headers,
)
from appliance.sip.sdp import SdpError, SessionDescription, negotiate
from appliance.sip.uri import NameAddr, SipUri, Via

DATA = Path(__file__).resolve().parents[1] / "data" / "rfc4475" / "valid"

TYPICAL_INVITE = (
    b"INVITE sip:+33123456789@branch1.example.net;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@carrier.example.com>;tag=1928301774\r\n'
    b"To: <sip:+33123456789@branch1.example.net;user=phone>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.carrier.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER\r\n"
    b"Supported: replaces, timer\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 229\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

SEEDS = [TYPICAL_INVITE, *(p.read_bytes() for p in sorted(DATA.glob("*.dat")))]
SDP_SEED = TYPICAL_INVITE.split(b"\r\n\r\n", 1)[1]

FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_INTERESTING = [b"\r\n", b"\r", b"\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\",
                b"%", b"=", b"@", b"/", b"\x00", b"\xff", b"9999999999999", b"-1", b"SIP/2.0",
                b"\r\n\r\n", b"\r\n ", b"Content-Length: 5\r\n", b"l: 99999\r\n", b"v: ", b"[",
                b"]", b"?", b"&"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes] = SEEDS) -> bytes:
    """A seed message with a few random edits."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "flip", "token", "splice", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            data[pos : pos + draw(st.integers(1, 16))] = b""
        elif op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(_INTERESTING))
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[pos:pos] = other[start : start + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def _check_message_invariants(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as err:
        assert 400 <= err.status <= 599
        reply = error_response_for(data, err)
        assert reply is None or reply.startswith(f"SIP/2.0 {err.status} ".encode())
        return
    # whatever parses serializes, and parses again to the same message
    wire = message.to_bytes()
    again = parse_message(wire)
    assert again.to_bytes() == wire
    if isinstance(message, Request):
        result = check_request(message)
        status = 200 if result is None else result[0]
        extra = rejection_headers(message, status)
        response = make_response(message, status, to_tag="x", headers=extra)
        assert response.to_bytes().startswith(f"SIP/2.0 {status} ".encode())


def _check_framer(data: bytes, chunk: int) -> None:
    framer = StreamFramer(max_header_bytes=8192, max_body_bytes=8192)
    try:
        for index in range(0, len(data), chunk):
            for message in framer.feed(data[index : index + chunk]):
                _check_message_invariants(message)
    except SipParseError as err:
        assert framer.error is err


@FAST
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    _check_message_invariants(data)
    _check_framer(data, 64)


@FAST
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    _check_message_invariants(data)


@FAST
@given(mutated(), st.integers(1, 97))
def test_mutated_messages_on_a_stream(data: bytes, chunk: int) -> None:
    _check_framer(data + b"\r\n" + TYPICAL_INVITE, chunk)


@FAST
@given(st.text(max_size=200))
def test_header_value_parsers(text: str) -> None:
    for parse in (SipUri.parse, NameAddr.parse, Via.parse):
        try:
            value = parse(text)
        except SipParseError:
            continue
        assert parse(str(value)) == value


@FAST
@given(mutated([SDP_SEED]))
def test_mutated_sdp(data: bytes) -> None:
    try:
        offer = SessionDescription.parse(data)
    except SdpError as err:
        assert err.status == 400
        return
    assert SessionDescription.parse(offer.to_bytes()) == offer
    try:
        negotiate(offer, local_ip="192.0.2.1", local_port=4000, session_id=1, version=1)
    except SdpError as err:
        assert err.status in (400, 488)


@FAST
@given(st.one_of(st.binary(max_size=512), mutated()))
def test_fuzz_entry_point(data: bytes) -> None:
    fuzz_one_input(data)


_TOKEN = st.text(alphabet="abcXYZ019-.!%*_+`'~", min_size=1, max_size=8)
_PARAMCHARS = st.text(alphabet="abcXYZ019-_.!~*'()[]/:&+$", min_size=1, max_size=8)


@st.composite
def name_addrs(draw: st.DrawFn) -> NameAddr:
    """Structured values: what our code builds must parse back to itself."""
    uri = SipUri(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=draw(st.none() | st.text(alphabet="abc019-_.!~*'()&=+$,;?/", min_size=1, max_size=8)),
        host=draw(st.sampled_from(["example.com", "192.0.2.1", "[2001:db8::1]", "h-1.x"])),
        port=draw(st.none() | st.integers(0, 65535)),
        params=tuple(draw(st.lists(st.tuples(_PARAMCHARS, st.none() | _PARAMCHARS), max_size=3))),
    )
    display = draw(
        st.none() | st.text(max_size=12).filter(lambda t: "\r" not in t and "\n" not in t)
    )
    params = tuple(draw(st.lists(st.tuples(_TOKEN, st.none() | _TOKEN), max_size=3)))
    return NameAddr(display, uri, params)


@FAST
@given(name_addrs(), st.integers(0, 2**32 - 1))
def test_built_values_round_trip(value: NameAddr, number: int) -> None:
    assert NameAddr.parse(str(value)) == value
    assert SipUri.parse(str(value.uri)) == value.uri
    via = Via("UDP", value.uri.host, value.uri.port, value.params)
    assert Via.parse(str(via)) == via
    request = Request("OPTIONS", value.uri)
    request.headers.add("Via", str(via))
    request.headers.add("From", str(value.with_tag("a")))
    request.headers.add("To", str(value))
    request.headers.add("Call-ID", "x@y")
    request.headers.add("CSeq", f"{number} OPTIONS")
    parsed = parse_message(request.to_bytes())
    assert isinstance(parsed, Request)
    assert (parsed.to, parsed.cseq, parsed.vias) == (value, (number, "OPTIONS"), [via])
