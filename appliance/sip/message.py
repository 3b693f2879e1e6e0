"""SIP messages: parse, inspect, build and serialize (RFC 3261 sections 7, 8.2, 18, 20).

Theory of operation
-------------------
The layer is sans-I/O: bytes in, objects out, objects in, bytes out.

* :func:`parse_message` takes one whole message (a UDP datagram, or one frame cut
  by :class:`StreamFramer` from a TCP/TLS stream). It splits the header section at
  the first empty line, decodes it as UTF-8 (undecodable bytes are kept with
  ``surrogateescape`` so that nothing is lost and serialization is lossless),
  unfolds continuation lines (RFC 3261 section 7.3.1), checks the start line and
  frames the body with Content-Length (RFC 3261 section 18.3: extra bytes of a
  datagram are dropped, a missing Content-Length over UDP means "rest of the
  datagram", more announced than present is a 400).
* It then validates, once, the headers the transaction layer relies on
  (Via, From, To, Call-ID, CSeq, Content-Length): when present they must parse and
  the single-valued ones must occur once. So every accessor (``.vias``, ``.cseq``,
  ...) of a parsed message either answers or, for a *missing* header of a request,
  raises :class:`SipParseError`. Responses missing any of them are rejected outright
  (they cannot be matched to a transaction and are dropped). Requests missing one
  still parse, so the UAS can answer a precise 400 (see :func:`check_request`).
* :func:`check_request` applies the UAS-level checks of RFC 3261 section 8.2 and
  RFC 4475 (version, mandatory headers, CSeq method, Max-Forwards, URI scheme,
  Require, Content-Type/Accept) and returns the ``(status, reason)`` to answer, or
  ``None``. :func:`rejection_headers` gives the extra headers that answer needs
  (Unsupported for 420, Accept for 415/406).
* Every problem with *received* bytes raises :class:`SipParseError` and nothing
  else; it carries the status the peer deserves. :func:`error_response_for` builds
  that error response from the raw bytes when enough of the message is readable.

:class:`Headers` keeps header fields in wire order with their original names; names
are matched case-insensitively and compact forms (``v``, ``i``, ``m``...) are
expanded on lookup. Parsed values of the core headers are cached inside the
``Headers`` object and the cache is dropped on every mutation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar, cast

from appliance.sip.errors import SipParseError, default_reason
from appliance.sip.uri import NameAddr, SipUri, Via, split_quoted

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "Headers",
    "Message",
    "Request",
    "Response",
    "StreamFramer",
    "check_request",
    "error_response_for",
    "header_key",
    "make_response",
    "parse_message",
    "rejection_headers",
    "split_list",
]

_T = TypeVar("_T")

#: RFC 3261 section 7.3.3 and later RFCs: compact form -> full name (lower case).
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

#: Headers whose values are comma-separated lists (RFC 3261 section 7.3.1).
LIST_HEADERS: frozenset[str] = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-preferred-identity",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "require",
        "route",
        "security-client",
        "security-server",
        "security-verify",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)

#: Headers that may appear at most once (RFC 3261 section 7.3.1 / 20).
_SINGLE_HEADERS: dict[str, str] = {
    "from": "From",
    "to": "To",
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "max-forwards": "Max-Forwards",
    "content-length": "Content-Length",
    "content-type": "Content-Type",
}

_CORE_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_REQUEST_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/([0-9]{1,4})\.([0-9]{1,4})")
_STATUS_RE = re.compile(r"[1-6][0-9][0-9]")
_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")

_MAX_CSEQ = 2**32 - 1
_DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})


_KEY_CACHE: dict[str, str] = {}


def header_key(name: str) -> str:
    """Canonical lookup key of a header name: lower case, compact form expanded."""
    key = _KEY_CACHE.get(name)
    if key is None:
        key = name.lower()
        key = COMPACT_FORMS.get(key, key)
        if len(_KEY_CACHE) < 2048:  # bounded: peers choose the spellings
            _KEY_CACHE[name] = key
    return key


def split_list(value: str) -> list[str]:
    """Split a list header value on commas outside quotes and ``<...>``; drop empties."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    return [p for p in (piece.strip() for piece in split_quoted(value, ",", angle=True)) if p]


