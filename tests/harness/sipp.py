"""SIPp (Debian ``sip-tester`` 3.6.1) for end-to-end tests.

Tests write their scenario XML (see :func:`scenario`, :data:`UAC_INVITE`, :data:`UAS_ANSWER`),
run it bound to a chosen address/port with :class:`Sipp`, and get a :class:`SippResult`
with SIPp's exit code and its final statistics row (``-trace_stat``), the unexpected
messages (``-trace_err``) and, optionally, every message (``-trace_msg``).

SIPp exit codes: 0 all calls succeeded, 1 at least one call failed, 97 exit on internal
command, 99 normal exit without calls processed, 253 (-3) fatal error, 254 (-2) fatal
error binding a socket, 255 (-1) fatal error.

The Debian build has no TLS, and SIPp does not analyse received RTP.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

from tests.harness.procs import ManagedProcess, ProcessError, free_port_pair, free_port_range

__all__ = [
    "PCAP_DIR",
    "SDP_PCMU",
    "UAC_INVITE",
    "UAS_ANSWER",
    "Sipp",
    "SippResult",
    "parse_stat_csv",
    "pause",
    "play_pcap",
    "recv",
    "run_sipp",
    "scenario",
    "send",
]

SIPP = os.environ.get("BRANCHLINE_SIPP", "sipp")
PCAP_DIR = Path("/usr/share/sip-tester")

# SDP offering PCMU (and telephone-event) at SIPp's media address/port.
SDP_PCMU = """v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
"""


def _cdata(msg: str) -> str:
    lines = [ln.strip() for ln in msg.strip("\n").splitlines()]
    return "<![CDATA[\n\n" + "\n".join(lines) + "\n\n]]>"


def send(msg: str, *, retrans: int | None = 500, extra_attrs: str = "") -> str:
    """A ``<send>`` element; ``msg`` lines are stripped of indentation."""
    attrs = f' retrans="{retrans}"' if retrans else ""
    if extra_attrs:
        attrs += " " + extra_attrs
    return f"<send{attrs}>\n{_cdata(msg)}\n</send>"


def recv(
    *, response: int | None = None, request: str | None = None, optional: bool = False, **attrs: str
) -> str:
    """A ``<recv>`` element (``response="200"`` or ``request="INVITE"``)."""
    parts = []
    if response is not None:
        parts.append(f'response="{response}"')
    if request is not None:
        parts.append(f"request={quoteattr(request)}")
    if optional:
        parts.append('optional="true"')
    parts += [f"{k}={quoteattr(v)}" for k, v in attrs.items()]
    return f"<recv {' '.join(parts)}/>"


def pause(ms: int | None = None) -> str:
    return f'<pause milliseconds="{ms}"/>' if ms is not None else "<pause/>"


def play_pcap(path: str | os.PathLike[str]) -> str:
    """Replay RTP from a pcap (e.g. ``PCAP_DIR / "dtmf_2833_1.pcap"``)."""
    return f"<nop><action><exec play_pcap_audio={quoteattr(str(path))}/></action></nop>"


def scenario(name: str, *elements: str) -> str:
    """A complete scenario document from its elements (strings of XML)."""
    body = "\n\n".join(elements)
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        '<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
        f"<scenario name={quoteattr(name)}>\n{body}\n</scenario>\n"
    )


INVITE = (
    """INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

