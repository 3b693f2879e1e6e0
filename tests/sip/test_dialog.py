"""RFC 3261 section 12 dialogs: creation on both sides, in-dialog requests, CSeq rules,
target refresh, DialogSet lookups, and a whole call through two transaction layers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sip.dialog import Dialog, DialogError, DialogSet, DialogState
from appliance.sip.message import Headers, Request, Response, make_response, parse_message
from appliance.sip.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
)
from appliance.sip.uri import SipUri
from tests.sip.test_transaction import UAC_ADDR, UAS_ADDR, Wire, make_wire

# Two record-routing proxies between the phones: p1 next to the caller, p2 next to
# the callee. Each puts its Record-Route on top, so the callee sees p2 then p1.
P1 = "<sip:p1.example;lr>"
P2 = "<sip:p2.example;lr>"
CALLER_CONTACT = "<sip:alice@10.0.0.1:5060>"
CALLEE_CONTACT = "<sip:bob@10.0.0.2:5060>"


def invite(*, uri: str = "sip:bob@hub.example", record_route: bool = True) -> Request:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv;rport"),
            ("Max-Forwards", "70"),
            ("From", '"Alice" <sip:alice@branch.example>;tag=a-tag'),
            ("To", "<sip:bob@hub.example>"),
            ("Call-ID", "dlg-call-1"),
            ("CSeq", "10 INVITE"),
            ("Contact", CALLER_CONTACT),
        ]
    )
    if record_route:
        headers.add("Record-Route", P2)
        headers.add("Record-Route", P1)
    return Request("INVITE", SipUri.parse(uri), headers)


def answer(request: Request, status: int = 200, *, tag: str = "b-tag") -> Response:
    return make_response(request, status, to_tag=tag, contact=CALLEE_CONTACT)


def state_of(dialog: Dialog) -> DialogState:
    return dialog.state  # (a call, so that type checkers do not narrow across confirm())


def routes(request: Request) -> list[str]:
    return request.headers.get_all("Route")


# --------------------------------------------------------------------------- creation


def test_uac_dialog_from_2xx() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    assert dialog.dialog_id == ("dlg-call-1", "a-tag", "b-tag")
    assert dialog.state is DialogState.CONFIRMED
    assert [str(r) for r in dialog.route_set] == [P1, P2]  # Record-Route reversed
    assert str(dialog.remote_target) == "sip:bob@10.0.0.2:5060"
    assert str(dialog.local_target) == "sip:alice@10.0.0.1:5060"
    assert dialog.local_cseq == 10 and dialog.remote_cseq is None
    assert dialog.local_uri.display == "Alice" and dialog.local_uri.tag is None
    assert str(dialog.remote_uri.uri) == "sip:bob@hub.example"
    assert dialog.secure is False
    assert str(dialog.next_hop) == "sip:p1.example;lr"


def test_uas_dialog_from_request_and_our_response() -> None:
    request = invite()
    dialog = Dialog.from_uas(request, answer(request, 180))
    assert dialog.dialog_id == ("dlg-call-1", "b-tag", "a-tag")
    assert dialog.state is DialogState.EARLY
    assert [str(r) for r in dialog.route_set] == [P2, P1]  # Record-Route in order
    assert str(dialog.remote_target) == "sip:alice@10.0.0.1:5060"
    assert str(dialog.local_target) == "sip:bob@10.0.0.2:5060"
    assert dialog.remote_cseq == 10 and dialog.local_cseq is None
    assert str(dialog.remote_uri.uri) == "sip:alice@branch.example"


def test_sips_request_uri_makes_a_secure_dialog() -> None:
    request = invite(uri="sips:bob@hub.example")
    assert Dialog.from_uac(request, answer(request)).secure is True
    assert Dialog.from_uas(request, answer(request), secure=False).secure is False


def test_early_dialog_is_confirmed_by_2xx_with_its_own_route_set() -> None:
    request = invite(record_route=False)
    ringing = answer(request, 180)
    ringing.headers.add("Record-Route", "<sip:early.example;lr>")
    dialog = Dialog.from_uac(request, ringing)
    assert dialog.state is DialogState.EARLY
    assert [str(r) for r in dialog.route_set] == ["<sip:early.example;lr>"]
    ok = make_response(request, 200, to_tag="b-tag", contact="<sip:bob@10.0.0.9>")
    ok.headers.add("Record-Route", P2)
    ok.headers.add("Record-Route", P1)
    dialog.confirm(ok)
    assert state_of(dialog) is DialogState.CONFIRMED
    assert [str(r) for r in dialog.route_set] == [P1, P2]  # 13.2.2.4: recomputed
    assert str(dialog.remote_target) == "sip:bob@10.0.0.9"
    dialog.confirm(ok)  # a retransmitted 2xx changes nothing
    assert [str(r) for r in dialog.route_set] == [P1, P2]
    with pytest.raises(DialogError):
        dialog.confirm(answer(request, 180))


@pytest.mark.parametrize("status", [100, 300, 486])
def test_only_101_to_299_create_dialogs(status: int) -> None:
    request = invite()
    with pytest.raises(DialogError):
        Dialog.from_uac(request, answer(request, status))


def test_provisional_without_to_tag_creates_no_dialog() -> None:
    request = invite()
    ringing = make_response(request, 180)
    with pytest.raises(DialogError, match="To tag"):
        Dialog.from_uac(request, ringing)


# --------------------------------------------------------------------------- requests


def test_cseq_increases_and_ack_reuses_the_invite_number() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    assert dialog.create_request("ACK").cseq == (10, "ACK")
    assert dialog.create_request("INFO").cseq == (11, "INFO")
    assert dialog.create_request("INVITE").cseq == (12, "INVITE")  # re-INVITE
    assert dialog.create_request("ACK").cseq == (12, "ACK")
    assert dialog.create_request("BYE").cseq == (13, "BYE")
    assert dialog.local_cseq == 13


def test_uas_side_local_cseq_starts_when_first_used() -> None:
    request = invite()
    dialog = Dialog.from_uas(request, answer(request))
    assert dialog.create_request("BYE").cseq == (1, "BYE")
    with pytest.raises(DialogError, match="no INVITE"):
        dialog.create_request("ACK")


def test_in_dialog_bye_is_built_right() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    bye = dialog.create_request("BYE", extra_headers=[("Reason", "Q.850;cause=16")])
    assert bye.method == "BYE"
    assert str(bye.uri) == "sip:bob@10.0.0.2:5060"  # the remote target (loose routing)
    assert routes(bye) == [P1, P2]
    assert bye.from_.tag == "a-tag" and bye.from_.display == "Alice"
    assert bye.to.tag == "b-tag" and str(bye.to.uri) == "sip:bob@hub.example"
    assert bye.call_id == "dlg-call-1"
    assert bye.cseq == (11, "BYE")
    assert bye.headers.get("Max-Forwards") == "70"
    assert bye.headers.get("Reason") == "Q.850;cause=16"
    assert "Contact" not in bye.headers  # BYE is no target refresh
    assert "Via" not in bye.headers  # the transaction layer adds it
    assert parse_message(_with_via(bye)).cseq == (11, "BYE")


def _with_via(request: Request) -> bytes:
    request.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx", first=True)
    return request.to_bytes()


def test_no_route_set_means_no_route_header() -> None:
    request = invite(record_route=False)
    bye = Dialog.from_uac(request, answer(request)).create_request("BYE")
    assert routes(bye) == []
    assert str(bye.uri) == "sip:bob@10.0.0.2:5060"


def test_target_refresh_requests_carry_our_contact_and_body() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    sdp = b"v=0\r\n"
    reinvite = dialog.create_request("INVITE", sdp, "application/sdp")
    assert reinvite.headers.get("Contact") == CALLER_CONTACT
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    assert reinvite.body == sdp
    assert dialog.create_request("UPDATE").headers.get("Contact") == CALLER_CONTACT
    with pytest.raises(DialogError, match="content_type"):
        dialog.create_request("INFO", b"x")


def test_ack_for_2xx() -> None:
    request = invite()
    ok = answer(request)
    dialog = Dialog.from_uac(request, ok)
    ack = dialog.create_ack(ok, extra_headers=[("Authorization", "Digest x")])
    assert ack.method == "ACK" and ack.cseq == (10, "ACK")
    assert routes(ack) == [P1, P2]
    assert str(ack.uri) == "sip:bob@10.0.0.2:5060"
    assert ack.to.tag == "b-tag"
    assert ack.headers.get("Authorization") == "Digest x"
    assert dialog.local_cseq == 10  # the ACK takes no new number
    with pytest.raises(DialogError):
        dialog.create_ack(answer(request, 180))


def test_cancel_and_terminated_dialogs_are_refused() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    with pytest.raises(DialogError, match="CANCEL"):
        dialog.create_request("CANCEL")
    dialog.terminate()
    with pytest.raises(DialogError, match="terminated"):
        dialog.create_request("BYE")


# --------------------------------------------------------------------------- incoming


def in_dialog(method: str, cseq: int, *, contact: str | None = None) -> Request:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKin"),
            ("From", "<sip:bob@hub.example>;tag=b-tag"),
            ("To", "<sip:alice@branch.example>;tag=a-tag"),
            ("Call-ID", "dlg-call-1"),
            ("CSeq", f"{cseq} {method}"),
        ]
    )
    if contact is not None:
        headers.add("Contact", contact)
    return Request(method, SipUri.parse("sip:alice@10.0.0.1:5060"), headers)


def test_lower_cseq_is_rejected_with_500() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    assert dialog.receive_request(in_dialog("INFO", 5)) is None  # remote CSeq was empty
    assert dialog.receive_request(in_dialog("INFO", 6)) is None
    status, reason = dialog.receive_request(in_dialog("INFO", 4)) or (0, "")
    assert status == 500 and reason
    assert dialog.remote_cseq == 6
    # ACK and CANCEL carry their INVITE's number: never "out of order"
    assert dialog.receive_request(in_dialog("ACK", 1)) is None
    assert dialog.receive_request(in_dialog("CANCEL", 1)) is None
    assert dialog.remote_cseq == 6


def test_uas_dialog_checks_against_the_invite_cseq() -> None:
    request = invite()
    dialog = Dialog.from_uas(request, answer(request))
    lower = in_dialog("BYE", 9)
    assert dialog.receive_request(lower) == (500, "Server Internal Error")
    assert dialog.receive_request(in_dialog("BYE", 11)) is None


@given(st.lists(st.integers(min_value=0, max_value=2**31), min_size=1, max_size=30))
def test_cseq_rule_property(numbers: list[int]) -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    highest: int | None = None
    for number in numbers:
        verdict = dialog.receive_request(in_dialog("INFO", number))
        if highest is not None and number < highest:
            assert verdict is not None and verdict[0] == 500
        else:
            assert verdict is None
            highest = number
        assert dialog.remote_cseq == highest


def test_reinvite_refreshes_the_remote_target() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    reinvite = in_dialog("INVITE", 20, contact="<sip:bob@192.0.2.50:5080>")
    assert dialog.receive_request(reinvite) is None
    assert str(dialog.remote_target) == "sip:bob@10.0.0.2:5060"  # not before we accept it
    dialog.update_remote_target(reinvite)
    assert str(dialog.remote_target) == "sip:bob@192.0.2.50:5080"
    assert str(dialog.create_request("BYE").uri) == "sip:bob@192.0.2.50:5080"
    dialog.update_remote_target(in_dialog("UPDATE", 21))  # no Contact: unchanged
    assert str(dialog.remote_target) == "sip:bob@192.0.2.50:5080"


def test_2xx_to_our_reinvite_refreshes_the_remote_target() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    reinvite = dialog.create_request("INVITE")
    _with_via(reinvite)
    ok = make_response(reinvite, 200, contact="<sip:bob@192.0.2.60>")
    dialog.update_remote_target(ok)
    assert str(dialog.remote_target) == "sip:bob@192.0.2.60"
    assert dialog.create_ack(ok).cseq == (11, "ACK")
    assert [str(r) for r in dialog.route_set] == [P1, P2]  # a refresh keeps the route set


# --------------------------------------------------------------------------- DialogSet


def test_dialog_set_finds_dialogs_of_requests_and_responses() -> None:
    request = invite()
    uac = Dialog.from_uac(request, answer(request))
    dialogs = DialogSet()
    dialogs.add(uac)
    assert len(dialogs) == 1 and uac.dialog_id in dialogs
    assert dialogs.match_request(in_dialog("BYE", 1)) is uac
    bye = uac.create_request("BYE")
    _with_via(bye)
    assert dialogs.match_response(make_response(bye, 200)) is uac
    with pytest.raises(DialogError, match="already exists"):
        dialogs.add(uac)
    assert list(dialogs) == [uac]
    assert dialogs.remove(uac.dialog_id) is uac
    assert dialogs.match_request(in_dialog("BYE", 1)) is None
    assert dialogs.get(uac.dialog_id) is None


def test_dialog_set_ignores_requests_without_to_tag_or_with_foreign_tags() -> None:
    """Cross-tenant negative case: another tenant's call that reuses our Call-ID
    (same edge, different tags) never reaches our dialog."""
    request = invite()
    dialogs = DialogSet()
    dialogs.add(Dialog.from_uac(request, answer(request)))
    foreign = in_dialog("BYE", 2)
    foreign.headers.set("To", "<sip:carol@tenant-b.example>;tag=other-tenant")
    assert dialogs.match_request(foreign) is None
    out_of_dialog = in_dialog("INVITE", 1)
    out_of_dialog.headers.set("To", "<sip:alice@branch.example>")
    assert dialogs.match_request(out_of_dialog) is None


def test_forked_early_dialogs_are_distinct() -> None:
    request = invite()
    dialogs = DialogSet()
    dialogs.add(Dialog.from_uac(request, answer(request, 180, tag="fork-1")))
    dialogs.add(Dialog.from_uac(request, answer(request, 183, tag="fork-2")))
    assert len(dialogs) == 2
    assert {d.remote_tag for d in dialogs} == {"fork-1", "fork-2"}


# --------------------------------------------------------------------------- a whole call


def test_call_through_two_transaction_layers() -> None:
    """INVITE -> 180 -> 200 -> ACK, then the callee hangs up: dialogs on both sides."""
    wire: Wire = make_wire()
    caller_dialogs, callee_dialogs = DialogSet(), DialogSet()
    sent_invite = invite()
    sent_invite.headers.remove("Via")  # the layer adds its own

    def callee(wire: Wire, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived) and event.request.method == "INVITE":
            ringing = answer(event.request, 180)
            callee_dialogs.add(Dialog.from_uas(event.request, ringing))
            wire.uas.send_response(event.key, ringing, wire.now)
            ok = answer(event.request, 200)
            [early] = list(callee_dialogs)
            early.confirm(ok)
            wire.uas.send_response(event.key, ok, wire.now)
        elif isinstance(event, AckReceived):
            dialog = callee_dialogs.match_request(event.request)
            assert dialog is not None
            assert dialog.receive_request(event.request) is None
            bye = dialog.create_request("BYE")
            wire.uas.send_request(bye, UAC_ADDR, wire.now)
        elif isinstance(event, RequestReceived):
            raise AssertionError(f"unexpected {event.request.method}")

    def caller(wire: Wire, event: TransactionEvent) -> None:
        if isinstance(event, ResponseReceived) and event.response.cseq[1] == "INVITE":
            response = event.response
            dialog = caller_dialogs.match_response(response)
            if dialog is None:
                dialog = Dialog.from_uac(sent_invite, response)
                caller_dialogs.add(dialog)
            elif response.status >= 200:
                dialog.confirm(response)
            if response.status == 200:
                wire.uac.send_stateless(dialog.create_ack(response), UAS_ADDR)
        elif isinstance(event, RequestReceived) and event.request.method == "BYE":
            dialog = caller_dialogs.match_request(event.request)
            assert dialog is not None
            assert dialog.receive_request(event.request) is None
            wire.uac.send_response(event.key, make_response(event.request, 200), wire.now)
            dialog.terminate()

    wire.uas_tu, wire.uac_tu = callee, caller
    wire.uac.send_request(sent_invite, UAS_ADDR, 0.0)
    wire.run_until(40.0)

    [caller_dialog] = list(caller_dialogs)
    [callee_dialog] = list(callee_dialogs)
    assert caller_dialog.state is DialogState.TERMINATED
    assert callee_dialog.state is DialogState.CONFIRMED
    assert caller_dialog.dialog_id == ("dlg-call-1", "a-tag", "b-tag")
    assert callee_dialog.dialog_id == ("dlg-call-1", "b-tag", "a-tag")
    # the callee's BYE: its route set in order, the caller's Contact as Request-URI
    [bye] = [m for m in wire.wire_messages() if isinstance(m, Request) and m.method == "BYE"]
    assert routes(bye) == [P2, P1]
    assert str(bye.uri) == "sip:alice@10.0.0.1:5060"
    assert bye.cseq == (1, "BYE")
    bye_answers = [e for e in wire.uas_events if isinstance(e, ResponseReceived)]
    assert [e.response.status for e in bye_answers] == [200]
    assert wire.uac.transaction_count == 0 and wire.uas.transaction_count == 0


def test_uas_early_dialog_confirmed_by_our_2xx_keeps_its_route_set() -> None:
    request = invite()
    dialog = Dialog.from_uas(request, answer(request, 180))
    ok = make_response(request, 200, to_tag="b-tag", contact="<sip:bob@10.0.0.3>")
    dialog.confirm(ok)
    assert dialog.state is DialogState.CONFIRMED
    assert [str(r) for r in dialog.route_set] == [P2, P1]
    assert str(dialog.local_target) == "sip:bob@10.0.0.3"
    assert str(dialog.remote_target) == "sip:alice@10.0.0.1:5060"
