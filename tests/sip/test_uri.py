"""SipUri, NameAddr and Via: parsing, rendering, helpers (RFC 3261 19.1, 20.10, 20.42)."""

from __future__ import annotations

import pytest

from appliance.sip.errors import SipParseError
from appliance.sip.uri import NameAddr, SipUri, Via, parse_params, split_quoted

# ---- SipUri ---------------------------------------------------------------------------


def test_full_sip_uri() -> None:
    uri = SipUri.parse("sips:alice:secret@atlanta.example.com:5061;transport=tls;lr?subject=x&p=1")
    assert uri == SipUri(
        scheme="sips",
        user="alice",
        password="secret",
        host="atlanta.example.com",
        port=5061,
        params=(("transport", "tls"), ("lr", None)),
        headers=(("subject", "x"), ("p", "1")),
    )
    assert str(uri) == "sips:alice:secret@atlanta.example.com:5061;transport=tls;lr?subject=x&p=1"
    assert uri.param("TRANSPORT") == "tls"
    assert uri.param("lr") == ""
    assert uri.param("maddr") is None
    assert uri.is_sip
    assert uri.host_port == "atlanta.example.com:5061"


@pytest.mark.parametrize(
    "text",
    [
        "sip:example.com",
        "sip:+33123456789@gw.example.net;user=phone",
        "sip:[2001:db8::1]:5070;transport=tcp",
        "sip:alice@[2001:db8::2]",
        "sip:user;par=u%40example.net@example.com",
        "sip:%00@host5.example.com",
        "tel:+1-201-555-0123;phone-context=example.com",
        "urn:service:sos",
        "http://www.example.com",
    ],
)
def test_round_trip(text: str) -> None:
    assert str(SipUri.parse(text)) == text


def test_scheme_is_case_insensitive() -> None:
    assert SipUri.parse("SIP:alice@example.com").scheme == "sip"


def test_tel_uri_is_kept_with_number_as_host() -> None:
    uri = SipUri.parse("tel:+33123456789;phone-context=+33")
    assert (uri.scheme, uri.host, uri.user) == ("tel", "+33123456789", None)
    assert uri.param("phone-context") == "+33"
    assert not uri.is_sip


