"""RFC 4475 torture messages: one test per file, with the expected outcome in a table.

Provenance: tests/data/rfc4475/{valid,invalid}/*.dat, the messages of
RFC 4475 (IETF, May 2006) one per file, named by the RFC's tags; ``test.dat`` is an
extra message of the same archive (no SIP-Version, a header line without colon).

Outcomes:

* ``ACCEPT``: parses; for a request ``check_request`` returns ``None`` (the UAS may
  process it; an application may still refuse it for its own reasons, noted).
* ``("parse", status)``: ``parse_message`` raises ``SipParseError`` with ``status``,
  and ``error_response_for`` builds that answer when the headers allow it.
* ``("check", status)``: parses, and ``check_request`` returns ``status``.
* ``DROP``: a malformed *response*: ``parse_message`` raises and nothing is answered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.sip.errors import SipParseError
from appliance.sip.message import (
    Request,
    Response,
    StreamFramer,
    check_request,
    error_response_for,
    make_response,
    parse_message,
    rejection_headers,
)

# The RFC 4475 messages, one file each (copied from the project's shared test data;
# provenance in tests/data/rfc4475/README.md).
DATA = Path(__file__).resolve().parents[1] / "data" / "rfc4475"

ACCEPT = ("accept", None)
DROP = ("drop", None)

#: file -> (RFC 4475 section, outcome, why)
EXPECTED: dict[str, tuple[str, tuple[str, int | None], str]] = {
    # 3.1.1 valid messages: all must parse and be processable
    "valid/wsinv": ("3.1.1.1", ACCEPT, "short tortuous INVITE"),
    "valid/intmeth": ("3.1.1.2", ACCEPT, "wide range of valid characters"),
    "valid/esc01": ("3.1.1.3", ACCEPT, "valid use of % escaping"),
    "valid/escnull": ("3.1.1.4", ACCEPT, "escaped nulls in URIs"),
    "valid/esc02": ("3.1.1.5", ACCEPT, "use of % when it is not an escape"),
    "valid/lwsdisp": ("3.1.1.6", ACCEPT, "message with no LWS between display name and <"),
    "valid/longreq": ("3.1.1.7", ACCEPT, "long values in header fields"),
    "valid/dblreq": ("3.1.1.8", ACCEPT, "extra trailing octets in a UDP datagram: dropped"),
    "valid/semiuri": ("3.1.1.9", ACCEPT, "semicolon-separated parameters in URI user part"),
    "valid/transports": ("3.1.1.10", ACCEPT, "varied and unknown transport types"),
    "valid/mpart01": ("3.1.1.11", ACCEPT, "multipart MIME message"),
    "valid/unreason": ("3.1.1.12", ACCEPT, "unusual reason phrase"),
    "valid/noreason": ("3.1.1.13", ACCEPT, "empty reason phrase"),
    # 3.1.2 invalid messages
    "invalid/badinv01": ("3.1.2.1", ("parse", 400), "extraneous header field separators"),
    "invalid/clerr": ("3.1.2.2", ("parse", 400), "Content-Length larger than message"),
    "invalid/ncl": ("3.1.2.3", ("parse", 400), "negative Content-Length"),
    "invalid/scalar02": ("3.1.2.4", ("parse", 400), "overlarge CSeq (and Max-Forwards)"),
    "invalid/scalarlg": ("3.1.2.5", DROP, "response with overlarge scalars: discarded"),
    "invalid/quotbal": ("3.1.2.6", ("parse", 400), "unterminated quoted string in display"),
    "invalid/ltgtruri": ("3.1.2.7", ("parse", 400), "<> enclosing the Request-URI"),
    "invalid/lwsruri": ("3.1.2.8", ("parse", 400), "LWS inside the Request-URI"),
    "invalid/lwsstart": ("3.1.2.9", ("parse", 400), "multiple SP in the Request-Line"),
    "invalid/trws": ("3.1.2.10", ("parse", 400), "SP at the end of the Request-Line"),
    "invalid/escruri": ("3.1.2.11", ("check", 400), "escaped headers in the Request-URI"),
    "invalid/baddate": (
        "3.1.2.12",
        ACCEPT,
        "non-GMT Date: the RFC allows accepting it, we never interpret Date",
    ),
    "invalid/regbadct": ("3.1.2.13", ("check", 400), "URI with headers not enclosed in <>"),
    "invalid/badaspec": ("3.1.2.14", ("parse", 400), "spaces within the addr-spec of To"),
    "invalid/baddn": ("3.1.2.15", ("parse", 400), "non-token characters in display name"),
    "invalid/badvers": ("3.1.2.16", ("check", 505), "unknown protocol version"),
    "invalid/mismatch01": ("3.1.2.17", ("check", 400), "CSeq method != request method"),
    "invalid/mismatch02": ("3.1.2.18", ("check", 400), "unknown method, CSeq mismatch: not 501"),
    "invalid/bigcode": ("3.1.2.19", DROP, "overlarge response code: discarded"),
    # 3.2 transaction layer semantics
    "invalid/badbranch": ("3.2.1", ("check", 400), "branch is only the magic cookie"),
    # 3.3 application layer semantics
    "invalid/insuf": ("3.3.1", ("check", 400), "missing From, To, Call-ID, Max-Forwards"),
    "invalid/unkscm": ("3.3.2", ("check", 416), "unknown Request-URI scheme"),
    "invalid/novelsc": ("3.3.3", ("check", 416), "known but atypical scheme we never serve"),
    "invalid/unksm2": (
        "3.3.4",
        ACCEPT,
        "unknown schemes in To/From/Contact are well formed; a registrar refuses the AOR",
    ),
    "invalid/bext01": (
        "3.3.5",
        ("check", 420),
        "Require of unknown options; Proxy-Require ignored",
    ),
    "invalid/invut": ("3.3.6", ("check", 415), "unknown Content-Type"),
    "invalid/regaut01": (
        "3.3.7",
        ACCEPT,
        "unknown Authorization scheme: the registrar challenges with 401",
    ),
    "invalid/multi01": ("3.3.8", ("parse", 400), "several values in single-value headers"),
    "invalid/mcl01": ("3.3.9", ("parse", 400), "several Content-Length values"),
    "invalid/bcast": ("3.3.10", ACCEPT, "200 OK with a broadcast Via below ours: consumed"),
    "invalid/zeromf": ("3.3.11", ACCEPT, "Max-Forwards 0 to the UAS itself (483 is a proxy's)"),
    "invalid/cparam01": ("3.3.12", ACCEPT, "Contact header parameter (not a URI parameter)"),
    "invalid/cparam02": ("3.3.13", ACCEPT, "Contact URI parameter"),
    "invalid/regescrt": ("3.3.14", ACCEPT, "REGISTER Contact with an escaped header in <>"),
    "invalid/sdp01": ("3.3.15", ("check", 406), "Accept excludes application/sdp"),
    # 3.4 backward compatibility
    "invalid/inv2543": ("3.4.1", ACCEPT, "RFC 2543 syntax: no branch, no tag, no Content-Length"),
    # extra file of the archive
    "invalid/test": ("-", ("parse", 400), "no SIP-Version, header line without colon"),
}


def _load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def test_table_covers_every_file() -> None:
    on_disk = {f"{p.parent.name}/{p.stem}" for p in DATA.glob("*/*.dat")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message(name: str) -> None:
    _section, (kind, status), _why = EXPECTED[name]
    data = _load(name)
    if kind in ("parse", "drop"):
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        reply = error_response_for(data, info.value)
        if kind == "drop":
            assert reply is None, "a malformed response is never answered"
            return
        assert info.value.status == status
        if reply is not None:  # best effort: the request's (maybe broken) headers, copied
            assert reply.startswith(f"SIP/2.0 {status} ".encode())
            assert b"\r\nCall-ID: " in reply and b";tag=" in reply
            assert reply.endswith(b"\r\nContent-Length: 0\r\n\r\n")
        return
    message = parse_message(data)
    if isinstance(message, Response):
        assert kind == "accept"
        return
    assert isinstance(message, Request)
    result = check_request(message)
    if kind == "accept":
        assert result is None
        # the request round-trips through our serializer
        again = parse_message(message.to_bytes())
        assert isinstance(again, Request)
        assert again.method == message.method and again.body == message.body
        assert again.vias == message.vias and again.cseq == message.cseq
    else:
        assert result is not None and result[0] == status, result
        response = make_response(
            message,
            result[0],
            result[1],
            to_tag="t1",
            headers=rejection_headers(message, result[0]),
        )
        assert response.to_bytes().startswith(f"SIP/2.0 {status} ".encode())


# ---- the RFC's specific notes ------------------------------------------------------


def test_wsinv_values() -> None:
    req = parse_message(_load("valid/wsinv"))
    assert isinstance(req, Request)
    assert req.to.tag == "1918181833n"
    assert req.from_.display == 'J Rosenberg \\"'
    assert req.from_.tag == "98asjd8"
    assert req.cseq == (9, "INVITE")
    assert req.max_forwards == 68
    assert [v.transport for v in req.vias] == ["UDP", "TCP", "UDP"]
    assert [v.host for v in req.vias] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert req.vias[2].branch == "z9hG4bK30239"
    assert req.headers.get("Subject") == ""
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    contact = req.contacts[0]
    assert contact.display == 'Quoted string ""'
    assert contact.param("newparam") == "newvalue"
    assert contact.param("secondparam") == ""
    assert contact.param("q") == "0.33"
    assert len(req.body) == 150


def test_intmeth_values() -> None:
    req = parse_message(_load("valid/intmeth"))
    assert isinstance(req, Request)
    assert req.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert req.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert req.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert req.uri.host == "example.com"
    assert req.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert req.from_.display == "token1~` token2'+_ token3*%!.-"
    assert req.from_.tag == "_token~1'+`*%!-."
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_esc01_keeps_escapes_and_compares_unescaped() -> None:
    req = parse_message(_load("valid/esc01"))
    assert isinstance(req, Request)
    assert req.uri.user == "sips%3Auser%40example.com"
    assert req.to.uri.user == "%75se%72"
    from appliance.sip.uri import SipUri

    assert req.to.uri.same_address(SipUri.parse("sip:user@example.com"))
    assert req.contacts[0].uri.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))


def test_esc02_unknown_header_name_and_token_method() -> None:
    req = parse_message(_load("valid/esc02"))
    assert isinstance(req, Request)
    assert req.method == "RE%47IST%45R"
    assert len(req.contacts) == 2  # C%6Fntact is another header, not Contact
    assert req.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert req.to.display == "%Z%45"


def test_escnull_keeps_nulls() -> None:
    req = parse_message(_load("valid/escnull"))
    assert isinstance(req, Request)
    assert [c.uri.user for c in req.contacts] == ["%00", "%00%00"]


def test_longreq_vias_and_compact_forms() -> None:
    req = parse_message(_load("valid/longreq"))
    assert isinstance(req, Request)
    assert len(req.vias) == 34
    assert req.vias[0].host == "sip33.example.com"
    assert req.vias[-1].received == "192.0.2.5"
    assert req.to.uri.port == 6000
    assert (
        req.to.uri.param(
            "verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglong"
            "longlonglonglonglonglonglonglonglonglongParameterNameWithNoValue"
        )
        == ""
    )


def test_dblreq_drops_trailing_bytes_on_udp_and_frames_two_on_stream() -> None:
    data = _load("valid/dblreq")
    req = parse_message(data)
    assert isinstance(req, Request) and req.method == "REGISTER" and req.body == b""
    # On a stream the same bytes are two messages; the INVITE's body is 5 bytes
    # longer than its Content-Length, and those bytes break the framing.
    framer = StreamFramer()
    messages = framer.feed(data)
    assert [parse_message(m).cseq for m in messages] == [(8, "REGISTER"), (8, "INVITE")]
    assert len(parse_message(messages[1]).body) == 150
    assert framer.error is not None
    with pytest.raises(SipParseError):
        framer.feed(b"")


def test_semiuri_params_in_user_part() -> None:
    req = parse_message(_load("valid/semiuri"))
    assert isinstance(req, Request)
    assert req.uri.user == "user;par=u%40example.net"
    assert req.uri.params == ()
    assert req.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_keeps_unknown_transport() -> None:
    req = parse_message(_load("valid/transports"))
    assert [v.transport for v in req.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert req.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_body() -> None:
    req = parse_message(_load("valid/mpart01"))
    assert len(req.body) == 553
    assert req.content_type == "multipart/mixed"


def test_reason_phrases() -> None:
    unreason = parse_message(_load("valid/unreason"))
    assert isinstance(unreason, Response) and unreason.status == 200
    assert unreason.reason.startswith("= 2**3 * 5**2 ")
    noreason = parse_message(_load("valid/noreason"))
    assert isinstance(noreason, Response) and noreason.status == 100 and noreason.reason == ""


def test_bext01_unsupported_lists_require_only() -> None:
    req = parse_message(_load("invalid/bext01"))
    assert isinstance(req, Request)
    assert rejection_headers(req, 420) == [
        ("Unsupported", "nothingSupportsThis, nothingSupportsThisEither")
    ]


def test_invut_answer_carries_accept() -> None:
    req = parse_message(_load("invalid/invut"))
    assert isinstance(req, Request)
    assert ("Accept", "application/sdp") in rejection_headers(req, 415)


def test_cparam_header_vs_uri_parameter() -> None:
    one = parse_message(_load("invalid/cparam01")).contacts[0]
    assert one.params == (("unknownparam", None),) and one.uri.params == ()
    two = parse_message(_load("invalid/cparam02")).contacts[0]
    assert two.params == () and two.uri.params == (("unknownparam", None),)


def test_regescrt_contact_keeps_escaped_header() -> None:
    contact = parse_message(_load("invalid/regescrt")).contacts[0]
    assert contact.uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)


def test_unksm2_opaque_uris() -> None:
    req = parse_message(_load("invalid/unksm2"))
    assert isinstance(req, Request)
    assert (req.to.uri.scheme, req.to.uri.host) == ("isbn", "2983792873")
    assert req.from_.uri.scheme == "http" and req.from_.tag == "3234233"
    assert req.contacts[0].uri.scheme == "name"


def test_inv2543_body_is_rest_of_datagram() -> None:
    req = parse_message(_load("invalid/inv2543"))
    assert isinstance(req, Request)
    assert req.vias[0].branch is None and req.from_.tag is None
    assert req.body.startswith(b"v=0") and req.body.endswith(b"RTP/AVP 0\r\n")


def test_bcast_broadcast_via_is_second() -> None:
    resp = parse_message(_load("invalid/bcast"))
    assert isinstance(resp, Response)
    assert resp.vias[1].host == "255.255.255.255"


def test_clerr_on_a_stream_waits_for_more() -> None:
    framer = StreamFramer()
    assert framer.feed(_load("invalid/clerr")) == []
    assert framer.buffered > 0


def test_ncl_on_a_stream_loses_framing() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError):
        framer.feed(_load("invalid/ncl"))
    with pytest.raises(SipParseError):  # the connection is beyond repair
        framer.feed(b"\r\n")


# ---- framing the valid messages --------------------------------------------------


VALID = sorted(name for name in EXPECTED if name.startswith("valid/"))


def _framed_length(data: bytes) -> int:
    """Header section plus Content-Length body of the first message of ``data``."""
    head_end = data.index(b"\r\n\r\n") + 4
    message = parse_message(data)
    return head_end + len(message.body)


@pytest.mark.parametrize("name", VALID)
def test_valid_file_through_stream_framer(name: str) -> None:
    data = _load(name)
    framed = data[: _framed_length(data)]  # a stream carries no datagram trailer
    expected = parse_message(data).to_bytes()
    framer = StreamFramer()
    assert framer.feed(framed) == [framed]
    assert parse_message(framed).to_bytes() == expected
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(framed)):
        out.extend(framer.feed(framed[i : i + 1]))
    assert out == [framed]
    assert framer.buffered == 0
