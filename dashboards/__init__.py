"""Grafana dashboards as code, and their provisioning (issue 5).

    dashboards/
      influxql.py      the InfluxQL query and annotation objects the SDK has no builder for
      queries.py       shared InfluxQL: tag filters, SHOW TAG VALUES, the selects panels reuse
      variables.py     template variables (datasource uid, site, gateway, run, channel, ...)
      panels.py        shared panel shapes (time series, thresholds, "time since" columns)
      board.py         a dashboard's header (UTC, the datasource variable) and its rows
      live_run/        the "Live run" dashboard, one module per row
      fleet/           the "Fleet" dashboard, one module per row
      provisioning.py  Grafana datasource and dashboard-provider YAML
      build.py         `build(out_dir)`: sorted, stable JSON + provisioning (checked in: json/)
      push.py          `push(url, token)`: the same dashboards through Grafana's HTTP API

`remotecal dashboards build|push` (remotecal.cli) calls `build` and `push`.
"""

__all__: list[str] = []
