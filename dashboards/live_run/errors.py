"""Row "DUT error": each DUT's indication minus the reference, live.

InfluxQL cannot join two series, so the subtraction happens in Grafana: query A is the DUT's
mean and query B the reference's mean over the same `$__interval` buckets (identical bucket
timestamps), Grafana joins the two frames on time and its "Add field from calculation"
transformation (binary, `dut - reference`) keeps only the difference.  The panel repeats for
every DUT channel among the chosen ones (the hidden `dut` variable), each against the one
reference chosen in `reference`.  The error is DUT - reference; the pipeline's correction
is its negative (SPEC section 5).
"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import Query
from dashboards.panels import timeseries_panel, transformation
from dashboards.queries import READING, SITE_GATEWAY_RUN, TIME_FILTER, match, where

__all__ = ["TITLE", "panels"]

TITLE = "DUT error against the reference"


def _mean_of(variable: str) -> str:
    return (
        f'SELECT mean("value") FROM {READING} '
        f'{where(SITE_GATEWAY_RUN, match("channel", variable), TIME_FILTER)} '
        "GROUP BY time($__interval) fill(none)"
    )


DUT_MEAN = _mean_of("dut")
REFERENCE_MEAN = _mean_of("reference")


def panels() -> list[Builder[dashboard.Panel]]:
    return [
        timeseries_panel(
            "$dut - $reference",
            "Error of the DUT's indication: its mean minus the reference's mean over each "
            "interval. The correction is the negative of this.",
            unit="none",
            width=12,
        )
        .repeat("dut")
        .repeat_direction("h")
        .max_per_row(2)
        .with_target(Query(DUT_MEAN).ref_id("A").alias("dut"))
        .with_target(Query(REFERENCE_MEAN).ref_id("B").alias("reference"))
        .with_transformation(transformation("joinByField", {"byField": "Time", "mode": "outer"}))
        .with_transformation(
            transformation(
                "calculateField",
                {
                    "alias": "error",
                    "binary": {"left": "dut", "operator": "-", "right": "reference"},
                    "mode": "binary",
                    "replaceFields": True,
                },
            )
        )
    ]
