"""RFC 3261 section 17 transactions: two real TransactionLayers wired in memory.

A UAC layer and a UAS layer exchange the bytes of ``outgoing()`` through a
:class:`Wire` that may drop datagrams, with a fake clock that jumps from one
``next_deadline()`` to the next. The transaction users are small scripted callbacks.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.sip.errors import TransactionError
from appliance.sip.message import Headers, Request, Response, make_response, parse_message
from appliance.sip.transaction import (
    AckReceived,
    Addr,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TimerConfig,
    TransactionEvent,
    TransactionLayer,
    TransactionTimedOut,
)
from appliance.sip.uri import SipUri

UAC_ADDR: Addr = ("10.0.0.1", 5060)
UAS_ADDR: Addr = ("10.0.0.2", 5060)
T1 = 0.5

Tu = Callable[["Wire", TransactionEvent], None]


def counter_branches(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"z9hG4bK{prefix}{next(numbers)}"


def make_layer(addr: Addr, name: str, transport: str = "UDP", **kw: object) -> TransactionLayer:
    return TransactionLayer(addr[0], addr[1], transport, counter_branches(name), **kw)  # type: ignore[arg-type]


def make_request(method: str, *, call_id: str = "call-1", cseq: int = 1) -> Request:
    headers = Headers(
        [
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@branch.example>;tag=fromtag"),
            ("To", "<sip:bob@hub.example>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", "<sip:alice@10.0.0.1:5060>"),
        ]
    )
    return Request(method, SipUri.parse("sip:bob@hub.example"), headers)


@dataclass
class Wire:
    """Two layers, a fake clock, a lossy link and the TUs' scripts."""

    uac: TransactionLayer
    uas: TransactionLayer
    uac_tu: Tu | None = None
    uas_tu: Tu | None = None
    drop: Callable[[int, bytes, Addr], bool] = lambda index, data, dest: False
    now: float = 0.0
    sent: list[tuple[float, Addr, bytes, bool]] = field(default_factory=list)
    uac_events: list[TransactionEvent] = field(default_factory=list)
    uas_events: list[TransactionEvent] = field(default_factory=list)
    alarms: list[tuple[float, Callable[[Wire], None]]] = field(default_factory=list)

    def layers(self) -> list[tuple[Addr, TransactionLayer]]:
        return [(UAC_ADDR, self.uac), (UAS_ADDR, self.uas)]

    def pump(self) -> None:
        """Deliver everything queued and run the TUs until both sides are quiet."""
        busy = True
        while busy:
            busy = False
            for src, layer in self.layers():
                for data, dest in layer.outgoing():
                    busy = True
                    dropped = self.drop(len(self.sent), data, dest)
                    self.sent.append((self.now, dest, data, dropped))
                    peer = {UAC_ADDR: self.uac, UAS_ADDR: self.uas}.get(dest)
                    if not dropped and peer is not None:
                        peer.receive(data, src, self.now)
            for layer, log, tu in (
                (self.uac, self.uac_events, self.uac_tu),
                (self.uas, self.uas_events, self.uas_tu),
            ):
                for event in layer.events():
                    busy = True
                    log.append(event)
                    if tu is not None:
                        tu(self, event)

    def at(self, when: float, action: Callable[[Wire], None]) -> None:
        """Run a TU action (e.g. a 2xx retransmission) at ``when``."""
        self.alarms.append((when, action))

    def run_until(self, until: float) -> None:
        self.pump()
        while True:
            deadlines = [d for d in (self.uac.next_deadline(), self.uas.next_deadline()) if d]
            deadlines += [when for when, _ in self.alarms]
            upcoming = [d for d in deadlines if d <= until]
            if not upcoming:
                break
            self.now = max(self.now, min(upcoming))
            due = [alarm for alarm in self.alarms if alarm[0] <= self.now]
            self.alarms = [alarm for alarm in self.alarms if alarm[0] > self.now]
            for _, action in due:
                action(self)
            self.uac.tick(self.now)
            self.uas.tick(self.now)
            self.pump()
        self.now = until

    def wire_messages(self, dest: Addr | None = None) -> list[Request | Response]:
        return [parse_message(d) for _, to, d, _ in self.sent if dest is None or to == dest]

    def requests_sent(self, method: str) -> list[Request]:
        out = []
        for message in self.wire_messages(UAS_ADDR):
            if isinstance(message, Request) and message.method == method:
                out.append(message)
        return out

    def responses_sent(self, status: int | None = None) -> list[Response]:
        out = []
        for message in self.wire_messages(UAC_ADDR):
            if isinstance(message, Response) and status in (None, message.status):
                out.append(message)
        return out


