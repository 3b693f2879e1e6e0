"""The link's wire format: frames and messages, fed whole, byte by byte and at random."""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.link.protocol import (
    MAX_FRAME,
    Ack,
    EncodeError,
    Enrol,
    Enrolled,
    FrameDecoder,
    Heartbeat,
    Hello,
    Message,
    ProtocolError,
    PushPlan,
    Refused,
    Sender,
    decode_message,
    encode,
)
from tests.test_purity import check_source

REPO = Path(__file__).resolve().parents[2]
CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

NODE_MESSAGES: list[Message] = [
    Enrol(claim="ABCD-EFGH-JKLM", csr=CSR),
    Hello(node_id="branch-1", applied_version=0),
    Hello(node_id="branch-1", applied_version=41),
    Ack(version=3, ok=True),
    Ack(version=3, ok=False, error="tenants[0].domain: not a domain"),
    Heartbeat(status={"calls": 2, "tenants": {"acme": {"calls": 2}}}),
]
CONTROLLER_MESSAGES: list[Message] = [
    Enrolled(node_id="branch-1", cert=CERT, ca=CERT),
    Refused(reason="unknown, used or expired claim code"),
    PushPlan(version=7, plan={"version": 7, "tenants": [], "note": "ünïcode"}),
]


def frame(doc: Any) -> bytes:
    body = json.dumps(doc).encode()
    return struct.pack(">I", len(body)) + body


def test_protocol_module_is_pure() -> None:
    path = REPO / "appliance" / "link" / "protocol.py"
    assert check_source(path.read_text(encoding="utf-8"), "appliance.link.protocol") == []


@pytest.mark.parametrize("message", NODE_MESSAGES + CONTROLLER_MESSAGES,
                         ids=lambda m: type(m).__name__)
def test_round_trip_whole_and_byte_by_byte(message: Message) -> None:
    sender: Sender = "node" if message in NODE_MESSAGES else "controller"
    data = encode(message)
    assert FrameDecoder(sender).feed(data) == [message]
    decoder = FrameDecoder(sender)
    got: list[Message] = []
    for i in range(len(data)):
        got += decoder.feed(data[i:i + 1])
        assert decoder.buffered == (0 if got else i + 1)
    assert got == [message]


def test_several_frames_in_one_chunk_and_split_across_chunks() -> None:
    data = b"".join(encode(m) for m in NODE_MESSAGES)
    decoder = FrameDecoder("node")
    cut = len(data) // 2 + 3
    assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == NODE_MESSAGES


def test_truncated_frame_waits_for_the_rest() -> None:
    data = encode(Hello(node_id="branch-1", applied_version=1))
    decoder = FrameDecoder("node")
    assert decoder.feed(data[:2]) == []
    assert decoder.feed(data[2:-1]) == []
    assert decoder.buffered == len(data) - 1
    assert decoder.feed(data[-1:]) == [Hello(node_id="branch-1", applied_version=1)]


