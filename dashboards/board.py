"""What every remotecal dashboard is made of alike: its header (UTC, the datasource variable
first) and its rows, one module per row, each module a `TITLE` and its `panels()`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import ModuleType

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.variables import datasource

__all__ = ["board", "with_rows"]


def board(title: str, uid: str, description: str, tags: Sequence[str], *, refresh: str,
          since: str) -> Dashboard:
    """A dashboard shown in UTC from now-`since` to now, refreshed every `refresh`, whose first
    variable is the InfluxDB datasource every panel reads."""
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(list(tags))
        .refresh(refresh)
        .time(f"now-{since}", "now")
        .timezone("utc")
        .with_variable(datasource())
    )


def with_rows(dashboard: Dashboard, rows: Iterable[ModuleType]) -> Dashboard:
    """`dashboard` with a row for each module, in order: its TITLE, then its panels()."""
    for row in rows:
        dashboard = dashboard.with_row(Row(row.TITLE))
        for panel in row.panels():
            dashboard = dashboard.with_panel(panel)
    return dashboard
