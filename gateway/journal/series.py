"""The series table: tag sets interned once, so a record row is just (seq, series, ts, value).

    series(id, measurement, site, gateway, run, channel, quantity, unit, role, tags)

`by_id` is the table a batch's `RecordRows` reads its records through (and the line encoder
caches prefixes by its ids).  A series made in a transaction that then fails does not exist:
SQLite gives its id again, so the table forgets it (`rollback`) rather than file readings
under another channel.
"""

from __future__ import annotations

import json
import sqlite3

from gateway.reading import Reading
from gateway.records import Series

__all__ = ["SeriesKey", "SeriesTable"]

SeriesKey = tuple[str, str, str, str, str, str, str, str, str]
"""The nine columns: measurement, site, gateway, run, channel, quantity, unit, role, tags (JSON)."""


class SeriesTable:
    DDL = """
CREATE TABLE IF NOT EXISTS series(
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL, site TEXT NOT NULL, gateway TEXT NOT NULL, run TEXT NOT NULL,
    channel TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL, role TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE(measurement, site, gateway, run, channel, quantity, unit, role, tags));
"""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, ...], int] = {}
        self.by_id: dict[int, Series] = {}
        self._uncommitted: list[tuple[str, ...]] = []

    def load(self, db: sqlite3.Connection) -> None:
        for sid, *key in db.execute("SELECT * FROM series"):
            self.by_key[tuple(key)] = sid
            self.by_id[sid] = Series.from_key(key)

    @staticmethod
    def reading_key(r: Reading) -> tuple[str, ...]:
        return ("reading", r.site, r.gateway, r.run, r.channel, r.quantity, r.unit, r.role,
                json.dumps(r.tags) if r.tags else "")

    @staticmethod
    def health_key(site: str, gateway: str) -> tuple[str, ...]:
        return ("gateway_health", site, gateway, "", "", "", "", "", "")

    def id_for(self, db: sqlite3.Connection, key: tuple[str, ...]) -> int:
        """The id of series `key`, made (in the open transaction) if it is new."""
        sid = self.by_key.get(key)
        if sid is None:
            cur = db.execute("INSERT OR IGNORE INTO series VALUES(NULL,?,?,?,?,?,?,?,?,?)", key)
            sid = cur.lastrowid if cur.rowcount else None
            if not sid:
                sid = db.execute(
                    "SELECT id FROM series WHERE measurement=? AND site=? AND gateway=? AND run=? AND "
                    "channel=? AND quantity=? AND unit=? AND role=? AND tags=?", key
                ).fetchone()[0]
            assert sid is not None
            self.by_key[key] = sid
            self.by_id[sid] = Series.from_key(key)
            self._uncommitted.append(key)
        return sid

    def committed(self) -> None:
        self._uncommitted = []

    def rolled_back(self) -> None:
        """The transaction failed: the series it made do not exist, their ids will be given again."""
        for key in self._uncommitted:
            del self.by_id[self.by_key.pop(key)]
        self._uncommitted = []
