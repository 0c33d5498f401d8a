"""Row "Stability": is the reference steady enough for a plateau (the pipeline's test)?

The pipeline (SPEC section 7, `[stability]`) calls a stretch stable when, over every window
of `window_s`, the reference's standard deviation stays under `max_std` and its slope under
`max_slope_per_min`.  The dashboard shows the same two figures, live:

- rolling standard deviation over the last `$window_min` minutes, every minute.  InfluxQL
  has no moving standard deviation, so it is built from moving averages of one-minute means
  of x and x^2: std = sqrt(E[x^2] - E[x]^2) over `$window_min` buckets (the population
  standard deviation of the window when the buckets hold equally many readings);
- slope: DERIVATIVE of consecutive `$window_min`-minute means, per minute, as a magnitude.

The limits are drawn as dashed thresholds; they are this module's constants, the values of
the example pipeline config, as Grafana thresholds cannot read variables.
"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import Query
from dashboards.panels import limit, limit_of, show_limit, stat_panel, timeseries_panel
from dashboards.queries import READING, SITE_GATEWAY_RUN, TIME_FILTER, match, where

__all__ = ["MAX_SLOPE_PER_MIN", "MAX_STD", "TITLE", "WINDOW_MIN", "panels"]

TITLE = "Stability of the reference"

WINDOW_MIN = 10
MAX_STD = 0.02
MAX_SLOPE_PER_MIN = 0.005

_REFERENCE = where(SITE_GATEWAY_RUN, match("channel", "reference"), TIME_FILTER)

ROLLING_STD = (
    'SELECT sqrt("m2" - "m" * "m") AS "std" FROM ('
    'SELECT moving_average(mean("value"), $window_min) AS "m", '
    'moving_average(mean("square"), $window_min) AS "m2" FROM ('
    f'SELECT "value", "value" * "value" AS "square" FROM {READING} {_REFERENCE}) '
    f'WHERE {TIME_FILTER} GROUP BY time(1m), "channel") '
    'GROUP BY "channel"'
)

SLOPE = (
    'SELECT abs("slope") AS "slope" FROM ('
    f'SELECT derivative(mean("value"), 1m) AS "slope" FROM {READING} {_REFERENCE} '
    'GROUP BY time(${window_min}m), "channel" fill(none)) '
    'GROUP BY "channel"'
)


def panels() -> list[Builder[dashboard.Panel]]:
    std = (
        timeseries_panel(
            "Rolling standard deviation",
            f"Standard deviation of the reference over the last $window_min min; stable below {MAX_STD}.",
            unit="none",
            width=9,
        )
        .with_target(Query(ROLLING_STD).alias("$tag_channel std"))
        .thresholds(limit(MAX_STD))
        .thresholds_style(show_limit())
    )
    slope = (
        timeseries_panel(
            "Slope (magnitude, per minute)",
            f"Change of the $window_min-min mean per minute; stable below {MAX_SLOPE_PER_MIN}.",
            unit="none",
            width=9,
        )
        .with_target(Query(SLOPE).alias("$tag_channel slope"))
        .thresholds(limit(MAX_SLOPE_PER_MIN))
        .thresholds_style(show_limit())
    )
    now = (
        stat_panel(
            "Stable now?",
            "The latest rolling standard deviation and slope, red where a criterion fails.",
            unit="none",
            width=6,
        )
        .with_target(Query(ROLLING_STD).ref_id("A").alias("std"))
        .with_target(Query(SLOPE).ref_id("B").alias("slope"))
        .with_override(*limit_of("std", MAX_STD))
        .with_override(*limit_of("slope", MAX_SLOPE_PER_MIN))
    )
    return [std, slope, now]
