"""`remotecal demo --influx URL` into a real influxd, then every dashboard query finds its data.

The issue's acceptance test for the dashboards: the queries of the checked-in JSON, with
Grafana's variables filled in for the demo's run, against what the demo's gateway and
pipeline wrote.  The demo compresses 3 h of chamber time into under a minute of wall clock,
so `$__interval` is 1 s; the stability panels work on 1-minute means over a window of
minutes, which the demo's short span cannot fill: they must run without error here, and
test_queries.py shows them finding data in a three-hour run.  The demo is a remote run, so
the run row's queries (run_event, run_window and the run's stability limits) find its points.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.dashboards.test_queries import QUERIES, _series, substitute
from tests.servers.influx import InfluxD

pytestmark = pytest.mark.integration


def test_every_dashboard_query_finds_the_demos_data(tmp_path: Path, influxd: InfluxD) -> None:
    t0_ms = int(time.time() * 1000) - 5_000
    proc = subprocess.run(
        [sys.executable, "-m", "remotecal", "demo", "--out", str(tmp_path / "demo"), "--speed", "240",
         "--influx", influxd.url],
        capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    t1_ms = int(time.time() * 1000) + 5_000
    points = influxd.query("SELECT COUNT(correction) FROM calibration_point", "calibration")[0]
    assert points.get("series"), "the demo's pipeline wrote no calibration_point to influxd"
    values = {
        "site": "(demo-lab)", "gateway": "(gw-demo)", "run": "DEMO-0001", "quantity": "temperature",
        "channel": ".*", "reference": "ref-t", "dut": "dut1-t", "window_min": "2", "offline_after": "1m",
        "__interval": "1s", "__interval_ms": "1000",
    }
    span = SimpleNamespace(start_ns=t0_ms * 10**6, end_ns=t1_ms * 10**6)
    empty = []
    for where, query in sorted(QUERIES.items()):
        q = substitute(query, span, **values)  # type: ignore[arg-type]
        series = _series(influxd, q)  # runs without error, or raises
        if _needs_minutes(query):
            continue
        if not series or not any(v is not None for s in series for row in s.get("values", []) for v in row[1:]):
            empty.append(f"{where}: {q}")
    assert not empty, "queries without data after the demo:\n" + "\n".join(empty)
    assert sum(_needs_minutes(q) for q in QUERIES.values()) == 4, "only the stability panels may be exempt"


def _needs_minutes(query: str) -> bool:
    """The stability figures: moving windows of 1-minute means, or slopes between them."""
    return "moving_average(" in query or "derivative(mean" in query
