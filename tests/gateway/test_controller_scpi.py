"""[[controllers.scpi]] against firmware_bridge's SCPI chamber over TCP (loopback, a free port):
commands are sent and read back, a clamped value or a queued error is a ControllerError, the
run state reads back, and a silent link fails within the timeout and recovers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from firmware_bridge.chamber import Chamber
from firmware_bridge.scpi import ScpiChamber
from gateway.controllers import ControllerError
from gateway.controllers.scpi.config import ScpiControllerConfig, render
from gateway.controllers.scpi.controller import ScpiController

SETPOINTS = [{"quantity": "temperature", "write": "SOUR:TEMP {value:.2f}", "query": "SOUR:TEMP?"},
             {"quantity": "humidity", "write": "SOUR:HUM {value:.1f}", "query": "SOUR:HUM?"}]


def _cfg(port: int, **kw: Any) -> ScpiControllerConfig:
    return ScpiControllerConfig.model_validate({"name": "ctl", "url": f"tcp://127.0.0.1:{port}", "timeout": 1.0,
                                                "setpoints": SETPOINTS} | kw)


@pytest.fixture
async def scpi() -> AsyncIterator[ScpiChamber]:
    chamber = Chamber([], start_temperature=20.0, start_humidity=50.0, oscillation=0.0, noise=0.0, speed=60.0)
    async with ScpiChamber(chamber) as server:
        yield server


async def test_setpoints_are_sent_read_back_and_start_the_approach(scpi: ScpiChamber) -> None:
    ctl = ScpiController(_cfg(scpi.port, error_query="SYST:ERR?",
                              run={"on": "OUTP ON", "off": "OUTP OFF", "query": "OUTP?"}))
    try:
        await ctl.apply({"temperature": 23.456, "humidity": 45.0})  # sent as 23.46: read back 23.460
        await ctl.set_running(False)
        assert not scpi.chamber.running
        await ctl.set_running(True)
    finally:
        await ctl.close()
    assert scpi.chamber.control == (23.46, 45.0) and scpi.chamber.running
    c = scpi.chamber
    assert c.state(c.t0 + 20 * c.tau_s / c.speed) == pytest.approx((23.46, 45.0), abs=1e-3)


async def test_a_clamped_setpoint_fails_by_read_back_or_by_the_error_queue(scpi: ScpiChamber) -> None:
    ctl = ScpiController(_cfg(scpi.port))
    try:
        with pytest.raises(ControllerError) as exc:
            await ctl.apply({"humidity": 99.5})  # the chamber holds at most 98 %rh
    finally:
        await ctl.close()
    assert exc.value.reason == "humidity setpoint read back 98, sent 99.5 ('SOUR:HUM 99.5')"
    scpi.errors.clear()
    ctl = ScpiController(_cfg(scpi.port, error_query="SYST:ERR?"))
    try:
        with pytest.raises(ControllerError) as exc:
            await ctl.apply({"temperature": 200.0})
    finally:
        await ctl.close()
    assert exc.value.reason == ("the temperature setpoint: 'SOUR:TEMP 200.00' refused: "
                                '-222,"Data out of range"')


async def test_out_of_range_and_unknown_setpoints_send_nothing(scpi: ScpiChamber) -> None:
    setpoints = [dict(SETPOINTS[0], min=0.0, max=50.0)]
    ctl = ScpiController(_cfg(scpi.port, setpoints=setpoints))
    try:
        with pytest.raises(ControllerError, match=r"temperature setpoint 60 is outside its range 0\.\.50"):
            await ctl.apply({"temperature": 60.0})
        with pytest.raises(ControllerError, match="writes no humidity setpoint"):
            await ctl.apply({"humidity": 50.0})
    finally:
        await ctl.close()
    assert scpi.queries == 0 and scpi.chamber.control is None


async def test_silence_fails_within_the_timeout_and_the_link_recovers(scpi: ScpiChamber) -> None:
    ctl = ScpiController(_cfg(scpi.port, timeout=0.2))
    try:
        scpi.fault = "silent"
        with pytest.raises(ControllerError, match=r"reading the temperature setpoint back: no answer to "
                                                  r"'SOUR:TEMP\?' within 0.2 s"):
            await ctl.apply({"temperature": 25.0})
        scpi.fault = "garble"
        with pytest.raises(ControllerError, match=r"'SOUR:TEMP\?' answered '#\?!garbled': no number"):
            await ctl.apply({"temperature": 25.0})
        scpi.fault = None
        await ctl.apply({"temperature": 26.0})
    finally:
        await ctl.close()
    assert scpi.chamber.control == (26.0, 50.0)


async def test_nothing_listening_is_a_controller_error() -> None:
    async with ScpiChamber(Chamber([])) as server:
        port = server.port
    ctl = ScpiController(_cfg(port))
    with pytest.raises(ControllerError, match=f"the temperature setpoint: cannot connect to "
                                              f"tcp://127.0.0.1:{port}"):
        await ctl.apply({"temperature": 25.0})
    await ctl.close()


def test_render_and_templates() -> None:
    assert render("SOUR:TEMP {value:.2f}", 23.456) == ("SOUR:TEMP 23.46", 23.46)
    assert render("T={value:+08.3f};{{x}}", -5.0) == ("T=-005.000;{x}", -5.0)
    for bad, why in [("SOUR:TEMP {val}", "holds {value}"), ("SOUR:TEMP {value:.2f} {value}", "holds {value}"),
                     ("SOUR:TEMP", "holds {value}"), ("SOUR:TEMP {value:d}", "cannot format a number")]:
        with pytest.raises(ValidationError, match=why):
            _cfg(1, setpoints=[dict(SETPOINTS[0], write=bad)])
    with pytest.raises(ValidationError, match=r"needs a named group \(\?P<value>"):
        _cfg(1, setpoints=[dict(SETPOINTS[0], pattern="[0-9]+")])


class _LateChamber(ScpiChamber):
    """Answers SOUR:TEMP? with the old setpoint twice after each SOUR:TEMP."""

    late = 0
    shown = 20.0

    def answer(self, command: str) -> str | None:
        header = command.strip().upper()
        if header.startswith("SOUR:TEMP "):
            self.late = 2
        if header == "SOUR:TEMP?":
            if self.late:
                self.late -= 1
                return f"{self.shown:+.3f}"
            self.shown = self.held()[0]
        return super().answer(command)


@pytest.mark.parametrize(("confirm", "ok"), [(0.0, False), (2.0, True)])
async def test_a_chamber_that_takes_the_value_a_moment_later(confirm: float, ok: bool) -> None:
    async with _LateChamber(Chamber([], start_temperature=20.0)) as server:
        ctl = ScpiController(_cfg(server.port, confirm_timeout=confirm))
        try:
            if ok:
                await ctl.apply({"temperature": 25.0})
            else:
                with pytest.raises(ControllerError, match="temperature setpoint read back 20, sent 25"):
                    await ctl.apply({"temperature": 25.0})
        finally:
            await ctl.close()
