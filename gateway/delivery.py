"""Delivery runner: moves one sink's records out of the journal, in order, exactly once.

For each sink: read the next batch after its cursor, write it, and only then move the
cursor.  A crash between the write and the cursor move re-sends the batch at the next
start; InfluxDB keeps one point per series and timestamp, so the re-sent points overwrite
themselves and each reading is still one point.

A `PermanentError` (HTTP 400) means some points are bad: the batch is split in halves until
the bad points stand alone; each is quarantined with the server's reason and the rest is
delivered.  Retryable errors back off (capped, jittered); throttling waits `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from gateway.backoff import Backoff
from gateway.errors import JournalError, PermanentError, RetryableError, ThrottledError
from gateway.journal import Journal
from gateway.reading import HealthSample, Record
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
        self._backoff = Backoff(min(0.5, max_retry_interval), max_retry_interval)
        self._stopping = False
        self._deadline = float("inf")
        self._state = "ok"
        self._last_flush = time.monotonic()

    def stop(self, grace_s: float) -> None:
        self._stopping = True
        self._deadline = time.monotonic() + grace_s

    def _set_state(self, state: str, detail: str) -> None:
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
                batch = await self.journal.next_batch(name, self.sink.batch_size)
            except JournalError as exc:
                await self._journal_trouble(exc)
                continue
            if batch is None:
                if self._stopping:
                    return
                await self.journal.wait_for_records(name, 1.0)
                continue
            if len(batch) < self.sink.batch_size and not self._stopping:
                wait = self._last_flush + self.sink.flush_interval_s - time.monotonic()
                if wait > 0:
                    await self._sleep(wait)
                    continue
            try:
                await self._write(batch.records)
            except ThrottledError as exc:
                self.errors += 1
                self._set_state("throttled", str(exc))
                await self._sleep(exc.retry_after)
                continue
            except RetryableError as exc:
                self.errors += 1
                self._set_state("unreachable", str(exc))
                await self._sleep(self._backoff.next())
                continue
            except JournalError as exc:  # quarantining a refused point failed
                await self._journal_trouble(exc)
                continue
            self._backoff.reset()
            self._set_state("ok", f"{self.journal.pending_for(name)} record(s) pending")
            try:
                await self.journal.commit_delivery(name, batch.last_seq, len(batch))
            except JournalError as exc:  # delivered, cursor not moved: the batch goes again
                await self._journal_trouble(exc)
                continue
            self._last_flush = time.monotonic()

    async def _journal_trouble(self, exc: JournalError) -> None:
        """The journal could not be read or its cursor not moved (disk full, I/O error): try
        again after a backoff; a batch written meanwhile is written again, as after a crash."""
        self._set_state("journal unavailable", str(exc))
        await self._sleep(self._backoff.next())

    async def _write(self, records: Sequence[Record]) -> None:
        """Write all records; isolate and quarantine the ones the server refuses."""
        try:
            await self.sink.write(records)
            return
        except PermanentError as exc:
            if len(records) == 1:
                await self._quarantine(records[0], exc.reason)
                return
        mid = len(records) // 2
        await self._write(records[:mid])
        await self._write(records[mid:])

    async def _quarantine(self, record: Record, reason: str) -> None:
        self.rejected_points += 1
        what = "gateway_health" if isinstance(record, HealthSample) else record.channel
        log.warning("sink %r: the server refused a point of %s: %s; it is quarantined",
                    self.sink.name, what, reason)
        await self.journal.append([], [Rejected(f"sink:{self.sink.name}", reason[:500], what,
                                                repr(record).encode(), time.time_ns())])
