"""Template variables shared by the dashboards.

`datasource` picks the InfluxDB datasource by uid (the provisioned one by default), and
every query follows it.  The others narrow what is shown; each offers only the values
that exist under the variables before it (site -> gateway -> run -> quantity -> channel).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import ConstantVariable, DatasourceVariable, QueryVariable
from grafana_foundation_sdk.models import dashboard

from dashboards.influxql import DATASOURCE
from dashboards.queries import match, show_tag_values

__all__ = ["DATASOURCE_NAME", "DATASOURCE_UID", "constant", "datasource", "site_gateway", "tag_values"]

DATASOURCE_UID = "remotecal-influxdb"
DATASOURCE_NAME = "remotecal InfluxDB"


def datasource() -> DatasourceVariable:
    return (
        DatasourceVariable("datasource")
        .label("InfluxDB")
        .type("influxdb")
        .current(dashboard.VariableOption(text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )


def tag_values(
    name: str,
    measurement: str,
    *conditions: str,
    key: str | None = None,
    label: str | None = None,
    multi: bool = False,
    hidden: bool = False,
) -> QueryVariable:
    """A variable offering the values of tag `key` (default: `name`) under `conditions`.

    A multi-value variable also offers "All", sent to InfluxDB as `.*`, so a new channel
    shows up without editing the dashboard.
    """
    variable = (
        QueryVariable(name)
        .label(label or name)
        .datasource(DATASOURCE)
        .query(show_tag_values(measurement, key or name, *conditions))
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        variable = (
            variable.multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dashboard.VariableOption(selected=True, text="All", value="$__all"))
        )
    if hidden:
        variable = variable.hide(dashboard.VariableHide.HIDE_VARIABLE)
    return variable


def constant(name: str, value: str, description: str) -> ConstantVariable:
    """A hidden, fixed value queries use (`$name`); change it in the dashboard settings."""
    return ConstantVariable(name).value(value).description(description)


def site_gateway(measurement: str) -> list[QueryVariable]:
    """`site`, then the `gateway`s of the chosen sites."""
    return [
        tag_values("site", measurement, multi=True),
        tag_values("gateway", measurement, match("site"), multi=True),
    ]
