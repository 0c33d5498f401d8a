"""`Journal`: the group commit, the transactions and the thread that all SQLite work runs on;
the tables themselves are its parts (`series`, `records`, `cursors`, `quarantine`,
`redelivery`), each with its own bound.

A commit that fails (disk full, I/O error) is tried again, the same submissions first, after
a backoff of at most `COMMIT_RETRY_MAX_S`, for as long as it fails: nothing submitted is
dropped, and an MQTT message is acknowledged once its retry commits.  Meanwhile `failing`
is set and `submit` refuses new records (`JournalFull`): an MQTT source waits for
`wait_writable()` (the broker keeps its messages), a polled one counts them as `refused`.
Only a journal closed while its commits still fail gives its submissions up, counted as
`refused` and logged.  A record whose data SQLite cannot store (a time beyond 64 bits, a
value that is not a number) never stalls the others: its submission goes to the quarantine.

Durability: `fsync = "full"` (default) fsyncs the WAL at every commit, so an accepted record
survives a power cut; `"normal"` fsyncs only at checkpoints and survives a crash or SIGKILL
of the gateway but not of the machine.

All SQLite work runs on one dedicated thread, so the event loop never waits on a disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.backoff import Backoff
from gateway.errors import JournalError, JournalFull
from gateway.journal.control import CommandRow, ControlTables
from gateway.journal.cursors import Batch, Cursors
from gateway.journal.held import HeldSeries
from gateway.journal.lock import DataDirLock
from gateway.journal.quarantine import (
    PAYLOAD_PREFIX,
    Quarantine,
    QuarantineInsert,
    QuarantineRow,
    read_quarantine,
)
from gateway.journal.records import InsertRow, RecordsTable
from gateway.journal.recovery import Marker, damage, move_aside, salvage
from gateway.journal.redelivery import RedeliveryKeys
from gateway.journal.runs import RunLogRow, RunRow, RunTable
from gateway.journal.schema import META_DDL, check_version, journal_id, meta_get, meta_set
from gateway.journal.series import IDLE_S, SeriesTable
from gateway.reading import Point, Reading, Record
from gateway.records import HEALTH, READING, RecordRows, Row
from gateway.sources import Rejected

__all__ = ["COMMIT_RETRY_MAX_S", "PARTS", "Journal", "JournalStats"]

log = logging.getLogger("remotecal.journal")
T = TypeVar("T")

PARTS: tuple[Any, ...] = (SeriesTable, RecordsTable, Cursors, Quarantine, RedeliveryKeys, HeldSeries,
                          ControlTables, RunTable)
"""Every part that owns tables; the journal's schema is their `DDL` (see `schema`)."""

COMMIT_RETRY_MAX_S = 0.5
"""A failed commit is tried again after at most this long (a jittered backoff from 50 ms): the
longest wait between space freed on a full disk and input flowing again."""
_STILL_FAILING_LOG_S = 60.0
_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
_MARKER_EVERY_S = 5.0
"""The marker (`recovery.Marker`) is written at most this often, when the state changed."""
_INT64 = range(-(2**63), 2**63)


@dataclass(slots=True)
class JournalStats:
    """Counters since start; `pending` and `size_bytes` are refreshed at each commit."""

    received: int = 0
    """Readings committed since start."""
    records: int = 0
    """Records committed since start: the readings, and the health and run points."""
    pending_at_start: int = 0
    """`pending` when the journal was opened: records a previous run left for the sinks."""
    rejected: int = 0
    duplicates: int = 0
    refused: int = 0
    dropped: int = 0
    commits: int = 0
    pending: int = 0
    size_bytes: int = 0
    full: bool = False
    series: int = 0
    """Series in the journal's table (and in memory)."""
    held_series: int = 0
    """Series a sink holds: its server refuses them as a whole (a schema conflict)."""
    held_records: int = 0
    """Records of held series, kept for their sink (they count as pending)."""
    quarantine_dropped: int = 0
    """Quarantine rows its bounds deleted (oldest first)."""
    quarantined: int = 0
    """Rows in the quarantine now (`gateway quarantine` lists them)."""
    failing: bool = False
    """Commits fail (disk full, I/O error): they are retried; new records wait or are refused."""
    lost: int = 0
    """Records known lost to a damaged or vanished journal file, in all (kept in the journal)."""
    damaged: int = 0
    """Times the journal was found damaged, vanished or behind its marker, in all."""
    delivered: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Submission:
    records: Sequence[Record]
    rejected: Sequence[Rejected]
    key: bytes | None
    check_seen: bool
    on_committed: Callable[[], None] | None
    future: asyncio.Future[None] | None
    also: Callable[[sqlite3.Connection], None] | None = None


