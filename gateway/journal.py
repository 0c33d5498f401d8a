"""The durable journal: every accepted record is on disk before anyone is told so.

Why SQLite in WAL mode rather than a home-made segment log: a calibration lab's IT can open,
back up and inspect the file with standard tools (`sqlite3 journal.db`), its crash safety is
among the most tested code in existence, a commit of a whole batch is one WAL append plus
one fsync (group commit), and readers (the sinks, `gateway quarantine`) never block the
writer.  A segment log would need our own checksums, torn-write recovery and compaction
for a speed we do not need at a gateway's rates (see `bench/journal`).

Layout (one file, `DATA_DIR/journal.db`):

    series(id, measurement, site, gateway, run, channel, quantity, unit, role, tags)
        interned tag sets, so a record row is just (seq, series, ts, value)
    records(seq AUTOINCREMENT, series, ts, value, fields)
        seq is never reused (AUTOINCREMENT), so a cursor can never skip a new record
    cursors(sink, seq)        last seq each sink has delivered
    quarantine(...)           rejected input, with its reason, for `gateway quarantine`
    seen(key, time_ns)        MQTT messages already committed, to drop broker redeliveries

A record is deleted only when every configured sink's cursor has passed it.  When the file
reaches `max_size`, the policy `refuse` (default) makes `submit` raise `JournalFull` and
raises the health alarm; nothing already accepted is touched.  `drop_oldest` instead
deletes the oldest undelivered records to make room, counts them as `dropped` and logs it
loudly: for sites that prefer fresh data to complete data, never the default.

Durability: `fsync = "full"` (default) fsyncs the WAL at every commit, so an accepted record
survives a power cut; `"normal"` fsyncs only at checkpoints and survives a crash or SIGKILL
of the gateway but not of the machine.

All SQLite work runs on one dedicated thread, so the event loop never waits on a disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import JournalError, JournalFull
from gateway.reading import Reading, Record
from gateway.records import RecordRows, Series
from gateway.sources import Rejected

__all__ = ["Batch", "Journal", "JournalStats", "QuarantineRow", "dedupe_key"]

log = logging.getLogger("remotecal.journal")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series(
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL, site TEXT NOT NULL, gateway TEXT NOT NULL, run TEXT NOT NULL,
    channel TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL, role TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE(measurement, site, gateway, run, channel, quantity, unit, role, tags));
CREATE TABLE IF NOT EXISTS records(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL, fields TEXT);
CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ns INTEGER NOT NULL, source TEXT NOT NULL,
    topic TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS seen(key BLOB PRIMARY KEY, time_ns INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_time ON seen(time_ns);
CREATE INDEX IF NOT EXISTS quarantine_topic ON quarantine(topic, id);
"""
_SCHEMA_VERSION = "1"
_PAYLOAD_PREFIX = 1024
_WHOLE_SHARE = 8
"""Whole quarantine payloads may take up to max_size / this: input kept to be taken back later
must never fill the journal and stop the good input."""
_SEEN_KEEP_NS = 7 * 86400 * 10**9


