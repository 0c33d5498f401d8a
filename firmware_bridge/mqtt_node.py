"""A virtual MQTT sensor node: sensors in the chamber, published as JSON at a fixed interval.

    node = MqttSensorNode(chamber, "127.0.0.1", 1883, topic="lab/dut1/state",
                          sensors={"t": ("temperature", Sensor("dut1-t", error=[0.2])),
                                   "rh": ("relative_humidity", Sensor("dut1-rh", error=[-1.5]))})
    node.start(); ...; node.stop()

Each message is `{"t": 23.41, "rh": 45.2, "ts": 1795000000123}` (epoch ms, the node's own
clock), published with QoS 1 like a real node that cares about its data.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping

import paho.mqtt.client as mqtt

from firmware_bridge.chamber import Chamber, Sensor

__all__ = ["MqttSensorNode"]


class MqttSensorNode:
    """Publishes `sensors` (JSON key -> (measurand, Sensor)) every `interval_s` on `topic`."""

    def __init__(self, chamber: Chamber, host: str, port: int, *, topic: str,
                 sensors: Mapping[str, tuple[str, Sensor]], interval_s: float = 1.0,
                 client_id: str | None = None, with_time: bool = True):
        self.chamber = chamber
        self.topic = topic
        self.sensors = dict(sensors)
        self.interval_s = interval_s
        self.with_time = with_time
        self.published = 0
        self._host, self._port = host, port
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"node-{topic}")
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"node-{topic}", daemon=True)

    def message(self, now: float) -> dict[str, float | int]:
        sim_t = self.chamber.sim_time(now)
        t, rh = self.chamber.state(now)
        doc: dict[str, float | int] = {}
        for key, (measurand, sensor) in self.sensors.items():
            true = t if measurand == "temperature" else rh
            doc[key] = round(sensor.indicate(true, sim_t), 6)
        if self.with_time:
            doc["ts"] = int(now * 1000)
        return doc

    def _run(self) -> None:
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        try:
            tick = time.time()
            while not self._halt.is_set():
                now = time.time()
                self._client.publish(self.topic, json.dumps(self.message(now)), qos=1)
                self.published += 1
                tick += self.interval_s
                self._halt.wait(max(0.0, tick - time.time()))
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def start(self) -> MqttSensorNode:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(5.0)
