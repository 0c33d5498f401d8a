"""Row "Stability": is the reference steady enough for a plateau (the pipeline's test)?

The pipeline (SPEC section 7, `[stability]`) and a remote run's steps (SPEC section 8) call a
stretch stable when, over every window of `window_s`, the reference's standard deviation
stays under `max_std` and its slope under `max_slope_per_min`.  The dashboard shows the same
two figures, live, per reference channel in its own unit:

- rolling standard deviation over the last `$window_min` minutes, every minute.  InfluxQL
  has no moving standard deviation, so it is built from moving averages of one-minute means
  of x and x^2: std = sqrt(E[x^2] - E[x]^2) over `$window_min` buckets (the population
  standard deviation of the window when the buckets hold equally many readings);
- slope: DERIVATIVE of consecutive `$window_min`-minute means, per minute, as a magnitude.

The limits are the run's own criteria for the chosen quantity: the run engine writes them on
every `run_event` of a step (`max_std_<quantity>`, `max_slope_per_min_<quantity>`), so a
humidity reference is judged in %rh by its own limits and a step with other criteria shows
them from its start.  They are drawn as a dashed line beside each figure, and they colour
the "Stable now?" figures (Grafana's "config from query results").  A run recorded without a
procedure (the gateway's fixed `[gateway] run`) has no criteria in InfluxDB: no limit shows.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import Query
from dashboards.panels import show_limit, stat_panel, threshold_from, timeseries_panel, unit_overrides
from dashboards.queries import READING, RUN_EVENT, SITE_GATEWAY_RUN, TIME_FILTER, match, where

__all__ = ["LIMITS_NOW", "LIMIT_SLOPE", "LIMIT_STD", "ROLLING_STD", "SLOPE", "TITLE", "WINDOW_MIN", "panels"]

TITLE = "Stability of the reference"

WINDOW_MIN = 10

_REFERENCE = where(SITE_GATEWAY_RUN, match("channel", "reference"), TIME_FILTER)

ROLLING_STD = (
    'SELECT sqrt("m2" - "m" * "m") AS "std" FROM ('
    'SELECT moving_average(mean("value"), $window_min) AS "m", '
    'moving_average(mean("square"), $window_min) AS "m2" FROM ('
    f'SELECT "value", "value" * "value" AS "square" FROM {READING} {_REFERENCE}) '
    f'WHERE {TIME_FILTER} GROUP BY time(1m), "channel", "unit") '
    'GROUP BY "channel", "unit"'
)

SLOPE = (
    'SELECT abs("slope") AS "slope" FROM ('
    f'SELECT derivative(mean("value"), 1m) AS "slope" FROM {READING} {_REFERENCE} '
    'GROUP BY time(${window_min}m), "channel", "unit" fill(none)) '
    'GROUP BY "channel", "unit"'
)


def _limit(criterion: str) -> str:
    """The run's criterion for the chosen quantity over time: the latest event's, each minute."""
    return (
        f'SELECT last("{criterion}_$quantity") AS "limit" FROM {RUN_EVENT} '
        f"{where(SITE_GATEWAY_RUN, TIME_FILTER)} GROUP BY time(1m) fill(previous)"
    )


LIMIT_STD = _limit("max_std")
LIMIT_SLOPE = _limit("max_slope_per_min")
LIMITS_NOW = (
    'SELECT last("max_std_$quantity") AS "max_std", last("max_slope_per_min_$quantity") AS "max_slope" '
    f"FROM {RUN_EVENT} {where(SITE_GATEWAY_RUN)}"
)
"""The criteria of the run's latest step, whatever the time range."""

_LIMIT_LINE = (
    dashboard.MatcherConfig(id_val="byName", options="limit"),
    [
        dashboard.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
        dashboard.DynamicConfigValue(id_val="custom.lineInterpolation", value="stepAfter"),
        dashboard.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
    ],
)


def _against_limit(title: str, description: str, statistic: Query, limit: str) -> timeseries.Panel:
    """A stability statistic of the reference over time, with the run's criterion for it (the
    query `limit`) drawn as a dashed red step line named "limit"."""
    return (
        timeseries_panel(title, description, unit="none", width=9)
        .with_target(statistic)
        .with_target(Query(limit).ref_id("B").alias("limit"))
        .with_override(*_LIMIT_LINE)
    )


def panels() -> list[Builder[dashboard.Panel]]:
    std = _against_limit(
        "Rolling standard deviation",
        "Standard deviation of the reference over the last $window_min min, in its unit; stable "
        "below the run's max_std for the quantity (dashed).",
        Query(ROLLING_STD).alias("$tag_channel std ($tag_unit)"),
        LIMIT_STD,
    ).thresholds_style(show_limit())
    slope = _against_limit(
        "Slope (magnitude, per minute)",
        "Change of the $window_min-min mean per minute, in its unit per minute; stable below the "
        "run's max_slope_per_min for the quantity (dashed).",
        Query(SLOPE).alias("$tag_channel slope ($tag_unit)"),
        LIMIT_SLOPE,
    )
    for (matcher, properties) in unit_overrides(per_minute=False):
        std = std.with_override(matcher, properties)
    for (matcher, properties) in unit_overrides(per_minute=True):
        slope = slope.with_override(matcher, properties)
    now = (
        stat_panel(
            "Stable now?",
            "The latest rolling standard deviation and slope, red where they exceed the run's criteria.",
            unit="none",
            width=6,
        )
        .with_target(Query(ROLLING_STD).ref_id("A").alias("std"))
        .with_target(Query(SLOPE).ref_id("B").alias("slope"))
        .with_target(Query(LIMITS_NOW).ref_id("LIMITS_STD").table())
        .with_target(Query(LIMITS_NOW).ref_id("LIMITS_SLOPE").table())
        .with_transformation(threshold_from("LIMITS_STD", "max_std", "std"))
        .with_transformation(threshold_from("LIMITS_SLOPE", "max_slope", "slope"))
    )
    return [std, slope, now]
