"""The node link's wire format: length-prefixed JSON messages (pure: no I/O, no clock).

Theory of operation
-------------------
A node opens one QUIC connection to the controller (ALPN :data:`ALPN`) and on it one
bidirectional stream; everything both sides say travels on that stream as frames::

    +----------------------+---------------------------------------+
    | length: uint32, big- | UTF-8 JSON object of ``length`` bytes |
    | endian (<= 16 MiB)   | {"type": "<name>", <fields>...}        |
    +----------------------+---------------------------------------+

:class:`FrameDecoder` takes the stream's bytes as they come (any split: whole frames,
byte by byte) and returns the complete messages; :func:`encode` is the inverse. Each
message is validated field by field into a frozen dataclass. Who may send what:

=============  ==========================================  ==============================
sender         message                                     fields
=============  ==========================================  ==============================
node           :class:`Enrol` (enrolment connection only)  claim, csr (PEM)
node           :class:`Hello` (first on a certified one)   node_id, applied_version (0: none)
node           :class:`Ack`                                version, ok, error (if not ok)
node           :class:`Heartbeat`                          status (object)
controller     :class:`Enrolled`                           node_id, cert (PEM), ca (PEM)
controller     :class:`Refused`                            reason
controller     :class:`PushPlan` (``"plan"``)              version, plan (object)
=============  ==========================================  ==============================

Fields are exact: a missing field, a field of the wrong type, an unknown field, an
unknown type or a type the sender may not send is a :class:`ProtocolError` (the peer's
fault; the link is closed with its ``reason``). New fields or messages come with a new
ALPN (``branchline-link/2``), never silently. A frame longer than :data:`MAX_FRAME` is
refused from its header alone, before its body is buffered.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from appliance.ids import ID_RE

ALPN: Final = "branchline-link/1"
MAX_FRAME: Final = 16 * 1024 * 1024
HEADER: Final = struct.Struct(">I")
MAX_PEM: Final = 64 * 1024
MAX_TEXT: Final = 4096  # reasons and errors
MAX_CLAIM: Final = 128
MAX_VERSION: Final = 2**63 - 1  # what a SQL BIGINT holds

Sender = Literal["node", "controller"]


class CloseCode(enum.IntEnum):
    """Application error codes of the QUIC CONNECTION_CLOSE that ends a link."""

    NORMAL = 0
    PROTOCOL = 1  # a malformed frame or message, or one out of place
    UNAUTHORISED = 2  # certificate refused or revoked, or a refused enrolment
    TIMEOUT = 3  # the node was silent for three heartbeat intervals
    REPLACED = 4  # the same node connected again
    SHUTDOWN = 5  # the controller is stopping
    INTERNAL = 6  # a bug or a backend failure on the closing side


class LinkError(Exception):
    """Base of the node link's errors."""


class ProtocolError(LinkError):
    """The peer sent something the protocol does not allow (remote fault)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EncodeError(LinkError):
    """A message of ours cannot be put on the wire (local fault): too large, or not
    JSON (NaN, a non-string key...)."""


# ----------------------------------------------------------------------------- messages
@dataclass(frozen=True)
class Enrol:
    """node -> controller, on a connection without a client certificate: redeem a
    one-time claim code and have ``csr`` signed. The code never appears in a repr."""

    TYPE: ClassVar[str] = "enrol"
    claim: str = field(repr=False)
    csr: str = field(repr=False)


@dataclass(frozen=True)
class Hello:
    """node -> controller, first message on a certified connection."""

    TYPE: ClassVar[str] = "hello"
    node_id: str
    applied_version: int  # 0: no plan applied yet


@dataclass(frozen=True)
class Ack:
    """node -> controller: plan ``version`` was applied (``ok``) or refused (``error``)."""

    TYPE: ClassVar[str] = "ack"
    version: int
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class Heartbeat:
    """node -> controller, every heartbeat interval: the node's status document."""

    TYPE: ClassVar[str] = "heartbeat"
    status: dict[str, Any]


