"""A remote run's state and its transitions (gateway.run, SPEC section 8):

    run_state(id = 1, run, state, step, data, updated_ns)   the current run, one row
    run_log(seq AUTOINCREMENT, time_ns, run, state, step, actor, reason, fields)
                                                            every transition and command

`data` is the run engine's own JSON (the expanded steps, when the step began, ...): enough to
resume the step after a restart.  A transition is written with its `run_event` point in one
transaction (`Journal.append(..., also=...)`), so the row, the state and the point the sinks
deliver are all there or none is.  `run_log` keeps the newest `LOG_MAX` rows.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

__all__ = ["LOG_MAX", "RunLogRow", "RunRow", "RunTable"]

LOG_MAX = 100_000
"""Rows of run_log kept (oldest deleted first): a run of 50 steps writes a few hundred."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """The stored current run."""

    run: str
    state: str
    step: int | None
    data: dict[str, Any]
    updated_ns: int


@dataclass(frozen=True, slots=True)
class RunLogRow:
    seq: int
    time_ns: int
    run: str
    state: str
    step: int | None
    actor: str
    reason: str
    fields: dict[str, Any]


_TABLES = (
    """CREATE TABLE IF NOT EXISTS run_state(
    id INTEGER PRIMARY KEY CHECK (id = 1), run TEXT NOT NULL, state TEXT NOT NULL, step INTEGER,
    data TEXT NOT NULL, updated_ns INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS run_log(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ns INTEGER NOT NULL, run TEXT NOT NULL,
    state TEXT NOT NULL, step INTEGER, actor TEXT NOT NULL, reason TEXT NOT NULL, fields TEXT NOT NULL)""",
)


class RunTable:
    DDL = ""
    """Made when first used (`ensure`), not at every open: a gateway that never runs a
    procedure keeps the journal it had."""

    @staticmethod
    def ensure(db: sqlite3.Connection) -> None:
        for ddl in _TABLES:
            db.execute(ddl)

    @staticmethod
    def save(db: sqlite3.Connection, row: RunRow) -> None:
        """Store the current run (in the open transaction)."""
        RunTable.ensure(db)
        db.execute("INSERT OR REPLACE INTO run_state VALUES(1, ?, ?, ?, ?, ?)",
                   (row.run, row.state, row.step, json.dumps(row.data), row.updated_ns))

    @staticmethod
    def log(db: sqlite3.Connection, time_ns: int, run: str, state: str, step: int | None, actor: str,
            reason: str, fields: dict[str, Any]) -> None:
        """One more run_log row (in the open transaction); the oldest beyond LOG_MAX go."""
        RunTable.ensure(db)
        cur = db.execute("INSERT INTO run_log(time_ns, run, state, step, actor, reason, fields) "
                         "VALUES(?,?,?,?,?,?,?)",
                         (time_ns, run, state, step, actor, reason, json.dumps(fields)))
        if cur.lastrowid and cur.lastrowid % 1000 == 0:
            db.execute("DELETE FROM run_log WHERE seq <= ?", (cur.lastrowid - LOG_MAX,))

    @staticmethod
    def load(db: sqlite3.Connection) -> RunRow | None:
        RunTable.ensure(db)
        found = db.execute("SELECT run, state, step, data, updated_ns FROM run_state WHERE id = 1").fetchone()
        if found is None:
            return None
        run, state, step, data, updated = found
        return RunRow(run, state, step, json.loads(data), updated)

    @staticmethod
    def history(db: sqlite3.Connection, run: str | None, limit: int) -> list[RunLogRow]:
        """The newest `limit` rows (of `run`, or of all), oldest first."""
        RunTable.ensure(db)
        where, args = ("WHERE run = ?", (run,)) if run is not None else ("", ())
        rows = db.execute("SELECT seq, time_ns, run, state, step, actor, reason, fields FROM run_log "
                          f"{where} ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [RunLogRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in reversed(rows)]
