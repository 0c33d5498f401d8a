"""The "Live run" dashboard: one calibration run as it happens, one module per row."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import board as shared
from dashboards.live_run import calibration, errors, freshness, remote, stability, traces
from dashboards.queries import READING, match
from dashboards.variables import constant, site_gateway, tag_values

__all__ = ["UID", "dashboard"]

UID = "remotecal-live-run"

REFERENCE = "\"role\" = 'reference'"
DUT = "\"role\" = 'dut'"

ROWS = (remote, traces, errors, stability, calibration, freshness)


def dashboard() -> Dashboard:
    run = (match("site"), match("gateway"), match("run"))
    board = shared.board("remotecal - live run", UID,
                         "One calibration run: its remote procedure, readings, DUT errors, stability, "
                         "results, freshness.",
                         ["remotecal", "calibration"], refresh="10s", since="6h")
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
    return shared.with_rows(board, ROWS)
