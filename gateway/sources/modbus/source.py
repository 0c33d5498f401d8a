"""Modbus TCP/RTU polling source: register maps -> readings on a clock-aligned schedule.

One `ModbusSource` per TCP device, or per RTU bus: the devices of a serial line share one
port and take turns under the bus lock, with a silence (`inter_frame_pause`) after each
answer.  Every device polls on its own interval, aligned to the wall clock (the next tick
is ceil(now / interval) * interval, so there is no drift and all gateways sample together),
and stamps each reading with the midpoint of the request that fetched it.

Faults never stop the good input beside them:

- a device that does not answer (refused connection, reset, timeout, CRC or framing error)
  is logged once as unreachable, retried with capped, jittered backoff, and logged once
  when it recovers; the other devices keep their schedules;
- a block the device refuses (an exception response) is reported once and then read one
  register at a time, so only the register the device refuses is lost;
- a refused register, or a float that is NaN or infinite, becomes a `Rejected` item (topic
  `modbus:{unit}:{kind}:{address}`) when its state changes, not on every poll; counters
  in `stats` count every occurrence.

pymodbus exceptions are translated at the edge (`_Link`) into this module's own tree:

    ModbusError
    ├── LinkDown     no usable answer: connection refused or lost, timeout, corrupt frame
    └── Refused      the device answered with a Modbus exception response (`code`)
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerType

from gateway.backoff import Backoff
from gateway.config_types import serial_settings
from gateway.errors import ConfigError
from gateway.ratelimit import RateLimitedLog
from gateway.reading import Reading
from gateway.sources import QueuedBatches, Rejected, SourceBatch
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.decode import Field, ReadBlock, make_field, plan_reads

__all__ = ["LinkDown", "ModbusError", "ModbusLink", "ModbusSource", "Refused", "next_tick"]

log = logging.getLogger("remotecal.source.modbus")

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_SPLIT_CODES = frozenset({1, 2, 3})
"""Exception codes that say "not this request": reading register by register may succeed."""
_GATEWAY_CODES = frozenset({10, 11})
"""Exception codes a TCP-to-RTU gateway sends for a device that is not there: unreachable."""


def _not_finite(type_: str, value: float, scale: float, offset: float) -> str:
    if scale == 1.0 and offset == 0.0:
        return f"{type_} value is {value}"
    return f"{type_} value is {value} after scale = {scale:g}, offset = {offset:g}"


class ModbusError(Exception):
    """A Modbus transaction failed; `reason` is a short text for the log and the quarantine."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class LinkDown(ModbusError):
    """No usable answer from the device."""


