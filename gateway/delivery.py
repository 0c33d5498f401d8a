"""Delivery runner: moves one sink's records out of the journal, in order, exactly once.

For each sink: read the next batch after its cursor, write it, and only then move the
cursor.  A crash between the write and the cursor move re-sends the batch at the next
start; InfluxDB keeps one point per series and timestamp, so the re-sent points overwrite
themselves and each reading is still one point.

A `PermanentError` (HTTP 400) means some points are bad: the batch is split in halves until
the bad points stand alone; each is quarantined with the server's reason and the rest is
delivered.  Retryable errors back off (capped, jittered); throttling waits `Retry-After`.

A `SchemaConflictError` is not about bad points: the server refuses every point of a series
(InfluxDB's field type conflict, from a point of another type that someone else wrote).  The
batch is split by series - one request per series, not per point - and each refused series is
held: its records go aside in the journal (`gateway.journal.held`), the cursor moves on, the
other series are delivered, and an error line and the health point (`held_series`,
`held_records`) say so.  Every `max_retry_interval` the oldest held records of each held series
are tried again; once the server takes them, the series' held records are delivered, oldest
first, and it is released.  Nothing of a held series goes to the quarantine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from gateway.backoff import Backoff
from gateway.errors import (
    JournalError,
    PermanentError,
    RetryableError,
    SchemaConflictError,
    ThrottledError,
)
from gateway.journal import Journal
from gateway.reading import HealthSample, Point, Record
from gateway.records import RecordRows, Row
from gateway.sinks import Sink
from gateway.sources import Rejected

__all__ = ["DeliveryRunner"]

log = logging.getLogger("remotecal.delivery")


class DeliveryRunner:
    """Runs one sink until `stop()`; then drains what it can before `deadline`."""

    def __init__(self, journal: Journal, sink: Sink, *, max_retry_interval: float = 30.0):
        self.journal = journal
        self.sink = sink
        self.errors = 0
        self.rejected_points = 0
        """Records the sink's server refused, each quarantined: not counted as delivered."""
        self._backoff = Backoff(min(0.5, max_retry_interval), max_retry_interval)
        self._hold_retry_s = max_retry_interval
        self._next_hold_retry = time.monotonic() + max_retry_interval
        self._stopping = False
        self._deadline = float("inf")
        self._state = "ok"
        self._detail = ""
        self.last_delivery_ns: int | None = None
        """Wall time of the last batch the sink took (None: none since start)."""
        self._last_flush = time.monotonic()
        self._hold_rows: list[Row] = []
        self._hold_new: dict[int, str] = {}

    def stop(self, grace_s: float) -> None:
        self._stopping = True
        self._deadline = time.monotonic() + grace_s

    @property
    def state(self) -> tuple[str, str]:
        """("ok", "") or the sink's trouble ("unreachable", "throttled", ...) and its detail."""
        return self._state, self._detail

    def _set_state(self, state: str, detail: str) -> None:
        self._detail = "" if state == "ok" else detail
        if state != self._state:
            if state == "ok":
                log.info("sink %r: delivering again (%s)", self.sink.name, detail)
            else:
                log.warning("sink %r: %s - %s; records stay in the journal", self.sink.name, state, detail)
            self._state = state

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, self._deadline - time.monotonic())))

    async def run(self) -> None:
        name = self.sink.name
        while True:
            if self._stopping and time.monotonic() >= self._deadline:
                return
            try:
                if self._hold_retry_due():
                    await self._retry_held()
                batch = await self.journal.next_batch(name, self.sink.batch_size)
            except JournalError as exc:
                await self._journal_trouble(exc)
                continue
            except RetryableError as exc:  # a held series' retry
                await self._trouble(exc)
                continue
            if batch is None:
                if self._stopping:
                    return
                idle = 1.0
                if self.journal.held_series(name):
                    idle = min(idle, max(0.0, self._next_hold_retry - time.monotonic()))
                await self.journal.wait_for_records(name, idle)
                continue
            if len(batch) < self.sink.batch_size and not self._stopping:
                wait = self._last_flush + self.sink.flush_interval_s - time.monotonic()
                if wait > 0:
                    await self._sleep(wait)
                    continue
            self._hold_rows, self._hold_new = [], {}
            started = time.monotonic()
            rejected_before = self.rejected_points
            try:
                records = self._divert_held(batch.records)
                if records:
                    await self._write(records)
            except RetryableError as exc:
                await self._trouble(exc)
                continue
            except JournalError as exc:  # quarantining a refused point failed
                await self._journal_trouble(exc)
                continue
            self._backoff.reset()
            self._set_state("ok", f"{self.journal.pending_for(name)} record(s) pending")
            try:
                taken = len(batch) - len(self._hold_rows) - (self.rejected_points - rejected_before)
                await self.journal.commit_delivery(name, batch.last_seq, taken,
                                                   hold=self._hold_rows, hold_new=self._hold_new)
            except JournalError as exc:  # delivered, cursor not moved: the batch goes again
                await self._journal_trouble(exc)
                continue
            self.last_delivery_ns = time.time_ns()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("sink %r: delivered %d record(s) up to #%d in %.0f ms; %d pending", name,
                          taken, batch.last_seq,
                          (time.monotonic() - started) * 1e3, self.journal.pending_for(name))
            if self._hold_new:
                self._say_held(batch.records)
            self._last_flush = time.monotonic()

    async def _trouble(self, exc: RetryableError) -> None:
        self.errors += 1
        if isinstance(exc, ThrottledError):
            self._set_state("throttled", str(exc))
            await self._sleep(exc.retry_after)
        else:
            self._set_state("unreachable", str(exc))
            await self._sleep(self._backoff.next())

    async def _journal_trouble(self, exc: JournalError) -> None:
        """The journal could not be read or its cursor not moved (disk full, I/O error): try
        again after a backoff; a batch written meanwhile is written again, as after a crash."""
        self._set_state("journal unavailable", str(exc))
        await self._sleep(self._backoff.next())

    def _divert_held(self, records: Sequence[Record]) -> Sequence[Record]:
        """The batch without the records of held series (those go to `_hold_rows`)."""
        held = self.journal.held_series(self.sink.name)
        if not held or not isinstance(records, RecordRows):
            return records
        keep: list[Row] = []
        for row in records.rows:
            (self._hold_rows if row[1] in held else keep).append(row)
        return RecordRows(keep, records.series) if self._hold_rows else records

    async def _write(self, records: Sequence[Record]) -> None:
        """Write all records; isolate and quarantine the ones the server refuses, hold the
        series it refuses as a whole."""
        try:
            await self.sink.write(records)
            return
        except SchemaConflictError as exc:
            if isinstance(records, RecordRows):
                by_series = _by_series(records)
                if len(by_series) == 1:
                    self._hold(records, exc.reason)
                    return
                for one in by_series:
                    await self._write(one)
                return
            if len(records) == 1:
                await self._quarantine(records[0], exc.reason)
                return
        except PermanentError as exc:
            if len(records) == 1:
                await self._quarantine(records[0], exc.reason)
                return
        mid = len(records) // 2
        await self._write(records[:mid])
        await self._write(records[mid:])

    def _hold(self, records: RecordRows, reason: str) -> None:
        sid = records.rows[0][1]
        if sid not in self.journal.held_series(self.sink.name):
            self._hold_new[sid] = reason[:500]
        self._hold_rows += records.rows

    def _say_held(self, records: RecordRows) -> None:
        names = [_series_name(records, sid) for sid in self._hold_new]
        log.error("sink %r: the server refuses %d series as a whole (%s): %s%s. Their readings are HELD "
                  "in the journal, not quarantined, and tried again every %.0f s; the other series are "
                  "delivered. Resolve the conflict on the server (a field of another type in the same "
                  "measurement and shard - drop the foreign points' shard, or move them)", self.sink.name,
                  len(names), next(iter(self._hold_new.values())), ", ".join(names[:5]),
                  f" and {len(names) - 5} more" if len(names) > 5 else "", self._hold_retry_s)

    def _hold_retry_due(self) -> bool:
        if not self.journal.held_series(self.sink.name) or time.monotonic() < self._next_hold_retry:
            return False
        self._next_hold_retry = time.monotonic() + self._hold_retry_s
        return True

    async def _retry_held(self) -> None:
        """Try each held series' oldest records again; deliver all of a series the server takes
        now, then release it."""
        name = self.sink.name
        for sid in list(self.journal.held_series(name)):
            while (rows := await self.journal.held_batch(name, sid, self.sink.batch_size)) is not None:
                self._hold_rows, self._hold_new = [], {}
                rejected_before = self.rejected_points
                await self._write(rows)
                if self._hold_rows:
                    break  # still refused: held on
                taken = len(rows) - (self.rejected_points - rejected_before)
                if await self.journal.release_held(name, sid, rows.rows[-1][0], taken):
                    log.info("sink %r: the server takes series %s again: its held readings are "
                             "delivered and it is released", name, _series_name(rows, sid))
                    break

    async def _quarantine(self, record: Record, reason: str) -> None:
        self.rejected_points += 1
        what = ("gateway_health" if isinstance(record, HealthSample)
                else record.measurement if isinstance(record, Point) else record.channel)
        log.warning("sink %r: the server refused a point of %s: %s; it is quarantined",
                    self.sink.name, what, reason)
        await self.journal.append([], [Rejected(f"sink:{self.sink.name}", reason[:500], what,
                                                repr(record).encode(), time.time_ns())])


def _by_series(records: RecordRows) -> list[RecordRows]:
    groups: dict[int, list[Row]] = {}
    for row in records.rows:
        groups.setdefault(row[1], []).append(row)
    return [RecordRows(rows, records.series) for rows in groups.values()]


def _series_name(records: RecordRows, sid: int) -> str:
    s = records.series.get(sid)
    if s is None:
        return f"#{sid}"
    if s.channel:
        return f"{s.measurement} channel={s.channel} run={s.run}"
    return f"{s.measurement} {s.site}/{s.gateway}"
