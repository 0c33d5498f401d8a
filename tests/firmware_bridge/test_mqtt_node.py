"""The virtual MQTT sensor node publishes what its sensors indicate, on a real Mosquitto."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt

from firmware_bridge.chamber import Chamber, Sensor, Step
from firmware_bridge.mqtt_node import MqttSensorNode
from tests.servers.mosquitto import Mosquitto


def test_node_publishes_sensor_indications_as_json(mosquitto: Mosquitto) -> None:
    chamber = Chamber([Step(25.0, 40.0, 3600)], start_temperature=25.0, start_humidity=40.0, noise=0.0,
                      oscillation=0.0)
    got: list[dict[str, float]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="check")
    sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("lab/n1/state", qos=1)
    sub.loop_start()
    mosquitto.wait_subscribed("lab/n1/state")
    node = MqttSensorNode(chamber, "127.0.0.1", mosquitto.port, topic="lab/n1/state", interval_s=0.05,
                          sensors={"t": ("temperature", Sensor("t", error=[0.25], resolution=0.01)),
                                   "rh": ("relative_humidity", Sensor("rh", error=[-2.0]))}).start()
    deadline = time.monotonic() + 10
    while len(got) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    node.stop()
    sub.loop_stop()
    assert len(got) >= 5
    assert all(m["t"] == 25.25 and abs(m["rh"] - 38.0) < 1e-9 for m in got), got[:3]
    assert all(abs(m["ts"] / 1000 - time.time()) < 30 for m in got)
