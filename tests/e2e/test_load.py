"""Load through a real node: 50 concurrent calls with two-way G.711 media, none failed.

A SIPp callee registered as extension 1001 (digest REGISTER) answers every call; SIPp as
the carrier trunk (bound to 127.0.0.2 at the plan's trunk port) dials 1001's DID 50 times
at once and hangs up after the media.  For every answered call the caller announces the
node's media address from the 200 OK to ``bench.rtpload``, which streams 20 ms PCMA
packets to it while its callee side echoes whatever the node relays; every packet is
tagged, so both directions are counted per call (see bench/rtpload.py).  The CDRs must
show 50 answered calls that were all up at the same time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import scenarios
from tests.e2e.conftest import CARRIER_IP, PASSWORDS, NodeHandle, start_node
from tests.harness.procs import ManagedProcess, free_port_range, free_udp_port
from tests.harness.sipp import Sipp, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CALLS = 50
MEDIA_SECONDS = 6.0
DID = "+862088880001"  # -> extension 1001 in the e2e test plan


@pytest.fixture(scope="module")
def load_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("load-node"))
    try:
        yield handle
    finally:
        handle.stop()


def answered_cdrs(node: NodeHandle, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        cdrs = [c for c in node.cdrs("acme") if c["callee"] == DID]
        if len(cdrs) >= count or time.monotonic() > deadline:
            return cdrs
        time.sleep(0.2)


def test_fifty_concurrent_calls_with_two_way_media(load_node: NodeHandle, tmp_run: Path) -> None:
    node = load_node
    callee_rtp = free_port_range("127.0.0.1", 2)[0]
    caller_rtp = free_port_range(CARRIER_IP, 2)[0]
    ctl = ("127.0.0.1", free_udp_port("127.0.0.1"))
    result_path = tmp_run / "rtpload.json"
    rtpload = ManagedProcess(
        "rtpload",
        [sys.executable, "-m", "bench.rtpload", "--uac", f"{CARRIER_IP}:{caller_rtp}",
         "--uas", f"127.0.0.1:{callee_rtp}", "--ctl", f"{ctl[0]}:{ctl[1]}",
         "--seconds", str(MEDIA_SECONDS), "--max-calls", str(CALLS),
         "--result", str(result_path)],
        tmp_run, cwd=REPO,
    ).start()
    callee = Sipp(tmp_run, scenarios.UAS, calls=10 * CALLS, keys=scenarios.uas_keys(callee_rtp),
                  name="callee", trace_msg=False)
    try:
        rtpload.wait_for_log("rtpload ready", timeout=15)
        callee.start().wait_ready()
        reg = run_sipp(
            tmp_run, scenarios.REGISTER, timeout=20, remote=f"127.0.0.1:{node.sip_port}",
            name="register",
            keys={"user": "1001", "domain": "acme.example",
                  "contact": f"127.0.0.1:{callee.local_port}"},
            extra_args=["-au", "1001", "-ap", PASSWORDS["1001"]],
        )
        assert reg.ok and reg.successful == 1, reg.describe()

        caller = Sipp(
            tmp_run, scenarios.UAC, remote=f"127.0.0.1:{node.sip_port}", local_ip=CARRIER_IP,
            local_port=node.carrier_port, calls=CALLS, limit=CALLS, rate=CALLS, service=DID,
            call_duration_ms=int((MEDIA_SECONDS + 1.0) * 1000),
            keys=scenarios.uac_keys(caller_rtp, ctl), name="caller", trace_msg=False,
        )
        result = caller.run(timeout=45)
    finally:
        rtpload.stop()
        if callee.proc is not None:
            callee.proc.stop()

    # SIPp: every call answered and hung up normally
    assert result.ok, result.describe()
    assert result.successful == CALLS and result.failed == 0, result.describe()

    # media: every call carried audio both ways through the node
    rtp = json.loads(result_path.read_text())
    assert rtp["calls"] == CALLS, rtp
    per_call = rtp["packets_per_call"]
    assert per_call == round(MEDIA_SECONDS / 0.02)
    for call in rtp["per_call"]:
        assert call["sent"] == per_call, call
        # a->b: reached the callee through the node; b->a: the callee's echo came back
        assert call["ab"] >= 0.95 * per_call, f"caller->callee audio lost: {call}"
        assert call["ba"] >= 0.95 * call["ab"], f"callee->caller audio lost: {call}"
    assert rtp["loss_pct"] < 1.0, {k: v for k, v in rtp.items() if k != "per_call"}
    assert rtp["foreign"] == 0 and rtp["rejected_notices"] == 0

    # CDRs: 50 answered trunk calls to extension 1001, all up at the same time
    cdrs = answered_cdrs(node, CALLS)
    assert len(cdrs) == CALLS, cdrs
    for cdr in cdrs:
        assert cdr["disposition"] == "answered", cdr
        assert cdr["origin"] == "trunk:carrier" and cdr["destination"] == "ext:1001", cdr
        assert cdr["codec"] == "PCMA" and cdr["duration"] >= MEDIA_SECONDS, cdr
    assert max(c["answer"] for c in cdrs) < min(c["end"] for c in cdrs), "calls did not overlap"
