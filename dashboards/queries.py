"""Shared InfluxQL for the dashboards (SPEC section 4 schema).

Tag filters are regular expressions anchored at both ends, `"site" =~ /^$site$/`: Grafana's
InfluxDB datasource expands a variable used there into a regex-escaped value, or into
`(a|b)` when several values are chosen, and into the variable's "All" value (`.*`)
otherwise.  One spelling thus serves single, multiple and all values.

Measurements and their tags:
    reading             site gateway run channel quantity unit role   value
    calibration_point   run channel quantity point                    setpoint ... correction U
    gateway_health      site gateway                                  journal_pending ...
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CALIBRATION",
    "HEALTH",
    "READING",
    "TIME_FILTER",
    "match",
    "show_tag_values",
    "where",
]

READING = '"reading"'
CALIBRATION = '"calibration_point"'
HEALTH = '"gateway_health"'
TIME_FILTER = "$timeFilter"


def match(tag: str, variable: str | None = None) -> str:
    """`"tag" =~ /^$variable$/` (the variable is named like the tag unless given)."""
    return f'"{tag}" =~ /^${variable or tag}$/'


def where(*conditions: str | Iterable[str]) -> str:
    """`WHERE a AND b ...`; arguments are conditions or lists of them."""
    flat: list[str] = []
    for c in conditions:
        flat.extend([c] if isinstance(c, str) else c)
    return "WHERE " + " AND ".join(flat)


SITE_GATEWAY_RUN = (match("site"), match("gateway"), match("run"))
"""The readings of the run chosen at the top of the dashboard."""


def show_tag_values(measurement: str, key: str, *conditions: str) -> str:
    """The values a variable offers: `SHOW TAG VALUES FROM m WITH KEY = "k" [WHERE ...]`."""
    query = f'SHOW TAG VALUES FROM {measurement} WITH KEY = "{key}"'
    return f"{query} {where(*conditions)}" if conditions else query
