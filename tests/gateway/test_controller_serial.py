"""Controllers over serial lines (a socat pty pair): [[controllers.modbus]] over RTU against
the pymodbus server of the controllable chamber, and [[controllers.scpi]] over serial:// against
the SCPI chamber's command set answering on the other end."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
import serial

from firmware_bridge.chamber import Chamber
from firmware_bridge.instrument import VirtualInstrument
from firmware_bridge.modbus import ModbusServer
from firmware_bridge.profile import gateway_controller, load_profile
from firmware_bridge.scpi import ScpiChamber
from gateway.controllers import ControllerError
from gateway.controllers.modbus.config import ModbusControllerConfig
from gateway.controllers.modbus.controller import ModbusController
from gateway.controllers.scpi.config import ScpiControllerConfig
from gateway.controllers.scpi.controller import ScpiController
from tests.gateway.modbus import conftest as _modbus

pty_pair = _modbus.pty_pair


def _chamber() -> Chamber:
    return Chamber([], oscillation=0.0, noise=0.0, speed=60.0)


async def test_modbus_rtu_writes_and_reads_back(pty_pair: tuple[str, str]) -> None:
    client_end, server_end = pty_pair
    chamber = _chamber()
    image = VirtualInstrument(chamber, load_profile("generic-chamber"), unit_id=3).image()
    async with ModbusServer([image]).rtu(server_end, baudrate=115200):
        block = gateway_controller(load_profile("generic-chamber"), name="c", unit_id=3,
                                   url=f"rtu://{client_end}?baudrate=115200")
        ctl = ModbusController(ModbusControllerConfig.model_validate(block))
        try:
            await ctl.apply({"temperature": -12.5, "humidity": 33.3})
            await ctl.set_running(False)
            with pytest.raises(ControllerError, match="temperature setpoint read back 180, written 200"):
                await ctl.apply({"temperature": 200.0})
        finally:
            await ctl.close()
    assert chamber.control == pytest.approx((180.0, 33.3)) and not chamber.running


@contextlib.contextmanager
def _serial_chamber(path: str, device: ScpiChamber) -> Iterator[None]:
    """Answer SCPI lines on a serial port with `device`'s command set (a thread)."""
    port = serial.Serial(path, baudrate=9600, timeout=0.05)
    stop = threading.Event()

    def serve() -> None:
        buf = b""
        while not stop.is_set():
            buf += port.read(64)
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                reply = device.answer(line.decode("ascii"))
                if reply is not None:
                    port.write(reply.encode("ascii") + b"\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        port.close()


async def test_scpi_over_a_serial_port(pty_pair: tuple[str, str]) -> None:
    client_end, server_end = pty_pair
    device = ScpiChamber(_chamber())
    cfg = ScpiControllerConfig.model_validate({
        "name": "s", "url": f"serial://{client_end}?baudrate=9600", "terminator": "\r\n", "timeout": 2.0,
        "error_query": "SYST:ERR?",
        "setpoints": [{"quantity": "temperature", "write": "SOUR:TEMP {value:.2f}", "query": "SOUR:TEMP?"},
                      {"quantity": "humidity", "write": "SOUR:HUM {value:.1f}", "query": "SOUR:HUM?"}],
        "run": {"on": "OUTP ON", "off": "OUTP OFF", "query": "OUTP?"}})
    with _serial_chamber(server_end, device):
        ctl = ScpiController(cfg)
        try:
            await ctl.apply({"temperature": 35.0, "humidity": 60.0})
            await ctl.set_running(True)
            with pytest.raises(ControllerError, match=r"'SOUR:HUM 5\.0' refused: -222"):
                await ctl.apply({"humidity": 5.0})
        finally:
            await ctl.close()
    assert device.chamber.control == (35.0, 10.0) and device.chamber.running
