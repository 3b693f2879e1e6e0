"""The daily per-agent and per-queue statistics records of the node's ACDs (edge module;
the accounting itself is the pure :mod:`appliance.acd.daily`), docs/ACD.md "Daily
statistics".

Every ACD event the node publishes is folded into a :class:`DailyStats` (local dates by
``timezone``), and each tenant's records of a day are written to
``<state dir>/acd-daily/<tenant>/<YYYY-MM-DD>.json`` (a temporary file renamed over the
old one): final when the day closes (the first event, or read, of a later day), and
meanwhile every ``flush_every`` events and on :meth:`DailyRecords.write` with
``everything`` (the node stopping), with the states still open counted up to then. A
closed day is written once and dropped from memory. On start the store replays the
events of yesterday and today from ``acd-events.jsonl`` (found by bisection, then
streamed line by line) and logs every agent out as of the last of them (or the later
``until`` of a record written on close): a restart loses none of today's counts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from appliance.acd.daily import DailyStats, DayKey, DayRecords, parse_date
from appliance.ids import ID_RE

log = logging.getLogger("branchline.daily")
FLUSH_EVERY = 500  # events between two writes of the open days' records


class DailyRecords:
    """``timezone``: the zoneinfo name of the records' dates; ``target(tenant, queue)``:
    a queue's service-level target now; ``clock``: the wall clock (epoch seconds) the
    events are stamped with. Building the store replays the day's events (blocking: run
    it before serving)."""

    def __init__(self, events_path: Path, directory: Path, *,
                 target: Callable[[str, str], float | None], timezone: str = "UTC",
                 clock: Callable[[], float] = time.time,
                 flush_every: int = FLUSH_EVERY) -> None:
        self.events_path, self.directory = events_path, directory
        self._clock = clock
        self._flush_every = max(1, flush_every)
        self._dirty: set[DayKey] = set()  # days with events not yet written
        self._unwritten = 0  # events since the last write
        self.stats = self._rebuild(timezone, target)

    async def day(self, tenant_id: str, day: dt.date | str | None = None,
                  agent: str | None = None) -> dict[str, Any]:
        """The tenant's records of ``day`` (a date or ``YYYY-MM-DD``: ValueError when it
        is not one; today by default, in the desk's timezone):
        ``{date, timezone, final, agents, queues}``, only ``agent``'s own agent record
        when given. The days held (today, and a day whose
        close no event came to yet) come from memory with the open states counted up to
        now; earlier days from their file (no file: empty lists)."""
        if isinstance(day, str):
            day = parse_date(day)
        now = self._clock()
        self._store(self.stats.advance(now))
        day = day if day is not None else self.stats.day_of(now)
        found = self.stats.records(tenant_id, day, now)
        doc = found.to_dict() if found is not None else \
            await asyncio.to_thread(self._read_day, tenant_id, day)
        if doc is None:
            doc = DayRecords(tenant_id=tenant_id, date=day, timezone=self.stats.timezone,
                             final=day < self.stats.day_of(now), until=None, agents=(),
                             queues=()).to_dict()
        agents = [a for a in doc.get("agents", []) if agent is None or a.get("agent") == agent]
        return {"date": day.isoformat(), "timezone": doc.get("timezone", self.stats.timezone),
                "final": bool(doc.get("final")), "agents": agents,
                "queues": doc.get("queues", [])}

    def count(self, tenant_id: str, doc: dict[str, Any]) -> None:
        """Fold one published event document of the tenant into its day."""
        self._store(self.stats.add(doc))
        today = self.stats.today
        if today is not None:
            self._dirty.add((tenant_id, today))
        self._unwritten += 1
        if self._unwritten >= self._flush_every:
            self.write()

    def write(self, *, everything: bool = False) -> None:
        """Write the records of the days with new events (``everything``: of every day
        held), open states counted up to now, and those of the days that closed."""
        now = self._clock()
        self._store(self.stats.advance(now))
        for tenant, day in sorted(set(self.stats.days()) if everything else self._dirty):
            found = self.stats.records(tenant, day, now)
            if found is not None:
                self._write_day(found)
        self._dirty.clear()
        self._unwritten = 0

    def daily_path(self, tenant_id: str, day: dt.date) -> Path | None:
        """Where a tenant's records of a day are written (None: not a tenant id)."""
        if not ID_RE.fullmatch(tenant_id):
            return None
        return self.directory / tenant_id / f"{day.isoformat()}.json"

    def _store(self, closed: list[DayKey], *, replayed: bool = False) -> None:
        """Write the days just closed (final) and drop them from memory. ``replayed``
        (the replay on start): a day already written final is left as it was (it was
        closed with everything the node knew then)."""
        for tenant, day in closed:
            found = self.stats.records(tenant, day)
            if found is not None and not (replayed and self._final_on_disk(tenant, day)):
                self._write_day(found)
            self.stats.forget(tenant, day)
            self._dirty.discard((tenant, day))

    def _write_day(self, records: DayRecords) -> None:
        path = self.daily_path(records.tenant_id, records.date)
        if path is None:
            log.error("not writing daily ACD records of %r: not a tenant id",
                      records.tenant_id)
            return
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(records.to_dict(), fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot store daily ACD records %s: %s", path, exc)

    def _read_day(self, tenant_id: str, day: dt.date) -> dict[str, Any] | None:
        path = self.daily_path(tenant_id, day)
        if path is None:
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("cannot read daily ACD records %s: %s", path, exc)
            return None
        return doc if isinstance(doc, dict) else None

    def _final_on_disk(self, tenant_id: str, day: dt.date) -> bool:
        doc = self._read_day(tenant_id, day)
        return doc is not None and doc.get("final") is True

    def _rebuild(self, timezone: str, target: Callable[[str, str], float | None]
                 ) -> DailyStats:
        """The daily records of yesterday and today, replayed from the event log; every
        agent is then logged out as of the node's last known moment (the ACD starts
        empty)."""
        now = self._clock()
        calendar = DailyStats(timezone)
        today = calendar.day_of(now)
        window = calendar.day_start(today - dt.timedelta(days=1))
        self.stats = DailyStats(timezone, service_level_target=target, origin=window)
        for doc in read_events(self.events_path, window):
            self._store(self.stats.add(doc), replayed=True)
        until = self.stats.last_wall
        for day in (today - dt.timedelta(days=1), today):  # a record written on close
            for tenant_dir in _subdirs(self.directory):
                written = self._read_day(tenant_dir, day)
                stamp = None if written is None or written.get("final") \
                    else written.get("until")
                if isinstance(stamp, int | float):
                    stamp = min(float(stamp), now)
                    until = stamp if until is None else max(until, stamp)
        if until is not None:
            self._store(self.stats.restart(until), replayed=True)
            self._store(self.stats.advance(now), replayed=True)
            self._dirty.update(self.stats.days())
        return self.stats



def read_events(path: Path, since: float) -> Iterator[dict[str, Any]]:
    """The event documents of ``path`` (acd-events.jsonl) published at ``since`` (epoch
    seconds) or later, in file order. The log is in publishing order, so the first one
    is found by bisection over byte offsets and only the lines from there are read, one
    at a time (a wall clock stepped back across ``since`` may hide a few). Lines that
    do not parse (a write cut short) are skipped."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        fh.seek(_first_offset(fh, since))
        for line in fh:
            wall = _wall_of(line)
            if wall is None or wall < since:
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                yield doc


_WALL_RE = re.compile(rb'"wall": (-?[0-9][0-9.eE+-]*)')
_BISECT_BELOW = 1 << 16  # bytes: below this, read on rather than bisect


def _wall_of(line: bytes) -> float | None:
    found = _WALL_RE.search(line)
    if found is None:
        return None
    try:
        return float(found.group(1))
    except ValueError:
        return None


def _first_offset(fh: BinaryIO, since: float) -> int:
    """The offset of a line at or before the first line stamped ``since`` or later."""
    lo, hi = 0, fh.seek(0, os.SEEK_END)
    while hi - lo > _BISECT_BELOW:
        mid = (lo + hi) // 2
        fh.seek(mid)
        fh.readline()  # the rest of the line ``mid`` falls in
        pos, wall = fh.tell(), None
        while wall is None and pos < hi:
            line = fh.readline()
            if not line:
                break
            wall = _wall_of(line)
            if wall is None:
                pos = fh.tell()
        if wall is None or wall >= since:
            hi = mid
        else:
            lo = pos  # that line and every one before it are older than ``since``
    return lo


def _subdirs(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir() if p.is_dir())
    except OSError:
        return []
