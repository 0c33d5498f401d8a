"""A sink that keeps readings in a SQLite file, and the reader the pipeline uses on it.

The table mirrors InfluxDB's point model: one row per series and timestamp, a re-sent point
replaces itself (`INSERT OR REPLACE`), so the delivery runner's at-least-once retries stay
exactly-once here too.  The demo runs the whole chain on it without any outside service.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gateway.config_types import Duration
from gateway.errors import RemotecalError, RetryableError
from gateway.reading import HealthSample, Point, Reading, Record

__all__ = ["ChannelData", "LocalStoreConfig", "LocalStoreSink", "read_run"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reading(
    site TEXT, gateway TEXT, run TEXT, channel TEXT, quantity TEXT, unit TEXT, role TEXT,
    time_ns INTEGER, value REAL,
    PRIMARY KEY(run, channel, site, gateway, quantity, unit, role, time_ns)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gateway_health(
    site TEXT, gateway TEXT, time_ns INTEGER, fields TEXT, PRIMARY KEY(site, gateway, time_ns));
CREATE TABLE IF NOT EXISTS point(
    measurement TEXT, site TEXT, gateway TEXT, run TEXT, tags TEXT, time_ns INTEGER, fields TEXT,
    PRIMARY KEY(measurement, run, site, gateway, tags, time_ns)) WITHOUT ROWID;
"""


class LocalStoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    path: Path
    batch_size: int = Field(default=5000, ge=1)
    flush_interval: Duration = 0.5
    max_retry_interval: Duration = 5.0

    def target(self) -> str:
        """The SQLite file: the sink's identity when it has no name."""
        return str(self.path)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_SCHEMA)
    return db


class LocalStoreSink:
    def __init__(self, config: LocalStoreConfig, *, name: str | None = None):
        self.config = config
        self.name = name or config.name or "local"
        self.batch_size = config.batch_size
        self.flush_interval_s = config.flush_interval
        self._db: sqlite3.Connection | None = None

    def _write(self, records: Sequence[Record]) -> None:
        if self._db is None:
            self._db = _connect(self.config.path)
        records = list(records)  # a journal batch makes its records as it is read: once
        readings = [(r.site, r.gateway, r.run, r.channel, r.quantity, r.unit, r.role, r.time_ns, r.value)
                    for r in records if isinstance(r, Reading)]
        health = [(r.site, r.gateway, r.time_ns, json.dumps(r.fields))
                  for r in records if isinstance(r, HealthSample)]
        points = [(r.measurement, r.site, r.gateway, r.run, json.dumps(dict(r.tags), sort_keys=True),
                   r.time_ns, json.dumps(r.fields)) for r in records if isinstance(r, Point)]
        db = self._db
        db.execute("BEGIN")  # autocommit mode: without it every row would be its own transaction
        try:
            db.executemany("INSERT OR REPLACE INTO reading VALUES(?,?,?,?,?,?,?,?,?)", readings)
            db.executemany("INSERT OR REPLACE INTO gateway_health VALUES(?,?,?,?)", health)
            db.executemany("INSERT OR REPLACE INTO point VALUES(?,?,?,?,?,?,?)", points)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def write(self, records: Sequence[Record]) -> None:
        try:
            await asyncio.to_thread(self._write, records)
        except (sqlite3.Error, OSError) as exc:
            raise RetryableError(f"local store {self.config.path}: {exc}") from None

    async def aclose(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class ChannelData(BaseModel):
    """One channel of a run: times [s since the epoch] and values, in time order."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    channel: str
    quantity: str
    unit: str
    role: str
    t_s: np.ndarray
    values: np.ndarray


def read_run(path: str | Path, run: str, start_ns: int | None = None,
             end_ns: int | None = None) -> dict[str, ChannelData]:
    """Every channel of `run` in the store at `path`, as numpy arrays."""
    p = Path(path)
    if not p.exists():
        raise RemotecalError(f"{p}: no local store here")
    db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT channel, quantity, unit, role, time_ns, value FROM reading WHERE run = ? "
            "AND time_ns >= ? AND time_ns < ? ORDER BY channel, time_ns",
            (run, -(2**63) if start_ns is None else start_ns, 2**63 - 1 if end_ns is None else end_ns),
        ).fetchall()
    except sqlite3.Error as exc:
        raise RemotecalError(f"{p}: cannot read the local store: {exc}") from None
    finally:
        db.close()
    out: dict[str, ChannelData] = {}
    if not rows:
        return out
    channels = [r[0] for r in rows]
    t = np.array([r[4] for r in rows], dtype=np.int64)
    v = np.array([r[5] for r in rows], dtype=np.float64)
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or channels[i] != channels[start]:
            c, q, u, role = rows[start][:4]
            out[c] = ChannelData(channel=c, quantity=q, unit=u, role=role,
                                 t_s=t[start:i] / 1e9, values=v[start:i])
            start = i
    return out
