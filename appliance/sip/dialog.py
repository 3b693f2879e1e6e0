"""SIP dialogs (RFC 3261 section 12), pure state and in-dialog request construction.

Theory of operation
-------------------
A :class:`Dialog` is the peer-to-peer relationship an INVITE (or any dialog-creating
request) sets up.  It is built from the request and the response that created it:

* UAC side (12.1.2): :meth:`Dialog.from_uac` with our INVITE and a 1xx carrying a To
  tag (an *early* dialog) or a 2xx (*confirmed*).  The route set is the response's
  Record-Route list **reversed**, the remote target its Contact, the local CSeq the
  INVITE's.  A 2xx arriving for an early dialog confirms it (:meth:`Dialog.confirm`),
  which recomputes the route set and remote target from the 2xx (13.2.2.4).
* UAS side (12.1.1): :meth:`Dialog.from_uas` with the incoming INVITE and our 1xx/2xx
  (which carries our To tag and Contact).  The route set is the request's
  Record-Route list **in order**, the remote target its Contact, the remote CSeq the
  INVITE's; the local CSeq starts empty and becomes 1 at our first request.

The dialog id is ``(call_id, local_tag, remote_tag)``; :class:`DialogSet` keys dialogs
by it and finds the dialog of an incoming in-dialog request (To tag = ours) or of a
response to one of our requests (From tag = ours).

In-dialog requests (12.2.1.1) come from :meth:`Dialog.create_request`: To, From,
Call-ID from the dialog, CSeq one above the last (ACK reuses the CSeq number of the
INVITE it acknowledges, CANCEL is built by the transaction layer), Request-URI the
remote target and Route the route set (loose routing).  Strict routing (a first route
without ``;lr``, RFC 2543 proxies) is not implemented: such a route set is used as if
loose.  Kamailio, our only next hop, always loose-routes.  No Via is added: the
transaction layer adds its own.

Incoming in-dialog requests go through :meth:`Dialog.receive_request` (12.2.2): a CSeq
lower than the last one is refused with 500, otherwise it becomes the remote CSeq.
Target refresh (re-INVITE, UPDATE; 12.2.1.2, 12.2.2) is explicit: the TU calls
:meth:`Dialog.update_remote_target` with the request it accepted or the 2xx it got,
so a refused re-INVITE leaves the target alone (RFC 6141).

Like the transaction layer, a dialog knows nothing of tenants; the call-control TU
that owns it does.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from appliance.sip.errors import SipError, SipParseError
from appliance.sip.message import Headers, Request, Response
from appliance.sip.uri import NameAddr, SipUri

__all__ = [
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogSet",
    "DialogState",
]

DialogId = tuple[str, str, str]  # (call_id, local_tag, remote_tag)

#: Methods whose Contact replaces the remote target (RFC 3261 12.2, RFC 3311, 3515, 6665).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})

_OUT_OF_ORDER = (500, "Server Internal Error")


class DialogError(SipError):
    """Local misuse of a dialog (our fault): wrong response, request after termination..."""


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def _contact_uri(message: Request | Response) -> SipUri | None:
    contacts = message.contacts
    return contacts[0].uri if contacts else None


def _untagged(addr: NameAddr) -> NameAddr:
    return addr.without_param("tag")


@dataclass(eq=False)
class Dialog:
    """State of one dialog (RFC 3261 12.1); see the module docstring."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr  # From of our requests, without tag
    remote_uri: NameAddr  # To of our requests, without tag
    remote_target: SipUri  # Request-URI of our requests (the peer's Contact)
    local_target: SipUri | None  # our Contact, sent in target refresh requests
    route_set: tuple[NameAddr, ...]
    local_cseq: int | None
    remote_cseq: int | None
    secure: bool
    state: DialogState
    invite_cseq: int | None = None  # CSeq number of our last INVITE (for its ACK)
    is_uac: bool = True  # which side created it: decides what confirm() recomputes

    # ----------------------------------------------------------------- creation

    @classmethod
    def from_uac(
        cls, request: Request, response: Response, *, secure: bool | None = None
    ) -> Dialog:
        """Dialog of our ``request`` from a 1xx-with-To-tag or 2xx ``response`` (12.1.2).

        ``secure`` defaults to "the Request-URI is a SIPS URI".
        """
        if not 101 <= response.status < 300:
            raise DialogError(f"a {response.status} response does not create a dialog")
        to = response.to
        from_ = request.from_
        if to.tag is None or from_.tag is None:
            raise DialogError(
                "a dialog needs a From tag in the request and a To tag in the response"
            )
        number, _ = request.cseq
        uri = request.uri
        return cls(
            call_id=request.call_id,
            local_tag=from_.tag,
            remote_tag=to.tag,
            local_uri=_untagged(from_),
            remote_uri=_untagged(request.to),
            remote_target=_contact_uri(response) or uri,
            local_target=_contact_uri(request),
            route_set=tuple(reversed(response.record_routes)),
            local_cseq=number,
            remote_cseq=None,
            secure=uri.scheme == "sips" if secure is None else secure,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            invite_cseq=number if request.method == "INVITE" else None,
            is_uac=True,
        )

    @classmethod
    def from_uas(
        cls, request: Request, response: Response, *, secure: bool | None = None
    ) -> Dialog:
        """Dialog of an incoming ``request`` from our 1xx/2xx ``response`` (12.1.1)."""
        if not 101 <= response.status < 300:
            raise DialogError(f"a {response.status} response does not create a dialog")
        to = response.to
        from_ = request.from_
        if to.tag is None:
            raise DialogError("our response needs a To tag to create a dialog")
        remote_target = _contact_uri(request)
        if remote_target is None:
            raise SipParseError("dialog-creating request without Contact")
        number, _ = request.cseq
        uri = request.uri
        return cls(
            call_id=request.call_id,
            local_tag=to.tag,
            remote_tag=from_.tag or "",  # RFC 2543 peers may send no From tag
            local_uri=_untagged(to),
            remote_uri=_untagged(from_),
            remote_target=remote_target,
            local_target=_contact_uri(response),
            route_set=tuple(request.record_routes),
            local_cseq=None,
            remote_cseq=number,
            secure=uri.scheme == "sips" if secure is None else secure,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            is_uac=False,
        )

    # ----------------------------------------------------------------- identity

    @property
    def dialog_id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @property
    def next_hop(self) -> SipUri:
        """The URI to resolve for sending in-dialog requests: first route, else the target."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    # ----------------------------------------------------------------- state changes

    def confirm(self, response: Response) -> None:
        """Confirm this early dialog with the 2xx we received (UAC) or sent (UAS).

        On the UAC side the route set and remote target are recomputed from the 2xx
        (13.2.2.4); on the UAS side our Contact in it becomes the local target.  A
        no-op on a confirmed dialog (2xx retransmissions).
        """
        if not 200 <= response.status < 300:
            raise DialogError(f"only a 2xx confirms a dialog, not {response.status}")
        if self.state is not DialogState.EARLY:
            return
        if self.is_uac:
            self.route_set = tuple(reversed(response.record_routes))
            self.remote_target = _contact_uri(response) or self.remote_target
        else:
            self.local_target = _contact_uri(response) or self.local_target
        self.state = DialogState.CONFIRMED

    def update_remote_target(self, message: Request | Response) -> None:
        """Target refresh (12.2.1.2 / 12.2.2): take the Contact of an accepted
        re-INVITE/UPDATE, or of the 2xx to ours.  No Contact: no change."""
        uri = _contact_uri(message)
        if uri is not None:
            self.remote_target = uri

    def receive_request(self, request: Request) -> tuple[int, str] | None:
        """Check an incoming in-dialog request's CSeq (12.2.2).

        Returns ``(500, reason)`` for an out-of-order request (CSeq lower than the
        last one), else records the CSeq and returns ``None``.  ACK and CANCEL carry
        their INVITE's number and are not checked.
        """
        number, method = request.cseq
        if method in ("ACK", "CANCEL"):
            return None
        if self.remote_cseq is not None and number < self.remote_cseq:
            return _OUT_OF_ORDER
        self.remote_cseq = number
        return None

    def terminate(self) -> None:
        """The dialog ended (BYE sent or received, or the INVITE failed)."""
        self.state = DialogState.TERMINATED

    # ----------------------------------------------------------------- requests

    def create_request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """Build an in-dialog request (12.2.1.1), without Via (the transaction layer adds it).

        The local CSeq goes up by one, except for ACK, which takes the CSeq number of
        our last INVITE.  Target refresh methods carry our Contact.
        """
        method = method.upper()
        if self.state is DialogState.TERMINATED:
            raise DialogError(f"cannot send {method} in a terminated dialog")
        if method == "CANCEL":
            raise DialogError("CANCEL is built from the INVITE by the transaction layer")
        if method == "ACK":
            if self.invite_cseq is None:
                raise DialogError("no INVITE to acknowledge in this dialog")
            number = self.invite_cseq
        else:
            number = (self.local_cseq or 0) + 1
            self.local_cseq = number
            if method == "INVITE":
                self.invite_cseq = number
        return self._build(method, number, body, content_type, extra_headers)

    def create_ack(
        self,
        response: Response,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """The ACK of a 2xx to one of our INVITEs (13.2.2.4), to send with
        ``TransactionLayer.send_stateless``; build it again for each 2xx retransmission.
        Pass the INVITE's credentials (Authorization...) in ``extra_headers``."""
        number, method = response.cseq
        if method != "INVITE" or not 200 <= response.status < 300:
            raise DialogError(
                f"only a 2xx to an INVITE is ACKed end to end, not {response.status} {method}"
            )
        if self.state is DialogState.TERMINATED:
            raise DialogError("cannot ACK in a terminated dialog")
        return self._build("ACK", number, body, content_type, extra_headers)

    def _build(
        self,
        method: str,
        number: int,
        body: bytes,
        content_type: str | None,
        extra_headers: Iterable[tuple[str, str]],
    ) -> Request:
        if body and content_type is None:
            raise DialogError("a body needs a content_type")
        headers = Headers()
        for route in self.route_set:
            headers.add("Route", str(route))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self.local_uri.with_tag(self.local_tag)))
        to = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        headers.add("To", str(to))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{number} {method}")
        if method in TARGET_REFRESH_METHODS and self.local_target is not None:
            headers.add("Contact", f"<{self.local_target}>")
        for name, value in extra_headers:
            headers.add(name, value)
        if content_type is not None:
            headers.set("Content-Type", content_type)
        return Request(method, self.remote_target, headers, body)


class DialogSet:
    """Dialogs keyed by ``(call_id, local_tag, remote_tag)``."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        if dialog.dialog_id in self._dialogs:
            raise DialogError(f"dialog {dialog.dialog_id} already exists")
        self._dialogs[dialog.dialog_id] = dialog

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def remove(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.pop(dialog_id, None)

    def match_request(self, request: Request) -> Dialog | None:
        """The dialog of an incoming in-dialog request (our tag is its To tag)."""
        to_tag = request.to.tag
        if to_tag is None:
            return None
        from_tag = request.from_.tag or ""
        return self._dialogs.get((request.call_id, to_tag, from_tag))

    def match_response(self, response: Response) -> Dialog | None:
        """The dialog of a response to our request (our tag is its From tag)."""
        from_tag = response.from_.tag
        to_tag = response.to.tag
        if from_tag is None or to_tag is None:
            return None
        return self._dialogs.get((response.call_id, from_tag, to_tag))

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, dialog_id: object) -> bool:
        return dialog_id in self._dialogs
