"""B2BUA call control, sans-I/O: the feature server's brain.

Theory of operation
-------------------
Every new call reaches the feature server from the SIP edge (Kamailio) with an
``X-BL-Origin`` header the edge wrote after authenticating the caller: either
``ext;domain=<tenant SIP domain>;user=<extension>`` or ``trunk;name=<trunk>``.  Requests
from any other address than the edge are refused.  The core routes the call with the
plan (:meth:`appliance.plan.Plan.route`), so the tenant comes from the DID (trunk) or
the authenticated domain (extension), never from anything else the caller sent.

A :class:`Call` has legs.  The *A leg* is the incoming INVITE (we are its UAS); each
*B leg* is an INVITE we send (we are its UAC) towards an extension (through the edge,
which looks up the registration) or a trunk.  Media is anchored here: each leg has its
own RTP endpoint on the node, and bridging two legs is a media command; so a transfer
or a hold on one side never needs a re-INVITE of the other side's media address.

Inputs are datagrams (``receive``), media notifications (``media_dtmf``,
``playback_finished``) and the clock (``tick``); every entry point takes ``now``
(monotonic seconds).  Outputs are drained by the edge: ``outgoing()`` (SIP datagrams),
``commands()`` (media and store commands, frozen dataclasses) and ``next_deadline()``.

Leg states::

    calling --1xx--> ringing --2xx--> up --BYE--> ended
    calling/ringing --3xx-6xx, timeout, CANCEL--> ended

A call ends when all of its legs have ended; it then emits exactly one ``WriteCdr``.
Hold is a re-INVITE on one leg: we answer it, set that leg's media direction and
mirror the direction to the bridged peer with a re-INVITE of our own.  Transfers
(RFC 3515 REFER, RFC 3891 Replaces) re-pair the anchored legs: blind transfer calls
the new target and bridges it with the transferee; attended transfer bridges the
two parties the transferor was talking to.

Tenancy: a new call of a suspended tenant (from a trunk to its number, or from one of
its extensions) gets the tenant's ``suspended`` treatment; a call that would make the
tenant hold more PSTN calls than ``limits.pstn_calls`` gets ``over_quota``.  A call is
a PSTN call of its tenant while one of its legs is on a trunk (it entered from one, or
went out to one); a call that got a treatment is not counted.  A treatment is a SIP
rejection or an announcement, answered and played like a route to an announcement
then hung up.  Calls in progress are never cut by a new plan; transfers and outbound
calls that would start a new PSTN call over the quota are refused (``CallRefused`` for
``originate``).
"""

from __future__ import annotations

import heapq
import itertools
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode

from appliance.acd.commands import (
    Announce,
    CancelCallback,
    CancelOffer,
    ExitQueue,
    Offer,
    PlaceCallback,
)
from appliance.acd.commands import Command as AcdCommand
from appliance.acd.core import DAY, Acd
from appliance.acd.errors import AcdError
from appliance.acd.events import AcdEvent
from appliance.ivr.flow import Flow
from appliance.ivr.interpreter import (
    HangupCall,
    Interpreter,
    PlayPrompt,
    RunAction,
    StartCapture,
    StopCapture,
    StopPrompt,
    TransferCall,
)
from appliance.media.ports import PortPool, PortPoolExhausted
from appliance.pbx.record import Cdr
from appliance.plan import Agent, Origin, Plan, Queue, Route, Tenant, Treatment
from appliance.sip.dialog import Dialog, DialogError, DialogSet
from appliance.sip.errors import SipError
from appliance.sip.message import Headers, Request, Response, make_response
from appliance.sip.sdp import (
    Negotiated,
    SdpError,
    SessionDescription,
    accept_answer,
    make_offer,
    negotiate,
)
from appliance.sip.transaction import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TransactionLayer,
    TransactionTimedOut,
)
from appliance.sip.uri import NameAddr, SipUri

Addr = tuple[str, int]
Direction = str  # "sendrecv" | "sendonly" | "recvonly" | "inactive" (RFC 3264)
MonitorMode = Literal["listen", "whisper", "barge"]
MONITOR_MODES: tuple[MonitorMode, ...] = ("listen", "whisper", "barge")
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY"
SUPPORTED_CODECS = ("PCMU", "PCMA")
TELEPHONE_EVENT_PT = 101

# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class OpenMedia:
    leg: str
    port: int
    tenant_id: str | None


@dataclass(frozen=True)
class ConfigureMedia:
    """Point a leg's endpoint at its peer; ``direction`` is what the node does on it."""

    leg: str
    remote: Addr
    codec: str
    payload_type: int
    dtmf_payload_type: int | None
    direction: Direction


@dataclass(frozen=True)
class BridgeMedia:
    a: str
    b: str
    tenant_id: str | None
    call_id: str


@dataclass(frozen=True)
class UnbridgeMedia:
    leg: str


@dataclass(frozen=True)
class MixMedia:
    """Mix the bridged ``pair`` of a call with a ``supervisor`` leg, who hears both and is
    heard per ``mode``: ``listen`` by nobody, ``whisper`` by the ``agent`` leg only,
    ``barge`` by both. Sent again when the mode changes; a ``BridgeMedia`` of the pair
    ends the mix (the recording of the pair goes on through it). An agent's three-way
    conference is the same mix: the consulted party as the ``supervisor``, barging."""

    pair: tuple[str, str]
    supervisor: str
    agent: str
    mode: MonitorMode
    tenant_id: str | None
    call_id: str


@dataclass(frozen=True)
class StartEcho:
    leg: str


@dataclass(frozen=True)
class PlayPrompts:
    """Play prompt references (``{tts: ...}``, ``{file: ...}``, ``{say: ...}``) of the
    call's tenant one after the other; ``playback_finished`` when the last ends."""

    leg: str
    tenant_id: str | None
    prompts: tuple[Mapping[str, Any], ...]
    language: str


@dataclass(frozen=True)
class StopPlayback:
    leg: str


@dataclass(frozen=True)
class RunIvrAction:
    """Run an IVR data action for the tenant; answer with ``ivr_action_done``."""

    leg: str
    tenant_id: str | None
    kind: str
    params: Mapping[str, Any]
    timeout: float


@dataclass(frozen=True)
class CaptureAudio:
    """Record what the caller says on a leg, or listen for speech (``capture`` says
    which, see :class:`StartCapture`); answer with ``capture_finished``. A recording
    is kept even when the leg ends first (a caller hangs up after a voicemail)."""

    leg: str
    tenant_id: str | None
    call_id: str
    caller: str
    language: str
    capture: StartCapture


@dataclass(frozen=True)
class StopCaptureAudio:
    leg: str
    seq: int


@dataclass(frozen=True)
class SendDtmf:
    leg: str
    digit: str


@dataclass(frozen=True)
class AcdNotice:
    """An ACD event (agent or queue change) for the node to publish to desktops and
    wallboards of its tenant."""

    event: AcdEvent


@dataclass(frozen=True)
class CloseMedia:
    leg: str
    port: int


@dataclass(frozen=True)
class WriteCdr:
    cdr: Cdr


@dataclass(frozen=True)
class TraceEvent:
    """One step of a call's trace (what the NOC and the tenant can read)."""

    tenant_id: str | None
    call_id: str
    kind: str
    data: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AssistMedia:
    """The bridged ``pair`` (customer, agent) becomes a mix in which the prompts played
    to the ``customer`` leg (its flow runs beside the agent, R-4.8) are heard by both;
    a ``BridgeMedia`` of the pair ends it."""

    pair: tuple[str, str]
    customer: str
    tenant_id: str | None
    call_id: str


Command = (
    OpenMedia | ConfigureMedia | BridgeMedia | UnbridgeMedia | MixMedia | AssistMedia
    | StartEcho
    | PlayPrompts
    | StopPlayback | RunIvrAction | CaptureAudio | StopCaptureAudio
    | SendDtmf | CloseMedia | WriteCdr | TraceEvent | AcdNotice
)

_DISPOSITIONS = {
    486: "busy", 600: "busy", 404: "not_found", 484: "not_found", 403: "forbidden",
    480: "unavailable", 408: "no_answer", 487: "cancelled", 503: "failed",
}
_DTMF_KEYS = frozenset("0123456789*#ABCD")


class CallRefused(ValueError):
    """``originate`` refused for the tenant's state: ``reason`` is ``tenant_suspended``
    or ``quota_exceeded`` (a stable id the API shows)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------- state


@dataclass(eq=False)
class Leg:
    id: str
    call: Call
    role: Literal["a", "b"]
    number: str  # the party's number on this leg
    party: Origin | None  # the extension on this leg, if any (who may transfer)
    port: int
    state: Literal["calling", "ringing", "up", "ended"] = "calling"
    invite: Request | None = None
    server_key: str | None = None  # A leg: the INVITE server transaction
    client_key: str | None = None  # B leg: the INVITE client transaction
    local_tag: str = ""
    dialog: Dialog | None = None
    negotiated: Negotiated | None = None
    sdp_version: int = 1
    direction: Direction = "sendrecv"
    peer: Leg | None = None
    pending_2xx: Response | None = None  # A leg: our 200 until its ACK arrives
    reinvite_key: str | None = None
    pending_reinvite: Direction | None = None
    transfer_from: Leg | None = None  # B leg placed by a blind transfer: the transferor
    ivr: Interpreter | None = None  # A leg answered by an IVR flow
    ivr_steps: int = 0  # trace steps of ``ivr`` already emitted
    ivr_deadline: float | None = None
    refer_cseq: int = 0
    targets: tuple[str, ...] = ()  # remaining hunt-group members after this one
    data: Mapping[str, str] | None = None  # IVR data sent with the call (hunt retries)
    ring_seconds: float = 0.0
    answer_body: bytes = b""  # A leg: our SDP answer, sent with the 2xx
    last_offer: SessionDescription | None = None  # our last offer on this leg
    retransmit_interval: float = 0.5  # A leg: RFC 3261 13.3.1.4 2xx retransmission
    on_answer: tuple[Flow, Mapping[str, Any]] | None = None  # originated: flow to run
    trunk: bool = False  # the far end is a carrier trunk (a PSTN leg)
    queue: str | None = None  # A leg waiting in this ACD queue (hold prompt looping)
    offer: tuple[str, str] | None = None  # B leg ringing an agent: (contact, agent)
    offer_cancelled: bool = False  # the ACD ended that offer (we sent CANCEL)
    announce_agent: bool = False  # B leg of an offer: say the agent's id to the caller first
    bridge_after: Leg | None = None  # A leg: bridge to this agent once the prompt ends
    callback: str = ""  # B leg calling a customer back: the ACD contact it is for
    acd_agent: str = ""  # B leg of a transfer to this agent: busy for the ACD meanwhile
    monitor: Monitor | None = None  # a supervisor monitors this leg's conversation, or
    # this is the supervisor's leg (``monitor.leg``)
    assist: Assist | None = None  # the customer's leg runs a flow beside its agent
    conference: AgentConference | None = None  # one of an agent's three-way conference


@dataclass(eq=False)
class Call:
    id: str
    tenant_id: str | None
    caller: str
    callee: str
    origin: str
    start: float
    destination: str = ""
    answer: float | None = None
    status: int = 0
    hangup_side: str = ""
    codec: str = ""
    legs: list[Leg] = field(default_factory=list)
    ended: bool = False
    data: dict[str, str] = field(default_factory=dict)  # the payload the call carries
    treatment: str = ""  # "suspended" or "over_quota" when the call was refused so
    outbound_agent: str = ""  # an agent's own call (busy for the ACD until it ends)
    contact: str = ""  # the ACD contact whose customer is on this call (waits or talks)

    @property
    def pstn(self) -> bool:
        """A PSTN call of its tenant: a live leg on a trunk, and not a treated call."""
        return not self.treatment and any(leg.trunk and leg.state != "ended"
                                          for leg in self.legs)


@dataclass(eq=False)
class Monitor:
    """A supervisor listening to, whispering to or barging into an agent's call: the
    node rings the supervisor's extension (``leg``) and, once answered, mixes it with
    the agent's leg (``talker``) and the party the agent talks to (``other``)."""

    id: str
    tenant_id: str
    agent: str
    supervisor: str
    mode: MonitorMode
    talker: Leg
    other: Leg
    leg: Leg
    mixed: bool = False  # the media is mixed (else the pair is still just bridged)

    @property
    def state(self) -> str:
        return "active" if self.leg.state == "up" else "ringing"


@dataclass(eq=False)
class Assist:
    """Agent-assisted IVR (R-4.8): a flow of the tenant runs on the customer's leg
    (``other``) while the agent (``talker``) stays on the call, both hearing its prompts
    and either one's keys answering it; when the flow ends the two talk on alone and
    ``results`` (what the flow set, secrets masked) join the call's data."""

    id: str
    tenant_id: str
    agent: str
    flow: str
    talker: Leg
    other: Leg
    before: Mapping[str, Any]
    state: str = "running"  # running, done (the flow ended), ended (the call did)
    results: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class AgentConference:
    """An agent's three-way conference (the desktop's "Conference" during a consult):
    the customer (``customer``) and the agent's leg (``talker``) of the agent's first
    call, and the party the agent consulted (``third``, a leg of the agent's second call,
    which keeps its own CDR) are mixed, all heard by all. When any of them leaves, the
    other two talk on, bridged (across the two calls if need be)."""

    id: str
    tenant_id: str
    agent: str
    talker: Leg
    customer: Leg
    third: Leg

    @property
    def legs(self) -> tuple[Leg, Leg, Leg]:
        return (self.customer, self.talker, self.third)


