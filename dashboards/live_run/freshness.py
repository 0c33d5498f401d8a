"""Row "Freshness": how long ago each channel last reported.

`last()` without a time range finds a channel's latest reading however old it is, so a
silent sensor shows as "3 hours ago" instead of vanishing from the table.
"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import Query
from dashboards.panels import since, table_panel
from dashboards.queries import READING, SITE_GATEWAY_RUN, match, where

__all__ = ["LAST_READING", "TITLE", "panels"]

TITLE = "Freshness"

LAST_READING = (
    f'SELECT last("value") AS "last value" FROM {READING} '
    f'{where(SITE_GATEWAY_RUN, match("channel"))} '
    'GROUP BY "gateway", "channel", "role", "quantity", "unit"'
)


def panels() -> list[Builder[dashboard.Panel]]:
    return [
        table_panel(
            "Time since the last reading",
            "Per channel: when its latest reading was taken, and its value.",
        )
        .with_target(Query(LAST_READING).table())
        .with_override(*since("Time", "last reading"))
    ]
