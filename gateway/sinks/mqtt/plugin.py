"""`[[sinks.mqtt]]`: the signed uplink to a central broker (registered in gateway.registry)."""

from __future__ import annotations

from pathlib import Path

from gateway.plugin import SinkContext, SinkKind
from gateway.sinks import Sink
from gateway.sinks.mqtt.config import MqttSinkConfig

__all__ = ["KIND"]


def _build(config: MqttSinkConfig, name: str, context: SinkContext) -> Sink:
    from gateway.sinks.mqtt.sink import MqttSink

    return MqttSink(config, site=context.site, gateway=context.gateway, data_dir=context.data_dir, name=name)


KIND = SinkKind(
    name="mqtt", config=MqttSinkConfig, build=_build,
    sample=Path(__file__).with_name("sample.toml"), paths=("key_file",))
