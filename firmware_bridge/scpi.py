"""A virtual SCPI reference thermometer over TCP (loopback), reading a chamber's temperature;
and `ScpiChamber`, the chamber's controller driven by SCPI lines (its setpoints and run state).

    chamber = Chamber([Step(23, 45, 3600)], seed=1)
    async with ScpiThermometer(chamber, Sensor("ref", noise=0.002, resolution=0.0001)).tcp() as th:
        ... th.port ...

Commands end with a newline (a carriage return before it is ignored), headers are
case-insensitive and may be short or long (`FETC?` / `FETCH?`):

    *IDN?                      identification: manufacturer,model,serial,firmware
    FETC? READ? MEAS[:TEMP]?   the temperature [degC], e.g. +23.0412
    SYST:ERR?                  the oldest queued error, or 0,"No error"
    *RST  *CLS                 accepted (no answer); *CLS empties the error queue

Anything else queues -113,"Undefined header" and gets no answer, as a real instrument does.
With `stream` set (seconds), every connection also gets a reading line that often, without
being asked.  Faults, switched while serving:

    fault = "silent"   queries get no answer
    fault = "garble"   answers are replaced by a line that is not a number
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections import deque
from typing import Any

from firmware_bridge.chamber import Chamber, Sensor

__all__ = ["ScpiChamber", "ScpiThermometer"]

log = logging.getLogger("remotecal.firmware.scpi")

_FETCH = {"FETC?", "FETCH?", "READ?", "MEAS?", "MEASURE?", "MEAS:TEMP?", "MEASURE:TEMPERATURE?",
          "MEAS:TEMPERATURE?", "MEASURE:TEMP?"}
_ERROR = {"SYST:ERR?", "SYSTEM:ERROR?", "SYST:ERR:NEXT?", "SYSTEM:ERROR:NEXT?"}


class ScpiThermometer:
    """Serve `sensor`'s indication of `chamber`'s temperature to SCPI queries on a TCP port."""

    def __init__(self, chamber: Chamber, sensor: Sensor | None = None, *,
                 idn: str = "remotecal,VirtualThermometer,0001,1.0", stream: float | None = None,
                 digits: int = 4):
        self.chamber = chamber
        self.sensor = sensor
        self.idn = idn
        self.stream = stream
        self.digits = digits
        self.fault: str | None = None
        self.errors: deque[str] = deque(maxlen=32)
        self.queries = 0
        self.port = 0
        self._host, self._want_port = "127.0.0.1", 0
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    def tcp(self, host: str = "127.0.0.1", port: int = 0) -> ScpiThermometer:
        self._host, self._want_port = host, port
        return self

    def measure(self, now: float | None = None) -> float:
        """The indicated temperature [degC] at wall-clock `now` (default: now)."""
        t, _ = self.chamber.state(now)
        if self.sensor is not None:
            t = self.sensor.indicate(t, self.chamber.sim_time(now))
        return t

    def answer(self, command: str) -> str | None:
        """The line (without terminator) `command` gets, or None for no answer."""
        header = command.strip().upper()
        if not header:
            return None
        self.queries += 1
        if header == "*IDN?":
            return self.idn
        if header in _FETCH:
            return f"{self.measure():+.{self.digits}f}"
        if header in _ERROR:
            return self.errors.popleft() if self.errors else '0,"No error"'
        if header == "*CLS":
            self.errors.clear()
            return None
        if header == "*RST":
            return None
        self.errors.append('-113,"Undefined header"')
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pusher = asyncio.create_task(self._push(writer)) if self.stream else None
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                reply = self.answer(line.decode("ascii", errors="replace"))
                if reply is None or self.fault == "silent":
                    continue
                if self.fault == "garble":
                    reply = "#?!garbled"
                writer.write(reply.encode("ascii") + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            if pusher is not None:
                pusher.cancel()
            writer.close()

    async def _push(self, writer: asyncio.StreamWriter) -> None:
        assert self.stream is not None
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await asyncio.sleep(self.stream)
                if self.fault == "silent":
                    continue
                line = "#?!garbled" if self.fault == "garble" else f"{self.measure():+.{self.digits}f}"
                writer.write(line.encode("ascii") + b"\n")
                await writer.drain()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._want_port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("virtual SCPI thermometer on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        """Stop listening and drop every connection (as a power cut would)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)

    async def __aenter__(self) -> ScpiThermometer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


_SET = re.compile(r"^(SOUR|SOURCE):(TEMP|TEMPERATURE|HUM|HUMIDITY)(\?|\s+(\S+))$")
_OUTPUT = re.compile(r"^(OUTP|OUTPUT)(\?|\s+(\S+))$")


class ScpiChamber(ScpiThermometer):
    """A chamber's controller driven by SCPI lines (issue 15), beside the thermometer's
    commands (FETC? reads the air temperature):

        SOUR:TEMP <v>  SOUR:TEMP?     temperature setpoint [degC]   (SOURCE:TEMPERATURE ...)
        SOUR:HUM <v>   SOUR:HUM?      humidity setpoint [%rh]       (SOURCE:HUMIDITY ...)
        OUTP ON|OFF|1|0  OUTP?        run / stop (answers 1 or 0)
        MEAS:HUM?                     the air humidity [%rh]

    A setpoint starts the chamber's first-order approach from its state at that instant
    (`Chamber.command`).  One outside `temperature_range` / `humidity_range` is clamped to it
    and queues -222,"Data out of range", as a controller that takes what it can does; a
    value that is not a number queues -104,"Data type error" and changes nothing.
    """

    def __init__(self, chamber: Chamber, sensor: Sensor | None = None, *,
                 idn: str = "remotecal,VirtualChamber,0001,1.0",
                 temperature_range: tuple[float, float] = (-40.0, 180.0),
                 humidity_range: tuple[float, float] = (10.0, 98.0), **kw: Any):
        super().__init__(chamber, sensor, idn=idn, **kw)
        self.ranges = {"temperature": temperature_range, "humidity": humidity_range}

    def held(self) -> tuple[float, float]:
        return self.chamber.control or self.chamber.setpoint(self.chamber.sim_time())

    def answer(self, command: str) -> str | None:
        header = command.strip().upper()
        if m := _SET.match(header):
            quantity = "temperature" if m.group(2).startswith("TEMP") else "humidity"
            self.queries += 1
            if m.group(3) == "?":
                t, rh = self.held()
                return f"{t if quantity == 'temperature' else rh:+.3f}"
            self._set(quantity, m.group(4))
            return None
        if m := _OUTPUT.match(header):
            self.queries += 1
            if m.group(2) == "?":
                return "1" if self.chamber.running else "0"
            if m.group(3) in ("ON", "1", "OFF", "0"):
                self.chamber.command(running=m.group(3) in ("ON", "1"))
            else:
                self.errors.append('-104,"Data type error"')
            return None
        if header in ("MEAS:HUM?", "MEASURE:HUMIDITY?", "MEAS:HUMIDITY?", "MEASURE:HUM?"):
            self.queries += 1
            return f"{self.chamber.state()[1]:+.{self.digits}f}"
        return super().answer(command)

    def _set(self, quantity: str, text: str) -> None:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.errors.append('-104,"Data type error"')
            return
        lo, hi = self.ranges[quantity]
        if not lo <= value <= hi:
            self.errors.append('-222,"Data out of range"')
            value = min(hi, max(lo, value))
        if quantity == "temperature":
            self.chamber.command(temperature=value)
        else:
            self.chamber.command(humidity=value)
