"""Virtual Modbus devices served over TCP (loopback) or RTU (a serial port, e.g. a socat pty).

A `DeviceImage` is what one unit answers: static words, and live values computed at the
moment a request arrives (from a chamber model, say), each encoded with its type, byte
order, scale and offset.  Addresses it does not define answer "illegal data address", as a
real device's gaps do.  A device is read-only (writes answer "illegal function") unless it
declares writable holding registers or coils (`DeviceImage.writable`: a controller's
setpoints and run flag): a write must cover whole values of those, or it answers "illegal
data address" and changes nothing; each value written is decoded with its type, byte order,
scale and offset and handed to its setter (which may hold something else: a clamp).
Faults are switched on per unit while the server runs:

    refused   a set of (kind, address) whose reads answer "illegal data address"
    fault     "silent": no answer at all; "garble": the answer's last byte flipped
              (a CRC error on RTU, a wrong value or framing error on TCP)

`ModbusServer` runs one pymodbus server for one or more units (several units share a
serial line as they would on RS-485).  A request for a unit it does not serve is answered as a
real device answers it: over TCP with the exception "gateway target device failed to respond"
(0x0B), on a serial line not at all (another unit on the bus may be the one asked); one
warning per unit id says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from gateway.sources.modbus.decode import compile_decoder, encode_value

__all__ = ["DeviceImage", "ModbusServer"]

log = logging.getLogger("remotecal.firmware.modbus")

_KIND_OF_FUNCTION = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 15: "coil",
                     6: "holding", 16: "holding"}
_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
_BITS = ("coil", "discrete")


@dataclass
class _Live:
    address: int
    getter: Callable[[], float]
    type: str
    byte_order: str
    scale: float
    offset: float


@dataclass
class _Writable:
    address: int
    width: int
    decode: Callable[[list[int]], float]
    setter: Callable[[float], None]


@dataclass
class DeviceImage:
    """The memory of one Modbus unit."""

    unit_id: int = 1
    words: dict[str, dict[int, int]] = field(
        default_factory=lambda: {"holding": {}, "input": {}, "coil": {}, "discrete": {}})
    live: dict[str, list[_Live]] = field(default_factory=lambda: {"holding": [], "input": []})
    refused: set[tuple[str, int]] = field(default_factory=set)
    fault: str | None = None
    writable: dict[str, list[_Writable]] = field(default_factory=lambda: {"holding": [], "coil": []})
    writes: int = 0
    """Write requests accepted."""
    functions: set[int] = field(default_factory=set)
    """Function codes this unit does not implement (answered "illegal function")."""

    def on_write(self, kind: str, address: int, setter: Callable[[float], None], type: str = "uint16",
                 byte_order: str = "ABCD", scale: float = 1.0, offset: float = 0.0) -> None:
        """Accept writes of a holding value (or a coil: 0.0 / 1.0) at `address`: setter(value)."""
        if kind == "coil":
            self.writable[kind].append(_Writable(address, 1, lambda bits: float(bits[0]), setter))
            self.words[kind].setdefault(address, 0)
            return
        self.writable[kind].append(_Writable(address, _WIDTH[type],
                                             compile_decoder(type, byte_order, scale, offset), setter))
        for i in range(_WIDTH[type]):
            self.words[kind].setdefault(address + i, 0)

    def write(self, kind: str, address: int, values: list[int]) -> ExcCodes | None:
        """Apply a write request (all or nothing); the exception it answers instead."""
        targets = self.writable.get(kind, [])
        if not targets:
            return ExcCodes.ILLEGAL_FUNCTION  # a read-only device
        end = address + len(values)
        hit = [w for w in targets if w.address < end and address < w.address + w.width]
        covered = sum(w.width for w in hit)
        if (any(w.address < address or w.address + w.width > end for w in hit) or covered != len(values)
                or any((kind, a) in self.refused for a in range(address, end))):
            return ExcCodes.ILLEGAL_ADDRESS
        decoded = [(w, w.decode(values[w.address - address:w.address - address + w.width])) for w in hit]
        if not all(math.isfinite(v) for _, v in decoded):
            return ExcCodes.ILLEGAL_VALUE
        for w, value in decoded:
            w.setter(value)
            for i in range(w.width):  # what a read gives back (a live value is encoded anew)
                self.words[kind][w.address + i] = int(bool(values[w.address - address])) if kind == "coil" \
                    else values[w.address - address + i]
        self.writes += 1
        return None

    def set(self, kind: str, address: int, value: float, type: str = "uint16",
            byte_order: str = "ABCD") -> None:
        """Store `value` encoded as `type` from `address` (a coil or discrete input: 0 or 1)."""
        if kind in _BITS:
            self.words[kind][address] = int(bool(value))
            return
        for i, w in enumerate(encode_value(value, type, byte_order)):
            self.words[kind][address + i] = w

    def bind(self, kind: str, address: int, getter: Callable[[], float], type: str = "float32",
             byte_order: str = "ABCD", scale: float = 1.0, offset: float = 0.0) -> None:
        """Serve getter() at each read, written as raw = (value - offset) / scale."""
        self.live[kind].append(_Live(address, getter, type, byte_order, scale, offset))
        self.set(kind, address, 0.0, type, byte_order)

    def read(self, kind: str, address: int, count: int) -> list[int] | ExcCodes:
        """The words (or bits) a read request gets, or the exception it gets instead."""
        space = self.words[kind]
        wanted = range(address, address + count)
        if any(a not in space or (kind, a) in self.refused for a in wanted):
            return ExcCodes.ILLEGAL_ADDRESS
        for item in self.live.get(kind, ()):
            if item.address < address + count and address < item.address + 4:
                raw = (item.getter() - item.offset) / item.scale
                self.set(kind, item.address, raw, item.type, item.byte_order)
        return [space[a] for a in wanted]


def _runs(addresses: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted addresses -> (start, count) of each contiguous run."""
    runs: list[tuple[int, int]] = []
    for a in sorted(addresses):
        if runs and runs[-1][0] + runs[-1][1] == a:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((a, 1))
    return runs


