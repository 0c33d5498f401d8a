"""Run a real gateway process and real MQTT publishers for end-to-end tests."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as mqtt

from gateway.configfile import dumps

__all__ = ["CommandProcess", "GatewayProcess", "Publisher", "config_text", "site_config"]


_TOPICS = [
    {"topic": "lab/+/state", "format": "json", "time_path": "ts", "fields": [
        {"path": "t", "channel": "{1}-t", "quantity": "temperature", "unit": "degC", "role": "dut"},
        {"path": "rh", "channel": "{1}-rh", "quantity": "relative_humidity", "unit": "%rh", "role": "dut"}]},
    {"topic": "lab/+/raw", "format": "value", "fields": [
        {"channel": "{1}-raw", "quantity": "temperature", "unit": "degC", "role": "reference"}]},
]


def config_text(data: dict[str, Any], *more: str | dict[str, Any]) -> str:
    """A config as TOML (gateway.configfile.dumps), with more tables merged in: dicts, or TOML
    text as a test writes a section by hand."""
    merged = copy.deepcopy(data)
    for extra in more:
        _merge(merged, tomllib.loads(extra) if isinstance(extra, str) else extra)
    return dumps(merged)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = into[key] + value
        else:
            into[key] = value


def site_config(data_dir: Path, broker_port: int, sink: str | dict[str, Any], *, run: str = "RUN-1",
                health: str = "1s", topics: list[dict[str, Any]] | None = None, protocol: str = "5") -> str:
    """A site config: one MQTT source on the test broker, the given sink section(s)."""
    return config_text({
        "gateway": {"site": "lab 1", "id": "gw,01", "run": run, "data_dir": data_dir, "health_interval": health,
                    "shutdown_grace": "20s"},
        "sources": {"mqtt": [{"name": "broker", "url": f"mqtt://127.0.0.1:{broker_port}", "protocol": protocol,
                              "reconnect_min": "100ms", "reconnect_max": "1s", "topics": topics or _TOPICS}]},
    }, sink)


class CommandProcess:
    """A `remotecal` command on a config file, as a child process; SIGKILL and restart it at will."""

    command: tuple[str, ...] = ("gateway", "run")
    config_name = "site.toml"
    log_name = "gateway.log"

    def __init__(self, workdir: Path, config: str):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / self.config_name
        self.config_path.write_text(config)
        self.log_path = workdir / self.log_name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "remotecal", *self.command, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class GatewayProcess(CommandProcess):
    """`remotecal gateway run -c site.toml`."""


class Publisher:
    """A QoS 1 publisher that waits for each PUBACK: a message counts as published once acked."""

    def __init__(self, port: int, client_id: str = "test-publisher"):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.published = 0

    def publish_all(self, messages: Iterable[tuple[str, bytes | str]], timeout: float = 60.0) -> None:
        infos = [self.client.publish(t, p, qos=1) for t, p in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError("the broker did not acknowledge a publish in time")
        self.published += len(infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SteadyStream(threading.Thread):
    """Publishes `rate` messages/s (bounded in count) until stopped; remembers what was acked."""

    def __init__(self, port: int, rate: float, count: int, make: Callable[[int], tuple[str, str]]):
        super().__init__(daemon=True)
        self.port, self.rate, self.count, self.make = port, rate, count, make
        self.sent: list[tuple[str, str]] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            pub = Publisher(self.port, "steady-stream")
            t0 = time.monotonic()
            for i in range(self.count):
                if self._halt.is_set():
                    break
                msg = self.make(i)
                pub.publish_all([msg], timeout=30)
                self.sent.append((msg[0], msg[1]))
                delay = t0 + (i + 1) / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            pub.close()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def halt(self) -> None:
        self._halt.set()


def state_message(sensor: str, i: int, ts_ms: int | None) -> tuple[str, str]:
    doc: dict[str, float | int] = {"t": round(20 + i * 0.001, 3), "rh": round(40 + i * 0.01, 2)}
    if ts_ms is not None:
        doc["ts"] = ts_ms
    return f"lab/{sensor}/state", json.dumps(doc)
