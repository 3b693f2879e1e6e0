"""The harness proved against real peers, without any Branchline code.

- two baresip phones call each other directly, each sending its own tone: each side's
  recording carries the other side's tone;
- DTMF, hold/resume and blind transfer between baresip phones;
- registration against a SIPp registrar;
- a SIPp UAC calls a SIPp UAS;
- the process, port and audio helpers themselves.
"""

from __future__ import annotations

import math
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.harness.audio import (
    dominant_tone_check,
    goertzel_power,
    make_tone_wav,
    read_wav,
    rms,
    wav_seconds,
    write_wav,
)
from tests.harness.baresip import Account, BaresipError, BaresipPhone
from tests.harness.procs import (
    ManagedProcess,
    ProcessError,
    free_port_pair,
    free_port_range,
    free_udp_port,
    port_bound,
    process_group_pids,
)
from tests.harness.sipp import UAC_INVITE, UAS_ANSWER, Sipp, recv, scenario, send

TALK_SECONDS = 3.0
SILENCE_RMS = 300.0  # int16 scale; the tones are sent at 0.3 full scale (RMS ~ 6950)


def _phone(
    tmp: Path, user: str, freq: float, host: str = "127.0.0.1", **kw: object
) -> BaresipPhone:
    port = free_port_pair(host)
    tone = make_tone_wav(tmp / f"tone-{user}-{freq:g}.wav", freq, 60.0)
    account = Account(user, f"{host}:{port}", **kw)  # type: ignore[arg-type]
    return BaresipPhone(tmp / user, account, listen_host=host, sip_port=port, tone_wav=tone)


