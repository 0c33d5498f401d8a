"""The run row and the stability limits read what the run engine really writes.

tests/dashboards/data.py writes a remote run by the documented schema; this test takes the
points from the run engine itself (gateway.run.RunEngine with the fake controller and chamber
of its unit tests, a three-step procedure driven to its end), writes them and the readings
with the gateway's own line-protocol encoder into a real influxd, and runs the dashboards'
queries on them: a field renamed in the engine fails here.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dashboards.live_run import remote, stability
from gateway.journal import Journal
from gateway.reading import Point, Reading
from gateway.run import TERMINAL, RunEngine
from gateway.sinks.influxdb.lineprotocol import encode_batch
from tests.dashboards.test_queries import substitute
from tests.gateway.run.fakes import Chamber, FakeController, procedure
from tests.servers.influx import InfluxD

pytestmark = pytest.mark.integration

DB = "calibration"
SETPOINTS = (20.0, 25.0, 30.0)


async def _engine_run(tmp_path: Path) -> tuple[list[Reading], list[Point]]:
    chamber = Chamber()
    readings: list[Reading] = []
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = RunEngine(journal, {"chamber": FakeController(chamber)}, site="lab1", gateway="gw01",
                           idle_run="between-runs", clock=lambda: chamber.t_ns)
        await engine.open()
        await engine.start(procedure(*SETPOINTS), "RC-1", "alice@nmc")
        for _ in range(20_000):
            tagged = engine.tag([chamber.tick()])
            readings.extend(tagged)
            engine.observe(tagged)
            await engine.evaluate()
            if engine.state in TERMINAL:
                break
        assert engine.state == "finished", engine.reason
        batch = await journal.next_batch("s", 100_000)
        assert batch is not None
        points = [r for r in batch.records if isinstance(r, Point)]
    return readings, points


async def test_the_run_row_reads_the_engines_points(tmp_path: Path, influxd: InfluxD) -> None:
    readings, points = await _engine_run(tmp_path)
    influxd.create_database(DB)
    response = influxd.write_raw(encode_batch([*readings, *points]), DB)
    assert response.status_code == 204, response.text
    span = SimpleNamespace(start_ns=readings[0].time_ns - 10**9, end_ns=readings[-1].time_ns + 10**9)
    values = {"site": "lab1", "gateway": "gw01", "run": "RC-1", "reference": "ref-t", "channel": ".*"}

    def rows(query: str) -> list[dict[str, Any]]:
        (result,) = influxd.query(substitute(query, span, **values), DB)  # type: ignore[arg-type]
        return [dict(zip(s["columns"], row, strict=True)) | s.get("tags", {})
                for s in result.get("series", []) for row in s["values"]]

    states = rows(remote.STATES)
    assert [r["state"] for r in states][-1] == "finished"
    assert {r["step"] for r in states} == {0, 1, 2}
    (now,) = rows(remote.NOW)
    assert (now["state"], now["step"], now["actor"]) == ("finished", 2, "gateway")
    windows = rows(remote.WINDOWS)
    assert [(w["channel"], w["step"]) for w in windows] == [("ref-t", 0), ("ref-t", 1), ("ref-t", 2)]
    assert [round(w["mean"]) for w in windows] == [20, 25, 30] and all(w["n"] >= 60 for w in windows)
    limits = {v for v in (r["limit"] for r in rows(stability.LIMIT_STD)) if v is not None}
    assert limits == {0.01}  # the fake procedure's max_std
    ((max_std, max_slope),) = [(r["max_std"], r["max_slope"]) for r in rows(stability.LIMITS_NOW)]
    assert (max_std, max_slope) == (0.01, 0.01)
