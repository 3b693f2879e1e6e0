"""SIP URIs, name-addr values and Via values (RFC 3261 sections 19.1, 20, 25.1).

Theory of operation
-------------------
All three types are frozen dataclasses built by a ``parse`` classmethod and turned
back into text by ``str()``. Parsing is a hand-written left-to-right scan with a few
precompiled, backtracking-free character-class checks: no regular expression ever
sees a whole header value, so hostile input costs linear time.

* Parsed values keep the *wire spelling* of user parts, parameters and URI headers
  (``%75se%72`` stays escaped) so that a value round-trips unchanged; compare with
  :meth:`SipUri.same_address` (RFC 3261 section 19.1.4) rather than ``==``.
* Schemes are lower-cased. ``sip``/``sips`` URIs are parsed into their parts and
  validated. A ``tel`` URI (RFC 3966) is kept as a ``SipUri`` with ``scheme="tel"``,
  ``host`` = the number and its parameters in ``params``. Any other scheme is kept
  *opaque*: ``host`` holds everything after the colon, nothing else is set. So a
  Request-URI with a scheme we do not serve still parses, and the UAS check answers
  416 (RFC 4475 section 3.3.2) instead of the parser answering 400.
* Parameter lists are ``tuple[(name, value | None)]`` in wire order; ``None`` marks a
  parameter without ``=value`` (``;lr``). ``param(name)`` looks a name up
  case-insensitively and returns its value, ``""`` for a value-less parameter and
  ``None`` when absent. Quoted parameter values keep their quotes.
* Every syntax error raises :class:`SipParseError` (status 400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from appliance.sip.errors import SipParseError

__all__ = [
    "NameAddr",
    "Params",
    "SipUri",
    "Via",
    "format_params",
    "parse_params",
    "quote_string",
    "split_quoted",
]

Params = tuple[tuple[str, str | None], ...]

# RFC 3261 section 25.1 character classes, as fullmatch-only character sets.
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN_RE = re.compile(f"[{_TOKEN_CHARS}]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# user = 1*( unreserved / escaped / user-unreserved ), password likewise.
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_PASSWORD_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,%]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9\-_.]+")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
# paramchar = param-unreserved / unreserved / escaped
_URI_PARAM_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+")
# hname / hvalue = hnv-unreserved / unreserved / escaped
_URI_HEADER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%]*")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# generic-param value: token / host / quoted-string (quoted strings are checked apart)
_GEN_VALUE_RE = re.compile(f"[{_TOKEN_CHARS}:\\[\\]]+")
_OPAQUE_RE = re.compile(r"[\x21-\x7e\x80-\U0010ffff]*")
_NEEDS_ESCAPE_RE = re.compile(r'["\\\x00-\x08\x0a-\x1f\x7f]')
_HEX2_RE = re.compile(rb"[0-9A-Fa-f]{2}")
_WS_RE = re.compile(r"[ \t\r\n]+")
_DIGITS_RE = re.compile(r"[0-9]{1,10}")


def _fail(detail: str) -> SipParseError:
    return SipParseError(detail)


def _parse_port(text: str, where: str) -> int:
    text = text.strip()
    if not _DIGITS_RE.fullmatch(text):
        raise _fail(f"bad port in {where}: {text!r}")
    port = int(text)
    if port > 65535:
        raise _fail(f"port out of range in {where}: {port}")
    return port


def _lookup(params: Params, name: str) -> str | None:
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return "" if value is None else value
    return None


def _with(params: Params, name: str, value: str | None) -> Params:
    lname = name.lower()
    kept = tuple(p for p in params if p[0].lower() != lname)
    return (*kept, (name, value))


def _without(params: Params, name: str) -> Params:
    lname = name.lower()
    return tuple(p for p in params if p[0].lower() != lname)


def split_quoted(text: str, sep: str, *, angle: bool = False) -> list[str]:
    """Split ``text`` on ``sep`` outside quoted strings (and ``<...>`` if ``angle``).

    Backslash escapes inside quotes are honoured (RFC 3261 section 25.1,
    quoted-pair). Pieces are returned unstripped; an unterminated quote or
    bracket raises :class:`SipParseError`.
    """
    if '"' not in text and not (angle and "<" in text):
        return text.split(sep)
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    in_quote = False
    in_angle = False
    while i < n:
        ch = text[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif in_angle:
            if ch == ">":
                in_angle = False
        elif ch == '"':
            in_quote = True
        elif angle and ch == "<":
            in_angle = True
        elif ch == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_quote:
        raise _fail("unterminated quoted string")
    if in_angle:
        raise _fail("unterminated <...>")
    parts.append(text[start:])
    return parts


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Decode the quoted string opening at ``text[start] == '"'``.

    Returns the unescaped content and the index just past the closing quote.
    """
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            nxt = text[i + 1]
            if nxt in "\r\n":
                raise _fail("bad quoted-pair")
            out.append(nxt)
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        if ch in "\r\n":
            break
        out.append(ch)
        i += 1
    raise _fail("unterminated quoted string")


