"""SDP (RFC 8866, formerly 4566) bodies and the offer/answer model (RFC 3264).

Theory of operation
-------------------
:meth:`SessionDescription.parse` turns an SDP body into frozen dataclasses and
:meth:`SessionDescription.to_bytes` writes it back in the RFC's line order. Only
the lines a voice node needs are interpreted (``v o s c t m a``); the others
(``i u e p b z k r``) are kept verbatim at their level so nothing is lost.
Attributes stay an ordered ``(name, value | None)`` list; properties decode the
ones we use: ``rtpmap``, ``fmtp``, ``ptime``, the direction attributes and ``rtcp``
(RFC 3605).

:func:`negotiate` answers an offer (RFC 3264 section 6): one answer ``m=`` line per
offered line, in order; the first usable audio stream (``RTP/AVP``, non-zero port,
a codec we support) is accepted with a single codec, chosen in the *offerer's*
preference order, plus ``telephone-event`` (RFC 4733) when offered at the codec's
clock rate; every other stream is rejected with port 0. The answered direction
mirrors the offered one (sendonly -> recvonly, recvonly -> sendonly, inactive ->
inactive), intersected with what we are willing to do. ``c=0.0.0.0`` is the old
RFC 2543 hold: we treat the offerer as not wanting media (RFC 3264 section 8.4).
:func:`accept_answer` reads the answer to one of our offers (RFC 3264 section 7)
and :func:`make_offer` builds our own offers.

Every malformed body raises :class:`SdpError` (400); an offer with nothing we can
accept raises :class:`SdpError` with status 488 (RFC 3261 section 21.4.26).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from appliance.sip.errors import SipError, default_reason

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "Connection",
    "MediaDescription",
    "Negotiated",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "accept_answer",
    "make_offer",
    "negotiate",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

#: RFC 3551 section 6 static payload types: pt -> (encoding, RTP clock rate, channels)
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),  # 16 kHz sampling, 8000 RTP clock (RFC 3551 4.5.2)
    13: ("CN", 8000, 1),
    18: ("G729", 8000, 1),
}
_STATIC_BY_NAME = {name: pt for pt, (name, _, _) in STATIC_PAYLOAD_TYPES.items()}

_LINE_RE = re.compile(r"[a-z]=")
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_DIGITS_RE = re.compile(r"[0-9]{1,10}")
_SESSION_EXTRA = "iuepbzkr"
_MEDIA_EXTRA = "ibk"
_SESSION_ONLY = "vosueptrz"
_REVERSE = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
_SENDS = {"sendrecv": True, "sendonly": True, "recvonly": False, "inactive": False}
_RECEIVES = {"sendrecv": True, "sendonly": False, "recvonly": True, "inactive": False}

Attributes = tuple[tuple[str, str | None], ...]


class SdpError(SipError):
    """An SDP body we cannot use; ``status`` is 400 (malformed) or 488 (no match)."""

    def __init__(self, detail: str = "", *, status: int = 400, reason: str | None = None) -> None:
        self.detail = detail
        self.status = status
        self.reason = reason if reason is not None else default_reason(status)
        super().__init__(f"{status} {self.reason}: {detail}" if detail else str(status))


def _int(text: str, what: str, maximum: int = 2**32 - 1) -> int:
    if not _DIGITS_RE.fullmatch(text):
        raise SdpError(f"bad {what}: {text[:40]!r}")
    value = int(text)
    if value > maximum:
        raise SdpError(f"{what} out of range: {value}")
    return value


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=`` (RFC 8866 section 5.2)."""

    username: str
    session_id: str
    version: str
    net_type: str
    addr_type: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise SdpError(f"bad o= line: {value[:60]!r}")
        return cls(*parts)

    def __str__(self) -> str:
        return " ".join(
            (
                self.username,
                self.session_id,
                self.version,
                self.net_type,
                self.addr_type,
                self.address,
            )
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=`` (RFC 8866 section 5.7); ``address`` keeps any ``/ttl/count`` suffix."""

    net_type: str
    addr_type: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise SdpError(f"bad c= line: {value[:60]!r}")
        return cls(*parts)

    @classmethod
    def for_ip(cls, ip: str) -> Connection:
        return cls("IN", "IP6" if ":" in ip else "IP4", ip)

    def __str__(self) -> str:
        return f"{self.net_type} {self.addr_type} {self.address}"

    @property
    def host(self) -> str:
        """The address without multicast ``/ttl/count``."""
        return self.address.split("/", 1)[0]

    @property
    def is_hold(self) -> bool:
        """``c=IN IP4 0.0.0.0``: RFC 2543-style hold (RFC 3264 section 8.4)."""
        return self.host in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class RtpMap:
    """One ``a=rtpmap`` (or the static default of a payload type)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels and self.channels != 1 else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


def _parse_attribute(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    if not name or not _TOKEN_RE.fullmatch(name):
        raise SdpError(f"bad attribute {value[:40]!r}")
    return (name, rest if colon else None)


def _format_attribute(attribute: tuple[str, str | None]) -> str:
    name, value = attribute
    return f"a={name}" if value is None else f"a={name}:{value}"


def _direction(attributes: Attributes) -> str | None:
    for name, value in attributes:
        if value is None and name in _SENDS:
            return name
    return None


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 8866 section 5.14) with its lines."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: Attributes = ()
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def _parse_m(cls, value: str) -> MediaDescription:
        parts = value.split()
        if len(parts) < 3:
            raise SdpError(f"bad m= line: {value[:60]!r}")
        media, port_text, proto = parts[0], parts[1], parts[2]
        port_part, slash, count_text = port_text.partition("/")
        port = _int(port_part, "media port", 65535)
        count = _int(count_text, "port count", 65535) if slash else None
        return cls(media, port, proto, tuple(parts[3:]), count)

    def _m_line(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return " ".join((self.media, port, self.proto, *self.formats))

    def attribute(self, name: str) -> str | None:
        """First value of attribute ``name``; ``""`` for a flag, ``None`` if absent."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    def attribute_values(self, name: str) -> list[str]:
        """Every value of attribute ``name`` (flags give ``""``)."""
        return ["" if v is None else v for k, v in self.attributes if k == name]

    @property
    def payload_types(self) -> list[int]:
        """The numeric formats of an RTP stream (non-numeric ones skipped)."""
        return [int(f) for f in self.formats if _DIGITS_RE.fullmatch(f) and int(f) <= 127]

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """Payload type -> mapping, from ``a=rtpmap`` or the static table (RFC 3551)."""
        out: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            pt_text, _, spec = value.strip().partition(" ")
            pieces = spec.strip().split("/")
            if (
                not _DIGITS_RE.fullmatch(pt_text)
                or int(pt_text) > 127
                or len(pieces) < 2
                or not pieces[0]
                or not _DIGITS_RE.fullmatch(pieces[1])
            ):
                raise SdpError(f"bad rtpmap {value[:60]!r}")
            channels = None
            if len(pieces) > 2 and _DIGITS_RE.fullmatch(pieces[2]):
                channels = int(pieces[2])
            pt = int(pt_text)
            out.setdefault(pt, RtpMap(pt, pieces[0], int(pieces[1]), channels))
        for pt in self.payload_types:
            if pt not in out and pt in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
                out[pt] = RtpMap(pt, name, rate, channels)
        return out

    def fmtp(self, payload_type: int) -> str | None:
        """The ``a=fmtp`` parameters of ``payload_type``, or ``None``."""
        prefix = str(payload_type)
        for value in self.attribute_values("fmtp"):
            pt_text, _, params = value.partition(" ")
            if pt_text == prefix:
                return params.strip()
        return None

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds, or ``None`` (absent or unreadable)."""
        value = self.attribute("ptime")
        if value is None:
            return None
        text = value.strip().split(".", 1)[0]
        return int(text) if _DIGITS_RE.fullmatch(text) and 0 < int(text) <= 1000 else None

    @property
    def direction(self) -> str | None:
        """The media-level direction attribute, or ``None`` if not given here."""
        return _direction(self.attributes)

    @property
    def rtcp(self) -> tuple[int, str | None] | None:
        """``a=rtcp`` (RFC 3605): ``(port, address or None)``, or ``None``."""
        value = self.attribute("rtcp")
        if not value:
            return None
        parts = value.split()
        if not parts or not _DIGITS_RE.fullmatch(parts[0]) or int(parts[0]) > 65535:
            raise SdpError(f"bad rtcp attribute {value[:40]!r}")
        address = parts[3] if len(parts) >= 4 else None
        return int(parts[0]), address

    def _lines(self) -> list[str]:
        lines = [f"m={self._m_line()}"]
        lines.extend(f"{k}={v}" for k, v in self.extra if k == "i")
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"{k}={v}" for k, v in self.extra if k != "i")
        lines.extend(_format_attribute(a) for a in self.attributes)
        return lines


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body (RFC 8866 section 5)."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    times: tuple[tuple[int, int], ...] = ((0, 0),)
    attributes: Attributes = ()
    media: tuple[MediaDescription, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    version: int = 0

    @classmethod
    def parse(cls, data: bytes) -> SessionDescription:
        """Parse an SDP body; :class:`SdpError` (400) when malformed."""
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as err:
            raise SdpError("SDP is not UTF-8") from err
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        lines = [line for line in lines if line.strip()]
        if not lines or lines[0].strip() != "v=0":
            raise SdpError("SDP must start with v=0")
        origin: Origin | None = None
        session_name = "-"
        connection: Connection | None = None
        times: list[tuple[int, int]] = []
        attributes: list[tuple[str, str | None]] = []
        extra: list[tuple[str, str]] = []
        media: list[MediaDescription] = []
        current: MediaDescription | None = None
        m_attributes: list[tuple[str, str | None]] = []
        m_extra: list[tuple[str, str]] = []
        m_connection: Connection | None = None

        def close_media() -> None:
            if current is not None:
                media.append(
                    replace(
                        current,
                        connection=m_connection,
                        attributes=tuple(m_attributes),
                        extra=tuple(m_extra),
                    )
                )

        for line in lines[1:]:
            if not _LINE_RE.match(line):
                raise SdpError(f"bad SDP line {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "m":
                close_media()
                current = MediaDescription._parse_m(value)
                m_attributes, m_extra, m_connection = [], [], None
            elif current is not None:
                if kind == "a":
                    m_attributes.append(_parse_attribute(value))
                elif kind == "c":
                    m_connection = Connection.parse(value)
                elif kind in _MEDIA_EXTRA:
                    m_extra.append((kind, value))
                elif kind in _SESSION_ONLY:
                    raise SdpError(f"{kind}= line not allowed in a media section")
                # RFC 8866 section 5: unknown line types are ignored
            elif kind == "o":
                if origin is not None:
                    raise SdpError("more than one o= line")
                origin = Origin.parse(value)
            elif kind == "s":
                session_name = value.strip() or "-"  # RFC 8866 5.3: "-" when unnamed
            elif kind == "c":
                connection = Connection.parse(value)
            elif kind == "t":
                parts = value.split()
                if len(parts) != 2:
                    raise SdpError(f"bad t= line {value[:40]!r}")
                times.append((_int(parts[0], "start time"), _int(parts[1], "stop time")))
            elif kind == "a":
                attributes.append(_parse_attribute(value))
            elif kind in _SESSION_EXTRA:
                extra.append((kind, value))
            elif kind == "v":
                raise SdpError("more than one v= line")
            # RFC 8866 section 5: unknown line types are ignored
        close_media()
        if origin is None:
            raise SdpError("SDP without o= line")
        return cls(
            origin=origin,
            session_name=session_name,
            connection=connection,
            times=tuple(times) or ((0, 0),),
            attributes=tuple(attributes),
            media=tuple(media),
            extra=tuple(extra),
        )

    def to_bytes(self) -> bytes:
        """The body, CRLF-terminated lines in RFC 8866 order."""
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name or '-'}"]
        lines.extend(f"{k}={v}" for k, v in self.extra if k in "iuep")
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"{k}={v}" for k, v in self.extra if k == "b")
        for start, stop in self.times:
            lines.append(f"t={start} {stop}")
        lines.extend(f"{k}={v}" for k, v in self.extra if k in "rzk")
        lines.extend(_format_attribute(a) for a in self.attributes)
        for m in self.media:
            lines.extend(m._lines())
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, or ``None``."""
        return _direction(self.attributes)

    def media_direction(self, index: int) -> str:
        """Effective direction of ``media[index]``: media, else session, else sendrecv."""
        return self.media[index].direction or self.direction or "sendrecv"

    def media_connection(self, index: int) -> Connection | None:
        """Effective ``c=`` of ``media[index]``: media level, else session level."""
        return self.media[index].connection or self.connection

    @property
    def is_hold(self) -> bool:
        """True when no active audio stream may send to the description's owner.

        Either every audio stream is ``sendonly``/``inactive`` or at ``c=0.0.0.0``
        (RFC 3264 section 8.4), or there is no active audio stream.
        """
        active = False
        for index, m in enumerate(self.media):
            if m.media != "audio" or m.port == 0:
                continue
            connection = self.media_connection(index)
            if connection is not None and connection.is_hold:
                continue
            if _RECEIVES[self.media_direction(index)]:
                active = True
        return not active


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The outcome of one offer/answer exchange, for the media engine.

    ``codec``/``payload_type``/``clock_rate``: what we send and expect;
    ``telephone_event``: the RFC 4733 payload type, or ``None``;
    ``remote_ip``/``remote_port``/``remote_rtcp_port``: where to send RTP/RTCP;
    ``remote_direction``: the peer's declared direction, ``direction``: ours;
    ``on_hold``: the peer asked not to receive media (sendonly/inactive, or
    ``c=0.0.0.0``), i.e. it put the call on hold; ``media_index``: the ``m=`` line.
    """

    codec: str
    payload_type: int
    clock_rate: int
    telephone_event: int | None
    remote_ip: str
    remote_port: int
    remote_rtcp_port: int
    remote_direction: str
    direction: str
    ptime: int
    on_hold: bool
    media_index: int

    @property
    def sends(self) -> bool:
        """Whether we send media."""
        return _SENDS[self.direction]

    @property
    def receives(self) -> bool:
        """Whether we expect media."""
        return _RECEIVES[self.direction]


def _intersect(a: str, b: str) -> str:
    send = _SENDS[a] and _SENDS[b]
    receive = _RECEIVES[a] and _RECEIVES[b]
    if send and receive:
        return "sendrecv"
    if send:
        return "sendonly"
    if receive:
        return "recvonly"
    return "inactive"


def _telephone_event(m: MediaDescription, rate: int) -> int | None:
    for pt, mapping in m.rtpmaps.items():
        if mapping.encoding.lower() == "telephone-event" and mapping.clock_rate == rate:
            if pt in m.payload_types:
                return pt
    return None


def _rejected(m: MediaDescription) -> MediaDescription:
    """RFC 3264 section 6: a refused stream is answered with port 0."""
    return MediaDescription(m.media, 0, m.proto, m.formats[:1] or ("0",))


def negotiate(
    offer: SessionDescription,
    *,
    supported: tuple[str, ...] = ("PCMU", "PCMA"),
    local_ip: str,
    local_port: int,
    session_id: int,
    version: int,
    direction: str = "sendrecv",
) -> tuple[SessionDescription, Negotiated]:
    """Answer ``offer`` (RFC 3264 section 6.1); 488 when nothing is acceptable.

    ``supported`` names the codecs we can run; ``direction`` is what we are willing
    to do (e.g. ``sendonly`` while we hold the call).
    """
    if direction not in _SENDS:
        raise ValueError(f"unknown direction {direction!r}")
    wanted = {name.upper() for name in supported}
    answer_media: list[MediaDescription] = []
    result: Negotiated | None = None
    for index, m in enumerate(offer.media):
        if result is not None or m.media != "audio" or m.port == 0 or m.proto != "RTP/AVP":
            answer_media.append(_rejected(m))
            continue
        mappings = m.rtpmaps
        chosen: RtpMap | None = None
        for pt in m.payload_types:
            mapping = mappings.get(pt)
            if mapping is not None and mapping.encoding.upper() in wanted:
                chosen = mapping
                break
        connection = offer.media_connection(index)
        if chosen is None or connection is None:
            answer_media.append(_rejected(m))
            continue
        event_pt = _telephone_event(m, chosen.clock_rate)
        remote_direction = offer.media_direction(index)
        effective = remote_direction
        if connection.is_hold:  # RFC 2543 hold: the offerer receives nothing
            effective = _intersect(remote_direction, "sendonly")
        answered = _intersect(_REVERSE[effective], direction)
        ptime = m.ptime or 20
        formats = [str(chosen.payload_type)]
        attributes: list[tuple[str, str | None]] = [("rtpmap", str(chosen))]
        if event_pt is not None:
            formats.append(str(event_pt))
            attributes.append(("rtpmap", f"{event_pt} telephone-event/{chosen.clock_rate}"))
            attributes.append(("fmtp", f"{event_pt} 0-16"))
        attributes.append(("ptime", str(ptime)))
        attributes.append((answered, None))
        answer_media.append(
            MediaDescription(
                "audio", local_port, "RTP/AVP", tuple(formats), attributes=tuple(attributes)
            )
        )
        rtcp = m.rtcp
        result = Negotiated(
            codec=chosen.encoding.upper(),
            payload_type=chosen.payload_type,
            clock_rate=chosen.clock_rate,
            telephone_event=event_pt,
            remote_ip=connection.host,
            remote_port=m.port,
            remote_rtcp_port=rtcp[0] if rtcp is not None else m.port + 1,
            remote_direction=remote_direction,
            direction=answered,
            ptime=ptime,
            on_hold=connection.is_hold or not _RECEIVES[remote_direction],
            media_index=index,
        )
    if result is None:
        raise SdpError("no acceptable audio stream or codec in the offer", status=488)
    answer = SessionDescription(
        origin=Origin("-", str(session_id), str(version), "IN", _addr_type(local_ip), local_ip),
        session_name="-",
        connection=Connection.for_ip(local_ip),
        times=((0, 0),),
        media=tuple(answer_media),
    )
    return answer, result


def _addr_type(ip: str) -> str:
    return "IP6" if ":" in ip else "IP4"


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated:
    """Read the answer to our ``offer`` (RFC 3264 section 7); 488 if unusable.

    The first audio stream of the answer with a non-zero port and a payload type
    we offered wins; its first such payload type is the codec we send.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError("answer and offer have different numbers of m= lines")
    for index, m in enumerate(answer.media):
        offered = offer.media[index]
        if m.media != "audio" or m.port == 0 or offered.port == 0:
            continue
        ours = offered.rtpmaps
        theirs = m.rtpmaps
        for pt in m.payload_types:
            mapping = theirs.get(pt) or ours.get(pt)
            if mapping is None or mapping.encoding.lower() == "telephone-event":
                continue
            if not any(o.encoding.upper() == mapping.encoding.upper() for o in ours.values()):
                continue
            connection = answer.media_connection(index)
            if connection is None:
                raise SdpError("answer without c= line")
            remote_direction = answer.media_direction(index)
            mine = offer.media_direction(index)
            effective = remote_direction
            if connection.is_hold:
                effective = _intersect(remote_direction, "sendonly")
            rtcp = m.rtcp
            return Negotiated(
                codec=mapping.encoding.upper(),
                payload_type=pt,
                clock_rate=mapping.clock_rate,
                telephone_event=_telephone_event(m, mapping.clock_rate),
                remote_ip=connection.host,
                remote_port=m.port,
                remote_rtcp_port=rtcp[0] if rtcp is not None else m.port + 1,
                remote_direction=remote_direction,
                direction=_intersect(_REVERSE[effective], mine),
                ptime=m.ptime or 20,
                on_hold=connection.is_hold or not _RECEIVES[remote_direction],
                media_index=index,
            )
    raise SdpError("the answer accepts none of the offered codecs", status=488)


def make_offer(
    local_ip: str,
    local_port: int,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    telephone_event: int | None = 101,
    direction: str = "sendrecv",
    *,
    session_id: int,
    version: int,
    ptime: int = 20,
) -> SessionDescription:
    """Our offer: one ``RTP/AVP`` audio stream with ``codecs`` in preference order.

    Codecs must be static payload types (PCMU 0, PCMA 8, G722 9, ...);
    ``telephone_event`` is the dynamic payload type for RFC 4733 events (0-16) or
    ``None`` to leave DTMF events out.
    """
    if direction not in _SENDS:
        raise ValueError(f"unknown direction {direction!r}")
    formats: list[str] = []
    attributes: list[tuple[str, str | None]] = []
    for codec in codecs:
        pt = _STATIC_BY_NAME.get(codec.upper())
        if pt is None:
            raise ValueError(f"no static payload type for codec {codec!r}")
        name, rate, _ = STATIC_PAYLOAD_TYPES[pt]
        formats.append(str(pt))
        attributes.append(("rtpmap", f"{pt} {name}/{rate}"))
    if telephone_event is not None:
        if not 96 <= telephone_event <= 127:
            raise ValueError("telephone-event needs a dynamic payload type (96-127)")
        formats.append(str(telephone_event))
        attributes.append(("rtpmap", f"{telephone_event} telephone-event/8000"))
        attributes.append(("fmtp", f"{telephone_event} 0-16"))
    attributes.append(("ptime", str(ptime)))
    attributes.append((direction, None))
    return SessionDescription(
        origin=Origin("-", str(session_id), str(version), "IN", _addr_type(local_ip), local_ip),
        connection=Connection.for_ip(local_ip),
        media=(
            MediaDescription(
                "audio", local_port, "RTP/AVP", tuple(formats), attributes=tuple(attributes)
            ),
        ),
    )
