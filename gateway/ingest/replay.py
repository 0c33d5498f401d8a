"""The replay check of the central ingest: which (gateway, epoch, sequence number) frames to refuse.

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

A window is kept per epoch of a gateway (`Frame.epoch`: drawn with the gateway's uplink
state, so a gateway whose data_dir was lost numbers from 1 again in a new epoch, and those
frames are not replays of the old ones).  The `MAX_EPOCHS` epochs of a gateway last used are
kept; a frame of an epoch forgotten since is taken for a new epoch's - a replay of a frame
that old writes its readings again, as the same points (below).  Frames of version 1 and 2
(gateways from before epochs) are epoch 0.

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
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.errors import JournalError

__all__ = ["MAX_EPOCHS", "ReplayGuard"]

log = logging.getLogger("remotecal.ingest")

MAX_EPOCHS = 8
"""Epochs (re-provisionings) of one gateway whose replay windows are kept."""

Gateway = tuple[str, str]
Stream = tuple[str, str, int]
"""(site, gateway, epoch): one numbering of one gateway."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames(
    site TEXT NOT NULL, gateway TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY(site, gateway, epoch, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS epochs(
    site TEXT NOT NULL, gateway TEXT NOT NULL, epoch INTEGER NOT NULL, used_ns INTEGER NOT NULL,
    PRIMARY KEY(site, gateway, epoch)) WITHOUT ROWID;
"""
_MIGRATE = """
INSERT OR IGNORE INTO frames SELECT site, gateway, 0, seq FROM accepted;
INSERT OR IGNORE INTO epochs SELECT DISTINCT site, gateway, 0, 0 FROM accepted;
DROP TABLE accepted;
"""
"""replay.db from before epochs: its numbers are epoch 0's."""


class ReplayGuard:
    """`check` before journalling a frame; `reserve` it; `accept` or `release` after the commit."""

    def __init__(self, path: str | Path, window: int) -> None:
        self.path = Path(path)
        self.window = window
        self._high: dict[Stream, int] = {}
        self._seen: dict[Stream, set[int]] = defaultdict(set)
        self._epochs: dict[Gateway, dict[int, None]] = defaultdict(dict)
        """Each gateway's epochs, least recently used first."""
        self._reserved: set[tuple[str, str, int, int]] = set()
        self._unsaved: list[tuple[str, str, int, int]] = []
        self._forgotten: list[Stream] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay")
        self._db: sqlite3.Connection | None = None
        self._failure: str | None = None

    def open(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'accepted'").fetchone():
                db.executescript(f"BEGIN; {_MIGRATE} COMMIT;")
            for site, gw, epoch in db.execute("SELECT site, gateway, epoch FROM epochs ORDER BY used_ns"):
                self._epochs[(site, gw)][epoch] = None
            for site, gw, epoch, high in db.execute(
                    "SELECT site, gateway, epoch, MAX(seq) FROM frames GROUP BY 1, 2, 3"):
                self._high[(site, gw, epoch)] = high
                self._epochs[(site, gw)].setdefault(epoch, None)
                rows = db.execute("SELECT seq FROM frames WHERE site=? AND gateway=? AND epoch=? AND seq > ?",
                                  (site, gw, epoch, high - self.window))
                self._seen[(site, gw, epoch)] = {r[0] for r in rows}
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"{self.path}: cannot open the replay state: {exc}") from None
        self._db = db

    def check(self, site: str, gateway: str, seq: int, epoch: int = 0) -> str | None:
        """None if the frame may be accepted, else why not ("replayed: ...", "too old: ...")."""
        st = (site, gateway, epoch)
        if seq in self._seen[st] or (site, gateway, epoch, seq) in self._reserved:
            return f"replayed: frame {seq} of {site}/{gateway}{_of(epoch)} was accepted before"
        high = self._high.get(st)
        if high is not None and seq <= high - self.window:
            return (f"too old: frame {seq} of {site}/{gateway}{_of(epoch)} is more than {self.window} frames "
                    f"behind {high}, outside the replay window")
        return None

    def reserve(self, site: str, gateway: str, seq: int, epoch: int = 0) -> None:
        """The frame is on its way to the journal: a second copy meanwhile is a replay too."""
        self._reserved.add((site, gateway, epoch, seq))

    def release(self, site: str, gateway: str, seq: int, epoch: int = 0) -> None:
        """The journal commit failed: the broker will redeliver the frame, let it in then."""
        self._reserved.discard((site, gateway, epoch, seq))

    def accept(self, site: str, gateway: str, seq: int, epoch: int = 0) -> None:
        """The frame is committed to the journal."""
        self._reserved.discard((site, gateway, epoch, seq))
        st = (site, gateway, epoch)
        epochs = self._epochs[(site, gateway)]
        if epoch not in epochs:
            if epochs:
                log.info("ingest: %s/%s numbers its frames in a new epoch (%x): its uplink state is new - "
                         "a re-provisioned gateway, or its data_dir was lost", site, gateway, epoch)
            while len(epochs) >= MAX_EPOCHS:
                self._forget((site, gateway, next(iter(epochs))))
        else:
            del epochs[epoch]  # moved to the end: the most recently used
        epochs[epoch] = None
        seen = self._seen[st]
        seen.add(seq)
        high = self._high.get(st)
        if high is None or seq > high:
            self._high[st] = seq
            if len(seen) > self.window:
                floor = seq - self.window
                self._seen[st] = {s for s in seen if s > floor}
        self._unsaved.append((site, gateway, epoch, seq))

    def _forget(self, st: Stream) -> None:
        site, gw, epoch = st
        del self._epochs[(site, gw)][epoch]
        self._high.pop(st, None)
        self._seen.pop(st, None)
        self._forgotten.append(st)
        log.info("ingest: %s/%s: the replay window of its epoch %x is forgotten (%d later epochs kept)",
                 site, gw, epoch, MAX_EPOCHS - 1)

    async def save(self) -> None:
        """Write the frames accepted since the last call, and forget what left the window."""
        rows, self._unsaved = self._unsaved, []
        forgotten, self._forgotten = self._forgotten, []
        rows = [r for r in rows if r[2] in self._epochs.get((r[0], r[1]), ())]  # not forgotten since
        floors = [(s, g, e, h - self.window) for (s, g, e), h in self._high.items()]
        if not rows and not forgotten:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._save_sync, rows, floors,
                                                             forgotten)
        except (sqlite3.Error, OSError, OverflowError) as exc:
            # A full or failing disk: the numbers stay in memory (the check goes on) and are
            # written at the next call; the journal's redelivery keys cover a crash meanwhile.
            self._unsaved[:0] = rows
            self._forgotten[:0] = forgotten
            if str(exc) != self._failure:
                log.error("ingest: cannot save the replay state to %s (%s); retrying", self.path, exc)
                self._failure = str(exc)
            return
        if self._failure is not None:
            log.info("ingest: the replay state is saved again")
            self._failure = None

    def _save_sync(self, rows: list[tuple[str, str, int, int]], floors: list[tuple[str, str, int, int]],
                   forgotten: list[Stream]) -> None:
        db = self._db
        assert db is not None
        now = time.time_ns()
        with db:
            db.executemany("DELETE FROM frames WHERE site=? AND gateway=? AND epoch=?", forgotten)
            db.executemany("DELETE FROM epochs WHERE site=? AND gateway=? AND epoch=?", forgotten)
            db.executemany("INSERT OR IGNORE INTO frames VALUES(?,?,?,?)", rows)
            db.executemany("INSERT OR REPLACE INTO epochs VALUES(?,?,?,?)",
                           [(s, g, e, now) for s, g, e in {(s, g, e) for s, g, e, _ in rows}])
            db.executemany("DELETE FROM frames WHERE site=? AND gateway=? AND epoch=? AND seq <= ?", floors)

    async def close(self) -> None:
        await self.save()
        self._pool.shutdown(wait=True)
        if self._db is not None:
            self._db.close()
            self._db = None


def _of(epoch: int) -> str:
    return f" (epoch {epoch:x})" if epoch else ""