# --------------------------------------------------------------------------- baresip
@pytest.mark.e2e
def test_baresip_two_way_audio(tmp_run: Path) -> None:
    alice = _phone(tmp_run, "alice", 440.0)
    bob = _phone(tmp_run, "bob", 1000.0)
    with alice, bob:
        out = alice.dial(bob.contact_uri)
        out.wait_established(10)
        inc = bob.wait_incoming(5)
        inc.wait_established(5)
        assert inc.id == out.id  # the SIP Call-ID, as both ends see it

        # The talk time itself: until both received recordings hold TALK_SECONDS.
        bob.wait_recording(TALK_SECONDS, "dec", timeout=15)
        alice.wait_recording(TALK_SECONDS, "dec", timeout=15)

        alice.hangup()
        closed_a = out.wait_closed(5)
        closed_b = inc.wait_closed(5)
        assert "reset by user" in str(closed_a.get("param", ""))
        assert "reset by peer" in str(closed_b.get("param", ""))

    for phone, own, other in ((alice, 440.0, 1000.0), (bob, 1000.0, 440.0)):
        [dec] = phone.recordings("dec")
        [enc] = phone.recordings("enc")
        rate, received = read_wav(dec)
        assert rate == 8000
        assert len(received) / rate >= TALK_SECONDS
        level = rms(received[rate // 2 :])
        assert level > SILENCE_RMS, f"{phone.name} received silence (RMS {level:.0f})"
        ratio = dominant_tone_check((rate, received), other, own, skip_seconds=0.5)
        assert ratio > 10, f"{phone.name}: {other} Hz / {own} Hz power ratio only {ratio:.1f}"
        sent_ratio = dominant_tone_check(enc, own, other, skip_seconds=0.5)
        assert sent_ratio > 10, f"{phone.name} did not send its own tone ({sent_ratio:.1f})"


@pytest.mark.e2e
def test_baresip_dtmf_hold_resume_transfer(tmp_run: Path) -> None:
    alice = _phone(tmp_run, "alice", 440.0)
    bob = _phone(tmp_run, "bob", 1000.0)
    carol = _phone(tmp_run, "carol", 700.0, answermode="manual")
    with alice, bob, carol:
        out = alice.dial(bob.contact_uri)
        out.wait_established(10)
        inc = bob.wait_incoming(5)
        bob.wait_for_event("CALL_RTPESTAB", 5, id=inc.id)

        # RFC 4733 digits, reported one by one on the receiving side.
        alice.send_dtmf("12#")
        digits = [
            str(bob.wait_for_event("CALL_DTMF_START", 5, id=inc.id).get("param")) for _ in range(3)
        ]
        assert digits == ["1", "2", "#"]

        # Hold and resume are re-INVITEs: the peer sees a new offer each time.
        alice.hold()
        bob.wait_for_event("CALL_REMOTE_SDP", 5, id=inc.id, param="offer")
        alice.resume()
        bob.wait_for_event("CALL_REMOTE_SDP", 5, id=inc.id, param="offer")

        # Blind transfer: bob REFERs alice to carol; alice calls carol (who answers by
        # hand), and the first call ends.
        bob.transfer(carol.contact_uri)
        alice.wait_for_event("TRANSFER", 5, id=out.id)
        ring = carol.wait_incoming(5)
        carol.wait_for_event("CALL_INCOMING", 5, id=ring.id)
        carol.accept()
        ring.wait_established(5)
        assert "Call transfered" in str(inc.wait_closed(5).get("param"))
        out.wait_closed(5)
        new = alice.wait_for_event("CALL_ESTABLISHED", 5, peeruri=carol.contact_uri)
        assert new.call_id == ring.id

        carol.hangup()
        ring.wait_closed(5)
        alice.wait_for_event("CALL_CLOSED", 5, id=ring.id)


_REG_HEADERS = (
    "[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]reg[call_number]\n[last_Call-ID:]\n"
    "[last_CSeq:]\n"
)


def _registrar_xml(final_status: str) -> str:
    """A registrar that challenges, checks the digest (user 1001, password 'secret') and
    answers ``final_status`` when it is right (403 when wrong), then takes the
    unregistration."""
    challenge = (
        "SIP/2.0 401 Unauthorized\n"
        + _REG_HEADERS
        + 'WWW-Authenticate: Digest realm="tenant.example", '
        'nonce="[pid]n[call_number]", algorithm=MD5\nContent-Length: 0\n'
    )
    verify = (
        '<recv request="REGISTER"><action>'
        '<verifyauth assign_to="authvalid" username="1001" password="secret"/>'
        "</action></recv>"
    )
    return scenario(
        "registrar",
        recv(request="REGISTER"),
        send(challenge, retrans=None),
        verify,
        '<nop hide="true" test="authvalid" next="good"/>',
        send("SIP/2.0 403 Wrong Password\n" + _REG_HEADERS + "Content-Length: 0\n", retrans=None),
        '<nop hide="true" next="end"/>',
        '<label id="good"/>',
        send(
            f"SIP/2.0 {final_status}\n" + _REG_HEADERS + "[last_Contact:]\nContent-Length: 0\n",
            retrans=None,
        ),
        recv(request="REGISTER"),  # the unregistration when the phone quits
        send(
            "SIP/2.0 200 OK\n" + _REG_HEADERS + "[last_Contact:]\nContent-Length: 0\n", retrans=None
        ),
        '<label id="end"/>',
    )


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("password", "final", "expect"),
    [
        ("secret", "200 OK", "REGISTER_OK"),
        ("wrong", "200 OK", "403 Wrong Password"),
        ("secret", "404 Not Here", "404 Not Here"),
    ],
)
def test_baresip_registration_with_digest(
    tmp_run: Path, password: str, final: str, expect: str
) -> None:
    registrar = Sipp(tmp_run / "reg", _registrar_xml(final), name="registrar", calls=1)
    with registrar:
        registrar.wait_ready()
        account = Account(
            "1001",
            "tenant.example",
            password=password,
            outbound=f"sip:127.0.0.1:{registrar.local_port}",
        )
        with BaresipPhone(tmp_run / "phone", account) as phone:
            if expect == "REGISTER_OK":
                ev = phone.wait_registered(10)
                assert ev.get("accountaor") == "sip:1001@tenant.example"
                assert "OK" in phone.reginfo()
            else:
                with pytest.raises(BaresipError, match=expect):
                    phone.wait_registered(10)
        if expect == "REGISTER_OK":
            result = registrar.wait(10)
            assert result.ok, result.describe()
            assert "Authorization: Digest" in result.messages
            assert 'username="1001"' in result.messages


# --------------------------------------------------------------------------- sipp
@pytest.mark.e2e
def test_sipp_uac_calls_sipp_uas(tmp_run: Path) -> None:
    uas = Sipp(tmp_run, UAS_ANSWER, name="uas", calls=3)
    with uas:
        uas.wait_ready()
        uac = Sipp(
            tmp_run,
            UAC_INVITE,
            name="uac",
            remote=f"127.0.0.1:{uas.local_port}",
            calls=3,
            rate=20,
            call_duration_ms=100,
        )
        result = uac.run(timeout=20)
        server = uas.wait(10)
    assert result.ok, result.describe()
    assert (result.successful, result.failed, result.created) == (3, 0, 3)
    assert server.ok, server.describe()
    assert server.successful == 3
    assert result.messages.count("INVITE sip:service@127.0.0.1") == 3


@pytest.mark.e2e
def test_sipp_reports_failure(tmp_run: Path) -> None:
    # Nobody listens: the INVITE times out and SIPp says so (exit code 1, one failed call).
    dead = free_port_pair()
    uac = Sipp(
        tmp_run,
        UAC_INVITE,
        name="uac",
        remote=f"127.0.0.1:{dead}",
        extra_args=["-recv_timeout", "1000"],
    )
    result = uac.run(timeout=20)
    assert result.returncode == 1, result.describe()
    assert result.failed == 1


# --------------------------------------------------------------------------- procs
def test_managed_process_log_and_stop(tmp_run: Path) -> None:
    p = ManagedProcess(
        "talker",
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
        tmp_run,
    ).start()
    p.wait_for_log(r"ready", 10)
    assert p.running and p.returncode is None
    rc = p.stop()
    assert rc == -signal.SIGTERM
    assert not process_group_pids(p.pid)
    assert "exit: -15" in p.read_log()


def test_managed_process_sigkill_when_sigterm_ignored(tmp_run: Path) -> None:
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen(['sleep', '60'])\n"  # a worker in the same process group
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    p = ManagedProcess("stubborn", [sys.executable, "-c", code], tmp_run).start()
    p.wait_for_log("ready", 10)
    t0 = time.monotonic()
    assert p.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - t0 < 5
    assert not process_group_pids(p.pid)


def test_managed_process_reports_early_exit(tmp_run: Path) -> None:
    p = ManagedProcess("quitter", ["sh", "-c", "echo boom; exit 3"], tmp_run).start()
    with pytest.raises(ProcessError, match="boom"):
        p.wait_for_log("never printed", 10)
    assert p.wait(5) == 3


def test_wait_for_port_udp_and_tcp(tmp_run: Path) -> None:
    udp, tcp = free_udp_port(), free_port_pair()
    code = (
        "import socket, time\n"
        f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', {udp}))\n"
        f"t = socket.socket(); t.bind(('127.0.0.1', {tcp})); t.listen()\n"
        "time.sleep(60)\n"
    )
    with ManagedProcess("listener", [sys.executable, "-c", code], tmp_run) as p:
        p.wait_for_port(udp, "udp", "127.0.0.1", timeout=10)
        p.wait_for_port(tcp, "tcp", timeout=10)
        assert not port_bound(udp, "tcp")
        with pytest.raises(ProcessError, match="not bound"):
            p.wait_for_port(tcp + 1, "tcp", timeout=0.2)


def test_free_ports_are_free_and_distinct() -> None:
    seen: set[int] = set()
    for _ in range(20):
        p = free_port_pair("127.0.0.1")
        assert {p, p + 1}.isdisjoint(seen)
        seen |= {p, p + 1}
        for port in (p, p + 1):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
    first, last = free_port_range("127.0.0.2", 10)
    assert last - first == 9 and first % 2 == 0
    assert free_udp_port("127.0.0.2") not in seen


# --------------------------------------------------------------------------- audio
def test_goertzel_and_tone_check(tmp_run: Path) -> None:
    path = make_tone_wav(tmp_run / "t.wav", 440.0, 1.0)
    rate, x = read_wav(path)
    assert rate == 8000 and x.dtype == np.int16 and len(x) == 8000
    amp = 0.3 * 32767
    assert goertzel_power(x, 440.0, rate) == pytest.approx(amp * amp / 4, rel=0.01)
    assert rms(x) == pytest.approx(amp / math.sqrt(2), rel=0.01)
    assert dominant_tone_check(path, 440.0, 1000.0) > 1e6
    assert dominant_tone_check(path, 1000.0, 440.0) < 1e-6
    # A mixture: the stronger tone wins by its power ratio (amplitude ratio squared).
    t = np.arange(8000) / 8000
    mix = 8000 * np.sin(2 * np.pi * 1000 * t) + 2000 * np.sin(2 * np.pi * 440 * t)
    assert dominant_tone_check((8000, mix), 1000.0, 440.0) == pytest.approx(16, rel=0.05)


def test_read_wav_of_recording_in_progress(tmp_run: Path) -> None:
    # A writer that has not finalised the header yet (sizes 0), as sndfile leaves it.
    path = write_wav(tmp_run / "r.wav", np.arange(1600, dtype=np.int16))
    raw = bytearray(path.read_bytes())
    raw[4:8] = b"\0\0\0\0"
    raw[40:44] = b"\0\0\0\0"
    path.write_bytes(bytes(raw))
    rate, x = read_wav(path)
    assert rate == 8000 and len(x) == 1600 and x[-1] == 1599
    assert wav_seconds(path) == pytest.approx(0.2)
