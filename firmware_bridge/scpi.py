"""A virtual SCPI reference thermometer over TCP (loopback), reading a chamber's temperature.

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
from collections import deque

from firmware_bridge.chamber import Chamber, Sensor

__all__ = ["ScpiThermometer"]

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
