"""[[controllers.modbus]] against the real pymodbus server of firmware_bridge (loopback, a free
port): every type and byte order round-trips, a clamped or refused write is a ControllerError,
the run flag reads back, and the virtual chamber approaches a written setpoint."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from firmware_bridge.chamber import Chamber
from firmware_bridge.instrument import VirtualInstrument
from firmware_bridge.modbus import DeviceImage, ModbusServer
from firmware_bridge.profile import gateway_controller, load_profile
from gateway.controllers import ControllerError
from gateway.controllers.modbus.config import ModbusControllerConfig
from gateway.controllers.modbus.controller import ModbusController, encode_setpoint

TYPES = ["int16", "uint16", "int32", "uint32", "float32", "float64"]
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]


def _cfg(url: str, setpoints: list[dict[str, Any]], **kw: Any) -> ModbusControllerConfig:
    return ModbusControllerConfig.model_validate({"name": "ctl", "url": url, "timeout": 1.0,
                                                  "setpoints": setpoints, **kw})


@pytest.fixture
async def chamber_server() -> AsyncIterator[tuple[Chamber, DeviceImage, str]]:
    chamber = Chamber([], start_temperature=20.0, start_humidity=50.0, oscillation=0.0, noise=0.0,
                      tau_s=300.0, speed=60.0)
    image = VirtualInstrument(chamber, load_profile("generic-chamber")).image()
    async with ModbusServer([image]).tcp() as server:
        yield chamber, image, f"tcp://127.0.0.1:{server.port}"


@pytest.mark.parametrize("byte_order", ORDERS)
@pytest.mark.parametrize("type_", TYPES)
async def test_every_type_and_byte_order_round_trips(type_: str, byte_order: str) -> None:
    got: list[float] = []
    image = DeviceImage(1)
    # the device decodes what it receives with the Modbus source's codec and keeps the words
    image.on_write("holding", 10, got.append, type_, byte_order, scale=0.1, offset=-5.0)
    async with ModbusServer([image]).tcp() as server:
        ctl = ModbusController(_cfg(f"tcp://127.0.0.1:{server.port}", [
            {"quantity": "temperature", "address": 10, "type": type_, "byte_order": byte_order,
             "scale": 0.1, "offset": -5.0}]))
        try:
            await ctl.apply({"temperature": 23.4})
        finally:
            await ctl.close()
    assert got == [pytest.approx(23.4, abs=1e-5)]  # raw (23.4 + 5) / 0.1 = 284


def test_the_words_on_the_wire_are_the_byte_order_named() -> None:
    def sp(type_: str, order: str, scale: float = 1.0) -> Any:
        return _cfg("tcp://127.0.0.1:1", [{"quantity": "temperature", "address": 0, "type": type_,
                                            "byte_order": order, "scale": scale}]).setpoints[0]
    a, b = struct.unpack(">HH", struct.pack(">f", 23.5))  # 0x41BC, 0x0000
    assert encode_setpoint(sp("float32", "ABCD"), 23.5) == [a, b]
    assert encode_setpoint(sp("float32", "CDAB"), 23.5) == [b, a]
    assert encode_setpoint(sp("float32", "BADC"), 23.5) == [0xBC41, 0]
    assert encode_setpoint(sp("float32", "DCBA"), 23.5) == [0, 0xBC41]
    assert encode_setpoint(sp("int16", "ABCD", 0.1), -12.3) == [(-123) & 0xFFFF]
    assert encode_setpoint(sp("uint32", "CDAB"), 70000) == [70000 & 0xFFFF, 70000 >> 16]
    with pytest.raises(ValueError, match=r"outside a int16's -32768\.\.32767"):
        encode_setpoint(sp("int16", "ABCD", 0.001), 40.0)
    with pytest.raises(ValueError, match="outside a uint16"):
        encode_setpoint(sp("uint16", "ABCD"), -1.0)


async def test_a_write_is_read_back_and_the_chamber_approaches_it(
        chamber_server: tuple[Chamber, DeviceImage, str]) -> None:
    chamber, _, url = chamber_server
    profile = load_profile("generic-chamber")
    ctl = ModbusController(ModbusControllerConfig.model_validate(gateway_controller(profile, name="c", url=url)))
    try:
        before = chamber.mean_state(chamber.sim_time())
        await ctl.apply({"temperature": 30.0, "humidity": 70.5})
        await ctl.set_running(True)
    finally:
        await ctl.close()
    assert chamber.control == (30.0, 70.5) and chamber.running
    assert (chamber.commands[0].t0, chamber.commands[0].rh0) == before  # from the state it was in
    first, start = chamber.commands[0], chamber.commands[-1]
    moved = 30.0 - (30.0 - first.t0) * math.exp(-(start.sim_t - first.sim_t) / chamber.tau_s)
    assert start.t0 == pytest.approx(moved, abs=1e-9)  # the humidity write: from where the temperature got to
    t0 = chamber.t0 + start.sim_t / chamber.speed  # the wall-clock instant of the last write
    one_tau = t0 + chamber.tau_s / chamber.speed
    t, rh = chamber.state(one_tau)  # one time constant later: 63 % of the way
    assert t == pytest.approx(30.0 - (30.0 - start.t0) * 0.36787944, abs=1e-6)
    assert rh == pytest.approx(70.5 - (70.5 - start.rh0) * 0.36787944, abs=1e-6)
    assert chamber.state(t0 + 10 * chamber.tau_s / chamber.speed) == pytest.approx((30.0, 70.5), abs=1e-3)


async def test_a_clamped_write_is_a_controller_error(chamber_server: tuple[Chamber, DeviceImage, str]) -> None:
    chamber, _, url = chamber_server
    ctl = ModbusController(ModbusControllerConfig.model_validate(
        gateway_controller(load_profile("generic-chamber"), name="chamber", url=url)))
    try:
        with pytest.raises(ControllerError) as exc:
            await ctl.apply({"humidity": 99.5})  # the controller holds at most 98 %rh
    finally:
        await ctl.close()
    assert exc.value.reason == "humidity setpoint read back 98, written 99.5 (holding 102)"
    assert chamber.control is not None and chamber.control[1] == 98.0


async def test_the_run_coil_and_a_run_register_read_back(chamber_server: tuple[Chamber, DeviceImage, str]) -> None:
    chamber, _, url = chamber_server
    ctl = ModbusController(_cfg(url, [{"quantity": "temperature", "address": 100}], run={"address": 0}))
    try:
        await ctl.set_running(False)
        assert not chamber.running
        await ctl.set_running(True)
        assert chamber.running
    finally:
        await ctl.close()
    image = DeviceImage(1)
    states: list[float] = []
    image.on_write("holding", 5, states.append)
    async with ModbusServer([image]).tcp() as server:
        ctl = ModbusController(_cfg(f"tcp://127.0.0.1:{server.port}", [{"quantity": "temperature", "address": 0}],
                                    run={"kind": "holding", "address": 5, "on": 3, "off": 7}))
        try:
            await ctl.set_running(True)
            await ctl.set_running(False)
        finally:
            await ctl.close()
    assert states == [3.0, 7.0]


async def test_refused_out_of_range_unknown_and_unreachable(
        chamber_server: tuple[Chamber, DeviceImage, str]) -> None:
    _, image, url = chamber_server
    ctl = ModbusController(_cfg(url, [
        {"quantity": "temperature", "address": 100, "min": 0.0, "max": 50.0},
        {"quantity": "humidity", "address": 110, "type": "int16"}]))  # no such register
    try:
        with pytest.raises(ControllerError, match=r"^temperature setpoint 60 is outside its "
                                                  r"range 0\.\.50$"):
            await ctl.apply({"humidity": 50.0, "temperature": 60.0})
        assert image.writes == 0  # checked before anything was written
        with pytest.raises(ControllerError, match=r"writing the humidity setpoint \(holding 110\): exception 2 "
                                                  r"\(illegal data address\)"):
            await ctl.apply({"humidity": 50.0})
        with pytest.raises(ControllerError, match="writes no pressure setpoint"):
            await ctl.apply({"pressure": 1.0})
    finally:
        await ctl.close()
    image.fault = "silent"
    ctl = ModbusController(_cfg(url, [{"quantity": "temperature", "address": 100}], timeout=0.2))
    try:
        with pytest.raises(ControllerError, match=r"writing the temperature setpoint \(holding 100\): "
                                                  r"no answer within 0.2 s"):
            await ctl.apply({"temperature": 21.0})
    finally:
        await ctl.close()


async def test_a_dropped_connection_is_reopened_once() -> None:
    image = DeviceImage(1)
    got: list[float] = []
    image.on_write("holding", 0, got.append, "float32")
    async with ModbusServer([image]).tcp() as server:
        port = server.port
        ctl = ModbusController(_cfg(f"tcp://127.0.0.1:{port}", [{"quantity": "temperature", "address": 0}]))
        await ctl.apply({"temperature": 20.0})
    async with ModbusServer([image]).tcp(port=port):  # the device restarted: the old socket is dead
        try:
            await ctl.apply({"temperature": 21.0})
        finally:
            await ctl.close()
    assert got == [20.0, 21.0]


def test_config_problems_are_named() -> None:
    with pytest.raises(ValidationError) as exc:
        _cfg("tcp://127.0.0.1:1", [{"quantity": "temperature", "address": 0, "scale": 0},
                                    {"quantity": "temperature", "address": 0}])
    text = str(exc.value)
    assert "must be a finite number other than 0" in text
    with pytest.raises(ValidationError, match=r"setpoints\[1\].address: registers 1..2 overlap setpoints\[0\]"):
        _cfg("tcp://127.0.0.1:1", [{"quantity": "temperature", "address": 0},
                                    {"quantity": "humidity", "address": 1}])
    with pytest.raises(ValidationError, match="a coil is on = 1, off = 0"):
        _cfg("tcp://127.0.0.1:1", [{"quantity": "temperature", "address": 0}], run={"address": 0, "on": 2})


@pytest.mark.parametrize(("confirm", "ok"), [(0.0, False), (2.0, True)])
async def test_a_controller_that_takes_the_value_a_moment_later(confirm: float, ok: bool) -> None:
    """The device shows the old setpoint for its next two reads after a write (a scan cycle)."""
    held = {"value": 20.0, "pending": 20.0, "late": 0}

    def write(v: float) -> None:
        held["pending"], held["late"] = v, 2

    def read() -> float:
        if held["late"]:
            held["late"] -= 1
        else:
            held["value"] = held["pending"]
        return held["value"]

    image = DeviceImage(1)
    image.on_write("holding", 0, write, "float32")
    image.bind("holding", 0, read, "float32")
    async with ModbusServer([image]).tcp() as server:
        ctl = ModbusController(_cfg(f"tcp://127.0.0.1:{server.port}", [{"quantity": "temperature", "address": 0}],
                                    confirm_timeout=confirm))
        try:
            if ok:
                await ctl.apply({"temperature": 25.0})
            else:
                with pytest.raises(ControllerError, match="temperature setpoint read back 20, written 25"):
                    await ctl.apply({"temperature": 25.0})
        finally:
            await ctl.close()


async def test_write_multiple_for_a_device_without_function_6() -> None:
    got: list[float] = []
    image = DeviceImage(1, functions={6})  # answers "illegal function" to Write Single Register
    image.on_write("holding", 0, got.append, "int16", scale=0.1)
    async with ModbusServer([image]).tcp() as server:
        setpoints = [{"quantity": "humidity", "address": 0, "type": "int16", "scale": 0.1}]
        for multiple in (False, True):
            ctl = ModbusController(_cfg(f"tcp://127.0.0.1:{server.port}", setpoints, write_multiple=multiple))
            try:
                if multiple:
                    await ctl.apply({"humidity": 45.5})
                else:
                    with pytest.raises(ControllerError, match=r"exception 1 \(illegal function\)"):
                        await ctl.apply({"humidity": 45.5})
            finally:
                await ctl.close()
    assert got == [pytest.approx(45.5)]
