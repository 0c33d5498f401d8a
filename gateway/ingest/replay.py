"""The replay check of the central ingest: which (gateway, sequence number) frames to refuse.

A gateway numbers its frames 1, 2, 3 ... (with a jump after a restart), but the ingest
cannot demand that they arrive in order: a shared subscription hands one gateway's frames
round-robin to several workers, and when a worker dies the broker hands its unacknowledged
frames out again, after newer ones were accepted elsewhere or by the same worker.  A
"greater than the last accepted" rule would reject those legitimate frames and lose their
readings.  So the rule is a window, as IPsec's anti-replay window (RFC 4303, 3.4.3):

    H  = the highest sequence number accepted from this gateway (by this worker)
    seq <= H - window                 refused: too old to tell apart from a replay
    seq accepted before (exact)       refused: a replay (or a redelivery of a committed frame)
    anything else                     accepted, even if lower than H

`window` (frames, `replay_window` in CENTRAL.toml) must exceed how far frames can arrive out
of order: at most the in-flight frames of a dead worker plus the backlog that reaches the
others meanwhile.  At one frame per second per gateway the default, 10000, is almost three
hours (and costs about half a megabyte of memory per gateway).  Accepted numbers above
H - window are kept in memory and in `replay.db` beside the journal, so the check survives
a restart.

`replay.db` is written shortly after the journal commit, not in it: after a crash in between,
the journal's own redelivery keys (`Journal.submit(dedupe=...)`, keyed by gateway and
sequence number, committed atomically with the records) still drop the duplicate.

Several workers keep one window each.  A replay that reaches a worker which never saw the
original is accepted there; its readings are the original's, bit for bit and with the same
timestamps, so InfluxDB stores them as the same points, and nothing changes.  What the
signature and this check guarantee is that no reading reaches InfluxDB that the gateway
did not sign, and that no worker journals a frame twice.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.errors import JournalError

__all__ = ["ReplayGuard"]

log = logging.getLogger("remotecal.ingest")

Gateway = tuple[str, str]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted(
    site TEXT NOT NULL, gateway TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY(site, gateway, seq)) WITHOUT ROWID;
"""


class ReplayGuard:
    """`check` before journalling a frame; `reserve` it; `accept` or `release` after the commit."""

    def __init__(self, path: str | Path, window: int) -> None:
        self.path = Path(path)
        self.window = window
        self._high: dict[Gateway, int] = {}
        self._seen: dict[Gateway, set[int]] = defaultdict(set)
        self._reserved: set[tuple[str, str, int]] = set()
        self._unsaved: list[tuple[str, str, int]] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay")
        self._db: sqlite3.Connection | None = None
        self._failure: str | None = None

    def open(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            for site, gw, high in db.execute("SELECT site, gateway, MAX(seq) FROM accepted GROUP BY 1, 2"):
                self._high[(site, gw)] = high
                rows = db.execute("SELECT seq FROM accepted WHERE site=? AND gateway=? AND seq > ?",
                                  (site, gw, high - self.window))
                self._seen[(site, gw)] = {r[0] for r in rows}
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"{self.path}: cannot open the replay state: {exc}") from None
        self._db = db

    def check(self, site: str, gateway: str, seq: int) -> str | None:
        """None if the frame may be accepted, else why not ("replayed: ...", "too old: ...")."""
        gw = (site, gateway)
        if seq in self._seen[gw] or (site, gateway, seq) in self._reserved:
            return f"replayed: frame {seq} of {site}/{gateway} was accepted before"
        high = self._high.get(gw)
        if high is not None and seq <= high - self.window:
            return (f"too old: frame {seq} of {site}/{gateway} is more than {self.window} frames "
                    f"behind {high}, outside the replay window")
        return None

    def reserve(self, site: str, gateway: str, seq: int) -> None:
        """The frame is on its way to the journal: a second copy meanwhile is a replay too."""
        self._reserved.add((site, gateway, seq))

    def release(self, site: str, gateway: str, seq: int) -> None:
        """The journal commit failed: the broker will redeliver the frame, let it in then."""
        self._reserved.discard((site, gateway, seq))

    def accept(self, site: str, gateway: str, seq: int) -> None:
        """The frame is committed to the journal."""
        self._reserved.discard((site, gateway, seq))
        gw = (site, gateway)
        seen = self._seen[gw]
        seen.add(seq)
        high = self._high.get(gw)
        if high is None or seq > high:
            self._high[gw] = seq
            if len(seen) > self.window:
                floor = seq - self.window
                self._seen[gw] = {s for s in seen if s > floor}
        self._unsaved.append((site, gateway, seq))

    async def save(self) -> None:
        """Write the frames accepted since the last call, and forget what left the window."""
        rows, self._unsaved = self._unsaved, []
        floors = [(s, g, h - self.window) for (s, g), h in self._high.items()]
        if not rows:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._save_sync, rows, floors)
        except (sqlite3.Error, OSError, OverflowError) as exc:
            # A full or failing disk: the numbers stay in memory (the check goes on) and are
            # written at the next call; the journal's redelivery keys cover a crash meanwhile.
            self._unsaved[:0] = rows
            if str(exc) != self._failure:
                log.error("ingest: cannot save the replay state to %s (%s); retrying", self.path, exc)
                self._failure = str(exc)
            return
        if self._failure is not None:
            log.info("ingest: the replay state is saved again")
            self._failure = None

    def _save_sync(self, rows: list[tuple[str, str, int]], floors: list[tuple[str, str, int]]) -> None:
        db = self._db
        assert db is not None
        with db:
            db.executemany("INSERT OR IGNORE INTO accepted VALUES(?,?,?)", rows)
            db.executemany("DELETE FROM accepted WHERE site=? AND gateway=? AND seq <= ?", floors)

    async def close(self) -> None:
        await self.save()
        self._pool.shutdown(wait=True)
        if self._db is not None:
            self._db.close()
            self._db = None