def of_type(events: list[TransactionEvent], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


def statuses(events: list[TransactionEvent]) -> list[int]:
    return [e.response.status for e in events if isinstance(e, ResponseReceived)]


def keyed_statuses(events: list[TransactionEvent]) -> list[tuple[str, int]]:
    """``(key, status)`` of every event, failing on anything but ResponseReceived."""
    assert all(isinstance(e, ResponseReceived) for e in events), events
    return [(e.key, e.response.status) for e in events if isinstance(e, ResponseReceived)]


def answering_uas(*statuses_: int, tag: str = "totag") -> Tu:
    """A UAS TU that answers every new request with ``statuses_`` in order."""

    def tu(wire: Wire, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived):
            for status in statuses_:
                reply = make_response(event.request, status, to_tag=tag)
                wire.uas.send_response(event.key, reply, wire.now)

    return tu


def make_wire(transport: str = "UDP", **kw: object) -> Wire:
    return Wire(
        make_layer(UAC_ADDR, "uac", transport, **kw), make_layer(UAS_ADDR, "uas", transport, **kw)
    )


def assert_all_gone(wire: Wire) -> None:
    assert wire.uac.transaction_count == 0
    assert wire.uas.transaction_count == 0
    assert wire.uac.next_deadline() is None
    assert wire.uas.next_deadline() is None


# --------------------------------------------------------------------------- INVITE


def test_invite_ringing_ok_ack() -> None:
    wire = make_wire()

    def uas_tu(wire: Wire, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived):
            wire.uas.send_response(
                event.key, make_response(event.request, 180, to_tag="b"), wire.now
            )
            ok = make_response(event.request, 200, to_tag="b", contact="<sip:bob@10.0.0.2>")
            wire.uas.send_response(event.key, ok, wire.now)

    def uac_tu(wire: Wire, event: TransactionEvent) -> None:
        if isinstance(event, ResponseReceived) and event.response.status == 200:
            ack = make_request("ACK")
            ack.headers.set("To", event.response.headers.get("To") or "")
            wire.uac.send_stateless(ack, UAS_ADDR)

    wire.uas_tu, wire.uac_tu = uas_tu, uac_tu
    invite = make_request("INVITE")
    key = wire.uac.send_request(invite, UAS_ADDR, wire.now)
    wire.pump()

    assert statuses(wire.uac_events) == [180, 200]
    assert all(e.key == key for e in wire.uac_events if isinstance(e, ResponseReceived))
    [received] = of_type(wire.uas_events, RequestReceived)
    assert received.request.method == "INVITE"
    assert received.addr == UAC_ADDR
    [ack] = of_type(wire.uas_events, AckReceived)
    assert ack.request.method == "ACK"
    # the ACK of a 2xx is its own "transaction": a new branch
    assert ack.request.top_via.branch != received.request.top_via.branch
    assert wire.uac.state_of(key) == "Accepted"
    assert wire.uas.state_of(received.key) == "Accepted"
    assert not of_type(wire.uac_events, StrayResponseReceived)
    wire.run_until(64 * T1 + 1)
    assert_all_gone(wire)
    # no 100 Trying: the TU answered at once
    assert [m.status for m in wire.responses_sent()] == [180, 200]


def test_send_request_adds_via_with_branch_and_rport() -> None:
    wire = make_wire()
    invite = make_request("INVITE")
    wire.uac.send_request(invite, UAS_ADDR, 0.0)
    [(data, dest)] = wire.uac.outgoing()
    assert dest == UAS_ADDR
    via = parse_message(data).top_via
    assert via.branch == "z9hG4bKuac1"
    assert via.rport_requested
    assert (via.transport, via.host, via.port) == ("UDP", "10.0.0.1", 5060)


def test_invite_busy_is_acked_by_the_transaction() -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(486)
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    assert statuses(wire.uac_events) == [486]
    [invite] = wire.requests_sent("INVITE")
    [ack] = wire.requests_sent("ACK")
    assert ack.top_via.branch == invite.top_via.branch  # 17.1.1.3: same branch
    assert ack.cseq == (1, "ACK")
    assert ack.to.tag == "totag"
    assert str(ack.uri) == str(invite.uri)
    # the ACK of a non-2xx stays in the server transaction
    assert not of_type(wire.uas_events, AckReceived)
    [received] = of_type(wire.uas_events, RequestReceived)
    assert wire.uas.state_of(received.key) == "Confirmed"
    assert wire.uac.state_of(key) == "Completed"
    wire.run_until(64 * T1 + 1)
    assert_all_gone(wire)


def test_100_trying_after_200_ms_when_tu_is_silent() -> None:
    wire = make_wire()
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    assert wire.responses_sent() == []
    wire.run_until(0.2)
    assert [r.status for r in wire.responses_sent()] == [100]
    assert statuses(wire.uac_events) == [100]
    assert wire.uac.state_of(key) == "Proceeding"
    # Proceeding: no more INVITE retransmissions
    wire.run_until(10.0)
    assert len(wire.requests_sent("INVITE")) == 1


def test_no_100_trying_when_tu_sends_provisional_first() -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(180)
    wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.run_until(5.0)
    assert [r.status for r in wire.responses_sent()] == [180]


def test_invite_retransmission_before_trying_timer_gets_100_at_once() -> None:
    uas = make_layer(UAS_ADDR, "uas", timers=TimerConfig(trying_delay=1.0))
    invite = make_request("INVITE")
    invite.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx", first=True)
    uas.receive(invite.to_bytes(), UAC_ADDR, 0.0)
    assert len(of_type(uas.events(), RequestReceived)) == 1
    assert uas.outgoing() == []
    uas.receive(invite.to_bytes(), UAC_ADDR, 0.5)
    assert uas.events() == []
    [(data, dest)] = uas.outgoing()
    assert parse_message(data).status == 100  # type: ignore[union-attr]
    assert dest == UAC_ADDR


def test_provisional_is_resent_on_invite_retransmission() -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(180)
    # the 180 is lost: timer A keeps retransmitting the INVITE, each gets the 180 again
    wire.drop = lambda index, data, dest: dest == UAC_ADDR and len(wire.responses_sent()) < 2
    wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.run_until(2.0)
    assert len(of_type(wire.uas_events, RequestReceived)) == 1
    assert [r.status for r in wire.responses_sent()] == [180, 180, 180]
    assert statuses(wire.uac_events) == [180]


# --------------------------------------------------------------------------- CANCEL


def cancelling_uas(wire: Wire, event: TransactionEvent) -> None:
    """Answers INVITE with 180 only; answers a CANCEL by terminating the INVITE."""
    if isinstance(event, RequestReceived) and event.request.method == "INVITE":
        wire.uas.send_response(event.key, make_response(event.request, 180, to_tag="b"), wire.now)
    if isinstance(event, CancelReceived):
        invite = next(
            e.request
            for e in wire.uas_events
            if isinstance(e, RequestReceived) and e.key == event.key
        )
        wire.uas.send_response(event.key, make_response(invite, 487, to_tag="b"), wire.now)


def test_cancel_after_ringing() -> None:
    wire = make_wire()
    wire.uas_tu = cancelling_uas
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    assert statuses(wire.uac_events) == [180]
    cancel_key = wire.uac.cancel(key, wire.now)
    assert wire.uac.cancel(key, wire.now) == cancel_key  # idempotent
    wire.pump()
    [cancel] = wire.requests_sent("CANCEL")
    [invite] = wire.requests_sent("INVITE")
    assert cancel.top_via.branch == invite.top_via.branch
    assert cancel.cseq == (1, "CANCEL")
    assert str(cancel.uri) == str(invite.uri)
    assert cancel.from_.tag == "fromtag" and cancel.to.tag is None
    [cancelled] = of_type(wire.uas_events, CancelReceived)
    [received] = of_type(wire.uas_events, RequestReceived)  # the CANCEL is not a new request
    assert cancelled.key == received.key
    by_key = {e.key: e.response.status for e in wire.uac_events if isinstance(e, ResponseReceived)}
    assert by_key == {key: 487, cancel_key: 200}
    assert len(wire.requests_sent("ACK")) == 1  # the 487 is ACKed by the transaction
    wire.run_until(64 * T1 + 1)
    assert_all_gone(wire)


def test_cancel_before_provisional_is_deferred_until_100() -> None:
    wire = make_wire()

    def uas_tu(wire: Wire, event: TransactionEvent) -> None:
        if isinstance(event, CancelReceived):
            invite = of_type(wire.uas_events, RequestReceived)[0].request
            wire.uas.send_response(event.key, make_response(invite, 487, to_tag="b"), wire.now)

    wire.uas_tu = uas_tu
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    cancel_key = wire.uac.cancel(key, 0.05)
    wire.pump()
    assert wire.requests_sent("CANCEL") == []  # 9.1: not before a provisional
    wire.run_until(0.2)  # the UAS layer's own 100 Trying releases the CANCEL
    assert len(wire.requests_sent("CANCEL")) == 1
    by_key = {e.key: e.response.status for e in wire.uac_events if isinstance(e, ResponseReceived)}
    assert by_key == {key: 487, cancel_key: 200}
    wire.run_until(64 * T1 + 1)
    assert_all_gone(wire)


def test_deferred_cancel_is_dropped_when_the_invite_fails_first() -> None:
    wire = make_wire()
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    wire.uac.cancel(key, 0.01)
    received = of_type(wire.uas_events, RequestReceived)[0]
    wire.uas.send_response(received.key, make_response(received.request, 486, to_tag="b"), 0.02)
    wire.run_until(64 * T1 + 1)
    assert wire.requests_sent("CANCEL") == []
    assert statuses(wire.uac_events) == [486]
    with pytest.raises(TransactionError):
        wire.uac.cancel(key, wire.now)  # gone


def test_cancel_after_final_response_is_refused() -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(486)
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    with pytest.raises(TransactionError, match="Completed"):
        wire.uac.cancel(key, wire.now)


def test_cancel_matching_no_invite_gets_481() -> None:
    wire = make_wire()
    cancel = make_request("CANCEL")
    key = wire.uac.send_request(cancel, UAS_ADDR, 0.0)
    wire.pump()
    assert [
        (e.key, e.response.status) for e in wire.uac_events if isinstance(e, ResponseReceived)
    ] == [(key, 481)]
    assert wire.uas_events == []


def test_cancelled_invite_without_final_response_times_out() -> None:
    wire = make_wire()

    def uas_tu(wire: Wire, event: TransactionEvent) -> None:  # rings, ignores the CANCEL
        if isinstance(event, RequestReceived):
            wire.uas.send_response(
                event.key, make_response(event.request, 180, to_tag="b"), wire.now
            )

    wire.uas_tu = uas_tu
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    wire.uac.cancel(key, 1.0)
    wire.run_until(1.0 + 64 * T1 - 0.01)
    assert not of_type(wire.uac_events, TransactionTimedOut)
    wire.run_until(1.0 + 64 * T1)
    assert [e.key for e in of_type(wire.uac_events, TransactionTimedOut)] == [key]


# --------------------------------------------------------------------------- loss


@pytest.mark.parametrize("lost", [0, 1, 2, 3, 5])
def test_invite_survives_lost_requests(lost: int) -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(486)
    wire.drop = lambda index, data, dest: dest == UAS_ADDR and index < lost
    wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.run_until(64 * T1 - 1)
    # timer A: INVITE at 0, 0.5, 1.5, 3.5, 7.5, 15.5 (doubling from T1)
    times = [t for t, dest, data, _ in wire.sent if data.startswith(b"INVITE")]
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5][: lost + 1]
    assert len(of_type(wire.uas_events, RequestReceived)) == 1
    assert statuses(wire.uac_events) == [486]
    assert not of_type(wire.uac_events, TransactionTimedOut)


