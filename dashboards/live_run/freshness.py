"""Row "Freshness": how long ago each channel last reported.

The age in minutes of each channel's latest reading (dashboards.queries.silent_minutes, over
the dashboard's time range) as bars coloured green, orange from AGE_WARN minutes, red from
AGE_ALARM (the "Readings stale" alert's limit); and a table whose `last()` without a time
range finds a channel's latest reading however old it is, so a sensor silent for longer than
the range shows as "3 hours ago" instead of vanishing.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge
from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import DATASOURCE, Query
from dashboards.panels import since, table_panel
from dashboards.queries import READING, SITE_GATEWAY_RUN, TIME_FILTER, match, silent_minutes, where

__all__ = ["AGE", "AGE_ALARM", "AGE_WARN", "LAST_READING", "TITLE", "panels"]

TITLE = "Freshness"

LAST_READING = (
    f'SELECT last("value") AS "last value" FROM {READING} '
    f'{where(SITE_GATEWAY_RUN, match("channel"))} '
    'GROUP BY "gateway", "channel", "role", "quantity", "unit"'
)


AGE = silent_minutes(READING, "value", where(SITE_GATEWAY_RUN, match("channel"), TIME_FILTER),
                     ("gateway", "channel"))
AGE_WARN = 2
AGE_ALARM = 5


def panels() -> list[Builder[dashboard.Panel]]:
    age = (
        bargauge.Panel()
        .title("Age of the latest reading")
        .description(f"Minutes since each channel's latest reading (0: one in the current minute); orange "
                     f"from {AGE_WARN}, red from {AGE_ALARM} min (the 'Readings stale' alert).")
        .datasource(DATASOURCE)
        .height(8)
        .span(10)
        .unit("m")
        .min(0)
        .with_target(Query(AGE).alias("$tag_channel"))
        .thresholds(
            ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps([
                dashboard.Threshold(value=None, color="green"),
                dashboard.Threshold(value=AGE_WARN, color="orange"),
                dashboard.Threshold(value=AGE_ALARM, color="red"),
            ])
        )
    )
    table = (
        table_panel(
            "Time since the last reading",
            "Per channel: when its latest reading was taken, and its value.",
            width=14,
        )
        .with_target(Query(LAST_READING).table())
        .with_override(*since("Time", "last reading"))
    )
    return [age, table]
