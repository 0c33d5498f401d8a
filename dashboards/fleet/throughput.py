"""Row "Throughput": delivery rate, rejects and backlog of each gateway over time.

`delivered` and `rejected` are counters since the gateway started; NON_NEGATIVE_DERIVATIVE
turns them into rates and ignores the drop to zero at a restart.  The panels' minimum
interval is the health interval, so a bucket never falls between two health points.
"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import Query
from dashboards.panels import timeseries_panel
from dashboards.queries import HEALTH, TIME_FILTER, match, where

__all__ = ["BACKLOG", "DELIVERED_PER_S", "REJECTED_PER_MIN", "TITLE", "panels"]

TITLE = "Throughput"

HEALTH_INTERVAL = "10s"

_FILTER = where(match("site"), match("gateway"), TIME_FILTER)
_BY_GATEWAY = 'GROUP BY time($__interval), "site", "gateway" fill(none)'


def _rate(counter: str, per: str) -> str:
    return f'SELECT non_negative_derivative(last("{counter}"), {per}) FROM {HEALTH} {_FILTER} {_BY_GATEWAY}'


DELIVERED_PER_S = _rate("delivered", "1s")
REJECTED_PER_MIN = _rate("rejected", "1m")
BACKLOG = f'SELECT max("journal_pending") FROM {HEALTH} {_FILTER} {_BY_GATEWAY}'


def panels() -> list[Builder[dashboard.Panel]]:
    specs = [
        ("Delivered per second", "Readings the sinks delivered, per second.", "reads/s", DELIVERED_PER_S),
        ("Rejected per minute", "Input rejected and quarantined, per minute.", "short", REJECTED_PER_MIN),
        ("Journal backlog", "Readings in the journal not yet delivered to every sink.", "short", BACKLOG),
    ]
    return [
        timeseries_panel(title, description, unit=unit, width=8)
        .interval(HEALTH_INTERVAL)
        .with_target(Query(query).alias("$tag_site/$tag_gateway"))
        for title, description, unit, query in specs
    ]
