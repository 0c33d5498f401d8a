"""Grafana provisioning files: the InfluxDB datasource (InfluxQL) and the dashboard provider.

Grafana expands `$VAR` in provisioning files from its environment, so one file serves the
compose stack and a lab's own Grafana:

    REMOTECAL_INFLUXDB_URL       http://influxdb:8086
    REMOTECAL_INFLUXDB_DATABASE  calibration   (InfluxDB 2: the bucket, reached through its
                                               DBRP mapping; InfluxQL needs one)
    REMOTECAL_INFLUXDB_TOKEN     InfluxDB 2 API token with read access (sent as
                                 `Authorization: Token ...`; InfluxDB 1.x without auth ignores it)

The dashboard provider loads every JSON file under DASHBOARDS_PATH into the folder
"remotecal"; dashboards changed in the UI are not saved back (the code is the source).
"""

from __future__ import annotations

from dashboards.variables import DATASOURCE_NAME, DATASOURCE_UID

__all__ = ["DASHBOARDS_PATH", "FOLDER", "dashboard_provider_yaml", "datasource_yaml"]

DASHBOARDS_PATH = "/var/lib/grafana/dashboards/remotecal"
FOLDER = "remotecal"
_HEADER = "# Written by `remotecal dashboards build` (dashboards/provisioning.py); do not edit.\n"


def datasource_yaml() -> str:
    return _HEADER + f"""\
apiVersion: 1
datasources:
  - name: {DATASOURCE_NAME}
    uid: {DATASOURCE_UID}
    type: influxdb
    access: proxy
    url: $REMOTECAL_INFLUXDB_URL
    isDefault: true
    editable: false
    jsonData:
      version: InfluxQL
      dbName: $REMOTECAL_INFLUXDB_DATABASE
      httpMode: POST
      timeInterval: 1s
      httpHeaderName1: Authorization
    secureJsonData:
      httpHeaderValue1: Token $REMOTECAL_INFLUXDB_TOKEN
"""


def dashboard_provider_yaml() -> str:
    return _HEADER + f"""\
apiVersion: 1
providers:
  - name: remotecal
    orgId: 1
    folder: {FOLDER}
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: {DASHBOARDS_PATH}
"""
