"""Refused frames, kept whole in a table of their own: `DATA_DIR/refused.db`.

    frames(id, time_ns, kind, topic, reason, payload, requeue)

Every frame the ingest refuses (`REJECT_KINDS`: unknown gateway, bad signature, malformed,
foreign, replayed, too old) is written here whole before the broker's message is
acknowledged: the broker forgets it, the ingest does not.  Two ways back into the journal:

    waiting for a key   rows of kind "unknown gateway" are checked again by the ingest as soon
                        as their gateway has a key (and at each start), and journalled if
                        they verify now - a key installed late loses nothing;
    requeue             `remotecal ingest -c CENTRAL.toml --requeue [--kind KIND]` marks rows
                        (`requeue` = 1), in this file, while the ingest runs or not; the
                        ingest checks them again within a second (or at its next start):
                        those that verify are journalled - the replay window does not apply
                        to them, the journal's redelivery keys still drop a frame journalled
                        before - and leave the table; the others stay with their new reason.

This is not the journal's quarantine (bad input kept for inspection, bounded, its oldest
rows dropped first): a frame here may hold a gateway's readings that have no other copy.
The table is bounded by `max_bytes` (`[ingest] refused_max_size`) all the same, so that a
flood of garbage cannot fill the disk: beyond it the oldest rows go, garbage first
(malformed, foreign, bad signature, replayed), frames waiting for a key and too-old ones
last, each deletion logged as an error with its count.

Writes are group commits on a thread of their own: a flood of refused frames costs one
fsync per group, never one per frame on the ingest's loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import JournalError

__all__ = ["GARBAGE_KINDS", "RefusedFrame", "RefusedFrames"]

log = logging.getLogger("remotecal.ingest")

GARBAGE_KINDS = ("malformed", "foreign", "bad signature", "replayed")
"""Deleted first when the table is over its bound."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames(
    id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, kind TEXT NOT NULL, topic TEXT NOT NULL,
    reason TEXT NOT NULL, payload BLOB NOT NULL, requeue INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS frames_kind ON frames(kind, topic, id);