class Refused(ModbusError):
    """The device answered with exception `code`."""

    def __init__(self, code: int):
        self.code = code
        super().__init__(f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")


def next_tick(now: float, interval: float, after: float | None = None) -> float:
    """The first multiple of `interval` (seconds since the epoch) at or after `now`, later than `after`."""
    tick = math.ceil(now / interval) * interval
    if after is not None and tick <= after + interval / 2:
        tick = after + interval
    return tick


def _rtu_settings(url: str) -> tuple[str, dict[str, int | str]]:
    return serial_settings(url, 19200)


class _Link:
    """One connection (a TCP socket or a serial port) and the lock its transactions take turns on."""

    def __init__(self, url: str, timeout: float, pause: float):
        self.url = url
        self.timeout = timeout
        self.pause = pause
        self.lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._bytes_in = False

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._bytes_in = True
        return data

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        parts = urlsplit(self.url)
        common = {"timeout": self.timeout, "retries": 0, "reconnect_delay": 0.0,
                  "trace_packet": self._trace, "name": self.url}
        if parts.scheme == "tcp":
            return AsyncModbusTcpClient(parts.hostname or "", port=parts.port or 502, **common)  # type: ignore[arg-type]
        path, settings = _rtu_settings(self.url)
        return AsyncModbusSerialClient(path, framer=FramerType.RTU, **settings, **common)  # type: ignore[arg-type]

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(self, unit: int, kind: str, address: int, count: int) -> tuple[list[int], int]:
        """(registers or bits, request midpoint [ns since the epoch]); raises LinkDown or Refused."""
        async with self.lock:
            try:
                return await self._read(unit, kind, address, count)
            finally:
                if self.pause:
                    await asyncio.sleep(self.pause)

    async def write(self, unit: int, kind: str, address: int, values: Sequence[int],
                    multiple: bool = False) -> None:
        """Write holding registers (one: function 6, more or `multiple`: 16) or a coil (function
        5); raises LinkDown or Refused.  A controller's link (gateway.controllers.modbus)."""
        async with self.lock:
            try:
                client = await self._connected()
                if kind == "coil":
                    await self._call(client.write_coil, address, bool(values[0]), device_id=unit)
                elif len(values) == 1 and not multiple:
                    await self._call(client.write_register, address, int(values[0]), device_id=unit)
                else:
                    words = [int(v) for v in values]
                    await self._call(client.write_registers, address, words, device_id=unit)
            finally:
                if self.pause:
                    await asyncio.sleep(self.pause)

    async def _connected(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is None:
            self._client = self._make_client()
        client = self._client
        if not client.connected:
            try:
                ok = await client.connect()
            except (OSError, ModbusException) as exc:  # a serial port that is not there
                raise LinkDown(f"cannot open {self.url}: {exc}") from None
            if not ok:
                raise LinkDown(f"cannot connect to {self.url}")
        return client

    async def _call(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """One transaction; its response, or LinkDown / Refused."""
        self._bytes_in = False
        try:
            rr = await call(*args, **kwargs)
        except ConnectionException:
            raise LinkDown("connection lost") from None
        except (ModbusException, TimeoutError, OSError) as exc:
            if self._bytes_in:
                raise LinkDown("corrupt answer (CRC or framing error)") from None
            if isinstance(exc, OSError):
                raise LinkDown(f"connection error: {exc}") from None
            raise LinkDown(f"no answer within {self.timeout:g} s") from None
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            if code in _GATEWAY_CODES:
                raise LinkDown(f"unit {kwargs.get('device_id')} does not answer there - the server says: "
                               f"{EXCEPTION_NAMES[code]} (exception {code}; is unit_id right?)")
            raise Refused(code)
        return rr

    async def _read(self, unit: int, kind: str, address: int, count: int) -> tuple[list[int], int]:
        client = await self._connected()
        call = {
            "holding": client.read_holding_registers, "input": client.read_input_registers,
            "coil": client.read_coils, "discrete": client.read_discrete_inputs,
        }[kind]
        t0 = time.time_ns()
        rr = await self._call(call, address, count=count, device_id=unit)
        t1 = time.time_ns()
        values = list(rr.bits[:count]) if kind in ("coil", "discrete") else list(rr.registers)
        if len(values) < count:
            raise LinkDown(f"short answer: {len(values)} of {count} values")
        return [int(v) for v in values], (t0 + t1) // 2


ModbusLink = _Link
"""One Modbus connection (TCP) or serial port, its lock, reads and writes: what a
`[[controllers.modbus]]` controller talks through (gateway.controllers.modbus)."""


@dataclass
class _Device:
    cfg: ModbusSourceConfig
    blocks: list[ReadBlock]
    reachable: bool | None = None
    bad: dict[str, str] = field(default_factory=dict)
    """Topic -> reason, for every register currently refused or invalid."""
    stats: Counter[str] = field(default_factory=Counter)

    @classmethod
    def compile(cls, cfg: ModbusSourceConfig) -> _Device:
        fields = [make_field(i, r.kind, r.address, r.type, r.byte_order, r.scale, r.offset)
                  for i, r in enumerate(cfg.registers)]
        return cls(cfg, plan_reads(fields, cfg.max_gap))

    def topic(self, f: Field) -> str:
        return f"modbus:{self.cfg.unit_id}:{f.kind}:{f.address}"


class ModbusSource(QueuedBatches):
    """`async with ModbusSource(configs, ...) as src: async for batch in src.batches(): ...`

    `configs` are the devices of one link: one TCP device, or the devices of one RTU bus.
    """

    def __init__(self, configs: Sequence[ModbusSourceConfig], *, site: str, gateway: str, run: str,
                 buffer: int = 10_000):
        if not configs:
            raise ValueError("a ModbusSource needs at least one device")
        self.configs = list(configs)
        self.name = configs[0].name if len(configs) == 1 else "+".join(c.name for c in configs)
        self.site, self.gateway, self.run = site, gateway, run
        self.devices = [_Device.compile(c) for c in configs]
        self.link = _Link(configs[0].url, max(c.timeout for c in configs), self._pause(configs))
        self._buffer = buffer
        self._queue: asyncio.Queue[SourceBatch | BaseException] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._drops_log = RateLimitedLog(log)

    @staticmethod
    def _pause(configs: Sequence[ModbusSourceConfig]) -> float:
        if urlsplit(configs[0].url).scheme != "rtu":
            return 0.0
        set_ = [c.inter_frame_pause for c in configs if c.inter_frame_pause is not None]
        if set_:
            return max(set_)
        baud = int(_rtu_settings(configs[0].url)[1]["baudrate"])
        # Modbus over serial line 1.02, 2.5.1.1: 3.5 characters of 11 bits, 1.75 ms above 19200 baud.
        return max(3.5 * 11 / baud, 0.00175)

    @classmethod
    def for_configs(cls, configs: Sequence[ModbusSourceConfig], *, site: str, gateway: str,
                    run: str) -> list[ModbusSource]:
        """One source per TCP device and one per serial port (whose devices must agree on its settings)."""
        sources: list[ModbusSource] = []
        buses: dict[str, list[tuple[int, ModbusSourceConfig]]] = {}
        for i, c in enumerate(configs):
            if urlsplit(c.url).scheme == "rtu":
                buses.setdefault(_rtu_settings(c.url)[0], []).append((i, c))
            else:
                sources.append(cls([c], site=site, gateway=gateway, run=run))
        problems = []
        for path, members in buses.items():
            first_i, first = members[0]
            for i, c in members[1:]:
                if _rtu_settings(c.url) != _rtu_settings(first.url):
                    problems.append(f"sources.modbus[{i}].url: serial port {path} is configured differently "
                                    f"in sources.modbus[{first_i}].url")
                if c.unit_id == first.unit_id:
                    problems.append(f"sources.modbus[{i}].unit_id: unit {c.unit_id} on {path} "
                                    f"is also sources.modbus[{first_i}]")
            sources.append(cls([c for _, c in members], site=site, gateway=gateway, run=run))
        if problems:
            raise ConfigError(problems)
        return sources

    @property
    def connected(self) -> bool:
        """Every device of this source answered its last poll."""
        return all(d.reachable for d in self.devices)

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """Per device: polls, readings, link_errors, exceptions, invalid, dropped."""
        return {d.cfg.name: dict(d.stats) for d in self.devices}

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> ModbusSource:
        pm = logging.getLogger("pymodbus")
        if pm.level == logging.NOTSET:
            pm.setLevel(logging.CRITICAL)  # its per-timeout lines would flood; we log changes of state
        self._queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._run(d), name=f"modbus-{d.cfg.name}") for d in self.devices]
        for t in self._tasks:
            t.add_done_callback(self._task_done)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.link.close()


    def _emit(self, dev: _Device, batch: SourceBatch) -> None:
        assert self._queue is not None
        if self._queue.qsize() >= self._buffer:
            dev.stats["dropped"] += len(batch.readings)
            self._drops_log.warning(dev.cfg.name, "modbus device %r: the journal is not keeping up; "
                                    "dropped a poll", dev.cfg.name)
            return
        self._queue.put_nowait(batch)

    # -- polling -------------------------------------------------------------------------

    async def _run(self, dev: _Device) -> None:
        interval = dev.cfg.interval
        backoff = Backoff(initial=min(0.5, interval), maximum=max(30.0, interval))
        tick: float | None = None
        retry_at = 0.0
        while True:
            tick = next_tick(time.time(), interval, tick)
            await asyncio.sleep(max(0.0, tick - time.time()))
            if time.time() < retry_at:
                continue
            batch, down = await self._poll(dev)
            if down is None:
                self._set_reachable(dev, True)
                backoff.reset()
            else:
                if dev.reachable is not False:
                    batch.rejected.append(Rejected(dev.cfg.name, down.reason, f"modbus:{dev.cfg.unit_id}",
                                                   time_ns=time.time_ns()))
                self._set_reachable(dev, False, down.reason)
                retry_at = time.time() + backoff.next()
            if batch.readings or batch.rejected:
                self._emit(dev, batch)

    async def _poll(self, dev: _Device) -> tuple[SourceBatch, LinkDown | None]:
        batch = SourceBatch()
        dev.stats["polls"] += 1
        pending = list(dev.blocks)
        while pending:
            block = pending.pop(0)
            try:
                words, t_ns = await self.link.read(dev.cfg.unit_id, block.kind, block.address, block.count)
            except LinkDown as exc:
                dev.stats["link_errors"] += 1
                return batch, exc
            except Refused as exc:
                dev.stats["exceptions"] += 1
                if len(block.fields) > 1 and exc.code in _SPLIT_CODES:
                    self._split(dev, block, exc)
                    pending[:0] = block.split()
                else:
                    for f in block.fields:
                        self._bad(dev, f, f"refused: {exc.reason}", batch)
                continue
            self._decoded(dev, block, words, t_ns, batch)
        return batch, None

    def _decoded(self, dev: _Device, block: ReadBlock, words: list[int], t_ns: int,
                 batch: SourceBatch) -> None:
        regs = dev.cfg.registers
        base = block.address
        for f in block.fields:
            r = regs[f.index]
            try:
                value = f.decode(words[f.address - base:f.end - base])
            except Exception as exc:  # a decoder bug must cost this register, never the process
                dev.stats["invalid"] += 1
                self._bad(dev, f, f"cannot decode {r.type} from {words[f.address - base:f.end - base]}: "
                          f"{type(exc).__name__}: {exc}"[:300], batch)
                continue
            if not math.isfinite(value):  # NaN or inf of a float, or any type overflowed by scale
                dev.stats["invalid"] += 1
                self._bad(dev, f, _not_finite(r.type, value, r.scale, r.offset), batch)
                continue
            self._good(dev, f)
            batch.readings.append(Reading(self.site, self.gateway, self.run, r.channel, r.quantity, r.unit,
                                          r.role, value, t_ns))
        dev.stats["readings"] += len(block.fields)

    def _split(self, dev: _Device, block: ReadBlock, exc: Refused) -> None:
        log.warning("modbus device %r refused %s registers %d..%d (%s); reading them one by one from now on",
                    dev.cfg.name, block.kind, block.address, block.address + block.count - 1, exc.reason)
        i = dev.blocks.index(block)
        dev.blocks[i:i + 1] = block.split()

    # -- changes of state ----------------------------------------------------------------

    def _set_reachable(self, dev: _Device, ok: bool, reason: str = "") -> None:
        before, dev.reachable = dev.reachable, ok
        if ok and before is False:
            log.info("modbus device %r recovered", dev.cfg.name)
        elif ok and before is None:
            log.info("modbus device %r (%s, unit %d) answering", dev.cfg.name, dev.cfg.url, dev.cfg.unit_id)
        elif not ok and before is not False:
            log.warning("modbus device %r unreachable: %s", dev.cfg.name, reason)

    def _bad(self, dev: _Device, f: Field, reason: str, batch: SourceBatch) -> None:
        topic = dev.topic(f)
        if dev.bad.get(topic) == reason:
            return
        dev.bad[topic] = reason
        log.warning("modbus device %r: %s %s", dev.cfg.name, topic, reason)
        batch.rejected.append(Rejected(dev.cfg.name, reason, topic, time_ns=time.time_ns()))

    def _good(self, dev: _Device, f: Field) -> None:
        if dev.bad:
            topic = dev.topic(f)
            if dev.bad.pop(topic, None) is not None:
                log.info("modbus device %r: %s recovered", dev.cfg.name, topic)