class MonitorError(ValueError):
    """A monitoring request the node refused: ``status`` and ``code`` for the API."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(eq=False)
class CallbackEntry:
    """A caller who asked to be called back: its entry keeps its place in the ACD's
    line (the contact id is the id of the call that asked) while the node keeps what
    it needs to call back: the customer's number, the number it dialled (presented),
    and the leg calling it now, if any."""

    tenant_id: str
    contact: str
    queue: str
    number: str
    did: str = ""
    leg: Leg | None = None


MONITOR_RING_SECONDS = 20.0  # a supervisor's phone rings this long for a monitoring
# the phone's own ring timer stays behind the ACD's, which ends offers (CancelOffer)
OFFER_GRACE = 5.0

# --------------------------------------------------------------------------- core


class B2bua:
    """The call-control core (see the module docstring)."""

    def __init__(
        self,
        *,
        plan: Plan,
        local_ip: str,
        local_port: int,
        edge: Addr,
        media_ip: str,
        ports: PortPool,
        wall_offset: float = 0.0,
        ring_timeout: float = 60.0,
        token: Callable[[int], str] = secrets.token_hex,
    ) -> None:
        self.plan = plan
        self.local_ip = local_ip
        self.local_port = local_port
        self.edge = edge
        self.media_ip = media_ip
        self.ports = ports
        self.wall_offset = wall_offset
        self.ring_timeout = ring_timeout
        self._token = token
        self.layer = TransactionLayer(local_ip, local_port, "UDP")
        self.contact = SipUri.parse(f"sip:b2bua@{local_ip}:{local_port}")
        self.dialogs = DialogSet()
        self._leg_by_dialog: dict[tuple[str, str, str], Leg] = {}
        self._leg_by_server: dict[str, Leg] = {}
        self._leg_by_client: dict[str, Leg] = {}
        self._reinvites: dict[str, Leg] = {}  # our in-flight re-INVITEs
        self._legs: dict[str, Leg] = {}
        self._commands: list[Command] = []
        # heap of (deadline, seq, kind, leg id); a timer whose leg ended is skipped
        self._timers: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self.calls: dict[str, Call] = {}
        self.errors: list[Exception] = []  # our own bugs met while serving; the edge logs them
        self._callbacks: dict[tuple[str, str], CallbackEntry] = {}  # (tenant, contact)
        self.acd: dict[str, Acd] = {}  # per tenant with queues (appliance/acd)
        self.monitors: dict[str, Monitor] = {}  # supervisors on agents' calls, by id
        self.agent_phones: dict[tuple[str, str], str] = {}  # PC + phone: (tenant, agent)
        self.assists: dict[str, Assist] = {}  # flows run beside agents, by id (until the
        # call ends)
        self.conferences: dict[str, AgentConference] = {}  # agents' three-way ones, by id
        self._local: tuple[float, float] | None = None  # (now, local seconds of the day)
        self._sync_acd(plan, 0.0)

    # ----------------------------------------------------------------- outputs

    def outgoing(self) -> list[tuple[bytes, Addr]]:
        return self.layer.outgoing()

    def commands(self) -> list[Command]:
        out, self._commands = self._commands, []
        return out

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self._timers[0][0] if self._timers else None,
                                 self.layer.next_deadline(),
                                 *(acd.next_deadline() for acd in self.acd.values()))
                     if d is not None]
        return min(deadlines) if deadlines else None

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    def ivr_full(self, tenant_id: str | None) -> str | None:
        """Why a new IVR call cannot start now (the node's or the tenant's IVR ports are
        all busy), or None."""
        busy = self.usage()
        if self.plan.ivr_ports and sum(u["ivr_busy"] for u in busy.values()) >= \
                self.plan.ivr_ports:
            return "node IVR ports busy"
        tenant = self.plan.tenant(tenant_id or "")
        if tenant is not None and tenant.limits.ivr_ports and \
                busy.get(tenant.id, {}).get("ivr_busy", 0) >= tenant.limits.ivr_ports:
            return "tenant IVR ports busy"
        return None

    def pstn_full(self, tenant_id: str | None, besides: Call | None = None
                  ) -> tuple[int, int] | None:
        """``(limit, in use)`` when the tenant already holds all the PSTN calls its
        ``limits.pstn_calls`` allows (``besides``: a call not to count), else None."""
        tenant = self.plan.tenant(tenant_id or "")
        if tenant is None or not tenant.limits.pstn_calls:
            return None
        in_use = sum(1 for call in self.calls.values()
                     if call is not besides and call.tenant_id == tenant.id and call.pstn)
        return (tenant.limits.pstn_calls, in_use) if in_use >= tenant.limits.pstn_calls \
            else None

    def usage(self) -> dict[str, dict[str, int]]:
        """Live use per tenant: calls in progress, IVR ports busy and PSTN calls (R-4.17)."""
        out: dict[str, dict[str, int]] = {}
        for call in self.calls.values():
            entry = out.setdefault(call.tenant_id or "",
                                   {"calls": 0, "ivr_busy": 0, "pstn_calls": 0})
            entry["calls"] += 1
            entry["pstn_calls"] += int(call.pstn)
            entry["ivr_busy"] += sum(1 for leg in call.legs if leg.ivr is not None
                                     and not leg.ivr.finished and leg.state == "up")
        return out

    # ----------------------------------------------------------------- inputs

    def set_plan(self, plan: Plan, now: float = 0.0) -> None:
        """A new plan applies to new calls; calls in progress keep their legs. A
        tenant's ACD is reconfigured in place (agents stay signed in, callers keep
        their places; a removed queue's callers go back to their flows), what that
        decided is carried out at once."""
        self.plan = plan
        self._sync_acd(plan, now)
        self._drain(now)

    def _sync_acd(self, plan: Plan, now: float) -> None:
        kept: dict[str, Acd] = {}
        for tenant in plan.tenants:
            if tenant.acd is None:
                continue
            old = self.acd.get(tenant.id)
            if old is not None:
                old.reconfigure(tenant.acd, now)  # the plan validated it
                kept[tenant.id] = old
                continue
            kept[tenant.id] = fresh = Acd(tenant.acd, now)
            if self._local is not None:  # night hours and midnight from the first moment
                ref, seconds = self._local
                fresh.set_local_time(now, (seconds + now - ref) % DAY)
        # callback entries live in their tenant's ACD: a fresh one has none of them
        self._callbacks = {k: e for k, e in self._callbacks.items()
                           if kept.get(k[0]) is self.acd.get(k[0])}
        self.acd = kept
        for leg in [x for x in self._legs.values() if x.queue is not None
                    and (x.call.tenant_id or "") not in kept]:
            # the tenant has no queues any more: its waiting callers go back to their flow
            leg.queue = None
            self._commands.append(StopPlayback(leg.id))
            self._trace(leg.call, "queue_exit", reason="queues_removed")
            self._give_back(leg, 503, now)

    def set_local_time(self, now: float, seconds_of_day: float) -> None:
        """The node's local time of day at ``now`` (at start, and again now and then
        to follow clock and daylight-saving changes): the tenants' ACDs apply their night
        hours (offers then carry ``night=1`` for the desktop's alert) and start their
        day counters again at local midnight."""
        self._local = (now, seconds_of_day)
        for acd in self.acd.values():
            acd.set_local_time(now, seconds_of_day)
        self._drain(now)

    def agent_action(self, tenant_id: str, action: Callable[[Acd], Any], now: float) -> Any:
        """Run ``action`` on the tenant's ACD (an agent's login, state change, break...)
        and carry out what it decided; ACD errors propagate (nothing changed)."""
        acd = self.acd.get(tenant_id)
        if acd is None:
            raise KeyError(tenant_id)
        try:
            return action(acd)
        finally:
            self._run_acd(now)

    def receive(self, data: bytes, addr: Addr, now: float) -> None:
        self.layer.receive(data, addr, now)
        self._drain(now)

    def tick(self, now: float) -> None:
        for acd in self.acd.values():
            deadline = acd.next_deadline()
            if deadline is not None and deadline <= now:
                acd.tick(now)
        self.layer.tick(now)
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, leg_id = heapq.heappop(self._timers)
            leg = self._legs.get(leg_id)
            if leg is not None and leg.state != "ended":
                self._on_timer(kind, leg, now)
        self._drain(now)

    def media_dtmf(self, leg_id: str, digit: str, method: str, now: float) -> None:
        """The media plane detected a key press on a leg (RFC 4733 or in-band)."""
        leg = self._legs.get(leg_id)
        if leg is not None:
            self._key_pressed(leg, digit, method, now)

    def _key_pressed(self, leg: Leg, digit: str, method: str, now: float) -> None:
        if leg.peer is not None and leg.peer.assist is not None and leg.ivr is None:
            leg = leg.peer  # the agent's keys answer the flow run for its customer
        secret = leg.ivr is not None and leg.ivr.secret_input
        self._trace(leg.call, "dtmf", leg=leg.id, digit="*" if secret else digit,
                    method=method)
        if leg.queue is not None and leg.state == "up" and self._callback_key(leg, digit, now):
            return
        if leg.ivr is not None and not leg.ivr.finished and leg.state == "up":
            leg.ivr.digit(digit, now)
            self._drive_ivr(leg, now)

    def ivr_action_done(self, leg_id: str, ok: bool, value: Any, error: str | None,
                        now: float) -> None:
        """A data action of the leg's flow finished (see ``RunIvrAction``)."""
        leg = self._legs.get(leg_id)
        if leg is not None and leg.ivr is not None and leg.state == "up":
            leg.ivr.action_done(ok, value, error, now)
            self._drive_ivr(leg, now)

    def capture_finished(self, leg_id: str, seq: int, ok: bool, value: Any,
                         error: str | None, now: float) -> None:
        """A capture of the leg's flow ended (see ``CaptureAudio``)."""
        leg = self._legs.get(leg_id)
        if leg is not None and leg.ivr is not None and leg.state == "up":
            leg.ivr.capture_done(seq, ok, value, error, now)
            self._drive_ivr(leg, now)

    def notify_messages(self, tenant_id: str, extension: str, mailbox: str, new: int,
                        saved: int, now: float) -> None:
        """Message-waiting indication (RFC 3842): an unsolicited NOTIFY to the phone of
        ``extension`` through the edge, which finds its registration."""
        tenant = self.plan.tenant(tenant_id)
        if tenant is None or tenant.extension(extension) is None:
            return
        uri = SipUri.parse(f"sip:{extension}@{tenant.domain}")
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:{mailbox}@{tenant.domain}>;tag={self._token(6)}")
        headers.add("To", f"<{uri}>")
        headers.add("Call-ID", f"{self._token(12)}@{self.local_ip}")
        headers.add("CSeq", "1 NOTIFY")
        headers.add("Contact", f"<{self.contact}>")
        headers.add("Event", "message-summary")
        headers.add("Subscription-State", "active")
        headers.add("Content-Type", "application/simple-message-summary")
        body = (f"Messages-Waiting: {'yes' if new else 'no'}\r\n"
                f"Message-Account: sip:{mailbox}@{tenant.domain}\r\n"
                f"Voice-Message: {new}/{saved}\r\n").encode()
        self.layer.send_request(Request("NOTIFY", uri, headers, body), self.edge, now)

    def media_failed(self, leg_id: str, now: float) -> None:
        """The media plane could not serve a leg (its RTP port could not be bound):
        the call cannot carry audio, so it is released (503 if not yet answered)."""
        leg = self._legs.get(leg_id)
        if leg is None:
            return
        self._trace(leg.call, "media_failed", leg=leg.id)
        for x in list(leg.call.legs):
            if x.state != "ended":
                x.peer = None
                if x.role == "a" and x.state in ("calling", "ringing"):
                    self._fail_a(x, 503, now, "Media Unavailable")
                else:
                    x.call.hangup_side = x.call.hangup_side or "node"
                    self._hang_up(x, now)

    def playback_finished(self, leg_id: str, now: float) -> None:
        leg = self._legs.get(leg_id)
        if leg is not None and leg.queue is not None and leg.state == "up":
            self._hold_prompt(leg)  # the caller waits on: the hold prompt again
            return
        if leg is not None and leg.bridge_after is not None:
            agent, leg.bridge_after = leg.bridge_after, None
            if agent.state == "up" and leg.state == "up":
                self._bridge(leg, agent, now)
            return
        if leg is not None and leg.ivr is not None:
            leg.ivr.prompt_done(now)
            self._drive_ivr(leg, now)
            return
        if leg is not None and leg.state == "up" and leg.peer is None:
            leg.call.hangup_side = leg.call.hangup_side or "node"
            self._send_bye(leg, now)

    # ----------------------------------------------------------------- dispatch

    def _drain(self, now: float) -> None:
        while True:
            self._run_acd(now)
            events = self.layer.events()
            if not events:
                return
            for ev in events:
                try:
                    self._dispatch(ev, now)
                except (SipError, DialogError) as exc:  # the peer's fault: keep serving
                    self._protocol_error(ev, exc, now)
                except Exception as exc:  # our fault: answer 500, keep serving, report
                    self.errors.append(exc)
                    self._protocol_error(ev, SipError("internal error"), now, status=500)
                    self._abandon(ev, now)

    def _abandon(self, ev: object, now: float) -> None:
        """After a bug while setting up a call: release whatever the call already holds
        (legs, ports, media) so that nothing lingers, and write its CDR."""
        if not isinstance(ev, RequestReceived):
            return
        leg = self._leg_by_server.get(ev.key)
        if leg is None or leg.call.ended:
            return
        call = leg.call
        call.status = call.status or 500
        for other in list(call.legs):
            other.peer = None
            if other is not leg:  # the INVITE itself was just answered 500
                try:
                    self._hang_up(other, now)
                except Exception as exc:  # keep cleaning up the rest
                    self.errors.append(exc)
            self._end_leg(other, now)

    def _dispatch(self, ev: object, now: float) -> None:
        if isinstance(ev, RequestReceived):
            self._on_request(ev.key, ev.request, ev.addr, now)
        elif isinstance(ev, ResponseReceived):
            self._on_response(ev.key, ev.response, now)
        elif isinstance(ev, StrayResponseReceived):
            self._on_stray_response(ev.response, now)
        elif isinstance(ev, AckReceived):
            self._on_ack(ev.request, now)
        elif isinstance(ev, CancelReceived):
            self._on_cancel(ev.key, now)
        elif isinstance(ev, TransactionTimedOut):
            self._on_timeout(ev.key, now)

    def _protocol_error(self, ev: object, exc: Exception, now: float,
                        status: int | None = None) -> None:
        if isinstance(ev, RequestReceived) and ev.request.method != "ACK":
            code: int = status or getattr(exc, "status", 400) or 400
            reason = getattr(exc, "reason", None) or None
            try:
                self._respond(ev.key, ev.request, code if 400 <= code < 700 else 400, reason,
                              now)
            except SipError:
                pass  # the transaction already has its final response

    # ----------------------------------------------------------------- requests

    def _on_request(self, key: str, req: Request, addr: Addr, now: float) -> None:
        # malformed requests were answered by the transaction layer (check_request)
        if req.to.tag is not None:
            self._on_in_dialog(key, req, now)
            return
        if req.method == "OPTIONS":
            self._respond(key, req, 200, None, now, headers=[("Allow", ALLOW)])
        elif req.method == "INVITE":
            self._on_invite(key, req, addr, now)
        elif req.method in ("BYE", "INFO", "REFER", "NOTIFY"):
            self._respond(key, req, 481, None, now)
        else:
            self._respond(key, req, 405, None, now, headers=[("Allow", ALLOW)])

    def _on_invite(self, key: str, req: Request, addr: Addr, now: float) -> None:
        if addr != self.edge:
            self._respond(key, req, 403, "Calls Enter Through The Edge", now)
            return
        origin = _parse_origin(req.headers.get("X-BL-Origin"), self.plan)
        if origin is None:
            self._respond(key, req, 403, "Unknown Origin", now)
            return
        dialled = req.uri.user or ""
        route = self.plan.route(origin, dialled)
        tenant_id = route.tenant_id or origin.tenant_id  # unknown DID: no tenant
        caller = req.from_.uri.user or ""
        call = Call(
            id=self._token(8), tenant_id=tenant_id, caller=caller, callee=dialled,
            origin=f"trunk:{origin.trunk}" if origin.kind == "trunk" else f"ext:{origin.extension}",
            start=now,
        )
        self.calls[call.id] = call
        a = self._new_leg(call, "a", caller, origin if origin.kind == "extension" else None)
        a.invite, a.server_key, a.local_tag = req, key, self._token(6)
        self._leg_by_server[key] = a
        self._trace(call, "received", caller=caller, callee=dialled, origin=call.origin,
                    sip_call_id=req.call_id)
        tenant = self.plan.tenant(tenant_id or "")
        refused: tuple[str, Treatment] | None = None
        if tenant is not None and tenant.suspended:
            self._trace(call, "tenant_suspended",
                        treatment=tenant.treatments.suspended.describe())
            refused = ("suspended", tenant.treatments.suspended)
        elif route.kind == "none":
            self._trace(call, "unrouted", reason=route.reason)
            self._fail_a(a, 404, now)
            return
        elif (agent := self._agent_of(tenant, origin)) is not None and \
                not self._agent_call(call, agent, now):
            self._trace(call, "agent_not_signed_in", agent=agent)
            self._fail_a(a, 403, now, "Agent Not Signed In")
            return
        elif tenant is not None and (origin.kind == "trunk" or route.kind == "trunk") and \
                self._pstn_refused(call, tenant.treatments.over_quota.describe()):
            refused = ("over_quota", tenant.treatments.over_quota)
        if refused is not None:
            kind, treatment = refused
            call.treatment, call.destination = kind, f"treatment:{kind}"
            if treatment.reject:
                self._fail_a(a, treatment.reject, now)
                return
            route = Route(tenant_id, "announcement", text=treatment.announcement,
                          voice=treatment.voice)
        else:
            call.destination = _destination(route)
            self._trace(call, "routed", destination=call.destination)
        a.trunk = origin.kind == "trunk"
        try:
            offer = SessionDescription.parse(req.body) if req.body else None
        except SdpError:
            offer = None
        if offer is None:
            self._fail_a(a, 488, now, "Offer Required")
            return
        if not self._open_media(a):
            self._fail_a(a, 503, now, "Media Ports Exhausted")
            return
        try:
            answer, neg = negotiate(
                offer, supported=SUPPORTED_CODECS, local_ip=self.media_ip, local_port=a.port,
                session_id=_session_id(a), version=a.sdp_version,
            )
        except SdpError:
            self._fail_a(a, 488, now)
            return
        a.negotiated, a.direction = neg, neg.direction
        call.codec = neg.codec
        self._configure(a)
        a.answer_body = answer.to_bytes()
        if route.kind == "echo":
            self._answer_a(a, now)
            self._commands.append(StartEcho(a.id))
        elif route.kind == "announcement":
            self._answer_a(a, now)
            self._commands.append(PlayPrompts(a.id, call.tenant_id, ({"tts": route.text},),
                                              route.voice))
        elif route.kind == "flow" and (full := self.ivr_full(tenant_id)) is not None:
            self._trace(call, "ivr_ports_full", reason=full)
            self._fail_a(a, 486 if full.startswith("tenant") else 503, now, "IVR Ports Busy")
        elif route.kind == "flow":
            assert route.flow is not None
            self._answer_a(a, now)
            a.ivr = Interpreter(route.flow, variables={
                "caller": caller, "dialled": dialled, "tenant": tenant_id or ""},
                flows=self._flows(tenant_id))
            a.ivr.start(now)
            self._drive_ivr(a, now)
        elif route.kind == "hunt_group":
            self._place_b(call, a, route, route.members[0], now, rest=route.members[1:])
        elif route.kind == "queue":
            self._answer_a(a, now)
            if not self._enqueue(a, route.target, now):
                self._give_back(a, 503, now)
        else:
            self._place_b(call, a, route, route.target, now)

    def _on_in_dialog(self, key: str, req: Request, now: float) -> None:
        dialog = self.dialogs.match_request(req)
        leg = self._leg_by_dialog.get(dialog.dialog_id) if dialog else None
        if dialog is None or leg is None:
            self._respond(key, req, 481, None, now)
            return
        problem = dialog.receive_request(req)
        if problem is not None:
            self._respond(key, req, problem[0], problem[1], now)
            return
        method = req.method
        if method == "BYE":
            self._respond(key, req, 200, None, now)
            self._on_bye(leg, now)
        elif method == "INVITE":
            self._on_reinvite(key, leg, req, now)
        elif method == "INFO":
            self._on_info(key, leg, req, now)
        elif method == "REFER":
            self._on_refer(key, leg, req, now)
        elif method in ("OPTIONS", "NOTIFY"):
            self._respond(key, req, 200, None, now)
        else:
            self._respond(key, req, 405, None, now, headers=[("Allow", ALLOW)])

    def _on_bye(self, leg: Leg, now: float) -> None:
        call = leg.call
        supervising = leg.monitor is not None and leg.monitor.leg is leg
        leaving = leg.conference is not None and leg.conference.talker is leg  # the agent
        if not call.hangup_side and leg.transfer_from is None and not supervising \
                and not leaving:
            call.hangup_side = "caller" if leg.role == "a" else "callee"
        self._trace(call, "hangup", leg=leg.id)
        self._end_leg(leg, now)
        peer = leg.peer
        leg.peer = None
        if peer is not None:
            peer.peer = None
            if peer.call is not call:  # bridged across calls after a conference
                peer.call.hangup_side = peer.call.hangup_side or call.hangup_side
            self._commands.append(UnbridgeMedia(peer.id))
            self._hang_up(peer, now)

    def _on_reinvite(self, key: str, leg: Leg, req: Request, now: float) -> None:
        assert leg.dialog is not None
        try:
            offer = SessionDescription.parse(req.body) if req.body else None
            if offer is None:
                raise SdpError("re-INVITE without offer")
            leg.sdp_version += 1
            answer, neg = negotiate(
                offer, supported=SUPPORTED_CODECS, local_ip=self.media_ip, local_port=leg.port,
                session_id=_session_id(leg), version=leg.sdp_version,
            )
        except SdpError:
            self._respond(key, req, 488, None, now)
            return
        leg.dialog.update_remote_target(req)
        leg.negotiated, leg.direction = neg, neg.direction
        self._configure(leg)
        resp = make_response(req, 200, to_tag=leg.local_tag, body=answer.to_bytes(),
                             content_type="application/sdp", contact=self.contact)
        self.layer.send_response(key, resp, now)
        held = neg.remote_direction in ("sendonly", "inactive")
        self._trace(leg.call, "hold" if held else "resume", leg=leg.id)
        if leg.peer is not None and leg.peer.state == "up" and leg.conference is None:
            # (in a conference one party's hold leaves the other two talking)
            self._reinvite(leg.peer, neg.remote_direction, now)

    def _on_info(self, key: str, leg: Leg, req: Request, now: float) -> None:
        ctype = (req.content_type or "").lower()
        if ctype not in ("application/dtmf-relay", "application/dtmf"):
            self._respond(key, req, 415, None, now, headers=[
                ("Accept", "application/dtmf-relay, application/dtmf")])
            return
        digit = _info_digit(req.body, ctype)
        if digit is None:
            self._respond(key, req, 400, "Bad DTMF Body", now)
            return
        self._respond(key, req, 200, None, now)
        self._key_pressed(leg, digit, "info", now)
        if leg.peer is not None and leg.peer.assist is None and leg.assist is None:
            self._commands.append(SendDtmf(leg.peer.id, digit))

    # ----------------------------------------------------------------- transfer

    def _on_refer(self, key: str, leg: Leg, req: Request, now: float) -> None:
        refer_to = req.headers.get("Refer-To")
        peer = leg.peer
        if refer_to is None:
            self._respond(key, req, 400, "Missing Refer-To", now)
            return
        if leg.party is None or peer is None or leg.state != "up" \
                or peer.assist is not None \
                or leg.conference is not None:  # a flow beside the agent, a conference
            self._respond(key, req, 403, "Transfer Not Allowed", now)
            return
        target = NameAddr.parse(refer_to).uri
        leg.call.data.update(_refer_data(target))  # what the agent adds (R-4.9)
        replaces = _replaces(target)
        if replaces is not None:
            other = self._leg_by_dialog.get(replaces)
            if other is None or other.peer is None or other.party != leg.party \
                    or other.conference is not None:
                self._respond(key, req, 481, "Replaced Dialog Not Found", now)
                return
            self._respond(key, req, 202, None, now)
            self._attended_transfer(leg, other, now)
            return
        named = self._named_target(leg.party, target.user or "")
        if isinstance(named, Queue):
            self._refer_to_queue(key, leg, req, named, now)
            return
        if isinstance(named, Agent):
            self._refer_to_agent(key, leg, req, named, now)
            return
        route = self.plan.route(leg.party, target.user or "")
        if route.kind not in ("extension", "hunt_group", "trunk", "flow"):
            self._respond(key, req, 404, None, now)
            return
        if route.kind == "flow" and (full := self.ivr_full(leg.call.tenant_id)) is not None:
            self._trace(leg.call, "ivr_ports_full", reason=full)
            self._respond(key, req, 486, "IVR Ports Busy", now)
            return
        if route.kind == "trunk" and self._pstn_refused(leg.call, "transfer refused 486"):
            self._respond(key, req, 486, "Over Quota", now)
            return
        self._respond(key, req, 202, None, now)
        self._notify_refer(leg, "100 Trying", now)
        self._trace(leg.call, "transfer", mode="blind", by=leg.id, to=target.user or "")
        leg.peer = None
        peer.peer = None
        self._commands.append(UnbridgeMedia(peer.id))
        self._resume_held(peer, now)
        if route.kind == "flow":
            # agent -> IVR (R-4.9): the caller's own leg is handed to the flow, with the
            # call's data; no new leg is needed since media is anchored here
            assert route.flow is not None
            peer.ivr = Interpreter(route.flow, variables={
                **peer.call.data, "caller": peer.call.caller, "dialled": target.user or "",
                "tenant": peer.call.tenant_id or "", "transferred_by": leg.number},
                flows=self._flows(peer.call.tenant_id))
            peer.ivr_steps = 0
            peer.ivr.start(now)
            self._drive_ivr(peer, now)
            self._notify_refer(leg, "200 OK", now)
            self._arm(now + 5.0, "transferor_bye", leg)
            return
        members = route.members or (route.target,)
        b = self._place_b(leg.call, peer, route, members[0], now, rest=members[1:],
                          data=dict(leg.call.data) or None)
        if b is not None:
            b.transfer_from = leg

    def _attended_transfer(self, leg: Leg, other: Leg, now: float) -> None:
        """Bridge ``leg``'s peer with ``other``'s peer; both transferor legs leave."""
        first, second = leg.peer, other.peer
        assert first is not None and second is not None
        self._trace(leg.call, "transfer", mode="attended", by=leg.id, to=second.number)
        for transferor in (leg, other):
            transferor.peer = None
            self._commands.append(UnbridgeMedia(transferor.id))
        first.peer, second.peer = second, first
        self._commands.append(BridgeMedia(first.id, second.id, first.call.tenant_id,
                                          first.call.id))
        for party in (first, second):  # put on hold while the agent consulted: resumed
            self._resume_held(party, now)
        self._notify_refer(leg, "200 OK", now)
        for transferor in (leg, other):  # the agent's part in both calls ends
            self._release_transferor(transferor, now)
        self._send_bye(other, now)
        self._arm(now + 5.0, "transferor_bye", leg)

    # Transfers by agents (the desktop's transfer panel, docs/DESK.md): a Refer-To user
    # that is none of the tenant's own numbers but an agent id or a queue name.

    def _named_target(self, party: Origin, user: str) -> Agent | Queue | None:
        """The agent or queue of the transferor's tenant that ``user`` names; the
        tenant's own numbers (extensions, hunt groups, announcements, DIDs) come first."""
        tenant = self.plan.tenant(party.tenant_id or "")
        if tenant is None or not user or user in tenant.local_numbers or any(
                d.number == user for d in tenant.dids):
            return None
        agent = next((x for x in tenant.agents if x.id == user), None)
        if agent is not None:
            return agent
        return next((q for q in tenant.queues if q.name == user), None)

    def _leg_agent(self, leg: Leg) -> str | None:
        """The agent talking on ``leg``: the one its offer or transfer rang, else the
        agent whose extension the leg reaches."""
        if leg.offer is not None:
            return leg.offer[1]
        if leg.acd_agent:
            return leg.acd_agent
        tenant = self.plan.tenant(leg.call.tenant_id or "")
        if tenant is None or leg.party is None:
            return None
        return next((a.id for a in tenant.agents if a.extension == leg.party.extension), None)

    def _refer_failed(self, key: str, leg: Leg, req: Request, status: int, phrase: str,
                      now: float, **trace: str) -> None:
        """A transfer that cannot start: accepted, then failed by NOTIFY (RFC 3515); the
        transferor keeps talking to its party."""
        self._respond(key, req, 202, None, now)
        self._trace(leg.call, "transfer_failed", status=str(status), **trace)
        self._notify_refer(leg, f"{status} {phrase}", now)

    def _refer_to_agent(self, key: str, leg: Leg, req: Request, agent: Agent,
                        now: float) -> None:
        """Blind transfer to an agent id: rings the agent's extension with the call's
        data. With an ACD only a signed-in agent that is not busy (ready or not ready) is
        rung, and it counts as busy (an internal call) while the leg lasts."""
        call, peer = leg.call, leg.peer
        assert peer is not None
        acd = self.acd.get(call.tenant_id or "")
        if acd is not None:
            state = acd.agent(agent.id, now).state
            if state not in ("ready", "not_ready"):
                status, reason = (480, "Temporarily Unavailable") if state in (
                    "logged_out", "break") else (486, "Busy Here")
                self._refer_failed(key, leg, req, status, reason, now, to=agent.id,
                                   kind="agent", agent_state=str(state))
                return
        self._respond(key, req, 202, None, now)
        self._notify_refer(leg, "100 Trying", now)
        self._trace(call, "transfer", mode="blind", by=leg.id, to=agent.id, kind="agent")
        data = dict(call.data)
        view = acd.contact(call.contact) if acd is not None else None
        if view is not None:
            data.setdefault("queue", view.queue)
        if (by := self._leg_agent(leg)) is not None:
            data["transferred_by"] = by
        data["agent"] = agent.id
        if acd is not None:
            acd.start_outbound(agent.id, now)  # no offer reaches it while this rings
        leg.peer = None
        peer.peer = None
        self._commands.append(UnbridgeMedia(peer.id))
        self._resume_held(peer, now)
        b = self._place_b(call, peer, Route(call.tenant_id, "extension",
                                            target=agent.extension),
                          agent.extension, now, data=data)
        if b is None:
            if acd is not None:
                acd.end_outbound(agent.id, now)
            return
        b.transfer_from, b.acd_agent = leg, agent.id if acd is not None else ""

    def _refer_to_queue(self, key: str, leg: Leg, req: Request, queue: Queue,
                        now: float) -> None:
        """Blind transfer to a queue: the transferor's party waits in it (hold prompt)
        and the ACD offers it to the queue's agents with the call's data. An ACD contact
        moves (``transfer_to_queue``: the agent goes to after-call work); any other
        caller is enqueued."""
        call, peer = leg.call, leg.peer
        assert peer is not None
        acd = self.acd.get(call.tenant_id or "")
        if acd is None or peer.role != "a" or peer.state != "up":
            # only a caller's own leg waits in a queue (an agent's outbound call: no)
            self._refer_failed(key, leg, req, 403, "Forbidden", now, to=queue.name,
                               kind="queue", reason="not a caller")
            return
        by = self._leg_agent(leg)
        view = acd.contact(call.contact)
        if view is not None and view.state == "connected":
            try:
                acd.transfer_to_queue(call.contact, queue.name, now, skills=queue.skills)
            except AcdError as exc:
                self._refer_failed(key, leg, req, 503, "Service Unavailable", now,
                                   to=queue.name, kind="queue", reason=exc.message)
                return
            moved = True
        else:
            moved = False
        self._respond(key, req, 202, None, now)
        self._notify_refer(leg, "100 Trying", now)
        self._trace(call, "transfer", mode="blind", by=leg.id, to=queue.name, kind="queue")
        if by is not None:
            call.data["transferred_by"] = by
        leg.peer = None
        peer.peer = None
        self._commands.append(UnbridgeMedia(peer.id))
        self._resume_held(peer, now)
        call.destination = f"queue:{queue.name}"
        if moved:
            peer.queue = queue.name
            self._trace(call, "queued", queue=queue.name, cause="transfer")
            self._hold_prompt(peer)
        elif not self._enqueue(peer, queue.name, now):
            self._trace(call, "transfer_failed", status="503", to=queue.name, kind="queue")
            self._notify_refer(leg, "503 Service Unavailable", now)
            leg.peer, peer.peer = peer, leg  # the transferor keeps the caller
            self._commands.append(BridgeMedia(leg.id, peer.id, call.tenant_id, call.id))
            return
        self._release_transferor(leg, now)
        self._notify_refer(leg, "200 OK", now)
        self._arm(now + 5.0, "transferor_bye", leg)

    def _release_transferor(self, leg: Leg, now: float) -> None:
        """The party on ``leg`` went on to someone else: the agent's part in the ACD
        ends (its contact ends: after-call work or ready, as its queue says; an internal
        or outbound call ends: back to its state before)."""
        call = leg.call
        acd = self.acd.get(call.tenant_id or "")
        agent = self._leg_agent(leg)
        if acd is None or agent is None:
            return
        view = acd.contact(call.contact)
        if view is not None and view.state == "connected" and view.agent == agent:
            acd.ended(call.contact, now)
        for busy in (leg.acd_agent, call.outbound_agent):
            if busy != agent:
                continue
            try:
                acd.end_outbound(agent, now)
            except AcdError as exc:  # logged out meanwhile
                self._trace(call, "outbound_end_refused", reason=exc.message)
            if call.outbound_agent == agent:
                call.outbound_agent = ""
            leg.acd_agent = ""
            break
        self._trace(call, "transferred", agent=agent)

    def _agent_leg_ended(self, leg: Leg, now: float) -> None:
        agent, leg.acd_agent = leg.acd_agent, ""
        acd = self.acd.get(leg.call.tenant_id or "")
        if acd is None:
            return
        try:
            acd.end_outbound(agent, now)
        except AcdError as exc:  # logged out meanwhile
            self._trace(leg.call, "outbound_end_refused", reason=exc.message)

    def _resume_held(self, leg: Leg, now: float) -> None:
        """``leg`` was put on hold by the node (mirroring its partner's hold) and gets a
        new partner: it sends and receives again."""
        if leg.state == "up" and leg.direction in ("sendonly", "inactive"):
            self._reinvite(leg, "sendrecv", now)

    def _notify_refer(self, leg: Leg, status_line: str, now: float) -> None:
        if leg.dialog is None or leg.state != "up":
            return
        final = not status_line.startswith("1")
        req = leg.dialog.create_request(
            "NOTIFY", body=f"SIP/2.0 {status_line}\r\n".encode(),
            content_type="message/sipfrag;version=2.0",
            extra_headers=[("Event", "refer"),
                           ("Subscription-State",
                            "terminated;reason=noresource" if final else "active;expires=60")],
        )
        self.layer.send_request(req, self._next_hop(leg.dialog), now)

    # ----------------------------------------------------------------- IVR

    def _drive_ivr(self, leg: Leg, now: float) -> None:
        """Carry out what the leg's flow interpreter asked for, trace its steps, and
        keep a timer for its next deadline."""
        ivr = leg.ivr
        assert ivr is not None
        for cmd in ivr.commands():
            if leg.assist is not None and isinstance(cmd, TransferCall | HangupCall):
                # a flow beside an agent does not hang up or transfer the customer: its
                # end gives the customer back to the agent
                self._drive_trace(leg, ivr)
                self._end_assist(leg.assist, now, "transfer_refused"
                                 if isinstance(cmd, TransferCall) else "end")
                return
            if isinstance(cmd, PlayPrompt):
                self._commands.append(PlayPrompts(leg.id, leg.call.tenant_id, cmd.prompts,
                                                  cmd.language))
            elif isinstance(cmd, StopPrompt):
                self._commands.append(StopPlayback(leg.id))
            elif isinstance(cmd, TransferCall):
                self._ivr_transfer(leg, cmd, now)
            elif isinstance(cmd, HangupCall):
                leg.call.hangup_side = leg.call.hangup_side or "node"
                self._hang_up(leg, now)
            elif isinstance(cmd, RunAction):
                self._commands.append(RunIvrAction(leg.id, leg.call.tenant_id, cmd.kind,
                                                   cmd.params, cmd.timeout))
            elif isinstance(cmd, StartCapture):
                self._commands.append(CaptureAudio(leg.id, leg.call.tenant_id, leg.call.id,
                                                   leg.call.caller, ivr.language, cmd))
            elif isinstance(cmd, StopCapture):
                self._commands.append(StopCaptureAudio(leg.id, cmd.seq))
        self._drive_trace(leg, ivr)
        deadline = ivr.next_deadline()
        if deadline is not None and deadline != leg.ivr_deadline and leg.state == "up":
            leg.ivr_deadline = deadline
            self._arm(deadline, "ivr", leg)

    def _drive_trace(self, leg: Leg, ivr: Interpreter) -> None:
        for step in ivr.trace[leg.ivr_steps:]:
            self._trace(leg.call, "ivr", flow=step.flow, node=step.node, step=step.event,
                        **dict(step.detail))
        leg.ivr_steps = len(ivr.trace)

    def originate(self, tenant_id: str, number: str, flow_name: str, now: float, *,
                  caller_id: str | None = None, ring_seconds: float | None = None,
                  variables: Mapping[str, Any] | None = None) -> str:
        """An outbound call from the IVR (R-4.2): dial ``number`` as the tenant (its
        extensions, or the PSTN through its outbound routes) presenting ``caller_id``
        (one of the tenant's numbers), ring for ``ring_seconds``; when answered, the
        flow runs on the call. Returns the call id; ``ValueError`` names what is wrong."""
        tenant = self.plan.tenant(tenant_id)
        if tenant is None:
            raise ValueError(f"unknown tenant {tenant_id!r}")
        if tenant.suspended:
            raise CallRefused("tenant_suspended", f"{tenant_id} is suspended")
        flow = tenant.flows.get(flow_name)
        if flow is None:
            raise ValueError(f"{tenant_id} has no flow {flow_name!r}")
        full = self.ivr_full(tenant_id)
        if full is not None:
            raise ValueError(full)
        route = self.plan.route(Origin("extension", tenant_id=tenant_id), number)
        if route.kind not in ("extension", "trunk"):
            raise ValueError(f"{number!r} is not an extension or an outside number of "
                             f"{tenant_id}")
        if ring_seconds is not None and not 1 <= ring_seconds <= 300:
            raise ValueError("ring_seconds must be between 1 and 300")
        if route.kind == "trunk" and (pstn := self.pstn_full(tenant_id)) is not None:
            raise CallRefused("quota_exceeded", f"{tenant_id} holds {pstn[1]} PSTN calls, "
                              f"its limit (pstn_calls {pstn[0]})")
        call = Call(id=self._token(8), tenant_id=tenant_id,
                    caller=self._presented_number(tenant, None, caller_id), callee=number,
                    origin=f"flow:{flow_name}", start=now, destination=_destination(route))
        self.calls[call.id] = call
        self._trace(call, "originate", number=number, flow=flow_name, caller_id=call.caller,
                    ring_seconds=str(ring_seconds or self.ring_timeout))
        b = self._place_b(call, None, route, route.target, now, caller_id=caller_id,
                          ring_seconds=ring_seconds)
        if b is None:
            if not call.legs:  # nothing was placed, so nothing will finish the call
                del self.calls[call.id]
            raise ValueError(f"cannot place a call to {number!r} now")
        b.on_answer = (flow, dict(variables or {}))
        return call.id

    def _pstn_refused(self, call: Call, outcome: str) -> bool:
        """Would ``call``, not yet a PSTN call, become one over its tenant's
        ``pstn_calls`` limit? Then it is traced (``quota_exceeded``, with the
        ``outcome`` the caller gives it) and refused."""
        if call.pstn:
            return False
        full = self.pstn_full(call.tenant_id, besides=call)
        if full is None:
            return False
        self._trace(call, "quota_exceeded", quota="pstn_calls", limit=str(full[0]),
                    in_use=str(full[1]), treatment=outcome)
        return True

    def _flows(self, tenant_id: str | None) -> Mapping[str, Flow]:
        tenant = self.plan.tenant(tenant_id or "")
        return tenant.flows if tenant is not None else {}

    def _ivr_transfer(self, leg: Leg, cmd: TransferCall, now: float) -> None:
        """The flow hands the caller to an extension, a number, an agent or a queue,
        with its data."""
        call = leg.call
        route = self.plan.transfer_route(call.tenant_id or "", cmd.kind, cmd.target)
        if route.kind == "queue":
            call.destination = _destination(route)
            call.data.update(cmd.data)
            if not self._enqueue(leg, route.target, now):
                self._give_back(leg, 503, now)
            return
        if route.kind not in ("extension", "hunt_group", "trunk") or (
                route.kind == "hunt_group" and not route.members):
            self._trace(call, "ivr_transfer_failed", reason=f"{cmd.target}: {route.reason}")
            self._give_back(leg, 404, now)
            return
        if route.kind == "trunk" and self._pstn_refused(call, "transfer failed 486"):
            self._give_back(leg, 486, now)
            return
        call.destination = _destination(route)
        call.data.update(cmd.data)  # what the flow collected joins what the call carried
        members = route.members or (route.target,)
        self._place_b(call, leg, route, members[0], now, rest=members[1:],
                      data=dict(call.data), caller_id=cmd.caller_id,
                      ring_seconds=cmd.ring_seconds)

    # ----------------------------------------------------------------- queues (ACD)

    def _enqueue(self, a: Leg, queue: str, now: float) -> bool:
        """The caller on ``a`` (answered) waits in the tenant's ACD queue, hearing the
        hold prompt, until an agent answers or the queue lets it go."""
        call = a.call
        acd = self.acd.get(call.tenant_id or "")
        tenant = self.plan.tenant(call.tenant_id or "")
        spec = next((q for q in tenant.queues if q.name == queue), None) if tenant else None
        if acd is None or spec is None:
            self._trace(call, "queue_failed", queue=queue, reason="no such queue")
            return False
        try:
            acd.enqueue(call.id, queue, now, skills=spec.skills,
                        language=call.data.get("language", ""), data=dict(call.data))
        except AcdError as exc:
            self._trace(call, "queue_failed", queue=queue, reason=exc.message)
            return False
        a.queue, call.contact = queue, call.id
        self._trace(call, "queued", queue=queue)
        self._hold_prompt(a)
        return True

    def _hold_prompt(self, a: Leg) -> None:
        self._commands.append(PlayPrompts(a.id, a.call.tenant_id, (
            {"tts": "Please hold. The next available agent will answer your call."},),
            "en-us"))

    def _run_acd(self, now: float) -> None:
        """Carry out what the tenants' ACDs decided, and pass their events on."""
        for acd in list(self.acd.values()):
            while True:
                commands, events = acd.commands(), acd.events()
                self._commands.extend(AcdNotice(ev) for ev in events)
                for cmd in commands:
                    try:
                        self._acd_command(acd, cmd, now)
                    except AcdError as exc:  # a race the core refused: it changed nothing
                        self.errors.append(exc)
                self._forget_callbacks(acd, events)
                if not commands:
                    break

    def _acd_command(self, acd: Acd, cmd: AcdCommand, now: float) -> None:
        call = self._contact_call(cmd.tenant_id, cmd.contact)
        a = next((x for x in call.legs if (x.role == "a" or x.callback) and x.state == "up"),
                 None) if call is not None else None
        if isinstance(cmd, Offer):
            tenant = self.plan.tenant(cmd.tenant_id)
            agent = next((x for x in tenant.agents if x.id == cmd.agent), None) \
                if tenant else None
            if call is None or a is None:  # the caller is gone meanwhile
                acd.abandon(cmd.contact, now)
                return
            if agent is None or tenant is None:  # the agent cannot be rung
                acd.no_answer(cmd.contact, cmd.agent, now)
                return
            data = {**call.data, "queue": cmd.queue, "agent": cmd.agent,
                    "contact": cmd.contact,  # the desk's wrap-up names it (R-5.2a)
                    **({"language": cmd.language} if cmd.language else {}),
                    **({"callback": "true"} if cmd.callback else {}),
                    **({"night": "1"} if cmd.night_alert else {})}
            route = self._agent_route(tenant, agent)
            if route.kind == "trunk" and self._pstn_refused(call, "offer not placed"):
                acd.no_answer(cmd.contact, cmd.agent, now)  # its phone cannot be rung now
                return
            self._trace(call, "offered", agent=cmd.agent, queue=cmd.queue,
                        **({"phone": route.target} if route.target != agent.extension
                           else {}))
            # the call's data stays inside: a carrier never gets it (the desk shows it)
            b = self._place_b(call, a, route, route.target, now,
                              data=None if route.kind == "trunk" else data,
                              ring_seconds=cmd.timeout + OFFER_GRACE)
            if b is None:
                return
            b.offer, b.announce_agent = (cmd.contact, cmd.agent), cmd.announce_agent
        elif isinstance(cmd, CancelOffer):
            for b in list(call.legs if call is not None else ()):
                if b.offer == (cmd.contact, cmd.agent) and b.state in ("calling", "ringing"):
                    b.offer_cancelled = True
                    self._trace(b.call, "offer_cancelled", agent=cmd.agent, reason=cmd.reason)
                    if b.client_key is not None:
                        try:
                            self.layer.cancel(b.client_key, now)
                        except SipError:
                            pass
        elif isinstance(cmd, Announce):
            if a is None or a.queue is None:
                return  # answered or gone meanwhile
            prompts: list[Mapping[str, Any]] = [
                {"tts": f"You are number {cmd.position} in line."}]
            if cmd.ewt_seconds is not None:
                minutes = max(1, round(cmd.ewt_seconds / 60))
                prompts.append({"tts": f"Your expected wait is about {minutes} "
                                f"minute{'s' if minutes > 1 else ''}."})
            self._commands.append(StopPlayback(a.id))
            self._commands.append(PlayPrompts(a.id, a.call.tenant_id, tuple(prompts),
                                              "en-us"))
        elif isinstance(cmd, ExitQueue):
            if a is None:
                return
            a.queue, a.peer = None, None
            self._commands.append(StopPlayback(a.id))
            self._trace(a.call, "queue_exit", queue=cmd.queue, reason=cmd.reason)
            self._give_back(a, 408, now)
        elif isinstance(cmd, PlaceCallback):
            self._place_callback(acd, cmd, now)
        elif isinstance(cmd, CancelCallback):
            self._cancel_callback(cmd, now)

    def _give_back(self, leg: Leg, status: int, now: float) -> None:
        """A transfer of the caller on ``leg`` failed with ``status``: the flow takes the
        caller back at its ``on_failure``, or, without a flow, the node hangs up."""
        if leg.ivr is not None and leg.ivr.mode == "transferring":
            leg.ivr.transfer_failed(status, now)
            self._drive_ivr(leg, now)
            return
        leg.call.hangup_side = "node"
        self._hang_up(leg, now)

    def set_agent_phone(self, tenant_id: str, agent_id: str, number: str | None) -> None:
        """PC + phone mode (R-5.1): the agent's offers ring ``number`` (a mobile or
        landline through the tenant's outbound routes, or another of its extensions)
        instead of its own extension; None: its extension again. ``ValueError`` when
        the tenant cannot reach the number, ``LookupError`` for an agent it does not
        have."""
        tenant = self.plan.tenant(tenant_id)
        agent = next((a for a in tenant.agents if a.id == agent_id), None) \
            if tenant is not None else None
        if tenant is None or agent is None:
            raise LookupError(f"no agent {agent_id}")
        if number is None:
            self.agent_phones.pop((tenant_id, agent_id), None)
            return
        route = self.plan.route(Origin("extension", tenant.id, agent.extension), number)
        if route.kind not in ("trunk", "extension") or not route.target:
            raise ValueError(f"{tenant_id} cannot call {number!r}")
        self.agent_phones[(tenant_id, agent_id)] = number

    def _agent_route(self, tenant: Tenant, agent: Agent) -> Route:
        """Where an offer for ``agent`` rings: its extension, or its PC + phone number
        (routed now: a plan may have changed the tenant's routes)."""
        number = self.agent_phones.get((tenant.id, agent.id))
        if number is not None:
            route = self.plan.route(Origin("extension", tenant.id, agent.extension), number)
            if route.kind in ("trunk", "extension") and route.target:
                return route
        return Route(tenant.id, "extension", target=agent.extension)

    def _agent_of(self, tenant: Tenant | None, origin: Origin) -> str | None:
        """The agent whose extension places this call, for tenants with an ACD whose
        agents' phones follow their desktop login."""
        if tenant is None or origin.kind != "extension" or tenant.id not in self.acd \
                or not tenant.bind_agent_phones:
            return None
        return next((x.id for x in tenant.agents if x.extension == origin.extension), None)

    def _agent_call(self, call: Call, agent: str, now: float) -> bool:
        """An agent's phone calls out (R-X.1): only while the agent is signed in on the
        desktop; the ACD then offers it nothing until the call ends (False: refused)."""
        acd = self.acd[call.tenant_id or ""]
        state = acd.agent(agent, now).state
        if state == "logged_out":
            return False
        if state in ("ready", "not_ready"):
            acd.start_outbound(agent, now)
            call.outbound_agent = agent
        return True

    def _offer_answered(self, b: Leg, a: Leg, now: float) -> bool:
        """The agent answered an offer: the caller leaves the queue for the agent. True:
        bridge now; False: not now (the offer had already ended and the agent's leg is
        released, or the caller first hears the agent's id: bridged when it ends)."""
        assert b.offer is not None
        contact, agent = b.offer
        acd = self.acd.get(b.call.tenant_id or "")
        if b.offer_cancelled or acd is None or a.queue is None:
            self._send_bye(b, now)
            return False
        try:
            acd.answered(contact, agent, now)
        except AcdError as exc:
            self.errors.append(exc)
            self._send_bye(b, now)
            return False
        a.queue, a.peer = None, b
        self._commands.append(StopPlayback(a.id))
        self._trace(a.call, "agent_answered", agent=agent)
        if b.announce_agent:  # R-5.2a: the caller hears who answers, then they talk
            a.bridge_after = b
            self._commands.append(PlayPrompts(a.id, a.call.tenant_id, (
                {"tts": f"Agent {agent} will take your call."},), "en-us"))
            return False
        return True

    def _offer_failed(self, b: Leg, status: int, now: float) -> None:
        """The agent's phone did not take the offer: the ACD decides what next (the
        caller stays in the queue at its place)."""
        assert b.offer is not None
        contact, agent = b.offer
        a = b.peer
        self._end_leg(b, now)
        if a is not None and a.peer is b:
            a.peer = None
        acd = self.acd.get(b.call.tenant_id or "")
        if b.offer_cancelled or acd is None or acd.contact(contact) is None:
            return
        self._trace(b.call, "offer_failed", agent=agent, status=str(status))
        if status in (486, 600, 603):
            acd.declined(contact, agent, now)
        else:
            acd.no_answer(contact, agent, now)

    def _leave_acd(self, call: Call, now: float) -> None:
        """A call that was a contact of the ACD ended: answered ones end (the agent
        goes to after-call work), waiting ones are abandoned."""
        acd = self.acd.get(call.tenant_id or "")
        if acd is not None and call.outbound_agent:
            try:
                acd.end_outbound(call.outbound_agent, now)
            except AcdError as exc:  # logged out meanwhile
                self._trace(call, "outbound_end_refused", reason=exc.message)
        view = acd.contact(call.contact) if acd is not None and call.contact else None
        if acd is None or view is None:
            return
        if view.agent is not None:
            acd.ended(call.contact, now)
        else:
            acd.abandon(call.contact, now)

    # ----------------------------------------------------------------- callbacks (ACD)

    def _callback_key(self, a: Leg, digit: str, now: float) -> bool:
        """A key pressed by the caller waiting on ``a``: the queue's callback key (queues
        with ``callback_allowed``) asks to be called back at the caller's number. The
        entry keeps its place in line; the node says so and hangs up. True: the key was
        that one (handled, even if refused)."""
        call, queue = a.call, a.queue
        tenant = self.plan.tenant(call.tenant_id or "")
        acd = self.acd.get(call.tenant_id or "")
        spec = next((q for q in tenant.queues if q.name == queue), None) if tenant else None
        if tenant is None or acd is None or spec is None or spec.acd is None \
                or not spec.acd.callback_allowed or digit != spec.callback_key \
                or a.callback or not call.contact:
            return False
        number = call.caller
        route = self.plan.route(Origin("extension", tenant_id=tenant.id), number)
        if route.kind not in ("extension", "trunk"):
            self._trace(call, "callback_refused", queue=spec.name, number=number,
                        reason="number not reachable")
            self._commands.append(StopPlayback(a.id))
            self._commands.append(PlayPrompts(a.id, call.tenant_id, (
                {"tts": "Sorry, we cannot call you back at this number. Please hold."},),
                "en-us"))
            return True
        try:
            acd.request_callback(call.contact, number, now)
        except AcdError as exc:  # e.g. an agent's phone rings for it right now
            self._trace(call, "callback_refused", queue=spec.name, number=number,
                        reason=exc.message)
            return True
        self._callbacks[(tenant.id, call.contact)] = CallbackEntry(
            tenant.id, call.contact, spec.name, number, did=call.callee)
        self._trace(call, "callback_requested", queue=spec.name, number=number)
        call.contact = ""  # the entry waits without this call: its end abandons nothing
        a.queue, a.ivr = None, None  # nor does the flow take the caller back
        digits = "".join(ch for ch in number if ch in "0123456789*#")
        self._commands.append(StopPlayback(a.id))
        self._commands.append(PlayPrompts(a.id, call.tenant_id, (
            {"tts": "We will call you back at"},
            *([{"say": digits, "as": "digits"}] if digits else [{"tts": number}]),
            {"tts": "You keep your place in line. Goodbye."}), "en-us"))
        return True  # the prompt ends with no peer: the node hangs up

    def _contact_call(self, tenant_id: str, contact: str) -> Call | None:
        """The call an ACD contact's customer is on: the caller's own call (its id is the
        contact id) or the node's call back to the customer once answered."""
        entry = self._callbacks.get((tenant_id, contact))
        call = entry.leg.call if entry is not None and entry.leg is not None \
            else self.calls.get(contact)
        return call if call is not None and not call.ended and call.contact == contact \
            else None

    def _place_callback(self, acd: Acd, cmd: PlaceCallback, now: float) -> None:
        """The ACD reserved an agent for a callback entry: call the customer through the
        tenant's routes, presenting the number it dialled, ringing ``cmd.timeout``. A
        call the node cannot place (tenant suspended, no route, over the tenant's PSTN
        quota, no media port) counts as a failed attempt."""
        key = (cmd.tenant_id, cmd.contact)
        entry = self._callbacks.get(key)
        if entry is None:  # asked for otherwise than by the key: the core's number
            entry = self._callbacks[key] = CallbackEntry(cmd.tenant_id, cmd.contact,
                                                         cmd.queue, cmd.number)
        tenant = self.plan.tenant(cmd.tenant_id)
        call = Call(id=self._token(8), tenant_id=cmd.tenant_id, caller="", callee=cmd.number,
                    origin=f"callback:{cmd.queue}", start=now, data=dict(cmd.data))
        route = self.plan.route(Origin("extension", tenant_id=cmd.tenant_id), cmd.number)
        reason = ""
        if tenant is None or tenant.suspended:
            reason = "tenant_suspended" if tenant is not None else "unknown_tenant"
        elif route.kind not in ("extension", "trunk"):
            reason = "number_not_reachable"
        elif route.kind == "trunk" and self._pstn_refused(call, "callback failed"):
            reason = "quota_exceeded"
        b: Leg | None = None
        if tenant is not None and not reason:
            call.caller = self._presented_number(tenant, None, entry.did)
            call.destination = _destination(route)
            self.calls[call.id] = call
            self._trace(call, "callback_placed", contact=cmd.contact, queue=cmd.queue,
                        agent=cmd.agent, attempt=str(cmd.attempt), number=cmd.number,
                        caller_id=call.caller)
            b = self._place_b(call, None, route, route.target, now, caller_id=entry.did,
                              ring_seconds=cmd.timeout)
            if b is None:
                if not call.legs:
                    self.calls.pop(call.id, None)
                reason = "cannot_dial"
        if b is None:
            self._trace(call, "callback_failed", contact=cmd.contact,
                        attempt=str(cmd.attempt), reason=reason)
            acd.callback_failed(cmd.contact, now)
            return
        b.callback, entry.leg = cmd.contact, b

    def _cancel_callback(self, cmd: CancelCallback, now: float) -> None:
        """The ACD gave up the callback (its timeout, or the entry was cancelled)."""
        entry = self._callbacks.get((cmd.tenant_id, cmd.contact))
        b = entry.leg if entry is not None else None
        if entry is None or b is None or b.state == "ended":
            return
        entry.leg = None
        self._trace(b.call, "callback_cancelled", contact=cmd.contact, reason=cmd.reason)
        b.call.hangup_side = b.call.hangup_side or "node"
        self._hang_up(b, now)

    def _callback_answered(self, b: Leg, now: float) -> None:
        """The customer answered: it waits on ``b`` like a queued caller (a short prompt,
        then the hold prompt) while the ACD offers it to the reserved agent; the offer
        finds ``b`` as the contact's caller leg."""
        call, contact = b.call, b.callback
        entry = self._callbacks.get((call.tenant_id or "", contact))
        acd = self.acd.get(call.tenant_id or "")
        if entry is None or entry.leg is not b or acd is None:  # given up meanwhile
            call.hangup_side = "node"
            self._send_bye(b, now)
            return
        try:
            acd.callback_answered(contact, now)
        except AcdError as exc:  # the entry is gone: nothing to connect the customer to
            self.errors.append(exc)
            entry.leg = None
            call.hangup_side = "node"
            self._send_bye(b, now)
            return
        call.contact, b.queue = contact, entry.queue
        self._trace(call, "callback_answered", contact=contact, queue=entry.queue)
        self._commands.append(PlayPrompts(b.id, call.tenant_id, (
            {"tts": "Hello, this is the call back you asked for. "
                    "An agent will be with you in a moment."},), "en-us"))

    def _callback_failed(self, b: Leg, status: int, now: float) -> None:
        """The customer did not answer (busy, no answer, failure): the ACD retries after
        the queue's delay or gives up. A leg the ACD had already given up just ends."""
        call, contact = b.call, b.callback
        entry = self._callbacks.get((call.tenant_id or "", contact))
        ours = entry is not None and entry.leg is b
        call.status = call.status or status
        if ours:
            assert entry is not None
            entry.leg = None
            self._trace(call, "callback_failed", contact=contact, status=str(status))
        self._end_leg(b, now)
        acd = self.acd.get(call.tenant_id or "")
        if ours and acd is not None:
            try:
                acd.callback_failed(contact, now)
            except AcdError as exc:  # a race the core refused: it changed nothing
                self.errors.append(exc)

    def _forget_callbacks(self, acd: Acd, events: Iterable[AcdEvent]) -> None:
        """Drop the callback entries of contacts the ACD has forgotten."""
        if not self._callbacks:
            return
        for ev in events:
            contact = getattr(ev, "contact", None)
            key = (acd.tenant_id, contact or "")
            if key in self._callbacks and acd.contact(key[1]) is None:
                del self._callbacks[key]

    # ----------------------------------------------------------------- monitoring

    def monitor(self, tenant_id: str, agent_id: str, supervisor_id: str, mode: str,
                now: float) -> Monitor:
        """A supervisor of the tenant joins the call agent ``agent_id`` is talking on:
        the node rings the supervisor's extension (the desktop's softphone answers it)
        and mixes it in per ``mode`` once answered."""
        if mode not in MONITOR_MODES:
            raise MonitorError(400, "bad_request", f"mode is one of {', '.join(MONITOR_MODES)}")
        tenant = self.plan.tenant(tenant_id)
        agents = {a.id: a for a in tenant.agents} if tenant is not None else {}
        supervisor = agents.get(supervisor_id)
        if tenant is None or supervisor is None or not supervisor.supervisor:
            raise MonitorError(403, "forbidden", f"{supervisor_id} is no supervisor here")
        talker, agent = self._talking_leg(tenant_id, agent_id)
        assert talker.peer is not None
        if talker.monitor is not None or talker.peer.monitor is not None:
            raise MonitorError(409, "already_monitored", f"{agent_id}'s call is monitored")
        if talker.peer.assist is not None:
            raise MonitorError(409, "conflict", f"{agent_id}'s customer is in a flow")
        if talker.conference is not None:
            raise MonitorError(409, "conflict", f"{agent_id} is in a conference")
        if agent.extension == supervisor.extension:
            raise MonitorError(409, "conflict", "a supervisor cannot monitor itself")
        call = talker.call
        leg = self._place_b(call, None, Route(tenant.id, "extension",
                                              target=supervisor.extension),
                            supervisor.extension, now,
                            data={"monitor": mode, "agent": agent_id, "caller": call.caller},
                            ring_seconds=MONITOR_RING_SECONDS)
        if leg is None:
            raise MonitorError(503, "unavailable", "no media port for the supervisor")
        mon = Monitor(id=leg.id, tenant_id=tenant.id, agent=agent_id,
                      supervisor=supervisor_id, mode=mode,
                      talker=talker, other=talker.peer, leg=leg)
        talker.monitor = talker.peer.monitor = leg.monitor = mon
        self.monitors[mon.id] = mon
        self._trace(call, "monitor_ringing", agent=agent_id, supervisor=supervisor_id,
                    mode=mode)
        return mon

    def _talking_leg(self, tenant_id: str, agent_id: str) -> tuple[Leg, Agent]:
        """The leg of the agent's extension bridged to another party, and the agent."""
        agent, talking = self._talking_legs(tenant_id, agent_id)
        if not talking:
            raise MonitorError(409, "agent_not_talking", f"{agent_id} is on no call")
        return talking[0], agent

    def _talking_legs(self, tenant_id: str, agent_id: str) -> tuple[Agent, list[Leg]]:
        """The tenant's agent and the legs of its extension bridged to another party,
        oldest call first (``MonitorError`` 404 for an agent the tenant does not have)."""
        tenant = self.plan.tenant(tenant_id)
        agent = next((a for a in tenant.agents if a.id == agent_id), None) \
            if tenant is not None else None
        if agent is None:
            raise MonitorError(404, "not_found", f"no agent {agent_id}")
        return agent, sorted((x for x in self._legs.values()
                              if x.call.tenant_id == tenant_id and x.state == "up"
                              and x.party is not None and x.party.extension == agent.extension
                              and x.peer is not None and x.peer.state == "up"
                              and x.peer.peer is x), key=lambda x: (x.call.start, x.id))

    # ----------------------------------------------------------------- assisted IVR

    def assist(self, tenant_id: str, agent_id: str, flow_name: str, now: float) -> Assist:
        """Run the tenant's flow ``flow_name`` on the call agent ``agent_id`` talks on,
        for the customer, with the agent listening in (R-4.8)."""
        flow = self._flows(tenant_id).get(flow_name)
        if flow is None:
            raise MonitorError(404, "not_found", f"no flow {flow_name}")
        talker, _ = self._talking_leg(tenant_id, agent_id)
        other = talker.peer
        assert other is not None
        if other.assist is not None or talker.monitor is not None or other.monitor is not None \
                or talker.conference is not None \
                or (other.ivr is not None and not other.ivr.finished):
            raise MonitorError(409, "conflict", f"{agent_id}'s call is busy with another "
                               "flow or a supervisor")
        call = talker.call
        variables = {**call.data, "caller": call.caller, "dialled": call.callee,
                     "tenant": tenant_id, "assisted_by": agent_id}
        other.ivr = Interpreter(flow, variables=variables, flows=self._flows(tenant_id))
        other.ivr_steps = 0
        job = Assist(id=f"{call.id}-assist-{next(self._seq)}", tenant_id=tenant_id,
                     agent=agent_id, flow=flow_name, talker=talker, other=other,
                     before=dict(other.ivr.variables))
        other.assist = job
        self.assists[job.id] = job
        self._trace(call, "assist_started", agent=agent_id, flow=flow_name)
        self._commands.append(AssistMedia((other.id, talker.id), other.id, call.tenant_id,
                                          call.id))
        other.ivr.start(now)
        self._drive_ivr(other, now)
        return job

    def stop_assist(self, assist_id: str, now: float) -> Assist:
        """The agent takes the customer back before the flow ends."""
        job = self.assists.get(assist_id)
        if job is None:
            raise MonitorError(404, "not_found", f"no assisted flow {assist_id}")
        if job.state == "running":
            self._end_assist(job, now, "stopped")
        return job

    def _end_assist(self, job: Assist, now: float, reason: str) -> None:
        """The flow beside the agent ended (its end, a hang-up or transfer node, or the
        agent stopping it): the customer and the agent talk on, with its results."""
        other, talker = job.other, job.talker
        if other.assist is job:
            other.assist = None
        ivr, other.ivr = other.ivr, None
        if ivr is not None:
            job.results = ivr.results(job.before)
            other.call.data.update(job.results)
        job.state = "done"
        self._commands.append(StopPlayback(other.id))
        self._trace(other.call, "assist_ended", agent=job.agent, flow=job.flow,
                    reason=reason, **{f"result.{k}": v for k, v in job.results.items()})
        if other.state == "up" and talker.state == "up" and talker.peer is other:
            self._commands.append(BridgeMedia(other.id, talker.id, other.call.tenant_id,
                                              other.call.id))

    def set_monitor_mode(self, monitor_id: str, mode: str, now: float) -> Monitor:
        mon = self.monitors.get(monitor_id)
        if mon is None:
            raise MonitorError(404, "not_found", f"no monitoring {monitor_id}")
        if mode not in MONITOR_MODES:
            raise MonitorError(400, "bad_request", f"mode is one of {', '.join(MONITOR_MODES)}")
        mon.mode = mode
        self._trace(mon.talker.call, "monitor_mode", agent=mon.agent, mode=mode)
        if mon.leg.state == "up":
            self._mix(mon)
        return mon

    def stop_monitor(self, monitor_id: str, now: float) -> None:
        mon = self.monitors.get(monitor_id)
        if mon is None:
            raise MonitorError(404, "not_found", f"no monitoring {monitor_id}")
        self._hang_up(mon.leg, now)

    def _monitor_answered(self, mon: Monitor, now: float) -> None:
        if mon.talker.state != "up" or mon.other.state != "up":
            self._send_bye(mon.leg, now)  # the call ended while the supervisor's rang
            return
        self._trace(mon.talker.call, "monitor_started", agent=mon.agent,
                    supervisor=mon.supervisor, mode=mon.mode)
        self._mix(mon)

    def _mix(self, mon: Monitor) -> None:
        call = mon.talker.call
        mon.mixed = True
        self._commands.append(MixMedia((mon.other.id, mon.talker.id), mon.leg.id,
                                       mon.talker.id, mon.mode, call.tenant_id, call.id))

    def _end_monitor(self, mon: Monitor, gone: Leg, now: float) -> None:
        """One of the monitoring's legs ended: the supervisor leaving leaves the pair
        talking as before; either of the pair leaving ends the supervisor's leg."""
        self.monitors.pop(mon.id, None)
        for leg in (mon.talker, mon.other, mon.leg):
            if leg.monitor is mon:
                leg.monitor = None
        self._trace(gone.call, "monitor_ended", agent=mon.agent, supervisor=mon.supervisor)
        if gone is not mon.leg:
            self._hang_up(mon.leg, now)
        elif mon.mixed and mon.talker.state == "up" and mon.other.state == "up" \
                and mon.talker.peer is mon.other:
            self._commands.append(BridgeMedia(mon.other.id, mon.talker.id,
                                              gone.call.tenant_id, gone.call.id))

    # ----------------------------------------------------------------- three-way calls

    def conference(self, tenant_id: str, agent_id: str, now: float) -> AgentConference:
        """The agent consults a third party (its first call's customer on hold, a second
        call of its extension answered): the three talk together. The customer and the
        agent's leg of the first call and the third party's leg of the second are mixed,
        all heard by all; the agent's leg of the second call is hung up (the agent talks
        on its first call), the third party's leg stays in its own call."""
        _, talking = self._talking_legs(tenant_id, agent_id)
        if len(talking) != 2 or talking[0].call is talking[1].call:
            raise MonitorError(409, "not_consulting",
                               f"{agent_id} is not on a call and a consultation")
        first, second = talking  # the agent's first call, then its consultation
        customer, third = first.peer, second.peer
        assert customer is not None and third is not None
        if any(x.monitor is not None or x.assist is not None or x.conference is not None
               or x.bridge_after is not None or (x.ivr is not None and not x.ivr.finished)
               for x in (first, customer, second, third)):
            raise MonitorError(409, "conflict", f"{agent_id}'s calls are busy with a "
                               "supervisor, a flow or a conference")
        conf = AgentConference(id=f"{first.call.id}-conference-{next(self._seq)}",
                               tenant_id=tenant_id, agent=agent_id, talker=first,
                               customer=customer, third=third)
        for x in conf.legs:
            x.conference = conf
        self.conferences[conf.id] = conf
        second.peer = third.peer = None  # the third party belongs to the mix now
        if second.call.outbound_agent == agent_id and not first.call.outbound_agent:
            # the agent stays busy for the ACD as long as its first call lasts
            first.call.outbound_agent, second.call.outbound_agent = agent_id, ""
        self._trace(first.call, "conference_started", conference=conf.id, agent=agent_id,
                    third=third.number, other_call=second.call.id)
        self._trace(second.call, "conference_joined", conference=conf.id, agent=agent_id,
                    other_call=first.call.id)
        self._commands.append(MixMedia((customer.id, first.id), third.id, first.id, "barge",
                                       first.call.tenant_id, first.call.id))
        self._send_bye(second, now)  # after the mix took its media over
        for party in (customer, third):  # held while the agent talked to the other one
            self._resume_held(party, now)
        return conf

    def _leave_conference(self, conf: AgentConference, gone: Leg, now: float) -> None:
        """``gone`` left the conference: the other two talk on, bridged (the agent's
        leaving ends its part in the ACD contact, as a transfer would)."""
        self.conferences.pop(conf.id, None)
        for x in conf.legs:
            if x.conference is conf:
                x.conference = None
        rest = [x for x in conf.legs if x is not gone and x.state == "up"]
        gone.peer = None
        self._trace(gone.call, "conference_left", conference=conf.id, leg=gone.id,
                    role="agent" if gone is conf.talker
                    else "customer" if gone is conf.customer else "third")
        for x in rest:
            x.peer = None
        if len(rest) < 2:  # cannot happen (every leg leaving ends it), but never dangle
            for x in rest:
                x.call.hangup_side = x.call.hangup_side or "node"
                self._hang_up(x, now)
            return
        a, b = rest  # the customer first, then the agent's leg: the pair's recording
        a.peer, b.peer = b, a
        self._commands.append(BridgeMedia(a.id, b.id, a.call.tenant_id, a.call.id))
        if gone is conf.talker:
            self._release_transferor(gone, now)

    # ----------------------------------------------------------------- B legs

    def _place_b(self, call: Call, a: Leg | None, route: Route, target: str, now: float,
                 rest: tuple[str, ...] = (), data: Mapping[str, str] | None = None, *,
                 caller_id: str | None = None, ring_seconds: float | None = None
                 ) -> Leg | None:
        """Call ``target`` for ``a`` (None: an outbound call placed by the node itself);
        ``caller_id`` asks for a presented number (see ``_presented_number``)."""
        tenant = self.plan.tenant(route.tenant_id or "")
        if route.kind == "trunk":
            if route.trunk is None or tenant is None:
                self._fail_peer(a, 503, now)
                return None
            ruri = SipUri.parse(f"sip:{route.target}@{route.trunk.address}:{route.trunk.port}")
            from_user = self._presented_number(tenant, a, caller_id)
            from_host = self.local_ip
            number = route.target
        else:
            if tenant is None:
                self._fail_peer(a, 404, now)
                return None
            ruri = SipUri.parse(f"sip:{target}@{tenant.domain}")
            from_user = a.number if a is not None else self._presented_number(
                tenant, None, caller_id)
            from_host, number = tenant.domain, target
        b = self._new_leg(call, "b", number,
                          Origin("extension", tenant.id, target)
                          if route.kind != "trunk" and tenant else None)
        b.targets, b.data = rest, data
        b.trunk = route.kind == "trunk"
        b.ring_seconds = ring_seconds or self._ring_seconds(route)
        b.peer = a
        if a is not None:
            a.peer = b
        if not self._open_media(b):
            self._end_leg(b, now)
            self._fail_peer(a, 503, now)
            return None
        b.local_tag = self._token(6)
        offer = make_offer(local_ip=self.media_ip, local_port=b.port, codecs=SUPPORTED_CODECS,
                           telephone_event=TELEPHONE_EVENT_PT, direction="sendrecv",
                           session_id=_session_id(b), version=b.sdp_version)
        headers = Headers()
        headers.add("Max-Forwards", "70")
        display = a.invite.from_.display if a is not None and a.invite is not None \
            and a.role == "a" else None
        from_addr = NameAddr(display, SipUri.parse(f"sip:{from_user}@{from_host}"),
                             (("tag", b.local_tag),))
        headers.add("From", str(from_addr))
        headers.add("To", f"<{ruri}>")
        headers.add("Call-ID", f"{self._token(12)}@{self.local_ip}")
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<{self.contact}>")
        headers.add("Allow", ALLOW)
        if data:  # the IVR's data travels with the call (R-4.9)
            headers.add("X-BL-Data", urlencode(sorted(data.items())))
        headers.add("Content-Type", "application/sdp")
        invite = Request("INVITE", ruri, headers, offer.to_bytes())
        b.invite = invite
        b.client_key = self.layer.send_request(invite, self.edge, now)
        self._leg_by_client[b.client_key] = b
        self._arm(now + b.ring_seconds, "ring_timeout", b)
        self._trace(call, "dialing", leg=b.id, target=number,
                    **({"data": urlencode(sorted(data.items()))} if data else {}))
        return b

    def _presented_number(self, tenant: Tenant, a: Leg | None,
                          wanted: str | None = None) -> str:
        """Outbound caller ID: ``wanted`` when it is one of the tenant's own numbers (a
        flow may choose which, R-4.2; nobody may present another's), else the caller's
        own DID if it has one, else the tenant's."""
        if wanted and (wanted == tenant.caller_id or any(d.number == wanted
                                                          for d in tenant.dids)):
            return wanted
        if a is not None and a.party is not None and a.party.extension:
            did = next((d.number for d in tenant.dids if d.target == a.party.extension), None)
            if did:
                return did
        return tenant.caller_id

    def _ring_seconds(self, route: Route) -> float:
        if route.ring_seconds is not None:
            return route.ring_seconds
        if route.kind == "hunt_group":
            tenant = self.plan.tenant(route.tenant_id or "")
            group = next((h for h in tenant.hunt_groups if h.number == route.target), None) \
                if tenant else None
            if group is not None:
                return group.ring_seconds
        return self.ring_timeout

    def _on_response(self, key: str, resp: Response, now: float) -> None:
        leg = self._leg_by_client.get(key)
        if leg is not None:
            self._on_invite_response(leg, resp, now)
            return
        leg = self._reinvites.get(key)
        if leg is not None and resp.status >= 200:
            del self._reinvites[key]
            leg.reinvite_key = None
            if 200 <= resp.status < 300 and leg.dialog is not None:
                self.layer.send_stateless(leg.dialog.create_ack(resp), self._next_hop(leg.dialog))
                self._on_reinvite_answer(leg, resp)
            if leg.pending_reinvite is not None and leg.state == "up":
                # the other side changed direction again while ours was in flight
                direction, leg.pending_reinvite = leg.pending_reinvite, None
                self._reinvite(leg, direction, now)

    def _on_invite_response(self, b: Leg, resp: Response, now: float) -> None:
        status = resp.status
        a = b.peer
        if status < 200:
            if status > 100 and b.state == "calling":
                b.state = "ringing"
                if (a is not None and a.role == "a" and a.state == "calling"
                        and a.invite is not None and a.server_key is not None):
                    a.state = "ringing"
                    self._respond(a.server_key, a.invite, 180, None, now, to_tag=a.local_tag)
            return
        if 200 <= status < 300:
            self._on_b_answered(b, resp, now)
            return
        # final failure
        self._leg_by_client.pop(b.client_key or "", None)
        if b.offer is not None:
            self._offer_failed(b, status, now)
            return
        if b.callback:
            self._callback_failed(b, status, now)
            return
        if b.on_answer is not None:  # an outbound call of the node: nobody else to tell
            b.call.status = b.call.status or status
            self._trace(b.call, "originate_failed", status=str(status))
        self._end_leg(b, now)
        if b.transfer_from is not None:
            self._transfer_failed(b, status, now)
            return
        if a is None or a.state == "ended":
            return
        if b.targets and b.party is not None and not b.call.hangup_side:
            # hunt group: the next member rings (our ring timeout shows up as 487)
            route = self.plan.route(b.party, b.targets[0])
            a.peer = None
            self._place_b(b.call, a, route, b.targets[0], now, rest=b.targets[1:],
                          data=b.data, ring_seconds=b.ring_seconds)
            return
        if a.ivr is not None and a.ivr.mode == "transferring" and a.state == "up":
            a.peer = None  # the flow takes the caller back (its transfer's on_failure)
            a.ivr.transfer_failed(status, now)
            self._drive_ivr(a, now)
            return
        self._fail_peer(a, status, now)

    def _on_b_answered(self, b: Leg, resp: Response, now: float) -> None:
        dialog = b.dialog
        if dialog is None:
            assert b.invite is not None
            dialog = Dialog.from_uac(b.invite, resp)
            b.dialog = dialog
            self.dialogs.add(dialog)
            self._leg_by_dialog[dialog.dialog_id] = b
        else:
            dialog.confirm(resp)
        self.layer.send_stateless(dialog.create_ack(resp), self._next_hop(dialog))
        if b.state == "up":
            return  # retransmission, re-ACKed above
        a = b.peer
        if b.state == "ended" or (b.on_answer is None and b.monitor is None
                                  and not b.callback and (a is None or a.state == "ended")):
            b.state = "up"
            self._send_bye(b, now)
            return
        try:
            answer = SessionDescription.parse(resp.body)
            assert b.invite is not None
            neg = accept_answer(SessionDescription.parse(b.invite.body), answer)
        except SdpError:
            b.state = "up"
            self._send_bye(b, now)
            self._fail_peer(a, 488, now)
            return
        b.state = "up"
        b.negotiated = neg
        self._configure(b)
        call = b.call
        if call.answer is None:
            call.answer = now
            call.codec = call.codec or neg.codec
        self._trace(call, "answered", leg=b.id, codec=neg.codec)
        if b.monitor is not None:  # a supervisor joins an agent's call
            self._monitor_answered(b.monitor, now)
            return
        if b.on_answer is not None:  # the node's own outbound call: its flow starts now
            flow, variables = b.on_answer
            b.on_answer = None
            b.ivr = Interpreter(flow, variables={
                **variables, "caller": call.caller, "dialled": b.number,
                "tenant": call.tenant_id or ""}, flows=self._flows(call.tenant_id))
            b.ivr.start(now)
            self._drive_ivr(b, now)
            return
        if b.callback:  # the customer called back: it waits for the reserved agent
            self._callback_answered(b, now)
            return
        assert a is not None
        if b.offer is not None and not self._offer_answered(b, a, now):
            return  # refused, or the caller first hears who answers (then _bridge)
        self._bridge(a, b, now)

    def _bridge(self, a: Leg, b: Leg, now: float) -> None:
        """``b`` answered for ``a``: they talk (a flow's transfer is done)."""
        call = a.call
        if a.ivr is not None:
            a.ivr.transfer_answered(now)
            self._drive_ivr(a, now)
        self._commands.append(BridgeMedia(a.id, b.id, call.tenant_id, call.id))
        if a.role == "a" and a.state in ("calling", "ringing"):
            self._answer_a(a, now)
        if b.transfer_from is not None:
            self._notify_refer(b.transfer_from, "200 OK", now)
            self._arm(now + 5.0, "transferor_bye", b.transfer_from)
            self._release_transferor(b.transfer_from, now)

    def _transfer_failed(self, b: Leg, status: int, now: float) -> None:
        transferor, transferee = b.transfer_from, b.peer
        assert transferor is not None
        self._trace(b.call, "transfer_failed", status=str(status))
        self._notify_refer(transferor, f"{status} Failed", now)
        if transferee is not None and transferee.state == "up":
            if transferor.state == "up":
                transferor.peer, transferee.peer = transferee, transferor
                self._commands.append(BridgeMedia(transferor.id, transferee.id,
                                                  b.call.tenant_id, b.call.id))
            else:
                transferee.peer = None
                self._hang_up(transferee, now)

    def _on_stray_response(self, resp: Response, now: float) -> None:
        dialog = self.dialogs.match_response(resp)
        if dialog is not None and 200 <= resp.status < 300 and resp.cseq[1] == "INVITE":
            self.layer.send_stateless(dialog.create_ack(resp), self._next_hop(dialog))

    def _on_ack(self, req: Request, now: float) -> None:
        dialog = self.dialogs.match_request(req)
        leg = self._leg_by_dialog.get(dialog.dialog_id) if dialog else None
        if leg is not None:
            leg.pending_2xx = None

    def _on_cancel(self, key: str, now: float) -> None:
        a = self._leg_by_server.get(key)
        if a is None or a.state not in ("calling", "ringing"):
            return
        a.call.hangup_side = "caller"
        self._trace(a.call, "cancelled")
        b = a.peer
        a.peer = None
        self._fail_a(a, 487, now)
        if b is not None:
            b.peer = None
            self._hang_up(b, now)

    def _on_timeout(self, key: str, now: float) -> None:
        stuck = self._reinvites.pop(key, None)
        if stuck is not None:  # the peer never answered our re-INVITE: it is gone
            stuck.reinvite_key = None
            stuck.call.hangup_side = stuck.call.hangup_side or "node"
            self._send_bye(stuck, now)
            self._on_bye(stuck, now)  # releases the other side too
            return
        leg = self._leg_by_client.get(key)
        if leg is not None and leg.state in ("calling", "ringing"):
            self._on_invite_response(leg, Response(408, "Request Timeout"), now)
            return
        leg = self._leg_by_server.get(key)
        if leg is not None and leg.state == "up" and leg.pending_2xx is not None:
            # our 2xx was never ACKed (RFC 3261 13.3.1.4): end the call
            self._on_bye(leg, now)

    # ----------------------------------------------------------------- timers

    def _arm(self, deadline: float, kind: str, leg: Leg) -> None:
        heapq.heappush(self._timers, (deadline, next(self._seq), kind, leg.id))

    def _on_timer(self, kind: str, leg: Leg, now: float) -> None:
        if kind == "ring_timeout" and leg.state in ("calling", "ringing"):
            self._trace(leg.call, "no_answer", leg=leg.id)
            if leg.client_key is not None:
                try:
                    self.layer.cancel(leg.client_key, now)
                except SipError:
                    pass
        elif kind == "retransmit_2xx" and leg.pending_2xx is not None:
            assert leg.server_key is not None
            self.layer.send_stateless(leg.pending_2xx)
            interval = min(leg.retransmit_interval * 2, 4.0)
            leg.retransmit_interval = interval
            if now - (leg.call.answer or now) < 32.0:
                self._arm(now + interval, "retransmit_2xx", leg)
            else:
                self._on_bye(leg, now)
        elif kind == "transferor_bye" and leg.state == "up" and leg.peer is None:
            self._send_bye(leg, now)
        elif kind == "ivr" and leg.ivr is not None and not leg.ivr.finished:
            leg.ivr_deadline = None
            leg.ivr.tick(now)
            self._drive_ivr(leg, now)

    # ----------------------------------------------------------------- helpers

    def _new_leg(self, call: Call, role: Literal["a", "b"], number: str,
                 party: Origin | None) -> Leg:
        leg = Leg(id=f"{call.id}-{len(call.legs)}", call=call, role=role, number=number,
                  party=party, port=0)
        call.legs.append(leg)
        self._legs[leg.id] = leg
        return leg

    def _open_media(self, leg: Leg) -> bool:
        try:
            port = self.ports.allocate()
        except PortPoolExhausted:
            return False
        leg.port = port
        self._commands.append(OpenMedia(leg.id, port, leg.call.tenant_id))
        return True

    def _configure(self, leg: Leg) -> None:
        neg = leg.negotiated
        if neg is None:
            return
        self._commands.append(ConfigureMedia(
            leg.id, (neg.remote_ip, neg.remote_port), neg.codec, neg.payload_type,
            neg.telephone_event, leg.direction,
        ))

    def _answer_a(self, a: Leg, now: float) -> None:
        assert a.invite is not None and a.server_key is not None
        resp = make_response(a.invite, 200, to_tag=a.local_tag,
                             body=a.answer_body,
                             content_type="application/sdp", contact=self.contact,
                             headers=[("Allow", ALLOW), ("Supported", "replaces")])
        dialog = Dialog.from_uas(a.invite, resp)
        a.dialog = dialog
        self.dialogs.add(dialog)
        self._leg_by_dialog[dialog.dialog_id] = a
        self.layer.send_response(a.server_key, resp, now)
        a.state = "up"
        a.pending_2xx = resp
        a.retransmit_interval = 0.5
        self._arm(now + 0.5, "retransmit_2xx", a)
        if a.call.answer is None:
            a.call.answer = now
        self._trace(a.call, "connected", leg=a.id)

    def _fail_a(self, a: Leg, status: int, now: float, reason: str | None = None) -> None:
        call = a.call
        call.status = status
        if a.invite is not None and a.server_key is not None and a.state in ("calling",
                                                                              "ringing"):
            self._respond(a.server_key, a.invite, status, reason, now, to_tag=a.local_tag)
        self._end_leg(a, now)

    def _fail_peer(self, leg: Leg | None, status: int, now: float) -> None:
        """The other side of ``leg`` failed with ``status``: finish ``leg`` accordingly."""
        if leg is None:
            return
        leg.peer = None
        if leg.role == "a" and leg.state in ("calling", "ringing"):
            self._fail_a(leg, status if 300 <= status < 700 else 500, now)
        else:
            leg.call.status = leg.call.status or status
            self._hang_up(leg, now)

    def _hang_up(self, leg: Leg, now: float) -> None:
        """Release one leg whatever its state."""
        if leg.state == "up":
            self._send_bye(leg, now)
        elif leg.state in ("calling", "ringing"):
            if leg.role == "a":
                self._fail_a(leg, 487 if leg.call.hangup_side else 480, now)
            elif leg.client_key is not None:
                try:
                    self.layer.cancel(leg.client_key, now)
                except SipError:
                    self._end_leg(leg, now)

    def _send_bye(self, leg: Leg, now: float) -> None:
        if leg.dialog is not None and leg.state == "up":
            req = leg.dialog.create_request("BYE")
            self.layer.send_request(req, self._next_hop(leg.dialog), now)
        self._end_leg(leg, now)

    def _reinvite(self, leg: Leg, direction: Direction, now: float) -> None:
        if leg.dialog is None or leg.reinvite_key is not None:
            leg.pending_reinvite = direction
            return
        leg.sdp_version += 1
        offer = make_offer(local_ip=self.media_ip, local_port=leg.port, codecs=SUPPORTED_CODECS,
                           telephone_event=TELEPHONE_EVENT_PT, direction=direction,
                           session_id=_session_id(leg), version=leg.sdp_version)
        leg.last_offer = offer
        req = leg.dialog.create_request("INVITE", body=offer.to_bytes(),
                                        content_type="application/sdp")
        leg.reinvite_key = self.layer.send_request(req, self._next_hop(leg.dialog), now)
        self._reinvites[leg.reinvite_key] = leg
        leg.direction = direction

    def _on_reinvite_answer(self, leg: Leg, resp: Response) -> None:
        if leg.last_offer is None:
            return
        try:
            neg = accept_answer(leg.last_offer, SessionDescription.parse(resp.body))
        except SdpError:
            return
        leg.negotiated = neg
        self._configure(leg)

    def _end_leg(self, leg: Leg, now: float) -> None:
        if leg.state == "ended":
            return
        leg.state = "ended"
        leg.pending_2xx = None
        self._reinvites.pop(leg.reinvite_key or "", None)
        if leg.dialog is not None:
            leg.dialog.terminate()
            self.dialogs.remove(leg.dialog.dialog_id)
            self._leg_by_dialog.pop(leg.dialog.dialog_id, None)
        self._leg_by_server.pop(leg.server_key or "", None)
        # before its media closes, so the pair's bridge takes over the pair's recorder
        if leg.conference is not None:
            self._leave_conference(leg.conference, leg, now)
        if leg.monitor is not None:
            self._end_monitor(leg.monitor, leg, now)
        if leg.port:
            self._commands.append(CloseMedia(leg.id, leg.port))
            self.ports.release(leg.port)
            leg.port = 0  # released once: it may belong to another call from now on
        self._legs.pop(leg.id, None)
        if leg.acd_agent:  # the agent a transfer rang is free again
            self._agent_leg_ended(leg, now)
        if leg.assist is not None:  # the customer left during the flow
            leg.assist.state, leg.assist = "ended", None
        call = leg.call
        if all(x.state == "ended" for x in call.legs):
            self._finish(call, now)

    def _finish(self, call: Call, now: float) -> None:
        if call.ended:
            return
        call.ended = True
        self.calls.pop(call.id, None)
        self._leave_acd(call, now)
        for gone in [k for k, job in self.assists.items() if job.other.call is call]:
            del self.assists[gone]
        for leg in call.legs:
            self._leg_by_client.pop(leg.client_key or "", None)
        status = 200 if call.answer is not None else (call.status or 500)
        disposition = "answered" if call.answer is not None else _DISPOSITIONS.get(
            status, "failed")
        if call.answer is None and call.hangup_side == "caller":
            disposition = "cancelled"
        end = now + self.wall_offset
        cdr = Cdr(
            call_id=call.id, tenant_id=call.tenant_id, caller=call.caller, callee=call.callee,
            origin=call.origin, destination=call.destination, start=call.start + self.wall_offset,
            answer=None if call.answer is None else call.answer + self.wall_offset, end=end,
            duration=0.0 if call.answer is None else round(now - call.answer, 3),
            disposition=disposition, sip_status=status,
            hangup_side=call.hangup_side or ("node" if call.answer is not None else ""),
            codec=call.codec,
        )
        self._trace(call, "ended", disposition=disposition, status=str(status))
        self._commands.append(WriteCdr(cdr))

    def _respond(self, key: str, req: Request, status: int, reason: str | None, now: float,
                 *, to_tag: str | None = None, headers: Iterable[tuple[str, str]] = ()) -> None:
        if req.method == "ACK":
            return
        tag = to_tag if to_tag is not None else (self._token(6) if status > 100 else None)
        resp = make_response(req, status, reason, to_tag=tag, headers=headers)
        self.layer.send_response(key, resp, now)

    def _next_hop(self, dialog: Dialog) -> Addr:
        uri = dialog.next_hop
        return (uri.host.strip("[]"), uri.port or 5060)

    def _trace(self, call: Call, kind: str, /, **data: str) -> None:
        self._commands.append(TraceEvent(call.tenant_id, call.id, kind, tuple(data.items())))


