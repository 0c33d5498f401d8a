"""A Modbus device's faults in the log, as a user reads it: `remotecal gateway run` logs each
device's state once per change (no pymodbus lines: no "No response received" at every poll, no
hex dumps, no "Repeating...."), and the simulator answers a request for a unit it does not
serve as a real device does (TCP: exception 0x0B; a serial line: silence), never with a
traceback."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType

from firmware_bridge.modbus import DeviceImage, ModbusServer
from tests.gateway.harness import GatewayProcess, config_text
from tests.gateway.test_end_to_end import wait_until
from tests.servers.influx import free_port

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not


class _ServerThread:
    """A firmware_bridge ModbusServer on its own event loop, so a test can flip its faults."""

    def __init__(self, images: list[DeviceImage]):
        self.server = ModbusServer(images).tcp()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ModbusServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def device() -> Iterator[tuple[ModbusServer, DeviceImage]]:
    image = DeviceImage(1)
    image.set("holding", 0, 21.5, "float32")
    with _ServerThread([image]) as server:
        yield server, image


def _source(name: str, port: int, unit: int) -> dict[str, object]:
    return {"name": name, "url": f"tcp://127.0.0.1:{port}", "unit_id": unit, "interval": "200ms",
            "timeout": "300ms", "registers": [{"channel": f"{name}-t", "quantity": "temperature", "unit": "degC",
                                               "role": "dut", "address": 0, "type": "float32"}]}


def test_a_device_fault_is_one_line_per_change_and_pymodbus_says_nothing(
        tmp_path: Path, device: tuple[ModbusServer, DeviceImage]) -> None:
    server, image = device
    cfg = config_text({
        "gateway": {"site": "s", "id": "g", "run": "R", "data_dir": "data", "log_level": "debug",
                    "summary_interval": "0s"},
        "sources": {"modbus": [_source("right", server.port, 1), _source("wrong", server.port, 7)]},
        "sinks": {"local": [{"name": "store", "path": str(tmp_path / "store.db")}]},
    })
    with GatewayProcess(tmp_path / "gw", cfg) as gw:
        wait_until(lambda: "'right' (tcp://" in gw.log() and "'wrong' unreachable" in gw.log(), 30,
                   "both devices' first state", gw)
        image.fault = "silent"
        wait_until(lambda: "'right' unreachable" in gw.log(), 30, "the silent device", gw)
        silent_from = server.requests
        wait_until(lambda: server.requests >= silent_from + 4, 30, "polls of the silent device", gw)
        image.fault = None
        wait_until(lambda: "'right' recovered" in gw.log(), 30, "the device back", gw)
        assert gw.terminate() == 0
    log = gw.log()
    lines = log.splitlines()
    assert [line.split(": ", 1)[1] for line in lines if "modbus device 'wrong'" in line] == [
        "modbus device 'wrong' unreachable: unit 7 does not answer there - the server says: gateway target "
        "device failed to respond (exception 11; is unit_id right?)"]
    right = [line.split(": ", 1)[1] for line in lines if "modbus device 'right'" in line]
    assert right[0].startswith("modbus device 'right' (tcp://127.0.0.1:") and right[0].endswith("unit 1) answering")
    assert right[1:] == ["modbus device 'right' unreachable: no answer within 0.3 s",
                         "modbus device 'right' recovered"]
    for chatter in ("pymodbus", "No response", "Repeating", ">>>>>", "0x", "Traceback"):
        assert chatter not in log, chatter


def test_the_simulator_answers_a_wrong_unit_over_tcp_with_exception_11_not_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    sim = tmp_path / "sim.toml"
    sim.write_text(f"""
[chamber]
seed = 1
[[chamber.steps]]
temperature = 23.0
humidity = 45.0
duration = "1h"
[[devices]]
name = "ref"
profile = "generic-pt100"
listen = "tcp://127.0.0.1:{port}"
""")
    proc = subprocess.Popen([sys.executable, "-m", "remotecal", "simulate", "-c", str(sim)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        async def ask() -> list[int]:
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
            deadline = time.monotonic() + 30
            while not await client.connect():
                assert time.monotonic() < deadline, "the simulator did not listen"
                await asyncio.sleep(0.1)
            try:
                codes = []
                for _ in range(3):
                    rr = await client.read_input_registers(0, count=2, device_id=7)
                    codes.append(int(getattr(rr, "exception_code", 0)))
                good = await client.read_input_registers(0, count=2, device_id=1)
                assert not good.isError(), good
                return codes
            finally:
                client.close()

        assert asyncio.run(ask()) == [11, 11, 11]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out and "pymodbus" not in out and "0x0 " not in out, out
    warned = [line for line in out.splitlines() if "a request for unit 7" in line]
    assert len(warned) == 1, out
    assert warned[0].endswith(f"127.0.0.1:{port}: a request for unit 7, which is not served here (units 1): "
                              "answered with exception 0x0B, gateway target device failed to respond")


async def test_a_wrong_unit_on_a_serial_line_gets_no_answer(
        pty_pair: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    client_end, server_end = pty_pair
    image = DeviceImage(1)
    image.set("holding", 0, 5)
    async with ModbusServer([image]).rtu(server_end, baudrate=115200) as server:
        client = AsyncModbusSerialClient(client_end, framer=FramerType.RTU, baudrate=115200, timeout=0.3, retries=0)
        assert await client.connect()
        try:
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(0, count=1, device_id=9)
            good = await client.read_holding_registers(0, count=1, device_id=1)
            assert good.registers == [5]
        finally:
            client.close()
    assert server.requests == 1, "only unit 1's request reached a device"
    assert [r.getMessage() for r in caplog.records if r.name == "remotecal.firmware.modbus"] == [
        f"{server_end}: a request for unit 9, which is not served here (units 1): not answered, as on a "
        "shared serial line"]
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
