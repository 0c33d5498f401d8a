"""The local store sink and its reader: points are idempotent, runs come back as arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.reading import HealthSample, Reading
from gateway.sinks.local import LocalStoreConfig, LocalStoreSink, read_run


def _r(ch: str, i: int, run: str = "R1", role: str = "dut") -> Reading:
    return Reading("s", "g", run, ch, "temperature", "degC", role, 20.0 + i / 8, 1_795_000_000_000_000_000 + i * 10**9)


async def test_writes_read_back_per_channel_and_resent_points_replace_themselves(tmp_path: Path) -> None:
    sink = LocalStoreSink(LocalStoreConfig(path=tmp_path / "store.db"))
    batch = [_r("b", i) for i in range(5)] + [_r("a", i, role="reference") for i in range(3)]
    await sink.write([*batch, HealthSample("s", "g", 1, {"journal_pending": 0})])
    await sink.write(batch)  # a re-delivery after a crash
    await sink.write([_r("a", 0, run="OTHER")])
    await sink.aclose()
    data = read_run(tmp_path / "store.db", "R1")
    assert sorted(data) == ["a", "b"]
    assert data["a"].role == "reference" and data["b"].quantity == "temperature"
    np.testing.assert_array_equal(data["b"].values, [20.0 + i / 8 for i in range(5)])
    np.testing.assert_array_equal(data["b"].t_s, [1_795_000_000 + i for i in range(5)])
    windowed = read_run(tmp_path / "store.db", "R1", start_ns=1_795_000_001_000_000_000, end_ns=1_795_000_003_000_000_000)
    assert len(windowed["b"].values) == 2
