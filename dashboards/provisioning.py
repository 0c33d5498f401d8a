"""Grafana provisioning files: the InfluxDB datasource (InfluxQL) and the dashboard provider.

Grafana expands `$VAR` in provisioning files from its environment, so one file serves the
compose stack and a lab's own Grafana:

    REMOTECAL_INFLUXDB_URL       http://influxdb:8086
    REMOTECAL_INFLUXDB_DATABASE  calibration  (InfluxDB 2: the bucket's DBRP mapping)
    REMOTECAL_INFLUXDB_USER      a user that may read the database: InfluxDB 1.x
    REMOTECAL_INFLUXDB_PASSWORD  `GRANT READ`, InfluxDB 2 `influx v1 auth create
                                 --read-bucket` (deploy/influxdb/); ignored without auth

User and password rather than an API token: InfluxQL reaches InfluxDB 2 through its v1
compatibility API, and one kind of credential then serves InfluxDB 1.x and 2.x alike.

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
    user: $REMOTECAL_INFLUXDB_USER
    jsonData:
      version: InfluxQL
      dbName: $REMOTECAL_INFLUXDB_DATABASE
      httpMode: POST
      timeInterval: 1s
    secureJsonData:
      password: $REMOTECAL_INFLUXDB_PASSWORD
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