@pytest.mark.parametrize("method", ["OPTIONS", "BYE"])
@pytest.mark.parametrize("lost", [0, 1, 4, 7])
def test_non_invite_survives_lost_requests(method: str, lost: int) -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(200)
    wire.drop = lambda index, data, dest: dest == UAS_ADDR and index < lost
    wire.uac.send_request(make_request(method), UAS_ADDR, 0.0)
    wire.run_until(64 * T1 - 1)
    # timer E: 0, 0.5, 1.5, 3.5 then every T2 = 4 s
    times = [t for t, dest, data, _ in wire.sent if data.startswith(method.encode())]
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5][: lost + 1]
    assert len(of_type(wire.uas_events, RequestReceived)) == 1
    assert statuses(wire.uac_events) == [200]


def test_lost_final_response_is_retransmitted_by_timer_g_and_acked() -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(486)
    # lose the first two 486s and the first ACK
    lost: list[str] = []

    def drop(index: int, data: bytes, dest: Addr) -> bool:
        kind = (
            "486" if data.startswith(b"SIP/2.0 486") else "ACK" if data.startswith(b"ACK") else ""
        )
        if kind and lost.count(kind) < (2 if kind == "486" else 1):
            lost.append(kind)
            return True
        return False

    wire.drop = drop
    wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.run_until(64 * T1 + 1)
    response_times = [t for t, dest, data, _ in wire.sent if data.startswith(b"SIP/2.0 486")]
    ack_times = [t for t, dest, data, _ in wire.sent if data.startswith(b"ACK")]
    # 0: 486 lost. 0.5: timer G resends it (lost) and the INVITE retransmitted by
    # timer A gets it again (arrives, ACK lost). 1.5: timer G again, ACKed again.
    assert response_times == [0.0, 0.5, 0.5, 1.5]
    assert ack_times == [0.5, 1.5]
    assert statuses(wire.uac_events) == [486]
    assert len(of_type(wire.uas_events, RequestReceived)) == 1
    assert not of_type(wire.uas_events, TransactionTimedOut)
    assert_all_gone(wire)


