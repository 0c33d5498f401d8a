"""The records table: every accepted reading and health sample, in the order it was committed.

    records(seq AUTOINCREMENT, series, ts, value, fields)

`seq` is never reused (AUTOINCREMENT), so a sink's cursor can never skip a new record.  A
record is deleted (`prune`) only once every sink's cursor has passed it, or by
`drop_oldest` when the policy says so.  The records are what `max_size` bounds.
"""

from __future__ import annotations

import sqlite3

from gateway.records import Row

__all__ = ["InsertRow", "RecordsTable"]

InsertRow = tuple[int, int, float | None, str | None]
"""(series id, time_ns, value, fields as JSON) - a record about to be inserted."""


class RecordsTable:
    DDL = """
CREATE TABLE IF NOT EXISTS records(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL, fields TEXT);
"""

    def __init__(self) -> None:
        self.last_seq = 0

    def load(self, db: sqlite3.Connection) -> None:
        self.last_seq = self._sequence(db)

    @staticmethod
    def _sequence(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()
        return int(row[0]) if row else 0

    def oldest(self, db: sqlite3.Connection) -> int | None:
        row = db.execute("SELECT MIN(seq) FROM records").fetchone()
        return None if row[0] is None else int(row[0])

    def floor(self, db: sqlite3.Connection) -> int:
        """The seq just before the oldest record kept: where a cursor that lacks none starts."""
        oldest = self.oldest(db)
        return (oldest - 1) if oldest is not None else self.last_seq

    def insert(self, db: sqlite3.Connection, rows: list[InsertRow]) -> None:
        db.executemany("INSERT INTO records(series, ts, value, fields) VALUES(?,?,?,?)", rows)

    def inserted(self, db: sqlite3.Connection) -> None:
        """After a commit that inserted records: the new `last_seq`."""
        self.last_seq = self._sequence(db)

    def read(self, db: sqlite3.Connection, after: int, limit: int) -> list[Row]:
        return db.execute(
            "SELECT seq, series, ts, value, fields FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()

    def prune(self, db: sqlite3.Connection, upto: int) -> None:
        """Delete the records every sink has (seq <= `upto`)."""
        db.execute("DELETE FROM records WHERE seq <= ?", (upto,))

    def drop_oldest(self, db: sqlite3.Connection, n: int) -> int:
        """Delete the `n` oldest records, delivered or not; how many went."""
        cur = db.execute("DELETE FROM records WHERE seq IN (SELECT seq FROM records ORDER BY seq LIMIT ?)",
                         (n,))
        return cur.rowcount
