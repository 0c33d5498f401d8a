"""A damaged or vanished journal: set aside, recovered where SQLite can read it, the loss said.

Before: a 0-byte or deleted journal.db started empty without a word (every pending record
gone); a damaged page in the middle or at the end was accepted at open, the good part
delivered, and then the gateway died with a traceback at every start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import JournalError
from gateway.journal import Journal
from gateway.reading import Reading

N = 3000


def _r(i: int) -> Reading:
    return Reading("site", "gw", "R1", f"ch{i % 7}", "temperature", "degC", "dut", i + 0.5, 1_000 + i)


async def _pending_journal(path: Path, n: int = N) -> None:
    """A closed journal with `n` records pending for sink "a" (and 100 delivered before them)."""
    async with Journal(path, ["a"]) as j:
        await j.append([_r(i) for i in range(-100, 0)])
        batch = await j.next_batch("a", 1000)
        assert batch is not None
        await j.commit_delivery("a", batch.last_seq, len(batch))
        for k in range(0, n, 500):
            await j.append([_r(i) for i in range(k, min(n, k + 500))])


def _pages(path: Path, table: str) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [p for (p,) in db.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,))]
    finally:
        db.close()


def _smash(path: Path, page: int) -> None:
    """Overwrite one page (4096 bytes) with garbage, as a bad sector or a torn write would."""
    with open(path, "r+b") as f:
        f.seek((page - 1) * 4096)
        f.write(os.urandom(4096))


def _error(caplog: pytest.LogCaptureFixture, text: str) -> str:
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and text in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    return lines[0]


async def _values(j: Journal) -> list[float]:
    batch = await j.next_batch("a", 100_000)
    return [] if batch is None else [r.value for r in batch.records]  # type: ignore[union-attr]


@pytest.mark.parametrize("where", ["middle", "last"])
async def test_a_damaged_page_is_found_at_open_and_the_rest_recovered(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str) -> None:
    path = tmp_path / "journal.db"
    await _pending_journal(path)
    leaves = _pages(path, "records")
    _smash(path, leaves[len(leaves) // 2] if where == "middle" else max(leaves))
    async with Journal(path, ["a"]) as j:
        values = await _values(j)
        assert 0 < len(values) < N
        assert set(values) <= {i + 0.5 for i in range(N)} and values == sorted(values)
        lost = N - len(values)
        assert j.stats.lost == lost and j.stats.damaged == 1
        line = _error(caplog, "is damaged")
        assert f"{len(values)} of {N} pending record(s) recovered, {lost} LOST" in line
        batch = await j.next_batch("a", 100_000)
        assert batch is not None
        await j.commit_delivery("a", batch.last_seq, len(batch))
        await j.append([_r(N)])  # the new journal goes on from where the old one was
        assert await _values(j) == [N + 0.5]
    aside = list(tmp_path.glob("journal.db.damaged-*"))
    assert len(aside) == 1, "the damaged journal is kept for recovery"
    async with Journal(path, ["a"]) as j:  # the loss stays on record in the new journal
        assert (j.stats.lost, j.stats.damaged) == (lost, 1)


async def test_a_journal_sqlite_cannot_open_at_all_is_set_aside_and_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal.db"
    await _pending_journal(path)
    _smash(path, 1)  # the header: "file is not a database"
    async with Journal(path, ["a"]) as j:
        assert await _values(j) == []
        assert j.stats.lost == N  # from the marker: the old journal's cursors are unreadable
    assert "0 of 3000 pending record(s) recovered, 3000 LOST" in _error(caplog, "is damaged")


@pytest.mark.parametrize("how", ["missing", "empty"])
async def test_a_vanished_journal_with_records_pending_is_reported_loudly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str) -> None:
    path = tmp_path / "journal.db"
    await _pending_journal(path)
    assert json.loads((tmp_path / "journal.state").read_text())["pending"] == N
    if how == "missing":
        path.unlink()
    else:
        path.write_bytes(b"")
    async with Journal(path, ["a"]) as j:
        assert j.stats.lost == N and j.stats.damaged == 1
        await j.append([_r(1)])
        assert await _values(j) == [1.5]
    assert f"{path} is {how}, but journal.state says {N} record(s) were pending" in _error(caplog, "LOST")


async def test_a_journal_behind_its_marker_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal.db"
    await _pending_journal(path)
    state = json.loads((tmp_path / "journal.state").read_text())
    (tmp_path / "journal.state").write_text(json.dumps({**state, "last_seq": state["last_seq"] + 40}))
    async with Journal(path, ["a"]) as j:
        assert j.stats.lost == 40
    assert "at least 40 record(s) are LOST" in _error(caplog, "LOST")


async def test_a_first_start_and_a_clean_restart_say_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal.db"
    await _pending_journal(path, 10)
    async with Journal(path, ["a"]) as j:
        assert j.stats.pending == 10 and (j.stats.lost, j.stats.damaged) == (0, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_damage_found_while_running_is_said_once_and_awaited(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal.db"
    await _pending_journal(path)
    async with Journal(path, ["a"]) as j:
        leaves = _pages(path, "records")
        _smash(path, leaves[len(leaves) // 2])
        with pytest.raises(JournalError, match="malformed"):
            await j.next_batch("a", 100_000)
        assert "malformed" in await asyncio.wait_for(j.wait_damaged(), 5)
    assert "the gateway stops, and its next start sets the journal aside" in _error(caplog, "is damaged")