def test_timer_g_backs_off_to_t2_and_timer_h_times_out() -> None:
    uas = make_layer(UAS_ADDR, "uas")
    invite = make_request("INVITE")
    invite.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx", first=True)
    uas.receive(invite.to_bytes(), UAC_ADDR, 0.0)
    [event] = uas.events()
    assert isinstance(event, RequestReceived)
    uas.send_response(event.key, make_response(event.request, 603, to_tag="t"), 0.0)
    sent_at = [0.0]
    uas.outgoing()
    now = 0.0
    timed_out: list[TransactionEvent] = []
    while (deadline := uas.next_deadline()) is not None:
        now = deadline
        uas.tick(now)
        sent_at += [now for _ in uas.outgoing()]
        timed_out += uas.events()
    assert sent_at[:8] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5]
    assert timed_out == [TransactionTimedOut(event.key)]
    assert now == 64 * T1
    assert uas.transaction_count == 0


# --------------------------------------------------------------------------- timeouts


def test_invite_times_out_with_timer_b() -> None:
    wire = make_wire()
    wire.drop = lambda index, data, dest: True  # the UAS is unreachable
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.run_until(64 * T1 - 0.001)
    assert wire.uac_events == []
    wire.run_until(64 * T1)
    assert wire.uac_events == [TransactionTimedOut(key)]
    times = [t for t, _, data, _ in wire.sent if data.startswith(b"INVITE")]
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert_all_gone(wire)


