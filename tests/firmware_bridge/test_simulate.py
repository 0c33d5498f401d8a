"""`remotecal simulate`: the config, and devices served from it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from firmware_bridge.simulate import load_sim_config, run_simulation
from gateway.errors import ConfigError
from gateway.sources.modbus.decode import compile_decoder
from tests.servers.mosquitto import Mosquitto


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SIM = """
[chamber]
seed = 3
speed = 10
[[chamber.steps]]
temperature = 25.0
humidity = 40.0
duration = "10m"

[[devices]]
name = "dut1"
profile = "generic-thr"
listen = "tcp://127.0.0.1:{port}"
unit_id = 1
[devices.temperature]
error = [0.5]
resolution = 0.01

[[devices]]
name = "ref"
profile = "generic-pt100"
listen = "tcp://127.0.0.1:{port}"
unit_id = 2
"""


async def test_simulate_serves_the_configured_devices(tmp_path: Path) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    port = _free_port()
    path = tmp_path / "sim.toml"
    path.write_text(SIM.format(port=port))
    stop = asyncio.Event()
    task = asyncio.create_task(run_simulation(load_sim_config(path), stop))
    try:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
        async with asyncio.timeout(5):
            while not await client.connect():
                await asyncio.sleep(0.05)
        f32 = compile_decoder("float32")
        dut = await client.read_input_registers(0, count=2, device_id=1)
        ref = await client.read_input_registers(0, count=2, device_id=2)
        client.close()
        assert f32(dut.registers) - f32(ref.registers) == pytest.approx(0.5, abs=0.006)
    finally:
        stop.set()
        await task


def test_a_bad_sim_config_names_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(SIM.format(port=1).replace('"generic-pt100"', '"acme-9000"').replace("speed = 10", "speed = 0"))
    with pytest.raises(ConfigError) as err:
        load_sim_config(path)
    keys = sorted(p.split(":")[0] for p in err.value.problems)
    assert keys == ["chamber.speed", "devices[1].profile"]


async def test_simulate_serves_mqtt_nodes_and_scpi_thermometers(tmp_path: Path, mosquitto: Mosquitto) -> None:
    import json

    import paho.mqtt.client as mqtt

    scpi_port = _free_port()
    path = tmp_path / "sim.toml"
    path.write_text(f"""
[chamber]
start_temperature = 21.0
start_humidity = 40.0
noise = 0.0
oscillation = 0.0
[[chamber.steps]]
temperature = 21.0
humidity = 40.0
duration = "1h"
[[devices]]
name = "node1"
listen = "mqtt://127.0.0.1:{mosquitto.port}/lab/node1/state"
interval = "100ms"
[devices.temperature]
error = [0.5]
[[devices]]
name = "ref"
listen = "scpi://127.0.0.1:{scpi_port}"
[devices.temperature]
error = [-0.02]
""")
    got: list[dict[str, float]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-check")
    sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("lab/node1/state", qos=1)
    sub.loop_start()
    stop = asyncio.Event()
    task = asyncio.create_task(run_simulation(load_sim_config(path), stop))
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", scpi_port)
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            writer.write(b"FETC?\n")
            answer = float((await reader.readline()).decode())
            writer.close()
            while len(got) < 3:
                await asyncio.sleep(0.05)
        assert answer == pytest.approx(20.98, abs=1e-6)
        assert all(m["t"] == pytest.approx(21.5) and m["rh"] == pytest.approx(40.0) for m in got)
    finally:
        stop.set()
        await task
        sub.loop_stop()


def test_the_shipped_sim_example_is_valid() -> None:
    cfg = load_sim_config(Path(__file__).parents[2] / "deploy" / "examples" / "sim.toml")
    assert {d.kind for d in cfg.devices} == {"modbus", "mqtt", "scpi"}


CONTROLLABLE = """
[chamber]
seed = 5
speed = 600                      # tau 60 s of chamber time is 0.1 s of wall clock
tau_s = 60
start_temperature = 20.0
start_humidity = 50.0

[[devices]]
name = "chamber"
profile = "generic-chamber"
listen = "tcp://127.0.0.1:{port}"

[[devices]]
name = "chamber-scpi"
listen = "scpi://127.0.0.1:{scpi_port}"
control = true
"""


async def test_a_simulated_chamber_takes_setpoints_from_the_gateways_controllers(tmp_path: Path) -> None:
    """No program: the chamber holds its start values until a controller writes; then its
    measured values (input registers 0 and 2) approach the setpoint, whichever controller wrote."""
    from pymodbus.client import AsyncModbusTcpClient

    from firmware_bridge.profile import gateway_controller, load_profile
    from gateway.controllers.modbus.config import ModbusControllerConfig
    from gateway.controllers.modbus.controller import ModbusController
    from gateway.controllers.scpi.config import ScpiControllerConfig
    from gateway.controllers.scpi.controller import ScpiController

    port, scpi_port = _free_port(), _free_port()
    path = tmp_path / "sim.toml"
    path.write_text(CONTROLLABLE.format(port=port, scpi_port=scpi_port))
    stop = asyncio.Event()
    task = asyncio.create_task(run_simulation(load_sim_config(path), stop))
    f32 = compile_decoder("float32")
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
    modbus = ModbusController(ModbusControllerConfig.model_validate(
        gateway_controller(load_profile("generic-chamber"), name="m", url=f"tcp://127.0.0.1:{port}")))
    scpi = ScpiController(ScpiControllerConfig.model_validate({
        "name": "s", "url": f"tcp://127.0.0.1:{scpi_port}",
        "setpoints": [{"quantity": "temperature", "write": "SOUR:TEMP {value:.2f}", "query": "SOUR:TEMP?"}]}))

    async def measured() -> tuple[float, float]:
        rr = await client.read_input_registers(0, count=4, device_id=1)
        return f32(rr.registers[:2]), f32(rr.registers[2:])

    async def approaches(t: float, rh: float) -> None:
        async with asyncio.timeout(10):
            while True:
                now = await measured()
                if abs(now[0] - t) < 0.1 and abs(now[1] - rh) < 1.0:
                    return
                await asyncio.sleep(0.02)

    try:
        async with asyncio.timeout(5):
            while not await client.connect():
                await asyncio.sleep(0.05)
        t0, rh0 = await measured()
        assert t0 == pytest.approx(20.0, abs=0.1) and rh0 == pytest.approx(50.0, abs=1.0)
        await modbus.apply({"temperature": 35.0, "humidity": 80.0})
        await approaches(35.0, 80.0)
        await scpi.apply({"temperature": 10.0})  # the other controller of the same chamber
        await approaches(10.0, 80.0)
    finally:
        client.close()
        await modbus.close()
        await scpi.close()
        stop.set()
        await task


def test_control_is_for_a_scpi_device(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(SIM.format(port=1).replace('unit_id = 2\n', 'unit_id = 2\ncontrol = true\n'))
    with pytest.raises(ConfigError, match=r"devices\[1\]: control = true is for a scpi:// device"):
        load_sim_config(path)
