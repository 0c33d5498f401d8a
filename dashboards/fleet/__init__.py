"""The "Fleet" dashboard: every gateway's health, one module per row."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import board as shared
from dashboards.fleet import status, throughput
from dashboards.queries import HEALTH
from dashboards.variables import constant, site_gateway

__all__ = ["UID", "dashboard"]

UID = "remotecal-fleet"

ROWS = (status, throughput)


def dashboard() -> Dashboard:
    board = shared.board("remotecal - fleet", UID,
                         "Health of every remotecal gateway: online, backlog, rejects, delivery rate.",
                         ["remotecal", "gateway"], refresh="30s", since="24h")
    for variable in site_gateway(HEALTH):
        board = board.with_variable(variable)
    board = board.with_variable(
        constant("offline_after", "1m", "a gateway without a health point for this long is offline")
    )
    return shared.with_rows(board, ROWS)
