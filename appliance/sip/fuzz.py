"""Fuzz entry point for the SIP message layer (atheris-compatible, no atheris import).

Run with atheris installed::

    python -c "import atheris, sys; from appliance.sip.fuzz import test_one_input; \\
               atheris.Setup(sys.argv, test_one_input); atheris.Fuzz()" corpus/

The invariant checked is the one of ``tests/sip/test_fuzz.py``: every parser and
helper fed peer bytes either returns or raises :class:`SipParseError` (or
:class:`SdpError` for SDP), never anything else, and whatever parses serializes
and parses again.
"""

from __future__ import annotations

from appliance.sip.errors import SipParseError
from appliance.sip.message import (
    Request,
    StreamFramer,
    check_request,
    error_response_for,
    make_response,
    parse_message,
    rejection_headers,
)
from appliance.sip.sdp import SdpError, SessionDescription, negotiate

__all__ = ["test_one_input"]


def _exercise_message(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as err:
        reply = error_response_for(data, err)
        assert reply is None or reply.startswith(f"SIP/2.0 {err.status} ".encode())
        return
    wire = message.to_bytes()
    again = parse_message(wire)
    assert type(again) is type(message)
    if isinstance(message, Request):
        result = check_request(message)
        if result is not None:
            headers = rejection_headers(message, result[0])
            make_response(message, result[0], result[1], to_tag="f", headers=headers).to_bytes()
        else:
            make_response(message, 200, to_tag="f").to_bytes()


def _exercise_framer(data: bytes) -> None:
    framer = StreamFramer(max_header_bytes=4096, max_body_bytes=4096)
    try:
        for index in range(0, len(data), 7):
            for message in framer.feed(data[index : index + 7]):
                try:
                    parse_message(message)
                except SipParseError:
                    pass
    except SipParseError:
        pass


def _exercise_sdp(data: bytes) -> None:
    try:
        offer = SessionDescription.parse(data)
    except SdpError:
        return
    offer.to_bytes()
    try:
        negotiate(offer, local_ip="192.0.2.1", local_port=4000, session_id=1, version=1)
    except SdpError:
        pass


def test_one_input(data: bytes) -> None:
    """Feed ``data`` to every peer-facing parser; raise only on an invariant violation."""
    _exercise_message(data)
    _exercise_framer(data)
    _exercise_sdp(data)
