#!/bin/bash
# InfluxDB 2: what remotecal needs once the first setup made org, bucket and admin token.
# The influxdb:2 image runs this from /docker-entrypoint-initdb.d/ with the `influx` CLI
# logged in as the admin; by hand: export INFLUX_HOST/INFLUX_TOKEN/INFLUX_ORG, set the
# variables below, run it.
#
# - a DBRP mapping, so InfluxQL (Grafana, the pipeline, v1 writes) finds the bucket as
#   database $REMOTECAL_INFLUXDB_DATABASE, retention policy "autogen";
# - v1 users with the least rights each program needs (InfluxQL and the v1 /write API log
#   in with user and password):
#     gateway   write   gateways writing directly, and the central ingest
#     grafana   read    the dashboards
#     pipeline  read + write (it reads readings and writes calibration_point)
set -euo pipefail

database=${REMOTECAL_INFLUXDB_DATABASE:-calibration}
bucket=${DOCKER_INFLUXDB_INIT_BUCKET:-$database}
bucket_id=$(influx bucket list --name "$bucket" --hide-headers | cut -f1)

if ! influx v1 dbrp list --db "$database" --hide-headers 2>/dev/null | grep -q "$bucket_id"; then
    influx v1 dbrp create --db "$database" --rp autogen --bucket-id "$bucket_id" --default
fi

influx v1 auth create --username gateway --password "$REMOTECAL_GATEWAY_INFLUX_PASSWORD" \
    --write-bucket "$bucket_id" --description "remotecal gateways and ingest"
influx v1 auth create --username grafana --password "$REMOTECAL_GRAFANA_INFLUX_PASSWORD" \
    --read-bucket "$bucket_id" --description "remotecal dashboards"
influx v1 auth create --username pipeline --password "$REMOTECAL_PIPELINE_INFLUX_PASSWORD" \
    --read-bucket "$bucket_id" --write-bucket "$bucket_id" --description "remotecal pipeline"
