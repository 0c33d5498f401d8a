"""Held series: series a sink's server refuses as a whole (a schema conflict), kept aside.

    held_series(sink, series, reason, since_ns)
    held(sink, seq, series, ts, value, fields)      the records of held series, per sink

A foreign point of another type (`value=1i` written by someone else) makes InfluxDB refuse
every float of that measurement in the shard.  Those records are not bad input - they must
not fill the quarantine, nor go when its bound deletes its oldest rows - and nothing is wrong
with the other series.  So the sink's cursor moves on, and the records of a held series are
copied here (in the transaction that moves the cursor) until a retry shows the server takes
them again: then they are delivered, oldest first, and the series is released.  Held records
are records: they count as pending for their sink and against max_size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from gateway.records import Row

__all__ = ["HeldSeries"]


class HeldSeries:
    DDL = """
CREATE TABLE IF NOT EXISTS held_series(
    sink TEXT NOT NULL, series INTEGER NOT NULL, reason TEXT NOT NULL, since_ns INTEGER NOT NULL,
    PRIMARY KEY(sink, series)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held(
    sink TEXT NOT NULL, seq INTEGER NOT NULL, series INTEGER NOT NULL, ts INTEGER NOT NULL,
    value REAL, fields TEXT, PRIMARY KEY(sink, series, seq)) WITHOUT ROWID;
"""

    def __init__(self) -> None:
        self.series: dict[str, dict[int, str]] = {}
        """sink -> {series id: the server's reason}"""
        self.records: dict[str, int] = {}
        """sink -> records held"""
        self._staged: list[tuple[str, int, int | None, str | None]] = []  # (sink, records, series, reason)

    def load(self, db: sqlite3.Connection, sinks: Iterable[str]) -> None:
        sinks = list(sinks)
        self.series = {s: {} for s in sinks}
        self.records = {s: 0 for s in sinks}
        for sink, sid, reason in db.execute("SELECT sink, series, reason FROM held_series"):
            if sink in self.series:
                self.series[sink][sid] = reason
        for sink, n in db.execute("SELECT sink, COUNT(*) FROM held GROUP BY sink"):
            if sink in self.records:
                self.records[sink] = n
        db.execute(f"DELETE FROM held WHERE sink NOT IN ({','.join('?' * len(sinks))})", sinks)
        db.execute(f"DELETE FROM held_series WHERE sink NOT IN ({','.join('?' * len(sinks))})", sinks)

    def all_ids(self) -> set[int]:
        return {sid for held in self.series.values() for sid in held}

    def committed(self) -> None:
        for sink, n, sid, reason in self._staged:
            self.records[sink] += n
            if sid is not None:
                if reason is None:
                    self.series[sink].pop(sid, None)
                else:
                    self.series[sink][sid] = reason
        self._staged = []

    def rolled_back(self) -> None:
        self._staged = []

    def hold(self, db: sqlite3.Connection, sink: str, new: dict[int, str], rows: list[Row],
             now_ns: int) -> None:
        """Hold the series `new` (id -> reason) and keep `rows` (in the open transaction)."""
        db.executemany("INSERT OR REPLACE INTO held_series VALUES(?,?,?,?)",
                       [(sink, sid, reason, now_ns) for sid, reason in new.items()])
        db.executemany("INSERT OR IGNORE INTO held VALUES(?,?,?,?,?,?)",
                       [(sink, seq, sid, ts, value, fields) for seq, sid, ts, value, fields in rows])
        self._staged += [(sink, 0, sid, reason) for sid, reason in new.items()]
        self._staged.append((sink, len(rows), None, None))

    @staticmethod
    def oldest(db: sqlite3.Connection, sink: str, series: int, limit: int) -> list[Row]:
        return db.execute("SELECT seq, series, ts, value, fields FROM held WHERE sink=? AND series=? "
                          "ORDER BY seq LIMIT ?", (sink, series, limit)).fetchall()

    def delivered(self, db: sqlite3.Connection, sink: str, series: int, upto: int) -> bool:
        """Held records of `series` up to seq `upto` are delivered (in the open transaction): delete
        them, and release the series if none is left; whether it was released."""
        n = db.execute("DELETE FROM held WHERE sink=? AND series=? AND seq<=?", (sink, series, upto)).rowcount
        self._staged.append((sink, -n, None, None))
        if db.execute("SELECT 1 FROM held WHERE sink=? AND series=? LIMIT 1", (sink, series)).fetchone():
            return False
        db.execute("DELETE FROM held_series WHERE sink=? AND series=?", (sink, series))
        self._staged.append((sink, 0, series, None))
        return True
