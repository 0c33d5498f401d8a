"""Gateways with an MQTT uplink, ingest workers, and a sniffer, for the uplink's end-to-end tests."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.keys import new_key_file
from tests.gateway.harness import CommandProcess, config_text
from tests.servers.influx import InfluxD

__all__ = ["IngestProcess", "Sniffer", "gateway_config", "ingest_config", "make_key", "state_message"]

T0_MS = 1_795_000_000_000


def make_key(keys_dir: Path, site: str, gw: str) -> Path:
    return new_key_file(site, gw, keys_dir)


def gateway_config(data_dir: Path, broker_port: int, site: str, gw: str, local_topic: str, key_file: Path,
                   *, central_port: int | None = None, extra: str | dict[str, Any] = "") -> str:
    """A gateway: one MQTT source on `local_topic/+/state`, one uplink to the central broker."""
    return config_text({
        "gateway": {"site": site, "id": gw, "run": "RUN-1", "data_dir": data_dir, "health_interval": "1s",
                    "shutdown_grace": "20s"},
        "sources": {"mqtt": [{
            "name": "local", "url": f"mqtt://127.0.0.1:{broker_port}", "reconnect_min": "100ms",
            "reconnect_max": "1s",
            "topics": [{"topic": f"{local_topic}/+/state", "format": "json", "time_path": "ts", "fields": [
                {"path": "t", "channel": "{1}", "quantity": "temperature", "unit": "degC", "role": "dut"}]}]}]},
        "sinks": {"mqtt": [{
            "name": "central", "url": f"mqtt://127.0.0.1:{central_port or broker_port}", "key_file": key_file,
            "batch_size": 300, "flush_interval": "200ms", "timeout": "5s", "reconnect_min": "100ms",
            "reconnect_max": "1s", "max_retry_interval": "1s"}]},
    }, extra)


def ingest_config(data_dir: Path, broker_port: int, keys: Path, influx: InfluxD, worker: str) -> str:
    return config_text({
        "ingest": {"worker": worker, "data_dir": data_dir, "keys": keys, "group": "central",
                   "shutdown_grace": "20s", "health_interval": "1s"},
        "broker": {"url": f"mqtt://127.0.0.1:{broker_port}", "reconnect_min": "100ms", "reconnect_max": "1s",
                   "max_inflight": 20},
        "sinks": {"influxdb": [{"name": "influx", "url": influx.url, "database": "calibration", "batch_size": 2000,
                                "flush_interval": "200ms", "max_retry_interval": "1s"}]},
    })


class IngestProcess(CommandProcess):
    """`remotecal ingest -c central.toml` as a child process."""

    command = ("ingest",)
    config_name = "central.toml"
    log_name = "ingest.log"


class Sniffer:
    """A plain (not shared) subscriber that keeps every frame seen on the uplink topics."""

    def __init__(self, port: int, topic: str = "remotecal/v1/+/+/readings") -> None:
        self.frames: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sniffer", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.frames.append((msg.topic, bytes(msg.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def state_message(prefix: str, sensor: str, i: int) -> tuple[str, str]:
    """One reading of `sensor`: 20 + i/1000 degC at T0 + i ms."""
    return f"{prefix}/{sensor}/state", json.dumps({"t": round(20 + i * 0.001, 3), "ts": T0_MS + i})