class Journal:
    """Durable, ordered store of records between the sources and the sinks."""

    def __init__(
        self,
        path: str | Path,
        sinks: Iterable[str],
        *,
        fsync: str = "full",
        max_size: int = 2 * 1024**3,
        on_full: str = "refuse",
        commit_interval: float = 0.0,
        quarantine_max: int = 100_000,
        series_idle_s: float = IDLE_S,
    ):
        self.path = Path(path)
        self.sinks = list(sinks)
        self.max_size = max_size
        self.on_full = on_full
        self.commit_interval = commit_interval
        self.quarantine_max = quarantine_max
        self.stats = JournalStats(delivered={s: 0 for s in self.sinks})
        self._fsync = fsync
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._busy_since: float | None = None
        """monotonic() when the journal's thread began the SQLite call it is in (None: idle)."""
        self._db: sqlite3.Connection | None = None
        self._lock = DataDirLock(self.path.parent)
        self._marker = Marker(self.path.parent)
        self._marker_time = 0.0
        self._id = ""
        self._series = SeriesTable(series_idle_s)
        self._records = RecordsTable()
        self._cursors = Cursors(self.sinks)
        self._quarantine = Quarantine(quarantine_max, max_size)
        self._keys = RedeliveryKeys(max_size)
        self._held = HeldSeries()
        self._staging = (self._series, self._quarantine, self._keys, self._held)  # state to commit
        self._queue: list[_Submission] = []
        self._wakeup = asyncio.Event()
        self._appended = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._closing = False
        self._close_requested = asyncio.Event()
        self._damaged = asyncio.Event()
        self._damage = ""
        self._writable = asyncio.Event()
        self._writable.set()
        self._failing_since = 0.0
        self._failures = 0
        self._failure_logged = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> Journal:
        await self._run(self._open_sync)
        self.stats.pending_at_start = self.stats.pending
        self._committer = asyncio.create_task(self._commit_loop(), name="journal-committer")
        return self

    async def close(self) -> None:
        """Commit what was submitted (one last try if commits fail), then close the file."""
        self._closing = True
        self._close_requested.set()
        self._wakeup.set()
        if self._committer is not None:
            await self._committer
        await self._run(self._close_sync)
        self._pool.shutdown(wait=True)

    async def __aenter__(self) -> Journal:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from None
        self._lock.acquire()
        try:
            self._open_checked()
        except BaseException:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._lock.release()
            raise

    def _open_checked(self) -> None:
        """Open the journal - or, found damaged, set it aside and recover it into a new one;
        found missing or behind while the marker says records were pending, say so loudly."""
        marker = self._marker.read()
        wal = self.path.with_name(self.path.name + "-wal")
        empty = (self.path.exists() and self.path.stat().st_size == 0
                 and not (wal.exists() and wal.stat().st_size))
        if empty:
            move_aside(self.path)  # an empty file, kept as found
        if self.path.exists():
            problem = damage(self.path)
            if problem is not None:
                self._recover(problem)
                return
            self._connect()
            self._check_marker(marker)
        else:
            self._connect()
            if marker is not None:
                self._vanished(marker, "empty" if empty else "missing")
        self._load()

    def _connect(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self._fsync == 'full' else 'NORMAL'}")
            db.execute("PRAGMA foreign_keys=OFF")
            db.executescript(META_DDL + "".join(part.DDL for part in PARTS))
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from None
        self._db = db
        check_version(db, self.path)
        self._id = journal_id(db)
        self.stats.lost = int(meta_get(db, "lost_records") or 0)
        self.stats.damaged = int(meta_get(db, "damaged") or 0)

    def _load(self) -> None:
        db = self._need_db()
        self._records.load(db)
        self._series.load(db, self._records.last_seq)
        self._quarantine.load(db)
        self._keys.load(db)
        with self._transaction():
            self._cursors.load(db, self._records.floor(db))
            self._held.load(db, self.sinks)
            self._quarantine.trim(db)  # quarantine_max may have been lowered
        self._refresh_sync()
        self._marker.write(self._id, self.stats.pending, self._records.last_seq)
        if self.stats.pending:
            log.info("journal: %d record(s) from a previous run wait for delivery", self.stats.pending)

    def _count_loss(self, lost: int) -> None:
        """Add a loss to the journal's own count (in the open transaction)."""
        db = self._need_db()
        self.stats.lost += lost
        self.stats.damaged += 1
        meta_set(db, "lost_records", str(self.stats.lost))
        meta_set(db, "damaged", str(self.stats.damaged))

    def _recover(self, problem: str) -> None:
        marker = self._marker.read()
        aside = move_aside(self.path)
        self._connect()
        with self._transaction() as db:
            got = salvage(aside, db)
            self.stats.lost, self.stats.damaged = got.lost_before, got.damaged_before
            expected = got.expected
            if expected is None and marker is not None:
                expected = int(marker.get("pending", 0))
            lost = max(0, expected - got.pending) if expected is not None else 0
            self._count_loss(lost)
        how_many = (f"{got.pending} of {expected} pending record(s) recovered, {lost} LOST"
                    if expected is not None else
                    f"{got.pending} pending record(s) recovered, how many were lost is unknown")
        log.error("journal: %s is damaged (%s); moved aside to %s (kept for recovery); into a new journal: "
                  "%s (and %d series, %d quarantine rows, %d redelivery keys, %d held records)%s", self.path,
                  problem, aside.name, how_many, got.series, got.quarantine, got.keys, got.held,
                  f"; unreadable: {', '.join(got.unreadable)}" if got.unreadable else "")
        self._load()

    def _vanished(self, marker: dict[str, Any], how: str) -> None:
        pending = int(marker.get("pending", 0))
        if pending <= 0:
            log.warning("journal: %s is %s; %s says nothing was pending (%s): a new journal is made",
                        self.path, how, self._marker.path.name, marker.get("updated", "?"))
            return
        with self._transaction():
            self._count_loss(pending)
        log.error("journal: %s is %s, but %s says %d record(s) were pending (%s): they are LOST; a new "
                  "journal is made", self.path, how, self._marker.path.name, pending,
                  marker.get("updated", "?"))

    def _check_marker(self, marker: dict[str, Any] | None) -> None:
        """The journal opened well: is it the one the marker describes, and not behind it?"""
        if marker is None:
            return
        db = self._need_db()
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()
        last = int(row[0]) if row else 0
        if marker.get("journal") != self._id:
            if int(marker.get("pending", 0)) > 0:
                log.error("journal: %s is not the journal %s describes, which had %s record(s) pending (%s): "
                          "was it replaced? Those records may be lost", self.path, self._marker.path.name,
                          marker.get("pending"), marker.get("updated", "?"))
            return
        behind = int(marker.get("last_seq", 0)) - last
        if behind > 0:
            with self._transaction():
                self._count_loss(behind)
            log.error("journal: %s ends at record %d, but %s saw record %d (%s): at least %d record(s) are "
                      "LOST (a lost -wal file?)", self.path, last, self._marker.path.name,
                      marker.get("last_seq"), marker.get("updated", "?"), behind)

    def _close_sync(self) -> None:
        if self._db is not None:
            self._marker.write(self._id, self.stats.pending, self._records.last_seq)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None
        self._lock.release()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the journal's thread; SQLite's errors come out as `JournalError`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, fn, *args)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", "") in _DAMAGED and not self._damaged.is_set():
                log.error("journal: %s is damaged (%s): the gateway stops, and its next start sets the "
                          "journal aside and recovers what SQLite can read of it", self.path, exc)
                self._damage = str(exc)
                self._damaged.set()
            raise JournalError(f"{self.path}: {exc}") from exc

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        self._busy_since = time.monotonic()
        try:
            return fn(*args)
        finally:
            self._busy_since = None

    def busy_for(self) -> float:
        """How long the journal's thread has been in its current call [s] (0 when idle): a
        storage that hangs (a dead disk, an NFS server gone) shows here, not in the event loop."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    async def wait_damaged(self) -> str:
        """Return (why) once SQLite reported the open journal damaged."""
        await self._damaged.wait()
        return self._damage

    # -- writing -----------------------------------------------------------------------

    def submit(
        self,
        records: Sequence[Record],
        rejected: Sequence[Rejected] = (),
        *,
        dedupe: bytes | None = None,
        redelivered: bool = False,
        on_committed: Callable[[], None] | None = None,
        wait: bool = False,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> asyncio.Future[None] | None:
        """Queue records (and rejected inputs) for the next group commit.

        `on_committed` runs on the event loop once they are durable.  `dedupe` (see
        `dedupe_key`) is remembered; when `redelivered` is set and the key was committed
        before, the records are skipped (a broker redelivery) while `on_committed` still
        runs.  Only redeliveries are checked: a sensor may well send the same bytes twice.
        Raises `JournalFull` for records while the journal is full (policy `refuse`) or its
        commits fail; rejected inputs alone are always taken.  With `wait`, returns a future
        that resolves at the commit (or fails if the journal closes before it could commit).
        """
        if self._closing:
            raise JournalError("the journal is closing")
        if records and not self.writable:
            if self.stats.failing:
                raise JournalFull(f"journal {self.path}: commits fail (disk full?); input waits")
            raise JournalFull(f"journal {self.path} is full ({self.stats.size_bytes} bytes)")
        fut = asyncio.get_running_loop().create_future() if wait else None
        self._queue.append(_Submission(records, rejected, dedupe, redelivered, on_committed, fut, also))
        self._wakeup.set()
        return fut

    async def append(self, records: Sequence[Record], rejected: Sequence[Rejected] = (), *,
                     also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Submit and wait until durable.  `also` runs (on the journal's thread) in the
        transaction that commits the records: a table of another part (the run state, see
        `runs`) changes with them or not at all."""
        fut = self.submit(records, rejected, wait=True, also=also)
        assert fut is not None
        await fut

    async def flush(self) -> None:
        """Return once everything submitted before this call is committed (or has failed for
        good): an empty submission at the end of the queue, and commits keep their order."""
        await self.append(())

    @property
    def writable(self) -> bool:
        """Would `submit` take records now?  Not while full (policy `refuse`) or failing."""
        return not self.stats.failing and not (self.stats.full and self.on_full == "refuse")

    async def wait_writable(self) -> None:
        """Return once `submit` takes records again (at once if it does now)."""
        while not self.writable and not self._closing:
            self._writable.clear()
            await self._writable.wait()

    def _state_changed(self) -> None:
        """After journal work that may have changed `full` or `failing`: wake the waiters."""
        if self.writable or self._closing:
            self._writable.set()

    async def _commit_loop(self) -> None:
        retry = Backoff(0.05, COMMIT_RETRY_MAX_S)
        held: list[_Submission] = []  # a group whose commit failed: committed again, first
        while True:
            if not held:
                await self._wakeup.wait()
                self._wakeup.clear()
                if self.commit_interval and not self._closing:
                    await asyncio.sleep(self.commit_interval)
            subs, held, self._queue = held + self._queue, [], []
            if subs:
                try:
                    skipped = await self._run(self._commit_sync, subs)
                except Exception as exc:  # disk full, I/O error: nothing of this group is acked
                    self._commit_failed(exc, subs)
                    if self._closing:
                        self._give_up(subs, exc)
                        self._state_changed()
                        return
                    held = subs
                    self._state_changed()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._close_requested.wait(), retry.next())
                    continue
                retry.reset()
                if self.stats.failing:
                    self._commits_work_again()
                self._state_changed()
                for i, s in enumerate(subs):
                    if i not in skipped:
                        self.stats.received += sum(1 for r in s.records if isinstance(r, Reading))
                        self.stats.records += len(s.records)
                    self.stats.rejected += len(s.rejected)
                    if s.on_committed is not None:
                        s.on_committed()
                    if s.future is not None and not s.future.done():
                        s.future.set_result(None)
                self._appended.set()
            if self._closing and not self._queue:
                return

    def _commit_failed(self, exc: Exception, subs: list[_Submission]) -> None:
        self._failures += 1
        now = time.monotonic()
        if not self.stats.failing:
            self.stats.failing = True
            self._failing_since = self._failure_logged = now
            n = sum(len(s.records) for s in subs)
            log.error("journal: commit failed: %s; its %d record(s) are held and committed again as "
                      "soon as that works (every %.1f s at most); meanwhile MQTT input waits "
                      "unacknowledged at the broker and polled readings are refused (counted)",
                      exc, n, COMMIT_RETRY_MAX_S)
        elif now - self._failure_logged >= _STILL_FAILING_LOG_S:
            self._failure_logged = now
            log.error("journal: commits still fail after %.0f s (%d attempts): %s",
                      now - self._failing_since, self._failures, exc)

    def _commits_work_again(self) -> None:
        log.warning("journal: commits work again after %.1f s and %d failed attempt(s); the held "
                    "input is committed", time.monotonic() - self._failing_since, self._failures)
        self.stats.failing = False
        self._failures = 0

    def _give_up(self, subs: list[_Submission], exc: Exception) -> None:
        """Closing while commits fail: these submissions are not committed."""
        readings = sum(1 for s in subs for r in s.records if isinstance(r, Reading))
        acked_later = sum(1 for s in subs if s.on_committed is not None)
        self.stats.refused += readings
        log.error("journal: closing while commits fail (%s): %d reading(s) of %d input(s) are NOT "
                  "committed (counted as refused); the %d MQTT message(s) among them stay "
                  "unacknowledged and the broker hands them out again", exc, readings, len(subs),
                  acked_later)
        for s in subs:
            if s.future is not None and not s.future.done():
                s.future.set_exception(JournalError(f"commit failed: {exc}"))

    def _commit_sync(self, subs: list[_Submission]) -> set[int]:
        db = self._need_db()
        skipped: set[int] = set()
        rows: list[InsertRow] = []
        quarantined: list[QuarantineInsert] = []
        seen_rows: list[tuple[bytes, int]] = []
        now = time.time_ns()
        keys = self._keys
        whole_bytes = self._quarantine.whole_bytes
        with self._transaction():
            batch_keys: set[bytes] = set()
            for i, s in enumerate(subs):
                if s.key is not None:
                    if s.check_seen and (s.key in batch_keys or keys.known(db, s.key)):
                        skipped.add(i)
                        continue
                    batch_keys.add(s.key)
                    seen_rows.append((s.key, now))
                rejected = s.rejected
                if s.records:
                    try:
                        rows += [self._row(db, r) for r in s.records]
                    except (TypeError, ValueError, OverflowError) as exc:
                        # Data SQLite cannot store: this input is rejected, not the group.
                        rejected = [*rejected, _unstorable(s.records, exc, now)]
                if rejected:
                    more, whole_bytes = self._quarantine.rows_for(db, rejected, now, whole_bytes)
                    quarantined += more
                if s.also is not None:
                    s.also(db)
            if rows:
                self._records.insert(db, rows)
            if quarantined:
                self._quarantine.insert(db, quarantined)
            if seen_rows:
                keys.remember(db, seen_rows)
        self._quarantine.kept(whole_bytes)
        if rows:
            self._records.inserted(db)
            self._series.used({row[0] for row in rows}, self._records.last_seq)
        self.stats.duplicates += len(skipped)
        self.stats.commits += 1
        self._refresh_sync()
        if self._series.free_due:
            self._free_series_sync()
        return skipped

    def _row(self, db: sqlite3.Connection, r: Record) -> InsertRow:
        """The records row of `r`; TypeError, ValueError or OverflowError if SQLite cannot store it."""
        ts = r.time_ns
        if type(ts) is not int or ts not in _INT64:
            raise ValueError(f"time {ts!r} is not a 64-bit integer of ns")
        series = self._series
        if isinstance(r, Reading):
            value = r.value if type(r.value) is float else float(r.value)
            return series.id_for(db, series.reading_key(r)), ts, value, None
        if isinstance(r, Point):
            if r.measurement in (READING, HEALTH):
                raise ValueError(f"a point cannot be of measurement {r.measurement!r}")
            return series.id_for(db, series.point_key(r)), ts, None, json.dumps(r.fields)
        return series.id_for(db, series.health_key(r.site, r.gateway)), ts, None, json.dumps(r.fields)

    def _refresh_sync(self) -> None:
        db = self._need_db()
        page_size, pages, free = (db.execute(f"PRAGMA {p}").fetchone()[0]
                                  for p in ("page_size", "page_count", "freelist_count"))
        self.stats.size_bytes = (pages - free) * page_size
        self.stats.quarantine_dropped = self._quarantine.dropped
        self.stats.quarantined = self._quarantine.rows
        self.stats.series = len(self._series.by_id)
        last = self._records.last_seq
        self.stats.held_records = sum(self._held.records.values())
        self.stats.held_series = len(self._held.all_ids())
        self.stats.pending = last - self._cursors.low(default=last) + self.stats.held_records
        if time.monotonic() - self._marker_time >= _MARKER_EVERY_S:
            self._marker_time = time.monotonic()
            self._marker.write(self._id, self.stats.pending, last)
        full = self.stats.size_bytes >= self.max_size
        if full and self.on_full == "drop_oldest":
            self._drop_oldest_sync()
            full = False
        if full != self.stats.full:
            self.stats.full = full
            if full:
                log.error("journal: FULL at %d bytes (max_size); new input is refused until sinks "
                          "catch up", self.stats.size_bytes)
            else:
                log.warning("journal: below max_size again; input is accepted")

    def _drop_oldest_sync(self) -> None:
        db = self._need_db()
        n = max(1000, self.stats.pending // 10)
        dropped = self._records.drop_oldest(db, n)
        self.stats.dropped += dropped
        self._cursors.raise_to(db, self._records.floor(db))
        log.error("journal: full; on_full = 'drop_oldest' DROPPED %d undelivered record(s) "
                  "(%d in all since start)", dropped, self.stats.dropped)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error - unless SQLite rolled back already
        (SQLITE_FULL does), so the error raised is the real one.  The connection is in
        autocommit mode: `with db:` alone opens no transaction, each statement commits alone."""
        db = self._need_db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            for part in self._staging:
                part.rolled_back()
            raise
        for part in self._staging:
            part.committed()

    def _need_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("the journal is not open")
        return self._db

    # -- delivery ----------------------------------------------------------------------

    async def next_batch(self, sink: str, limit: int) -> Batch | None:
        """The next up-to-`limit` records after `sink`'s cursor, or None when it is caught up."""
        if self._cursors.seq[sink] >= self._records.last_seq:
            return None
        return await self._run(self._read_sync, sink, limit)

    async def wait_for_records(self, sink: str, timeout: float) -> None:
        """Return when records beyond `sink`'s cursor exist, or after `timeout` seconds."""
        if self._cursors.seq[sink] < self._records.last_seq:
            return
        self._appended.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._appended.wait(), timeout)

    def pending_for(self, sink: str) -> int:
        return self._records.last_seq - self._cursors.seq[sink] + self._held.records.get(sink, 0)

    def held_series(self, sink: str) -> Mapping[int, str]:
        """The series `sink` holds (id -> the server's reason): their records go aside."""
        return self._held.series.get(sink, {})

    async def held_batch(self, sink: str, series: int, limit: int) -> RecordRows | None:
        """The oldest up-to-`limit` held records of `series` for `sink`, or None if none is held."""
        rows = await self._run(lambda: self._held.oldest(self._need_db(), sink, series, limit))
        return RecordRows(rows, self._series.by_id) if rows else None

    async def release_held(self, sink: str, series: int, upto: int, count: int) -> bool:
        """Held records of `series` up to seq `upto` are delivered; True once none is left and the
        series is released."""
        released = await self._run(self._release_held_sync, sink, series, upto)
        self.stats.delivered[sink] = self.stats.delivered.get(sink, 0) + count
        return released

    def _release_held_sync(self, sink: str, series: int, upto: int) -> bool:
        with self._transaction() as db:
            released = self._held.delivered(db, sink, series, upto)
        self._refresh_sync()
        return released

    def _read_sync(self, sink: str, limit: int) -> Batch | None:
        rows = self._records.read(self._need_db(), self._cursors.seq[sink], limit)
        if not rows:
            return None
        return Batch(sink, RecordRows(rows, self._series.by_id))

    async def commit_delivery(self, sink: str, last_seq: int, count: int, *, hold: Sequence[Row] = (),
                              hold_new: Mapping[int, str] | None = None) -> None:
        """Move `sink`'s cursor to `last_seq` (its batch is delivered) and prune.  `hold`: rows of
        the batch that go aside for their held series instead; `hold_new`: series held from now
        on (id -> the server's reason)."""
        await self._run(self._advance_sync, sink, last_seq, list(hold), dict(hold_new or {}))
        self.stats.delivered[sink] = self.stats.delivered.get(sink, 0) + count
        self._state_changed()

    def _advance_sync(self, sink: str, last_seq: int, hold: list[Row], hold_new: dict[int, str]) -> None:
        with self._transaction() as db:  # the cursor and the pruning: one commit, one fsync
            if hold or hold_new:
                self._held.hold(db, sink, hold_new, hold, time.time_ns())
            old_low, low = self._cursors.advance(db, sink, last_seq)
            if low > old_low:
                self._records.prune(db, low)
        self._cursors.moved(sink, last_seq)
        self._refresh_sync()

    # -- housekeeping and inspection ---------------------------------------------------

    async def housekeeping(self) -> None:
        """Expire the redelivery keys by age; free the series no longer in use."""
        await self._run(self._housekeeping_sync)

    def _housekeeping_sync(self) -> None:
        with self._transaction() as db:
            self._keys.expire(db, time.time_ns())
            ControlTables.expire(db, time.time_ns())
        self._free_series_sync()

    def _free_series_sync(self) -> None:
        last = self._records.last_seq
        with self._transaction() as db:
            gone = self._series.free(db, self._cursors.low(default=last), held=self._held.all_ids())
        self._series.forget(gone)
        self.stats.series = len(self._series.by_id)
        if gone:
            log.info("journal: %d series with no records left, unused for %.0f s, freed (%d kept)",
                     len(gone), self._series.idle_s, len(self._series.by_id))

    async def quarantined(self, source: str, reason_prefix: str, topics: Iterable[str], *,
                          after: int = 0, limit: int = 500) -> list[QuarantineRow]:
        """Quarantine rows of `source` on one of `topics` whose reason starts with
        `reason_prefix`, id > `after`, oldest first."""
        wanted = sorted(set(topics))
        if not wanted:
            return []
        return await self._run(lambda: Quarantine.select(self._need_db(), source, reason_prefix, wanted,
                                                          after, limit))

    async def release_quarantined(self, ids: Sequence[int]) -> None:
        """Delete these quarantine rows: their input was taken back after all."""
        if ids:
            await self._run(self._release_sync, list(ids))

    def _release_sync(self, ids: list[int]) -> None:
        with self._transaction() as db:  # one fsync for them all
            self._quarantine.delete(db, ids)
        self._quarantine.forget_whole_count()

    # -- remote run control (gateway.control) ---------------------------------------------

    async def claim_command(self, key: str, seq: int, expires_ns: int) -> bool:
        """Remember a signed command's (key, seq), committed before it is carried out; False if
        it was remembered before (a replay)."""
        def claim() -> bool:
            with self._transaction() as db:
                return ControlTables.claim(db, key, seq, expires_ns)
        return await self._run(claim)

    async def log_command(self, row: CommandRow) -> int:
        """Keep one command, accepted or refused, in the journal's command log; its id."""
        def log_it() -> int:
            with self._transaction() as db:
                return ControlTables.log(db, row)
        return await self._run(log_it)

    async def latest_commands(self, limit: int = 1, accepted_only: bool = False) -> list[CommandRow]:
        """The newest `limit` commands of the log, newest first."""
        return await self._run(lambda: ControlTables.latest(self._need_db(), limit, accepted_only))

    async def run_state(self) -> RunRow | None:
        """The stored current run (`runs`), or None if none was ever started here."""
        return await self._run(lambda: RunTable.load(self._need_db()))

    async def run_history(self, run: str | None = None, limit: int = 1000) -> list[RunLogRow]:
        """The newest `limit` run_log rows (of `run`, or of all), oldest first."""
        return await self._run(lambda: RunTable.history(self._need_db(), run, limit))

    @staticmethod
    def read_quarantine(path: str | Path, limit: int = 100) -> tuple[int, list[QuarantineRow]]:
        """(total, latest `limit` rows) of a journal's quarantine, opened read-only."""
        return read_quarantine(path, limit)


def _unstorable(records: Sequence[Record], exc: Exception, now: int) -> Rejected:
    what = f"{len(records)} record(s)"
    log.error("journal: %s cannot be stored (%s); quarantined", what, exc)
    return Rejected("journal", f"cannot be stored in the journal: {exc}"[:500], "",
                    repr(list(records)).encode()[:PAYLOAD_PREFIX], now)