def _check_header_text(name: str, value: str) -> None:
    if not _TOKEN_RE.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"CR/LF in value of header {name!r}")


class Headers:
    """Ordered, case-insensitive SIP header fields.

    Iteration yields ``(name, value)`` in wire order with the original spelling of
    each name. Lookups accept any spelling and compact forms. For list headers
    (:data:`LIST_HEADERS`) :meth:`get_all` returns the individual comma-separated
    elements and :meth:`get` the first element; for other headers :meth:`get_all`
    returns each field value whole.
    """

    __slots__ = ("_cache", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        for name, value in items:
            _check_header_text(name, value)
            self._items.append((name, value, header_key(name)))
        self._cache: dict[str, object] = {}

    @classmethod
    def _trusted(cls, items: list[tuple[str, str, str]]) -> Headers:
        obj = cls.__new__(cls)
        obj._items = items
        obj._cache = {}
        return obj

    def get(self, name: str) -> str | None:
        """First value of ``name`` (first element for list headers) or ``None``."""
        key = header_key(name)
        for _, value, item_key in self._items:
            if item_key == key:
                if key in LIST_HEADERS:
                    elements = split_list(value)
                    return elements[0] if elements else ""
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """All values of ``name`` in order; list headers are split on commas."""
        key = header_key(name)
        if key in LIST_HEADERS:
            out: list[str] = []
            for _, value, item_key in self._items:
                if item_key == key:
                    out.extend(split_list(value))
            return out
        return [value for _, value, item_key in self._items if item_key == key]

    def count(self, name: str) -> int:
        """Number of header *fields* (lines) named ``name``."""
        key = header_key(name)
        return sum(1 for item in self._items if item[2] == key)

    def set(self, name: str, value: str) -> None:
        """Replace every field ``name`` by one, at the position of the first."""
        _check_header_text(name, value)
        key = header_key(name)
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[2] == key:
                if not placed:
                    out.append((name, value, key))
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append((name, value, key))
        self._items = out
        self._cache.clear()

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Append a field, or insert it on top of all fields when ``first``."""
        _check_header_text(name, value)
        item = (name, value, header_key(name))
        if first:
            self._items.insert(0, item)
        else:
            self._items.append(item)
        self._cache.clear()

    def remove(self, name: str) -> int:
        """Remove every field ``name``; returns how many were removed."""
        key = header_key(name)
        before = len(self._items)
        self._items = [item for item in self._items if item[2] != key]
        self._cache.clear()
        return before - len(self._items)

    def remove_first(self, name: str) -> str | None:
        """Remove the first *element* of ``name`` (e.g. the top Via); return it."""
        key = header_key(name)
        for index, (orig, value, item_key) in enumerate(self._items):
            if item_key != key:
                continue
            elements = split_list(value) if key in LIST_HEADERS else [value]
            if len(elements) <= 1:
                del self._items[index]
            else:
                self._items[index] = (orig, ", ".join(elements[1:]), key)
            self._cache.clear()
            return elements[0] if elements else ""
        return None

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers._trusted(list(self._items))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for name, value, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(item[2] == key for item in self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [i[:2] for i in self._items] == [i[:2] for i in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({[i[:2] for i in self._items]!r})"

    def _memo(self, key: str, build: Callable[[], _T]) -> _T:
        try:
            return cast(_T, self._cache[key])
        except KeyError:
            value = build()
            self._cache[key] = value
            return value


def _missing(name: str) -> SipParseError:
    return SipParseError(f"missing {name} header", reason=f"Missing {name} Header")


class _MessageMixin:
    """Accessors shared by requests and responses (``headers`` and ``body`` fields)."""

    __slots__ = ()
    headers: Headers
    body: bytes

    def _single(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise _missing(name)
        return value

    @property
    def call_id(self) -> str:
        """The Call-ID (RFC 3261 section 20.8)."""
        value = self._single("Call-ID")
        if not value or " " in value or "\t" in value:
            raise SipParseError(f"bad Call-ID {value[:60]!r}")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        """``(sequence number, method)`` of the CSeq header (RFC 3261 section 20.16)."""
        return self.headers._memo("cseq", self._parse_cseq)

    def _parse_cseq(self) -> tuple[int, str]:
        value = self._single("CSeq")
        parts = value.split()
        if len(parts) != 2:
            raise SipParseError(f"bad CSeq {value[:60]!r}")
        number, method = parts
        if not _DIGITS_RE.fullmatch(number) or len(number) > 10 or int(number) > _MAX_CSEQ:
            raise SipParseError(f"bad CSeq number {number[:40]!r}", reason="Bad CSeq")
        if not _TOKEN_RE.fullmatch(method):
            raise SipParseError(f"bad CSeq method {method[:40]!r}", reason="Bad CSeq")
        return int(number), method

    @property
    def from_(self) -> NameAddr:
        """The From header (RFC 3261 section 20.20)."""
        return self.headers._memo("from", lambda: NameAddr.parse(self._single("From")))

    @property
    def to(self) -> NameAddr:
        """The To header (RFC 3261 section 20.39)."""
        return self.headers._memo("to", lambda: NameAddr.parse(self._single("To")))

    @property
    def vias(self) -> list[Via]:
        """Every Via value, topmost first (RFC 3261 section 20.42)."""
        return list(self.headers._memo("via", self._parse_vias))

    def _parse_vias(self) -> tuple[Via, ...]:
        values = self.headers.get_all("Via")
        if not values:
            raise _missing("Via")
        return tuple(Via.parse(v) for v in values)

    @property
    def top_via(self) -> Via:
        """The topmost Via."""
        return self.headers._memo("via", self._parse_vias)[0]

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value (may be empty)."""
        return list(
            self.headers._memo(
                "contact", lambda: tuple(NameAddr.parse(v) for v in self.headers.get_all("Contact"))
            )
        )

    @property
    def record_routes(self) -> list[NameAddr]:
        """Every Record-Route value, in header order."""
        return [NameAddr.parse(v) for v in self.headers.get_all("Record-Route")]

    @property
    def routes(self) -> list[NameAddr]:
        """Every Route value, in header order."""
        return [NameAddr.parse(v) for v in self.headers.get_all("Route")]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards value, ``None`` if absent; 400 if not an integer 0..255."""
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        if not _DIGITS_RE.fullmatch(value) or len(value) > 10 or int(value) > 255:
            raise SipParseError(f"bad Max-Forwards {value[:40]!r}", reason="Bad Max-Forwards")
        return int(value)

    @property
    def content_type(self) -> str | None:
        """The media type of Content-Type, lower case, without parameters."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    def _head_lines(self, start_line: str) -> list[str]:
        lines = [start_line]
        length_written = False
        for name, value, key in self.headers._items:
            if key == "content-length":
                if not length_written:
                    lines.append(f"{name}: {len(self.body)}")
                    length_written = True
                continue
            lines.append(f"{name}: {value}")
        if not length_written:
            lines.append(f"Content-Length: {len(self.body)}")
        return lines

    def _serialize(self, start_line: str) -> bytes:
        head = "\r\n".join(self._head_lines(start_line)) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass(slots=True)
class Request(_MessageMixin):
    """A SIP request. ``uri`` is a :class:`SipUri` (see ``uri.py`` for tel/opaque)."""

    method: str
    uri: SipUri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def to_bytes(self) -> bytes:
        """Wire form; Content-Length is always (re)written to match ``body``."""
        return self._serialize(f"{self.method} {self.uri} {self.version}")

    def copy(self) -> Request:
        """Copy with independent headers."""
        return Request(self.method, self.uri, self.headers.copy(), self.body, self.version)


@dataclass(slots=True)
class Response(_MessageMixin):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def to_bytes(self) -> bytes:
        """Wire form; Content-Length is always (re)written to match ``body``."""
        return self._serialize(f"{self.version} {self.status} {self.reason}")

    def copy(self) -> Response:
        """Copy with independent headers."""
        return Response(self.status, self.reason, self.headers.copy(), self.body, self.version)


Message = Request | Response


# --------------------------------------------------------------------------- parsing


def _split_head(data: bytes, start: int) -> tuple[int, int]:
    """``(end of header section, start of body)``; no empty line -> all header."""
    match = _HEAD_END_RE.search(data, start)
    if match is None:
        return len(data), len(data)
    return match.start(), match.end()


def _header_lines(head: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Split a decoded header section into the start line and unfolded fields."""
    lines = head.split("\n")
    start_line = lines[0].removesuffix("\r")
    if "\r" in start_line:
        raise SipParseError("bare CR in start line")
    items: list[tuple[str, str, str]] = []
    token = _TOKEN_RE.fullmatch
    for raw in lines[1:]:
        line = raw.removesuffix("\r")
        if not line:
            continue  # only possible as the last line of a section without empty line
        if "\r" in line:
            raise SipParseError("bare CR in header line")
        if line[0] in " \t":
            if not items:
                raise SipParseError("continuation line before the first header")
            stripped = line.strip(" \t")
            if stripped:
                name, value, key = items[-1]
                items[-1] = (name, f"{value} {stripped}" if value else stripped, key)
            continue
        colon = line.find(":")
        if colon < 0:
            raise SipParseError(f"header line without colon: {line[:60]!r}")
        name = line[:colon].rstrip(" \t")
        if not token(name):
            raise SipParseError(f"bad header name {name[:60]!r}")
        items.append((name, line[colon + 1 :].strip(" \t"), header_key(name)))
    return start_line, items


def _content_length(values: list[str]) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError("more than one Content-Length (RFC 4475 3.3.9)")
    text = values[0].strip()
    if not _DIGITS_RE.fullmatch(text) or len(text) > 10:
        raise SipParseError(f"bad Content-Length {text[:40]!r}")
    return int(text)


def _parse_start_line(line: str) -> tuple[str, str, str]:
    """Classify the start line: ``("response", version, code+reason)`` or request parts."""
    if line[:4].upper() == "SIP/":
        return "response", line, ""
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(f"malformed Request-Line {line[:80]!r}")
    return parts[0], parts[1], parts[2]


def parse_message(data: bytes) -> Request | Response:
    """Parse one SIP message from a datagram or a framed stream message.

    Raises :class:`SipParseError` (with the status the peer deserves) on anything
    malformed, and never another exception for any input bytes.
    """
    data = bytes(data)
    start = 0
    n = len(data)
    while start < n and data[start] in (13, 10):  # RFC 3261 7.5: leading CRLFs
        start += 1
    if start >= n:
        raise SipParseError("empty message")
    head_end, body_start = _split_head(data, start)
    head = data[start:head_end].decode("utf-8", "surrogateescape")
    start_line, items = _header_lines(head)

    counts: dict[str, int] = {}
    lengths: list[str] = []
    for _, value, key in items:
        if key in _SINGLE_HEADERS:
            counts[key] = counts.get(key, 0) + 1
            if key == "content-length":
                lengths.append(value)
    for key, count in counts.items():
        if count > 1 and key != "content-length":
            raise SipParseError(f"more than one {_SINGLE_HEADERS[key]} header (RFC 4475 3.3.8)")
    length = _content_length(lengths)
    available = n - body_start
    if length is None:
        body = data[body_start:]
    elif length > available:
        raise SipParseError(
            f"Content-Length {length} larger than the {available} bytes received (RFC 4475 3.1.2.2)"
        )
    else:
        body = data[body_start : body_start + length]

    headers = Headers._trusted(items)
    kind, second, third = _parse_start_line(start_line)
    message: Request | Response
    if kind == "response":
        message = _parse_status_line(start_line, headers, body)
        for name in _CORE_HEADERS:
            if name not in headers:
                raise _missing(name)
    else:
        method, uri_text, version_text = kind, second, third
        if not _TOKEN_RE.fullmatch(method):
            raise SipParseError(f"bad method {method[:40]!r}")
        version_match = _REQUEST_VERSION_RE.fullmatch(version_text)
        if version_match is None:
            raise SipParseError(f"bad SIP-Version {version_text[:40]!r}")
        version = f"SIP/{int(version_match[1])}.{int(version_match[2])}"
        uri = SipUri.parse(uri_text)
        message = Request(method, uri, headers, body, version)
    # Validate the core headers once, filling the accessor cache (see module doc).
    if "via" in headers:
        message.vias  # noqa: B018
    if "from" in counts:
        message.from_  # noqa: B018
    if "to" in counts:
        message.to  # noqa: B018
    if "call-id" in counts:
        message.call_id  # noqa: B018
    if "cseq" in counts:
        message.cseq  # noqa: B018
    return message


def _parse_status_line(line: str, headers: Headers, body: bytes) -> Response:
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise SipParseError(f"malformed Status-Line {line[:80]!r}")
    version = parts[0].upper()
    if version != "SIP/2.0":
        raise SipParseError(f"unsupported version {parts[0][:20]!r}", status=505)
    code = parts[1]
    if not _STATUS_RE.fullmatch(code):
        raise SipParseError(f"bad status code {code[:20]!r} (RFC 4475 3.1.2.19)")
    reason = parts[2] if len(parts) == 3 else ""
    return Response(int(code), reason, headers, body, version)


# --------------------------------------------------------------------------- UAS checks


def _unsupported_required(req: Request, supported: frozenset[str]) -> list[str]:
    if req.method in ("ACK", "CANCEL"):
        return []
    lowered = {s.lower() for s in supported}
    return [opt for opt in req.headers.get_all("Require") if opt.lower() not in lowered]


def _acceptable(accept: list[str], media_type: str) -> bool:
    major = media_type.split("/", 1)[0]
    for entry in accept:
        candidate = entry.split(";", 1)[0].strip().lower()
        if candidate in (media_type, "*/*", f"{major}/*"):
            return True
    return False


#: Methods whose bodies this UA interprets (session descriptions).
_SDP_METHODS = frozenset({"INVITE", "UPDATE", "PRACK", "ACK"})


def check_request(
    req: Request,
    *,
    supported_extensions: frozenset[str] = frozenset({"replaces"}),
    accepted_body_types: frozenset[str] = frozenset({"application/sdp"}),
    implemented_methods: frozenset[str] | None = None,
) -> tuple[int, str] | None:
    """UAS-level validation (RFC 3261 section 8.2, RFC 4475 sections 3.1-3.4).

    Returns the ``(status, reason)`` the request deserves, or ``None`` when the UAS
    may process it. In order:

    1. SIP-Version other than 2.0 -> 505 (RFC 3261 21.5.6, RFC 4475 3.1.2.16);
    2. a missing or malformed To, From, Call-ID, CSeq or Via -> 400 (RFC 3261 8.1.1,
       RFC 4475 3.3.1); Max-Forwards is optional for a UAS but if present must be
       0..255 -> else 400 (RFC 4475 3.1.2.4); Max-Forwards 0 is accepted, since the
       request is addressed to us (RFC 4475 3.3.11);
    3. CSeq method differing from the request method -> 400 (RFC 4475 3.1.2.17/18);
    4. a Request-URI scheme other than sip, sips, tel -> 416 (RFC 3261 8.2.2.1,
       RFC 4475 3.3.2/3.3.3); a Request-URI with headers -> 400 (RFC 4475 3.1.2.11);
    5. a top Via branch that is only the magic cookie ``z9hG4bK`` -> 400
       (RFC 4475 3.2.1); a malformed Contact -> 400 (RFC 4475 3.1.2.13);
    6. a method outside ``implemented_methods`` (when given) -> 501 (RFC 3261 8.2.1);
    7. a Require option not in ``supported_extensions`` -> 420 (RFC 3261 8.2.2.3),
       never for ACK/CANCEL; the answer needs ``Unsupported`` (:func:`rejection_headers`);
    8. a body without Content-Type -> 400; for INVITE/UPDATE/PRACK/ACK a body type
       outside ``accepted_body_types`` -> 415, a Content-Encoding -> 415
       (RFC 3261 8.2.3, RFC 4475 3.3.6); an Accept that excludes every type we can
       answer with on INVITE/UPDATE -> 406 (RFC 4475 3.3.15).

    An ACK must never be answered: callers drop an ACK that fails these checks.
    """
    if req.version != "SIP/2.0":
        return 505, "Version Not Supported"
    for name in _CORE_HEADERS:
        if name not in req.headers:
            return 400, f"Missing {name} Header"
    try:
        req.call_id  # noqa: B018
        cseq_number, cseq_method = req.cseq
        req.from_  # noqa: B018
        req.to  # noqa: B018
        vias = req.vias
        req.max_forwards  # noqa: B018
        req.contacts  # noqa: B018
    except SipParseError as err:
        return err.status, err.reason
    del cseq_number
    if cseq_method != req.method:
        return 400, "CSeq Method Does Not Match Request Method"
    if req.uri.scheme not in ("sip", "sips", "tel"):
        return 416, "Unsupported URI Scheme"
    if req.uri.headers:
        return 400, "Headers Not Allowed In Request-URI"
    if vias[0].branch is not None and vias[0].branch.lower() == "z9hg4bk":
        return 400, "Malformed Via Branch"
    if implemented_methods is not None and req.method not in implemented_methods:
        return 501, "Not Implemented"
    if _unsupported_required(req, supported_extensions):
        return 420, "Bad Extension"
    if req.body:
        content_type = req.content_type
        if not content_type:
            return 400, "Missing Content-Type Header"
        if req.method in _SDP_METHODS:
            if content_type not in accepted_body_types:
                return 415, "Unsupported Media Type"
            encoding = req.headers.get("Content-Encoding")
            if encoding and encoding.lower() != "identity":
                return 415, "Unsupported Media Type"
    if req.method in ("INVITE", "UPDATE") and "Accept" in req.headers:
        accept = req.headers.get_all("Accept")
        if accept and not any(_acceptable(accept, t) for t in accepted_body_types):
            return 406, "Not Acceptable"
    return None


def rejection_headers(
    req: Request,
    status: int,
    *,
    supported_extensions: frozenset[str] = frozenset({"replaces"}),
    accepted_body_types: frozenset[str] = frozenset({"application/sdp"}),
) -> list[tuple[str, str]]:
    """Extra headers an error response from :func:`check_request` must carry.

    420 -> ``Unsupported`` listing the unknown Require options (RFC 3261 8.2.2.3);
    415/406 -> ``Accept`` listing what we take (RFC 3261 8.2.3, 21.4.7), plus
    ``Accept-Encoding`` for 415 and a 399 ``Warning`` for 406 (RFC 4475 3.3.15).
    """
    if status == 420:
        unknown = _unsupported_required(req, supported_extensions)
        return [("Unsupported", ", ".join(unknown))] if unknown else []
    if status in (415, 406):
        headers = [("Accept", ", ".join(sorted(accepted_body_types)))]
        if status == 415:
            headers.append(("Accept-Encoding", "identity"))
        else:  # RFC 4475 3.3.15: say why no answer body can be built
            headers.append(("Warning", '399 branchline "no acceptable body type in Accept"'))
        return headers
    return []


# --------------------------------------------------------------------------- responses


def make_response(
    req: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    contact: NameAddr | SipUri | str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """Build a response to ``req`` (RFC 3261 section 8.2.6.2).

    Copies every Via (in order), From, To (adding ``;tag=to_tag`` unless To already
    has a tag), Call-ID and CSeq; Timestamp for 100 (8.2.6.1); Record-Route for
    101-299 answers to dialog-creating methods (12.1.1). Headers missing from
    ``req`` are skipped, so this works on a request that failed
    :func:`check_request`. ``headers`` are appended as given.
    """
    out: list[tuple[str, str, str]] = []
    for _name, value, key in req.headers._items:
        if key == "via":
            out.append(("Via", value, "via"))
    from_value = req.headers.get("From")
    if from_value is not None:
        out.append(("From", from_value, "from"))
    to_value = req.headers.get("To")
    if to_value is not None:
        if to_tag and not _TAG_RE.search(_strip_angle(to_value)):
            to_value = f"{to_value};tag={to_tag}"
        out.append(("To", to_value, "to"))
    for name in ("Call-ID", "CSeq"):
        copied = req.headers.get(name)
        if copied is not None:
            out.append((name, copied, header_key(name)))
    if status == 100:
        timestamp = req.headers.get("Timestamp")
        if timestamp is not None:
            out.append(("Timestamp", timestamp, "timestamp"))
    if 100 < status < 300 and req.method in _DIALOG_METHODS:
        for _, value, key in req.headers._items:
            if key == "record-route":
                out.append(("Record-Route", value, key))
    if contact is not None:
        text = f"<{contact}>" if isinstance(contact, SipUri) else str(contact)
        out.append(("Contact", text, "contact"))
    if content_type is not None:
        out.append(("Content-Type", content_type, "content-type"))
    response_headers = Headers._trusted(out)
    for name, value in headers:
        response_headers.add(name, value)
    return Response(status, reason or default_reason(status), response_headers, body)


def _strip_angle(value: str) -> str:
    """The part of a name-addr after ``>`` (where header params live), or all of it."""
    gt = value.rfind(">")
    return value[gt + 1 :] if gt >= 0 else value


def _stable_tag(seed: str) -> str:
    return hashlib.blake2s(seed.encode("utf-8", "surrogateescape"), digest_size=5).hexdigest()


_ERROR_SCAN_LIMIT = 65536


def error_response_for(
    data: bytes, err: SipParseError, *, to_tag: str | None = None
) -> bytes | None:
    """Best-effort error response bytes for a request that failed to parse.

    Reads the raw header lines (unfolded, compact forms understood). If the bytes
    look like a request with a Via (topmost must parse; From, To, Call-ID and CSeq
    are copied when present), returns ``SIP/2.0 <err.status> <err.reason>`` with those
    headers copied and a To tag added (``to_tag`` or one derived from Call-ID and
    branch, so retransmissions get the same answer). Returns ``None`` (drop
    silently) for responses, ACKs, and garbage (RFC 3261 section 17.2.3 needs the
    Via branch to match the answer to the request).
    """
    try:
        raw = bytes(data[:_ERROR_SCAN_LIMIT])
    except TypeError:
        return None
    start = 0
    while start < len(raw) and raw[start] in (13, 10):
        start += 1
    head_end, _ = _split_head(raw, start)
    text = raw[start:head_end].decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    first = lines[0].strip()
    if not first or first[:4].upper() == "SIP/" or first.split(" ", 1)[0] == "ACK":
        return None
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw_line in lines[1:]:
        line = raw_line.rstrip("\r")
        if "\r" in line:
            current = None
            continue
        if line[:1] in (" ", "\t"):
            if current is not None:
                current[-1] = f"{current[-1]} {line.strip()}".strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        current = None
        if not colon or not _TOKEN_RE.fullmatch(name):
            continue
        key = header_key(name)
        if key in ("via", "from", "to", "call-id", "cseq"):
            current = found.setdefault(key, [])
            current.append(value.strip())
    if "via" not in found:
        return None  # nowhere to send an answer
    cseq = found["cseq"][0].split() if "cseq" in found else ["", ""]
    if "cseq" in found and (len(cseq) != 2 or not _DIGITS_RE.fullmatch(cseq[0])
                            or cseq[1] == "ACK"):
        return None
    call_id = found["call-id"][0] if "call-id" in found else ""
    first_via = found["via"][0]
    try:
        vias = split_list(first_via)
    except SipParseError:
        vias = [first_via.split(",", 1)[0]]
    if not vias:
        return None
    try:
        top = Via.parse(vias[0])
    except SipParseError:
        try:  # the parameters may be what is broken; sent-by is enough to route
            top = Via.parse(vias[0].split(";", 1)[0])
        except SipParseError:
            return None
    reason = err.reason.replace("\r", " ").replace("\n", " ")
    out = [f"SIP/2.0 {err.status} {reason}"]
    out.extend(f"Via: {value}" for value in found["via"])
    # RFC 4475 3.3.1 (insuf): a request missing From/To/Call-ID/CSeq still gets its
    # 400, with whichever of those it had copied.
    if "from" in found:
        out.append(f"From: {found['from'][0]}")
    if "to" in found:
        to_value = found["to"][0]
        if err.status != 100 and not _TAG_RE.search(_strip_angle(to_value)):
            tag = to_tag or _stable_tag(f"{call_id}|{top.branch}|{cseq[0]}")
            to_value = f"{to_value};tag={tag}"
        out.append(f"To: {to_value}")
    if call_id:
        out.append(f"Call-ID: {call_id}")
    if "cseq" in found:
        out.append(f"CSeq: {found['cseq'][0]}")
    out.append("Content-Length: 0")
    return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- streams


class StreamFramer:
    """Cut a TCP/TLS byte stream into whole SIP messages (RFC 3261 section 18.3).

    ``feed(data)`` returns every message completed so far, each as the exact bytes
    of header section plus Content-Length body, ready for :func:`parse_message`.
    CRLFs between messages (RFC 5626 keep-alives) are skipped. On a stream the
    Content-Length header is mandatory; a missing, negative, repeated or
    non-numeric one, a header section over ``max_header_bytes`` or a body over
    ``max_body_bytes`` raises :class:`SipParseError`: the framing is lost and the
    connection must be closed (RFC 4475 3.1.2.3). After an error every further
    ``feed`` raises the same error.
    """

    def __init__(self, *, max_header_bytes: int = 65536, max_body_bytes: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._scan_from = 0
        self._pending_total: int | None = None  # length of the message being received
        self._error: SipParseError | None = None
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete messages now available.

        If the framing breaks after some messages were cut in this call, those are
        returned and the error is kept in :attr:`error` and raised by the next call.
        """
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: list[bytes] = []
        try:
            self._drain(out)
        except SipParseError as err:
            self._error = err
            self._buffer.clear()
            if not out:
                raise
        return out

    @property
    def error(self) -> SipParseError | None:
        """The framing error, once the stream is beyond repair (close the connection)."""
        return self._error

    def _drain(self, out: list[bytes]) -> None:
        buf = self._buffer
        while True:
            if self._pending_total is None:
                skip = 0
                while skip < len(buf) and buf[skip] in (13, 10):
                    skip += 1
                if skip:
                    del buf[:skip]
                    self._scan_from = 0
                if not buf:
                    return
                match = _HEAD_END_RE.search(buf, self._scan_from)
                if match is None:
                    if len(buf) > self.max_header_bytes:
                        raise SipParseError("header section too large", status=513)
                    self._scan_from = max(0, len(buf) - 3)
                    return
                if match.start() > self.max_header_bytes:
                    raise SipParseError("header section too large", status=513)
                head = bytes(buf[: match.start()]).decode("utf-8", "surrogateescape")
                length = _stream_content_length(head)
                if length > self.max_body_bytes:
                    raise SipParseError("body too large", status=513)
                self._pending_total = match.end() + length
            total = self._pending_total
            if len(buf) < total:
                return
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._pending_total = None
            self._scan_from = 0


def _stream_content_length(head: str) -> int:
    """Content-Length of a framed header section; tolerant of other bad lines."""
    values: list[str] = []
    collecting = False
    for raw_line in head.split("\n"):
        line = raw_line.rstrip("\r")
        if line[:1] in (" ", "\t"):
            if collecting:
                values[-1] = f"{values[-1]} {line.strip()}"
            continue
        name, colon, value = line.partition(":")
        collecting = bool(colon) and header_key(name.strip()) == "content-length"
        if collecting:
            values.append(value.strip())
    length = _content_length(values)
    if length is None:
        raise SipParseError("missing Content-Length on a stream transport")
    return length
