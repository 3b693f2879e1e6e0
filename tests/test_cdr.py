"""The CDR store: one record per call, per-tenant reads, the background writer."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from appliance.cdr import CdrStore, CdrWriter
from appliance.pbx.record import Cdr

BASE = Cdr(call_id="c1", tenant_id="acme", caller="+8613800000000", callee="+862088880001",
           origin="trunk:carrier", destination="ext:1001", start=100.0, answer=101.0,
           end=110.0, duration=9.0, disposition="answered", sip_status=200,
           hangup_side="caller", codec="PCMU")


def test_one_record_per_call(tmp_path: Path) -> None:
    store = CdrStore(tmp_path / "cdr.sqlite")
    assert store.write(BASE)
    assert not store.write(replace(BASE, disposition="failed"))  # the first one stands
    assert [c.disposition for c in store.records()] == ["answered"]
    store.close()


def test_writer_thread_writes_everything_queued_before_close(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite"
    writer = CdrWriter(path)
    for i in range(300):
        writer.write(replace(BASE, call_id=f"c{i}", tenant_id="acme" if i % 2 else "globex",
                             start=float(i)))
    writer.close()
    store = CdrStore(path)
    assert len(list(store.records())) == 300
    # a tenant reads only its own records
    assert {c.tenant_id for c in store.records("globex")} == {"globex"}
    assert len(list(store.records("globex"))) == 150
    assert list(store.records("nobody")) == []
    store.close()


def test_cli_prints_json_lines_and_filters_by_tenant(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite"
    store = CdrStore(path)
    store.write(BASE)
    store.write(replace(BASE, call_id="c2", tenant_id="globex"))
    store.close()
    out = subprocess.run([sys.executable, "-m", "appliance.cdr", "--db", str(path),
                          "--tenant", "globex"], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["call_id"] for r in rows] == ["c2"]
    missing = subprocess.run([sys.executable, "-m", "appliance.cdr", "--db",
                              str(tmp_path / "nope.sqlite")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no CDR database" in missing.stderr
