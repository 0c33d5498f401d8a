"""Row "Status": which gateways are online, and their latest counters.

A gateway writes `gateway_health` every `health_interval` (10 s by default).  A gateway is
"online" in a bucket of `$offline_after` when at least one health point arrived in it;
"last seen" is the time of its latest point, shown as "x minutes ago".
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import statetimeline
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import DATASOURCE, Query
from dashboards.panels import limit_of, since, table_panel
from dashboards.queries import HEALTH, TIME_FILTER, match, where

__all__ = ["ALARMS", "COUNTERS", "LATEST", "ONLINE", "TITLE", "panels"]

TITLE = "Status"

PENDING_ALARM = 10_000
"""A backlog this large (about 3 h of a 1 Hz gateway with one channel) is shown red."""

_GATEWAYS = (match("site"), match("gateway"))

ONLINE = (
    f'SELECT count("journal_pending") FROM {HEALTH} {where(_GATEWAYS, TIME_FILTER)} '
    'GROUP BY time($offline_after), "site", "gateway" fill(0)'
)

COUNTERS = ("received", "rejected", "delivered", "sources_connected", "sink_errors", "journal_full",
            "dropped", "refused")
"""gateway_health fields beside journal_pending (README "Data in InfluxDB")."""

LATEST = (
    'SELECT last("journal_pending") AS "journal_pending", ' + ", ".join(f'"{c}"' for c in COUNTERS) + " "
    f'FROM {HEALTH} {where(_GATEWAYS)} GROUP BY "site", "gateway"'
)
"""One selector (`last`) with plain fields: the other fields come from the same, latest point."""

ALARMS = {"journal_pending": PENDING_ALARM, "journal_full": 1, "dropped": 1, "refused": 1, "sink_errors": 1}
"""Red from these values on: a backlog, a full journal, readings lost (`dropped`) or not taken
(`refused`), a sink's failed requests - each since the gateway's start."""

_ONLINE_MAPPINGS: list[dashboard.ValueMapping] = [
    dashboard.ValueMap(options={"0": dashboard.ValueMappingResult(text="offline", color="red", index=0)}),
    dashboard.RangeMap(
        options=dashboard.DashboardRangeMapOptions(
            from_val=1, to=None, result=dashboard.ValueMappingResult(text="online", color="green", index=1)
        )
    ),
]


def panels() -> list[Builder[dashboard.Panel]]:
    online = (
        statetimeline.Panel()
        .title("Online")
        .description("Green while a gateway sends health points; red for every $offline_after without one.")
        .datasource(DATASOURCE)
        .height(8)
        .span(24)
        .with_target(Query(ONLINE).alias("$tag_site/$tag_gateway"))
        .mappings(_ONLINE_MAPPINGS)
        .merge_values(True)
    )
    latest = (
        table_panel("Gateways", "Latest health point of each gateway; counters count since its start. Red: a "
                                "backlog, a full journal (journal_full), readings lost (dropped) or not "
                                "taken (refused), failed sink requests (sink_errors).")
        .with_target(Query(LATEST).table())
        .with_override(*since("Time", "last seen"))
        .unit("short")
    )
    for field, alarm in ALARMS.items():
        latest = latest.with_override(*limit_of(field, alarm))
    latest = latest.with_override(
        dashboard.MatcherConfig(id_val="byName", options="sources_connected"),
        [dashboard.DynamicConfigValue(id_val="displayName", value="sources connected")])
    return [online, latest]
