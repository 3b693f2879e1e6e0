"""The node link end to end: real aioquic on loopback UDP, linkd + LinkClient."""

from __future__ import annotations

import asyncio
import json
import stat
import struct
from pathlib import Path
from typing import Any

import pytest
from aioquic import tls
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.link.client import EnrolmentRefused, LinkClient, LinkLost
from appliance.link.protocol import CloseCode, Heartbeat, Hello, LinkError, Refused, encode
from controller import linkd
from controller.pki import CertificateAuthority, fingerprint
from tests.link.harness import Node, Site, plan_doc, raw_link, relay, wait_until


def acked(site: Site, node_id: str, version: int, ok: bool = True) -> bool:
    return any(a.version == version and a.ok is ok for a in site.backend.acks_of(node_id))


async def test_enrol_then_plan_pushed_on_connect_and_applied(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        node = await site.enrolled_node("branch-1")
        state = tmp_path / "branch-1"
        assert node.client.enrolled and node.client.node_id == "branch-1"
        assert stat.S_IMODE((state / "node.key").stat().st_mode) == 0o600
        assert not (state / "node.key.new").exists()
        cert = x509.load_pem_x509_certificate((state / "node.crt").read_bytes())
        assert site.ca.verify_node_cert(cert) == "branch-1"
        assert site.backend.fingerprints["branch-1"] == fingerprint(cert)
        assert (state / "ca.crt").read_bytes() == site.ca.cert_pem

        site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
        node.start()
        await wait_until(lambda: acked(site, "branch-1", 1), "ack of plan 1")
        assert node.versions == [1]
        assert node.applied[0][1].node_id == "branch-1"
        assert site.server.connected == {"branch-1"}
        assert node.client.connected.is_set()
        assert LinkClient.last_good_plan(state) == (1, plan_doc("branch-1", 1))
        assert node.client.link_state()["connected"] is True


async def test_reused_and_unknown_claim_codes_are_refused(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        code = site.claim("branch-1")
        first = site.node("first")
        assert await first.client.enrol(code, site.ca.cert_pem) == "branch-1"
        again = site.node("again")
        with pytest.raises(EnrolmentRefused, match="unknown, used or expired claim code"):
            await again.client.enrol(code, site.ca.cert_pem)
        with pytest.raises(EnrolmentRefused, match="claim code"):
            await again.client.enrol("NOT-A-CODE", site.ca.cert_pem)
        assert not again.client.enrolled
        assert sorted(p.name for p in (tmp_path / "again").iterdir()) == []
        # the first enrolment stands
        assert site.backend.fingerprints["branch-1"] == fingerprint(
            (tmp_path / "first" / "node.crt").read_bytes())


async def test_enrolment_checks_the_controller_certificate(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        other = CertificateAuthority.load_or_create(tmp_path / "other-ca")
        node = site.node("branch-1")
        code = site.claim("branch-1")
        with pytest.raises(LinkLost, match="unable to get local issuer certificate"):
            await node.client.enrol(code, other.cert_pem)  # not the CA linkd's cert is from
        assert not node.client.enrolled
        wrong_name = Node(site.server.port, tmp_path / "by-name", host="localhost")
        with pytest.raises(LinkLost, match="hostname 'localhost' doesn't match"):
            await wrong_name.client.enrol(code, site.ca.cert_pem)  # cert is for 127.0.0.1
        assert "branch-1" not in site.backend.fingerprints  # the claim was never redeemed


async def test_revision_change_pushes_the_new_version(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        node = await site.enrolled_node("branch-1")
        site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
        node.start()
        await wait_until(lambda: acked(site, "branch-1", 1), "ack of plan 1")
        site.backend.set_plan("branch-1", plan_doc("branch-1", 2, caller_id="+862088889999"))
        await wait_until(lambda: acked(site, "branch-1", 2), "ack of plan 2")
        assert node.versions == [1, 2]
        assert node.applied[-1][1].tenants[0].caller_id == "+862088889999"
        assert node.client.applied_version == 2
        assert LinkClient.last_good_plan(tmp_path / "branch-1") is not None
        assert LinkClient.last_good_plan(tmp_path / "branch-1")[0] == 2  # type: ignore[index]


async def test_refused_plan_is_nacked_and_the_old_one_kept(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        node = await site.enrolled_node("branch-1")
        site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
        node.start()
        await wait_until(lambda: acked(site, "branch-1", 1), "ack of plan 1")
        site.backend.set_plan("branch-1", plan_doc("branch-1", 2, domain="Not A Domain"))
        await wait_until(lambda: acked(site, "branch-1", 2, ok=False), "nack of plan 2")
        [nack] = [a for a in site.backend.acks_of("branch-1") if a.version == 2]
        assert nack.error is not None and nack.error.startswith("tenants[0].domain:")
        assert LinkClient.last_good_plan(tmp_path / "branch-1") == (1, plan_doc("branch-1", 1))
        assert node.client.applied_version == 1
        assert node.client.connected.is_set()  # a refused plan does not drop the link
        # a fixed plan is taken again
        site.backend.set_plan("branch-1", plan_doc("branch-1", 3))
        await wait_until(lambda: acked(site, "branch-1", 3), "ack of plan 3")


async def test_heartbeats_carry_the_status(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        node = await site.enrolled_node("branch-1")
        node.status_doc = {"calls": 3, "tenants": {"acme": {"calls": 3}}}
        node.start()
        await wait_until(lambda: len(site.backend.statuses_of("branch-1")) >= 3,
                         "three heartbeats")
        assert site.backend.statuses_of("branch-1")[-1] == node.status_doc


async def test_reconnect_does_not_resend_the_applied_plan(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        node = await site.enrolled_node("branch-1")
        site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
        node.start()
        await wait_until(lambda: acked(site, "branch-1", 1), "ack of plan 1")
        await node.stop()
        await wait_until(lambda: "branch-1" in site.backend.disconnects, "disconnected")
        again = site.node("branch-1")  # same state dir: a reboot
        assert again.client.applied_version == 1
        again.start()
        await wait_until(lambda: len(site.backend.acks_of("branch-1")) >= 2,
                         "the hello's applied version recorded")
        assert again.versions == []  # plan 1 was not sent again
        assert [(a.version, a.ok) for a in site.backend.acks_of("branch-1")] == \
            [(1, True), (1, True)]


async def test_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        other = CertificateAuthority.load_or_create(tmp_path / "other-ca")
        cert, key = site.credentials("branch-1", ca=other)
        site.backend.fingerprints["branch-1"] = fingerprint(cert)  # even if the store says so
        site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
        async with raw_link(site, cert=cert, key=key) as link:
            link.send_bytes(encode(Hello(node_id="branch-1", applied_version=0)))
            closed = await asyncio.wait_for(link.terminated, 5)
        assert closed.error_code == CloseCode.UNAUTHORISED
        assert "not issued by this controller's CA" in closed.reason_phrase
        assert link.messages() == []  # no plan
        assert site.server.connected == frozenset()


async def test_foreign_certificate_in_a_node_state_dir(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        node = await site.enrolled_node("branch-1")
        other = CertificateAuthority.load_or_create(tmp_path / "other-ca")
        cert, key = site.credentials("branch-1", ca=other)  # swap in a foreign identity
        state = tmp_path / "branch-1"
        (state / "node.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (state / "node.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
        node.start()
        await wait_until(lambda: "not issued" in (node.client.link_state()["last_error"] or ""),
                         "the refusal reason at the node")
        assert node.versions == [] and site.backend.acks == []


async def test_reenrolment_revokes_the_old_certificate(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        old = await site.enrolled_node("branch-1", "old-box")
        site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
        old.start()
        await wait_until(lambda: acked(site, "branch-1", 1), "ack of plan 1")
        new = await site.enrolled_node("branch-1", "new-box")  # the box was replaced
        await wait_until(lambda: not old.client.connected.is_set(), "old box cut off")
        await wait_until(lambda: "revoked" in (old.client.link_state()["last_error"] or ""),
                         "the revocation reason at the old box")
        new.start()
        await wait_until(lambda: new.versions == [1], "plan 1 on the new box")
        site.backend.set_plan("branch-1", plan_doc("branch-1", 2))
        await wait_until(lambda: new.versions == [1, 2], "plan 2 on the new box")
        # the old box keeps retrying and keeps being refused, never gets a plan
        await wait_until(lambda: "current certificate" in
                         (old.client.link_state()["last_error"] or ""), "refused at connect")
        assert old.versions == [1]
        assert site.server.connected == {"branch-1"}


async def test_hello_for_another_node_is_refused(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        cert, key = site.credentials("branch-1")
        site.backend.fingerprints["branch-1"] = fingerprint(cert)
        site.backend.set_plan("branch-2", plan_doc("branch-2", 1))
        async with raw_link(site, cert=cert, key=key) as link:
            link.send_bytes(encode(Hello(node_id="branch-2", applied_version=0)))
            closed = await asyncio.wait_for(link.terminated, 5)
        assert closed.error_code == CloseCode.UNAUTHORISED
        assert "certificate is branch-1's" in closed.reason_phrase
        assert link.messages() == []  # branch-2's plan never left


async def test_without_a_client_certificate_only_enrol_is_allowed(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
        async with raw_link(site) as link:
            link.send_bytes(encode(Hello(node_id="branch-1", applied_version=0)))
            await wait_until(lambda: bool(link.received), "the refusal")
            [answer] = link.messages()
        assert isinstance(answer, Refused)
        assert "needs a client certificate" in answer.reason
        async with raw_link(site) as link:
            link.send_bytes(encode(Heartbeat(status={})))
            await wait_until(lambda: bool(link.received), "the refusal")
            assert isinstance(link.messages()[0], Refused)
        assert site.server.connected == frozenset()
        assert site.backend.acks == [] and site.backend.statuses == {}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (struct.pack(">I", 5) + b"hello", "not JSON"),
        (struct.pack(">I", 1 << 30), "over 16777216"),
        (encode(Hello(node_id="branch-1", applied_version=0))[:-1]
         + b"x" + struct.pack(">I", 2) + b"{}", "not JSON"),
        (struct.pack(">I", 2) + json.dumps({}).encode(), "no type"),
    ],
)
async def test_malformed_frames_close_the_link_with_the_reason(
        tmp_path: Path, data: bytes, reason: str) -> None:
    async with Site(tmp_path) as site:
        cert, key = site.credentials("branch-1")
        site.backend.fingerprints["branch-1"] = fingerprint(cert)
        async with raw_link(site, cert=cert, key=key) as link:
            link.send_bytes(data)
            closed = await asyncio.wait_for(link.terminated, 5)
        assert closed.error_code == CloseCode.PROTOCOL
        assert reason in closed.reason_phrase


async def test_a_silent_node_is_disconnected(tmp_path: Path) -> None:
    async with Site(tmp_path, heartbeat=0.2) as site:
        cert, key = site.credentials("branch-1")
        site.backend.fingerprints["branch-1"] = fingerprint(cert)
        async with raw_link(site, cert=cert, key=key) as link:
            link.send_bytes(encode(Hello(node_id="branch-1", applied_version=0)))
            await wait_until(lambda: site.server.connected == {"branch-1"}, "hello taken")
            closed = await asyncio.wait_for(link.terminated, 5)  # and no heartbeat sent
        assert closed.error_code == CloseCode.TIMEOUT
        assert "nothing heard for 0.6 s" in closed.reason_phrase
        await wait_until(lambda: site.backend.disconnects == ["branch-1"], "disconnected()")
        assert site.server.connected == frozenset()


async def test_node_reconnects_after_the_controller_restarts(tmp_path: Path) -> None:
    async with Site(tmp_path) as site:
        node = await site.enrolled_node("branch-1")
        site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
        node.start()
        await wait_until(lambda: acked(site, "branch-1", 1), "ack of plan 1")
        await site.restart()
        assert "branch-1" in site.backend.disconnects
        await wait_until(lambda: site.server.connected == {"branch-1"}, "reconnected")
        assert node.client.link_state()["last_error"] in (None, "controller shutting down")
        site.backend.set_plan("branch-1", plan_doc("branch-1", 2))
        await wait_until(lambda: acked(site, "branch-1", 2), "ack of plan 2 after restart")
        assert node.versions == [1, 2]


async def test_a_cut_link_is_noticed_on_both_sides_and_heals(tmp_path: Path) -> None:
    async with Site(tmp_path, heartbeat=0.2) as site:
        node = await site.enrolled_node("branch-1")
        async with relay(site.server.port) as cut:
            behind = Node(cut.port, tmp_path / "branch-1", idle_timeout=1.0)
            site.nodes.append(behind)
            site.backend.set_plan("branch-1", plan_doc("branch-1", 1))
            behind.start()
            await wait_until(lambda: acked(site, "branch-1", 1), "ack of plan 1")
            cut.cut = True
            await wait_until(lambda: "branch-1" in site.backend.disconnects,
                             "linkd noticing the silence", timeout=2.0)
            await wait_until(lambda: not behind.client.connected.is_set(),
                             "the node noticing the dead link", timeout=2.5)
            assert "Idle timeout" in (behind.client.link_state()["last_error"] or "")
            cut.cut = False
            await wait_until(lambda: site.server.connected == {"branch-1"}, "link healed",
                             timeout=8.0)
            site.backend.set_plan("branch-1", plan_doc("branch-1", 2))
            await wait_until(lambda: acked(site, "branch-1", 2), "plan 2 after healing")
            await behind.stop()
        assert node.versions == []


def test_last_good_plan_is_none_for_a_missing_or_bad_file(tmp_path: Path) -> None:
    assert LinkClient.last_good_plan(tmp_path) is None
    (tmp_path / "plan.json").write_text('{"version": 1, "plan":', encoding="utf-8")
    assert LinkClient.last_good_plan(tmp_path) is None
    (tmp_path / "plan.json").write_text('{"version": 0, "plan": {}}', encoding="utf-8")
    assert LinkClient.last_good_plan(tmp_path) is None
    (tmp_path / "plan.json").write_text('{"version": 4, "plan": {"a": 1}}', encoding="utf-8")
    assert LinkClient.last_good_plan(tmp_path) == (4, {"a": 1})


async def test_run_needs_an_enrolment(tmp_path: Path) -> None:
    async def apply(version: int, plan: dict[str, Any]) -> None:
        raise AssertionError("no plan without a link")

    client = LinkClient(("127.0.0.1", 1), tmp_path, apply, dict)
    assert not client.enrolled and client.node_id is None
    with pytest.raises(LinkError, match="enrol first"):
        await client.run()


def test_aioquic_still_has_what_linkd_relies_on(monkeypatch: pytest.MonkeyPatch) -> None:
    linkd.check_aioquic_supports_mtls()

    class Changed(tls.Context):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            del self._request_client_certificate

    monkeypatch.setattr(tls, "Context", Changed)  # linkd looks it up at each call
    with pytest.raises(RuntimeError, match="_request_client_certificate"):
        linkd.check_aioquic_supports_mtls()


async def test_a_handshake_done_before_anyone_waits_is_not_missed() -> None:
    """aioquic's wait_connected() only records a completed handshake for a waiter that
    is already there; on a fast loopback the handshake can finish first. The client's
    own `settled` event must see it whatever the order (the demo node once waited
    16 s for this)."""
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.events import HandshakeCompleted

    from appliance.link.client import _LinkProtocol

    proto = _LinkProtocol(QuicConnection(configuration=QuicConfiguration(is_client=True)))
    proto.quic_event_received(HandshakeCompleted(alpn_protocol="branchline-link/1",
                                                 early_data_accepted=False,
                                                 session_resumed=False))
    await asyncio.wait_for(proto.settled.wait(), 1)
    assert proto.close_reason is None
