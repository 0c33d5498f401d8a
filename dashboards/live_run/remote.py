"""Row "Remote run": a procedure executed at the edge (issue 15 section 6), as it goes.

The run engine (gateway.run, README "Data in InfluxDB") writes one `run_event` point per
transition of the run's state machine and per command, and one `run_window` point per
reference channel of each step it accepted as stable:

    run_event   site gateway run           state step step_name setpoint_* reason actor outcome
                                           window_s_<q> max_std_<q> max_slope_per_min_<q>
                                           command accepted refusal origin seq procedure
    run_window  site gateway run channel   step start end n mean std quantity unit setpoint_*

Panels: the steps and states as a state timeline, the run's state now (step, setpoints, in it
since), the latest command with who sent it, each reference's standard deviation and change
per minute over the last window against the step's criteria (`max_std_<quantity>`,
`max_slope_per_min_<quantity>` of the same `run_event` points), and the windows accepted so
far per reference.  The "Stability" row draws the same figures over time.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import statetimeline, table
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common, dashboard

from dashboards.influxql import DATASOURCE, Query
from dashboards.live_run.stability import LIMITS_NOW
from dashboards.panels import since, table_panel, threshold_from
from dashboards.queries import READING, RUN_EVENT, RUN_WINDOW, SITE_GATEWAY_RUN, TIME_FILTER, match, where

__all__ = ["COMMAND", "NOW", "REFERENCES", "STATES", "TITLE", "WINDOWS", "panels"]

REFERENCE = "\"role\" = 'reference'"

TITLE = "Remote run"

STATES = (
    f'SELECT "state", "step" FROM {RUN_EVENT} {where(SITE_GATEWAY_RUN, TIME_FILTER)} GROUP BY "gateway"'
)
"""Every transition of the run in the time range (command points have neither field)."""

NOW = (
    'SELECT last("state") AS "state", "step", "step_name", "setpoint_temperature", "setpoint_humidity", '
    f'"reason", "actor" FROM {RUN_EVENT} {where(SITE_GATEWAY_RUN)} GROUP BY "gateway", "run"'
)
"""The run's latest transition, however long ago: its time is how long the run is in it."""

WINDOWS = (
    'SELECT "step", "n", "mean", "std", "unit", "setpoint_temperature", "setpoint_humidity" '
    f'FROM {RUN_WINDOW} {where(SITE_GATEWAY_RUN)} GROUP BY "channel"'
)
"""The windows the gateway accepted live: the pipeline's calibration points."""

_LAST_WINDOW = "time > now() - ${window_min}m"

REFERENCES = (
    'SELECT stddev("value") AS "std", (last("value") - first("value")) / $window_min AS "change_per_min" '
    f"FROM {READING} {where(SITE_GATEWAY_RUN, match('quantity'), REFERENCE, _LAST_WINDOW)} "
    'GROUP BY "channel", "unit"'
)
"""Each reference of the chosen quantity over the last stability window: its standard deviation
and its change per minute, beside the run's criteria for that quantity (red above them)."""

COMMAND = (
    'SELECT last("command") AS "command", "accepted", "actor", "origin", "refusal", "reason" '
    f'FROM {RUN_EVENT} {where(SITE_GATEWAY_RUN)} GROUP BY "gateway", "run"'
)
"""The latest command (accepted or refused), its sender and the refusal's kind."""

_STATE_COLOURS = {
    "idle": "text", "settling": "yellow", "recording": "green", "paused": "blue",
    "finished": "dark-green", "aborted": "orange", "failed": "red",
}


def _state_mappings() -> list[dashboard.ValueMapping]:
    return [dashboard.ValueMap(options={
        state: dashboard.ValueMappingResult(text=state, color=colour, index=i)
        for i, (state, colour) in enumerate(_STATE_COLOURS.items())
    })]

def _latest(title: str, description: str, query: str, time_column: str) -> table.Panel:
    """A half-width table of the run's latest row of `query`, its time shown as the time since
    it (the column named `time_column`)."""
    return (
        table_panel(title, description, width=12)
        .height(5)
        .with_target(Query(query).table())
        .with_override(*since("Time", time_column))
    )


def panels() -> list[Builder[dashboard.Panel]]:
    timeline = (
        statetimeline.Panel()
        .title("Steps and states")
        .description("The run's state machine: which step (0-based, as `remotecal procedure check` "
                     "numbers them) and in which state - settling (yellow), recording (green), paused, "
                     "finished, aborted, failed.")
        .datasource(DATASOURCE)
        .height(6)
        .span(24)
        .with_target(Query(STATES).alias("$tag_gateway $col"))
        .mappings(_state_mappings())
        .merge_values(True)
        .show_value(common.VisibilityMode.AUTO)
    )
    now = _latest("Now", "The run's state, step and setpoints now; 'in it since': the time of its last "
                         "transition.", NOW, "in it since")
    command = _latest("Latest command", "The latest command to this run, local or remote, accepted or "
                                        "refused (with the refusal's kind), and who sent it.",
                      COMMAND, "sent")
    windows = (
        table_panel("Windows accepted live", "Per reference and step: the stable window the gateway "
                                             "recorded (n readings, their mean and standard deviation, "
                                             "in the channel's unit) - the certificate's points.")
        .height(6)
        .with_target(Query(WINDOWS).table())
        .override_by_name("Time", [dashboard.DynamicConfigValue(id_val="displayName", value="window end")])
        .decimals(4)
    )
    references = (
        table_panel("References against the criteria",
                    "Each $quantity reference over the last $window_min min: its standard deviation "
                    "and change per minute (in its unit), red above the step's max_std / "
                    "max_slope_per_min for the quantity.")
        .height(6)
        .with_target(Query(REFERENCES).table())
        .with_target(Query(LIMITS_NOW).ref_id("LIMITS_STD").table())
        .with_target(Query(LIMITS_NOW).ref_id("LIMITS_SLOPE").table())
        .with_transformation(threshold_from("LIMITS_STD", "max_std", "std"))
        .with_transformation(threshold_from("LIMITS_SLOPE", "max_slope", "change_per_min"))
        .decimals(4)
    )
    for name in ("std", "change_per_min"):
        references = references.override_by_name(name, [dashboard.DynamicConfigValue(
            id_val="custom.cellOptions", value={"type": "color-background"})])
    return [timeline, now, command, references, windows]