@dataclass(frozen=True)
class Enrolled:
    """controller -> node: the node's identity and certificate, and the CA's."""

    TYPE: ClassVar[str] = "enrolled"
    node_id: str
    cert: str = field(repr=False)
    ca: str = field(repr=False)


@dataclass(frozen=True)
class Refused:
    """controller -> node: the request is refused; the connection closes after it."""

    TYPE: ClassVar[str] = "refused"
    reason: str


@dataclass(frozen=True)
class PushPlan:
    """controller -> node: apply this plan (``"plan"`` on the wire)."""

    TYPE: ClassVar[str] = "plan"
    version: int
    plan: dict[str, Any] = field(repr=False)


NodeMessage = Enrol | Hello | Ack | Heartbeat
ControllerMessage = Enrolled | Refused | PushPlan
Message = NodeMessage | ControllerMessage

_BY_SENDER: Final[dict[str, dict[str, type[Message]]]] = {
    "node": {m.TYPE: m for m in (Enrol, Hello, Ack, Heartbeat)},
    "controller": {m.TYPE: m for m in (Enrolled, Refused, PushPlan)},
}


# ----------------------------------------------------------------------------- encoding
def to_dict(message: Message) -> dict[str, Any]:
    """The message as its JSON object (``type`` first; an :class:`Ack`'s absent
    ``error`` is left out)."""
    doc: dict[str, Any] = {"type": message.TYPE}
    if isinstance(message, Enrol):
        doc.update(claim=message.claim, csr=message.csr)
    elif isinstance(message, Hello):
        doc.update(node_id=message.node_id, applied_version=message.applied_version)
    elif isinstance(message, Ack):
        doc.update(version=message.version, ok=message.ok)
        if message.error is not None:
            doc["error"] = message.error
    elif isinstance(message, Heartbeat):
        doc["status"] = message.status
    elif isinstance(message, Enrolled):
        doc.update(node_id=message.node_id, cert=message.cert, ca=message.ca)
    elif isinstance(message, Refused):
        doc["reason"] = message.reason
    else:
        doc.update(version=message.version, plan=message.plan)
    return doc


