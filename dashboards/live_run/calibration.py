"""Row "Calibration points": the plateaus the pipeline found and the corrections it computed.

`calibration_point` carries the tags `run`, `channel`, `quantity`, `point` (no site or
gateway: a run id is unique) and is stamped at the end of its plateau.  Each point is also
an annotation on the time series: text = the correction, tags = channel and point.
"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import Annotation, Query
from dashboards.panels import table_panel
from dashboards.queries import CALIBRATION, TIME_FILTER, match, where

__all__ = ["TITLE", "panels", "plateau_annotations"]

TITLE = "Calibration points"

_FIELDS = '"setpoint", "reference_mean", "dut_mean", "correction", "u_combined", "U", "k", "n", "dof_eff"'

POINTS = (
    f"SELECT {_FIELDS} FROM {CALIBRATION} "
    f'{where(match("run"), match("quantity"), match("channel"))} GROUP BY "channel", "point"'
)
"""The whole run's results, whatever the time range shows."""

PLATEAU_ENDS = (
    f'SELECT "correction", "U", "channel", "point" FROM {CALIBRATION} '
    f'{where(match("run"), match("quantity"), match("channel"), TIME_FILTER)}'
)


def plateau_annotations() -> list[Builder[dashboard.AnnotationQuery]]:
    return [
        Annotation("Plateau ends (corrections)", PLATEAU_ENDS)
        .icon_color("purple")
        .columns(text="correction", tags="channel,point")
    ]


def panels() -> list[Builder[dashboard.Panel]]:
    return [
        table_panel(
            "Corrections per plateau",
            "One row per DUT channel and plateau, as written by `remotecal pipeline run`; "
            "correction = reference - DUT, U the expanded uncertainty at coverage factor k.",
        )
        .with_target(Query(POINTS).table())
        .override_by_name("Time", [dashboard.DynamicConfigValue(id_val="displayName", value="plateau end")])
        .decimals(4)
    ]
