"""The quarantine: rejected input with its reason, for `gateway quarantine` and for input that
may become good later (a frame whose key comes late: kept whole, taken back by the ingest).

    quarantine(id, time_ns, source, topic, reason, payload)

A payload is kept to its first KiB, or whole (`Rejected.keep_whole`) while whole payloads
stay within max_size / `WHOLE_SHARE`: input kept for later must never fill the journal and
stop the good input.  The oldest rows go when there are more than `quarantine_max`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import JournalError
from gateway.sources import Rejected

__all__ = ["PAYLOAD_PREFIX", "WHOLE_SHARE", "Quarantine", "QuarantineRow", "read_quarantine"]

log = logging.getLogger("remotecal.journal")

PAYLOAD_PREFIX = 1024
WHOLE_SHARE = 8
"""Whole quarantine payloads may take up to max_size / this: input kept to be taken back later
must never fill the journal and stop the good input."""


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
        self._whole_bytes: int | None = None  # payloads kept whole, in bytes (counted lazily)
        self._whole_full_logged = False

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

    @staticmethod
    def insert(db: sqlite3.Connection, rows: list[QuarantineInsert]) -> None:
        db.executemany("INSERT INTO quarantine(time_ns, source, topic, reason, payload) VALUES(?,?,?,?,?)",
                       rows)

    def trim(self, db: sqlite3.Connection) -> int:
        """Drop the oldest rows beyond `max_rows` (in the open transaction); how many went."""
        cur = db.execute("DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?",
                         (self.max_rows,))
        return cur.rowcount

    def trimmed(self, n: int) -> None:
        if n > 0:
            log.warning("journal: the quarantine dropped its %d oldest row(s) (quarantine_max = %d)",
                        n, self.max_rows)
            self.forget_whole_count()

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

    @staticmethod
    def delete(db: sqlite3.Connection, ids: list[int]) -> None:
        db.executemany("DELETE FROM quarantine WHERE id = ?", [(i,) for i in ids])

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