"""
    + SDP_PCMU
)

ACK = """ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
[routes]
Max-Forwards: 70
Content-Length: 0
"""

BYE = """BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
[routes]
Max-Forwards: 70
Content-Length: 0
"""

# A UAC: INVITE, expect 200 (after optional 100/180/183), ACK, pause (-d), BYE, expect 200.
UAC_INVITE = scenario(
    "branchline uac invite",
    send(INVITE),
    recv(response=100, optional=True),
    recv(response=180, optional=True),
    recv(response=183, optional=True),
    recv(response=200, rtd="true", rrs="true"),
    send(ACK, retrans=None),
    pause(),
    send(BYE),
    recv(response=200, crlf="true"),
)

RESPONSE_HEADERS = """[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
"""

# A UAS: answer an INVITE with 180 then 200 + SDP, wait for ACK and BYE, answer 200.
UAS_ANSWER = scenario(
    "branchline uas answer",
    recv(request="INVITE", crlf="true"),
    send("SIP/2.0 180 Ringing\n" + RESPONSE_HEADERS + "Content-Length: 0\n", retrans=None),
    send(
        "SIP/2.0 200 OK\n"
        + RESPONSE_HEADERS
        + "Content-Type: application/sdp\nContent-Length: [len]\n\n"
        + SDP_PCMU,
        retrans=500,
    ),
    recv(request="ACK", optional=True, rtd="true", crlf="true"),
    recv(request="BYE"),
    send("SIP/2.0 200 OK\n" + RESPONSE_HEADERS + "Content-Length: 0\n", retrans=None),
    pause(1000),  # absorb BYE retransmissions
)


@dataclass
class SippResult:
    returncode: int
    stats: dict[str, str] = field(default_factory=dict)
    errors: str = ""
    messages: str = ""
    log: str = ""

    def _int(self, key: str) -> int:
        try:
            return int(self.stats.get(key, "0") or 0)
        except ValueError:
            return 0

    @property
    def successful(self) -> int:
        return self._int("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self._int("FailedCall(C)")

    @property
    def created(self) -> int:
        return self._int("TotalCallCreated")

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        stats = {k: v for k, v in self.stats.items() if v not in ("0", "") and "(P)" not in k}
        return (
            f"sipp rc={self.returncode} successful={self.successful} failed={self.failed}\n"
            f"stats: {stats}\nerrors:\n{self.errors[-3000:]}\nlog tail:\n{self.log[-2000:]}"
        )


def parse_stat_csv(path: str | os.PathLike[str]) -> dict[str, str]:
    """The last row of a SIPp ``-trace_stat`` CSV (semicolon separated) as a dict."""
    with open(path, newline="", errors="replace") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {h.strip(): v.strip() for h, v in zip(header, last, strict=False) if h.strip()}


class Sipp:
    """One SIPp run. ``start()`` runs it in the background (for a UAS), ``run()`` to the end.

    ``remote`` ("host:port") is the target for a UAC; none for a UAS. ``local_ip``/
    ``local_port`` bind SIPp (``-i``/``-p``; a free port is chosen when ``None``).
    ``calls`` is ``-m`` (SIPp exits after that many calls). ``keys`` become ``-key k v``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        scenario_xml: str | os.PathLike[str],
        *,
        remote: str | None = None,
        local_ip: str = "127.0.0.1",
        local_port: int | None = None,
        media_port: int | None = None,
        calls: int = 1,
        rate: float | None = None,
        limit: int | None = None,
        service: str | None = None,
        transport: str = "u1",
        call_duration_ms: int | None = None,
        keys: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        trace_msg: bool = True,
        name: str = "sipp",
    ) -> None:
        self.workdir = Path(workdir)
        self.name = name
        self.remote = remote
        self.local_ip = local_ip
        self.local_port = local_port if local_port is not None else free_port_pair(local_ip)
        # SIPp binds its media (echo) socket at -mp and -mp+2 even when unused: keep
        # concurrent runs apart.
        self.media_port = media_port if media_port is not None else free_port_range(local_ip, 4)[0]
        self.calls = calls
        self.rate = rate
        self.limit = limit
        self.service = service
        self.transport = transport
        self.call_duration_ms = call_duration_ms
        self.keys = dict(keys or {})
        self.extra_args = list(extra_args)
        self.trace_msg = trace_msg
        self.workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(scenario_xml, str) and scenario_xml.lstrip().startswith("<"):
            self.scenario_path = self.workdir / f"{name}.xml"
            self.scenario_path.write_text(scenario_xml, encoding="iso-8859-1")
        else:
            self.scenario_path = Path(scenario_xml)
        self.stat_path = self.workdir / f"{name}_stats.csv"
        self.err_path = self.workdir / f"{name}_errors.log"
        self.msg_path = self.workdir / f"{name}_messages.log"
        self.proc: ManagedProcess | None = None

    def argv(self) -> list[str]:
        a = [SIPP]
        if self.remote:
            a.append(self.remote)
        a += ["-sf", str(self.scenario_path)]
        a += ["-i", self.local_ip, "-p", str(self.local_port), "-t", self.transport]
        a += ["-m", str(self.calls), "-nostdin"]
        a += ["-mi", self.local_ip, "-mp", str(self.media_port)]
        if self.rate is not None:
            a += ["-r", f"{self.rate:g}"]
        if self.limit is not None:
            a += ["-l", str(self.limit)]
        if self.service is not None:
            a += ["-s", self.service]
        if self.call_duration_ms is not None:
            a += ["-d", str(self.call_duration_ms)]
        for k, v in self.keys.items():
            a += ["-key", k, str(v)]
        a += ["-trace_stat", "-stf", str(self.stat_path), "-fd", "1"]
        a += ["-trace_err", "-error_file", str(self.err_path)]
        if self.trace_msg:
            a += ["-trace_msg", "-message_file", str(self.msg_path)]
        a += self.extra_args
        return a

    def start(self) -> Sipp:
        for p in (self.stat_path, self.err_path, self.msg_path):
            p.unlink(missing_ok=True)
        self.proc = ManagedProcess(self.name, self.argv(), self.workdir)
        self.proc.start()
        return self

    def wait_ready(self, timeout: float = 10.0) -> Sipp:
        """Wait until SIPp listens on its SIP port (UDP, or TCP for -t t1/tn)."""
        assert self.proc is not None
        proto = "tcp" if self.transport.startswith("t") else "udp"
        self.proc.wait_for_port(self.local_port, proto, self.local_ip, timeout)
        return self

    def wait(self, timeout: float = 30.0) -> SippResult:
        """Wait for SIPp to finish (``-m`` calls done); on timeout stop it and raise."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except ProcessError:
            self.proc.stop()
            raise
        return self.result(rc)

    def stop(self) -> SippResult:
        """Stop SIPp now (SIGTERM, SIGKILL) and collect what it wrote."""
        assert self.proc is not None
        rc = self.proc.stop()
        return self.result(rc if rc is not None else -1)

    def result(self, rc: int) -> SippResult:
        # SIPp writes its final statistics row on exit; give the file system a moment.
        stats: dict[str, str] = {}
        for _ in range(20):
            if self.stat_path.exists():
                stats = parse_stat_csv(self.stat_path)
                if stats:
                    break
            time.sleep(0.05)
        return SippResult(
            returncode=rc,
            stats=stats,
            errors=self.err_path.read_text(errors="replace") if self.err_path.exists() else "",
            messages=self.msg_path.read_text(errors="replace") if self.msg_path.exists() else "",
            log=self.proc.read_log() if self.proc else "",
        )

    def run(self, timeout: float = 30.0) -> SippResult:
        return self.start().wait(timeout)

    def __enter__(self) -> Sipp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.stop()


def run_sipp(
    workdir: str | os.PathLike[str], scenario_xml: str, timeout: float = 30.0, **kw: object
) -> SippResult:
    """Run a SIPp scenario to the end (see :class:`Sipp` for the keyword arguments)."""
    return Sipp(workdir, scenario_xml, **kw).run(timeout)  # type: ignore[arg-type]
