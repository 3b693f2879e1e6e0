"""Malformed and torture SIP on the wire: the right answer, and nothing crashes.

Every RFC 4475 message (tests/sip/test_rfc4475.py holds the expected outcome of each)
is sent as a UDP datagram to the feature server and to the edge; then both must still
serve a normal call.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NodeHandle
from tests.e2e.test_calls import assert_hears, carrier
from tests.sip.test_rfc4475 import DATA, EXPECTED

pytestmark = pytest.mark.e2e
PROBE_IP = "127.0.0.3"  # not the edge (127.0.0.1) nor the carrier (127.0.0.2)


def exchange(dest: tuple[str, int], data: bytes, wait: float = 1.0) -> list[bytes]:
    """Send one datagram; collect what comes back until ``wait`` passes without a reply
    or a final response arrives.

    Responses go where RFC 3261 18.2.2 says: the source address (``received``) and the
    port of the top Via's sent-by (5060 when absent), so the test socket binds that port
    on its own loopback address, and the torture messages are sent as they are."""
    via = re.search(rb"^(?:Via|v)\s*:\s*SIP\s*/\s*2\.0\s*/\s*(\w+)\s+[^\s;:,]+(?::(\d+))?",
                    data, re.I | re.M)
    if via is not None and via.group(2):
        port = int(via.group(2))
    else:
        port = 5061 if via is not None and via.group(1).upper() == b"TLS" else 5060
    # A reply belongs to this message if it carries its branch (RFC 3261 17.2.3 also makes
    # a message with another's branch, sent-by and method a retransmission of it:
    # rfc4475's novelsc and unkscm share theirs, and unkscm gets novelsc's answer again).
    branch = re.search(rb"branch=([^;\s,]+)", data) or re.search(
        rb"^(?:Call-ID|i)\s*:\s*(\S+)", data, re.I | re.M)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((PROBE_IP, port))
        sock.settimeout(wait)
        sock.sendto(data, dest)
        got: list[bytes] = []
        while True:
            try:
                reply, _ = sock.recvfrom(65535)
            except TimeoutError:
                return got
            if branch is not None and branch.group(1) not in reply:
                continue  # a retransmission answering an earlier message
            got.append(reply)
            if not reply.startswith(b"SIP/2.0 1"):
                return got


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message_at_the_feature_server(node: NodeHandle, name: str) -> None:
    _, (kind, status), _ = EXPECTED[name]
    data = (DATA / f"{name}.dat").read_bytes()
    replies = exchange(("127.0.0.1", node.fs_port), data, wait=0.5)
    finals = [status_of(r) for r in replies if not r.startswith(b"SIP/2.0 1")]
    if kind == "drop" or data.startswith(b"SIP/2.0"):
        assert replies == [], "responses and unparseable responses are never answered"
    elif kind in ("parse", "check"):
        # answered with the status the RFC asks for, or (when not even Via/From/To/
        # Call-ID/CSeq can be read) dropped
        assert finals in ([status], []), replies
        if name not in ("invalid/test", "invalid/badinv01", "invalid/quotbal",
                        "invalid/multi01", "invalid/mcl01", "invalid/scalar02",
                        "invalid/clerr", "invalid/ncl", "invalid/lwsruri",
                        "invalid/ltgtruri", "invalid/lwsstart", "invalid/trws",
                        "invalid/badaspec", "invalid/baddn"):
            assert finals == [status], replies
    else:
        # well formed: a normal answer under the node's policy (not "malformed")
        assert all(s != 400 for s in finals), replies
    # the node still answers
    ok = exchange(("127.0.0.1", node.fs_port),
                  OPTIONS.replace(b"{branch}", name.replace("/", "-").encode()))
    assert ok and status_of(ok[-1]) == 200


OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bK-o{branch}\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
    b"Call-ID: probe-{branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def test_torture_at_the_edge_then_a_call_still_works(node: NodeHandle, phones: Any,
                                                      tones: dict[int, Path]) -> None:
    for name in sorted(EXPECTED):
        exchange(("127.0.0.1", node.sip_port), (DATA / f"{name}.dat").read_bytes(), wait=0.05)
    # garbage of every size, too
    for size in (1, 2, 100, 1400, 60000):
        exchange(("127.0.0.1", node.sip_port), b"\xff" * size, wait=0.02)
        exchange(("127.0.0.1", node.fs_port), b"INVITE " + b"\x00" * size, wait=0.02)
    alice = phones(node.account("1001"), tone=tones[1000])
    pstn = carrier(node, phones, tones[440])
    call = pstn.dial(f"sip:+862088880001@127.0.0.1:{node.sip_port}")
    call.wait_established()
    alice.wait_for_event("CALL_ESTABLISHED")
    assert_hears(alice, 440, 1000)
    pstn.hangup()
    call.wait_closed()
