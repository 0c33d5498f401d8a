"""deploy/examples: the simulator's devices and the example site config fit each other.

`remotecal simulate -c sim.toml` and `remotecal gateway run -c site.toml`, both unchanged but
for their loopback ports (free ones here) and the journal's folder, into a real Mosquitto and
influxd: every channel of the site config gets readings.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.gateway.harness import CommandProcess, GatewayProcess
from tests.servers.influx import InfluxD, free_port
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
CHANNELS = {"ref-t", "dut1-t", "dut1-rh", "dut2-t", "dut2-rh", "ref-readout-t"}


class Simulator(CommandProcess):
    command = ("simulate",)
    config_name = "sim.toml"
    log_name = "simulate.log"


def _ported(text: str, ports: dict[str, int]) -> str:
    for old, new in ports.items():
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    return text


def test_the_example_site_reads_every_device_the_example_simulator_serves(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    ports = {"5020": free_port(), "5021": free_port(), "5025": free_port(),
             "1883": mosquitto.port, "8086": influxd.port}
    sim = _ported((EXAMPLES / "sim.toml").read_text(), ports)
    site = _ported((EXAMPLES / "site.toml").read_text(), ports).replace(
        'data_dir = "./var/gw01"', f'data_dir = "{tmp_path / "journal"}"')
    assert site.count(str(influxd.port)) == 1 and sim.count(str(mosquitto.port)) == 1
    with Simulator(tmp_path / "sim", sim) as simulator, GatewayProcess(tmp_path / "gw", site) as gateway:
        deadline = time.monotonic() + 60
        seen: set[str] = set()
        while time.monotonic() < deadline and seen != CHANNELS:
            time.sleep(0.5)
            rows = influxd.query('SELECT count("value") FROM "reading" GROUP BY "channel"', db="calibration")
            seen = {s["tags"]["channel"] for s in rows[0].get("series", [])}
        assert gateway.terminate() == 0, gateway.log()[-3000:]
        simulator.terminate()
    assert seen == CHANNELS, (seen, gateway.log()[-3000:], simulator.log()[-3000:])
    assert "Traceback" not in gateway.log()