# --------------------------------------------------------------------------- parsing


def _parse_origin(value: str | None, plan: Plan) -> Origin | None:
    """``X-BL-Origin`` as written by the edge (see templates/kamailio.cfg): the
    authenticated domain names the tenant; the extension must exist in it."""
    if not value:
        return None
    kind, _, rest = value.partition(";")
    params = dict(p.partition("=")[::2] for p in rest.split(";") if p)
    if kind == "trunk" and plan.trunk(params.get("name", "")) is not None:
        return Origin("trunk", trunk=params["name"])
    if kind == "ext":
        tenant = plan.tenant_by_domain(params.get("domain", ""))
        user = params.get("user", "")
        if tenant is not None and tenant.extension(user) is not None:
            return Origin("extension", tenant_id=tenant.id, extension=user)
    return None


def _destination(route: Route) -> str:
    if route.kind == "trunk":
        return f"trunk:{route.trunk.name if route.trunk else ''}"
    if route.kind == "extension":
        return f"ext:{route.target}"
    if route.kind == "hunt_group":
        return route.target if route.target.startswith("queue:") else f"hunt:{route.target}"
    if route.kind == "echo":
        return "service:echo"
    return f"{route.kind}:{route.target}"


def _session_id(leg: Leg) -> int:
    return int(leg.call.id[:8], 16) if leg.call.id[:8].isalnum() else 1


