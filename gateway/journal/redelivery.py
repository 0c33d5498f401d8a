"""Redelivery keys: input messages already committed, so a broker's redelivery is recognised.

    seen(key, time_ns)        WITHOUT ROWID, 16-byte keys (`dedupe_key`)

Only a message flagged as a redelivery (MQTT DUP) is looked up: a sensor may well send the
same bytes twice.  Keys are kept `KEEP_NS` (7 days).
"""

from __future__ import annotations

import hashlib
import sqlite3

__all__ = ["KEEP_NS", "RedeliveryKeys", "dedupe_key"]

KEEP_NS = 7 * 86400 * 10**9


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

    @staticmethod
    def known(db: sqlite3.Connection, key: bytes) -> bool:
        return db.execute("SELECT 1 FROM seen WHERE key=?", (key,)).fetchone() is not None

    @staticmethod
    def remember(db: sqlite3.Connection, rows: list[tuple[bytes, int]]) -> None:
        db.executemany("INSERT OR REPLACE INTO seen VALUES(?,?)", rows)

    @staticmethod
    def expire(db: sqlite3.Connection, now_ns: int) -> int:
        """Forget the keys older than `KEEP_NS`; how many went."""
        return db.execute("DELETE FROM seen WHERE time_ns < ?", (now_ns - KEEP_NS,)).rowcount
