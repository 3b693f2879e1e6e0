"""Call detail records: exactly one per call, kept in the node's SQLite store.

``python -m appliance.cdr --db run/node/cdr.sqlite [--tenant acme]`` prints the
records as JSON lines, oldest first.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from appliance.pbx.record import Cdr

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


class CdrStore:
    """Append-only CDR table. ``write`` is idempotent per call id (one record per call)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.executescript(_SCHEMA)

    def write(self, cdr: Cdr) -> bool:
        """Store the record; returns False if this call already has one."""
        cur = self._con.execute(
            "INSERT OR IGNORE INTO cdr VALUES "
            "(:call_id, :tenant_id, :caller, :callee, :origin, :destination, :start, :answer,"
            " :end, :duration, :disposition, :sip_status, :hangup_side, :codec)",
            asdict(cdr),
        )
        return cur.rowcount == 1

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
