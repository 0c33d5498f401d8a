"""The series table: tag sets interned once, so a record row is just (seq, series, ts, value).

    series(id, measurement, site, gateway, run, channel, quantity, unit, role, tags)

`by_id` is the table a batch's `RecordRows` reads its records through (and the line encoder
caches prefixes by its ids).  A series made in a transaction that then fails does not exist:
SQLite gives its id again, so the table forgets it (`rolled_back`) rather than file readings
under another channel.

Bounded by use: a series is freed (its row and its entries here) once it has no records left
- every sink's cursor is past the last commit that used it, and no sink holds it - and it
was not used for `idle_s`.  Freeing runs at each housekeeping and whenever `FREE_EVERY` new
series were made since the last pass, so a stream of ever new channels (one per topic level,
say) costs memory for what is pending or recent only.  A series id is never given to another
series: the series with the highest id is never freed, so SQLite (which gives the highest id
+ 1) never hands out a freed one, and whatever a sink cached under an id stays right.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection, Iterable

from gateway.reading import Point, Reading
from gateway.records import Series

__all__ = ["FREE_EVERY", "IDLE_S", "SeriesKey", "SeriesTable"]

SeriesKey = tuple[str, str, str, str, str, str, str, str, str]
"""The nine columns: measurement, site, gateway, run, channel, quantity, unit, role, tags (JSON)."""

IDLE_S = 300.0
"""A series unused for this long, with no records left, is freed."""
FREE_EVERY = 10_000
"""New series since the last pass that make the journal look for series to free at once."""


class SeriesTable:
    DDL = """
CREATE TABLE IF NOT EXISTS series(
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL, site TEXT NOT NULL, gateway TEXT NOT NULL, run TEXT NOT NULL,
    channel TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL, role TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE(measurement, site, gateway, run, channel, quantity, unit, role, tags));
"""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self.idle_s = idle_s
        self.by_key: dict[tuple[str, ...], int] = {}
        self.by_id: dict[int, Series] = {}
        self.freed = 0
        """Series freed since start."""
        self._used: dict[int, tuple[float, int]] = {}  # id -> (monotonic time, a seq >= its last record's)
        self._key: dict[int, tuple[str, ...]] = {}
        self._uncommitted: list[tuple[str, ...]] = []
        self._made_since_free = 0

    def load(self, db: sqlite3.Connection, last_seq: int) -> None:
        now = time.monotonic()
        for sid, *key in db.execute("SELECT * FROM series"):
            self.by_key[tuple(key)] = sid
            self.by_id[sid] = Series.from_key(key)
            self._key[sid] = tuple(key)
            self._used[sid] = (now, last_seq)

    @staticmethod
    def reading_key(r: Reading) -> tuple[str, ...]:
        return ("reading", r.site, r.gateway, r.run, r.channel, r.quantity, r.unit, r.role,
                json.dumps(r.tags) if r.tags else "")

    @staticmethod
    def point_key(p: Point) -> tuple[str, ...]:
        return (p.measurement, p.site, p.gateway, p.run, "", "", "", "", json.dumps(p.tags) if p.tags else "")

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
            self._key[sid] = key
            self._uncommitted.append(key)
        return sid

    def committed(self) -> None:
        self._made_since_free += len(self._uncommitted)
        self._uncommitted = []

    def rolled_back(self) -> None:
        """The transaction failed: the series it made do not exist, their ids will be given again."""
        for key in self._uncommitted:
            sid = self.by_key.pop(key)
            del self.by_id[sid], self._key[sid]
            self._used.pop(sid, None)
        self._uncommitted = []

    def used(self, ids: Iterable[int], last_seq: int) -> None:
        """These series got records in a commit whose records end at `last_seq`."""
        entry = (time.monotonic(), last_seq)
        for sid in ids:
            self._used[sid] = entry

    @property
    def free_due(self) -> bool:
        return self._made_since_free >= FREE_EVERY

    def free(self, db: sqlite3.Connection, delivered: int, held: Collection[int]) -> list[int]:
        """Delete (in the open transaction) the series with no records left - their last use is
        at or before `delivered`, the lowest cursor, and not in `held` - that were not used for
        `idle_s`; the ids to forget with `forget` once committed."""
        self._made_since_free = 0
        if not self.by_id:
            return []
        newest = max(self.by_id)
        before = time.monotonic() - self.idle_s
        gone = [sid for sid, (t, seq) in self._used.items()
                if t <= before and seq <= delivered and sid != newest and sid not in held]
        for i in range(0, len(gone), 500):
            part = gone[i:i + 500]
            db.execute(f"DELETE FROM series WHERE id IN ({','.join('?' * len(part))})", part)
        return gone

    def forget(self, ids: list[int]) -> None:
        for sid in ids:
            del self.by_id[sid], self.by_key[self._key.pop(sid)], self._used[sid]
        self.freed += len(ids)
        if len(ids) > len(self.by_id):
            # A dict keeps its size after deletions: copies give most of the memory back.
            # (`by_id` is a new table then: a sink that caches by table starts over.)
            self.by_id, self.by_key = dict(self.by_id), dict(self.by_key)
            self._used, self._key = dict(self._used), dict(self._key)
