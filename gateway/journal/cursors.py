"""The sinks' cursors: the last seq each sink has delivered.

    cursors(sink, seq)

A sink configured anew starts at the oldest record still kept (what is pending for the
others is pending for it too); the cursor of a sink that is no longer configured is dropped,
so it stops holding records back.  The lowest cursor is what the records may be pruned to.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.records import RecordRows

__all__ = ["Batch", "Cursors"]

log = logging.getLogger("remotecal.journal")


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


class Cursors:
    DDL = "CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);"

    def __init__(self, sinks: Iterable[str]) -> None:
        self.sinks = list(sinks)
        self.seq: dict[str, int] = {}

    def load(self, db: sqlite3.Connection, start: int) -> None:
        """Read the stored cursors (in the open transaction): a new sink starts at `start`,
        a sink no longer configured loses its cursor."""
        stored = dict(db.execute("SELECT sink, seq FROM cursors").fetchall())
        for gone in set(stored) - set(self.sinks):
            log.warning("journal: sink %r is no longer configured; its cursor is dropped", gone)
            db.execute("DELETE FROM cursors WHERE sink=?", (gone,))
        for sink in self.sinks:
            if sink not in stored:
                db.execute("INSERT INTO cursors VALUES(?, ?)", (sink, start))
                stored[sink] = start
        self.seq = {s: stored[s] for s in self.sinks}

    def low(self, default: int) -> int:
        """The lowest cursor: every record up to it is delivered everywhere."""
        return min(self.seq.values(), default=default)

    def advance(self, db: sqlite3.Connection, sink: str, seq: int) -> tuple[int, int]:
        """Store `sink`'s new cursor (in the open transaction); (lowest before, lowest after).
        The in-memory cursor moves with `moved()`, once the transaction is committed."""
        before = min(self.seq.values())
        after = min({**self.seq, sink: seq}.values())
        db.execute("UPDATE cursors SET seq=? WHERE sink=?", (seq, sink))
        return before, after

    def moved(self, sink: str, seq: int) -> None:
        self.seq[sink] = seq

    def raise_to(self, db: sqlite3.Connection, floor: int) -> None:
        """Records below `floor` were dropped: no cursor may point before it."""
        for sink, seq in self.seq.items():
            if seq < floor:
                self.seq[sink] = floor
                db.execute("UPDATE cursors SET seq=? WHERE sink=?", (floor, sink))