def test_non_invite_times_out_with_timer_f() -> None:
    wire = make_wire()
    wire.drop = lambda index, data, dest: True
    key = wire.uac.send_request(make_request("OPTIONS"), UAS_ADDR, 0.0)
    wire.run_until(64 * T1)
    assert wire.uac_events == [TransactionTimedOut(key)]
    times = [t for t, _, data, _ in wire.sent if data.startswith(b"OPTIONS")]
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert_all_gone(wire)


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(100)  # the TU never sends the final response
    key = wire.uac.send_request(make_request("INFO"), UAS_ADDR, 0.0)
    wire.run_until(64 * T1)
    times = [t for t, _, data, _ in wire.sent if data.startswith(b"INFO")]
    # the first timer E fires in Proceeding: from then on every T2 (17.1.2.2)
    assert times == [0.0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert statuses(wire.uac_events) == [100] * 9  # 17.1.2.2: all passed up
    assert of_type(wire.uac_events, TransactionTimedOut) == [TransactionTimedOut(key)]
    # every retransmission in Proceeding got the 100 again, never a second RequestReceived
    assert len(of_type(wire.uas_events, RequestReceived)) == 1
    assert len(wire.responses_sent(100)) == 9


# --------------------------------------------------------------------------- 2xx


def test_2xx_retransmitted_by_uas_tu_until_ack() -> None:
    wire = make_wire()
    state: dict[str, object] = {}

    def retransmit(wire: Wire) -> None:
        if state.get("acked"):
            return
        ok = state["ok"]
        assert isinstance(ok, Response)
        wire.uas.send_response(str(state["key"]), ok, wire.now)
        interval = min(2 * float(state["interval"]), 4.0)  # type: ignore[arg-type]
        state["interval"] = interval
        wire.at(wire.now + interval, retransmit)

    def uas_tu(wire: Wire, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived):
            ok = make_response(event.request, 200, to_tag="b", contact="<sip:bob@10.0.0.2>")
            state.update(ok=ok, key=event.key, interval=T1)
            wire.uas.send_response(event.key, ok, wire.now)
            wire.at(wire.now + T1, retransmit)
        if isinstance(event, AckReceived):
            state["acked"] = True

    def uac_tu(wire: Wire, event: TransactionEvent) -> None:
        response = getattr(event, "response", None)
        if isinstance(response, Response) and response.status == 200:
            ack = make_request("ACK")
            ack.headers.set("To", response.headers.get("To") or "")
            wire.uac.send_stateless(ack, UAS_ADDR)

    # lose the first two 200s
    wire.drop = lambda index, data, dest: (
        data.startswith(b"SIP/2.0 200")
        and (sum(1 for _, _, d, _ in wire.sent if d.startswith(b"SIP/2.0 200")) < 2)
    )
    wire.uas_tu, wire.uac_tu = uas_tu, uac_tu
    wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.run_until(1.5 + 64 * T1)  # timer M runs from the first 2xx received
    ok_times = [t for t, _, data, _ in wire.sent if data.startswith(b"SIP/2.0 200")]
    assert ok_times == [0.0, 0.5, 1.5]
    assert len(of_type(wire.uas_events, AckReceived)) == 1
    assert len(of_type(wire.uas_events, RequestReceived)) == 1  # INVITE resends absorbed
    assert statuses(wire.uac_events) == [200]
    assert_all_gone(wire)


def test_2xx_after_client_transaction_ended_is_stray() -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(200)
    wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    [received] = of_type(wire.uas_events, RequestReceived)
    ok = make_response(received.request, 200, to_tag="totag")
    wire.run_until(64 * T1 + 1)  # timer M ends the client transaction
    assert wire.uac.transaction_count == 0
    wire.uas.send_stateless(ok)  # routed by the Via (received/rport)
    wire.pump()
    [stray] = of_type(wire.uac_events, StrayResponseReceived)
    assert stray.response.status == 200


def test_2xx_retransmissions_in_accepted_reach_the_tu() -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(200)
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    [received] = of_type(wire.uas_events, RequestReceived)
    wire.uas.send_response(received.key, make_response(received.request, 200, to_tag="totag"), 1.0)
    wire.pump()
    assert keyed_statuses(wire.uac_events) == [(key, 200), (key, 200)]


# --------------------------------------------------------------------------- non-INVITE


@pytest.mark.parametrize(
    ("method", "status"), [("BYE", 200), ("OPTIONS", 200), ("INFO", 200), ("REFER", 202)]
)
def test_non_invite_request_response(method: str, status: int) -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(status)
    key = wire.uac.send_request(make_request(method), UAS_ADDR, 0.0)
    wire.pump()
    assert keyed_statuses(wire.uac_events) == [(key, status)]
    [received] = of_type(wire.uas_events, RequestReceived)
    assert received.request.method == method
    assert wire.uac.state_of(key) == "Completed"
    assert wire.uas.state_of(received.key) == "Completed"
    # a late retransmission of the request gets the same final response, no new event
    [request] = wire.requests_sent(method)
    wire.uas.receive(request.to_bytes(), UAC_ADDR, 1.0)
    assert wire.uas.events() == []
    [(data, dest)] = wire.uas.outgoing()
    assert dest == UAC_ADDR and parse_message(data).status == status  # type: ignore[union-attr]
    wire.run_until(5.0)  # timer K = T4
    assert wire.uac.transaction_count == 0
    assert wire.uas.transaction_count == 1
    wire.run_until(64 * T1 + 1)  # timer J = 64*T1
    assert_all_gone(wire)


def test_non_invite_trying_absorbs_retransmissions_silently() -> None:
    uas = make_layer(UAS_ADDR, "uas")
    bye = make_request("BYE")
    bye.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx", first=True)
    uas.receive(bye.to_bytes(), UAC_ADDR, 0.0)
    uas.receive(bye.to_bytes(), UAC_ADDR, 0.5)
    assert len(of_type(uas.events(), RequestReceived)) == 1
    assert uas.outgoing() == []


# --------------------------------------------------------------------------- routing


def test_responses_follow_received_and_rport() -> None:
    uas = make_layer(UAS_ADDR, "uas")
    options = make_request("OPTIONS")
    options.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnat;rport", first=True)
    nat: Addr = ("192.0.2.7", 40000)
    uas.receive(options.to_bytes(), nat, 0.0)
    [event] = uas.events()
    assert isinstance(event, RequestReceived)
    via = event.request.top_via
    assert (via.received, via.rport) == ("192.0.2.7", 40000)
    uas.send_response(event.key, make_response(event.request, 200, to_tag="t"), 0.0)
    [(data, dest)] = uas.outgoing()
    assert dest == nat
    assert parse_message(data).top_via.rport == 40000


def test_responses_without_rport_go_to_received_and_sent_by_port() -> None:
    uas = make_layer(UAS_ADDR, "uas")
    options = make_request("OPTIONS")
    options.headers.add("Via", "SIP/2.0/UDP pbx.example:5070;branch=z9hG4bKa", first=True)
    options.headers.add("Via", "SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKb")
    uas.receive(options.to_bytes(), ("192.0.2.8", 6000), 0.0)
    [event] = uas.events()
    assert isinstance(event, RequestReceived)
    assert event.request.top_via.received == "192.0.2.8"
    assert len(event.request.vias) == 2
    uas.send_response(event.key, make_response(event.request, 200, to_tag="t"), 0.0)
    [(_, dest)] = uas.outgoing()
    assert dest == ("192.0.2.8", 5070)


def test_response_with_foreign_sent_by_is_dropped() -> None:
    uac = make_layer(UAC_ADDR, "uac")
    request = make_request("OPTIONS")
    request.headers.add("Via", "SIP/2.0/UDP 10.6.6.6:5060;branch=z9hG4bKuac1", first=True)
    response = make_response(request, 200, to_tag="t")
    uac.receive(response.to_bytes(), UAS_ADDR, 0.0)
    assert uac.events() == [] and uac.outgoing() == []


def test_unmatched_response_is_stray() -> None:
    uac = make_layer(UAC_ADDR, "uac")
    request = make_request("OPTIONS")
    request.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnobody", first=True)
    uac.receive(make_response(request, 200, to_tag="t").to_bytes(), UAS_ADDR, 0.0)
    [event] = uac.events()
    assert isinstance(event, StrayResponseReceived)


# --------------------------------------------------------------------------- garbage


GARBAGE = [
    b"",
    b"\r\n\r\n",
    b"hello world",
    b"\x00\xff" * 40,
    b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n",
    b"SIP/2.0 999 Weird\r\n\r\n",
]


@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_is_dropped_without_exception(data: bytes) -> None:
    uas = make_layer(UAS_ADDR, "uas")
    uas.receive(data, UAC_ADDR, 0.0)
    assert uas.events() == []
    assert uas.outgoing() == []
    assert uas.transaction_count == 0


def test_request_with_only_a_via_gets_400_without_a_transaction() -> None:
    """RFC 4475 3.3.1 (insuf): missing mandatory headers still earn a 400."""
    uas = make_layer(UAS_ADDR, "uas")
    uas.receive(b"INVITE sip:bob@hub.example SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKg\r\n", UAC_ADDR, 0.0)
    assert uas.events() == []
    [(reply, dest)] = uas.outgoing()
    assert reply.startswith(b"SIP/2.0 400 ") and dest == ("10.0.0.1", 5060)
    assert uas.transaction_count == 0


def test_unparsable_request_with_readable_headers_gets_400() -> None:
    uas = make_layer(UAS_ADDR, "uas")
    data = (
        b"OPTIONS sip:bob@hub.example SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbad\r\n"
        b"From: <sip:alice@branch.example>;tag=a\r\n"
        b"To: <sip:bob@hub.example>\r\n"
        b"Call-ID: bad-1\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"Content-Length: 50\r\n\r\nshort"
    )
    uas.receive(data, UAC_ADDR, 0.0)
    assert uas.events() == []
    [(reply, dest)] = uas.outgoing()
    assert dest == UAC_ADDR
    response = parse_message(reply)
    assert isinstance(response, Response) and response.status == 400


def test_request_failing_uas_checks_is_answered_by_the_layer() -> None:
    uas = make_layer(UAS_ADDR, "uas")
    request = make_request("OPTIONS")
    request.headers.set("CSeq", "1 INVITE")  # CSeq method mismatch: 400
    request.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKm", first=True)
    uas.receive(request.to_bytes(), UAC_ADDR, 0.0)
    uas.receive(request.to_bytes(), UAC_ADDR, 0.5)  # the retransmission gets the same answer
    assert uas.events() == []
    replies = [parse_message(d) for d, _ in uas.outgoing()]
    assert [r.status for r in replies] == [400, 400]  # type: ignore[union-attr]
    assert replies[0].to.tag == replies[1].to.tag


def test_require_unknown_extension_gets_420_with_unsupported() -> None:
    uas = make_layer(UAS_ADDR, "uas")
    request = make_request("INVITE")
    request.headers.add("Require", "foo")
    request.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKr", first=True)
    uas.receive(request.to_bytes(), UAC_ADDR, 0.0)
    [(data, _)] = uas.outgoing()
    reply = parse_message(data)
    assert isinstance(reply, Response) and reply.status == 420
    assert reply.headers.get("Unsupported") == "foo"


# --------------------------------------------------------------------------- TCP


def test_tcp_invite_has_no_retransmissions_and_no_wait_states() -> None:
    wire = make_wire("TCP")
    wire.uas_tu = answering_uas(486)
    key = wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    assert wire.uac.next_deadline() == 64 * T1  # timer B only, no timer A
    wire.pump()
    assert statuses(wire.uac_events) == [486]
    assert len(wire.requests_sent("ACK")) == 1
    assert wire.uac.state_of(key) is None  # timer D = 0
    assert_all_gone(wire)  # timer I = 0 too
    assert parse_message(wire.sent[0][2]).top_via.transport == "TCP"


def test_tcp_non_invite_terminates_at_once_and_times_out_without_retransmission() -> None:
    wire = make_wire("TCP")
    wire.uas_tu = answering_uas(200)
    wire.uac.send_request(make_request("OPTIONS"), UAS_ADDR, 0.0)
    wire.pump()
    assert statuses(wire.uac_events) == [200]
    assert_all_gone(wire)  # timers K and J = 0

    silent = make_wire("TCP")
    silent.drop = lambda index, data, dest: True
    key = silent.uac.send_request(make_request("OPTIONS"), UAS_ADDR, 0.0)
    silent.run_until(64 * T1)
    assert len(silent.sent) == 1
    assert silent.uac_events == [TransactionTimedOut(key)]


def test_tcp_responses_go_back_on_the_connection() -> None:
    uas = make_layer(UAS_ADDR, "uas", "TCP")
    options = make_request("OPTIONS")
    options.headers.add("Via", "SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKt", first=True)
    connection: Addr = ("10.0.0.1", 49152)
    uas.receive(options.to_bytes(), connection, 0.0)
    [event] = uas.events()
    assert isinstance(event, RequestReceived)
    uas.send_response(event.key, make_response(event.request, 200, to_tag="t"), 0.0)
    [(_, dest)] = uas.outgoing()
    assert dest == connection


# --------------------------------------------------------------------------- bounds, misuse


def test_server_table_is_bounded_with_503() -> None:
    uas = make_layer(UAS_ADDR, "uas", max_server_transactions=2)
    for n in range(3):
        request = make_request("OPTIONS", call_id=f"c{n}")
        request.headers.add("Via", f"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{n}", first=True)
        uas.receive(request.to_bytes(), UAC_ADDR, 0.0)
    assert len(uas.events()) == 2
    [(data, _)] = uas.outgoing()
    reply = parse_message(data)
    assert isinstance(reply, Response) and reply.status == 503
    assert uas.transaction_count == 2


def test_tu_mistakes_raise_transaction_error() -> None:
    wire = make_wire()
    with pytest.raises(TransactionError, match="no server transaction"):
        wire.uas.send_response("s:nope", Response(200, "OK"), 0.0)
    with pytest.raises(TransactionError, match="ACK"):
        wire.uac.send_request(make_request("ACK"), UAS_ADDR, 0.0)
    with pytest.raises(TransactionError):
        wire.uac.cancel("c:nope:INVITE", 0.0)
    options_key = wire.uac.send_request(make_request("OPTIONS"), UAS_ADDR, 0.0)
    with pytest.raises(TransactionError):
        wire.uac.cancel(options_key, 0.0)
    wire.uas_tu = answering_uas(486)
    wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.pump()
    received = of_type(wire.uas_events, RequestReceived)[-1]
    with pytest.raises(TransactionError, match="in state Confirmed"):
        wire.uas.send_response(received.key, make_response(received.request, 180), 0.0)


def test_same_branch_twice_is_refused() -> None:
    uac = make_layer(UAC_ADDR, "uac")
    request = make_request("OPTIONS")
    uac.send_request(request, UAS_ADDR, 0.0)
    with pytest.raises(TransactionError, match="already exists"):
        uac.send_request(request, UAS_ADDR, 0.0)


def test_rfc2543_request_without_magic_cookie_is_still_absorbed() -> None:
    uas = make_layer(UAS_ADDR, "uas")
    options = make_request("OPTIONS")
    options.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060", first=True)
    uas.receive(options.to_bytes(), UAC_ADDR, 0.0)
    uas.receive(options.to_bytes(), UAC_ADDR, 0.5)
    assert len(uas.events()) == 1


def test_two_tenants_requests_with_same_call_id_are_separate_transactions() -> None:
    """Cross-tenant negative case: tenants behind one edge may reuse Call-IDs and even
    branch values; sent-by keeps their transactions apart (17.2.3)."""
    uas = make_layer(UAS_ADDR, "uas")
    for host in ("10.1.0.1", "10.2.0.1"):
        request = make_request("OPTIONS", call_id="same")
        request.headers.add("Via", f"SIP/2.0/UDP {host}:5060;branch=z9hG4bKsame", first=True)
        uas.receive(request.to_bytes(), (host, 5060), 0.0)
    events = uas.events()
    assert len(events) == 2
    assert len({e.key for e in events if isinstance(e, RequestReceived)}) == 2


# --------------------------------------------------------------------------- properties


def lossy(
    losses: list[bool], rnd: random.Random | None = None, p: float = 0.0
) -> Callable[[int, bytes, Addr], bool]:
    """Drop datagram n if ``losses[n]`` says so; past the list, with probability ``p``."""
    pattern = iter(losses)

    def drop(index: int, data: bytes, dest: Addr) -> bool:
        explicit = next(pattern, None)
        if explicit is not None:
            return explicit
        return rnd is not None and rnd.random() < p

    return drop


def run_lossy_invite(
    losses: list[bool], final: int, rnd: random.Random | None = None, p: float = 0.0
) -> Wire:
    """An INVITE answered ``final`` (the UAS TU retransmits a 2xx until the ACK), over a
    link that loses datagrams as :func:`lossy` says."""
    wire = make_wire()
    acked: list[bool] = []

    def retransmit(key: str, ok: Response, interval: float) -> Callable[[Wire], None]:
        def action(wire: Wire) -> None:
            if acked or wire.uas.state_of(key) is None:
                return
            wire.uas.send_response(key, ok, wire.now)
            wire.at(wire.now + min(2 * interval, 4.0), retransmit(key, ok, min(2 * interval, 4.0)))

        return action

    def uas_tu(wire: Wire, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived):
            reply = make_response(event.request, final, to_tag="b", contact="<sip:bob@10.0.0.2>")
            wire.uas.send_response(event.key, reply, wire.now)
            if final < 300:
                wire.at(wire.now + T1, retransmit(event.key, reply, T1))
        if isinstance(event, AckReceived):
            acked.append(True)

    def uac_tu(wire: Wire, event: TransactionEvent) -> None:
        response = getattr(event, "response", None)
        if isinstance(response, Response) and response.status == 200:
            ack = make_request("ACK")
            ack.headers.set("To", response.headers.get("To") or "")
            wire.uac.send_stateless(ack, UAS_ADDR)

    wire.uas_tu, wire.uac_tu = uas_tu, uac_tu
    wire.drop = lossy(losses, rnd, p)
    wire.uac.send_request(make_request("INVITE"), UAS_ADDR, 0.0)
    wire.run_until(3 * 64 * T1)
    return wire


LOSS_RATES = st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.8])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    losses=st.lists(st.booleans(), max_size=20),
    rnd=st.randoms(use_true_random=False),
    p=LOSS_RATES,
    final=st.sampled_from([200, 486]),
)
def test_random_loss_completes_or_times_out_cleanly(
    losses: list[bool], rnd: random.Random, p: float, final: int
) -> None:
    wire = run_lossy_invite(losses, final, rnd, p)
    uac_finals = [s for s in statuses(wire.uac_events) if s >= 200]
    timeouts = of_type(wire.uac_events, TransactionTimedOut)
    # exactly one outcome at the UAC: the final response (2xx possibly repeated), or B
    assert bool(uac_finals) != bool(timeouts)
    assert set(uac_finals) <= {final}
    if final >= 300:
        assert len(uac_finals) <= 1
    # the UAS TU saw the INVITE at most once
    assert len(of_type(wire.uas_events, RequestReceived)) <= 1
    assert len(timeouts) <= 1
    assert_all_gone(wire)


