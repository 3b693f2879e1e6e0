"""Call detail records: exactly one per call, kept in the node's SQLite store.

``python -m appliance.cdr --db run/node/cdr.sqlite [--tenant acme]`` prints the
records as JSON lines, oldest first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import queue
import sqlite3
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from appliance.pbx.record import Cdr

log = logging.getLogger("branchline.cdr")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cdr (
    call_id      TEXT PRIMARY KEY,
    tenant_id    TEXT,
    caller       TEXT NOT NULL,
    callee       TEXT NOT NULL,
    origin       TEXT NOT NULL,
    destination  TEXT NOT NULL,
    start        REAL NOT NULL,
    answer       REAL,
    end          REAL NOT NULL,
    duration     REAL NOT NULL,
    disposition  TEXT NOT NULL,
    sip_status   INTEGER NOT NULL,
    hangup_side  TEXT NOT NULL,
    codec        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cdr_tenant_start ON cdr (tenant_id, start);
"""


_INSERT = (
    "INSERT OR IGNORE INTO cdr VALUES "
    "(:call_id, :tenant_id, :caller, :callee, :origin, :destination, :start, :answer,"
    " :end, :duration, :disposition, :sip_status, :hangup_side, :codec)"
)


class CdrStore:
    """Append-only CDR table. ``write`` is idempotent per call id (one record per call)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.executescript(_SCHEMA)

    def write(self, cdr: Cdr) -> bool:
        """Store the record; returns False if this call already has one."""
        cur = self._con.execute(_INSERT, asdict(cdr))
        return cur.rowcount == 1

    def write_many(self, cdrs: list[Cdr]) -> None:
        """Store a batch in one transaction (one disk sync for the lot)."""
        self._con.execute("BEGIN")
        try:
            self._con.executemany(_INSERT, [asdict(c) for c in cdrs])
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    def records(self, tenant_id: str | None = None) -> Iterator[Cdr]:
        query = "SELECT * FROM cdr"
        args: tuple[str, ...] = ()
        if tenant_id is not None:
            query += " WHERE tenant_id = ?"
            args = (tenant_id,)
        for row in self._con.execute(query + " ORDER BY start, rowid", args):
            yield Cdr(*row)

    def close(self) -> None:
        self._con.close()


class CdrWriter:
    """Writes CDRs from a thread of its own, so that the node's event loop never waits
    for the disk (each commit is synced; a burst of calls ending shares one commit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[Cdr | None] = queue.SimpleQueue()
        self._store = CdrStore(path)  # opened here so a bad path fails at start
        self._thread = threading.Thread(target=self._run, name="cdr-writer")
        self._thread.start()

    def write(self, cdr: Cdr) -> None:
        self._queue.put(cdr)

    def _run(self) -> None:
        store = self._store
        try:
            while True:
                batch = [self._queue.get()]
                with contextlib.suppress(queue.Empty):
                    while len(batch) < 500:
                        batch.append(self._queue.get_nowait())
                records = [c for c in batch if c is not None]
                if records:
                    try:
                        store.write_many(records)
                    except sqlite3.Error:
                        log.exception("CDR batch of %d not written", len(records))
                if None in batch:
                    return
        finally:
            store.close()

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the node's CDRs as JSON lines")
    parser.add_argument("--db", type=Path, required=True, help="path of the node's cdr.sqlite")
    parser.add_argument("--tenant", help="only this tenant's records")
    args = parser.parse_args(argv)
    if not args.db.exists():
        print(f"error: no CDR database at {args.db}", file=sys.stderr)
        return 2
    store = CdrStore(args.db)
    try:
        for cdr in store.records(args.tenant):
            print(json.dumps(asdict(cdr), sort_keys=True))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
