"""The gateway's counters add up, as README "What the counters mean" states, on a real run:
Mosquitto -> `remotecal gateway run` -> influxd, across an InfluxDB outage and a restart.

    journal_pending_start + records = delivered + sink_rejected + dropped + journal_pending
    records = received + the health and run points committed (one sink)

and every reading `received` over both runs is a point in InfluxDB."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gateway.harness import GatewayProcess, Publisher, site_config
from tests.gateway.test_end_to_end import count_readings, wait_until
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


def _counters(log: str) -> dict[str, float]:
    line = [x for x in log.splitlines() if "gateway stopped: " in x][-1]
    return {k: float(v) for k, v in (p.split("=") for p in line.split("gateway stopped: ")[1].split(", "))}


def _health_points(influx: InfluxD) -> int:
    res = influx.query("SELECT COUNT(received) FROM gateway_health", "calibration")[0]
    series = res.get("series")
    return int(series[0]["values"][0][1]) if series else 0


def _adds_up(c: dict[str, float]) -> None:
    assert c["journal_pending_start"] + c["records"] == (
        c["delivered"] + c["sink_rejected"] + c["dropped"] + c["journal_pending"]), c
    assert c["records"] >= c["received"], c


def test_received_delivered_pending_add_up_across_an_outage_and_a_restart(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    sink = {"sinks": {"influxdb": [{"url": influxd.url, "database": "calibration", "flush_interval": "100ms",
                                    "max_retry_interval": "500ms"}]}}
    config = site_config(tmp_path / "data", mosquitto.port, sink, health="500ms").replace(
        'shutdown_grace = "20s"', 'shutdown_grace = "2s"')
    pub = Publisher(mosquitto.port)
    try:
        influxd.stop()  # run 1: InfluxDB is down; everything waits in the journal
        with GatewayProcess(tmp_path / "gw", config) as gw:
            mosquitto.wait_subscribed("lab/+/raw")
            ts = int(time.time() * 1000)
            pub.publish_all([(f"lab/s{i % 3}/state", json.dumps({"t": 20 + i / 100, "rh": 40.0, "ts": ts + i}))
                             for i in range(150)])
            pub.publish_all([("lab/s1/state", "{not json"), ("lab/s2/raw", "twenty")])  # 2 rejected inputs
            wait_until(lambda: _status_received(gw) >= 300, 30,
                       "300 readings in the journal", gw)
            assert gw.terminate() == 0
        first = _counters(gw.log())
        assert (first["received"], first["rejected"], first["delivered"]) == (300, 2, 0), first
        assert first["journal_pending"] == first["records"] > 300, "the readings and the health points wait"
        _adds_up(first)

        influxd.start(keep_port=True)  # run 2: InfluxDB is back; a restart delivers what waited, and more
        with GatewayProcess(tmp_path / "gw", config) as gw:
            wait_until(lambda: count_readings(influxd) >= 300, 60, "the readings that waited", gw)
            pub.publish_all([(f"lab/s{i % 3}/raw", str(21 + i / 100)) for i in range(50)])
            wait_until(lambda: count_readings(influxd) >= 350, 60, "the new readings", gw)
            assert gw.terminate() == 0
        second = _counters(gw.log())
        assert second["journal_pending_start"] == first["journal_pending"]
        assert second["received"] == 50
        _adds_up(second)
        assert second["journal_pending"] == 0, "influxd took everything before the stop"
    finally:
        pub.close()
    assert count_readings(influxd) == first["received"] + second["received"] == 350, "each reading once"
    assert _health_points(influxd) == first["records"] - first["received"] + second["records"] - second["received"]


def _status_received(gw: GatewayProcess) -> int:
    proc = subprocess.run([sys.executable, "-m", "remotecal", "gateway", "status", "-c", str(gw.config_path),
                           "--json"], capture_output=True, text=True, timeout=60)
    return int(json.loads(proc.stdout)["health"]["received"]) if proc.returncode == 0 else 0
