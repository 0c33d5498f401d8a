"""The uplink sink against a real Mosquitto: PUBACK before write() returns, classified failures,
sequence numbers that survive restarts, and config that fails at start."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError, RetryableError
from gateway.keys import load_key_file, new_key_file
from gateway.reading import Reading
from gateway.runtime import build_sinks
from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.mqtt.frame import decode_frame, readings_topic, verify
from gateway.sinks.mqtt.sink import MqttSink, SequenceCounter
from tests.servers.influx import free_port
from tests.servers.mosquitto import Mosquitto

SITE, GW = "lab 1", "gw,01"


def reading(i: int) -> Reading:
    return Reading(SITE, GW, "R", "c", "temperature", "degC", "dut", 20.0 + i, 10**18 + i)


def test_sequence_numbers_are_monotonic_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "seq"
    a = SequenceCounter(path)
    first = [a.next() for _ in range(3000)]
    assert first == list(range(1, 3001))
    b = SequenceCounter(path)  # a restart (or a crash: the file is written before use)
    assert b.next() > first[-1]
    assert b.epoch == a.epoch != 0  # the same numbering
    path.write_text("junk")
    with pytest.raises(ConfigError, match="not a sequence number"):
        SequenceCounter(path)


def test_a_new_sequence_file_is_a_new_epoch(tmp_path: Path) -> None:
    # Issue 11, item 5: a re-provisioned gateway (data_dir lost) numbers from 1 again - in a
    # new epoch, so that the ingest does not take its frames for replays.
    path = tmp_path / "seq"
    a = SequenceCounter(path)
    a.next()
    path.unlink()
    b = SequenceCounter(path)
    assert b.next() == 1 and b.epoch != a.epoch and 0 < b.epoch < 2**63
    path.write_text("5000\n")  # written before epochs: the numbering goes on, in an epoch of its own
    c = SequenceCounter(path)
    assert c.next() == 5001 and SequenceCounter(path).epoch == c.epoch


def _sink(tmp_path: Path, port: int, **extra: object) -> MqttSink:
    keys = sorted((tmp_path / "keys").glob("*.key"))
    key = keys[0] if keys else new_key_file(SITE, GW, tmp_path / "keys")
    cfg = MqttSinkConfig.model_validate({"url": f"mqtt://127.0.0.1:{port}", "key_file": key, **extra})
    return MqttSink(cfg, site=SITE, gateway=GW, data_dir=tmp_path / "data", name="central")


class _Collector:
    def __init__(self, port: int, topic: str) -> None:
        self.payloads: list[bytes] = []
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *_: self.subscribed.set()
        self.c.on_message = lambda _c, _u, m: self.payloads.append(bytes(m.payload))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.subscribed.wait(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def test_write_returns_after_the_puback_with_a_signed_frame(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sink = _sink(tmp_path, mosquitto.port)
    col = _Collector(mosquitto.port, readings_topic("remotecal/v1", SITE, GW))
    try:
        await sink.write([reading(i) for i in range(10)])
        await sink.write([reading(i) for i in range(10, 15)])
        for _ in range(50):
            if len(col.payloads) == 2:
                break
            await asyncio.sleep(0.1)
    finally:
        col.close()
        await sink.aclose()
    secret = load_key_file(next((tmp_path / "keys").glob("*.key"))).secret
    frames = [decode_frame(verify(secret, p)) for p in col.payloads]
    assert [f.seq for f in frames] == [1, 2]
    assert [r for f in frames for r in f.records] == [reading(i) for i in range(15)]


async def test_no_subscriber_and_no_broker_are_retryable(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sink = _sink(tmp_path, mosquitto.port)
    try:
        with pytest.raises(RetryableError, match="no ingest subscribes"):
            await sink.write([reading(1)])
    finally:
        await sink.aclose()
    down = _sink(tmp_path, free_port(), timeout="300ms")
    try:
        with pytest.raises(RetryableError, match="not connected"):
            await down.write([reading(1)])
    finally:
        await down.aclose()


def test_config_errors_at_start(tmp_path: Path) -> None:
    other = new_key_file("lab 1", "another gw", tmp_path / "k")

    def cfg(**sink: object) -> dict[str, object]:
        return {
            "gateway": {"site": SITE, "id": GW, "run": "R", "data_dir": str(tmp_path / "d")},
            "sources": {"mqtt": [{"name": "m", "url": "mqtt://127.0.0.1:1883", "topics": [
                {"topic": "a/+", "format": "value", "fields": [
                    {"channel": "c", "quantity": "temperature", "unit": "degC", "role": "dut"}]}]}]},
            "sinks": {"mqtt": [{"url": "mqtt://127.0.0.1:1883", "key_file": str(other), **sink}]},
        }

    assert parse_config(cfg()).sink_names() == ["mqtt:mqtt://127.0.0.1:1883 remotecal/v1"]
    with pytest.raises(ConfigError, match="is the key of lab 1/another gw, not of this gateway"):
        build_sinks(parse_config(cfg()))
    with pytest.raises(ConfigError, match="topic_prefix"):
        parse_config(cfg(topic_prefix="a/+/b"))
    with pytest.raises(ConfigError, match="credentials do not belong in the URL"):
        parse_config(cfg(url="mqtt://u:p@127.0.0.1:1883"))