def quote_string(text: str) -> str:
    """Render ``text`` as a quoted-string (RFC 3261 section 25.1).

    ``"``, ``\\`` and control characters are written as quoted-pairs; CR and LF,
    which no quoted-pair can carry, become spaces.
    """
    if _NEEDS_ESCAPE_RE.search(text) is None:
        return f'"{text}"'
    out = ['"']
    for ch in text:
        if ch in "\r\n":
            out.append(" ")
        elif ch in '"\\' or (ch < " " and ch != "\t") or ch == "\x7f":
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _check_quoted_value(value: str) -> None:
    content, end = _read_quoted(value, 0)
    del content
    if end != len(value):
        raise _fail(f"junk after quoted parameter value: {value!r}")


def parse_params(text: str, *, where: str = "header") -> Params:
    """Parse ``;name[=value]`` generic parameters (RFC 3261 section 25.1, generic-param).

    ``text`` starts just after the first ``;``. LWS around ``;`` and ``=`` is
    allowed (the "tortuous" spellings of RFC 4475 section 3.1.1.1).
    """
    out: list[tuple[str, str | None]] = []
    for piece in split_quoted(text, ";"):
        name, eq, value = piece.partition("=")
        name = name.strip()
        if not _TOKEN_RE.fullmatch(name):
            raise _fail(f"bad parameter name {name!r} in {where}")
        if not eq:
            out.append((name, None))
            continue
        value = value.strip()
        if value.startswith('"'):
            _check_quoted_value(value)
        elif not _GEN_VALUE_RE.fullmatch(value):
            raise _fail(f"bad value for parameter {name!r} in {where}")
        out.append((name, value))
    return tuple(out)


