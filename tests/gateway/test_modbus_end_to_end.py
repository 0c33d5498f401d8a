"""Virtual devices (`remotecal simulate`) -> Modbus TCP -> `remotecal gateway run` -> influxd."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_bridge.profile import gateway_registers, load_profile
from tests.gateway.harness import GatewayProcess
from tests.gateway.test_end_to_end import wait_until
from tests.servers.influx import InfluxD, free_port

pytestmark = pytest.mark.integration


def _toml_table(name: str, entries: list[dict[str, object]]) -> str:
    out = []
    for e in entries:
        out.append(f"[[{name}]]")
        for k, v in e.items():
            out.append(f"{k} = {v!r}".replace("'", '"'))
    return "\n".join(out)


def test_virtual_devices_to_influxd_over_modbus_tcp(tmp_path: Path, influxd: InfluxD) -> None:
    ports = [free_port(), free_port()]
    sim = tmp_path / "sim.toml"
    sim.write_text(f"""
[chamber]
seed = 3
speed = 1
start_temperature = 23.0
start_humidity = 45.0
[[chamber.steps]]
temperature = 23.0
humidity = 45.0
duration = "1h"
[[devices]]
name = "ref"
profile = "generic-pt100"
listen = "tcp://127.0.0.1:{ports[0]}"
[[devices]]
name = "dut1"
profile = "generic-thr"
listen = "tcp://127.0.0.1:{ports[1]}"
[devices.temperature]
error = [0.5]
resolution = 0.01
""")
    proc = subprocess.Popen([sys.executable, "-m", "remotecal", "simulate", "-c", str(sim)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ref = gateway_registers(load_profile("generic-pt100"), prefix="ref", role="reference")
        dut = gateway_registers(load_profile("generic-thr"), prefix="dut1", role="dut")
        cfg = f"""
[gateway]
site = "lab"
id = "gw"
run = "MB-1"
data_dir = "{tmp_path / 'data'}"
[[sources.modbus]]
name = "ref"
url = "tcp://127.0.0.1:{ports[0]}"
interval = "500ms"
{_toml_table("sources.modbus.registers", ref)}
[[sources.modbus]]
name = "dut1"
url = "tcp://127.0.0.1:{ports[1]}"
interval = "500ms"
{_toml_table("sources.modbus.registers", dut)}
[[sinks.influxdb]]
url = "{influxd.url}"
database = "calibration"
flush_interval = "200ms"
"""
        with GatewayProcess(tmp_path / "gw", cfg) as gw:
            def enough() -> bool:
                res = influxd.query("SELECT COUNT(value) FROM reading GROUP BY channel", "calibration")[0]
                counts = {s["tags"]["channel"]: s["values"][0][1] for s in res.get("series", [])}
                return len(counts) == len(ref) + len(dut) and min(counts.values()) >= 6
            wait_until(enough, 60, "readings of every register", gw)
            assert gw.terminate() == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        finally:
            proc.kill()
    rows = influxd.rows("SELECT value FROM reading GROUP BY *", "calibration")
    by_channel: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        by_channel.setdefault(str(r["channel"]), []).append(r)
    # the DUT reads 0.5 K high, within its resolution and the chamber's small oscillation
    ref_t = [float(r["value"]) for r in by_channel["ref-t"]]  # type: ignore[arg-type]
    dut_t = [float(r["value"]) for r in by_channel["dut1-t"]]  # type: ignore[arg-type]
    assert all(22.5 < v < 23.5 for v in ref_t), ref_t
    assert abs(sum(dut_t) / len(dut_t) - sum(ref_t) / len(ref_t) - 0.5) < 0.1
    # the float32 register and its int16 x100 copy agree to the copy's resolution
    x100 = [float(r["value"]) for r in by_channel["dut1-t-x100"]]  # type: ignore[arg-type]
    assert abs(sum(x100) / len(x100) - sum(dut_t) / len(dut_t)) < 0.02
    # polls are aligned to the 500 ms clock ticks; a reading's time is the request's midpoint
    offsets = [(int(r["time"]) % 500_000_000) / 1e6 for r in by_channel["ref-t"]]  # type: ignore[call-overload]
    assert max(offsets) < 100, offsets
    assert {r["quantity"] for r in by_channel["dut1-rh"]} == {"relative_humidity"}
    assert {r["role"] for r in by_channel["ref-t"]} == {"reference"}