class _ListenFailed(Exception):
    """Carries the OSError of a failed listen past pymodbus, which would swallow it."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class _Units(SimCore):
    """pymodbus' SimCore, refusing a unit it does not hold with NoSuchIdException - the error
    its request handler answers (TCP: 0x0B) or ignores (serial) - where pymodbus 3.16 looks up
    unit 0 and fails with a KeyError (a traceback in the log, and "device failure" on the wire)."""

    def __init__(self, devices: list[SimDevice], where: Callable[[], str]) -> None:
        super().__init__(devices)
        self._where = where
        self._warned: set[int] = set()

    def _check(self, device_id: int) -> None:
        if device_id not in self.devices:
            if device_id not in self._warned:
                self._warned.add(device_id)
                where = self._where()
                log.warning("%s: a request for unit %d, which is not served here (units %s): %s", where,
                            device_id, ", ".join(map(str, sorted(self.devices))),
                            "not answered, as on a shared serial line" if where.startswith("/")
                            else "answered with exception 0x0B, gateway target device failed to respond")
            raise NoSuchIdException(f"unit {device_id}")

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        self._check(device_id)
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: list[int] | list[bool]) -> ExcCodes | None:
        self._check(device_id)
        return await super().async_setValues(device_id, func_code, address, values)


class ModbusServer:
    """`async with ModbusServer(images).tcp() as srv: srv.port ...` or `.rtu("/tmp/ttyA")`."""

    def __init__(self, images: Iterable[DeviceImage]):
        self.images = {im.unit_id: im for im in images}
        self.port = 0
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._mode: tuple[str, dict[str, Any]] = ("tcp", {"host": "127.0.0.1", "port": 0})
        self.requests = 0

    def tcp(self, host: str = "127.0.0.1", port: int = 0) -> ModbusServer:
        self._mode = ("tcp", {"host": host, "port": port})
        return self

    def rtu(self, device: str, baudrate: int = 19200, parity: str = "N", stopbits: int = 1) -> ModbusServer:
        self._mode = ("rtu", {"port": device, "baudrate": baudrate, "parity": parity, "stopbits": stopbits})
        return self

    def _sim_device(self, image: DeviceImage) -> SimDevice:
        blocks: list[list[SimData]] = []
        for kind in ("coil", "discrete"):
            top = max(image.words[kind], default=0)
            blocks.append([SimData(0, count=(top // 16 + 1) * 16, values=False, datatype=DataType.BITS)])
        for kind in ("holding", "input"):
            runs = _runs(image.words[kind]) or [(0, 1)]
            blocks.append([SimData(a, count=n, values=0, datatype=DataType.REGISTERS) for a, n in runs])

        async def action(function_code: int, start_address: int, address: int, count: int,
                         registers: list[int], set_values: Any) -> ExcCodes | None:
            self.requests += 1
            kind = _KIND_OF_FUNCTION.get(function_code)
            if kind is None or function_code in image.functions:
                return ExcCodes.ILLEGAL_FUNCTION
            if set_values is not None:  # read-only unless the image declares writable values
                return image.write(kind, address, [int(v) for v in set_values])
            if kind in _BITS:  # count is in 16-bit words here: fill every bit of them
                first = address // 16
                for w in range(first, first + count):
                    registers[w - start_address] = sum(
                        1 << b for b in range(16) if image.words[kind].get(w * 16 + b))
                if address not in image.words[kind] or (kind, address) in image.refused:
                    return ExcCodes.ILLEGAL_ADDRESS
                return None
            got = image.read(kind, address, count)
            if isinstance(got, ExcCodes):
                return got
            registers[address - start_address:address - start_address + count] = got
            return None

        return SimDevice(image.unit_id, simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
                         use_bit_addressing=True, action=action)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        unit = data[0] if self._mode[0] == "rtu" else (data[6] if len(data) > 6 else -1)
        image = self.images.get(unit)
        if image is None or image.fault is None:
            return data
        if image.fault == "silent":
            return b""
        return data[:-1] + bytes([data[-1] ^ 0xFF])

    async def start(self) -> None:
        """Listen; OSError (with the system's reason) when the address or the serial port
        cannot be had."""
        devices = [self._sim_device(im) for im in self.images.values()]
        kind, opts = self._mode
        server: ModbusTcpServer | ModbusSerialServer
        if kind == "tcp":
            server = ModbusTcpServer(devices, address=(opts["host"], opts["port"]), trace_packet=self._trace)
        else:
            server = ModbusSerialServer(devices, framer=FramerType.RTU, trace_packet=self._trace,
                                        ignore_missing_devices=True, **opts)
        server.context = _Units(devices, lambda: str(opts["port"]) if kind == "rtu"
                                else f"{opts['host']}:{self.port}")
        # pymodbus logs why it cannot listen and raises a bare RuntimeError: take the reason
        # (the OSError of the bind or of opening the port) before it does.
        create = getattr(server, "call_create", None)
        if create is not None:
            async def call_create() -> Any:
                try:
                    return await create()
                except OSError as exc:
                    raise _ListenFailed(exc) from exc

            server.call_create = call_create
        try:
            await server.serve_forever(background=True)
        except _ListenFailed as failed:
            raise failed.error from None
        except RuntimeError as exc:
            if create is not None:
                raise
            raise OSError(f"cannot listen: {exc}") from None
        self._server = server
        if kind == "tcp":
            sockets = getattr(self._server.transport, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else opts["port"]

    async def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None
            await asyncio.sleep(0)

    async def __aenter__(self) -> ModbusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
