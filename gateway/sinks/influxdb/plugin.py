"""`[[sinks.influxdb]]`: line protocol over HTTP (registered in gateway.registry)."""

from __future__ import annotations

from pathlib import Path

from gateway.plugin import SinkContext, SinkKind
from gateway.sinks import Sink
from gateway.sinks.influxdb.config import InfluxDBSinkConfig

__all__ = ["KIND"]


def _build(config: InfluxDBSinkConfig, name: str, context: SinkContext) -> Sink:
    from gateway.sinks.influxdb.sink import InfluxDBSink

    return InfluxDBSink(config, name=name)


KIND = SinkKind(name="influxdb", config=InfluxDBSinkConfig, build=_build,
                sample=Path(__file__).with_name("sample.toml"))
