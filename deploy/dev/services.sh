#!/bin/sh
# Local Mosquitto (127.0.0.1:1883), influxd 1.x with database "calibration" (127.0.0.1:8086)
# and VictoriaMetrics (127.0.0.1:8428) for development, in the foreground; Ctrl-C stops them.
# They are the servers the tests start (tests/servers), on the ports of deploy/examples/.
#
#   deploy/dev/services.sh [--dir var/dev-services] [--only mqtt influxdb victoria] [--mqtt-port N] ...
#
# Needs `make venv` and the Debian packages mosquitto, influxdb, victoria-metrics
# (`make system-packages` installs them).
set -eu
cd "$(dirname "$0")/../.."
exec .venv/bin/python -m tests.servers "$@"
