"""A damaged or vanished journal: found at open, set aside, what SQLite can read recovered, the
loss said in one line - never a silent fresh start, never a crash loop.

At every open:

- `DATA_DIR/journal.state` (the marker, outside the database) says which journal was last
  open and how many records it had pending.  A journal.db that is missing or empty while the
  marker says records were pending is reported loudly: those records are lost.  One whose
  last record is older than the marker's is reported too (a lost -wal file).
- `PRAGMA quick_check` on the journal.  A damaged one (or one SQLite cannot open at all) is
  moved aside - `journal.db.damaged-<UTC time>` with its -wal, kept for whoever wants to try
  harder - and a new journal is made.  Into it goes what SQLite can still read of the old
  one: its series, cursors, redelivery keys, quarantine, held series, and every record it can read
  (ranges of records around a damaged page are bisected down to single rows).  The count of
  records pending before (from the old journal's cursors, or the marker) minus the records
  recovered is the loss: logged as one error line, and added up in the new journal's meta
  (`lost_records`, `damaged`) for the health point (`journal_lost`, `journal_damaged`).

Recovered records keep their order and their series id, numbered anew without the gaps of
the lost ones; each cursor that could be read comes after the same records as before, so
nothing is delivered twice that was delivered; without readable cursors every recovered
record is delivered again (InfluxDB keeps one point per series and time).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MARKER_NAME", "Marker", "Salvage", "damage", "move_aside", "salvage"]

log = logging.getLogger("remotecal.journal")

MARKER_NAME = "journal.state"
_WINDOW = 1000
_SMALL = 16
_BARREN = 20
_SALVAGE_BUDGET_S = 60.0


class Marker:
    """`DATA_DIR/journal.state`: {"journal": id, "pending": n, "last_seq": s, "updated": time},
    written atomically (a new file renamed over the old, fsynced)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / MARKER_NAME
        self.written: tuple[str, int, int] | None = None

    def read(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def write(self, journal_id: str, pending: int, last_seq: int) -> None:
        state = (journal_id, pending, last_seq)
        if state == self.written:
            return
        doc = {"journal": journal_id, "pending": pending, "last_seq": last_seq,
               "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(doc) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # a full disk: the marker is a hint, the journal goes on
            log.debug("journal: cannot write %s: %s", self.path, exc)
            return
        self.written = state


def damage(path: Path) -> str | None:
    """What is wrong with the journal at `path` (`PRAGMA quick_check`), or None if nothing is."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = db.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        db.close()
    problems = [str(r[0]) for r in rows]
    return None if problems == ["ok"] else "; ".join(problems)[:300]


def move_aside(path: Path) -> Path:
    """Rename the journal and its -wal (and drop its -shm, a cache) to `<name>.damaged-<time>`."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    n = 1
    while aside.exists():
        n += 1
        aside = aside.with_name(f"{aside.name.split('~')[0]}~{n}")
    os.replace(path, aside)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        os.replace(wal, aside.with_name(aside.name + "-wal"))
    with contextlib.suppress(FileNotFoundError):
        path.with_name(path.name + "-shm").unlink()
    return aside


@dataclass
class Salvage:
    """What could be read of a damaged journal and written into the new one."""

    records: int = 0
    pending: int = 0
    """Recovered records beyond the lowest cursor (all of them when the cursors are lost)."""
    expected: int | None = None
    """Records pending in the damaged journal, if its cursors and last seq could be read."""
    series: int = 0
    quarantine: int = 0
    keys: int = 0
    held: int = 0
    cursors: dict[str, int] | None = None
    lost_before: int = 0
    damaged_before: int = 0
    unreadable: list[str] = field(default_factory=list)


def salvage(aside: Path, dst: sqlite3.Connection) -> Salvage:
    """Copy what SQLite can read of the journal at `aside` into `dst` (open transaction)."""
    out = Salvage()
    work = aside.with_name(aside.name + ".salvage")
    try:
        # A copy, so that opening it (which may replay or checkpoint its -wal) leaves `aside` as it was.
        shutil.copyfile(aside, work)
        wal = aside.with_name(aside.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, work.with_name(work.name + "-wal"))
        src = sqlite3.connect(work, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        out.unreadable.append(f"cannot copy or open it: {exc}")
        return out
    deadline = time.monotonic() + _SALVAGE_BUDGET_S
    try:
        _salvage(src, dst, out, deadline)
    finally:
        src.close()
        for p in (work, work.with_name(work.name + "-wal"), work.with_name(work.name + "-shm")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return out


def _try(out: Salvage, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except sqlite3.DatabaseError as exc:
        out.unreadable.append(f"{what}: {exc}")
        return None


def _salvage(src: sqlite3.Connection, dst: sqlite3.Connection, out: Salvage, deadline: float) -> None:
    if _try(out, "schema", lambda: src.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()) is None:
        return  # not even its table of tables: nothing can be read
    meta = _try(out, "meta", lambda: dict(src.execute("SELECT key, value FROM meta").fetchall())) or {}
    with contextlib.suppress(ValueError):
        out.lost_before = int(meta.get("lost_records", 0))
        out.damaged_before = int(meta.get("damaged", 0))
    cursors = _try(out, "cursors", lambda: dict(src.execute("SELECT sink, seq FROM cursors").fetchall()))
    last = _try(out, "sequence", lambda: src.execute(
        "SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone())
    last_seq = int(last[0]) if last else _try(out, "last record", lambda: src.execute(
        "SELECT MAX(seq) FROM records").fetchone()[0])
    if cursors:
        out.cursors = cursors
        if last_seq is not None:
            out.expected = max(0, int(last_seq) - min(cursors.values()))
    low = min(cursors.values()) if cursors else 0

    series = _rows(src, "series", "id", "*", 0, None, out, deadline)
    dst.executemany("INSERT OR IGNORE INTO series VALUES(?,?,?,?,?,?,?,?,?,?)", series)
    out.series = len(series)
    known = {row[0] for row in series}

    records = _rows(src, "records", "seq", "seq, series, ts, value, fields", low, last_seq, out, deadline)
    records = [r for r in records if r[1] in known]  # without its series a record has no tags
    # Numbered anew, without the gaps of the lost ones (a sink's pending count is a difference
    # of seqs), and each cursor after the same records as before.
    old_seqs = [r[0] for r in records]
    dst.executemany("INSERT INTO records(seq, series, ts, value, fields) VALUES(?,?,?,?,?)",
                    [(i, *r[1:]) for i, r in enumerate(records, 1)])
    if cursors:
        dst.executemany("INSERT OR REPLACE INTO cursors VALUES(?, ?)",
                        [(sink, bisect.bisect_right(old_seqs, seq)) for sink, seq in cursors.items()])
    out.records = len(records)
    out.pending = sum(1 for seq in old_seqs if seq > low)

    quarantine = _rows(src, "quarantine", "id", "id, time_ns, source, topic, reason, payload", 0, None, out,
                       deadline)
    dst.executemany("INSERT INTO quarantine VALUES(?,?,?,?,?,?)", quarantine)
    out.quarantine = len(quarantine)
    keys = _try(out, "redelivery keys", lambda: src.execute("SELECT key, time_ns FROM seen").fetchall()) or []
    dst.executemany("INSERT OR IGNORE INTO seen VALUES(?, ?)", keys)
    out.keys = len(keys)
    held = _try(out, "held series", lambda: src.execute("SELECT * FROM held_series").fetchall()) or []
    dst.executemany("INSERT OR IGNORE INTO held_series VALUES(?,?,?,?)", [h for h in held if h[1] in known])
    rows = _try(out, "held records", lambda: src.execute("SELECT * FROM held").fetchall()) or []
    dst.executemany("INSERT OR IGNORE INTO held VALUES(?,?,?,?,?,?)", [r for r in rows if r[2] in known])
    out.held = sum(1 for r in rows if r[2] in known)
    # Remote control: the replay store (or a replayed command would be taken again) and the log.
    tables = _try(out, "schema",
                  lambda: {r[0] for r in src.execute("SELECT name FROM sqlite_master")}) or set()
    seen: list[Any] = []
    log: list[tuple[Any, ...]] = []
    if "control_seen" in tables:
        seen = _try(out, "control replay store",
                    lambda: src.execute("SELECT key, seq, expires_ns FROM control_seen").fetchall()) or []
    dst.executemany("INSERT OR IGNORE INTO control_seen VALUES(?, ?, ?)", seen)
    if "control_log" in tables:
        log = _rows(src, "control_log", "id", "id, time_ns, origin, command, run, actor, accepted, refusal, "
                    "reason, seq, key", 0, None, out, deadline)
    dst.executemany("INSERT OR IGNORE INTO control_log VALUES(?,?,?,?,?,?,?,?,?,?,?)", log)


def _rows(src: sqlite3.Connection, table: str, key: str, columns: str, after: int, last: int | None,
          out: Salvage, deadline: float) -> list[tuple[Any, ...]]:
    """Every readable row of `table` with `key` > `after`, in key order: read in pages, and where
    a page of the b-tree is damaged, the rows around it one range (then one row) at a time."""
    found: list[tuple[Any, ...]] = []
    skipped = 0

    def read(a: int, b: int) -> list[tuple[Any, ...]]:
        return src.execute(f"SELECT {columns} FROM {table} WHERE {key} BETWEEN ? AND ? ORDER BY {key}",
                           (a, b)).fetchall()

    def split(a: int, b: int) -> None:
        nonlocal skipped
        if time.monotonic() > deadline:
            skipped += b - a + 1
            return
        try:
            found.extend(read(a, b))
            return
        except sqlite3.DatabaseError:
            pass
        if b - a < _SMALL:
            for k in range(a, b + 1):
                try:
                    found.extend(read(k, k))
                except sqlite3.DatabaseError:
                    skipped += 1
            return
        mid = (a + b) // 2
        split(a, mid)
        split(mid + 1, b)

    cur = after
    barren = 0  # damaged windows in a row that gave nothing: past the end, when the end is unknown
    while time.monotonic() < deadline and (last is None or cur < last) and barren < _BARREN:
        try:
            page = src.execute(f"SELECT {columns} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?",
                               (cur, _WINDOW)).fetchall()
        except sqlite3.DatabaseError:
            end = cur + _WINDOW if last is None else min(last, cur + _WINDOW)
            before = len(found)
            split(cur + 1, end)
            barren = barren + 1 if last is None and len(found) == before else 0
            cur = end
            continue
        if not page:
            if last is None or cur >= last:
                break
            cur += _WINDOW  # a damaged stretch can hide rows from a forward scan: step over it
            continue
        found.extend(page)
        cur = page[-1][0]
    if skipped:
        out.unreadable.append(f"{table}: {skipped} key(s) unreadable")
    return found
