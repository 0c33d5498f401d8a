"""Redelivery keys: input messages already committed, so a broker's redelivery is recognised.

    seen(key, time_ns)        WITHOUT ROWID, 16-byte keys (`dedupe_key`)

Only a message flagged as a redelivery (MQTT DUP) is looked up: a sensor may well send the
same bytes twice.  Bounded on its own, by age and by size: a key is kept `KEEP_NS` (7 days),
and at most max_size / `SHARE` bytes of keys (`KEY_BYTES` each, as measured) are kept - the
commit that goes beyond deletes the oldest down to 90 %.  A broker redelivers what was in
flight when the gateway stopped as soon as it is back, so the keys that matter are the
newest; at 2 GiB that is 2 million keys, 10 hours of messages at 54/s.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3

__all__ = ["KEEP_NS", "KEY_BYTES", "SHARE", "RedeliveryKeys", "dedupe_key"]

log = logging.getLogger("remotecal.journal")

KEEP_NS = 7 * 86400 * 10**9
SHARE = 16
KEY_BYTES = 66
"""Bytes one key takes in the file (key, time, both b-trees), measured on a journal of 10^6 keys."""
_LOW_WATER = 0.9


def dedupe_key(*parts: bytes) -> bytes:
    """A 16-byte key identifying one input message (source, topic, payload)."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(len(p).to_bytes(4, "little"))
        h.update(p)
    return h.digest()


class RedeliveryKeys:
    DDL = """
CREATE TABLE IF NOT EXISTS seen(key BLOB PRIMARY KEY, time_ns INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_time ON seen(time_ns);
"""

    def __init__(self, max_size: int) -> None:
        self.max_keys = max(1000, max_size // SHARE // KEY_BYTES)
        self.count = 0
        """Keys kept - an upper bound between trims (a key remembered again is counted again)."""
        self.expired = 0
        """Keys deleted for size since start (not for age)."""
        self._staged = (0, 0)

    def load(self, db: sqlite3.Connection) -> None:
        self.count = self._count(db)

    @staticmethod
    def _count(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT COUNT(*) FROM seen").fetchone()[0])

    def committed(self) -> None:
        count, expired = self._staged
        self.count += count
        self.expired += expired
        self._staged = (0, 0)

    def rolled_back(self) -> None:
        self._staged = (0, 0)

    @staticmethod
    def known(db: sqlite3.Connection, key: bytes) -> bool:
        return db.execute("SELECT 1 FROM seen WHERE key=?", (key,)).fetchone() is not None

    def remember(self, db: sqlite3.Connection, rows: list[tuple[bytes, int]]) -> None:
        """Keep these keys (in the open transaction), then the size bound."""
        db.executemany("INSERT OR REPLACE INTO seen VALUES(?,?)", rows)
        self._staged = (self._staged[0] + len(rows), self._staged[1])
        if self.count + self._staged[0] > self.max_keys:
            self._trim(db)

    def _trim(self, db: sqlite3.Connection) -> None:
        count = self._count(db)  # exact again: the staged count may hold keys remembered twice
        excess = count - int(self.max_keys * _LOW_WATER)
        if excess > 0:
            db.execute("DELETE FROM seen WHERE key IN (SELECT key FROM seen ORDER BY time_ns LIMIT ?)",
                       (excess,))
            log.info("journal: %d oldest redelivery key(s) deleted to stay within %d keys (max_size / %d)",
                     excess, self.max_keys, SHARE)
        self._staged = (count - max(0, excess) - self.count, self._staged[1] + max(0, excess))

    def expire(self, db: sqlite3.Connection, now_ns: int) -> None:
        """Forget the keys older than `KEEP_NS` (in the open transaction)."""
        if db.execute("DELETE FROM seen WHERE time_ns < ?", (now_ns - KEEP_NS,)).rowcount:
            self._staged = (self._count(db) - self.count, self._staged[1])
