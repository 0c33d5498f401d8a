"""The "Live run" dashboard: one calibration run as it happens, one module per row."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.live_run import calibration, errors, freshness, remote, stability, traces
from dashboards.queries import READING, match
from dashboards.variables import constant, datasource, site_gateway, tag_values

__all__ = ["UID", "dashboard"]

UID = "remotecal-live-run"

REFERENCE = "\"role\" = 'reference'"
DUT = "\"role\" = 'dut'"

ROWS = (remote, traces, errors, stability, calibration, freshness)


def dashboard() -> Dashboard:
    run = (match("site"), match("gateway"), match("run"))
    board = (
        Dashboard("remotecal - live run")
        .uid(UID)
        .description("One calibration run: its remote procedure, readings, DUT errors, stability, results, "
                     "freshness.")
        .tags(["remotecal", "calibration"])
        .refresh("10s")
        .time("now-6h", "now")
        .timezone("utc")
        .with_variable(datasource())
    )
    for variable in site_gateway(READING):
        board = board.with_variable(variable)
    board = (
        board.with_variable(tag_values("run", READING, match("site"), match("gateway")))
        .with_variable(tag_values("quantity", READING, *run))
        .with_variable(tag_values("channel", READING, *run, match("quantity"), multi=True))
        .with_variable(
            tag_values("reference", READING, *run, match("quantity"), REFERENCE, key="channel")
        )
        .with_variable(
            tag_values("dut", READING, *run, match("channel"), DUT, key="channel", multi=True, hidden=True)
        )
        .with_variable(
            constant("window_min", str(stability.WINDOW_MIN), "stability window [min]: window_s / 60")
        )
    )
    for annotation in calibration.plateau_annotations():
        board = board.annotation(annotation)
    for row in ROWS:
        board = board.with_row(Row(row.TITLE))
        for panel in row.panels():
            board = board.with_panel(panel)
    return board
