"""A remote run on firmware_bridge's controllable virtual chamber (`remotecal simulate`, profile
generic-chamber): the gateway's [[controllers.modbus]] writes each step's setpoint, its Modbus
source reads the chamber's measured temperature as the reference, the run engine records one
window per step at its setpoint; a setpoint the chamber clamps (read back different) fails the
step.  Real processes: the simulator, the gateway, influxd."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.profile import gateway_controller, load_profile
from gateway.localcontrol import GatewayNotRunning, request_sync
from tests.gateway.harness import CommandProcess, GatewayProcess, config_text
from tests.gateway.run.test_run_end_to_end import events, wait_until
from tests.servers.influx import InfluxD, free_port

pytestmark = pytest.mark.integration

SIM = """
[chamber]
seed = 2
speed = 60
tau_s = 30                     # 0.5 s of wall clock at speed 60
start_temperature = 20.0
start_humidity = 50.0
oscillation = 0.0
noise = 0.002

[[devices]]
name = "chamber"
profile = "generic-chamber"
listen = "tcp://127.0.0.1:{port}"
unit_id = 1
"""

PROCEDURE = """
[procedure]
name = "virtual chamber"
references = {{ temperature = "chamber-t" }}

[defaults]
settle_min_s = 0.5
record_s = 2
max_s = 30

[defaults.stability]
window_s = 1.0
max_std = 0.01
max_slope_per_min = 0.5

[[steps]]
temperature = [{temps}]
humidity = 50.0
"""


class Simulator(CommandProcess):
    command = ("simulate",)
    config_name = "sim.toml"
    log_name = "sim.log"


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def status(data: Path) -> dict[str, Any] | None:
    try:
        return dict(request_sync(data, "run.status", timeout=5)["result"])
    except GatewayNotRunning:
        return None


def run_on_the_chamber(tmp_path: Path, influxd: InfluxD, run: str, temps: str) -> tuple[dict[str, Any], Any]:
    influxd.create_database("calibration")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    data = tmp_path / "gw" / "data"
    site = config_text({
        "gateway": {"site": "lab1", "id": "gw01", "run": "between-runs", "data_dir": data,
                    "health_interval": "1s", "shutdown_grace": "10s"},
        "sources": {"modbus": [{"name": "chamber", "url": url, "unit_id": 1, "interval": "100ms", "registers": [
            {"channel": "chamber-t", "address": 0, "kind": "input", "type": "float32",
             "quantity": "temperature", "unit": "degC", "role": "reference"}]}]},
        "sinks": {"influxdb": [{"name": "influx", "url": influxd.url, "api": "v1", "database": "calibration",
                                "flush_interval": "100ms", "max_retry_interval": "1s"}]},
        "controllers": {"modbus": [gateway_controller(load_profile("generic-chamber"), name="chamber", url=url)]},
    })
    with Simulator(tmp_path / "sim", SIM.format(port=port)) as sim, GatewayProcess(tmp_path / "gw", site) as gw:
        wait_until(lambda: listening(port), 30, "the simulator", sim)
        wait_until(lambda: status(data), 30, "the gateway's control socket", gw)
        reply = request_sync(data, "run.start", procedure=PROCEDURE.format(temps=temps), run=run, actor="alice")
        assert reply["ok"], reply
        final = wait_until(lambda: (s := status(data)) and s["state"] in ("finished", "failed", "aborted") and s,
                           90, "the end of the run", gw)
        wait_until(lambda: any(e["state"] == final["state"] for e in events(influxd, run)), 30, "its event", gw)
        time.sleep(0.3)
        return final, gw.log()


def test_a_procedure_runs_on_the_virtual_chamber_with_a_window_per_step(tmp_path: Path, influxd: InfluxD) -> None:
    final, log = run_on_the_chamber(tmp_path, influxd, "RC-SIM", "20.0, 24.0, 21.5")
    assert final["state"] == "finished" and final["outcomes"] == ["stable"] * 3, (final, log[-3000:])
    windows = influxd.rows("SELECT * FROM run_window WHERE run = 'RC-SIM'", "calibration")
    assert [(w["step"], w["channel"], w["setpoint_temperature"]) for w in windows] == [
        (0, "chamber-t", 20.0), (1, "chamber-t", 24.0), (2, "chamber-t", 21.5)]
    for w in windows:
        assert abs(w["mean"] - w["setpoint_temperature"]) < 0.01 and w["n"] >= 15
        inside = influxd.rows(f"SELECT value FROM reading WHERE channel = 'chamber-t' AND run = 'RC-SIM' "
                              f"AND time >= {w['start']} AND time <= {w['end']}", "calibration")
        assert len(inside) == w["n"]  # the window selects exactly its readings in InfluxDB


def test_a_setpoint_the_chamber_clamps_fails_the_step(tmp_path: Path, influxd: InfluxD) -> None:
    final, log = run_on_the_chamber(tmp_path, influxd, "RC-CLAMP", "20.0, 200.0, 21.0")
    assert final["state"] == "failed" and final["step"] == 1, (final, log[-3000:])
    assert "controller chamber" in final["reason"] and "200" in final["reason"] and "180" in final["reason"]
    ev = events(influxd, "RC-CLAMP")
    assert ev[-1]["state"] == "failed" and ev[-1]["setpoint_temperature"] == 200.0
    assert [w["step"] for w in influxd.rows("SELECT * FROM run_window", "calibration")] == [0]
