"""Panel shapes the rows share: every panel reads the `datasource` variable's InfluxDB."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig, VizLegendOptions
from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
from grafana_foundation_sdk.models import common, dashboard

from dashboards.influxql import DATASOURCE

__all__ = [
    "limit",
    "limit_of",
    "show_limit",
    "since",
    "stat_panel",
    "table_panel",
    "threshold_from",
    "timeseries_panel",
    "transformation",
    "unit_overrides",
]


def timeseries_panel(title: str, description: str, *, unit: str, width: int = 12) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(9)
        .span(width)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "mean"])
        )
    )


def table_panel(title: str, description: str, *, width: int = 24) -> table.Panel:
    return table.Panel().title(title).description(description).datasource(DATASOURCE).height(8).span(width)


def stat_panel(title: str, description: str, *, unit: str, width: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(9)
        .span(width)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
    )


def limit(value: float) -> ThresholdsConfig:
    """Green below `value`, red from it on: a stability criterion or an alarm level."""
    return (
        ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([
            dashboard.Threshold(value=None, color="green"),
            dashboard.Threshold(value=value, color="red"),
        ])
    )


def limit_of(field: str, value: float) -> _Override:
    """An override: `limit(value)` for the field named `field` only."""
    return (
        dashboard.MatcherConfig(id_val="byName", options=field),
        [dashboard.DynamicConfigValue(id_val="thresholds", value=limit(value).build())],
    )


def show_limit() -> GraphThresholdsStyleConfig:
    """Draw the thresholds as a dashed line across a time series."""
    return GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)


_Override = tuple[dashboard.MatcherConfig, list[dashboard.DynamicConfigValue]]


def since(column: str = "Time", title: str = "last seen") -> _Override:
    """An override that shows a time column as "3 minutes ago" (Grafana's `dateTimeFromNow`)."""
    return (
        dashboard.MatcherConfig(id_val="byName", options=column),
        [
            dashboard.DynamicConfigValue(id_val="unit", value="dateTimeFromNow"),
            dashboard.DynamicConfigValue(id_val="displayName", value=title),
        ],
    )


def transformation(transformer: str, options: dict[str, object]) -> dashboard.DataTransformerConfig:
    return dashboard.DataTransformerConfig(id_val=transformer, options=options)


# A series' unit from its name: queries grouped by the `unit` tag name their series
# "... (degC)" or "... (%rh)" (alias `$tag_unit`), and Grafana's unit cannot come from a
# variable, so each unit the quantities use gets an override by name.
_UNITS = {"degC": ("celsius", "°C/min"), "K": ("kelvin", "K/min"), "%rh": ("humidity", "%rh/min"),
          "hPa": ("pressurehpa", "hPa/min"), "Pa": ("pressurepa", "Pa/min")}


def unit_overrides(*, per_minute: bool = False) -> list[_Override]:
    """Overrides giving each series named "... (UNIT)" its Grafana unit (or UNIT/min)."""
    out = []
    for unit, (grafana, rate) in _UNITS.items():
        pattern = r".*\(" + unit.replace("%", "%") + r"\)$"
        out.append((
            dashboard.MatcherConfig(id_val="byRegexp", options=pattern),
            [dashboard.DynamicConfigValue(id_val="unit", value=f"suffix:{rate}" if per_minute else grafana)],
        ))
    return out


def threshold_from(config: str, field: str, applies_to: str) -> dashboard.DataTransformerConfig:
    """Grafana's "config from query results": the query `config`'s `field` (its last value)
    becomes the red threshold of the field `applies_to`.  One config query per use: Grafana
    drops the config query's frame from what the next transformation sees."""
    return transformation("configFromData", {
        "configRefId": config,
        "applyTo": {"id": "byName", "options": applies_to},
        "mappings": [{"fieldName": field, "handlerKey": "threshold1", "reducerId": "lastNotNull"}],
    })
