"""Headers, parse_message, serialization, make_response, check_request, error responses
and stream framing (RFC 3261 sections 7, 8.2, 18)."""

from __future__ import annotations

import pytest

from appliance.sip.errors import SipParseError, TransactionError, default_reason
from appliance.sip.message import (
    Headers,
    Request,
    Response,
    StreamFramer,
    check_request,
    error_response_for,
    make_response,
    parse_message,
    rejection_headers,
)
from appliance.sip.uri import NameAddr, SipUri, Via

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1"
    b";received=192.0.2.2\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Supported: replaces\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def _request(data: bytes = INVITE) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def _with(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


# ---- Headers --------------------------------------------------------------------------


def test_headers_case_insensitive_compact_and_ordered() -> None:
    headers = Headers(
        [("v", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b"), ("VIA", "SIP/2.0/TCP c")]
    )
    headers.add("i", "abc@host")
    assert headers.get("Call-ID") == "abc@host"
    assert headers.get("call-id") == "abc@host"
    assert headers.get_all("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/UDP b",
        "SIP/2.0/TCP c",
    ]
    assert headers.get("via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert next(iter(headers))[0] == "v"  # original spelling kept
    assert headers.count("Via") == 2
    assert "CALL-ID" in headers and "To" not in headers


def test_headers_split_only_list_headers() -> None:
    headers = Headers(
        [
            ("Contact", '"Doe, John" <sip:j@x;a=1,2>, <sip:k@y>'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("WWW-Authenticate", 'Digest realm="a,b", nonce="x"'),
            ("Allow", "INVITE, ACK,BYE,,"),
        ]
    )
    assert headers.get_all("Contact") == ['"Doe, John" <sip:j@x;a=1,2>', "<sip:k@y>"]
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_all("WWW-Authenticate") == ['Digest realm="a,b", nonce="x"']
    assert headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]


def test_headers_set_add_remove() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP a"), ("To", "<sip:a@b>"), ("Via", "SIP/2.0/UDP b")])
    headers.add("Via", "SIP/2.0/UDP top", first=True)
    assert headers.get_all("Via")[0] == "SIP/2.0/UDP top"
    headers.set("via", "SIP/2.0/UDP only")
    assert list(headers) == [("via", "SIP/2.0/UDP only"), ("To", "<sip:a@b>")]
    headers.set("Subject", "hello")
    assert list(headers)[-1] == ("Subject", "hello")
    assert headers.remove("SUBJECT") == 1 and headers.remove("Subject") == 0
    assert headers.remove_first("Via") == "SIP/2.0/UDP only"
    assert "Via" not in headers
    copy = headers.copy()
    copy.add("X", "1")
    assert "X" not in headers and copy != headers


def test_headers_remove_first_of_a_combined_line() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP a, SIP/2.0/UDP b")])
    assert headers.remove_first("Via") == "SIP/2.0/UDP a"
    assert headers.get_all("Via") == ["SIP/2.0/UDP b"]


def test_headers_refuse_injection() -> None:
    with pytest.raises(ValueError):
        Headers().add("X-Evil", "a\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(ValueError):
        Headers().set("Bad Name", "x")


def test_header_cache_is_dropped_on_mutation() -> None:
    req = _request()
    assert req.cseq == (314159, "INVITE")
    req.headers.set("CSeq", "314160 INVITE")
    assert req.cseq == (314160, "INVITE")
    assert len(req.vias) == 2
    req.headers.add("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp", first=True)
    assert req.vias[0].host == "proxy.example.com"
    req.vias.clear()  # a copy: the cached value is not affected
    assert len(req.vias) == 3


# ---- parse_message --------------------------------------------------------------------


def test_parse_request_accessors() -> None:
    req = _request()
    assert req.method == "INVITE"
    assert req.uri == SipUri.parse("sip:bob@biloxi.example.com")
    assert req.version == "SIP/2.0"
    assert req.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert req.cseq == (314159, "INVITE")
    assert req.from_ == NameAddr.parse("Alice <sip:alice@atlanta.example.com>;tag=1928301774")
    assert req.to.tag is None and req.to.display == "Bob"
    assert [v.host for v in req.vias] == [
        "pc33.atlanta.example.com",
        "bigbox3.site3.atlanta.example.com",
    ]
    assert req.top_via.branch == "z9hG4bK776asdhds"
    assert req.max_forwards == 70
    assert req.contacts[0].uri.user == "alice"
    assert [r.uri.host for r in req.record_routes] == ["p1.example.com", "p2.example.com"]
    assert req.routes == []
    assert req.content_type == "application/sdp"
    assert req.body == b"v=0\n"


def test_parse_response() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"\r\n"
    )
    resp = parse_message(data)
    assert isinstance(resp, Response)
    assert (resp.status, resp.reason, resp.to.tag) == (180, "Ringing", "a6c85cf")
    assert resp.to_bytes() == data.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n")


def test_leading_crlf_and_bare_lf_are_tolerated() -> None:
    """RFC 3261 7.5: CRLFs before the start line are ignored; LF-only lines are common."""
    req = _request(b"\r\n\r\n" + INVITE.replace(b"\r\n", b"\n"))
    assert req.cseq == (314159, "INVITE") and req.body == b"v=0\n"


def test_folded_lines_are_unfolded() -> None:
    data = _with(
        INVITE, b"Supported: replaces\r\n", b"Subject: I know you're there,\r\n   pick up!\r\n"
    )
    assert _request(data).headers.get("Subject") == "I know you're there, pick up!"


def test_content_length_frames_the_body() -> None:
    """RFC 3261 18.3: octets beyond Content-Length in a datagram are discarded."""
    assert _request(INVITE + b"garbage").body == b"v=0\n"


def test_missing_content_length_means_rest_of_datagram() -> None:
    data = _with(INVITE, b"Content-Length: 4\r\n", b"")
    assert _request(data + b"more").body == b"v=0\nmore"


@pytest.mark.parametrize(
    "value",
    [b"5", b"-1", b"abc", b"4 4", b"99999999999999999999", b"0x4", b""],
)
def test_bad_content_length(value: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(_with(INVITE, b"Content-Length: 4", b"Content-Length: " + value))
    assert info.value.status == 400


def test_to_bytes_always_writes_the_right_content_length() -> None:
    req = _request()
    req.body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    again = _request(req.to_bytes())
    assert again.body == req.body
    assert again.headers.get("Content-Length") == str(len(req.body))
    req.headers.remove("Content-Length")
    assert req.to_bytes().endswith(b"\r\nContent-Length: 31\r\n\r\n" + req.body)


def test_round_trip_keeps_order_and_names() -> None:
    data = INVITE.replace(b"Call-ID:", b"i:").replace(b"Content-Length:", b"l:")
    assert _request(data).to_bytes() == data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\r\n\r\n", "only CRLF"),
        (b"INVITE sip:a@b SIP/2.0", "no headers is fine, but then no crash either"),
        (b"INVITE sip:a@b\r\n\r\n", "no version"),
        (b"INVITE  sip:a@b SIP/2.0\r\n\r\n", "double space"),
        (b"INVITE sip:a@b SIP/2.0 \r\n\r\n", "trailing space"),
        (b"INV<ITE sip:a@b SIP/2.0\r\n\r\n", "method not a token"),
        (b"INVITE <sip:a@b> SIP/2.0\r\n\r\n", "<> around Request-URI"),
        (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", "not SIP"),
        (b"INVITE sip:a@b SIP/2.0\r\nNoColon\r\n\r\n", "header without colon"),
        (b"INVITE sip:a@b SIP/2.0\r\n folded-first: x\r\n\r\n", "continuation first"),
        (b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", "space in header name"),
        (b"INVITE sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n", "bare CR"),
        (b"SIP/2.0 99 Too Small\r\n\r\n", "status < 100"),
        (b"SIP/2.0 700 Too Big\r\n\r\n", "status > 699"),
        (b"SIP/2.0 2000 OK\r\n\r\n", "four digits"),
        (b"SIP/3.0 200 OK\r\n\r\n", "response version"),
        (b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", "response missing Via/From/To/CSeq"),
    ],
)
def test_malformed_messages(data: bytes, why: str) -> None:
    if why.startswith("no headers"):
        assert isinstance(parse_message(data), Request)
        return
    with pytest.raises(SipParseError):
        parse_message(data)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"CSeq: 314159 INVITE", b"CSeq: 4294967296 INVITE"),
        (b"CSeq: 314159 INVITE", b"CSeq: INVITE"),
        (b"CSeq: 314159 INVITE", b"CSeq: 1 INVITE extra"),
        (b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com", b"Call-ID: a b"),
        (b"To: Bob <sip:bob@biloxi.example.com>", b"To: Bob <sip:bob@biloxi.example.com"),
        (b"Max-Forwards: 70", b"Max-Forwards: 70\r\nMax-Forwards: 69"),
        (b"Max-Forwards: 70", b"CSeq: 1 INVITE"),
        (b"Content-Length: 4", b"Content-Length: 4\r\nl: 4"),
        (b"Via: SIP/2.0/UDP pc33", b"Via: SIP/2.0/UDP pc33;;"),
    ],
)
def test_core_headers_are_validated_at_parse_time(old: bytes, new: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(_with(INVITE, old, new))
    assert info.value.status == 400


def test_cseq_max_value_is_accepted() -> None:
    req = _request(_with(INVITE, b"CSeq: 314159 INVITE", b"CSeq: 4294967295 INVITE"))
    assert req.cseq == (4294967295, "INVITE")


def test_request_missing_headers_parses_and_accessors_raise() -> None:
    req = _request(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n")
    with pytest.raises(SipParseError, match="Call-ID"):
        req.call_id  # noqa: B018
    with pytest.raises(SipParseError):
        req.vias  # noqa: B018
    assert check_request(req) == (400, "Missing Via Header")


def test_utf8_and_raw_bytes_survive_round_trip() -> None:
    data = _with(INVITE, b"Supported: replaces", b"Subject: caf\xc3\xa9 \xff\xfe")
    req = _request(data)
    assert req.headers.get("Subject") == "café \udcff\udcfe"
    assert req.to_bytes() == data


# ---- check_request --------------------------------------------------------------------


def test_check_request_accepts_a_good_invite() -> None:
    assert check_request(_request()) is None


@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        (b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia", 505),
        (b"CSeq: 314159 INVITE", b"CSeq: 314159 OPTIONS", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: -1", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: 0", None),
        (b"Max-Forwards: 70\r\n", b"", None),
        (b"INVITE sip:bob@biloxi.example.com", b"INVITE mailto:bob@biloxi.example.com", 416),
        (b"INVITE sip:bob@biloxi.example.com", b"INVITE tel:+15551234", None),
        (b"INVITE sip:bob@biloxi.example.com", b"INVITE sips:bob@biloxi.example.com", None),
        (b"INVITE sip:bob@biloxi.example.com", b"INVITE sip:bob@biloxi.example.com?x=y", 400),
        (b"branch=z9hG4bK776asdhds", b"branch=z9hG4bK", 400),
        (b"Supported: replaces", b"Require: replaces", None),
        (b"Supported: replaces", b"Require: 100rel, timer", 420),
        (b"Supported: replaces", b"Proxy-Require: foo", None),
        (b"Content-Type: application/sdp", b"Content-Type: text/plain", 415),
        (b"Content-Type: application/sdp", b"Content-Type: Application/SDP; charset=x", None),
        (b"Content-Type: application/sdp\r\n", b"", 400),
        (b"Supported: replaces", b"Content-Encoding: gzip", 415),
        (b"Supported: replaces", b"Accept: text/html", 406),
        (b"Supported: replaces", b"Accept: application/*", None),
        (b"Supported: replaces", b"Accept: text/html, application/sdp;q=0.5", None),
        (b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact: sip:a@b?x=y", 400),
    ],
)
def test_check_request_statuses(old: bytes, new: bytes, status: int | None) -> None:
    result = check_request(_request(_with(INVITE, old, new)))
    assert (result[0] if result else None) == status, result


@pytest.mark.parametrize("missing", [b"Via", b"To", b"From", b"Call-ID", b"CSeq"])
def test_check_request_missing_mandatory_header(missing: bytes) -> None:
    lines = [line for line in INVITE.split(b"\r\n") if not line.startswith(missing + b":")]
    result = check_request(_request(b"\r\n".join(lines)))
    assert result is not None and result[0] == 400


def test_check_request_options_and_extensions() -> None:
    req = _request(_with(INVITE, b"Supported: replaces", b"Require: timer"))
    assert check_request(req, supported_extensions=frozenset({"timer"})) is None
    assert check_request(req, implemented_methods=frozenset({"OPTIONS"})) == (
        501,
        "Not Implemented",
    )
    cancel = _request(
        _with(
            _with(INVITE, b"INVITE sip:", b"CANCEL sip:"),
            b"CSeq: 314159 INVITE",
            b"CSeq: 314159 CANCEL",
        )
    )
    assert cancel.method == "CANCEL"
    assert check_request(_request(_with(cancel.to_bytes(), b"Supported", b"Require"))) is None


def test_rejection_headers() -> None:
    req = _request(_with(INVITE, b"Supported: replaces", b"Require: 100rel, replaces, timer"))
    assert check_request(req) == (420, "Bad Extension")
    assert rejection_headers(req, 420) == [("Unsupported", "100rel, timer")]
    assert rejection_headers(req, 415) == [
        ("Accept", "application/sdp"),
        ("Accept-Encoding", "identity"),
    ]
    assert rejection_headers(req, 406)[1][0] == "Warning"
    assert rejection_headers(req, 400) == []


# ---- make_response --------------------------------------------------------------------


def test_make_response_copies_rfc3261_8_2_6_2() -> None:
    req = _request()
    resp = make_response(req, 180, to_tag="a6c85cf", contact=SipUri.parse("sip:bob@192.0.2.4"))
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.from_ == req.from_
    assert resp.to.tag == "a6c85cf" and resp.to.uri == req.to.uri
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.headers.get_all("Record-Route") == req.headers.get_all("Record-Route")
    assert resp.headers.get("Contact") == "<sip:bob@192.0.2.4>"
    parsed = parse_message(resp.to_bytes())
    assert isinstance(parsed, Response) and parsed.to.tag == "a6c85cf"


def test_make_response_keeps_existing_to_tag_and_skips_record_route_for_options() -> None:
    data = _with(
        INVITE, b"To: Bob <sip:bob@biloxi.example.com>", b"To: sip:bob@biloxi.example.com;tag=old"
    )
    data = data.replace(b"INVITE", b"OPTIONS")
    resp = make_response(
        _request(data), 200, "Fine", to_tag="new", body=b"x", content_type="text/plain"
    )
    assert resp.to.tag == "old"
    assert resp.reason == "Fine"
    assert "Record-Route" not in resp.headers
    assert resp.headers.get("Content-Type") == "text/plain"
    assert resp.to_bytes().endswith(b"Content-Length: 1\r\n\r\nx")


def test_make_response_100_copies_timestamp_and_no_tag() -> None:
    req = _request(_with(INVITE, b"Supported: replaces", b"Timestamp: 54"))
    trying = make_response(req, 100)
    assert trying.reason == "Trying" and trying.to.tag is None
    assert trying.headers.get("Timestamp") == "54"


def test_make_response_on_an_incomplete_request() -> None:
    req = _request(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n")
    resp = make_response(req, 400, "Missing Call-ID Header", headers=[("Warning", '399 h "x"')])
    assert resp.to_bytes().startswith(b"SIP/2.0 400 Missing Call-ID Header\r\nVia: ")


def test_default_reasons() -> None:
    assert default_reason(486) == "Busy Here"
    assert default_reason(499) == "Client Error"
    assert make_response(_request(), 699).reason == "Global Failure"


# ---- error_response_for ---------------------------------------------------------------


def test_error_response_for_garbage_with_headers() -> None:
    data = _with(INVITE, b"Content-Length: 4", b"Content-Length: -4")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    reply = error_response_for(data, info.value)
    assert reply is not None
    resp = parse_message(reply)
    assert isinstance(resp, Response)
    assert resp.status == 400
    assert resp.vias == _request().vias
    assert resp.cseq == (314159, "INVITE")
    assert resp.to.tag is not None
    assert error_response_for(data, info.value) == reply  # stable tag for retransmissions
    assert error_response_for(data, info.value, to_tag="t") != reply


def test_error_response_for_answers_without_call_id() -> None:
    """RFC 4475 3.3.1: a request missing headers still gets its 400, routed by Via."""
    data = INVITE.replace(b"Call-ID", b"Xall-ID")
    reply = error_response_for(data, SipParseError("missing Call-ID"))
    assert reply is not None and reply.startswith(b"SIP/2.0 400 ")
    assert b"\r\nVia: SIP/2.0/UDP pc33" in reply and b"Call-ID" not in reply


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a\r\n\r\n",
        INVITE.replace(b"Via: SIP/2.0/UDP pc33", b"Via: nonsense pc33").replace(
            b"Via: SIP", b"X: "
        ),
        INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 ACK"),
    ],
)
def test_error_response_for_drops_what_cannot_be_answered(data: bytes) -> None:
    assert error_response_for(data, SipParseError("x")) is None


# ---- StreamFramer ---------------------------------------------------------------------


def test_framer_whole_split_and_keepalives() -> None:
    framer = StreamFramer()
    stream = b"\r\n\r\n" + INVITE + b"\r\n" + INVITE + INVITE[:10]
    assert framer.feed(stream) == [INVITE, INVITE]
    assert framer.buffered == 10
    assert framer.feed(INVITE[10:]) == [INVITE]
    assert framer.buffered == 0
    assert framer.feed(b"\r\n\r\n") == []


def test_framer_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    for byte in INVITE * 2:
        out.extend(framer.feed(bytes([byte])))
    assert out == [INVITE, INVITE]


@pytest.mark.parametrize(
    "data",
    [
        INVITE.replace(b"Content-Length: 4\r\n", b""),
        INVITE.replace(b"Content-Length: 4", b"Content-Length: -4"),
        INVITE.replace(b"Content-Length: 4", b"Content-Length: 4\r\nl: 4"),
        INVITE.replace(b"Content-Length: 4", b"Content-Length: four"),
    ],
)
def test_framer_requires_a_sound_content_length(data: bytes) -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError):
        framer.feed(data)
    with pytest.raises(SipParseError):
        framer.feed(INVITE)  # broken for good


def test_framer_bounds() -> None:
    with pytest.raises(SipParseError) as info:
        StreamFramer(max_header_bytes=1024).feed(b"X" * 2000)
    assert info.value.status == 513
    with pytest.raises(SipParseError):
        StreamFramer(max_header_bytes=1024).feed(
            b"INVITE sip:a@b SIP/2.0\r\nX: " + b"y" * 1100 + b"\r\n\r\n"
        )
    with pytest.raises(SipParseError):
        StreamFramer(max_body_bytes=3).feed(INVITE)
    framer = StreamFramer()
    for _ in range(64):
        framer.feed(b"X" * 1024)  # a 64 KiB header section is the limit
    with pytest.raises(SipParseError):
        framer.feed(b"X")


def test_framer_returns_good_messages_before_an_error() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE + b"NOT SIP\r\n\r\n") == [INVITE]
    assert framer.error is not None
    with pytest.raises(SipParseError):
        framer.feed(b"")


def test_framer_tolerates_other_bad_lines() -> None:
    """Framing needs only Content-Length; the 400 comes from parse_message."""
    data = _with(INVITE, b"Supported: replaces", b"Broken line without colon")
    assert StreamFramer().feed(data) == [data]


# ---- building requests by hand --------------------------------------------------------


def test_build_request_from_parts() -> None:
    headers = Headers()
    via = Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bKabc"), ("rport", None)))
    headers.add("Via", str(via))
    headers.add("Max-Forwards", "70")
    headers.add("From", str(NameAddr(None, SipUri.parse("sip:node@192.0.2.1")).with_tag("f1")))
    headers.add("To", str(NameAddr("Bob", SipUri.parse("sip:bob@example.com"))))
    headers.add("Call-ID", "c1")
    headers.add("CSeq", "1 OPTIONS")
    req = Request("OPTIONS", SipUri.parse("sip:bob@example.com"), headers)
    wire = req.to_bytes()
    assert wire.startswith(
        b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;"
    )
    parsed = _request(wire)
    assert check_request(parsed) is None
    assert parsed.vias == [via]
    assert parsed.to.display == "Bob"
    assert req.copy() == req and req.copy().headers is not req.headers


def test_transaction_error_is_a_sip_error() -> None:
    from appliance.sip.errors import SipError

    assert issubclass(TransactionError, SipError) and issubclass(SipParseError, SipError)
    err = SipParseError("boom", status=416)
    assert (err.status, err.reason, err.detail) == (416, "Unsupported URI Scheme", "boom")
