"""Remote run control's tables: the replay store and the log of every command.

    control_seen(key, seq, expires_ns)      the (institute key, sequence number) of every
                                            signed command for this gateway, kept until an
                                            hour past its expiry (it is refused as expired
                                            after that anyway), so a restart never reopens
                                            the replay window
    control_log(id, time_ns, origin, ...)   every command, local or remote, accepted or
                                            refused, with its reason; the newest `LOG_KEEP`

`gateway.control` decides; this module only keeps.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOG_KEEP", "SEEN_MARGIN_NS", "CommandRow", "ControlTables", "read_command_log"]

LOG_KEEP = 100_000
TRIM_EVERY = 1000
"""The log is trimmed back to LOG_KEEP rows once per this many rows."""
SEEN_MARGIN_NS = 3600 * 10**9
"""How long past its expiry a command's (key, seq) is kept: room for a clock set back."""


@dataclass(frozen=True, slots=True)
class CommandRow:
    """One command as the journal keeps it."""

    time_ns: int
    origin: str            # "remote" | "local"
    command: str
    run: str
    actor: str
    accepted: bool
    refusal: str           # "" when accepted
    reason: str
    seq: int | None = None
    key: str | None = None
    id: int = 0


class ControlTables:
    DDL = """
CREATE TABLE IF NOT EXISTS control_seen(key TEXT NOT NULL, seq INTEGER NOT NULL, expires_ns INTEGER NOT NULL,
                                        PRIMARY KEY(key, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS control_log(id INTEGER PRIMARY KEY AUTOINCREMENT, time_ns INTEGER NOT NULL,
    origin TEXT NOT NULL, command TEXT NOT NULL, run TEXT NOT NULL, actor TEXT NOT NULL,
    accepted INTEGER NOT NULL, refusal TEXT NOT NULL, reason TEXT NOT NULL, seq INTEGER, key TEXT);
"""

    @staticmethod
    def claim(db: sqlite3.Connection, key: str, seq: int, expires_ns: int) -> bool:
        """Remember (key, seq) (in the open transaction); False if it was there already."""
        cur = db.execute("INSERT OR IGNORE INTO control_seen VALUES(?, ?, ?)", (key, seq, expires_ns))
        return cur.rowcount == 1

    @staticmethod
    def log(db: sqlite3.Connection, row: CommandRow) -> int:
        """Keep `row` (in the open transaction), and only the newest LOG_KEEP rows; its id."""
        cur = db.execute(
            "INSERT INTO control_log(time_ns, origin, command, run, actor, accepted, refusal, reason, seq, "
            "key) VALUES(?,?,?,?,?,?,?,?,?,?)",
            (row.time_ns, row.origin, row.command, row.run, row.actor, int(row.accepted), row.refusal,
             row.reason, row.seq, row.key))
        new = int(cur.lastrowid or 0)
        if new > LOG_KEEP and new % TRIM_EVERY == 0:
            db.execute("DELETE FROM control_log WHERE id <= ?", (new - LOG_KEEP,))
        return new

    @staticmethod
    def expire(db: sqlite3.Connection, now_ns: int) -> int:
        """Forget the (key, seq) of commands expired more than SEEN_MARGIN_NS ago."""
        cur = db.execute("DELETE FROM control_seen WHERE expires_ns < ?", (now_ns - SEEN_MARGIN_NS,))
        return cur.rowcount

    @staticmethod
    def latest(db: sqlite3.Connection, limit: int, accepted_only: bool = False) -> list[CommandRow]:
        where = "WHERE accepted = 1 " if accepted_only else ""
        rows = db.execute(
            "SELECT time_ns, origin, command, run, actor, accepted, refusal, reason, seq, key, id "
            f"FROM control_log {where}ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [CommandRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8], r[9], r[10])
                for r in rows]


def read_command_log(path: str | Path, limit: int = 50) -> list[CommandRow]:
    """The newest `limit` commands of a journal, opened read-only (newest first)."""
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return ControlTables.latest(db, limit)
    except sqlite3.OperationalError:  # a journal from before remote control: no table
        return []
    finally:
        db.close()
