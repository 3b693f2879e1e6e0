"""A real SIP phone for end-to-end tests: Debian baresip 1.0 driven through ``ctrl_tcp``.

One :class:`BaresipPhone` is one headless baresip process with its own config directory
(``<workdir>``), one account, a WAV file as microphone (``aufile``), the ``sndfile`` module
recording every call into ``<workdir>/dump-<time>-dec.wav`` (what it received, decoded) and
``-enc.wav`` (what it sent), and ALSA's ``null`` device as loudspeaker (no sound card needed).

Control is ``ctrl_tcp``: netstring-framed JSON commands
``{"command": "dial", "params": "sip:1001@127.0.0.1", "token": "7"}`` answered by
``{"response": true, "ok": true, "data": "...", "token": "7"}``; events arrive on the same
socket as ``{"event": true, "type": "CALL_ESTABLISHED", "class": "call", "accountaor": ...,
"direction": "outgoing", "peeruri": ..., "id": <SIP Call-ID>, "param": ...}``.

Long commands that baresip 1.0's ``menu`` module offers (``/help``): about, accept,
answermode, auplay, ausrc, callstat, dial, hangup, help, insmod, listcalls, options, quit,
reginfo, rmmod, uadel, uafind, uanew, uanext, vidsrc; and while a call exists also
aubitrate, audio_debug, callfind, hold, line, mute, prevhold, prevresume, reinvite, resume,
sndcode, statmode, transfer, video_debug, video_dir.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.audio import make_silence_wav, wav_seconds
from tests.harness.procs import ManagedProcess, ProcessError, free_port_pair, free_port_range

__all__ = [
    "Account",
    "BaresipError",
    "BaresipPhone",
    "Call",
    "Event",
]

BARESIP = os.environ.get("BRANCHLINE_BARESIP", "baresip")
MODULE_PATH = "/usr/lib/baresip/modules"


class BaresipError(RuntimeError):
    """A command failed, an awaited event did not come, or baresip died."""


@dataclass
class Account:
    """One baresip account line (``accounts`` file / ``uanew``).

    ``outbound`` is the proxy/registrar to send everything to (``"sip:127.0.0.1:5060"``);
    ``regint`` defaults to 120 s when there is an outbound proxy and a password, else 0 (no
    REGISTER: a peer that is called directly, such as a carrier trunk).
    """

    user: str
    domain: str
    password: str | None = None
    outbound: str | None = None
    transport: str = "udp"
    regint: int | None = None
    answermode: str = "auto"
    audio_codecs: str = "PCMU,PCMA"
    auth_user: str | None = None
    display: str | None = None
    extra: str = ""  # more ";name=value" addr-params, appended verbatim

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    def line(self) -> str:
        uri = f"sip:{self.user}@{self.domain}"
        if self.transport and self.transport != "udp":
            uri += f";transport={self.transport}"
        out = f'"{self.display}" ' if self.display else ""
        out += f"<{uri}>"
        if self.password is not None:
            out += f";auth_pass={self.password}"
            if self.auth_user:
                out += f";auth_user={self.auth_user}"
        if self.outbound:
            ob = self.outbound
            if "transport=" not in ob:
                ob += f";transport={self.transport}"
            out += f';outbound="{ob}"'
        regint = self.regint
        if regint is None:
            regint = 120 if (self.outbound and self.password is not None) else 0
        out += f";regint={regint}"
        out += f";answermode={self.answermode}"
        if self.audio_codecs:
            out += f";audio_codecs={self.audio_codecs}"
        if self.extra:
            out += self.extra if self.extra.startswith(";") else ";" + self.extra
        return out


class Event(dict[str, Any]):
    """A baresip event (the JSON object), plus ``seq`` (arrival order) and ``time`` (monotonic)."""

    seq: int
    time: float

    @property
    def type(self) -> str:
        return str(self.get("type", ""))

    @property
    def call_id(self) -> str | None:
        v = self.get("id")
        return str(v) if v is not None else None


EventMatch = str | Iterable[str] | Callable[[Event], bool] | None


def _matcher(match: EventMatch, fields: dict[str, Any]) -> Callable[[Event], bool]:
    if match is None:
        pred: Callable[[Event], bool] = lambda e: True  # noqa: E731
    elif isinstance(match, str):
        pred = lambda e: e.type == match  # noqa: E731
    elif callable(match):
        pred = match
    else:
        types = set(match)
        pred = lambda e: e.type in types  # noqa: E731

    def full(e: Event) -> bool:
        return pred(e) and all(e.get(k) == v for k, v in fields.items())

    return full


class Call:
    """One call of a phone. ``id`` is the SIP Call-ID baresip reports in its events."""

    def __init__(self, phone: BaresipPhone, call_id: str, direction: str, peeruri: str) -> None:
        self.phone = phone
        self.id = call_id
        self.direction = direction
        self.peeruri = peeruri

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self.peeruri} id={self.id}>"

    def wait_for_event(self, match: EventMatch, timeout: float = 10.0, **fields: Any) -> Event:
        return self.phone.wait_for_event(match, timeout, id=self.id, **fields)

    def wait_established(self, timeout: float = 10.0) -> Event:
        ev = self.phone.wait_for_event(
            ("CALL_ESTABLISHED", "CALL_CLOSED"), timeout, id=self.id, consume=False
        )
        if ev.type == "CALL_CLOSED":
            raise BaresipError(f"{self.phone.name}: call {self.id} closed: {ev.get('param')}")
        return self.phone.wait_for_event("CALL_ESTABLISHED", 0, id=self.id)

    def wait_closed(self, timeout: float = 10.0) -> Event:
        """Wait for CALL_CLOSED; its ``param`` is the reason (e.g. 'Connection reset by user')."""
        return self.phone.wait_for_event("CALL_CLOSED", timeout, id=self.id)

    @property
    def closed(self) -> bool:
        return self.phone.find_event("CALL_CLOSED", id=self.id) is not None

    def hangup(self) -> None:
        self.phone.hangup()


class BaresipPhone:
    """A headless baresip 1.0 with one account, driven through ctrl_tcp.

    - For a phone called directly (no registrar) use ``phone.contact_uri``
      (``sip:<user>@<listen_host>:<sip_port>``); its account domain can be anything.
    - ``tone_wav`` (8 kHz mono 16-bit) is the microphone and must outlast every call:
      when aufile reaches the end of the file baresip 1.0 ends the call (AUDIO_ERROR, then
      CALL_CLOSED). Without one, 120 s of silence is sent.
    - The account is added with ``uanew`` after ctrl_tcp is connected, so REGISTERING /
      REGISTER_OK / REGISTER_FAIL are always seen.
    - Events seen from baresip 1.0 (``type``; ``param``): CALL_INCOMING (manual answer
      only; peer uri), CALL_RINGING, CALL_PROGRESS, CALL_ESTABLISHED (peer uri),
      CALL_RTPESTAB ("audio"), CALL_LOCAL_SDP / CALL_REMOTE_SDP ("offer"/"answer"; a
      hold or resume re-INVITE shows as a new offer at the peer), CALL_DTMF_START (the
      digit) and CALL_DTMF_END, TRANSFER (at the transferee; the target uri; it then dials
      the target itself), CALL_CLOSED (reason: "Connection reset by user" / "... by peer",
      "Call transfered", a SIP status), CALL_RTCP, AUDIO_ERROR, REGISTERING,
      REGISTER_OK ("200 OK"), REGISTER_FAIL (the status), SHUTDOWN, EXIT.
    - baresip's Contact user is ``<user>-0x<pointer>`` (e.g. ``1001-0x55ce75eb5af0``).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        account: Account,
        *,
        listen_host: str = "127.0.0.1",
        sip_port: int | None = None,
        tone_wav: str | os.PathLike[str] | None = None,
        answermode: str | None = None,
        name: str | None = None,
        ctrl_port: int | None = None,
        rtp_ports: tuple[int, int] | None = None,
        jitter_buffer: str = "5-10",
        extra_config: dict[str, str] | None = None,
        sip_trace: bool = False,
        verbose: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        if answermode is not None:
            account = dataclasses.replace(account, answermode=answermode)
        self.account = account
        self.listen_host = listen_host
        self.sip_port = sip_port if sip_port is not None else free_port_pair(listen_host)
        self.name = name or account.user
        self.ctrl_port = ctrl_port if ctrl_port is not None else free_port_pair("127.0.0.1")
        self.rtp_ports = rtp_ports or free_port_range(listen_host, 20)
        self.tone_wav = Path(tone_wav) if tone_wav is not None else None
        self.jitter_buffer = jitter_buffer
        self.extra_config = dict(extra_config or {})
        self.sip_trace = sip_trace
        self.verbose = verbose

        self.proc: ManagedProcess | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._consumed: set[int] = set()
        self._responses: dict[str, dict[str, Any]] = {}
        self._tokens = itertools.count(1)
        self._send_lock = threading.Lock()
        self._closed = False
        self._claimed_calls: set[str] = set()

    # ------------------------------------------------------------------ config
    @property
    def contact_uri(self) -> str:
        """Where to call this phone directly: ``sip:<user>@<listen_host>:<sip_port>``."""
        return f"sip:{self.account.user}@{self.listen_host}:{self.sip_port}"

    def config_text(self) -> str:
        src = self.tone_wav
        if src is None:
            src = self.workdir / "silence.wav"
        cfg: dict[str, str] = {
            "poll_method": "epoll",
            "sip_listen": f"{self.listen_host}:{self.sip_port}",
            "call_local_timeout": "120",
            "call_max_calls": "4",
            "audio_player": "alsa,null",
            "audio_source": f"aufile,{src}",
            "audio_alert": "alsa,null",
            "audio_level": "no",
            "ausrc_format": "s16",
            "auplay_format": "s16",
            "auenc_format": "s16",
            "audec_format": "s16",
            "audio_buffer": "20-160",
            "rtp_tos": "184",
            "rtp_ports": f"{self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux": "no",
            "jitter_buffer_delay": self.jitter_buffer,
            "rtp_stats": "no",
            "net_interface": self.listen_host,
            "module_path": MODULE_PATH,
            "ctrl_tcp_listen": f"127.0.0.1:{self.ctrl_port}",
            "snd_path": str(self.workdir),
        }
        cfg.update(self.extra_config)
        modules = [
            ("module", "g711.so"),
            ("module", "aufile.so"),
            ("module", "alsa.so"),
            ("module", "sndfile.so"),
            ("module", "ctrl_tcp.so"),
            ("module_tmp", "account.so"),
            ("module_app", "menu.so"),
        ]
        lines = [f"{k}\t\t{v}" for k, v in cfg.items()]
        lines += [f"{k}\t\t{v}" for k, v in modules]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10.0) -> BaresipPhone:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tone_wav is None:
            make_silence_wav(self.workdir / "silence.wav", 120.0)
        elif not self.tone_wav.exists():
            raise BaresipError(f"{self.name}: tone file {self.tone_wav} does not exist")
        (self.workdir / "config").write_text(self.config_text())
        # The account is added over ctrl_tcp once connected (uanew), so that no event of
        # it (REGISTERING, REGISTER_OK...) is emitted before we listen.
        (self.workdir / "accounts").write_text("")
        (self.workdir / "contacts").write_text("")
        argv = [BARESIP, "-f", str(self.workdir)]
        if self.sip_trace:
            argv.append("-s")
        if self.verbose:
            argv.append("-v")
        self.proc = ManagedProcess(f"baresip-{self.name}", argv, self.workdir)
        self.proc.start()
        try:
            self.proc.wait_for_log(r"baresip is ready", timeout)
            self._connect(timeout)
            self.command("uanew", self.account.line())
        except Exception:
            self.stop()
            raise
        return self

    def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1.0)
                break
            except OSError as exc:
                if time.monotonic() >= deadline or self.proc is None or not self.proc.running:
                    raise BaresipError(
                        f"{self.name}: cannot connect to ctrl_tcp port {self.ctrl_port}: {exc}\n"
                        + (self.proc.log_tail() if self.proc else "")
                    ) from exc
                time.sleep(0.05)
        sock.settimeout(0.2)
        self._sock = sock
        self._reader = threading.Thread(
            target=self._read_loop, name=f"baresip-{self.name}-ctrl", daemon=True
        )
        self._reader.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Quit baresip (``quit`` command, then SIGTERM/SIGKILL), close the socket."""
        if self._sock is not None and self.proc is not None and self.proc.running:
            try:
                self._send({"command": "quit", "params": "", "token": "quit"})
                self.proc.wait(min(timeout, 3.0))
            except (OSError, ProcessError):
                pass
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self.proc is not None:
            self.proc.stop(timeout)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(2.0)
        self._sock = None
        self._reader = None

    def __enter__(self) -> BaresipPhone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ ctrl_tcp
    def _send(self, obj: dict[str, Any]) -> None:
        if self._sock is None:
            raise BaresipError(f"{self.name}: not started")
        body = json.dumps(obj).encode()
        with self._send_lock:
            self._sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        buf = b""
        while True:
            with self._cond:
                if self._closed:
                    return
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while True:
                colon = buf.find(b":")
                if colon < 0:
                    break
                try:
                    n = int(buf[:colon])
                except ValueError:
                    buf = b""  # framing lost; cannot resync
                    break
                if len(buf) < colon + 1 + n + 1:
                    break
                payload = buf[colon + 1 : colon + 1 + n]
                buf = buf[colon + 1 + n + 1 :]
                self._dispatch(payload)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _dispatch(self, payload: bytes) -> None:
        try:
            obj = json.loads(payload.decode(errors="replace"))
        except ValueError:
            return
        with self._cond:
            if obj.get("response"):
                self._responses[str(obj.get("token"))] = obj
            elif obj.get("event"):
                ev = Event(obj)
                ev.seq = len(self._events)
                ev.time = time.monotonic()
                self._events.append(ev)
            self._cond.notify_all()

    def command(
        self, command: str, params: str = "", timeout: float = 5.0, check: bool = True
    ) -> dict[str, Any]:
        """Run a long command (without the '/'); returns the response object.

        With ``check`` a response with ``ok: false`` raises BaresipError.
        """
        token = f"t{next(self._tokens)}"
        self._send({"command": command, "params": params, "token": token})
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise BaresipError(
                        f"{self.name}: no response to {command} {params!r}"
                        + (" (connection closed)" if self._closed else f" within {timeout}s")
                        + "\n"
                        + (self.proc.log_tail() if self.proc else "")
                    )
                self._cond.wait(left)
            resp = self._responses.pop(token)
        if check and not resp.get("ok", False):
            raise BaresipError(f"{self.name}: {command} {params!r} failed: {resp.get('data')!r}")
        return resp

    # ------------------------------------------------------------------ events
    @property
    def events(self) -> list[Event]:
        """A snapshot of every event received so far, in order."""
        with self._cond:
            return list(self._events)

    def mark(self) -> int:
        """The sequence number the next event will get (pass as ``since``)."""
        with self._cond:
            return len(self._events)

    def find_event(
        self, match: EventMatch = None, *, since: int = 0, **fields: Any
    ) -> Event | None:
        pred = _matcher(match, fields)
        with self._cond:
            for ev in self._events[since:]:
                if pred(ev):
                    return ev
        return None

    def wait_for_event(
        self,
        match: EventMatch = None,
        timeout: float = 10.0,
        *,
        since: int = 0,
        consume: bool = True,
        **fields: Any,
    ) -> Event:
        """Wait for an event: ``match`` is a type name, several type names, or a predicate;
        keyword ``fields`` must be equal (e.g. ``id=call.id``, ``direction="incoming"``).

        Events are searched from ``since`` on, oldest first, skipping events an earlier
        wait already returned (``consume=False`` leaves the returned one for a later wait).
        """
        pred = _matcher(match, fields)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self._events[since:]:
                    if ev.seq not in self._consumed and pred(ev):
                        if consume:
                            self._consumed.add(ev.seq)
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(min(left, 0.5))
                if self.proc is not None and not self.proc.running:
                    self._closed = True
        recent = ", ".join(
            f"{e.type}({e.get('param', '')})"
            for e in self.events[max(since, len(self._events) - 15) :]
        )
        why = "baresip exited" if self.proc is not None and not self.proc.running else "timeout"
        raise BaresipError(
            f"{self.name}: no event matching {match!r} {fields or ''} ({why}, {timeout}s); "
            f"recent events: {recent}\n" + (self.proc.log_tail() if self.proc else "")
        )

    # ------------------------------------------------------------------ registration
    def wait_registered(self, timeout: float = 10.0) -> Event:
        """Wait for REGISTER_OK (raises on REGISTER_FAIL, with its reason)."""
        ev = self.wait_for_event(("REGISTER_OK", "REGISTER_FAIL"), timeout)
        if ev.type == "REGISTER_FAIL":
            raise BaresipError(f"{self.name}: registration failed: {ev.get('param')}")
        return ev

    def reginfo(self) -> str:
        return str(self.command("reginfo").get("data", ""))

    def add_account(self, account: Account) -> None:
        """Add a user agent at run time (``uanew``)."""
        self.command("uanew", account.line())

    # ------------------------------------------------------------------ calls
    def _claim(self, since: int, direction: str, timeout: float) -> Call:
        def pred(e: Event) -> bool:
            return (
                e.get("class") == "call"
                and e.get("direction") == direction
                and e.call_id is not None
                and e.call_id not in self._claimed_calls
            )

        ev = self.wait_for_event(pred, timeout, since=since, consume=False)
        assert ev.call_id is not None
        self._claimed_calls.add(ev.call_id)
        return Call(self, ev.call_id, direction, str(ev.get("peeruri", "")))

    def dial(self, uri: str, timeout: float = 10.0) -> Call:
        """Dial ``uri``; returns once baresip reports the call (ringing, answered or closed)."""
        since = self.mark()
        self.command("dial", uri)
        return self._claim(since, "outgoing", timeout)

    def wait_incoming(self, timeout: float = 10.0) -> Call:
        """The next incoming call not returned before (CALL_INCOMING or, auto-answered,
        CALL_ESTABLISHED)."""
        return self._claim(0, "incoming", timeout)

    def accept(self) -> None:
        """Answer the ringing incoming call (answermode manual)."""
        self.command("accept")

    def hangup(self) -> None:
        """Hang up the current call (baresip 1.0's ``hangup`` takes no call id)."""
        self.command("hangup")

    def hold(self) -> None:
        self.command("hold")

    def resume(self) -> None:
        self.command("resume")

    def transfer(self, target: str) -> None:
        """Blind transfer of the current call (REFER to ``target``)."""
        self.command("transfer", target)

    def send_dtmf(self, digits: str) -> None:
        """Send digits as RFC 4733 telephone-events on the current call (``sndcode``)."""
        self.command("sndcode", digits)

    def list_calls(self) -> str:
        return str(self.command("listcalls").get("data", ""))

    # ------------------------------------------------------------------ recordings
    def recordings(self, kind: str | None = None) -> list[Path]:
        """``dump-*-dec.wav`` (received) and ``dump-*-enc.wav`` (sent) files, oldest first.

        sndfile names them by the call's start time to the second: a second call started
        within the same second as the previous one overwrites its files.

        ``kind`` 'dec' or 'enc' selects one of them.
        """
        pattern = f"dump-*-{kind}.wav" if kind else "dump-*.wav"
        return sorted(self.workdir.glob(pattern), key=lambda p: (p.stat().st_mtime, p.name))

    def wait_recording(
        self, seconds: float, kind: str = "dec", timeout: float = 15.0, *, after: int = 0
    ) -> Path:
        """Wait until the newest recording of ``kind`` holds ``seconds`` of audio.

        ``after``: ignore the first ``after`` recordings (those of earlier calls).
        """
        deadline = time.monotonic() + timeout
        while True:
            recs = self.recordings(kind)[after:]
            if recs:
                try:
                    if wav_seconds(recs[-1]) >= seconds:
                        return recs[-1]
                except (ValueError, OSError):
                    pass
            if self.proc is not None and not self.proc.running:
                raise BaresipError(f"{self.name}: baresip exited\n{self.proc.log_tail()}")
            if time.monotonic() >= deadline:
                have = [f"{p.name}={wav_seconds(p):.2f}s" for p in recs] if recs else "none"
                raise BaresipError(
                    f"{self.name}: no {kind} recording of {seconds}s within {timeout}s ({have})"
                )
            time.sleep(0.05)
