"""`Message` lives in `gateway.mqtt.message` (the one MQTT layer); re-exported here for the
modules that still import it from the MQTT source."""

from gateway.mqtt.message import Message

__all__ = ["Message"]