def dedupe_key(*parts: bytes) -> bytes:
    """A 16-byte key identifying one input message (source, topic, payload)."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(len(p).to_bytes(4, "little"))
        h.update(p)
    return h.digest()


@dataclass(slots=True)
class JournalStats:
    """Counters since start; `pending` and `size_bytes` are refreshed at each commit."""

    received: int = 0
    rejected: int = 0
    duplicates: int = 0
    refused: int = 0
    dropped: int = 0
    commits: int = 0
    pending: int = 0
    size_bytes: int = 0
    full: bool = False
    delivered: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Batch:
    """Records a sink should deliver next, in journal order; `last_seq` is its cursor after.

    `records` are the journal's rows (`RecordRows`): records made on demand, or encoded
    straight from the rows by a sink that can.
    """

    sink: str
    records: RecordRows

    @property
    def seqs(self) -> list[int]:
        return self.records.seqs

    @property
    def last_seq(self) -> int:
        return self.records.rows[-1][0]

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    id: int
    time_ns: int
    source: str
    topic: str
    reason: str
    payload: bytes


@dataclass(slots=True)
class _Submission:
    records: Sequence[Record]
    rejected: Sequence[Rejected]
    key: bytes | None
    check_seen: bool
    on_committed: Callable[[], None] | None
    future: asyncio.Future[None] | None


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
        self._db: sqlite3.Connection | None = None
        self._series: dict[tuple[str, ...], int] = {}
        self._series_by_id: dict[int, Series] = {}
        self._uncommitted_series: list[tuple[str, ...]] = []
        self._whole_bytes: int | None = None  # quarantine payloads kept whole, in bytes (counted lazily)
        self._whole_full_logged = False
        self._cursors: dict[str, int] = {}
        self._last_seq = 0
        self._queue: list[_Submission] = []
        self._wakeup = asyncio.Event()
        self._appended = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._closing = False
        self._full_logged = False

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> Journal:
        await self._run(self._open_sync)
        self._committer = asyncio.create_task(self._commit_loop(), name="journal-committer")
        return self

    async def close(self) -> None:
        """Commit what was submitted, then close the file."""
        self._closing = True
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
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self._fsync == 'full' else 'NORMAL'}")
            db.execute("PRAGMA foreign_keys=OFF")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from None
        version = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if version is None:
            db.execute("INSERT INTO meta VALUES('schema', ?)", (_SCHEMA_VERSION,))
        elif version[0] != _SCHEMA_VERSION:
            raise JournalError(f"{self.path}: journal schema {version[0]} is not {_SCHEMA_VERSION}")
        self._db = db
        for sid, *key in db.execute("SELECT * FROM series"):
            self._series[tuple(key)] = sid
            self._series_by_id[sid] = Series.from_key(key)
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()
        self._last_seq = row[0] if row else 0
        stored = dict(db.execute("SELECT sink, seq FROM cursors").fetchall())
        oldest = db.execute("SELECT MIN(seq) FROM records").fetchone()[0]
        start = (oldest - 1) if oldest is not None else self._last_seq
        with self._transaction():
            for gone in set(stored) - set(self.sinks):
                log.warning("journal: sink %r is no longer configured; its cursor is dropped", gone)
                db.execute("DELETE FROM cursors WHERE sink=?", (gone,))
            for sink in self.sinks:
                if sink not in stored:
                    db.execute("INSERT INTO cursors VALUES(?, ?)", (sink, start))
                    stored[sink] = start
        self._cursors = {s: stored[s] for s in self.sinks}
        self._refresh_sync()
        if self.stats.pending:
            log.info("journal: %d record(s) from a previous run wait for delivery", self.stats.pending)

    def _close_sync(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

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
    ) -> asyncio.Future[None] | None:
        """Queue records (and rejected inputs) for the next group commit.

        `on_committed` runs on the event loop once they are durable.  `dedupe` (see
        `dedupe_key`) is remembered; when `redelivered` is set and the key was committed
        before, the records are skipped (a broker redelivery) while `on_committed` still
        runs.  Only redeliveries are checked: a sensor may well send the same bytes twice.
        Raises `JournalFull` when the journal is full and the policy is `refuse`.
        With `wait`, returns a future that resolves at the commit.
        """
        if self._closing:
            raise JournalError("the journal is closing")
        if self.stats.full and self.on_full == "refuse" and records:
            raise JournalFull(f"journal {self.path} is full ({self.stats.size_bytes} bytes)")
        fut = asyncio.get_running_loop().create_future() if wait else None
        self._queue.append(_Submission(records, rejected, dedupe, redelivered, on_committed, fut))
        self._wakeup.set()
        return fut

    async def append(self, records: Sequence[Record], rejected: Sequence[Rejected] = ()) -> None:
        """Submit and wait until durable."""
        fut = self.submit(records, rejected, wait=True)
        assert fut is not None
        await fut

    async def _commit_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self.commit_interval and not self._closing:
                await asyncio.sleep(self.commit_interval)
            subs, self._queue = self._queue, []
            if subs:
                try:
                    skipped = await self._run(self._commit_sync, subs)
                except Exception as exc:  # the disk failed: nothing of this group is acked
                    log.error("journal: commit failed: %s", exc)
                    for s in subs:
                        if s.future is not None and not s.future.done():
                            s.future.set_exception(JournalError(f"commit failed: {exc}"))
                    await asyncio.sleep(1.0)
                    continue
                for i, s in enumerate(subs):
                    if i not in skipped:
                        self.stats.received += sum(1 for r in s.records if isinstance(r, Reading))
                    self.stats.rejected += len(s.rejected)
                    if s.on_committed is not None:
                        s.on_committed()
                    if s.future is not None and not s.future.done():
                        s.future.set_result(None)
                self._appended.set()
            if self._closing and not self._queue:
                return

    def _series_id(self, db: sqlite3.Connection, key: tuple[str, ...]) -> int:
        sid = self._series.get(key)
        if sid is None:
            cur = db.execute("INSERT OR IGNORE INTO series VALUES(NULL,?,?,?,?,?,?,?,?,?)", key)
            sid = cur.lastrowid if cur.rowcount else None
            if not sid:
                sid = db.execute(
                    "SELECT id FROM series WHERE measurement=? AND site=? AND gateway=? AND run=? AND "
                    "channel=? AND quantity=? AND unit=? AND role=? AND tags=?", key
                ).fetchone()[0]
            assert sid is not None
            self._series[key] = sid
            self._series_by_id[sid] = Series.from_key(key)
            self._uncommitted_series.append(key)
        return sid

    def _kept_payload(self, q: Rejected, whole_bytes: int | None) -> tuple[bytes, int | None]:
        """What the quarantine keeps of `q`'s payload - its first KiB, or all of it while whole
        payloads stay within max_size / _WHOLE_SHARE - and the whole-payload bytes after it."""
        if not (q.keep_whole and len(q.payload) > _PAYLOAD_PREFIX):
            return bytes(q.payload[:_PAYLOAD_PREFIX]), whole_bytes
        if whole_bytes is None:  # counted when first needed: a gateway never keeps whole
            whole_bytes = self._need_db().execute(
                "SELECT COALESCE(SUM(length(payload)), 0) FROM quarantine WHERE length(payload) > ?",
                (_PAYLOAD_PREFIX,)).fetchone()[0]
        if whole_bytes + len(q.payload) <= self.max_size // _WHOLE_SHARE:
            return bytes(q.payload), whole_bytes + len(q.payload)
        if not self._whole_full_logged:
            log.error("journal: whole payloads kept in the quarantine reached %d bytes (max_size / %d); "
                      "further ones keep their first %d bytes only", whole_bytes, _WHOLE_SHARE,
                      _PAYLOAD_PREFIX)
            self._whole_full_logged = True
        return bytes(q.payload[:_PAYLOAD_PREFIX]), whole_bytes

    def _commit_sync(self, subs: list[_Submission]) -> set[int]:
        db = self._need_db()
        skipped: set[int] = set()
        rows: list[tuple[int, int, float | None, str | None]] = []
        quarantined: list[tuple[int, str, str, str, bytes]] = []
        seen_rows: list[tuple[bytes, int]] = []
        now = time.time_ns()
        whole_bytes = self._whole_bytes  # None until a whole payload asks for the count
        self._uncommitted_series = []
        try:
            with self._transaction():
                batch_keys: set[bytes] = set()
                for i, s in enumerate(subs):
                    if s.key is not None:
                        if s.check_seen and (s.key in batch_keys or db.execute(
                            "SELECT 1 FROM seen WHERE key=?", (s.key,)
                        ).fetchone()):
                            skipped.add(i)
                            self.stats.duplicates += 1
                            continue
                        batch_keys.add(s.key)
                        seen_rows.append((s.key, now))
                    for r in s.records:
                        if isinstance(r, Reading):
                            key = ("reading", r.site, r.gateway, r.run, r.channel, r.quantity, r.unit,
                                   r.role, json.dumps(r.tags) if r.tags else "")
                            rows.append((self._series_id(db, key), r.time_ns, r.value, None))
                        else:
                            key = ("gateway_health", r.site, r.gateway, "", "", "", "", "", "")
                            rows.append((self._series_id(db, key), r.time_ns, None, json.dumps(r.fields)))
                    for q in s.rejected:
                        payload, whole_bytes = self._kept_payload(q, whole_bytes)
                        quarantined.append((q.time_ns or now, q.source, q.topic, q.reason, payload))
                if rows:
                    db.executemany("INSERT INTO records(series, ts, value, fields) VALUES(?,?,?,?)", rows)
                if quarantined:
                    db.executemany(
                        "INSERT INTO quarantine(time_ns, source, topic, reason, payload) VALUES(?,?,?,?,?)",
                        quarantined,
                    )
                if seen_rows:
                    db.executemany("INSERT OR REPLACE INTO seen VALUES(?,?)", seen_rows)
        except BaseException:
            # Series made in this transaction do not exist: their ids will be given again.
            for new in self._uncommitted_series:
                del self._series_by_id[self._series.pop(new)]
            self._uncommitted_series = []
            raise
        self._uncommitted_series = []
        self._whole_bytes = whole_bytes
        if rows:
            self._last_seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()[0]
        self.stats.commits += 1
        self._refresh_sync()
        return skipped

    def _refresh_sync(self) -> None:
        db = self._need_db()
        page_size, pages, free = (db.execute(f"PRAGMA {p}").fetchone()[0]
                                  for p in ("page_size", "page_count", "freelist_count"))
        self.stats.size_bytes = (pages - free) * page_size
        low = min(self._cursors.values(), default=self._last_seq)
        self.stats.pending = self._last_seq - low
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
        cur = db.execute(
            "DELETE FROM records WHERE seq IN (SELECT seq FROM records ORDER BY seq LIMIT ?)", (n,)
        )
        self.stats.dropped += cur.rowcount
        oldest = db.execute("SELECT MIN(seq) FROM records").fetchone()[0]
        floor = (oldest - 1) if oldest is not None else self._last_seq
        for sink, seq in self._cursors.items():
            if seq < floor:
                self._cursors[sink] = floor
                db.execute("UPDATE cursors SET seq=? WHERE sink=?", (floor, sink))
        log.error("journal: full; on_full = 'drop_oldest' DROPPED %d undelivered record(s) "
                  "(%d in all since start)", cur.rowcount, self.stats.dropped)

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
            raise

    def _need_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("the journal is not open")
        return self._db

    # -- delivery ----------------------------------------------------------------------

    async def next_batch(self, sink: str, limit: int) -> Batch | None:
        """The next up-to-`limit` records after `sink`'s cursor, or None when it is caught up."""
        if self._cursors[sink] >= self._last_seq:
            return None
        return await self._run(self._read_sync, sink, limit)

    async def wait_for_records(self, sink: str, timeout: float) -> None:
        """Return when records beyond `sink`'s cursor exist, or after `timeout` seconds."""
        if self._cursors[sink] < self._last_seq:
            return
        self._appended.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._appended.wait(), timeout)

    def pending_for(self, sink: str) -> int:
        return self._last_seq - self._cursors[sink]

    def _read_sync(self, sink: str, limit: int) -> Batch | None:
        db = self._need_db()
        rows = db.execute(
            "SELECT seq, series, ts, value, fields FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._cursors[sink], limit),
        ).fetchall()
        if not rows:
            return None
        return Batch(sink, RecordRows(rows, self._series_by_id))

    async def commit_delivery(self, sink: str, last_seq: int, count: int) -> None:
        """Move `sink`'s cursor to `last_seq` (its batch is delivered) and prune."""
        await self._run(self._advance_sync, sink, last_seq)
        self.stats.delivered[sink] = self.stats.delivered.get(sink, 0) + count

    def _advance_sync(self, sink: str, last_seq: int) -> None:
        old_low = min(self._cursors.values())
        cursors = {**self._cursors, sink: last_seq}
        low = min(cursors.values())
        with self._transaction() as db:  # the cursor and the pruning: one commit, one fsync
            db.execute("UPDATE cursors SET seq=? WHERE sink=?", (last_seq, sink))
            if low > old_low:
                db.execute("DELETE FROM records WHERE seq <= ?", (low,))
        self._cursors = cursors
        self._refresh_sync()

    # -- housekeeping and inspection ---------------------------------------------------

    async def housekeeping(self) -> None:
        """Trim the quarantine and the redelivery keys to their bounds."""
        await self._run(self._housekeeping_sync)

    def _housekeeping_sync(self) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM seen WHERE time_ns < ?", (time.time_ns() - _SEEN_KEEP_NS,))
            cur = db.execute(
                "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?",
                (self.quarantine_max,),
            )
        if cur.rowcount > 0:
            log.warning("journal: the quarantine dropped its %d oldest row(s) (quarantine_max = %d)",
                        cur.rowcount, self.quarantine_max)
            self._forget_whole_count()

    async def quarantined(self, source: str, reason_prefix: str, topics: Iterable[str], *,
                          after: int = 0, limit: int = 500) -> list[QuarantineRow]:
        """Quarantine rows of `source` on one of `topics` whose reason starts with
        `reason_prefix`, id > `after`, oldest first."""
        wanted = sorted(set(topics))
        if not wanted:
            return []
        return await self._run(self._quarantined_sync, source, reason_prefix, wanted, after, limit)

    def _quarantined_sync(self, source: str, prefix: str, topics: list[str], after: int,
                          limit: int) -> list[QuarantineRow]:
        db = self._need_db()
        out: list[QuarantineRow] = []
        for i in range(0, len(topics), 500):  # SQLite's bound on parameters, with room
            part = topics[i:i + 500]
            marks = ",".join("?" * len(part))
            out += [QuarantineRow(*r) for r in db.execute(
                "SELECT id, time_ns, source, topic, reason, payload FROM quarantine WHERE source = ? "
                f"AND substr(reason, 1, ?) = ? AND id > ? AND topic IN ({marks}) ORDER BY id LIMIT ?",
                (source, len(prefix), prefix, after, *part, limit)).fetchall()]
        return sorted(out, key=lambda r: r.id)[:limit]

    async def release_quarantined(self, ids: Sequence[int]) -> None:
        """Delete these quarantine rows: their input was taken back after all."""
        if ids:
            await self._run(self._release_sync, list(ids))

    def _release_sync(self, ids: list[int]) -> None:
        with self._transaction() as db:  # one fsync for them all
            db.executemany("DELETE FROM quarantine WHERE id = ?", [(i,) for i in ids])
        self._forget_whole_count()

    def _forget_whole_count(self) -> None:
        """Quarantine rows went: the next whole payload counts again (and may log again)."""
        self._whole_bytes = None
        self._whole_full_logged = False

    @staticmethod
    def read_quarantine(path: str | Path, limit: int = 100) -> tuple[int, list[QuarantineRow]]:
        """(total, latest `limit` rows) of a journal's quarantine, opened read-only."""
        p = Path(path)
        if not p.exists():
            raise JournalError(f"{p}: no journal here (has the gateway run yet?)")
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            total = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
            rows = db.execute(
                "SELECT id, time_ns, source, topic, reason, payload FROM quarantine "
                "ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"{p}: cannot read the quarantine: {exc}") from None
        finally:
            db.close()
        return total, [QuarantineRow(*r) for r in reversed(rows)]