def format_params(params: Params) -> str:
    """``;name=value`` text for ``params`` (values are written as stored)."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _parse_uri_params(text: str) -> Params:
    out: list[tuple[str, str | None]] = []
    for piece in text.split(";"):
        name, eq, value = piece.partition("=")
        if not _URI_PARAM_RE.fullmatch(name) or _BAD_ESCAPE_RE.search(name):
            raise _fail(f"bad URI parameter {piece!r}")
        if not eq:
            out.append((name, None))
            continue
        if not _URI_PARAM_RE.fullmatch(value) or _BAD_ESCAPE_RE.search(value):
            raise _fail(f"bad URI parameter value {piece!r}")
        out.append((name, value))
    return tuple(out)


def _parse_uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for piece in text.split("&"):
        name, eq, value = piece.partition("=")
        if (
            not eq
            or not name
            or not _URI_HEADER_RE.fullmatch(name)
            or not _URI_HEADER_RE.fullmatch(value)
            or _BAD_ESCAPE_RE.search(piece)
        ):
            raise _fail(f"bad URI header {piece!r}")
        out.append((name, value))
    return tuple(out)


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    out = bytearray()
    raw = text.encode("utf-8", "surrogateescape")
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b == 0x25 and i + 2 < n and _HEX2_RE.fullmatch(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        out.append(b)
        i += 1
    return out.decode("utf-8", "surrogateescape")


def _split_hostport(text: str, where: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 references in brackets)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _fail(f"unterminated IPv6 reference in {where}")
        host = text[: end + 1]
        rest = text[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            raise _fail(f"bad IPv6 reference in {where}: {host!r}")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise _fail(f"junk after IPv6 reference in {where}")
        return host, _parse_port(rest[1:], where)
    host, colon, port_text = text.partition(":")
    if not _HOSTNAME_RE.fullmatch(host):
        raise _fail(f"bad host in {where}: {host!r}")
    if not colon:
        return host, None
    return host, _parse_port(port_text, where)


@dataclass(frozen=True, slots=True)
class SipUri:
    """A SIP/SIPS URI (RFC 3261 section 19.1), a tel URI, or an opaque URI.

    See the module docstring for how ``tel`` and unknown schemes are stored.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raises :class:`SipParseError` (400) when malformed."""
        colon = text.find(":")
        if colon <= 0:
            raise _fail(f"URI without scheme: {text[:80]!r}")
        scheme = text[:colon]
        if not _SCHEME_RE.fullmatch(scheme):
            raise _fail(f"bad URI scheme {scheme[:40]!r}")
        scheme = scheme.lower()
        rest = text[colon + 1 :]
        if not rest or not _OPAQUE_RE.fullmatch(rest):
            raise _fail("empty URI, or whitespace or control characters in URI")
        if scheme in ("sip", "sips"):
            return cls._parse_sip(scheme, rest)
        if scheme == "tel":
            number, semi, param_text = rest.partition(";")
            if not number or not _URI_PARAM_RE.fullmatch(number):
                raise _fail(f"bad tel URI number {number[:40]!r}")
            return cls(
                scheme="tel", host=number, params=_parse_uri_params(param_text) if semi else ()
            )
        if any(c in rest for c in '<>"'):
            raise _fail("'<', '>' or '\"' in URI")
        return cls(scheme=scheme, host=rest)

    @classmethod
    def _parse_sip(cls, scheme: str, rest: str) -> SipUri:
        user: str | None = None
        password: str | None = None
        # '@' cannot appear unescaped in parameters, headers or the host, so the
        # last '@' ends the userinfo even when the user part holds ';' or '?'.
        at = rest.rfind("@")
        if at >= 0:
            userinfo = rest[:at]
            rest = rest[at + 1 :]
            user_text, colon, pass_text = userinfo.partition(":")
            if not _USER_RE.fullmatch(user_text) or _BAD_ESCAPE_RE.search(user_text):
                raise _fail(f"bad user part {user_text[:40]!r}")
            if colon:
                if not _PASSWORD_RE.fullmatch(pass_text) or _BAD_ESCAPE_RE.search(pass_text):
                    raise _fail("bad password in URI")
                password = pass_text
            user = user_text
        header_text = ""
        q = rest.find("?")
        if q >= 0:
            header_text = rest[q + 1 :]
            rest = rest[:q]
        param_text = ""
        semi = rest.find(";")
        if semi >= 0:
            param_text = rest[semi + 1 :]
            rest = rest[:semi]
        host, port = _split_hostport(rest, "URI")
        params = _parse_uri_params(param_text) if semi >= 0 else ()
        headers = _parse_uri_headers(header_text) if q >= 0 else ()
        return cls(scheme, user, password, host, port, params, headers)

    def __str__(self) -> str:
        if self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.host}{format_params(self.params)}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        parts.append(format_params(self.params))
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(parts)

    @property
    def is_sip(self) -> bool:
        """True for ``sip:`` and ``sips:`` URIs."""
        return self.scheme in ("sip", "sips")

    @property
    def host_port(self) -> str:
        """``host[:port]`` as written in a Via sent-by or a Contact."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def param(self, name: str) -> str | None:
        """Value of URI parameter ``name``; ``""`` if value-less, ``None`` if absent."""
        return _lookup(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        """Copy with parameter ``name`` set (replacing any previous value)."""
        return replace(self, params=_with(self.params, name, value))

    def without_param(self, name: str) -> SipUri:
        """Copy without parameter ``name``."""
        return replace(self, params=_without(self.params, name))

    def replace(self, **changes: Any) -> SipUri:
        """Copy with the given fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)

    def same_address(self, other: SipUri) -> bool:
        """URI equality per RFC 3261 section 19.1.4, simplified.

        Scheme, user (unescaped, case-sensitive), password, host (case-insensitive),
        port, the ``transport``/``user``/``ttl``/``method``/``maddr`` parameters
        when present on either side, and any parameter present on both must match.
        """
        if self.scheme != other.scheme:
            return False
        if not self.is_sip:
            return self.host.lower() == other.host.lower() and self.params == other.params
        if (self.user is None) != (other.user is None):
            return False
        if self.user is not None and other.user is not None:
            if _unescape(self.user) != _unescape(other.user):
                return False
        if self.password != other.password:
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = {k.lower(): (v or "").lower() for k, v in self.params}
        theirs = {k.lower(): (v or "").lower() for k, v in other.params}
        for key in ("transport", "user", "ttl", "method", "maddr"):
            if (key in mine or key in theirs) and mine.get(key) != theirs.get(key):
                return False
        return all(theirs[k] == v for k, v in mine.items() if k in theirs)


def _check_display_tokens(text: str) -> str:
    words = text.split()
    for word in words:
        if not _TOKEN_RE.fullmatch(word):
            raise _fail(f"display name is not a token list: {text[:60]!r}")
    return " ".join(words)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/Route value: ``[display] <uri> *(;param)`` (RFC 3261 20.10).

    ``display`` is the decoded display name (quotes and escapes removed) or ``None``.
    ``params`` are the *header* parameters (``tag``, ``expires``, ``q``...), never the
    URI's own. In the addr-spec form (no ``<>``), everything after the first ``;``
    is a header parameter, and the URI may not contain ``,``, ``;`` or ``?`` (a URI
    with headers must be in angle brackets; RFC 4475 section 3.1.2.13).
    ``str()`` always writes the ``<uri>`` form, quoting the display name.
    """

    display: str | None
    uri: SipUri
    params: Params = ()
    #: the literal ``*`` of ``Contact: *`` (RFC 3261 section 10.2.2)
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse a name-addr / addr-spec with parameters; 400 on syntax errors."""
        s = text.strip()
        if not s:
            raise _fail("empty name-addr")
        display: str | None = None
        rest: str
        if s == "*":
            return cls(None, SipUri(scheme="sip", host="*"), (), True)
        if s[0] == '"':
            display, end = _read_quoted(s, 0)
            rest = s[end:].lstrip()
            if not rest.startswith("<"):
                raise _fail("quoted display name not followed by <URI>")
        else:
            lt = s.find("<")
            if lt >= 0:
                before = s[:lt]
                if before.strip():
                    display = _check_display_tokens(before)
                rest = s[lt:]
            else:
                uri_text, semi, param_text = s.partition(";")
                uri_text = uri_text.strip()
                if any(c in uri_text for c in ",?") or _WS_RE.search(uri_text):
                    raise _fail(f"URI with ',', '?' or spaces must be in <>: {uri_text[:60]!r}")
                uri = SipUri.parse(uri_text)
                return cls(None, uri, parse_params(param_text) if semi else ())
        # rest starts with '<'
        gt = rest.find(">")
        if gt < 0:
            raise _fail("'<' without '>'")
        uri_text = rest[1:gt]
        if _WS_RE.search(uri_text):
            raise _fail("whitespace inside <URI> (RFC 4475 3.1.2.14)")
        uri = SipUri.parse(uri_text)
        after = rest[gt + 1 :].strip()
        params: Params = ()
        if after:
            if after[0] != ";":
                raise _fail(f"junk after <URI>: {after[:40]!r}")
            params = parse_params(after[1:])
        return cls(display, uri, params)

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        head = f"{quote_string(self.display)} " if self.display is not None else ""
        return f"{head}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 section 19.3), or ``None``."""
        value = _lookup(self.params, "tag")
        return value or None

    def param(self, name: str) -> str | None:
        """Header parameter value; ``""`` if value-less, ``None`` if absent."""
        return _lookup(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        """Copy with ``tag`` set."""
        return replace(self, params=_with(self.params, "tag", tag))

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        """Copy with header parameter ``name`` set."""
        return replace(self, params=_with(self.params, name, value))

    def without_param(self, name: str) -> NameAddr:
        """Copy without header parameter ``name``."""
        return replace(self, params=_without(self.params, name))


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 section 20.42): ``SIP/2.0/transport host[:port];params``.

    ``protocol`` keeps the sent-protocol name/version (``SIP/2.0``); other versions
    parse so that the UAS can answer 505 rather than 400.
    """

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one via-parm; LWS is allowed around ``/``, ``:``, ``;`` and ``=``."""
        parts = text.split("/", 2)
        if len(parts) != 3:
            raise _fail(f"bad Via sent-protocol: {text[:60]!r}")
        name = parts[0].strip()
        version = parts[1].strip()
        rest = parts[2].lstrip()
        if not _TOKEN_RE.fullmatch(name) or not _TOKEN_RE.fullmatch(version):
            raise _fail(f"bad Via protocol: {text[:60]!r}")
        ws = _WS_RE.search(rest)
        if ws is None:
            raise _fail(f"Via without sent-by: {text[:60]!r}")
        transport = rest[: ws.start()]
        if not _TOKEN_RE.fullmatch(transport):
            raise _fail(f"bad Via transport: {transport[:40]!r}")
        remainder = rest[ws.end() :]
        sent_by, semi, param_text = remainder.partition(";")
        sent_by = sent_by.strip()
        if sent_by.startswith("["):
            host, port = _split_hostport(sent_by.replace(" ", "").replace("\t", ""), "Via")
        else:
            host_text, colon, port_text = sent_by.partition(":")
            host_text = host_text.strip()
            if not _HOSTNAME_RE.fullmatch(host_text):
                raise _fail(f"bad Via host: {host_text[:60]!r}")
            host = host_text
            port = _parse_port(port_text, "Via") if colon else None
        params = parse_params(param_text, where="Via") if semi else ()
        return cls(transport.upper(), host, port, params, f"{name.upper()}/{version}")

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        """Parameter value; ``""`` if value-less, ``None`` if absent."""
        return _lookup(self.params, name)

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (RFC 3261 section 8.1.1.7), or ``None``."""
        return _lookup(self.params, "branch") or None

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (RFC 3261 section 18.2.1), or ``None``."""
        return _lookup(self.params, "received") or None

    @property
    def rport(self) -> int | None:
        """The filled-in ``rport`` value (RFC 3581), or ``None`` if absent or empty."""
        value = _lookup(self.params, "rport")
        if value and _DIGITS_RE.fullmatch(value) and int(value) <= 65535:
            return int(value)
        return None

    @property
    def rport_requested(self) -> bool:
        """True when the ``rport`` parameter is present, with or without value."""
        return _lookup(self.params, "rport") is not None

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as written."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_param(self, name: str, value: str | None = None) -> Via:
        """Copy with parameter ``name`` set."""
        return replace(self, params=_with(self.params, name, value))

    def without_param(self, name: str) -> Via:
        """Copy without parameter ``name``."""
        return replace(self, params=_without(self.params, name))
