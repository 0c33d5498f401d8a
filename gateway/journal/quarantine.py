"""The quarantine: rejected input with its reason, for `gateway quarantine` and for input that
may become good later (a frame whose key comes late: kept whole, taken back by the ingest).

    quarantine(id, time_ns, source, topic, reason, payload)

Bounded on its own, so that no flood of bad input can fill the journal and stop the good
input beside it: at most `quarantine_max` rows and max_size / `SHARE` bytes.  The commit that
goes beyond either bound deletes the oldest rows down to 90 % of both (so that not every
commit deletes), logs it and counts it (`dropped`, the health field `quarantine_dropped`).
Ordinary rejects go first; input kept whole for later and readings a sink refused ("worth
keeping") only when nothing else is left, with an error in the log naming them.

A payload is kept to its first KiB, or whole (`Rejected.keep_whole`) while whole payloads
stay within max_size / `WHOLE_SHARE`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import JournalError
from gateway.sources import Rejected

__all__ = ["PAYLOAD_PREFIX", "SHARE", "WHOLE_SHARE", "Quarantine", "QuarantineRow", "read_quarantine"]

log = logging.getLogger("remotecal.journal")

PAYLOAD_PREFIX = 1024
SHARE = 8
"""The quarantine may take up to max_size / this (its rows' bytes, estimated as below)."""
ROW_OVERHEAD = 40
"""Bytes a row takes beyond its text and payload (its id, time, record header, index entry)."""
_ROW_BYTES = "length(payload) + length(reason) + length(topic) + length(source) + 40"
_KEPT = f"(length(payload) > {PAYLOAD_PREFIX} OR source LIKE 'sink:%')"
"""Rows worth keeping: payloads kept whole for later, readings a sink refused."""
_LOW_WATER = 0.9
WHOLE_SHARE = 16
"""Whole quarantine payloads may take up to max_size / this, half the quarantine's share: input
kept to be taken back later never crowds out the rest of the quarantine."""


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    id: int
    time_ns: int
    source: str
    topic: str
    reason: str
    payload: bytes


QuarantineInsert = tuple[int, str, str, str, bytes]
_COLUMNS = "id, time_ns, source, topic, reason, payload"


class Quarantine:
    DDL = """
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ns INTEGER NOT NULL, source TEXT NOT NULL,
    topic TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS quarantine_topic ON quarantine(topic, id);
"""

    def __init__(self, max_rows: int, max_size: int) -> None:
        self.max_rows = max_rows
        self.max_size = max_size
        self.max_bytes = max_size // SHARE
        self.rows = 0
        self.bytes = 0
        self.dropped = 0
        """Rows the bounds deleted since start."""
        self._staged = (0, 0, 0)  # rows, bytes, dropped of the open transaction
        self._whole_bytes: int | None = None  # payloads kept whole, in bytes (counted lazily)
        self._whole_full_logged = False

    def load(self, db: sqlite3.Connection) -> None:
        self.rows, self.bytes = db.execute(
            f"SELECT COUNT(*), COALESCE(SUM({_ROW_BYTES}), 0) FROM quarantine").fetchone()

    def committed(self) -> None:
        rows, size, dropped = self._staged
        self.rows += rows
        self.bytes += size
        self.dropped += dropped
        self._staged = (0, 0, 0)

    def rolled_back(self) -> None:
        self._staged = (0, 0, 0)

    def _stage(self, rows: int, size: int, dropped: int = 0) -> None:
        r, b, d = self._staged
        self._staged = (r + rows, b + size, d + dropped)

    def rows_for(self, db: sqlite3.Connection, rejected: Iterable[Rejected], now: int,
                 whole_bytes: int | None) -> tuple[list[QuarantineInsert], int | None]:
        """The rows to insert for `rejected`, and the whole-payload bytes after them (to be kept
        with `kept` once committed)."""
        out = []
        for q in rejected:
            payload, whole_bytes = self._kept_payload(db, q, whole_bytes)
            out.append((q.time_ns or now, q.source, q.topic, q.reason, payload))
        return out, whole_bytes

    @property
    def whole_bytes(self) -> int | None:
        """Whole-payload bytes as last committed; None until a whole payload asked for the count."""
        return self._whole_bytes

    def kept(self, whole_bytes: int | None) -> None:
        self._whole_bytes = whole_bytes

    def _kept_payload(self, db: sqlite3.Connection, q: Rejected,
                      whole_bytes: int | None) -> tuple[bytes, int | None]:
        """What the quarantine keeps of `q`'s payload - its first KiB, or all of it while whole
        payloads stay within max_size / WHOLE_SHARE - and the whole-payload bytes after it."""
        if not (q.keep_whole and len(q.payload) > PAYLOAD_PREFIX):
            return bytes(q.payload[:PAYLOAD_PREFIX]), whole_bytes
        if whole_bytes is None:  # counted when first needed: a gateway never keeps whole
            whole_bytes = db.execute(
                "SELECT COALESCE(SUM(length(payload)), 0) FROM quarantine WHERE length(payload) > ?",
                (PAYLOAD_PREFIX,)).fetchone()[0]
        if whole_bytes + len(q.payload) <= self.max_size // WHOLE_SHARE:
            return bytes(q.payload), whole_bytes + len(q.payload)
        if not self._whole_full_logged:
            log.error("journal: whole payloads kept in the quarantine reached %d bytes (max_size / %d); "
                      "further ones keep their first %d bytes only", whole_bytes, WHOLE_SHARE,
                      PAYLOAD_PREFIX)
            self._whole_full_logged = True
        return bytes(q.payload[:PAYLOAD_PREFIX]), whole_bytes

    def insert(self, db: sqlite3.Connection, rows: list[QuarantineInsert]) -> None:
        """Insert (in the open transaction), then keep the bounds."""
        db.executemany("INSERT INTO quarantine(time_ns, source, topic, reason, payload) VALUES(?,?,?,?,?)",
                       rows)
        self._stage(len(rows), sum(len(p) + len(r) + len(t) + len(s) + ROW_OVERHEAD
                                   for _, s, t, r, p in rows))
        self.trim(db)

    def _over(self) -> bool:
        rows, size, _ = self._staged
        return self.rows + rows > self.max_rows or self.bytes + size > self.max_bytes

    def trim(self, db: sqlite3.Connection) -> None:
        """Beyond a bound: delete the oldest rows down to 90 % of both (in the open transaction),
        ordinary rejects first."""
        if not self._over():
            return
        ordinary = self._delete_oldest(db, f"NOT {_KEPT}")
        kept = self._delete_oldest(db, _KEPT)
        log.warning("journal: the quarantine reached its bound (%d rows, %d bytes: quarantine_max, "
                    "max_size / %d) and deleted its %d oldest row(s)", self.max_rows, self.max_bytes, SHARE,
                    ordinary + kept)
        if kept:
            log.error("journal: among them %d row(s) worth keeping - input kept whole for later, or "
                      "readings a sink refused - deleted unreviewed: nothing else was left to delete", kept)
        self.forget_whole_count()

    def _delete_oldest(self, db: sqlite3.Connection, which: str) -> int:
        """Delete the oldest rows of `which` until both bounds are met at 90 %; how many went."""
        rows, size, _ = self._staged
        excess_rows = self.rows + rows - int(self.max_rows * _LOW_WATER)
        excess_bytes = self.bytes + size - int(self.max_bytes * _LOW_WATER)
        if excess_rows <= 0 and excess_bytes <= 0:
            return 0
        cut, n, freed = None, 0, 0
        oldest = db.execute(f"SELECT id, {_ROW_BYTES} FROM quarantine WHERE {which} ORDER BY id")
        for row_id, row_bytes in oldest:
            cut, n, freed = row_id, n + 1, freed + row_bytes
            if n >= excess_rows and freed >= excess_bytes:
                break
        oldest.close()
        if cut is None:
            return 0
        db.execute(f"DELETE FROM quarantine WHERE {which} AND id <= ?", (cut,))
        self._stage(-n, -freed, n)
        return n

    @staticmethod
    def select(db: sqlite3.Connection, source: str, prefix: str, topics: list[str], after: int,
               limit: int) -> list[QuarantineRow]:
        out: list[QuarantineRow] = []
        for i in range(0, len(topics), 500):  # SQLite's bound on parameters, with room
            part = topics[i:i + 500]
            marks = ",".join("?" * len(part))
            out += [QuarantineRow(*r) for r in db.execute(
                f"SELECT {_COLUMNS} FROM quarantine WHERE source = ? "
                f"AND substr(reason, 1, ?) = ? AND id > ? AND topic IN ({marks}) ORDER BY id LIMIT ?",
                (source, len(prefix), prefix, after, *part, limit)).fetchall()]
        return sorted(out, key=lambda r: r.id)[:limit]

    def delete(self, db: sqlite3.Connection, ids: list[int]) -> None:
        """Delete these rows (in the open transaction): their input was taken back."""
        for i in ids:
            for (size,) in db.execute(f"DELETE FROM quarantine WHERE id = ? RETURNING {_ROW_BYTES}", (i,)):
                self._stage(-1, -size)

    def forget_whole_count(self) -> None:
        """Quarantine rows went: the next whole payload counts again (and may log again)."""
        self._whole_bytes = None
        self._whole_full_logged = False


def read_quarantine(path: str | Path, limit: int = 100) -> tuple[int, list[QuarantineRow]]:
    """(total, latest `limit` rows) of a journal's quarantine, opened read-only."""
    p = Path(path)
    if not p.exists():
        raise JournalError(f"{p}: no journal here (has the gateway run yet?)")
    db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    try:
        total = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        rows = db.execute(f"SELECT {_COLUMNS} FROM quarantine ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    except sqlite3.Error as exc:
        raise JournalError(f"{p}: cannot read the quarantine: {exc}") from None
    finally:
        db.close()
    return total, [QuarantineRow(*r) for r in reversed(rows)]
