"""SDP parsing and the offer/answer model (RFC 8866, RFC 3264, RFC 4733)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.sip.errors import SipError
from appliance.sip.message import parse_message
from appliance.sip.sdp import (
    Connection,
    MediaDescription,
    Negotiated,
    RtpMap,
    SdpError,
    SessionDescription,
    accept_answer,
    make_offer,
    negotiate,
)

OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844527 IN IP4 198.51.100.7\r\n"
    b"s=Call\r\n"
    b"i=an example\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"b=AS:64\r\n"
    b"t=0 0\r\n"
    b"a=tool:example\r\n"
    b"m=audio 49170 RTP/AVP 8 0 96 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:30\r\n"
    b"a=rtcp:53020 IN IP4 198.51.100.8\r\n"
    b"a=sendrecv\r\n"
    b"m=video 51372 RTP/AVP 31\r\n"
    b"a=rtpmap:31 H261/90000\r\n"
)


def _negotiate(
    offer: SessionDescription,
    *,
    supported: tuple[str, ...] = ("PCMU", "PCMA"),
    direction: str = "sendrecv",
    local_ip: str = "192.0.2.1",
) -> tuple[SessionDescription, Negotiated]:
    return negotiate(
        offer,
        supported=supported,
        local_ip=local_ip,
        local_port=40000,
        session_id=77,
        version=1,
        direction=direction,
    )


def _with(old: bytes, new: bytes, data: bytes = OFFER) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


def test_parse_offer() -> None:
    sd = SessionDescription.parse(OFFER)
    assert sd.origin.session_id == "2890844526" and sd.origin.address == "198.51.100.7"
    assert sd.session_name == "Call"
    assert sd.connection == Connection("IN", "IP4", "198.51.100.7")
    assert sd.times == ((0, 0),)
    assert sd.attributes == (("tool", "example"),)
    assert sd.extra == (("i", "an example"), ("b", "AS:64"))
    audio, video = sd.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 49170, "RTP/AVP")
    assert audio.payload_types == [8, 0, 96, 101]
    assert audio.rtpmaps[0] == RtpMap(0, "PCMU", 8000, 1)  # static, no rtpmap line
    assert audio.rtpmaps[96] == RtpMap(96, "opus", 48000, 2)
    assert audio.fmtp(101) == "0-15" and audio.fmtp(8) is None
    assert audio.ptime == 30
    assert audio.direction == "sendrecv"
    assert audio.rtcp == (53020, "198.51.100.8")
    assert video.rtpmaps[31].clock_rate == 90000
    assert sd.media_connection(1) == sd.connection


def test_round_trip() -> None:
    sd = SessionDescription.parse(OFFER)
    assert sd.to_bytes() == OFFER
    assert SessionDescription.parse(sd.to_bytes()) == sd


def test_lf_only_and_unknown_line_types() -> None:
    sd = SessionDescription.parse(OFFER.replace(b"\r\n", b"\n") + b"y=unknown\n")
    assert len(sd.media) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        b"v=0\r\ns=-\r\n",  # no o=
        b"v=0\r\no=- 1 1 IN IP4\r\n",
        _with(b"m=audio 49170", b"m=audio 99999"),
        _with(b"m=audio 49170", b"m=audio x"),
        _with(b"m=video 51372 RTP/AVP 31", b"m=video"),
        _with(b"c=IN IP4 198.51.100.7", b"c=IN IP4"),
        _with(b"t=0 0", b"t=0"),
        _with(b"a=tool:example", b"a=:x"),
        _with(b"a=tool:example", b"m =video 3227 RTP/AVP 31"),
        _with(b"i=an example", b"v=0"),
        _with(b"a=rtpmap:8 PCMA/8000", b"a=o=dup\r\no=- 1 1 IN IP4 1.1.1.1").replace(
            b"a=o=dup\r\n", b""
        ),
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n\xff\r\n",
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(SdpError) as info:
        sd = SessionDescription.parse(body)
        sd.media[0].rtpmaps  # noqa: B018 - some errors surface on use
    assert info.value.status == 400
    assert isinstance(info.value, SipError)


def test_bad_rtpmap_or_rtcp_surface_as_sdp_error() -> None:
    sd = SessionDescription.parse(_with(b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:8 PCMA"))
    with pytest.raises(SdpError):
        sd.media[0].rtpmaps  # noqa: B018
    sd = SessionDescription.parse(_with(b"a=rtcp:53020", b"a=rtcp:x"))
    with pytest.raises(SdpError):
        sd.media[0].rtcp  # noqa: B018


# ---- negotiate (RFC 3264 section 6) ---------------------------------------------------


def test_negotiate_follows_the_offerer_preference() -> None:
    answer, result = _negotiate(SessionDescription.parse(OFFER))
    assert (result.codec, result.payload_type, result.clock_rate) == ("PCMA", 8, 8000)
    assert result.telephone_event == 101
    assert (result.remote_ip, result.remote_port, result.remote_rtcp_port) == (
        "198.51.100.7",
        49170,
        53020,
    )
    assert (result.remote_direction, result.direction, result.on_hold) == (
        "sendrecv",
        "sendrecv",
        False,
    )
    assert result.ptime == 30 and result.media_index == 0
    assert result.sends and result.receives
    # one answer m= line per offered line, the refused one at port 0
    audio, video = answer.media
    assert (audio.port, audio.formats) == (40000, ("8", "101"))
    assert audio.attribute_values("rtpmap") == ["8 PCMA/8000", "101 telephone-event/8000"]
    assert audio.fmtp(101) == "0-16"
    assert audio.direction == "sendrecv"
    assert (video.media, video.port, video.formats) == ("video", 0, ("31",))
    assert answer.origin.session_id == "77" and answer.connection == Connection(
        "IN", "IP4", "192.0.2.1"
    )
    assert SessionDescription.parse(answer.to_bytes()) == answer


def test_negotiate_with_our_preference_list() -> None:
    _, result = _negotiate(SessionDescription.parse(OFFER), supported=("PCMU",))
    assert (result.codec, result.payload_type) == ("PCMU", 0)


@pytest.mark.parametrize(
    ("offered", "answered", "on_hold"),
    [
        ("sendrecv", "sendrecv", False),
        ("sendonly", "recvonly", True),
        ("recvonly", "sendonly", False),
        ("inactive", "inactive", True),
    ],
)
def test_direction_mirrors_the_offer(offered: str, answered: str, on_hold: bool) -> None:
    offer = SessionDescription.parse(_with(b"a=sendrecv", f"a={offered}".encode()))
    answer, result = _negotiate(offer)
    assert (result.remote_direction, result.direction, result.on_hold) == (
        offered,
        answered,
        on_hold,
    )
    assert answer.media[0].direction == answered


def test_session_level_direction_applies() -> None:
    body = _with(b"a=sendrecv\r\n", b"").replace(b"a=tool:example", b"a=sendonly")
    _, result = _negotiate(SessionDescription.parse(body))
    assert (result.remote_direction, result.direction) == ("sendonly", "recvonly")


def test_rfc2543_hold_with_zero_address() -> None:
    offer = SessionDescription.parse(
        OFFER.replace(b"IN IP4 198.51.100.7\r\nb=", b"IN IP4 0.0.0.0\r\nb=")
    )
    assert offer.is_hold
    _, result = _negotiate(offer)
    assert result.on_hold and result.direction == "recvonly" and result.remote_ip == "0.0.0.0"
    assert not SessionDescription.parse(OFFER).is_hold


def test_our_direction_limits_the_answer() -> None:
    _, result = _negotiate(SessionDescription.parse(OFFER), direction="sendonly")
    assert result.direction == "sendonly"
    offer = SessionDescription.parse(_with(b"a=sendrecv", b"a=sendonly"))
    _, result = _negotiate(offer, direction="sendonly")
    assert result.direction == "inactive"


def test_no_telephone_event_when_not_offered_or_at_another_rate() -> None:
    body = _with(b"a=rtpmap:101 telephone-event/8000", b"a=rtpmap:101 telephone-event/48000")
    answer, result = _negotiate(SessionDescription.parse(body))
    assert result.telephone_event is None and answer.media[0].formats == ("8",)


def test_g722_static_payload_type() -> None:
    offer = make_offer("198.51.100.7", 5000, codecs=("G722", "PCMU"), session_id=1, version=1)
    _, result = _negotiate(offer, supported=("G722", "PCMU"))
    assert (result.codec, result.payload_type, result.clock_rate) == ("G722", 9, 8000)


@pytest.mark.parametrize(
    "body",
    [
        _with(b"m=audio 49170 RTP/AVP 8 0 96 101", b"m=audio 49170 RTP/AVP 96 101"),
        _with(b"m=audio 49170", b"m=audio 0"),
        _with(b"RTP/AVP 8 0 96 101", b"RTP/SAVP 8 0 96 101"),
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",  # no c=
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n",  # no m=
    ],
)
def test_nothing_acceptable_is_488(body: bytes) -> None:
    with pytest.raises(SdpError) as info:
        _negotiate(SessionDescription.parse(body))
    assert (info.value.status, info.value.reason) == (488, "Not Acceptable Here")


def test_only_the_first_usable_audio_stream_is_accepted() -> None:
    body = OFFER + b"m=audio 49180 RTP/AVP 0\r\n"
    answer, result = _negotiate(SessionDescription.parse(body))
    assert [m.port for m in answer.media] == [40000, 0, 0]
    assert result.media_index == 0


def test_ipv6_answer() -> None:
    answer, _ = _negotiate(SessionDescription.parse(OFFER), local_ip="2001:db8::1")
    assert answer.connection == Connection("IN", "IP6", "2001:db8::1")
    assert answer.origin.addr_type == "IP6"


def test_rfc4475_bodies_negotiate_to_pcmu() -> None:
    """Provenance: RFC 4475 3.1.1.1 (wsinv) carries audio PCMU/12 and a video stream."""
    wsinv = Path(__file__).resolve().parents[1] / "data" / "rfc4475" / "valid" / "wsinv.dat"
    body = parse_message(wsinv.read_bytes()).body
    answer, result = _negotiate(SessionDescription.parse(body))
    assert (result.codec, result.remote_ip, result.remote_port) == ("PCMU", "192.0.2.4", 49217)
    assert [m.port for m in answer.media] == [40000, 0]


# ---- make_offer / accept_answer (RFC 3264 section 7) ----------------------------------


def test_make_offer() -> None:
    offer = make_offer("192.0.2.1", 40000, session_id=5, version=2)
    assert offer.to_bytes() == (
        b"v=0\r\n"
        b"o=- 5 2 IN IP4 192.0.2.1\r\n"
        b"s=-\r\n"
        b"c=IN IP4 192.0.2.1\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    hold = make_offer(
        "192.0.2.1", 40000, telephone_event=None, direction="sendonly", session_id=5, version=3
    )
    assert hold.media[0].formats == ("0", "8") and hold.media[0].direction == "sendonly"
    with pytest.raises(ValueError):
        make_offer("192.0.2.1", 1, codecs=("opus",), session_id=1, version=1)
    with pytest.raises(ValueError):
        make_offer("192.0.2.1", 1, telephone_event=8, session_id=1, version=1)
    with pytest.raises(ValueError):
        make_offer("192.0.2.1", 1, direction="sideways", session_id=1, version=1)


def test_offer_answer_between_two_nodes() -> None:
    offer = make_offer("192.0.2.1", 40000, codecs=("PCMA", "PCMU"), session_id=1, version=1)
    answer, theirs = negotiate(
        offer, local_ip="192.0.2.2", local_port=50000, session_id=9, version=1
    )
    ours = accept_answer(offer, SessionDescription.parse(answer.to_bytes()))
    assert (ours.codec, ours.payload_type, ours.telephone_event) == ("PCMA", 8, 101)
    assert (theirs.codec, theirs.telephone_event) == ("PCMA", 101)
    assert (ours.remote_ip, ours.remote_port) == ("192.0.2.2", 50000)
    assert (theirs.remote_ip, theirs.remote_port) == ("192.0.2.1", 40000)
    assert ours.direction == theirs.direction == "sendrecv"


def test_accept_answer_to_a_hold_offer() -> None:
    offer = make_offer("192.0.2.1", 40000, direction="sendonly", session_id=1, version=2)
    answer, theirs = _negotiate(offer)
    assert theirs.direction == "recvonly"
    ours = accept_answer(offer, answer)
    assert (ours.remote_direction, ours.direction) == ("recvonly", "sendonly")


def test_accept_answer_refusals() -> None:
    offer = make_offer("192.0.2.1", 40000, session_id=1, version=1)
    head = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
    rejected = SessionDescription.parse(head + b"m=audio 0 RTP/AVP 0\r\n")
    with pytest.raises(SdpError) as info:
        accept_answer(offer, rejected)
    assert info.value.status == 488
    other_codec = SessionDescription.parse(head + b"m=audio 4 RTP/AVP 18\r\n")
    with pytest.raises(SdpError):
        accept_answer(offer, other_codec)
    with pytest.raises(SdpError):
        accept_answer(offer, SessionDescription.parse(OFFER))  # 2 m= lines for 1 offered


def test_media_description_helpers() -> None:
    m = MediaDescription(
        "audio", 4000, "RTP/AVP", ("0", "foo", "200"), attributes=(("ptime", "20.5"),)
    )
    assert m.payload_types == [0]
    assert m.ptime == 20
    assert m.attribute("missing") is None and m.rtcp is None
