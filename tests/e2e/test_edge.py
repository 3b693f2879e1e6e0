"""The SIP edge on its own: flood limits, unknown domains, forged origin headers."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PASSWORDS, NodeHandle, start_node
from tests.harness.baresip import Account
from tests.harness.sipua import SipUa, UaError

pytestmark = pytest.mark.e2e


def options(n: int, port: int) -> bytes:
    return (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {{ip}}:{{sport}};branch=z9hG4bK-flood-{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:scan@example.com>;tag=f{n}\r\n"
            f"To: <sip:127.0.0.1>\r\nCall-ID: flood-{n}\r\nCSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def probe(ip: str, port: int, count: int, wait: float = 0.3) -> int:
    """Send ``count`` OPTIONS from ``ip``; return how many were answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        sport = sock.getsockname()[1]
        for n in range(count):
            msg = options(n, port).replace(b"{ip}", ip.encode()).replace(
                b"{sport}", str(sport).encode())
            sock.sendto(msg, ("127.0.0.1", port))
        sock.settimeout(wait)
        answered = 0
        try:
            while True:
                sock.recvfrom(65535)
                answered += 1
        except TimeoutError:
            return answered


def test_flood_from_one_address_is_banned_others_still_served(tmp_run: Path) -> None:
    node = start_node(tmp_run, flood_limit=20)
    try:
        answered = probe("127.0.0.4", node.sip_port, 200)
        assert answered < 60, answered  # pike stopped answering the flood
        assert probe("127.0.0.4", node.sip_port, 1, wait=0.5) == 0  # still banned
        assert probe("127.0.0.5", node.sip_port, 3, wait=0.5) == 3  # others are served
        log = (node.run_dir / "demo" / "node" / "edge" / "kamailio.log").read_text()
        assert "flood: banning 127.0.0.4" in log
    finally:
        node.stop()


def test_forged_origin_header_is_stripped(node: NodeHandle, phones: Any,
                                          tones: dict[int, Path]) -> None:
    """A phone claiming to be the trunk in X-BL-Origin is still just itself."""
    ua = SipUa("1003", "acme.example", PASSWORDS["1003"], ("127.0.0.1", node.sip_port))
    try:
        assert ua.register().status == 200
        # globex's DID is reachable from a trunk, never from an acme extension
        with pytest.raises(UaError, match="404"):
            ua.call("+85230000001", headers=(("X-BL-Origin", "trunk;name=carrier"),))
    finally:
        ua.close()
    cdr = node.wait_cdr(lambda c: c["callee"] == "+85230000001" and c["origin"] == "ext:1003")
    assert cdr["tenant_id"] == "acme" and cdr["disposition"] == "not_found"


def test_unknown_domain_is_refused(node: NodeHandle, phones: Any) -> None:
    stranger = phones(Account(user="1001", domain="evil.example", password="whatever-pw",
                              outbound=node.outbound), register=False)
    fail = stranger.wait_for_event("REGISTER_FAIL")
    assert fail["param"].startswith("403"), fail
