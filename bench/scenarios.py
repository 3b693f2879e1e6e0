"""SIPp scenarios of the load: caller (carrier trunk), callee (extension), REGISTER.

Keywords given with ``-key`` (see :func:`uac_keys`, :func:`uas_keys`):

- caller: ``uacrtp`` (its media port, served by ``bench.rtpload``), ``ctlhost``/``ctlport``
  (where the caller announces each answered call and the far media address from the
  200 OK SDP, so that ``bench.rtpload`` starts that call's stream);
- callee: ``uasrtp`` (its media port, the echo of ``bench.rtpload``).

Both offer/answer PCMA only (plus telephone-event), so neither relay transcodes.
The caller's From user is ``+8613<call number>``: unique per call, which lets a packet
capture pair each INVITE on every hop. Response time 1 (``-trace_rtt``) is INVITE sent
to 180 Ringing received: the post-dial delay seen by the caller.
"""

from __future__ import annotations

from tests.harness.sipp import RESPONSE_HEADERS, pause, recv, scenario, send

_SDP = """v=0
o=bench [pid][call_number] 1 IN IP4 [local_ip]
s=-
c=IN IP4 {ip}
t=0 0
m=audio {port} RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=ptime:20
"""

_INVITE = """INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+8613[call_number]@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:carrier@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

""" + _SDP.format(ip="[local_ip]", port="[uacrtp]")

_IN_DIALOG = """{method} [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+8613[call_number]@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} {method}
[routes]
Max-Forwards: 70
Content-Length: 0
"""

_NOTICE = """MEDIA sip:media@[ctlhost]:[ctlport] SIP/2.0
Call-ID: [call_id]
X-Media: [$mip] [$mport]
X-Matched: [$cline] [$mline]
Content-Length: 0
"""


def _setdest(host: str, port: str) -> str:
    return (f'<nop><action><setdest host="{host}" port="{port}" protocol="[transport]"/>'
            "</action></nop>")


# INVITE, (100) (180: response time 1) 200 + SDP, ACK, notice to rtpload, hold (-d), BYE.
UAC = scenario(
    "bench caller",
    send(_INVITE, extra_attrs='start_rtd="1"'),
    recv(response=100, optional=True),
    recv(response=180, optional=True, rtd="1"),
    recv(response=183, optional=True),
    '<recv response="200" rrs="true"><action>'
    '<ereg regexp="c=IN IP4 ([0-9.]+)" search_in="body" check_it="true" assign_to="cline,mip"/>'
    '<ereg regexp="m=audio ([0-9]+)" search_in="body" check_it="true" assign_to="mline,mport"/>'
    "</action></recv>",
    send(_IN_DIALOG.format(method="ACK", cseq=1), retrans=None),
    _setdest("[ctlhost]", "[ctlport]"),
    send(_NOTICE, retrans=None),
    _setdest("[remote_ip]", "[remote_port]"),
    pause(),
    send(_IN_DIALOG.format(method="BYE", cseq=2)),
    recv(response=200, crlf="true"),
)


# Answer every INVITE: 180, 200 + SDP (PCMA at the echo), ACK, BYE -> 200.
UAS = scenario(
    "bench callee",
    recv(request="INVITE", crlf="true"),
    send("SIP/2.0 180 Ringing\n" + RESPONSE_HEADERS + "Content-Length: 0\n", retrans=None),
    send("SIP/2.0 200 OK\n" + RESPONSE_HEADERS
         + "Content-Type: application/sdp\nContent-Length: [len]\n\n"
         + _SDP.format(ip="[local_ip]", port="[uasrtp]"), retrans=500),
    recv(request="ACK", optional=True, crlf="true"),
    recv(request="BYE"),
    send("SIP/2.0 200 OK\n" + RESPONSE_HEADERS + "Content-Length: 0\n", retrans=None),
    pause(2000),  # absorb BYE retransmissions
)

_REGISTER = """REGISTER sip:[domain] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[user]@[domain]>;tag=[pid]reg[call_number]
To: <sip:[user]@[domain]>
Call-ID: [call_id]
CSeq: {cseq} REGISTER
Contact: <sip:[user]@[contact]>
Expires: 3600
Max-Forwards: 70
{auth}Content-Length: 0
"""

# REGISTER [user]@[domain] with Contact [contact] (the callee's SIP address), digest auth
# with SIPp's -au/-ap credentials.
REGISTER = scenario(
    "bench register",
    send(_REGISTER.format(cseq=1, auth="")),
    recv(response=401, auth="true"),
    send(_REGISTER.format(cseq=2, auth="[authentication]\n")),
    recv(response=200),
)


def uac_keys(uac_rtp_port: int, ctl: tuple[str, int]) -> dict[str, str]:
    return {"uacrtp": str(uac_rtp_port), "ctlhost": ctl[0], "ctlport": str(ctl[1])}


def uas_keys(uas_rtp_port: int) -> dict[str, str]:
    return {"uasrtp": str(uas_rtp_port)}