def _info_digit(body: bytes, ctype: str) -> str | None:
    text = body.decode("utf-8", "replace").strip()
    if ctype == "application/dtmf":
        digit = text[:1]
    else:
        digit = ""
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                digit = value.strip()[:1]
    digit = digit.upper()
    return digit if digit in _DTMF_KEYS else None


_DATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _refer_data(uri: SipUri) -> dict[str, str]:
    """``X-BL-Data`` an agent puts in the Refer-To URI (``?X-BL-Data=<urlencoded>``):
    names are identifiers, values text; at most 50 items of 1000 characters; anything
    else is ignored."""
    out: dict[str, str] = {}
    for name, value in getattr(uri, "headers", ()) or ():
        if name.lower() != "x-bl-data":
            continue
        for key, val in parse_qsl(unquote(value), keep_blank_values=True):
            if _DATA_NAME.fullmatch(key) and len(val) <= 1000 and len(out) < 50:
                out[key] = val
    return out


def _replaces(uri: SipUri) -> tuple[str, str, str] | None:
    """The dialog a ``Refer-To: <sip:..?Replaces=callid;to-tag=..;from-tag=..>`` names,
    as our dialog id ``(call_id, local_tag, remote_tag)`` (RFC 3891 section 3)."""
    raw = None
    for name, value in getattr(uri, "headers", ()) or ():
        if name.lower() == "replaces":
            raw = value
    if raw is None:
        return None
    parts = unquote(raw).split(";")
    params = dict(p.strip().partition("=")[::2] for p in parts[1:])
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not parts[0] or to_tag is None or from_tag is None:
        return None
    # The transferor's from-tag is its own tag; our local tag is its to-tag.
    return (parts[0], to_tag, from_tag)
