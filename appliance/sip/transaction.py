"""SIP transactions (RFC 3261 section 17, RFC 6026), sans-I/O.

Theory of operation
===================

A :class:`TransactionLayer` is fed datagrams (``receive``), requests and responses from
the transaction user (``send_request``, ``send_response``, ``cancel``) and the clock
(``tick``).  It never reads a socket or a clock itself: every entry point takes ``now``
(monotonic seconds) and the caller drains three outputs afterwards:

* ``events()``   -- what happened, as frozen past-tense dataclasses for the TU;
* ``outgoing()`` -- ``(bytes, (host, port))`` pairs to put on the wire;
* ``next_deadline()`` -- when ``tick`` must be called next (``None``: no timer runs).

There are four kinds of transaction, each a state machine written as a table below
(``_TABLES``): ``(state, stimulus) -> (next state, actions)``.  Stimuli are messages from
the peer (``RX_*``), responses from the TU (``TU_*``) and timers (``TIMER_*``).  A pair
missing from a table is a bug or a TU mistake and raises :class:`TransactionError` naming
both; the tables are total for everything a peer can send, so peer input never raises.

Timers belong to states: entering a state starts the timers listed in ``_ENTRY_TIMERS``
for it and leaving a state cancels every timer the new state does not list.  The
retransmission timers (A, E, G) are not used over reliable transports and the
"wait for retransmissions" timers (D, I, J, K) are zero there, which makes those
states pass straight through (RFC 3261 17.1.1.2, 17.1.2.2, 17.2.1, 17.2.2).

INVITE client (17.1.1, with RFC 6026 "Accepted")::

    Calling --1xx--> Proceeding --300-699 / send ACK--> Completed --D--> Terminated
    Calling --2xx--> Accepted --M--> Terminated   (2xx retransmissions go to the TU)
    Calling --B--> Terminated (TransactionTimedOut); A retransmits the INVITE.

The ACK for a non-2xx final response is built and sent here, with the INVITE's branch.
The ACK for a 2xx is the TU's (end to end, new branch): ``send_stateless``.
A CANCEL (9.1) is only sent once a provisional response arrived; before that it is held
and sent with the first 1xx, or dropped if a final response or timer B ends the INVITE
first (the INVITE's outcome is then the answer).  After a CANCEL has been sent, an INVITE
still without a final response after 64*T1 is timed out (9.1).

Non-INVITE client (17.1.2)::

    Trying --1xx--> Proceeding --final--> Completed --K--> Terminated
    Trying/Proceeding --F--> Terminated (TransactionTimedOut); E retransmits.

INVITE server (17.2.1, with RFC 6026 "Accepted")::

    Proceeding --TU 300-699--> Completed --ACK--> Confirmed --I--> Terminated
    Proceeding --TU 2xx--> Accepted --L--> Terminated
    Completed --H--> Terminated (TransactionTimedOut); G retransmits the response.

A "100 Trying" is sent by the layer when the TU has not sent a provisional response
within 200 ms (``TimerConfig.trying_delay``), or at once when the INVITE is retransmitted
before that.  In Accepted, INVITE retransmissions are absorbed and the TU's 2xx
retransmissions (``send_response`` with the same key) are sent; the TU retransmits its
2xx (13.3.1.4) until an ACK arrives as :class:`AckReceived`.

Non-INVITE server (17.2.2)::

    Trying --TU 1xx--> Proceeding --TU final--> Completed --J--> Terminated

Matching (17.1.3, 17.2.3): a response belongs to the client transaction of its top
Via branch and CSeq method; a request to the server transaction of its top Via branch,
sent-by and method, where ACK looks for the INVITE.  A request whose branch lacks the
RFC 3261 magic cookie is keyed by Call-ID, From tag, CSeq number, sent-by and method,
a simplification of the RFC 2543 rules that is enough for retransmission absorption.
A CANCEL is a non-INVITE server transaction of its own that the layer answers itself
(200, or 481 when no INVITE matches, 9.2) while the TU is told with
:class:`CancelReceived` and answers the INVITE with a 487.

Responses of server transactions go where RFC 3261 18.2.2 and RFC 3581 say: the top
Via's ``received`` address (set by this layer on arrival) and ``rport`` (filled in when
the client asked for it), else the sent-by host and port.  Over a reliable transport
they go back to the address the request came from (the connection).

Terminated transactions are removed at once.  The server table is bounded
(``max_server_transactions``): a new request beyond the bound is answered 503 without
a transaction.  The layer is below tenants: it carries no ``tenant_id``; the TU that
maps dialogs to tenants adds it to what it emits.
"""

from __future__ import annotations

import enum
import heapq
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.sip.errors import SipParseError, TransactionError
from appliance.sip.message import (
    Headers,
    Request,
    Response,
    check_request,
    error_response_for,
    make_response,
    parse_message,
    rejection_headers,
)
from appliance.sip.uri import Via

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "Addr",
    "CancelReceived",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponseReceived",
    "TimerConfig",
    "TransactionEvent",
    "TransactionLayer",
    "TransactionTimedOut",
]

