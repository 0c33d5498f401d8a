"""The journal: durable across reopen, ordered per sink, pruned only when every sink has a record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.errors import JournalFull
from gateway.journal import Journal, dedupe_key
from gateway.reading import HealthSample, Reading
from gateway.sources import Rejected


def _r(i: int, channel: str = "c1", run: str = "R1") -> Reading:
    return Reading("site", "gw", run, channel, "temperature", "degC", "dut", i + 0.5, 1_000 + i,
                   (("probe", "p1"),) if i % 2 else ())


async def test_records_survive_reopen_in_order_with_all_their_tags(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path, ["a"]) as j:
        await j.append([_r(i) for i in range(10)])
        await j.append([HealthSample("site", "gw", 5, {"journal_pending": 10, "x": 1.5})])
    async with Journal(path, ["a"]) as j:
        assert j.stats.pending == 11
        batch = await j.next_batch("a", 100)
        assert batch is not None
        assert batch.records[:10] == [_r(i) for i in range(10)]
        assert batch.records[10] == HealthSample("site", "gw", 5, {"journal_pending": 10, "x": 1.5})
        assert batch.seqs == sorted(batch.seqs)


async def test_each_sink_has_its_own_cursor_and_records_go_only_when_all_have_them(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path, ["a", "b"]) as j:
        await j.append([_r(i) for i in range(6)])
        a = await j.next_batch("a", 4)
        assert a is not None and len(a) == 4
        await j.commit_delivery("a", a.last_seq, len(a))
        assert j.pending_for("a") == 2 and j.pending_for("b") == 6
        b = await j.next_batch("b", 100)
        assert b is not None and [r.value for r in b.records] == [i + 0.5 for i in range(6)]
        await j.commit_delivery("b", b.last_seq, len(b))
        rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM records").fetchone()[0]
        assert rows == 2  # the two "a" has not delivered
        rest = await j.next_batch("a", 100)
        assert rest is not None and [r.value for r in rest.records] == [4.5, 5.5]
        await j.commit_delivery("a", rest.last_seq, len(rest))
        assert await j.next_batch("a", 100) is None
        assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
    async with Journal(path, ["a", "b"]) as j:
        await j.append([_r(100)])
        # seq is never reused after the table emptied: the new record is not behind the cursors
        batch = await j.next_batch("b", 10)
        assert batch is not None and batch.records == [_r(100)]


async def test_a_new_sink_starts_at_what_is_still_pending_and_a_removed_one_stops_blocking(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path, ["a", "old"]) as j:
        await j.append([_r(i) for i in range(3)])
        batch = await j.next_batch("a", 100)
        assert batch is not None
        await j.commit_delivery("a", batch.last_seq, len(batch))
    async with Journal(path, ["a", "new"]) as j:
        assert j.pending_for("a") == 0
        batch = await j.next_batch("new", 100)
        assert batch is not None and len(batch) == 3


async def test_quarantine_is_kept_and_listed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path, ["a"]) as j:
        await j.append([_r(1)], [Rejected("src", "malformed JSON", "lab/x", b"{oops" * 500, 7)])
        assert j.stats.rejected == 1 and j.stats.received == 1
    total, rows = Journal.read_quarantine(path)
    assert total == 1
    assert (rows[0].source, rows[0].topic, rows[0].reason, rows[0].time_ns) == ("src", "lab/x", "malformed JSON", 7)
    assert rows[0].payload == (b"{oops" * 500)[:1024]


async def test_redelivered_message_already_committed_is_skipped_but_acknowledged(tmp_path: Path) -> None:
    acks: list[str] = []
    async with Journal(tmp_path / "j.db", ["a"]) as j:
        key = dedupe_key(b"src", b"topic", b"payload")
        j.submit([_r(1)], dedupe=key, on_committed=lambda: acks.append("first"))
        await j.append([])
        # the same bytes again, not flagged as a redelivery: a sensor may repeat itself
        j.submit([_r(2)], dedupe=key, on_committed=lambda: acks.append("repeat"))
        await j.append([])
        j.submit([_r(3)], dedupe=key, redelivered=True, on_committed=lambda: acks.append("dup"))
        await j.append([])
        batch = await j.next_batch("a", 10)
        assert batch is not None and [r.value for r in batch.records] == [1.5, 2.5]
        assert acks == ["first", "repeat", "dup"] and j.stats.duplicates == 1


async def test_full_journal_refuses_new_input_and_keeps_what_it_has(tmp_path: Path) -> None:
    # A bound above an empty journal's size (its tables' first pages: 68 KiB with run control's)
    async with Journal(tmp_path / "j.db", ["a"], max_size=128 * 1024) as j:
        with pytest.raises(JournalFull):
            for i in range(100_000):
                await j.append([_r(k) for k in range(i * 100, i * 100 + 100)])
        assert j.stats.full
        kept = j.stats.pending
        with pytest.raises(JournalFull):
            j.submit([_r(0)])
        # draining makes room again
        while (batch := await j.next_batch("a", 10_000)) is not None:
            await j.commit_delivery("a", batch.last_seq, len(batch))
        assert j.stats.delivered["a"] == kept and not j.stats.full
        await j.append([_r(1)])


async def test_drop_oldest_policy_counts_what_it_drops(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db", ["a"], max_size=128 * 1024, on_full="drop_oldest") as j:
        for i in range(50):
            await j.append([_r(k) for k in range(i * 100, i * 100 + 100)])
        assert j.stats.dropped > 0 and not j.stats.full
        batch = await j.next_batch("a", 100_000)
        assert batch is not None
        assert len(batch) + j.stats.dropped == 5000
        assert batch.records[-1] == _r(4999)


async def test_the_quarantine_keeps_a_kib_or_the_whole_payload_and_gives_rows_back(tmp_path: Path) -> None:
    big = bytes(range(256)) * 40  # 10 KiB
    async with Journal(tmp_path / "j.db", ["a"]) as j:
        await j.append([], [Rejected("ingest", "unknown gateway: no key", "t/1", big, 1, keep_whole=True),
                            Rejected("ingest", "bad signature: x", "t/2", big, 2),
                            Rejected("mqtt", "unknown gateway: not ours", "t/3", big, 3, keep_whole=True)])
        assert await j.quarantined("ingest", "unknown gateway:", ["t/2", "t/3"]) == []
        rows = await j.quarantined("ingest", "unknown gateway:", ["t/1", "t/3"])
        assert [(r.topic, r.payload) for r in rows] == [("t/1", big)]
        total, listed = Journal.read_quarantine(tmp_path / "j.db")
        assert total == 3 and {r.topic: len(r.payload) for r in listed} == {"t/1": 10240, "t/2": 1024,
                                                                             "t/3": 10240}
        assert await j.quarantined("ingest", "unknown gateway:", ["t/1"], after=rows[0].id) == []
        await j.release_quarantined([rows[0].id])
        assert await j.quarantined("ingest", "unknown gateway:", ["t/1"]) == []
        assert Journal.read_quarantine(tmp_path / "j.db")[0] == 2


async def test_whole_quarantine_payloads_have_a_byte_budget(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    big = b"x" * 4096
    async with Journal(tmp_path / "j.db", ["a"], max_size=16 * 10_000) as j:  # budget 10,000 bytes
        with caplog.at_level("ERROR", logger="remotecal.journal"):
            await j.append([], [Rejected("ingest", "unknown gateway: k", f"t/{i}", big, i + 1, keep_whole=True)
                                for i in range(4)])
    _, rows = Journal.read_quarantine(tmp_path / "j.db")
    assert [len(r.payload) for r in rows] == [4096, 4096, 1024, 1024]
    assert sum("further ones keep their first 1024 bytes only" in r.getMessage() for r in caplog.records) == 1


async def test_a_flood_of_garbage_never_blocks_one_good_reading(tmp_path: Path) -> None:
    # Before: quarantine rows and redelivery keys counted against max_size with nothing to
    # bound them, so garbage alone filled the journal and every good reading was refused.
    max_size = 512 * 1024
    async with Journal(tmp_path / "j.db", ["a"], max_size=max_size) as j:
        for i in range(3000):  # 3000 rejects of 1 KiB, each with its redelivery key: ~3.3 MB
            j.submit([], [Rejected("mqtt", "malformed JSON", f"lab/g{i}/state", bytes(1024), i + 1)],
                     dedupe=dedupe_key(b"garbage", i.to_bytes(4, "little")))
        await j.append([])
        await j.append([_r(1)])
        assert not j.stats.full and j.stats.size_bytes < max_size
        assert j.stats.quarantine_dropped > 0 and j.stats.rejected == 3000
    total, rows = Journal.read_quarantine(tmp_path / "j.db", 10_000)
    assert 0 < total < 3000 and rows[-1].topic == "lab/g2999/state", "the newest are kept"
    quarantine_bytes = sum(len(r.payload) + len(r.reason) + len(r.topic) + len(r.source) + 40 for r in rows)
    assert quarantine_bytes <= max_size // 8


async def test_redelivery_keys_are_bounded_by_size_as_well_as_age(tmp_path: Path) -> None:
    # Receive-stamped input leaves a key per message though its records are delivered: before,
    # the keys alone filled the journal (2 GiB in a week at 54 msg/s) with nothing pending.
    max_size = 1024 * 1024  # room for 1,000 keys (max_size / 16 / 66 B, at least 1,000)
    async with Journal(tmp_path / "j.db", ["a"], max_size=max_size) as j:
        for i in range(20_000):
            j.submit([_r(i)], dedupe=dedupe_key(b"src", b"lab/x/raw", str(i).encode()))
            if i % 1000 == 999:
                await j.append([])
                batch = await j.next_batch("a", 100_000)
                assert batch is not None
                await j.commit_delivery("a", batch.last_seq, len(batch))
        assert not j.stats.full and j.stats.size_bytes < max_size
        assert j.stats.delivered["a"] == 20_000
    db = sqlite3.connect(tmp_path / "j.db")
    assert 900 <= db.execute("SELECT COUNT(*) FROM seen").fetchone()[0] <= 1000
    newest = dedupe_key(b"src", b"lab/x/raw", b"19999")
    assert db.execute("SELECT 1 FROM seen WHERE key = ?", (newest,)).fetchone(), "the newest are kept"


async def _deliver_all(j: Journal, sink: str = "a") -> None:
    while (batch := await j.next_batch(sink, 100_000)) is not None:
        await j.commit_delivery(sink, batch.last_seq, len(batch))


async def test_series_are_freed_once_delivered_and_unused_and_their_ids_never_reused(tmp_path: Path) -> None:
    # Before: a series row and its entries in memory lived as long as the journal - a stream
    # of ever new channels (one per topic level) grew them without bound.
    async with Journal(tmp_path / "j.db", ["a", "b"], series_idle_s=0.0) as j:
        await j.append([_r(i, channel=f"ch{i}") for i in range(3000)])
        await _deliver_all(j, "a")
        await j.housekeeping()
        assert j.stats.series == 3000, "sink b has not delivered them: they stay"
        await _deliver_all(j, "b")
        await j.housekeeping()
        assert j.stats.series == 1, "all freed but the newest, whose id keeps SQLite from reusing ids"
        await j.append([_r(7, channel="ch7"), _r(8, channel="new")])
        batch = await j.next_batch("a", 10)
        assert batch is not None and [r.channel for r in batch.records] == ["ch7", "new"]  # type: ignore[union-attr]
        assert min(row[1] for row in batch.records.rows) > 3000, "a freed id is never given again"
    db = sqlite3.connect(tmp_path / "j.db")
    assert db.execute("SELECT COUNT(*) FROM series").fetchone()[0] == 3


async def test_series_in_use_are_kept(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db", ["a"]) as j:  # idle_s: 5 min by default
        await j.append([_r(i, channel=f"ch{i}") for i in range(100)])
        await _deliver_all(j)
        await j.housekeeping()
        assert j.stats.series == 100


async def test_a_stream_of_new_channels_keeps_what_is_pending_or_recent_only(tmp_path: Path) -> None:
    # Every FREE_EVERY new series the journal frees what it can at once, not only at housekeeping.
    from gateway.journal.series import FREE_EVERY

    async with Journal(tmp_path / "j.db", ["a"], series_idle_s=0.0) as j:
        peak = 0
        for k in range(8):
            await j.append([_r(i, channel=f"k{k}-{i}") for i in range(FREE_EVERY // 2)])
            peak = max(peak, j.stats.series)
            await _deliver_all(j)
        assert peak <= FREE_EVERY + 1, "at most FREE_EVERY made since the last pass, and the newest"