@settings(max_examples=100, deadline=None)
@given(
    losses=st.lists(st.booleans(), max_size=20),
    rnd=st.randoms(use_true_random=False),
    p=LOSS_RATES,
    method=st.sampled_from(["OPTIONS", "BYE", "INFO"]),
)
def test_random_loss_non_invite(
    losses: list[bool], rnd: random.Random, p: float, method: str
) -> None:
    wire = make_wire()
    wire.uas_tu = answering_uas(200)
    wire.drop = lossy(losses, rnd, p)
    key = wire.uac.send_request(make_request(method), UAS_ADDR, 0.0)
    wire.run_until(3 * 64 * T1)
    outcome = [e for e in wire.uac_events if getattr(e, "key", None) == key]
    assert len(outcome) == 1
    assert isinstance(outcome[0], ResponseReceived | TransactionTimedOut)
    assert len(of_type(wire.uas_events, RequestReceived)) <= 1
    assert_all_gone(wire)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    uas = make_layer(UAS_ADDR, "uas")
    uas.receive(data, UAC_ADDR, 0.0)
    for reply, _ in uas.outgoing():
        assert isinstance(parse_message(reply), Response)


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=400),
    junk=st.binary(min_size=1, max_size=8),
    cut=st.booleans(),
)
def test_mutated_invite_never_raises(position: int, junk: bytes, cut: bool) -> None:
    invite = make_request("INVITE")
    invite.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKm;rport", first=True)
    data = invite.to_bytes()
    position %= len(data)
    mutated = data[:position] + junk + (b"" if cut else data[position + len(junk) :])
    for layer in (make_layer(UAS_ADDR, "uas"), make_layer(UAC_ADDR, "uac")):
        layer.receive(mutated, UAC_ADDR, 0.0)
        layer.tick(100.0)
        layer.events()
        layer.outgoing()


