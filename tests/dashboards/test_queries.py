"""Every InfluxQL query in the built dashboards runs against a real influxd and finds data.

The queries are taken from the checked-in JSON (panel targets, annotations, template
variables), their Grafana variables replaced the way Grafana's InfluxDB datasource does
($timeFilter as an epoch-ms range, multi-value variables as `(a|b)`, "All" as `.*`), and run
against influxd 1.x holding a three-hour run (tests/dashboards/data.py).  A query that fails,
returns no series, or returns only nulls fails its test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboards.build import CHECKED_IN
from dashboards.fleet import status
from dashboards.live_run import errors, freshness, remote, stability
from tests.dashboards.data import CRITERIA, DUT_OFFSETS, RUN, SETPOINTS, STALE_CHANNEL, Run, make_run
from tests.servers.influx import InfluxD

DB = "calibration"

pytestmark = pytest.mark.integration


def _queries() -> Iterator[tuple[str, str]]:
    """(where it is, InfluxQL) for every query in every checked-in dashboard."""
    for path in sorted((CHECKED_IN / "dashboards").glob("*.json")):
        model = json.loads(path.read_text())
        name = path.stem
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                yield f"{name} panel {panel['id']} {panel['title']!r} {target['refId']}", target["query"]
        for annotation in model.get("annotations", {}).get("list", []):
            if "query" in annotation:
                yield f"{name} annotation {annotation['name']!r}", annotation["query"]
                yield f"{name} annotation {annotation['name']!r} target", annotation["target"]["query"]
        for variable in model["templating"]["list"]:
            if variable["type"] == "query":
                yield f"{name} variable {variable['name']}", variable["query"]


QUERIES = dict(_queries())


def substitute(query: str, run: Run, /, **overrides: str) -> str:
    """The query as Grafana would send it for the test run's time range."""
    values = {
        "site": "(lab1|lab2)",
        "gateway": ".*",
        "run": RUN,
        "quantity": "temperature",
        "channel": ".*",
        "reference": "ref-t",
        "dut": "dut1-t",
        "window_min": str(stability.WINDOW_MIN),
        "offline_after": "1m",
        "__interval": "30s",
        "__interval_ms": "30000",
        "timeFilter": f"time >= {run.start_ns // 10**6}ms and time <= {run.end_ns // 10**6}ms",
        **overrides,
    }

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"unknown variable ${name} in {query}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, query)


@pytest.fixture(scope="module")
def run() -> Run:
    return make_run()


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory, run: Run) -> Iterator[InfluxD]:
    server = InfluxD(Path(tmp_path_factory.mktemp("influxd")))
    server.start()
    try:
        server.create_database(DB)
        response = server.write_raw(run.body, DB)
        assert response.status_code == 204, response.text
        yield server
    finally:
        server.stop()


def _series(influx: InfluxD, query: str) -> list[dict[str, Any]]:
    results = influx.query(query, DB)
    assert len(results) == 1
    series: list[dict[str, Any]] = results[0].get("series", [])
    return series


def test_the_dashboards_have_queries() -> None:
    kinds = {where.split()[1] for where in QUERIES}
    assert kinds == {"panel", "annotation", "variable"}
    assert len(QUERIES) >= 20


@pytest.mark.parametrize("where", sorted(QUERIES))
def test_query_runs_and_finds_data(where: str, influx: InfluxD, run: Run) -> None:
    query = substitute(QUERIES[where], run)
    series = _series(influx, query)
    assert series, f"no series: {query}"
    for s in series:
        assert s.get("values"), f"empty series {s.get('tags')}: {query}"
        data = [v for row in s["values"] for v in row[1:]]
        assert any(v is not None for v in data), f"only nulls in {s.get('tags')}: {query}"


def test_variables_narrow_down(influx: InfluxD, run: Run) -> None:
    def values(name: str, **overrides: str) -> set[str]:
        series = _series(influx, substitute(QUERIES[f"remotecal-live-run variable {name}"], run, **overrides))
        return {row[1] for s in series for row in s["values"]}

    assert values("site") == {"lab1"}  # lab2 has a gateway but no readings
    assert values("run") == {RUN}
    assert values("channel") == {"ref-t", STALE_CHANNEL, *DUT_OFFSETS}
    assert values("reference") == {"ref-t"}
    assert values("dut") == set(DUT_OFFSETS)
    assert values("dut", channel="(dut2-t|ref-t)") == {"dut2-t"}
    fleet = _series(influx, substitute(QUERIES["remotecal-fleet variable gateway"], run, site="lab2"))
    assert [row[1] for s in fleet for row in s["values"]] == ["gw02", "gw03"]


def _by_time(influx: InfluxD, query: str) -> dict[int, float]:
    (series,) = _series(influx, query)
    return {t: v for t, v in series["values"] if v is not None}


def test_error_panel_is_each_duts_offset_from_the_reference(influx: InfluxD, run: Run) -> None:
    """InfluxDB computes DUT - reference per interval (two subqueries, one bucket), per unit."""
    for dut, offset in DUT_OFFSETS.items():
        (series,) = _series(influx, substitute(errors.ERROR, run, dut=dut))
        assert series["tags"] == {"unit": "degC"}
        error = [v for _, v in series["values"] if v is not None]
        assert len(error) >= 0.95 * (run.end_ns - run.start_ns) / 30e9  # one per 30 s bucket
        assert sum(error) / len(error) == pytest.approx(offset, abs=0.005)


