"""A virtual SCPI reference thermometer -> `[[sources.instrument]]` of a real gateway -> influxd."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_bridge.chamber import Chamber, Sensor, Step
from firmware_bridge.scpi import ScpiThermometer
from tests.gateway.harness import GatewayProcess, config_text
from tests.gateway.test_end_to_end import count_readings, v1_sink, wait_until
from tests.servers.influx import InfluxD
from tests.servers.threaded import ServedInThread

pytestmark = pytest.mark.integration


def test_scpi_thermometer_to_influxd(tmp_path: Path, influxd: InfluxD) -> None:
    chamber = Chamber([Step(23.0, 45.0, 3600)], start_temperature=23.0, noise=0.0, oscillation=0.0)
    with ServedInThread(ScpiThermometer(chamber, Sensor("ref", error=[0.012], resolution=0.001)).tcp()) as served:
        cfg = config_text({
            "gateway": {"site": "lab", "id": "gw", "run": "SCPI-1", "data_dir": tmp_path / "data"},
            "sources": {"instrument": [{
                "name": "ref-thermometer", "url": f"tcp://127.0.0.1:{served.server.port}", "mode": "query",
                "query": "FETC?\n", "interval": "200ms",
                "channels": [{"channel": "ref-t", "quantity": "temperature", "unit": "degC", "role": "reference",
                              "pattern": r"^\s*(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$"}]}]},
        }, v1_sink(influxd))
        with GatewayProcess(tmp_path / "gw", cfg) as gw:
            wait_until(lambda: count_readings(influxd) >= 10, 30, "thermometer readings", gw)
            assert gw.terminate() == 0
    rows = influxd.rows("SELECT value FROM reading GROUP BY *", "calibration")
    assert {r["channel"] for r in rows} == {"ref-t"} and {r["role"] for r in rows} == {"reference"}
    assert all(r["value"] == pytest.approx(23.012, abs=1e-9) for r in rows), rows[:3]
