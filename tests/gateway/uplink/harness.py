"""Gateways with an MQTT uplink, ingest workers, and a sniffer, for the uplink's end-to-end tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.keys import new_key_file
from tests.servers.influx import InfluxD

__all__ = ["IngestProcess", "Sniffer", "gateway_config", "ingest_config", "make_key", "state_message"]

T0_MS = 1_795_000_000_000


def make_key(keys_dir: Path, site: str, gw: str) -> Path:
    return new_key_file(site, gw, keys_dir)


def gateway_config(data_dir: Path, broker_port: int, site: str, gw: str, local_topic: str, key_file: Path,
                   *, central_port: int | None = None, extra: str = "") -> str:
    """A gateway: one MQTT source on `local_topic/+/state`, one uplink to the central broker."""
    return f"""
[gateway]
site = "{site}"
id = "{gw}"
run = "RUN-1"
data_dir = "{data_dir}"
health_interval = "1s"
shutdown_grace = "20s"

[[sources.mqtt]]
name = "local"
url = "mqtt://127.0.0.1:{broker_port}"
reconnect_min = "100ms"
reconnect_max = "1s"
[[sources.mqtt.topics]]
topic = "{local_topic}/+/state"
format = "json"
time_path = "ts"
[[sources.mqtt.topics.fields]]
path = "t"
channel = "{{1}}"
quantity = "temperature"
unit = "degC"
role = "dut"

[[sinks.mqtt]]
name = "central"
url = "mqtt://127.0.0.1:{central_port or broker_port}"
key_file = "{key_file}"
batch_size = 300
flush_interval = "200ms"
timeout = "5s"
reconnect_min = "100ms"
reconnect_max = "1s"
max_retry_interval = "1s"
{extra}
"""


def ingest_config(data_dir: Path, broker_port: int, keys: Path, influx: InfluxD, worker: str) -> str:
    return f"""
[ingest]
worker = "{worker}"
data_dir = "{data_dir}"
keys = "{keys}"
group = "central"
shutdown_grace = "20s"

[broker]
url = "mqtt://127.0.0.1:{broker_port}"
reconnect_min = "100ms"
reconnect_max = "1s"
max_inflight = 20

[[sinks.influxdb]]
name = "influx"
url = "{influx.url}"
database = "calibration"
batch_size = 2000
flush_interval = "200ms"
max_retry_interval = "1s"
"""


class IngestProcess:
    """`python -m gateway.ingest ingest -c CENTRAL.toml` as a child process."""

    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "central.toml"
        self.config_path.write_text(config)
        self.log_path = workdir / "ingest.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.ingest", "ingest", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> IngestProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


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