def encode(message: Message) -> bytes:
    """One frame: the 4-byte length, then the message's compact JSON.

    Raises :class:`EncodeError` when the message is not JSON or its frame would exceed
    :data:`MAX_FRAME`.
    """
    try:
        body = json.dumps(to_dict(message), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"{message.TYPE} is not JSON: {exc}") from None
    if len(body) > MAX_FRAME:
        raise EncodeError(f"{message.TYPE} is {len(body)} bytes, over {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


# ----------------------------------------------------------------------------- decoding
class FrameDecoder:
    """Turns one direction of the link stream into messages.

    ``sender`` is who writes the bytes fed in: a controller decodes ``"node"`` messages,
    a node ``"controller"`` ones. After a :class:`ProtocolError` the decoder stays
    failed (every later :meth:`feed` raises the same error): a stream cannot be
    resynchronised once a frame is bad.
    """

    def __init__(self, sender: Sender) -> None:
        self.sender: Sender = sender
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Add ``data`` and return the messages it completes, in order."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: list[Message] = []
        try:
            while len(self._buffer) >= HEADER.size:
                (length,) = HEADER.unpack_from(self._buffer)
                if length > MAX_FRAME:
                    raise ProtocolError(f"frame of {length} bytes, over {MAX_FRAME}")
                end = HEADER.size + length
                if len(self._buffer) < end:
                    break
                body = bytes(self._buffer[HEADER.size:end])
                del self._buffer[:end]
                out.append(decode_body(body, self.sender))
        except ProtocolError as exc:
            self._error = exc
            self._buffer.clear()
            raise
        return out


def decode_body(body: bytes, sender: Sender) -> Message:
    """One frame's body (without the length) as a message from ``sender``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("frame is not UTF-8") from None
    try:
        doc = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not JSON: {str(exc)[:200]}") from None
    return decode_message(doc, sender)


def decode_message(doc: Any, sender: Sender) -> Message:
    """A parsed JSON document as a validated message from ``sender``."""
    if not isinstance(doc, dict):
        raise ProtocolError("a message is a JSON object")
    kind = doc.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("message has no type")
    cls = _BY_SENDER[sender].get(kind)
    if cls is None:
        known = any(kind in table for table in _BY_SENDER.values())
        raise ProtocolError(
            f"a {sender} may not send {kind!r}" if known else f"unknown message type {kind!r}"
        )
    f = _Fields(kind, doc)
    message: Message
    if cls is Enrol:
        message = Enrol(claim=f.text("claim", MAX_CLAIM),
                        csr=f.pem("csr", "CERTIFICATE REQUEST"))
    elif cls is Hello:
        message = Hello(node_id=f.node_id(), applied_version=f.version("applied_version", 0))
    elif cls is Ack:
        ok = f.boolean("ok")
        error = f.optional_text("error", MAX_TEXT)
        if ok and error is not None:
            raise ProtocolError("ack: error given with ok true")
        message = Ack(version=f.version("version", 1), ok=ok, error=error)
    elif cls is Heartbeat:
        message = Heartbeat(status=f.obj("status"))
    elif cls is Enrolled:
        message = Enrolled(node_id=f.node_id(), cert=f.pem("cert", "CERTIFICATE"),
                           ca=f.pem("ca", "CERTIFICATE"))
    elif cls is Refused:
        message = Refused(reason=f.text("reason", MAX_TEXT))
    else:
        message = PushPlan(version=f.version("version", 1), plan=f.obj("plan"))
    f.done()
    return message


class _Fields:
    """Takes a message's fields one by one; :meth:`done` refuses any left over."""

    def __init__(self, kind: str, doc: dict[str, Any]) -> None:
        self.kind = kind
        self.doc = doc
        self.seen = {"type"}

    def _get(self, name: str) -> Any:
        self.seen.add(name)
        if name not in self.doc:
            raise ProtocolError(f"{self.kind}: missing {name}")
        return self.doc[name]

    def _bad(self, name: str, what: str) -> ProtocolError:
        return ProtocolError(f"{self.kind}: {name} must be {what}")

    def text(self, name: str, limit: int) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not 1 <= len(value) <= limit:
            raise self._bad(name, f"a string of 1 to {limit} characters")
        return value

    def optional_text(self, name: str, limit: int) -> str | None:
        if self.doc.get(name) is None:
            self.seen.add(name)
            return None
        return self.text(name, limit)

    def pem(self, name: str, label: str) -> str:
        value = self._get(name)
        if (not isinstance(value, str) or len(value) > MAX_PEM
                or f"-----BEGIN {label}-----" not in value
                or f"-----END {label}-----" not in value):
            raise self._bad(name, f"a PEM {label.lower()}")
        return value

    def node_id(self) -> str:
        value = self._get("node_id")
        if not isinstance(value, str) or not ID_RE.fullmatch(value):
            raise self._bad("node_id", "a node id (lower case letters, digits, -)")
        return value

    def version(self, name: str, minimum: int) -> int:
        value = self._get(name)
        if (not isinstance(value, int) or isinstance(value, bool)
                or not minimum <= value <= MAX_VERSION):
            raise self._bad(name, f"an integer from {minimum}")
        return value

    def boolean(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return value

    def obj(self, name: str) -> dict[str, Any]:
        value = self._get(name)
        if not isinstance(value, dict):
            raise self._bad(name, "an object")
        return value

    def done(self) -> None:
        extra = sorted(set(self.doc) - self.seen)
        if extra:
            raise ProtocolError(f"{self.kind}: unknown field {extra[0]!r}")


def _no_constant(name: str) -> Any:
    raise ProtocolError(f"frame is not JSON: {name} is not a number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ProtocolError("frame has a duplicate key")
    return doc
