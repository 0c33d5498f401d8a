"""Row "Readings": the reference and DUT traces of the chosen channels."""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import Query
from dashboards.panels import timeseries_panel, unit_overrides
from dashboards.queries import READING, SITE_GATEWAY_RUN, TIME_FILTER, match, where

__all__ = ["TITLE", "panels"]

TITLE = "Readings"

TRACES = (
    f'SELECT mean("value") FROM {READING} '
    f'{where(SITE_GATEWAY_RUN, match("quantity"), match("channel"), TIME_FILTER)} '
    'GROUP BY time($__interval), "channel", "role", "unit" fill(none)'
)
"""Means over Grafana's interval: the raw readings when zoomed in, a light query zoomed out."""


def panels() -> list[Builder[dashboard.Panel]]:
    panel = timeseries_panel(
        "Reference and DUT readings",
        "Every chosen channel of the chosen quantity, averaged over the panel's interval, in its unit.",
        unit="none",
        width=24,
    ).with_target(Query(TRACES).alias("$tag_channel ($tag_role) ($tag_unit)"))
    for matcher, properties in unit_overrides():
        panel = panel.with_override(matcher, properties)
    return [panel]
