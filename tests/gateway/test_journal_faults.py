"""The journal when its disk fails it: a full disk (a real tmpfs filled to ENOSPC), data SQLite
cannot store.  A failed commit is retried, never dropped; nothing is lost without being counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import JournalFull
from gateway.journal import Journal
from gateway.reading import Reading
from tests.servers.tmpfs import SmallDisk


def _r(i: int, channel: str = "c1") -> Reading:
    return Reading("site", "gw", "R1", channel, "temperature", "degC", "dut", i + 0.5, 1_000 + i)


async def _until(cond: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def _all_values(j: Journal, sink: str = "a") -> list[float]:
    batch = await j.next_batch(sink, 1_000_000)
    return [] if batch is None else [r.value for r in batch.records]  # type: ignore[union-attr]


async def test_a_commit_failing_on_a_full_disk_is_retried_and_loses_nothing(
        small_disk: SmallDisk, caplog: pytest.LogCaptureFixture) -> None:
    # Before: the failed group was dropped - its MQTT messages never acknowledged (the broker's
    # window filled and the source stalled), its polled readings lost and counted nowhere.
    caplog.set_level(logging.INFO, logger="remotecal.journal")
    acked: list[str] = []
    async with Journal(small_disk.path / "j.db", ["a"]) as j:
        await j.append([_r(i) for i in range(10)])
        small_disk.fill()
        j.submit([_r(i) for i in range(10, 5010)])  # polled: nobody to hand it back to
        j.submit([_r(5010)], on_committed=lambda: acked.append("mqtt"))  # acknowledged on commit
        await _until(lambda: _logged(caplog, "commit failed"), "a failed commit")
        with pytest.raises(JournalFull, match="commits fail"):
            j.submit([_r(9999)])  # new records wait (MQTT) or are refused and counted (polled)
        assert j.stats.failing and not j.writable
        assert acked == []
        small_disk.free()
        await _until(lambda: acked, "the retried commit")
        assert not j.stats.failing and j.writable
        assert await _all_values(j) == [i + 0.5 for i in range(5011)]
        assert j.stats.received == 5011
    assert _logged(caplog, "commits work again")


async def test_closing_while_commits_fail_counts_and_logs_what_is_not_committed(
        small_disk: SmallDisk, caplog: pytest.LogCaptureFixture) -> None:
    j = Journal(small_disk.path / "j.db", ["a"])
    await j.open()
    await j.append([_r(0)])
    small_disk.fill()
    fut = j.submit([_r(i) for i in range(1, 3001)], wait=True)
    await _until(lambda: j.stats.failing, "a failed commit")
    await j.close()
    assert fut is not None and fut.done() and fut.exception() is not None
    assert j.stats.refused == 3000
    assert _logged(caplog, "3000 reading(s) of 1 input(s) are NOT committed")


async def test_a_failed_commit_forgets_the_series_it_made(tmp_path: Path) -> None:
    # Disk full during a commit that made a new series: SQLite rolls the series row back and
    # gives its id to the next new series; the journal must not keep the old id for it, in
    # any of the retries either.
    async with Journal(tmp_path / "j.db", ["a"]) as j:
        await j.append([_r(0, channel="ch-A")])
        assert j._db is not None
        pages = j._db.execute("PRAGMA page_count").fetchone()[0]
        j._db.execute(f"PRAGMA max_page_count={pages}")
        fut = j.submit([_r(i, channel="ch-B") for i in range(1, 20_001)], wait=True)
        await _until(lambda: j.stats.failing, "a failed commit")
        j._db.execute("PRAGMA max_page_count=1073741823")
        assert fut is not None
        await fut
        await j.append([_r(20_001, channel="ch-C")])
        batch = await j.next_batch("a", 100_000)
        assert batch is not None
        channels = [r.channel for r in batch.records]  # type: ignore[union-attr]
        assert channels == ["ch-A"] + ["ch-B"] * 20_000 + ["ch-C"]


async def test_a_record_sqlite_cannot_store_is_quarantined_and_its_group_committed(tmp_path: Path) -> None:
    # Before: an int beyond 64 bits raised OverflowError in the group's INSERT and the whole
    # group - every message committed with it - was dropped.
    acked: list[int] = []
    bad = Reading("site", "gw", "R1", "c1", "temperature", "degC", "dut", 1.0, 2**64)
    async with Journal(tmp_path / "j.db", ["a"]) as j:
        j.submit([_r(1)], on_committed=lambda: acked.append(1))
        j.submit([bad], on_committed=lambda: acked.append(2))
        await j.append([_r(3)])
        assert await _all_values(j) == [1.5, 3.5]
    assert acked == [1, 2]
    total, rows = Journal.read_quarantine(tmp_path / "j.db")
    assert total == 1 and rows[0].source == "journal" and "cannot be stored" in rows[0].reason