CREATE INDEX IF NOT EXISTS frames_requeue ON frames(requeue, id) WHERE requeue = 1;
"""
_ROW_OVERHEAD = 64
_ROW_BYTES = f"length(payload) + length(reason) + length(topic) + {_ROW_OVERHEAD}"
_COLUMNS = "id, time_ns, kind, topic, reason, payload, requeue"


@dataclass(frozen=True, slots=True)
class RefusedFrame:
    id: int
    time_ns: int
    kind: str
    topic: str
    reason: str
    payload: bytes
    requeue: bool = False


_Row = tuple[int, str, str, str, bytes]


class RefusedFrames:
    """`submit` refused frames (group-committed, `on_committed` after); read them back."""

    def __init__(self, path: str | Path, max_bytes: int = 1 << 30) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.deleted = 0
        """Rows deleted to stay within `max_bytes`, since start."""
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refused")
        self._pending: list[tuple[_Row, Callable[[], None] | None]] = []
        self._wake = asyncio.Event()
        self._bytes = 0
        self._failure: str | None = None

    # -- set-up -----------------------------------------------------------------------------

    def open(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._bytes = db.execute(
                f"SELECT COALESCE(SUM({_ROW_BYTES}), 0) FROM frames").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"{self.path}: cannot open the refused frames: {exc}") from None
        self._db = db

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._db is not None:
            self._db.close()
            self._db = None

    def _need_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError(f"{self.path} is not open")
        return self._db

    async def _run(self, fn: Callable[[], object]) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    # -- writing ------------------------------------------------------------------------------

    def submit(self, kind: str, topic: str, reason: str, payload: bytes, time_ns: int,
               on_committed: Callable[[], None] | None = None) -> None:
        """Keep a refused frame; `on_committed` runs on the loop once it is on disk."""
        self._pending.append(((time_ns, kind, topic, reason, bytes(payload)), on_committed))
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Commit what was submitted, in groups, until `stop` is set and nothing is pending.
        A commit that fails (a full disk) is tried again each second: its frames stay
        unacknowledged meanwhile, and the broker keeps them."""
        while True:
            if not self._pending:
                if stop.is_set():
                    return
                self._wake.clear()
                waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                _, rest = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in rest:
                    w.cancel()
                continue
            group, self._pending = self._pending, []
            rows = [r for r, _ in group]
            try:
                await asyncio.get_running_loop().run_in_executor(self._pool, self._insert_sync, rows)
            except (sqlite3.Error, OSError) as exc:
                self._pending[:0] = group
                if str(exc) != self._failure:
                    log.error("ingest: cannot keep refused frames in %s (%s); their messages stay with the "
                              "broker, retrying", self.path, exc)
                    self._failure = str(exc)
                await asyncio.sleep(1.0)
                continue
            if self._failure is not None:
                log.info("ingest: refused frames are kept again")
                self._failure = None
            for _, done in group:
                if done is not None:
                    done()

    def _insert_sync(self, rows: Sequence[_Row]) -> None:
        db = self._need_db()
        size = sum(len(p) + len(r) + len(t) + _ROW_OVERHEAD for _, _, t, r, p in rows)
        with db:
            db.executemany("INSERT INTO frames(time_ns, kind, topic, reason, payload) VALUES(?,?,?,?,?)",
                           rows)
            self._bytes += size
            if self._bytes > self.max_bytes:
                self._trim(db)

    def _trim(self, db: sqlite3.Connection) -> None:
        """Delete the oldest rows, garbage first, down to 90 % of `max_bytes` (in the transaction)."""
        target = int(self.max_bytes * 0.9)
        marks = ",".join("?" * len(GARBAGE_KINDS))
        deleted = 0
        for where, args in ((f"kind IN ({marks})", GARBAGE_KINDS), (f"kind NOT IN ({marks})", GARBAGE_KINDS)):
            rows = db.execute(f"SELECT id, {_ROW_BYTES} FROM frames WHERE {where} ORDER BY id", args)
            ids: list[int] = []
            for rid, size in rows:
                if self._bytes <= target:
                    break
                ids.append(rid)
                self._bytes -= size
            db.executemany("DELETE FROM frames WHERE id = ?", [(i,) for i in ids])
            deleted += len(ids)
            if where.startswith("kind NOT") and ids:
                log.error("ingest: %d refused frame(s) waiting for a key or too old were deleted: the "
                          "refused frames reached refused_max_size (%d bytes)", len(ids), self.max_bytes)
        self.deleted += deleted
        log.error("ingest: the refused frames reached refused_max_size (%d bytes): the %d oldest deleted",
                  self.max_bytes, deleted)

    # -- reading back -------------------------------------------------------------------------

    async def waiting(self, topics: Iterable[str], *, after: int = 0, limit: int = 500) -> list[RefusedFrame]:
        """Frames refused for want of a key on one of `topics`, id > `after`, oldest first."""
        wanted = sorted(set(topics))
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        return await self._select(f"kind = 'unknown gateway' AND topic IN ({marks}) AND id > ?",
                                  (*wanted, after), limit)

    async def requested(self, *, after: int = 0, limit: int = 500) -> list[RefusedFrame]:
        """Frames an operator asked to requeue, id > `after`, oldest first."""
        return await self._select("requeue = 1 AND id > ?", (after,), limit)

    async def _select(self, where: str, args: tuple[object, ...], limit: int) -> list[RefusedFrame]:
        def run() -> list[RefusedFrame]:
            return [_frame(r) for r in self._need_db().execute(
                f"SELECT {_COLUMNS} FROM frames WHERE {where} ORDER BY id LIMIT ?", (*args, limit))]
        out = await self._run(run)
        assert isinstance(out, list)
        return out

    async def remove(self, ids: Sequence[int]) -> None:
        """These frames are journalled now."""
        def run() -> None:
            db = self._need_db()
            with db:
                for i in ids:
                    row = db.execute(f"SELECT {_ROW_BYTES} FROM frames WHERE id = ?", (i,)).fetchone()
                    if row is not None:
                        self._bytes -= row[0]
                        db.execute("DELETE FROM frames WHERE id = ?", (i,))
        if ids:
            await self._run(run)

    async def refused_again(self, rows: Sequence[tuple[int, str, str]]) -> None:
        """(id, kind, reason): requeued frames still refused; they stay, with their new reason."""
        def run() -> None:
            with self._need_db() as db:
                db.executemany("UPDATE frames SET kind = ?, reason = ?, requeue = 0 WHERE id = ?",
                               [(k, r, i) for i, k, r in rows])
        if rows:
            await self._run(run)

    # -- from another process: `remotecal ingest --requeue / --refused` --------------------------

    @staticmethod
    def request_requeue(path: str | Path, kinds: Sequence[str] = ()) -> int:
        """Mark the refused frames (of `kinds`, or all) for the ingest to check again; how many."""
        where, args = (f"kind IN ({','.join('?' * len(kinds))})", tuple(kinds)) if kinds else ("1", ())
        with _connect(path) as db:
            return db.execute(f"UPDATE frames SET requeue = 1 WHERE {where}", args).rowcount

    @staticmethod
    def read(path: str | Path, limit: int = 50) -> tuple[dict[str, int], list[RefusedFrame]]:
        """How many frames of each kind are kept, and the latest `limit` of them."""
        with _connect(path) as db:
            counts = dict(db.execute("SELECT kind, COUNT(*) FROM frames GROUP BY kind ORDER BY kind"))
            rows = [_frame(r) for r in db.execute(f"SELECT {_COLUMNS} FROM frames ORDER BY id DESC LIMIT ?",
                                                  (limit,))]
        return counts, rows


def _frame(r: tuple[Any, ...]) -> RefusedFrame:
    return RefusedFrame(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), bool(r[6]))


def _connect(path: str | Path) -> sqlite3.Connection:
    p = Path(path)
    if not p.exists():
        db = sqlite3.connect(":memory:")
        db.executescript(_SCHEMA)
        return db
    try:
        db = sqlite3.connect(p, timeout=30.0)
        db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        raise JournalError(f"{p}: cannot read the refused frames: {exc}") from None
    return db
