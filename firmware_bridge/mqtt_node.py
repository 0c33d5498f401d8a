"""A virtual MQTT sensor node: sensors in the chamber, published as JSON at a fixed interval.

    node = MqttSensorNode(chamber, "127.0.0.1", 1883, topic="lab/dut1/state", name="dut1",
                          sensors={"t": ("temperature", Sensor("dut1-t", error=[0.2])),
                                   "rh": ("relative_humidity", Sensor("dut1-rh", error=[-1.5]))})
    node.start(); ...; node.stop()

Each message is `{"t": 23.41, "rh": 45.2, "ts": 1795000000123}` (epoch ms, the node's own
clock), published with QoS 1 like a real node that cares about its data.

The broker may not be there yet, or may go away: like a real sensor node, the node then keeps
trying, with a jittered backoff from 0.5 s doubling up to `retry_max_s` (10 s), and publishes
again as soon as the broker takes it.  Readings that fall due while it is disconnected are not
kept (a node has no backlog to replay).  It logs one line per change of state, not per attempt:

    sensor node dut1: broker 127.0.0.1:1883 unreachable (Connection refused); retrying
    sensor node dut1: connected to broker 127.0.0.1:1883, publishing on lab/dut1/state
    sensor node dut1: lost broker 127.0.0.1:1883 (connection lost); retrying

An unexpected error (a bug) ends the node's thread with one log line and leaves the exception
in `failure`; whoever runs the node (`remotecal simulate`, the demo) checks it and stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt

from firmware_bridge.chamber import Chamber, Sensor
from gateway.backoff import Backoff
from gateway.errors import os_error_text

__all__ = ["MqttSensorNode"]

log = logging.getLogger("remotecal.firmware.mqtt")

RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0
CONNECT_TIMEOUT_S = 3.0
"""How long one attempt waits for the TCP connection, and then for the broker's CONNACK."""
KEEPALIVE_S = 30


def _loop_error(rc: mqtt.MQTTErrorCode) -> str:
    return mqtt.error_string(rc).rstrip(".")


class MqttSensorNode:
    """Publishes `sensors` (JSON key -> (measurand, Sensor)) every `interval_s` on `topic`."""

    def __init__(self, chamber: Chamber, host: str, port: int, *, topic: str,
                 sensors: Mapping[str, tuple[str, Sensor]], interval_s: float = 1.0,
                 client_id: str | None = None, with_time: bool = True, name: str | None = None,
                 retry_max_s: float = RETRY_MAX_S):
        self.chamber = chamber
        self.topic = topic
        self.name = name or topic
        self.sensors = dict(sensors)
        self.interval_s = interval_s
        self.with_time = with_time
        self.retry_max_s = retry_max_s
        self.published = 0
        self.connected = False
        self.failure: BaseException | None = None
        """The unexpected error that ended the node's thread, if one did."""
        self._host, self._port = host, port
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"node-{topic}")
        self._client.connect_timeout = CONNECT_TIMEOUT_S
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._connack: Any = None
        self._lost: str | None = None
        self._state: str | None = None
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"node-{topic}", daemon=True)

    @property
    def broker(self) -> str:
        return f"{self._host}:{self._port}"

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

    # paho callbacks: called from this node's own thread, inside client.loop()
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        self._connack = reason_code

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self.connected = False
        if self._lost is None:
            self._lost = f"disconnected by the broker: {reason_code}"

    def _report(self, state: str, level: int, text: str) -> None:
        """Log `text` when the node enters `state`; staying in it logs nothing."""
        if state != self._state:
            self._state = state
            log.log(level, "sensor node %s: %s", self.name, text)

    def _run(self) -> None:
        try:
            self._serve()
        except Exception as exc:
            self.failure = exc
            log.error("sensor node %s stopped by an unexpected error: %s: %s", self.name,
                      type(exc).__name__, exc)
        finally:
            self.connected = False
            with contextlib.suppress(Exception):  # the socket may be gone already
                self._client.disconnect()

    def _serve(self) -> None:
        backoff = Backoff(RETRY_INITIAL_S, self.retry_max_s)
        while not self._halt.is_set():
            trouble = self._connect()
            if trouble is None:
                if self._halt.is_set():
                    return
                backoff.reset()
                self._report("connected", logging.INFO,
                             f"connected to broker {self.broker}, publishing on {self.topic}")
                lost = self._publish_until_lost()
                if lost is None:
                    return
                self._report("down", logging.WARNING, f"lost broker {self.broker} ({lost}); retrying")
                continue
            state, reason = trouble
            if state == "refused":
                self._report(state, logging.WARNING,
                             f"broker {self.broker} refused the connection ({reason}); retrying")
            else:
                self._report(state, logging.WARNING,
                             f"broker {self.broker} unreachable ({reason}); retrying")
            self._halt.wait(backoff.next())

    def _connect(self) -> tuple[str, str] | None:
        """One attempt: None when the broker accepted (or the node was stopped meanwhile),
        else ("down" | "refused", the reason)."""
        self._connack, self._lost = None, None
        try:
            self._client.connect(self._host, self._port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            return "down", os_error_text(exc)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while self._connack is None:
            if self._halt.is_set():
                return None
            if time.monotonic() > deadline:
                self._client.disconnect()
                return "down", "no answer to CONNECT"
            rc = self._client.loop(0.1)
            if rc != mqtt.MQTT_ERR_SUCCESS and self._connack is None:
                return "down", _loop_error(rc)
        if self._connack.is_failure:
            self._client.disconnect()
            return "refused", str(self._connack)
        self.connected = True
        return None

    def _publish_until_lost(self) -> str | None:
        """Publish every interval until stopped (None) or the connection is lost (the reason)."""
        tick = time.time()
        while not self._halt.is_set():
            now = time.time()
            if now >= tick:
                self._client.publish(self.topic, json.dumps(self.message(now)), qos=1)
                self.published += 1
                tick += self.interval_s
            rc = self._client.loop(min(max(0.0, tick - time.time()), 0.25))
            if rc != mqtt.MQTT_ERR_SUCCESS or not self.connected:
                self.connected = False
                return _loop_error(rc) if rc != mqtt.MQTT_ERR_SUCCESS else self._lost or "disconnected"
        return None

    def start(self) -> MqttSensorNode:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(CONNECT_TIMEOUT_S + 2.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
