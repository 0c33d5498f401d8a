"""Gateways with an MQTT uplink, ingest workers, and a sniffer, for the uplink's end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.ingest.config import load_ingest_config
from gateway.keys import new_key_file
from gateway.runtime import Gateway
from gateway.sources.uplink.source import UplinkSource
from tests.gateway.harness import CommandProcess, config_text
from tests.servers.influx import InfluxD

__all__ = ["INGEST_FILTER", "IngestProcess", "Sniffer", "gateway_config", "ingest_config", "make_key", "pumping",
           "state_message", "until"]

T0_MS = 1_795_000_000_000

# What the ingest workers subscribe to.  A test waits for the broker to log the subscription
# before anything is published to it: "connected" in a client's log is not enough - a new
# session's messages published before its SUBSCRIBE is processed are dropped by the broker (a
# full-suite run under load lost A's 600 readings that way).
INGEST_FILTER = "$share/central/remotecal/v1/+/+/readings"


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


@contextlib.asynccontextmanager
async def pumping(config: Path, prepare: Callable[[Gateway], Awaitable[None]] | None = None
                  ) -> AsyncIterator[tuple[Gateway, UplinkSource, list[int]]]:
    """A central site's gateway with its journal open and its uplink source pumped into it by
    the runtime (`Gateway._pump`), in process: no broker - a test hands messages to
    `source.on_message`; the mids acked are in the list.  No sink runs.  `prepare` runs
    once the journal is open, before the pump starts."""
    gw = Gateway(load_ingest_config(config))
    (source,) = gw.sources
    assert isinstance(source, UplinkSource)
    acked: list[int] = []
    source.subscriber.ack = lambda m: acked.append(m.mid)  # type: ignore[method-assign]
    source.subscriber.start = lambda: None  # type: ignore[method-assign]
    await gw.journal.open()
    source.use_journal(gw.journal)
    if prepare is not None:
        await prepare(gw)
    pump = asyncio.create_task(gw._pump(source))
    try:
        async with asyncio.timeout(30):
            while source._queue is None:  # the source is open
                await asyncio.sleep(0.01)
        yield gw, source, acked
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await gw.journal.close()


async def until(cond: Any, what: str, timeout: float = 30.0) -> None:
    """Wait (polling the event loop) until `cond()` holds."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)
