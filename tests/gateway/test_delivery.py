"""The delivery runner with an in-process sink (an honest fake: it only records what it is given).

Order, retries, throttling and the isolation of bad points are the runner's job whatever the
sink; the real InfluxDB sink is exercised end to end in test_end_to_end.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from gateway.delivery import DeliveryRunner
from gateway.errors import PermanentError, RetryableError, SchemaConflictError, ThrottledError
from gateway.journal import Journal
from gateway.reading import Reading, Record


def _r(i: int) -> Reading:
    return Reading("s", "g", "r", "c", "temperature", "degC", "dut", float(i), 1_000 + i)


class RecordingSink:
    name = "fake"
    flush_interval_s = 0.0

    def __init__(self, batch_size: int = 10, fail: Sequence[BaseException] = (), bad: set[float] = frozenset()):  # type: ignore[assignment]
        self.batch_size = batch_size
        self.fail = list(fail)
        self.bad = bad
        self.calls = 0
        self.written: list[float] = []

    async def write(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.fail:
            raise self.fail.pop(0)
        values = [r.value for r in records if isinstance(r, Reading)]
        if any(v in self.bad for v in values):
            raise PermanentError("partial write: field type conflict")
        self.written.extend(values)

    async def aclose(self) -> None:
        pass


async def _deliver(tmp_path: Path, sink: RecordingSink, n: int, stop_after: float = 5.0) -> Journal:
    j = Journal(tmp_path / "j.db", [sink.name])
    await j.open()
    await j.append([_r(i) for i in range(n)])
    runner = DeliveryRunner(j, sink, max_retry_interval=0.05)
    task = asyncio.create_task(runner.run())
    for _ in range(int(stop_after / 0.02)):
        if j.pending_for(sink.name) == 0:
            break
        await asyncio.sleep(0.02)
    runner.stop(0.0)
    await task
    return j


async def test_in_order_in_batches_through_retries_and_throttling(tmp_path: Path) -> None:
    sink = RecordingSink(batch_size=7, fail=[RetryableError("connection refused"), ThrottledError("429", 0.05),
                                             RetryableError("HTTP 503")])
    j = await _deliver(tmp_path, sink, 50)
    assert sink.written == [float(i) for i in range(50)]
    assert sink.calls == 3 + -(-50 // 7)
    assert j.stats.delivered["fake"] == 50 and j.stats.pending == 0
    await j.close()


async def test_bad_points_are_isolated_quarantined_and_the_rest_delivered(tmp_path: Path) -> None:
    sink = RecordingSink(batch_size=64, bad={13.0, 40.0})
    j = await _deliver(tmp_path, sink, 64)
    assert sink.written == [float(i) for i in range(64) if i not in (13, 40)]
    assert j.stats.pending == 0
    assert j.stats.delivered["fake"] == 62, "the 2 refused points are quarantined, not delivered"
    await j.close()
    total, rows = Journal.read_quarantine(tmp_path / "j.db")
    assert total == 2
    assert [(r.source, r.reason) for r in rows] == [("sink:fake", "partial write: field type conflict")] * 2
    assert b"value=13.0" in rows[0].payload and b"value=40.0" in rows[1].payload


async def test_undelivered_records_stay_for_the_next_start(tmp_path: Path) -> None:
    sink = RecordingSink(batch_size=10, fail=[RetryableError("down")] * 1000)
    j = await _deliver(tmp_path, sink, 25, stop_after=0.3)
    assert sink.written == [] and j.stats.pending == 25
    await j.close()
    sink2 = RecordingSink(batch_size=10)
    j2 = Journal(tmp_path / "j.db", ["fake"])
    await j2.open()
    runner = DeliveryRunner(j2, sink2)
    runner.stop(5.0)  # drain mode: deliver what is there, then return
    await runner.run()
    assert sink2.written == [float(i) for i in range(25)]
    await j2.close()


class ConflictSink(RecordingSink):
    """Refuses every point of the channels in `conflicting` as a whole, as InfluxDB does when a
    field of another type is in the shard; counts requests."""

    def __init__(self, conflicting: set[str]):
        super().__init__(batch_size=1000)
        self.conflicting = conflicting
        self.channels: list[str] = []

    async def write(self, records: Sequence[Record]) -> None:
        self.calls += 1
        refused = [r for r in records if isinstance(r, Reading) and r.channel in self.conflicting]
        if refused:
            raise SchemaConflictError("partial write: field type conflict: input field \"value\" ... dropped=1")
        self.written.extend(r.value for r in records if isinstance(r, Reading))
        self.channels.extend(r.channel for r in records if isinstance(r, Reading))


async def test_a_schema_conflict_holds_its_series_one_request_each_and_releases_them_once_resolved(
        tmp_path: Path) -> None:
    # Before: the batch was split down to single points and every point of the series quarantined.
    sink = ConflictSink({"x", "y"})
    j = Journal(tmp_path / "j.db", [sink.name])
    await j.open()
    readings = [Reading("s", "g", "r", "xyz"[i % 3], "temperature", "degC", "dut", float(i), 1_000 + i)
                for i in range(300)]
    await j.append(readings)
    runner = DeliveryRunner(j, sink, max_retry_interval=0.05)
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(10):
        while j.stats.held_records != 200:
            await asyncio.sleep(0.01)
    assert sink.channels == ["z"] * 100 and sink.calls <= 1 + 3 + 2 * 3  # the batch, per series, retries
    assert j.stats.held_series == 2 and j.pending_for(sink.name) == 200
    await j.append([Reading("s", "g", "r", "x", "temperature", "degC", "dut", 1e6, 10**6)])  # held too
    async with asyncio.timeout(10):
        while j.stats.held_records != 201:
            await asyncio.sleep(0.01)
    sink.conflicting = set()  # resolved
    async with asyncio.timeout(10):
        while j.pending_for(sink.name):
            await asyncio.sleep(0.01)
    runner.stop(0.0)
    await task
    assert sorted(sink.written) == sorted([float(i) for i in range(300)] + [1e6])
    assert j.stats.held_series == 0 and runner.rejected_points == 0
    await j.close()
    assert Journal.read_quarantine(tmp_path / "j.db")[0] == 0
