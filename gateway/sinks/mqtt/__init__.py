"""The MQTT uplink sink: signed, batched frames from a gateway's journal to a central broker.

    config.py   the `[[sinks.mqtt]]` schema (sample.toml shows every key)
    frame.py    records <-> the binary frame, its HMAC-SHA256 signature, the topic
    sink.py     `MqttSink`: publish a frame (on `gateway.mqtt`), wait for the PUBACK, classify
                what went wrong

The other end is `remotecal ingest` (`[[sources.uplink]]`, `gateway.sources.uplink`).
"""

from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.mqtt.sink import MqttSink

__all__ = ["MqttSink", "MqttSinkConfig"]
