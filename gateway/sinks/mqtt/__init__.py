"""The MQTT uplink sink: signed, batched frames from a gateway's journal to a central broker.

    config.py   the `[[sinks.mqtt]]` schema (sample.toml shows every key)
    frame.py    records <-> the binary frame, its HMAC-SHA256 signature, the topic
    link.py     one MQTT 5 connection on its own thread (shared with `gateway.ingest`)
    sink.py     `MqttSink`: publish a frame, wait for the PUBACK, classify what went wrong

The other end is `remotecal ingest` (`gateway.ingest`).
"""

from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.mqtt.sink import MqttSink

__all__ = ["MqttSink", "MqttSinkConfig"]
