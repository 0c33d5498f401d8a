"""Shared InfluxQL for the dashboards (SPEC section 4 schema).

Tag filters are regular expressions anchored at both ends, `"site" =~ /^$site$/`: Grafana's
InfluxDB datasource expands a variable used there into a regex-escaped value, or into
`(a|b)` when several values are chosen, and into the variable's "All" value (`.*`)
otherwise.  One spelling thus serves single, multiple and all values.

Measurements and their tags:
    reading             site gateway run channel quantity unit role   value
    calibration_point   run channel quantity point                    setpoint ... correction U
    gateway_health      site gateway                                  journal_pending ...
    run_event           site gateway run                              state step ... command actor
    run_window          site gateway run channel                      step start end n mean std
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CALIBRATION",
    "HEALTH",
    "READING",
    "RUN_EVENT",
    "RUN_WINDOW",
    "TIME_FILTER",
    "match",
    "show_tag_values",
    "silent_minutes",
    "where",
]

READING = '"reading"'
CALIBRATION = '"calibration_point"'
HEALTH = '"gateway_health"'
RUN_EVENT = '"run_event"'
RUN_WINDOW = '"run_window"'
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


def silent_minutes(measurement: str, field: str, conditions: str, tags: Iterable[str]) -> str:
    """Per series of `tags`: the minutes since its latest point, as the minute boundaries passed
    since (0: one in the current minute; 1 may be a second ago), for every series with a point
    in the queried range.

    InfluxQL cannot subtract a time from now(), so this counts trailing empty minutes: points
    per minute filled with 0 up to the end of the range, their cumulative sum from the newest
    minute back (0 until the latest point), and `1 - cs / cs` (InfluxQL divides by zero to 0)
    is 1 for each minute after the latest point; their sum is the age.  A silent series thus
    gives a number, not no series (an alert on a series that vanished would resolve)."""
    by = ", ".join(f'"{t}"' for t in tags)
    return (
        'SELECT sum("z") AS "silent_min" FROM ('
        'SELECT 1 - "cs" / "cs" AS "z" FROM ('
        f'SELECT cumulative_sum(count("{field}")) AS "cs" FROM {measurement} {conditions} '
        f'GROUP BY time(1m), {by} fill(0) ORDER BY time DESC) ORDER BY time DESC) '
        f'GROUP BY {by} ORDER BY time DESC'
    )