def test_oversized_frame_refused_from_its_header() -> None:
    decoder = FrameDecoder("node")
    with pytest.raises(ProtocolError, match="over 16777216"):
        decoder.feed(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(ProtocolError):  # the decoder stays failed
        decoder.feed(encode(Heartbeat(status={})))


def test_frame_of_exactly_the_maximum_is_accepted() -> None:
    pad = "x" * (MAX_FRAME - len(json.dumps({"type": "heartbeat", "status": {"p": ""}})))
    data = frame({"type": "heartbeat", "status": {"p": pad}})
    assert len(data) == 4 + MAX_FRAME
    [message] = FrameDecoder("node").feed(data)
    assert isinstance(message, Heartbeat)


def test_encode_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(EncodeError, match="not JSON"):
        encode(Heartbeat(status={"load": float("nan")}))
    with pytest.raises(EncodeError, match="over"):
        encode(PushPlan(version=1, plan={"p": "x" * MAX_FRAME}))


def test_claim_code_and_keys_never_in_a_repr() -> None:
    assert "ABCD" not in repr(Enrol(claim="ABCD-EFGH", csr=CSR))
    assert "MIIB" not in repr(Enrolled(node_id="n", cert=CERT, ca=CERT))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": 3}', "no type"),
        (b'{"node_id": "a"}', "no type"),
        (b'{"type": "hello", "type": "ack"}', "duplicate"),
        (b'{"type": "heartbeat", "status": {"x": NaN}}', "not a number"),
        (b'{"type": "heartbeat", "status": {"x": Infinity}}', "not a number"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
def test_malformed_frames(body: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        FrameDecoder("node").feed(struct.pack(">I", len(body)) + body)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"type": "bogus"}, "unknown message type 'bogus'"),
        ({"type": "plan", "version": 1, "plan": {}}, "a node may not send 'plan'"),
        ({"type": "hello", "node_id": "branch-1"}, "missing applied_version"),
        ({"type": "hello", "node_id": "Branch 1", "applied_version": 0}, "node_id"),
        ({"type": "hello", "node_id": "branch-1", "applied_version": -1}, "applied_version"),
        ({"type": "hello", "node_id": "branch-1", "applied_version": True}, "applied_version"),
        ({"type": "hello", "node_id": "branch-1", "applied_version": 1.0}, "applied_version"),
        ({"type": "hello", "node_id": "branch-1", "applied_version": 2**63}, "applied_version"),
        ({"type": "hello", "node_id": "branch-1", "applied_version": 0, "x": 1},
         "unknown field 'x'"),
        ({"type": "ack", "version": 0, "ok": True}, "version"),
        ({"type": "ack", "version": 1, "ok": "yes"}, "ok must be"),
        ({"type": "ack", "version": 1, "ok": True, "error": "no"}, "error given with ok"),
        ({"type": "ack", "version": 1, "ok": False, "error": ""}, "error must be"),
        ({"type": "ack", "version": 1, "ok": False, "error": "x" * 5000}, "error must be"),
        ({"type": "heartbeat", "status": []}, "status must be an object"),
        ({"type": "heartbeat"}, "missing status"),
        ({"type": "enrol", "claim": "", "csr": CSR}, "claim"),
        ({"type": "enrol", "claim": "A" * 129, "csr": CSR}, "claim"),
        ({"type": "enrol", "claim": "ABC", "csr": CERT}, "csr must be a PEM"),
        ({"type": "enrol", "claim": "ABC", "csr": 5}, "csr must be a PEM"),
    ],
)
def test_bad_node_messages(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_message(doc, "node")


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"type": "hello", "node_id": "a", "applied_version": 0}, "controller may not send"),
        ({"type": "plan", "version": 1, "plan": []}, "plan must be an object"),
        ({"type": "plan", "version": 0, "plan": {}}, "version"),
        ({"type": "refused"}, "missing reason"),
        ({"type": "enrolled", "node_id": "a", "cert": CSR, "ca": CERT}, "cert must be"),
        ({"type": "enrolled", "node_id": "a", "cert": CERT}, "missing ca"),
    ],
)
def test_bad_controller_messages(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_message(doc, "controller")


def test_ack_error_may_be_null() -> None:
    assert decode_message({"type": "ack", "version": 2, "ok": True, "error": None},
                          "node") == Ack(version=2, ok=True)


# ----------------------------------------------------------------------------- fuzzing
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["enrol", "hello", "ack", "heartbeat", "enrolled", "refused",
                              "plan", "x"])},
    optional={k: json_values | st.just(CSR) | st.just(CERT) | st.just("branch-1")
              for k in ("claim", "csr", "node_id", "applied_version", "version", "ok",
                        "error", "status", "cert", "ca", "reason", "plan")},
)


@settings(max_examples=300, deadline=None)
@given(doc=message_like, sender=st.sampled_from(["node", "controller"]))
def test_any_document_decodes_or_raises_protocol_error(doc: dict[str, Any],
                                                       sender: str) -> None:
    decoder = FrameDecoder("node" if sender == "node" else "controller")
    try:
        messages = decoder.feed(frame(doc))
    except ProtocolError:
        return
    assert len(messages) == 1
    assert FrameDecoder(decoder.sender).feed(encode(messages[0])) == messages


framed_bodies = st.lists(st.binary(max_size=64), max_size=4).map(
    lambda bodies: b"".join(struct.pack(">I", len(b)) + b for b in bodies))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=256) | framed_bodies, cuts=st.lists(st.integers(0, 256)))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder("node")
    edges = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for start, end in itertools.pairwise(edges):
        chunk = data[start:end]
        try:
            decoder.feed(chunk)
        except ProtocolError:
            return
