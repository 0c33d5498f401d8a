"""Poison input for a running ingest, on real servers: Mosquitto -> `remotecal ingest` -> influxd.

No message may end the worker: whatever one message makes the ingest raise is that
message's quarantine reason, and the good frames beside it land.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.ingest.refused import RefusedFrames
from gateway.journal import Journal
from gateway.keys import load_key_file
from gateway.reading import HealthSample, Reading, Record
from gateway.sinks.mqtt.frame import encode_frame, readings_topic, sign
from tests.gateway.harness import Publisher
from tests.gateway.uplink.harness import INGEST_FILTER, IngestProcess, ingest_config, make_key
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

SITE, GW = "site 1", "gw,01"
T0_NS = 1_795_000_000_000 * 10**6
PREFIX = "remotecal/v1"


def wait_until(cond: Callable[[], Any], timeout: float, what: str, *logs: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(log()[-3000:] for log in logs))


def count_readings(influx: InfluxD) -> int:
    series = influx.query("SELECT COUNT(value) FROM reading", "calibration")[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def saved_numbers(data_dir: Path) -> set[int]:
    """The frame numbers the worker's replay state has on disk."""
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'replay.db'}?mode=ro", uri=True)) as db:
        try:
            return {seq for (seq,) in db.execute("SELECT seq FROM frames")}
        except sqlite3.OperationalError:  # not created yet
            return set()


def _readings(first: int, n: int, channel: str = "s0") -> list[Reading]:
    return [Reading(SITE, GW, "RUN-1", channel, "temperature", "degC", "dut", 20.0 + i / 1000, T0_NS + i * 10**6)
            for i in range(first, first + n)]


def v1_frame(secret: bytes, seq: int, records: list[Reading]) -> bytes:
    """A frame as gateways before the epoch (format version 1) signed it: header
    magic | version 1 | seq u64 | sent_ns i64, whatever `encode_frame` writes today."""
    body = encode_frame(1, 0, SITE, GW, records)
    magic, version = body[:4], body[4]
    header = struct.Struct("<4sBQq")
    rest = body[header.size + (8 if version == 2 else 0):]  # version 2: the epoch (i64) after the version
    return sign(secret, header.pack(magic, 1, seq, 0) + rest)


def test_poison_frames_are_quarantined_and_the_ingest_keeps_running(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    keys = tmp_path / "keys"
    secret = load_key_file(make_key(keys, SITE, GW)).secret
    topic = readings_topic(PREFIX, SITE, GW)
    worker = IngestProcess(tmp_path / "w1", ingest_config(tmp_path / "w1" / "data", mosquitto.port, keys,
                                                          influxd, "w1"))
    poison = [
        # a topic level whose percent-encoding is not UTF-8 (UnicodeDecodeError in split_topic)
        (f"{PREFIX}/%FF%FE/gw/readings", v1_frame(secret, 1, _readings(0, 1))),
        # a signed frame numbered 2**63 or more (OverflowError when the replay state is saved)
        (topic, v1_frame(secret, 2**63, _readings(0, 1, "big"))),
        (topic, v1_frame(secret, 2**64 - 1, _readings(0, 1, "big"))),
    ]
    good = [(topic, v1_frame(secret, 10 + k, _readings(k * 100, 100))) for k in range(6)]
    try:
        worker.start()
        mosquitto.wait_subscribed(INGEST_FILTER)
        pub = Publisher(mosquitto.port, "poisoner")
        pub.publish_all(good[:2] + poison[:1] + good[2:4] + poison[1:] + good[4:])
        pub.close()
        wait_until(lambda: count_readings(influxd) >= 600, 30, "the good frames", worker.log)
        # The replay state holds the accepted numbers once saved (each second): saving 2**63
        # raised OverflowError there.  The worker must still be there after it.
        wait_until(lambda: saved_numbers(tmp_path / "w1" / "data") == set(range(10, 16)), 30,
                   "the replay state saved", worker.log)
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
        assert worker.terminate() == 0, worker.log()[-3000:]
    finally:
        worker.kill()
    assert count_readings(influxd) == 600
    assert influxd.rows("SELECT value FROM reading WHERE channel = 'big'", "calibration") == []
    counts, rows = RefusedFrames.read(tmp_path / "w1" / "data" / "refused.db")
    assert counts == {"malformed": 3}, rows
    by_topic = sorted((r.topic, r.reason) for r in rows)
    assert "not UTF-8" in by_topic[0][1] or "not UTF-8" in by_topic[-1][1], by_topic
    assert sum("sequence number" in reason for _, reason in by_topic) == 2, by_topic
    assert all(r.payload in {p for _, p in poison} for r in rows)  # kept whole
    assert "Traceback" not in worker.log()


def test_one_bad_reading_is_quarantined_and_the_rest_of_its_frame_written(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    # Issue 11, item 4: a frame with an inf, a NaN and a reading without a channel among 50
    # good ones was refused whole ("malformed"), and its 50 good readings never reached InfluxDB.
    keys = tmp_path / "keys"
    secret = load_key_file(make_key(keys, SITE, GW)).secret
    topic = readings_topic(PREFIX, SITE, GW)
    good = _readings(0, 50)
    inf, nan = (Reading(SITE, GW, "RUN-1", "s1", "temperature", "degC", "dut", v, T0_NS) for v in (math.inf, math.nan))
    nameless = Reading(SITE, GW, "RUN-1", "", "temperature", "degC", "dut", 21.0, T0_NS)
    health = HealthSample(SITE, GW, T0_NS, {"uptime_s": 5.0, "bad": math.nan})
    worker = IngestProcess(tmp_path / "w1", ingest_config(tmp_path / "w1" / "data", mosquitto.port, keys,
                                                          influxd, "w1"))
    try:
        worker.start()
        mosquitto.wait_subscribed(INGEST_FILTER)
        pub = Publisher(mosquitto.port, "gateway")
        records: list[Record] = [*good[:20], inf, *good[20:40], nan, nameless, *good[40:], health]
        pub.publish_all([(topic, sign(secret, encode_frame(1, 0, SITE, GW, records)))])
        pub.close()
        wait_until(lambda: count_readings(influxd) >= 50, 30, "the good readings", worker.log)
        assert worker.terminate() == 0, worker.log()[-3000:]
    finally:
        worker.kill()
    assert count_readings(influxd) == 50
    values = [r["value"] for r in influxd.rows("SELECT value FROM reading", "calibration")]
    assert sorted(values) == sorted(r.value for r in good)
    total, rows = Journal.read_quarantine(tmp_path / "w1" / "data" / "journal.db")
    reasons = sorted(r.reason for r in rows)
    assert total == 4, reasons
    assert [("inf" in r, "nan" in r, "channel" in r) for r in reasons].count((False, False, True)) == 1, reasons
    assert sum("value is inf" in r for r in reasons) == 1, reasons
    assert sum(r.startswith("invalid record: value is nan") for r in reasons) == 1, reasons
    assert sum("field 'bad'" in r and "nan" in r for r in reasons) == 1, reasons  # the health sample
    assert all(r.topic == topic for r in rows)
    assert "Traceback" not in worker.log()
