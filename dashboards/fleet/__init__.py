"""The "Fleet" dashboard: every gateway's health, one module per row."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.fleet import status, throughput
from dashboards.queries import HEALTH
from dashboards.variables import constant, datasource, site_gateway

__all__ = ["UID", "dashboard"]

UID = "remotecal-fleet"

ROWS = (status, throughput)


def dashboard() -> Dashboard:
    board = (
        Dashboard("remotecal - fleet")
        .uid(UID)
        .description("Health of every remotecal gateway: online, backlog, rejects, delivery rate.")
        .tags(["remotecal", "gateway"])
        .refresh("30s")
        .time("now-24h", "now")
        .timezone("utc")
        .with_variable(datasource())
    )
    for variable in site_gateway(HEALTH):
        board = board.with_variable(variable)
    board = board.with_variable(
        constant("offline_after", "1m", "a gateway without a health point for this long is offline")
    )
    for row in ROWS:
        board = board.with_row(Row(row.TITLE))
        for panel in row.panels():
            board = board.with_panel(panel)
    return board