def test_stability_figures_separate_plateaus_from_ramps(influx: InfluxD, run: Run) -> None:
    std = _by_time(influx, substitute(stability.ROLLING_STD, run))
    slope = _by_time(influx, substitute(stability.SLOPE, run))
    minute = 60 * 10**9
    # The end of each plateau (steady for 40 min) against the middle of each ramp.
    for hour in range(3):
        plateau_end = run.start_ns + (hour + 1) * 60 * minute - 5 * minute
        ramp = run.start_ns + hour * 60 * minute + 10 * minute
        near_end = [v for t, v in std.items() if abs(t - plateau_end) <= 2 * minute]
        near_ramp = [v for t, v in std.items() if abs(t - ramp) <= 2 * minute]
        assert near_end and max(near_end) < CRITERIA["max_std_temperature"]
        assert near_ramp and min(near_ramp) > CRITERIA["max_std_temperature"]
    assert min(slope.values()) < CRITERIA["max_slope_per_min_temperature"] < max(slope.values())


def test_stability_limits_are_the_runs_criteria_for_the_quantity(influx: InfluxD, run: Run) -> None:
    """The limits drawn and the "Stable now?" thresholds are the run engine's criteria for the
    chosen quantity (run_event), not constants; a quantity the run does not set has none."""
    limit = _by_time(influx, substitute(stability.LIMIT_STD, run))
    first_event = run.start_ns // 60_000_000_000 * 60_000_000_000
    assert limit and min(limit) <= first_event + 60 * 10**9
    assert set(limit.values()) == {CRITERIA["max_std_temperature"]}
    assert set(_by_time(influx, substitute(stability.LIMIT_SLOPE, run)).values()) == {
        CRITERIA["max_slope_per_min_temperature"]}
    ((_, max_std, max_slope),) = _series(influx, substitute(stability.LIMITS_NOW, run))[0]["values"]
    assert (max_std, max_slope) == (CRITERIA["max_std_temperature"], CRITERIA["max_slope_per_min_temperature"])
    assert _series(influx, substitute(stability.LIMITS_NOW, run, quantity="relative_humidity")) == []


def _table(influx: InfluxD, query: str) -> list[dict[str, Any]]:
    """Rows as dicts, with the series' tags."""
    return [dict(zip(s["columns"], row, strict=True)) | s.get("tags", {})
            for s in _series(influx, query) for row in s["values"]]


def test_run_row_shows_the_steps_the_state_now_the_windows_and_the_latest_command(
        influx: InfluxD, run: Run) -> None:
    states = _table(influx, substitute(remote.STATES, run))
    assert [(r["state"], r["step"]) for r in states][:3] == [("settling", 0), ("recording", 0), ("recording", 0)]
    assert {r["step"] for r in states} == set(range(len(SETPOINTS)))
    assert not any(r["state"] is None for r in states)  # the command points are not states
    (now,) = _table(influx, substitute(remote.NOW, run))
    last = len(SETPOINTS) - 1
    assert (now["state"], now["step"], now["setpoint_temperature"]) == ("recording", last, SETPOINTS[last])
    assert now["time"] < run.end_ns and now["reason"] == "stable on ref-t"
    windows = _table(influx, substitute(remote.WINDOWS, run))
    assert [(w["channel"], w["step"], w["unit"]) for w in windows] == [("ref-t", 0, "degC"), ("ref-t", 1, "degC")]
    (reference,) = _table(influx, substitute(remote.REFERENCES, run))  # the plateau's last minutes
    assert (reference["channel"], reference["unit"]) == ("ref-t", "degC")
    assert 0 < reference["std"] < CRITERIA["max_std_temperature"]
    assert abs(reference["change_per_min"]) < CRITERIA["max_slope_per_min_temperature"]
    (command,) = _table(influx, substitute(remote.COMMAND, run))
    assert (command["command"], command["accepted"], command["actor"], command["refusal"]) == (
        "skip", False, "bob@nmc", "not allowed")


def test_freshness_is_an_age_in_minutes(influx: InfluxD, run: Run) -> None:
    """Minute boundaries since each channel's latest reading: the one silent for 30 minutes shows
    30 (31 when the clock crossed one more boundary since), the live ones 0 (or 1: a reading
    up to 10 s before a boundary the query ran after)."""
    ages = {r["channel"]: r["silent_min"] for r in _table(influx, substitute(freshness.AGE, run))}
    assert ages.keys() == {"ref-t", STALE_CHANNEL, *DUT_OFFSETS}
    assert ages[STALE_CHANNEL] in (30, 31), ages
    assert all(ages[c] in (0, 1) for c in ("ref-t", *DUT_OFFSETS)), ages


def test_fleet_table_shows_the_health_fields_by_their_names(influx: InfluxD, run: Run) -> None:
    rows = _table(influx, substitute(QUERIES["remotecal-fleet panel 3 'Gateways' A"], run))
    assert {r["gateway"] for r in rows} == {"gw01", "gw02", "gw03"}
    for r in rows:
        for field in ("journal_pending", *status.COUNTERS):
            assert r[field] is not None, (field, r)
    assert {r["gateway"]: r["sources_connected"] for r in rows}["gw01"] == 2