def test_unknown_scheme_is_opaque() -> None:
    uri = SipUri.parse("nobodyKnowsThisScheme:totallyopaquecontent")
    assert (uri.scheme, uri.host, uri.params) == (
        "nobodyknowsthisscheme",
        "totallyopaquecontent",
        (),
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example.com",
        ":foo",
        "sip:",
        "sip:alice@",
        "sip:@example.com",
        "sip:alice@exa mple.com",
        "sip:alice@example.com:99999",
        "sip:alice@example.com:5o60",
        "sip:alice@[2001:db8::1",
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;a=b c",
        "sip:alice@example.com?noequals",
        "sip:al%zice@example.com",
        "sip:<alice@example.com>",
        "1sip:alice@example.com",
        "tel:",
        "foo:bar<baz>",
    ],
)
def test_malformed_uris(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert info.value.status == 400


def test_same_address_rfc3261_19_1_4() -> None:
    a = SipUri.parse("sip:%61lice@atlanta.com;transport=TCP")
    b = SipUri.parse("sip:alice@AtLanTa.CoM;Transport=tcp")
    assert a.same_address(b)
    assert not SipUri.parse("sip:alice@atlanta.com").same_address(
        SipUri.parse("sip:ALICE@atlanta.com")
    )
    assert not SipUri.parse("sip:bob@biloxi.com").same_address(
        SipUri.parse("sip:bob@biloxi.com:5060")
    )
    assert not SipUri.parse("sip:carol@chicago.com").same_address(
        SipUri.parse("sip:carol@chicago.com;transport=tcp")
    )
    assert SipUri.parse("sip:carol@chicago.com;security=on").same_address(
        SipUri.parse("sip:carol@chicago.com")
    )
    assert not SipUri.parse("sip:bob@biloxi.com").same_address(SipUri.parse("sips:bob@biloxi.com"))


def test_param_helpers_return_copies() -> None:
    uri = SipUri.parse("sip:alice@example.com;transport=udp")
    tcp = uri.with_param("transport", "tcp").with_param("lr")
    assert str(tcp) == "sip:alice@example.com;transport=tcp;lr"
    assert str(tcp.without_param("LR")) == "sip:alice@example.com;transport=tcp"
    assert str(uri.replace(port=5080)) == "sip:alice@example.com:5080;transport=udp"
    assert str(uri) == "sip:alice@example.com;transport=udp"


# ---- NameAddr -------------------------------------------------------------------------


def test_name_addr_forms() -> None:
    quoted = NameAddr.parse('"Alice \\"A\\" Liddell" <sip:alice@example.com>;tag=1928')
    assert quoted.display == 'Alice "A" Liddell'
    assert quoted.tag == "1928"
    assert str(quoted) == '"Alice \\"A\\" Liddell" <sip:alice@example.com>;tag=1928'
    tokens = NameAddr.parse("Alice  Liddell<sip:alice@example.com>")
    assert tokens.display == "Alice Liddell"
    bare = NameAddr.parse("<sip:alice@example.com;transport=tcp>;expires=60")
    assert bare.display is None and bare.uri.param("transport") == "tcp"
    assert bare.param("expires") == "60"


def test_addr_spec_params_belong_to_the_header() -> None:
    """RFC 3261 20.10: without <>, everything after ';' is a header parameter."""
    na = NameAddr.parse("sip:alice@example.com;tag=abc;transport=tcp")
    assert na.uri == SipUri.parse("sip:alice@example.com")
    assert na.params == (("tag", "abc"), ("transport", "tcp"))
    assert str(na) == "<sip:alice@example.com>;tag=abc;transport=tcp"


def test_with_tag_and_params() -> None:
    na = NameAddr.parse("<sip:bob@example.com>")
    assert na.tag is None
    tagged = na.with_tag("xyz")
    assert tagged.tag == "xyz" and str(tagged) == "<sip:bob@example.com>;tag=xyz"
    assert tagged.with_tag("2").params == (("tag", "2"),)
    assert tagged.without_param("tag") == na
    assert na.with_param("q", "0.5").param("q") == "0.5"


def test_contact_wildcard() -> None:
    star = NameAddr.parse(" * ")
    assert star.wildcard and str(star) == "*"


def test_quoted_param_values_keep_quotes() -> None:
    na = NameAddr.parse('<sip:a@b>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"')
    assert na.param("+sip.instance") == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Mr. J. User <sip:j.user@example.com>',  # RFC 4475 3.1.2.6
        '"Watson, Thomas" < sip:t.watson@example.org >',  # RFC 4475 3.1.2.14
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # RFC 4475 3.1.2.15
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # RFC 4475 3.1.2.13
        "<sip:alice@example.com",
        "<sip:alice@example.com>junk",
        "<sip:alice@example.com>;;tag=1",
        "<sip:alice@example.com>;tag=a b",
        '"Alice" sip:alice@example.com',
        '<sip:a@b>;p="unterminated',
    ],
)
def test_malformed_name_addr(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


# ---- Via ------------------------------------------------------------------------------


def test_via_parse_and_accessors() -> None:
    via = Via.parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;received=198.51.100.7;rport=4321")
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.1", 5060)
    assert via.branch == "z9hG4bK776"
    assert via.received == "198.51.100.7"
    assert via.rport == 4321 and via.rport_requested
    assert via.sent_by == "192.0.2.1:5060"
    assert via.protocol == "SIP/2.0"
    assert (
        str(via) == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;received=198.51.100.7;rport=4321"
    )


def test_via_lws_everywhere() -> None:
    """The spellings of RFC 4475 3.1.1.1 (after unfolding)."""
    via = Via.parse("SIP  / 2.0  / tcp     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  ")
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP",
        "spindle.example.com",
        None,
        "z9hG4bK9ikj8",
    )
    assert Via.parse("SIP/2.0/UDP host : 5070").port == 5070


def test_via_rport_requested_without_value() -> None:
    via = Via.parse("SIP/2.0/TCP [2001:db8::9]:5061;rport;branch=z9hG4bKx")
    assert via.host == "[2001:db8::9]" and via.port == 5061
    assert via.rport is None and via.rport_requested
    filled = via.with_param("rport", "6000").with_param("received", "2001:db8::10")
    assert filled.rport == 6000 and filled.received == "2001:db8::10"
    assert filled.without_param("rport").rport_requested is False


def test_via_other_version_parses() -> None:
    assert Via.parse("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw").protocol == "SIP/7.0"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP host:port",
        "SIP/2.0/UDP ho st",
        "SIP/2.0/U<DP host",
    ],
)
def test_malformed_via(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


# ---- helpers --------------------------------------------------------------------------


def test_split_quoted_respects_quotes_and_angles() -> None:
    text = '"a,b" <sip:x@y;p=1,2>, <sip:z@w>'
    assert split_quoted(text, ",", angle=True) == ['"a,b" <sip:x@y;p=1,2>', " <sip:z@w>"]
    assert split_quoted('a;b="c;d";e', ";") == ["a", 'b="c;d"', "e"]
    with pytest.raises(SipParseError):
        split_quoted('"open', ",")


def test_parse_params_lws() -> None:
    assert parse_params(" tag = 98asjd8 ; lr ;q=0.3") == (
        ("tag", "98asjd8"),
        ("lr", None),
        ("q", "0.3"),
    )
    with pytest.raises(SipParseError):
        parse_params("a=")