def test_tables_are_total_for_peer_input() -> None:
    """Whatever a peer sends, in any state a transaction can be in, the table has a row:
    peer input can never hit the "no transition" TransactionError."""
    from appliance.sip import transaction as t

    peer_stimuli = {
        t.Kind.INVITE_CLIENT: (t.Stimulus.RX_1XX, t.Stimulus.RX_2XX, t.Stimulus.RX_FINAL),
        t.Kind.NON_INVITE_CLIENT: (t.Stimulus.RX_1XX, t.Stimulus.RX_2XX, t.Stimulus.RX_FINAL),
        t.Kind.INVITE_SERVER: (t.Stimulus.RX_REQUEST, t.Stimulus.RX_ACK),
        t.Kind.NON_INVITE_SERVER: (t.Stimulus.RX_REQUEST,),
    }
    for kind, table in t._TABLES.items():
        states = {state for state, _ in table} | {row[0] for row in table.values()}
        states.discard(t.State.TERMINATED)
        for state in states:
            for stimulus in peer_stimuli[kind]:
                assert (state, stimulus) in table, (kind, state, stimulus)
        # and every timer a state starts has a row in that state
        for (timer_kind, state), timers in t._ENTRY_TIMERS.items():
            if timer_kind is kind:
                for timer in timers:
                    assert (state, t._TIMER_STIMULUS[timer]) in table, (kind, state, timer)
