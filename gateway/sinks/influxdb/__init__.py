"""The InfluxDB sink: line protocol over HTTP to InfluxDB 1.x/2.x and compatible servers.

    config.py        the `[[sinks.influxdb]]` schema (sample.toml shows every key)
    lineprotocol.py  `Reading`/`HealthSample` -> line protocol
    sink.py          `InfluxDBSink`: write a batch, classify what went wrong
"""

from gateway.sinks.influxdb.config import InfluxDBSinkConfig
from gateway.sinks.influxdb.lineprotocol import LineEncoder, encode_batch
from gateway.sinks.influxdb.sink import InfluxDBSink

__all__ = ["InfluxDBSink", "InfluxDBSinkConfig", "LineEncoder", "encode_batch"]