Addr = tuple[str, int]

MAGIC_COOKIE = "z9hG4bK"
RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "WS", "WSS"})
_DEFAULT_PORTS = {"TLS": 5061, "WSS": 443, "WS": 80}


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request opened server transaction ``key`` (retransmissions are absorbed)."""

    key: str
    request: Request
    addr: Addr


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response arrived for client transaction ``key`` (every 2xx of an INVITE, too)."""

    key: str
    response: Response


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK that matched no transaction in Completed: the ACK of a 2xx (end to end)."""

    request: Request
    addr: Addr


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B, F or H fired (or a cancelled INVITE got no final response in 64*T1)."""

    key: str


@dataclass(frozen=True, slots=True)
class StrayResponseReceived:
    """A response for no live client transaction, e.g. a 2xx retransmitted after the
    INVITE transaction ended; the TU re-sends its ACK for it."""

    response: Response


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched INVITE server transaction ``key`` before its final response.

    The layer has answered the CANCEL with 200; the TU answers the INVITE with 487.
    """

    key: str
    request: Request


TransactionEvent = (
    RequestReceived
    | ResponseReceived
    | AckReceived
    | TransactionTimedOut
    | StrayResponseReceived
    | CancelReceived
)


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 timer base values (section 17.1.1.1, table 4), in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying_delay: float = 0.2  # 17.2.1: send 100 Trying if the TU is silent this long


# --------------------------------------------------------------------------- tables


class Kind(enum.Enum):
    INVITE_CLIENT = "INVITE client"
    NON_INVITE_CLIENT = "non-INVITE client"
    INVITE_SERVER = "INVITE server"
    NON_INVITE_SERVER = "non-INVITE server"


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Timer(enum.Enum):
    A = "A"  # INVITE client: request retransmission
    B = "B"  # INVITE client: transaction timeout
    D = "D"  # INVITE client: wait for response retransmissions
    E = "E"  # non-INVITE client: request retransmission
    F = "F"  # non-INVITE client: transaction timeout
    G = "G"  # INVITE server: response retransmission
    H = "H"  # INVITE server: wait for ACK
    I = "I"  # noqa: E741  INVITE server: wait for ACK retransmissions
    J = "J"  # non-INVITE server: wait for request retransmissions
    K = "K"  # non-INVITE client: wait for response retransmissions
    L = "L"  # INVITE server (RFC 6026): wait for INVITE retransmissions after 2xx
    M = "M"  # INVITE client (RFC 6026): wait for 2xx retransmissions
    TRYING = "100"  # INVITE server: send 100 Trying if the TU is silent
    CANCEL = "cancel"  # INVITE client: 64*T1 after CANCEL without final response (9.1)


class Stimulus(enum.Enum):
    RX_1XX = "received 1xx"
    RX_2XX = "received 2xx"
    RX_FINAL = "received 300-699"
    RX_REQUEST = "received request retransmission"
    RX_ACK = "received ACK"
    TU_1XX = "TU sent 1xx"
    TU_2XX = "TU sent 2xx"
    TU_FINAL = "TU sent 300-699"
    TIMER_A = "timer A"
    TIMER_B = "timer B"
    TIMER_D = "timer D"
    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_G = "timer G"
    TIMER_H = "timer H"
    TIMER_I = "timer I"
    TIMER_J = "timer J"
    TIMER_K = "timer K"
    TIMER_L = "timer L"
    TIMER_M = "timer M"
    TIMER_TRYING = "timer 100 Trying"
    TIMER_CANCEL = "timer CANCEL"


class Action(enum.Enum):
    PASS_UP = "pass the response to the TU"
    SEND_ACK = "send ACK for the non-2xx final response"
    SEND_CANCEL = "send the CANCEL held back until a provisional response"
    RESEND_REQUEST = "retransmit the request"
    RESCHEDULE = "restart the fired timer with its next interval"
    TIMED_OUT = "report TransactionTimedOut"
    SEND_RESPONSE = "send the TU's response"
    RESEND_RESPONSE = "retransmit the last response (or 100 Trying if none)"
    SEND_TRYING = "send 100 Trying unless a provisional was sent"
    PASS_ACK_UP = "pass the ACK to the TU"


S = State
X = Stimulus
_A = Action
Row = tuple[State, tuple[Action, ...]]

_INVITE_CLIENT: dict[tuple[State, Stimulus], Row] = {
    (S.CALLING, X.RX_1XX): (S.PROCEEDING, (_A.PASS_UP, _A.SEND_CANCEL)),
    (S.CALLING, X.RX_2XX): (S.ACCEPTED, (_A.PASS_UP,)),
    (S.CALLING, X.RX_FINAL): (S.COMPLETED, (_A.PASS_UP, _A.SEND_ACK)),
    (S.CALLING, X.TIMER_A): (S.CALLING, (_A.RESEND_REQUEST, _A.RESCHEDULE)),
    (S.CALLING, X.TIMER_B): (S.TERMINATED, (_A.TIMED_OUT,)),
    (S.PROCEEDING, X.RX_1XX): (S.PROCEEDING, (_A.PASS_UP,)),
    (S.PROCEEDING, X.RX_2XX): (S.ACCEPTED, (_A.PASS_UP,)),
    (S.PROCEEDING, X.RX_FINAL): (S.COMPLETED, (_A.PASS_UP, _A.SEND_ACK)),
    (S.PROCEEDING, X.TIMER_CANCEL): (S.TERMINATED, (_A.TIMED_OUT,)),
    (S.COMPLETED, X.RX_1XX): (S.COMPLETED, ()),
    (S.COMPLETED, X.RX_2XX): (S.COMPLETED, ()),
    (S.COMPLETED, X.RX_FINAL): (S.COMPLETED, (_A.SEND_ACK,)),
    (S.COMPLETED, X.TIMER_D): (S.TERMINATED, ()),
    (S.ACCEPTED, X.RX_1XX): (S.ACCEPTED, ()),
    (S.ACCEPTED, X.RX_2XX): (S.ACCEPTED, (_A.PASS_UP,)),
    (S.ACCEPTED, X.RX_FINAL): (S.ACCEPTED, ()),
    (S.ACCEPTED, X.TIMER_M): (S.TERMINATED, ()),
}

_NON_INVITE_CLIENT: dict[tuple[State, Stimulus], Row] = {
    (S.TRYING, X.RX_1XX): (S.PROCEEDING, (_A.PASS_UP,)),
    (S.TRYING, X.RX_2XX): (S.COMPLETED, (_A.PASS_UP,)),
    (S.TRYING, X.RX_FINAL): (S.COMPLETED, (_A.PASS_UP,)),
    (S.TRYING, X.TIMER_E): (S.TRYING, (_A.RESEND_REQUEST, _A.RESCHEDULE)),
    (S.TRYING, X.TIMER_F): (S.TERMINATED, (_A.TIMED_OUT,)),
    (S.PROCEEDING, X.RX_1XX): (S.PROCEEDING, (_A.PASS_UP,)),
    (S.PROCEEDING, X.RX_2XX): (S.COMPLETED, (_A.PASS_UP,)),
    (S.PROCEEDING, X.RX_FINAL): (S.COMPLETED, (_A.PASS_UP,)),
    (S.PROCEEDING, X.TIMER_E): (S.PROCEEDING, (_A.RESEND_REQUEST, _A.RESCHEDULE)),
    (S.PROCEEDING, X.TIMER_F): (S.TERMINATED, (_A.TIMED_OUT,)),
    (S.COMPLETED, X.RX_1XX): (S.COMPLETED, ()),
    (S.COMPLETED, X.RX_2XX): (S.COMPLETED, ()),
    (S.COMPLETED, X.RX_FINAL): (S.COMPLETED, ()),
    (S.COMPLETED, X.TIMER_K): (S.TERMINATED, ()),
}

_INVITE_SERVER: dict[tuple[State, Stimulus], Row] = {
    (S.PROCEEDING, X.RX_REQUEST): (S.PROCEEDING, (_A.RESEND_RESPONSE,)),
    (S.PROCEEDING, X.RX_ACK): (S.PROCEEDING, ()),
    (S.PROCEEDING, X.TU_1XX): (S.PROCEEDING, (_A.SEND_RESPONSE,)),
    (S.PROCEEDING, X.TU_2XX): (S.ACCEPTED, (_A.SEND_RESPONSE,)),
    (S.PROCEEDING, X.TU_FINAL): (S.COMPLETED, (_A.SEND_RESPONSE,)),
    (S.PROCEEDING, X.TIMER_TRYING): (S.PROCEEDING, (_A.SEND_TRYING,)),
    (S.COMPLETED, X.RX_REQUEST): (S.COMPLETED, (_A.RESEND_RESPONSE,)),
    (S.COMPLETED, X.RX_ACK): (S.CONFIRMED, ()),
    (S.COMPLETED, X.TIMER_G): (S.COMPLETED, (_A.RESEND_RESPONSE, _A.RESCHEDULE)),
    (S.COMPLETED, X.TIMER_H): (S.TERMINATED, (_A.TIMED_OUT,)),
    (S.CONFIRMED, X.RX_REQUEST): (S.CONFIRMED, ()),
    (S.CONFIRMED, X.RX_ACK): (S.CONFIRMED, ()),
    (S.CONFIRMED, X.TIMER_I): (S.TERMINATED, ()),
    (S.ACCEPTED, X.RX_REQUEST): (S.ACCEPTED, ()),
    (S.ACCEPTED, X.RX_ACK): (S.ACCEPTED, (_A.PASS_ACK_UP,)),
    (S.ACCEPTED, X.TU_2XX): (S.ACCEPTED, (_A.SEND_RESPONSE,)),
    (S.ACCEPTED, X.TIMER_L): (S.TERMINATED, ()),
}

_NON_INVITE_SERVER: dict[tuple[State, Stimulus], Row] = {
    (S.TRYING, X.RX_REQUEST): (S.TRYING, ()),
    (S.TRYING, X.TU_1XX): (S.PROCEEDING, (_A.SEND_RESPONSE,)),
    (S.TRYING, X.TU_2XX): (S.COMPLETED, (_A.SEND_RESPONSE,)),
    (S.TRYING, X.TU_FINAL): (S.COMPLETED, (_A.SEND_RESPONSE,)),
    (S.PROCEEDING, X.RX_REQUEST): (S.PROCEEDING, (_A.RESEND_RESPONSE,)),
    (S.PROCEEDING, X.TU_1XX): (S.PROCEEDING, (_A.SEND_RESPONSE,)),
    (S.PROCEEDING, X.TU_2XX): (S.COMPLETED, (_A.SEND_RESPONSE,)),
    (S.PROCEEDING, X.TU_FINAL): (S.COMPLETED, (_A.SEND_RESPONSE,)),
    (S.COMPLETED, X.RX_REQUEST): (S.COMPLETED, (_A.RESEND_RESPONSE,)),
    (S.COMPLETED, X.TIMER_J): (S.TERMINATED, ()),
}

_TABLES: dict[Kind, dict[tuple[State, Stimulus], Row]] = {
    Kind.INVITE_CLIENT: _INVITE_CLIENT,
    Kind.NON_INVITE_CLIENT: _NON_INVITE_CLIENT,
    Kind.INVITE_SERVER: _INVITE_SERVER,
    Kind.NON_INVITE_SERVER: _NON_INVITE_SERVER,
}

_INITIAL_STATE: dict[Kind, State] = {
    Kind.INVITE_CLIENT: S.CALLING,
    Kind.NON_INVITE_CLIENT: S.TRYING,
    Kind.INVITE_SERVER: S.PROCEEDING,
    Kind.NON_INVITE_SERVER: S.TRYING,
}

# Timers started on entering a state (and kept running if already running).
_ENTRY_TIMERS: dict[tuple[Kind, State], tuple[Timer, ...]] = {
    (Kind.INVITE_CLIENT, S.CALLING): (Timer.A, Timer.B),
    (Kind.INVITE_CLIENT, S.COMPLETED): (Timer.D,),
    (Kind.INVITE_CLIENT, S.ACCEPTED): (Timer.M,),
    (Kind.NON_INVITE_CLIENT, S.TRYING): (Timer.E, Timer.F),
    (Kind.NON_INVITE_CLIENT, S.PROCEEDING): (Timer.E, Timer.F),
    (Kind.NON_INVITE_CLIENT, S.COMPLETED): (Timer.K,),
    (Kind.INVITE_SERVER, S.PROCEEDING): (Timer.TRYING,),
    (Kind.INVITE_SERVER, S.COMPLETED): (Timer.G, Timer.H),
    (Kind.INVITE_SERVER, S.CONFIRMED): (Timer.I,),
    (Kind.INVITE_SERVER, S.ACCEPTED): (Timer.L,),
    (Kind.NON_INVITE_SERVER, S.COMPLETED): (Timer.J,),
}

_TIMER_STIMULUS: dict[Timer, Stimulus] = {
    Timer.A: X.TIMER_A,
    Timer.B: X.TIMER_B,
    Timer.D: X.TIMER_D,
    Timer.E: X.TIMER_E,
    Timer.F: X.TIMER_F,
    Timer.G: X.TIMER_G,
    Timer.H: X.TIMER_H,
    Timer.I: X.TIMER_I,
    Timer.J: X.TIMER_J,
    Timer.K: X.TIMER_K,
    Timer.L: X.TIMER_L,
    Timer.M: X.TIMER_M,
    Timer.TRYING: X.TIMER_TRYING,
    Timer.CANCEL: X.TIMER_CANCEL,
}


def _first_interval(timer: Timer, reliable: bool, cfg: TimerConfig) -> float | None:
    """Initial duration of ``timer`` (RFC 3261 table 4); ``None``: not used here."""
    if timer in (Timer.A, Timer.E, Timer.G):
        return None if reliable else cfg.t1
    if timer in (Timer.D, Timer.J):
        return 0.0 if reliable else 64 * cfg.t1
    if timer in (Timer.I, Timer.K):
        return 0.0 if reliable else cfg.t4
    if timer is Timer.TRYING:
        return cfg.trying_delay
    return 64 * cfg.t1  # B, F, H, L, M, CANCEL


def _next_interval(timer: Timer, state: State, interval: float, cfg: TimerConfig) -> float:
    """Back-off of the retransmission timers (17.1.1.2, 17.1.2.2, 17.2.1)."""
    if timer is Timer.A:
        return 2 * interval
    if timer is Timer.E and state is S.PROCEEDING:
        return cfg.t2
    return min(2 * interval, cfg.t2)  # E in Trying, G


def _classify(status: int, *, tu: bool) -> Stimulus:
    if 100 <= status < 200:
        return X.TU_1XX if tu else X.RX_1XX
    if 200 <= status < 300:
        return X.TU_2XX if tu else X.RX_2XX
    return X.TU_FINAL if tu else X.RX_FINAL


# --------------------------------------------------------------------------- transactions


@dataclass(slots=True)
class _TimerSlot:
    deadline: float
    interval: float
    seq: int


@dataclass(eq=False, slots=True)
class _Transaction:
    key: str
    kind: Kind
    state: State
    request: Request
    addr: Addr  # client: where the request goes; server: where responses go
    reliable: bool
    timers: dict[Timer, _TimerSlot] = field(default_factory=dict)
    request_bytes: bytes = b""  # client: the request as sent
    ack_bytes: bytes | None = None  # INVITE client: ACK of the non-2xx final response
    pending_cancel: Request | None = None  # INVITE client: CANCEL held until a 1xx
    cancel_sent: bool = False
    last_response: Response | None = None  # server: most recent response sent
    last_response_bytes: bytes | None = None
    to_tag: str | None = None  # server: To tag of our responses (for CANCEL's 200)


# --------------------------------------------------------------------------- helpers


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _default_port(transport: str) -> int:
    return _DEFAULT_PORTS.get(transport.upper(), 5060)


def _sent_by(via: Via) -> tuple[str, int]:
    """Normalised (host, port) of a Via sent-by, the default port filled in."""
    port = via.port if via.port is not None else _default_port(via.transport)
    return _strip_brackets(via.host).lower(), port


def _response_destination(via: Via) -> Addr:
    """Where a response goes (RFC 3261 18.2.2 with RFC 3581): received/rport, else sent-by."""
    host = via.received or _strip_brackets(via.host)
    if via.rport is not None:
        return host, via.rport
    return host, via.port if via.port is not None else _default_port(via.transport)


def _tag_of(header_value: str | None) -> str | None:
    """The ``tag`` parameter of a From/To value, without a full parse."""
    if header_value is None:
        return None
    tail = header_value.rsplit(">", 1)[-1]
    for part in tail.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "tag":
            return value.strip()
    return None


def _default_branch_factory() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


# --------------------------------------------------------------------------- the layer


class TransactionLayer:
    """RFC 3261 transaction layer for one local transport address (sans-I/O)."""

    def __init__(
        self,
        local_via_host: str,
        local_via_port: int,
        transport: str = "UDP",
        branch_factory: Callable[[], str] | None = None,
        *,
        timers: TimerConfig | None = None,
        max_server_transactions: int = 4096,
        check_requests: bool = True,
    ) -> None:
        self.local_via_host = local_via_host
        self.local_via_port = local_via_port
        self.transport = transport.upper()
        self.reliable = self.transport in RELIABLE_TRANSPORTS
        self.timers = timers if timers is not None else TimerConfig()
        self.max_server_transactions = max_server_transactions
        self.check_requests = check_requests
        self._branch_factory = branch_factory or _default_branch_factory
        host = local_via_host
        self._via_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self._local_sent_by = (_strip_brackets(host).lower(), local_via_port)
        self._clients: dict[str, _Transaction] = {}
        self._servers: dict[str, _Transaction] = {}
        self._heap: list[tuple[float, int, str, Timer]] = []
        self._seq = 0
        self._events: list[TransactionEvent] = []
        self._outgoing: list[tuple[bytes, Addr]] = []

    # ----------------------------------------------------------------- outputs

    def events(self) -> list[TransactionEvent]:
        """Drain the events produced since the last call."""
        out, self._events = self._events, []
        return out

    def outgoing(self) -> list[tuple[bytes, Addr]]:
        """Drain the datagrams (or stream messages) to send since the last call."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called; ``None`` when no timer is running."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def state_of(self, key: str) -> str | None:
        """The RFC name of transaction ``key``'s state, ``None`` once it is gone."""
        txn = self._clients.get(key) or self._servers.get(key)
        return txn.state.value if txn is not None else None

    @property
    def transaction_count(self) -> int:
        return len(self._clients) + len(self._servers)

    # ----------------------------------------------------------------- inputs

    def tick(self, now: float) -> None:
        """Fire every timer whose deadline is at or before ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            _, _, key, timer = entry
            txn = self._clients.get(key) or self._servers.get(key)
            assert txn is not None
            slot = txn.timers.pop(timer)
            self._run(txn, _TIMER_STIMULUS[timer], now, fired=(timer, slot))

    def receive(self, data: bytes, addr: Addr, now: float) -> None:
        """Take one datagram (or one framed stream message) from ``addr``.

        Peer garbage never raises: a message that does not parse is answered with
        the best-effort error response of ``error_response_for`` (or dropped).
        """
        try:
            message = parse_message(data)
            if isinstance(message, Request):
                self._receive_request(message, addr, now)
            else:
                self._receive_response(message, now)
        except SipParseError as err:
            reply = error_response_for(data, err)
            if reply is not None:
                self._outgoing.append((reply, addr))

    def send_request(self, request: Request, dest: Addr, now: float) -> str:
        """Start a client transaction for ``request`` towards ``dest``; return its key.

        A top Via with a fresh branch and ``rport`` is added unless one is present.
        """
        if request.method == "ACK":
            raise TransactionError("ACK is not a transaction: use send_stateless")
        branch = self._ensure_via(request)
        key = self._client_key(branch, request.method)
        if key in self._clients:
            raise TransactionError(f"client transaction {key} already exists")
        kind = Kind.INVITE_CLIENT if request.method == "INVITE" else Kind.NON_INVITE_CLIENT
        txn = _Transaction(
            key=key,
            kind=kind,
            state=_INITIAL_STATE[kind],
            request=request,
            addr=dest,
            reliable=self.reliable,
            request_bytes=request.to_bytes(),
        )
        self._clients[key] = txn
        self._outgoing.append((txn.request_bytes, dest))
        self._enter(txn, txn.state, now)
        return key

    def send_response(self, server_key: str, response: Response, now: float) -> None:
        """Send the TU's ``response`` through server transaction ``server_key``."""
        txn = self._servers.get(server_key)
        if txn is None:
            raise TransactionError(f"no server transaction {server_key}")
        tag = _tag_of(response.headers.get("To"))
        if tag:
            txn.to_tag = tag
        self._run(txn, _classify(response.status, tu=True), now, response=response)

    def cancel(self, client_key: str, now: float) -> str:
        """Cancel INVITE client transaction ``client_key`` (RFC 3261 9.1).

        Returns the CANCEL's client transaction key.  The CANCEL goes out now if a
        provisional response has arrived, else with the first one; it is dropped if
        the INVITE ends first.  Calling it again returns the same key.
        """
        txn = self._clients.get(client_key)
        if txn is None or txn.kind is not Kind.INVITE_CLIENT:
            raise TransactionError(f"no INVITE client transaction {client_key}")
        branch = self._branch_of_key(client_key)
        cancel_key = self._client_key(branch, "CANCEL")
        if txn.cancel_sent or txn.pending_cancel is not None:
            return cancel_key
        if txn.state not in (S.CALLING, S.PROCEEDING):
            raise TransactionError(
                f"cannot CANCEL {client_key} in state {txn.state.value}: it has a final response"
            )
        txn.pending_cancel = _build_cancel(txn.request)
        if txn.state is S.PROCEEDING:
            self._send_pending_cancel(txn, now)
        return cancel_key

    def send_stateless(self, message: Request | Response, dest: Addr | None = None) -> None:
        """Send outside any transaction: the ACK of a 2xx, or a 2xx retransmitted by the TU.

        A request without Via gets one with a fresh branch and needs ``dest``; a
        response without ``dest`` is routed by its top Via (18.2.2, RFC 3581).
        """
        if isinstance(message, Request):
            if dest is None:
                raise TransactionError("send_stateless of a request needs dest")
            self._ensure_via(message)
        elif dest is None:
            if "Via" not in message.headers:
                raise TransactionError("response without Via and no dest")
            dest = _response_destination(message.top_via)
        self._outgoing.append((message.to_bytes(), dest))

    # ----------------------------------------------------------------- receiving

    def _receive_request(self, request: Request, addr: Addr, now: float) -> None:
        vias = request.vias
        if not vias:
            return  # nowhere to answer; parse_message should already refuse this
        # Without these a request cannot be matched or answered in a way the peer can
        # match; SipParseError makes receive() answer statelessly (or drop it).
        request.call_id  # noqa: B018
        request.cseq  # noqa: B018
        request.from_  # noqa: B018
        request.to  # noqa: B018
        top = self._stamp_via(request, vias[0], addr)
        method = request.method
        if method == "ACK":
            invite = self._servers.get(self._server_key(request, top, "INVITE"))
            if invite is None:
                if not self.check_requests or check_request(request) is None:
                    self._events.append(AckReceived(request, addr))
                # else: a broken ACK is never answered (RFC 3261 17), only dropped
            else:
                self._run(invite, X.RX_ACK, now, ack=request, ack_addr=addr)
            return
        key = self._server_key(request, top, method)
        existing = self._servers.get(key)
        if existing is not None:
            self._run(existing, X.RX_REQUEST, now)
            return
        reply_to = addr if self.reliable else _response_destination(top)
        if len(self._servers) >= self.max_server_transactions:
            overload = make_response(request, 503, to_tag=self._new_tag())
            overload.headers.set("Retry-After", "5")
            self._outgoing.append((overload.to_bytes(), reply_to))
            return
        kind = Kind.INVITE_SERVER if method == "INVITE" else Kind.NON_INVITE_SERVER
        txn = _Transaction(
            key=key,
            kind=kind,
            state=_INITIAL_STATE[kind],
            request=request,
            addr=reply_to,
            reliable=self.reliable,
        )
        self._servers[key] = txn
        self._enter(txn, txn.state, now)
        problem = check_request(request) if self.check_requests else None
        if problem is not None:
            status, reason = problem
            reply = make_response(
                request,
                status,
                reason,
                to_tag=self._new_tag(),
                headers=rejection_headers(request, status),
            )
            self.send_response(key, reply, now)
            return
        if method == "CANCEL":
            self._receive_cancel(txn, top, now)
            return
        self._events.append(RequestReceived(key, request, addr))

    def _receive_cancel(self, txn: _Transaction, top: Via, now: float) -> None:
        """RFC 3261 9.2: answer the CANCEL here, tell the TU if the INVITE is pending."""
        cancel = txn.request
        invite = self._servers.get(self._server_key(cancel, top, "INVITE"))
        if invite is None:
            reply = make_response(cancel, 481, to_tag=self._new_tag())
            self.send_response(txn.key, reply, now)
            return
        tag = invite.to_tag or self._new_tag()
        invite.to_tag = tag
        self.send_response(txn.key, make_response(cancel, 200, to_tag=tag), now)
        if invite.state is S.PROCEEDING:
            self._events.append(CancelReceived(invite.key, cancel))

    def _receive_response(self, response: Response, now: float) -> None:
        vias = response.vias
        if len(vias) != 1:
            return  # 8.1.3.3: zero or several Vias: not for us
        top = vias[0]
        if _sent_by(top) != self._local_sent_by:
            return  # 18.1.2: the sent-by is not ours
        _, method = response.cseq
        txn = self._clients.get(self._client_key(top.branch or "", method))
        if txn is None:
            self._events.append(StrayResponseReceived(response))
            return
        self._run(txn, _classify(response.status, tu=False), now, response=response)

    # ----------------------------------------------------------------- the machine

    def _run(
        self,
        txn: _Transaction,
        stimulus: Stimulus,
        now: float,
        *,
        response: Response | None = None,
        ack: Request | None = None,
        ack_addr: Addr | None = None,
        fired: tuple[Timer, _TimerSlot] | None = None,
    ) -> None:
        row = _TABLES[txn.kind].get((txn.state, stimulus))
        if row is None:
            raise TransactionError(
                f"{txn.kind.value} transaction {txn.key}: no transition for "
                f"{stimulus.value!r} in state {txn.state.value}"
            )
        next_state, actions = row
        if next_state is not txn.state:
            self._enter(txn, next_state, now, defer_zero=True)
        for action in actions:
            self._act(txn, action, now, response, ack, ack_addr, fired)
        if txn.state is S.TERMINATED:
            self._remove(txn)
            return
        self._fire_zero_timers(txn, now)

    def _act(
        self,
        txn: _Transaction,
        action: Action,
        now: float,
        response: Response | None,
        ack: Request | None,
        ack_addr: Addr | None,
        fired: tuple[Timer, _TimerSlot] | None,
    ) -> None:
        if action is _A.PASS_UP:
            assert response is not None
            self._events.append(ResponseReceived(txn.key, response))
        elif action is _A.SEND_ACK:
            if txn.ack_bytes is None:
                assert response is not None
                txn.ack_bytes = _build_ack(txn.request, response).to_bytes()
            self._outgoing.append((txn.ack_bytes, txn.addr))
        elif action is _A.SEND_CANCEL:
            if txn.pending_cancel is not None:
                self._send_pending_cancel(txn, now)
        elif action is _A.RESEND_REQUEST:
            self._outgoing.append((txn.request_bytes, txn.addr))
        elif action is _A.RESCHEDULE:
            assert fired is not None
            timer, slot = fired
            interval = _next_interval(timer, txn.state, slot.interval, self.timers)
            self._start_timer(txn, timer, now, interval)
        elif action is _A.TIMED_OUT:
            self._events.append(TransactionTimedOut(txn.key))
        elif action is _A.SEND_RESPONSE:
            assert response is not None
            txn.last_response = response
            txn.last_response_bytes = response.to_bytes()
            self._outgoing.append((txn.last_response_bytes, txn.addr))
        elif action is _A.RESEND_RESPONSE:
            if txn.last_response_bytes is None:
                self._send_trying(txn)
            else:
                self._outgoing.append((txn.last_response_bytes, txn.addr))
        elif action is _A.SEND_TRYING:
            if txn.last_response is None:
                self._send_trying(txn)
        elif action is _A.PASS_ACK_UP:
            assert ack is not None and ack_addr is not None
            self._events.append(AckReceived(ack, ack_addr))
        else:  # pragma: no cover - the enum is closed
            raise TransactionError(f"unknown action {action}")

    def _enter(self, txn: _Transaction, state: State, now: float, defer_zero: bool = False) -> None:
        """Move to ``state``: cancel timers it does not list, start those it does."""
        txn.state = state
        if state not in (S.CALLING, S.PROCEEDING):
            txn.pending_cancel = None  # the INVITE ended before any provisional
        wanted = _ENTRY_TIMERS.get((txn.kind, state), ())
        for timer in [t for t in txn.timers if t not in wanted]:
            del txn.timers[timer]
        if state is S.TERMINATED:
            return
        for timer in wanted:
            if timer in txn.timers:
                continue
            interval = _first_interval(timer, txn.reliable, self.timers)
            if interval is not None:
                self._start_timer(txn, timer, now, interval)
        if not defer_zero:
            self._fire_zero_timers(txn, now)

    def _fire_zero_timers(self, txn: _Transaction, now: float) -> None:
        for timer, slot in list(txn.timers.items()):
            if slot.interval == 0.0 and txn.timers.get(timer) is slot:
                del txn.timers[timer]
                self._run(txn, _TIMER_STIMULUS[timer], now, fired=(timer, slot))
                return  # the run above handled any further zero timers

    def _start_timer(self, txn: _Transaction, timer: Timer, now: float, interval: float) -> None:
        self._seq += 1
        slot = _TimerSlot(deadline=now + interval, interval=interval, seq=self._seq)
        txn.timers[timer] = slot
        if interval > 0.0:
            heapq.heappush(self._heap, (slot.deadline, slot.seq, txn.key, timer))

    def _live(self, entry: tuple[float, int, str, Timer]) -> bool:
        _, seq, key, timer = entry
        txn = self._clients.get(key) or self._servers.get(key)
        if txn is None:
            return False
        slot = txn.timers.get(timer)
        return slot is not None and slot.seq == seq

    def _remove(self, txn: _Transaction) -> None:
        txn.timers.clear()
        table = (
            self._servers
            if txn.kind in (Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER)
            else self._clients
        )
        if table.get(txn.key) is txn:
            del table[txn.key]

    # ----------------------------------------------------------------- small parts

    def _send_pending_cancel(self, txn: _Transaction, now: float) -> None:
        cancel = txn.pending_cancel
        assert cancel is not None
        txn.pending_cancel = None
        txn.cancel_sent = True
        self.send_request(cancel, txn.addr, now)
        self._start_timer(
            txn, Timer.CANCEL, now, _first_interval(Timer.CANCEL, txn.reliable, self.timers) or 0.0
        )

    def _send_trying(self, txn: _Transaction) -> None:
        trying = make_response(txn.request, 100)
        txn.last_response = trying
        txn.last_response_bytes = trying.to_bytes()
        self._outgoing.append((txn.last_response_bytes, txn.addr))

    def _ensure_via(self, request: Request) -> str:
        """Return the top Via branch, adding our Via (fresh branch, rport) if none."""
        if "Via" in request.headers:
            branch = request.top_via.branch
            if branch is None:
                raise TransactionError("the request's top Via has no branch")
            return branch
        branch = self._new_branch()
        via = Via(
            self.transport,
            self._via_host,
            self.local_via_port,
            (("branch", branch), ("rport", None)),
        )
        request.headers.add("Via", str(via), first=True)
        return branch

    def _stamp_via(self, request: Request, top: Via, addr: Addr) -> Via:
        """18.2.1 and RFC 3581: record the source address in the top Via."""
        source_host, source_port = addr
        stamped = top
        if top.rport_requested:
            stamped = stamped.with_param("received", source_host)
            stamped = stamped.with_param("rport", str(source_port))
        elif _strip_brackets(top.host).lower() != source_host.lower():
            stamped = stamped.with_param("received", source_host)
        if stamped is top:
            return top
        rest = request.headers.get_all("Via")[1:]
        request.headers.remove("Via")
        for value in reversed(rest):
            request.headers.add("Via", value, first=True)
        request.headers.add("Via", str(stamped), first=True)
        return stamped

    def _new_branch(self) -> str:
        branch = self._branch_factory()
        return branch if branch.startswith(MAGIC_COOKIE) else MAGIC_COOKIE + branch

    def _new_tag(self) -> str:
        return self._new_branch()[len(MAGIC_COOKIE) :][-12:] or "0"

    @staticmethod
    def _client_key(branch: str, method: str) -> str:
        return f"c:{branch}:{method}"

    @staticmethod
    def _branch_of_key(client_key: str) -> str:
        return client_key[2:].rsplit(":", 1)[0]

    @staticmethod
    def _server_key(request: Request, top: Via, method: str) -> str:
        host, port = _sent_by(top)
        sent_by = f"{host}:{port}"
        branch = top.branch
        if branch and branch.startswith(MAGIC_COOKIE):
            return f"s:{branch}:{sent_by}:{method}"
        # RFC 2543 peer: no usable branch (17.2.3, simplified).
        number, _ = request.cseq
        from_tag = request.from_.tag or ""
        return f"s:2543:{request.call_id}:{from_tag}:{number}:{sent_by}:{method}"


def _copy_common(request: Request, method: str, to_value: str) -> Headers:
    """Headers shared by ACK (17.1.1.3) and CANCEL (9.1): Via, Route, From, To, ..."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", to_value)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq[0]} {method}")
    return headers


def _build_ack(invite: Request, response: Response) -> Request:
    """ACK of a non-2xx final response (17.1.1.3): same branch, the response's To."""
    headers = _copy_common(invite, "ACK", response.headers.get("To") or "")
    return Request("ACK", invite.uri, headers)


def _build_cancel(invite: Request) -> Request:
    """CANCEL of ``invite`` (9.1): same Request-URI, From, To, Call-ID, CSeq number, Via."""
    headers = _copy_common(invite, "CANCEL", invite.headers.get("To") or "")
    return Request("CANCEL", invite.uri, headers)
