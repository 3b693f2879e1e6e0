"""A scriptable SIP phone for what baresip 1.0 cannot do from its control socket.

baresip has no attended transfer (REFER with Replaces) and no SIP INFO DTMF. This
small synchronous UA, built on the project's own transaction and dialog layers,
registers with digest auth through the edge, places calls (offering an RTP port on
which it sends nothing), and sends in-dialog requests (INFO, REFER, BYE). It answers
NOTIFY and BYE with 200 and keeps what it received.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from appliance.media import g711
from appliance.media.rtp import RtpPacket
from appliance.sip.dialog import Dialog
from appliance.sip.message import Headers, Request, Response, make_response
from appliance.sip.sdp import SessionDescription, make_offer
from appliance.sip.transaction import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TransactionLayer,
    TransactionTimedOut,
)
from appliance.sip.uri import SipUri

Addr = tuple[str, int]


class UaError(AssertionError):
    pass


@dataclass
class UaCall:
    dialog: Dialog
    invite: Request
    answer: SessionDescription
    received: list[Request] = field(default_factory=list)


def media_of(sdp: SessionDescription | Request) -> Addr:
    """Where the first audio stream of an SDP (or of a request's SDP body) is sent."""
    offer = SessionDescription.parse(sdp.body) if isinstance(sdp, Request) else sdp
    conn = offer.media[0].connection or offer.connection
    assert conn is not None
    return conn.address, offer.media[0].port


class SipUa:
    def __init__(self, user: str, domain: str, password: str, proxy: Addr,
                 local_ip: str = "127.0.0.1", port: int = 0) -> None:
        self.user, self.domain, self.password, self.proxy = user, domain, password, proxy
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, port))  # port 0: any; a trunk peer binds the trunk's
        self.local = self.sock.getsockname()
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((local_ip, 0))
        self.layer = TransactionLayer(self.local[0], self.local[1])
        self.contact = f"<sip:{user}@{self.local[0]}:{self.local[1]}>"
        self.calls: list[UaCall] = []
        self.requests: list[Request] = []
        self._responses: dict[str, Response] = {}
        # False: a new INVITE only rings (180) until cancelled (487), never answered
        self.auto_answer = True
        self._ringing: dict[str, Request] = {}  # server transaction key -> INVITE

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    # ----------------------------------------------------------------- pumping

    def _pump(self, seconds: float) -> None:
        self.sock.settimeout(0.02)
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            try:
                data, addr = self.sock.recvfrom(65535)
                self.layer.receive(data, addr, now)
            except TimeoutError:
                pass
            self.layer.tick(time.monotonic())
            self._handle_events(time.monotonic())
            for out, dest in self.layer.outgoing():
                self.sock.sendto(out, dest)
            if time.monotonic() >= end:
                return

    def _handle_events(self, now: float) -> None:
        for ev in self.layer.events():
            if isinstance(ev, ResponseReceived) and ev.response.status >= 200:
                self._responses[ev.key] = ev.response
            elif isinstance(ev, TransactionTimedOut):
                self._responses[ev.key] = Response(408, "Timeout")
            elif isinstance(ev, RequestReceived):
                self.requests.append(ev.request)
                for call in self.calls:
                    if call.dialog.call_id == ev.request.call_id:
                        call.received.append(ev.request)
                if not self.auto_answer and ev.request.method == "INVITE" \
                        and ev.request.to.tag is None:
                    self._ringing[ev.key] = ev.request
                    self.layer.send_response(ev.key, make_response(
                        ev.request, 180, to_tag="ringing"), now)
                    continue
                self.layer.send_response(ev.key, self._answer(ev.request), now)
            elif isinstance(ev, CancelReceived) and ev.key in self._ringing:
                self.layer.send_response(ev.key, make_response(
                    self._ringing.pop(ev.key), 487, to_tag="ringing"), now)
            elif isinstance(ev, StrayResponseReceived | AckReceived):
                pass

    def _answer(self, req: Request) -> Response:
        """200 to anything; a new INVITE is answered with our SDP (auto-answer)."""
        if req.method != "INVITE" or req.to.tag is not None:
            return make_response(req, 200)
        sdp = make_offer(self.local[0], self.rtp.getsockname()[1], session_id=2,
                         version=1).to_bytes()
        return make_response(req, 200, to_tag=secrets.token_hex(4), body=sdp,
                             content_type="application/sdp", contact=self.contact)

    def _transact(self, req: Request, timeout: float = 5.0) -> Response:
        key = self.layer.send_request(req, self.proxy, time.monotonic())
        deadline = time.monotonic() + timeout
        while key not in self._responses:
            if time.monotonic() > deadline:
                raise UaError(f"no final response to {req.method}")
            self._pump(0.02)
        return self._responses.pop(key)

    def wait_request(self, method: str, timeout: float = 5.0, *,
                     body: str | None = None) -> Request:
        deadline = time.monotonic() + timeout
        while True:
            for req in self.requests:
                if req.method == method and (body is None or body.encode() in req.body):
                    self.requests.remove(req)
                    return req
            if time.monotonic() > deadline:
                raise UaError(f"no {method} received")
            self._pump(0.05)

    def wait_cancelled(self, timeout: float = 5.0) -> None:
        """Wait until every INVITE ringing here (``auto_answer`` False) was cancelled."""
        deadline = time.monotonic() + timeout
        while self._ringing:
            if time.monotonic() > deadline:
                raise UaError("a ringing INVITE was not cancelled")
            self._pump(0.05)

    # ----------------------------------------------------------------- requests

    def _new_request(self, method: str, ruri: str, *, to: str, body: bytes = b"",
                     ctype: str | None = None, call_id: str | None = None) -> Request:
        h = Headers()
        h.add("Max-Forwards", "70")
        h.add("From", f"<sip:{self.user}@{self.domain}>;tag={secrets.token_hex(4)}")
        h.add("To", to)
        h.add("Call-ID", call_id or secrets.token_hex(8))
        h.add("CSeq", f"1 {method}")
        h.add("Contact", self.contact)
        if ctype:
            h.add("Content-Type", ctype)
        return Request(method, SipUri.parse(ruri), h, body)

    def _with_auth(self, req: Request, challenge: Response) -> Request:
        name = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
        header = challenge.headers.get(name) or ""
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', header))
        realm, nonce = params["realm"], params["nonce"]
        ha1 = _md5(f"{self.user}:{realm}:{self.password}")
        ha2 = _md5(f"{req.method}:{req.uri}")
        cnonce, nc = secrets.token_hex(4), "00000001"
        if "auth" in params.get("qop", ""):
            resp = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            extra = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
        else:
            resp = _md5(f"{ha1}:{nonce}:{ha2}")
            extra = ""
        auth = (f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", '
                f'uri="{req.uri}", response="{resp}", algorithm=MD5{extra}')
        again = req.copy()
        number, method = req.cseq
        again.headers.set("CSeq", f"{number + 1} {method}")
        again.headers.remove("Via")
        again.headers.set("Authorization" if challenge.status == 401 else "Proxy-Authorization",
                          auth)
        return again

    def _authed(self, req: Request) -> tuple[Request, Response]:
        resp = self._transact(req)
        if resp.status in (401, 407):
            req = self._with_auth(req, resp)
            resp = self._transact(req)
        return req, resp

    def register(self) -> Response:
        req = self._new_request("REGISTER", f"sip:{self.domain}",
                                to=f"<sip:{self.user}@{self.domain}>")
        req.headers.add("Expires", "300")
        return self._authed(req)[1]

    def call(self, number: str, headers: tuple[tuple[str, str], ...] = (),
             telephone_event: int | None = 101) -> UaCall:
        port = self.rtp.getsockname()[1]
        sdp = make_offer(self.local[0], port, telephone_event=telephone_event, session_id=1,
                         version=1).to_bytes()
        req = self._new_request("INVITE", f"sip:{number}@{self.domain}",
                                to=f"<sip:{number}@{self.domain}>", body=sdp,
                                ctype="application/sdp")
        for name, value in headers:
            req.headers.add(name, value)
        req, resp = self._authed(req)
        if not 200 <= resp.status < 300:
            raise UaError(f"call to {number} failed: {resp.status}")
        dialog = Dialog.from_uac(req, resp)
        ack = dialog.create_ack(resp)
        self.layer.send_stateless(ack, self._next_hop(dialog))
        call = UaCall(dialog, req, SessionDescription.parse(resp.body))
        self.calls.append(call)
        self._pump(0.05)
        return call

    def in_dialog(self, call: UaCall, method: str, body: bytes = b"",
                  ctype: str | None = None, headers: list[tuple[str, str]] | None = None
                  ) -> Response:
        req = call.dialog.create_request(method, body=body, content_type=ctype,
                                         extra_headers=headers or [])
        key = self.layer.send_request(req, self._next_hop(call.dialog), time.monotonic())
        deadline = time.monotonic() + 5
        while key not in self._responses:
            if time.monotonic() > deadline:
                raise UaError(f"no response to {method}")
            self._pump(0.02)
        return self._responses.pop(key)

    def send_audio(self, call: UaCall, samples: Any) -> None:
        """Send int16 8 kHz ``samples`` as PCMU RTP to the other side's media address,
        paced in real time (20 ms packets)."""
        dest = media_of(call.answer)
        payload = g711.encode("PCMU", samples)
        start = time.monotonic()
        for n, offset in enumerate(range(0, len(payload), 160)):
            packet = RtpPacket(0, n, n * 160, 0x1234, n == 0, payload[offset:offset + 160])
            self.rtp.sendto(packet.to_bytes(), dest)
            delay = start + (n + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def replaces_uri(self, call: UaCall, target: str) -> str:
        """``target?Replaces=...`` naming ``call``'s dialog from the other side's view."""
        d = call.dialog
        value = f"{d.call_id};to-tag={d.remote_tag};from-tag={d.local_tag}"
        quoted = value.replace(";", "%3B").replace("=", "%3D").replace("@", "%40")
        return f"<sip:{target}@{self.domain}?Replaces={quoted}>"

    @staticmethod
    def _next_hop(dialog: Dialog) -> Addr:
        uri = dialog.next_hop
        return (uri.host, uri.port or 5060)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()
