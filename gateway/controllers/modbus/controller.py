"""A Modbus chamber controller: write each setpoint, read it back, compare.

A setpoint value becomes raw = (value - offset) / scale, rounded for the integer types
(refused when out of the type's range), encoded with the type and byte order the Modbus
source decodes (`gateway.sources.modbus.decode`), written (function 6 for one register, 16
for more or with `write_multiple`), read back (function 3) and decoded like a source
reading: the value read back must be the value the written registers stand for (within
`tolerance`).  A device that
clamps, rounds differently or ignores the write is caught there.  The run flag is a coil
(function 5, read back with 1) or a holding register.

Every failure is a `ControllerError` whose reason names the setpoint and its register (the
run engine puts the controller's name before it); a link that dropped since the last step
(a TCP connection closed by the device when idle) is reopened once before a write is given
up.
"""

from __future__ import annotations

import asyncio
import logging
import math
from urllib.parse import urlsplit

from gateway.config_types import serial_settings
from gateway.controllers.modbus.config import ModbusControllerConfig, SetpointConfig
from gateway.controllers.setpoints import check_setpoints, confirm
from gateway.errors import ControllerError
from gateway.sources.modbus.decode import Decoder, compile_decoder, encode_value
from gateway.sources.modbus.source import LinkDown, ModbusError, ModbusLink

__all__ = ["ModbusController", "encode_setpoint"]

log = logging.getLogger("remotecal.controller.modbus")



def encode_setpoint(sp: SetpointConfig, value: float) -> list[int]:
    """The registers standing for `value` (scale/offset inverted); ValueError when it cannot be."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    raw = (value - sp.offset) / sp.scale
    limits = sp.raw_range()
    if limits is not None:
        raw = round(raw)
        if not limits[0] <= raw <= limits[1]:
            raise ValueError(f"{value:g} is raw {raw} with scale {sp.scale:g} and offset {sp.offset:g}, "
                             f"outside a {sp.type}'s {limits[0]}..{limits[1]}")
    elif sp.type == "float32" and abs(raw) > 3.4e38:
        raise ValueError(f"{value:g} is beyond a float32")
    return encode_value(raw, sp.type, sp.byte_order)


class ModbusController:
    """`[[controllers.modbus]]`: see the module docstring and gateway.controllers.Controller."""

    def __init__(self, cfg: ModbusControllerConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.quantities = cfg.quantities()
        self._setpoints: dict[str, SetpointConfig] = {s.quantity: s for s in cfg.setpoints}
        self._decode: dict[str, Decoder] = {
            s.quantity: compile_decoder(s.type, s.byte_order, s.scale, s.offset) for s in cfg.setpoints}
        self.link = ModbusLink(cfg.url, cfg.timeout, self._pause(cfg))
        self._lock = asyncio.Lock()
        """One apply / set_running at a time: a write and its read-back are never interleaved
        with another's (an abort's stop during a step's setpoints)."""

    @staticmethod
    def _pause(cfg: ModbusControllerConfig) -> float:
        if urlsplit(cfg.url).scheme != "rtu":
            return 0.0
        if cfg.inter_frame_pause is not None:
            return cfg.inter_frame_pause
        baud = int(serial_settings(cfg.url, 19200)[1]["baudrate"])
        return max(3.5 * 11 / baud, 0.00175)

    def _fail(self, what: str, exc: ModbusError) -> ControllerError:
        return ControllerError(f"{what}: {exc.reason}")

    async def _write(self, kind: str, address: int, words: list[int], what: str) -> None:
        for attempt in (1, 2):
            try:
                await self.link.write(self.cfg.unit_id, kind, address, words,
                                      multiple=self.cfg.write_multiple)
                return
            except LinkDown as exc:
                self.link.close()
                if attempt == 2:
                    raise self._fail(f"writing {what}", exc) from None
                log.info("controller %s: %s; reconnecting once", self.name, exc.reason)
            except ModbusError as exc:
                raise self._fail(f"writing {what}", exc) from None

    async def _read(self, kind: str, address: int, count: int, what: str) -> list[int]:
        try:
            words, _ = await self.link.read(self.cfg.unit_id, kind, address, count)
        except ModbusError as exc:
            if isinstance(exc, LinkDown):
                self.link.close()
            raise self._fail(f"reading {what} back", exc) from None
        return words

    async def apply(self, setpoints: dict[str, float]) -> None:
        check_setpoints(setpoints, self._setpoints)
        encoded: dict[str, list[int]] = {}
        for q, value in setpoints.items():  # every value checked before anything is written
            try:
                encoded[q] = encode_setpoint(self._setpoints[q], value)
            except ValueError as exc:
                raise ControllerError(f"{q} setpoint {exc}") from None
        async with self._lock:
            for q, words in encoded.items():
                await self._write_setpoint(q, words)

    async def _write_setpoint(self, q: str, words: list[int]) -> None:
        sp = self._setpoints[q]
        what = f"the {q} setpoint (holding {sp.address})"
        await self._write("holding", sp.address, words, what)
        written = self._decode[q](words)

        async def read_back() -> float:
            return self._decode[q](await self._read("holding", sp.address, sp.width, what))

        back = await confirm(read_back, written, sp.tolerance, self.cfg.confirm_timeout)
        if not abs(back - written) <= sp.tolerance:
            raise ControllerError(f"{q} setpoint read back {back:g}, "
                                  f"written {written:g} (holding {sp.address})")
        log.info("controller %s: %s setpoint %g written and read back", self.name, q, written)

    async def set_running(self, on: bool) -> None:
        run = self.cfg.run
        if run is None:
            return  # a controller without a run flag runs whenever it is powered
        value = (run.on if on else run.off) if run.kind == "holding" else int(on)
        what = f"the run flag ({run.kind} {run.address}) {'on' if on else 'off'}"
        async with self._lock:
            await self._write(run.kind, run.address, [value], what)
            back = (await self._read(run.kind, run.address, 1, what))[0]
        if back != value:
            raise ControllerError(f"run flag read back {back}, written {value} "
                                  f"({run.kind} {run.address})")

    async def close(self) -> None:
        self.link.close()
