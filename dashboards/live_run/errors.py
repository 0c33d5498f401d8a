"""Row "DUT error": each DUT's indication minus the reference, live.

One InfluxQL query computes it: two subqueries select the DUT's readings as field `dut` and
the reference's as field `reference`, the outer query averages each over the same
`$__interval` buckets and subtracts (`mean("dut") - mean("reference")`), per unit (the series
is named "error (degC)", and gets its unit from that).  The panel repeats for every DUT channel
among the chosen ones (the hidden `dut` variable), each against the one reference chosen in
`reference`.  The error is DUT - reference; the pipeline's correction is its negative (SPEC
section 5).
"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import Query
from dashboards.panels import timeseries_panel, unit_overrides
from dashboards.queries import READING, SITE_GATEWAY_RUN, TIME_FILTER, match, where

__all__ = ["ERROR", "TITLE", "panels"]

TITLE = "DUT error against the reference"


def _readings_of(variable: str, name: str) -> str:
    return (
        f'SELECT "value" AS "{name}" FROM {READING} '
        f'{where(SITE_GATEWAY_RUN, match("channel", variable), TIME_FILTER)}'
    )


ERROR = (
    'SELECT mean("dut") - mean("reference") AS "error" '
    f'FROM ({_readings_of("dut", "dut")}), ({_readings_of("reference", "reference")}) '
    f'WHERE {TIME_FILTER} GROUP BY time($__interval), "unit" fill(none)'
)


def panels() -> list[Builder[dashboard.Panel]]:
    panel = (
        timeseries_panel(
            "$dut - $reference",
            "Error of the DUT's indication: its mean minus the reference's mean over each "
            "interval, in their unit. The correction is the negative of this.",
            unit="none",
            width=12,
        )
        .repeat("dut")
        .repeat_direction("h")
        .max_per_row(2)
        .with_target(Query(ERROR).alias("error ($tag_unit)"))
    )
    for matcher, properties in unit_overrides():
        panel = panel.with_override(matcher, properties)
    return [panel]
