"""Line-oriented instrument source: SCPI-style queries or a stream of lines, over TCP or a serial port.

`mode = "query"`: every `interval`, on ticks aligned to the wall clock as the Modbus source's
are, the source sends `query` and reads one line; its readings are stamped with the midpoint
of that exchange.  `mode = "stream"`: the source reads the lines the instrument sends and
stamps each with the moment it arrived.

Each line is searched with every channel's `pattern`; each match's group `value` (a plain
ASCII decimal, times `scale` plus `offset`) becomes a reading of that channel.  A line no
pattern matches, or a value that is not a finite number (SCPI's 9.9E37 overrange and 9.91E37
not-a-number markers included), is a `Rejected` item with the line as its payload (topic `instrument:{name}`).

A link that fails (refused, reset, closed, or no answer within `timeout` to a query) is
logged once, closed (so that a late answer cannot be taken for the next one) and reopened
with capped, jittered backoff; its recovery is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from gateway.backoff import Backoff
from gateway.errors import ConfigError
from gateway.numbers import parse_decimal
from gateway.ratelimit import RateLimitedLog
from gateway.reading import Reading
from gateway.sources import QueuedBatches, Rejected, SourceBatch
from gateway.sources.instrument.config import InstrumentSourceConfig, serial_settings

__all__ = ["InstrumentSource", "LineLink", "LinkDown", "LinkSettings", "parse_line"]

log = logging.getLogger("remotecal.source.instrument")

SCPI_OVERRANGE = 9.9e37
"""SCPI-99 (vol. 1, 7.2.1.5): 9.9E37 means overrange and 9.91E37 not a number."""
MAX_LINE = 64 * 1024


class LinkDown(Exception):
    """The instrument's link failed; `reason` is a short text for the log and the quarantine."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class _Channel:
    index: int
    regex: re.Pattern[str]
    scale: float
    offset: float


def parse_line(channels: list[_Channel], line: str) -> tuple[list[tuple[int, float]], str | None]:
    """([(channel index, value)], reason the line or one of its values is refused, or None)."""
    values: list[tuple[int, float]] = []
    problem: str | None = None
    for ch in channels:
        m = ch.regex.search(line)
        if m is None or m.group("value") is None:
            continue
        text = m.group("value").strip()
        raw = parse_decimal(text)
        if raw is None:  # plain ASCII decimals only: not 1_000, ２１, nan
            problem = f"not a number: {text[:80]!r}"
            continue
        if not math.isfinite(raw) or abs(raw) >= SCPI_OVERRANGE:
            problem = f"invalid value {text!r} (overrange or not a number)"
            continue
        value = raw * ch.scale + ch.offset
        if not math.isfinite(value):  # overflowed by scale or offset
            problem = f"value {text!r} is {value} after scale = {ch.scale:g}, offset = {ch.offset:g}"
            continue
        values.append((ch.index, value))
    if not values and problem is None:
        problem = "no channel's pattern matches the line"
    return values, problem


class LinkSettings(Protocol):
    """What a line link needs of its block (an instrument source's, a SCPI controller's)."""

    @property
    def url(self) -> str: ...

    @property
    def timeout(self) -> float: ...

    @property
    def terminator(self) -> str: ...


class _Link:
    """One TCP connection or serial port: write bytes, read lines ending with `terminator`."""

    def __init__(self, cfg: LinkSettings):
        self.cfg = cfg
        self.term = cfg.terminator.encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._serial: Any = None  # a serial.Serial; pyserial is imported for serial:// URLs only
        self._buf = bytearray()

    @property
    def is_open(self) -> bool:
        return self._writer is not None or self._serial is not None

    async def open(self) -> None:
        parts = urlsplit(self.cfg.url)
        if parts.scheme == "tcp":
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(parts.hostname, parts.port, limit=MAX_LINE), self.cfg.timeout)
            except TimeoutError:
                raise LinkDown(f"cannot connect to {self.cfg.url} within {self.cfg.timeout:g} s") from None
            except OSError as exc:
                raise LinkDown(f"cannot connect to {self.cfg.url}: {exc.strerror or exc}") from None
            return
        import serial  # pyserial

        path, settings = serial_settings(self.cfg.url)
        try:
            self._serial = await asyncio.to_thread(serial.Serial, path, timeout=0.1, **settings)
        except (OSError, ValueError, serial.SerialException) as exc:
            raise LinkDown(f"cannot open {path}: {exc}") from None
        with contextlib.suppress(Exception):
            self._serial.reset_input_buffer()
        self._buf.clear()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        if self._serial is not None:
            with contextlib.suppress(Exception):
                self._serial.close()
            self._serial = None
        self._buf.clear()

    async def write(self, data: bytes) -> None:
        try:
            if self._writer is not None:
                self._writer.write(data)
                await self._writer.drain()
            elif self._serial is not None:
                await asyncio.to_thread(self._serial.write, data)
            else:
                raise LinkDown("not connected")
        except OSError as exc:
            raise LinkDown(f"write failed: {exc.strerror or exc}") from None

    async def readline(self, timeout: float | None) -> bytes:
        """One line without its terminator; raises LinkDown on a closed link, TimeoutError on silence."""
        async with asyncio.timeout(timeout):
            if self._reader is not None:
                try:
                    line = await self._reader.readuntil(self.term)
                except asyncio.IncompleteReadError:
                    raise LinkDown("the instrument closed the connection") from None
                except asyncio.LimitOverrunError:
                    raise LinkDown(f"a line longer than {MAX_LINE} bytes") from None
                except OSError as exc:
                    raise LinkDown(f"read failed: {exc.strerror or exc}") from None
                return line[:-len(self.term)]
            if self._serial is not None:
                return await self._serial_line()
            raise LinkDown("not connected")

    async def _serial_line(self) -> bytes:
        ser = self._serial
        while True:
            i = self._buf.find(self.term)
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[:i + len(self.term)]
                return line
            if len(self._buf) > MAX_LINE:
                raise LinkDown(f"a line longer than {MAX_LINE} bytes")
            try:
                # A read of at most 0.1 s (the port's timeout), so a cancelled wait ends soon.
                chunk = await asyncio.to_thread(lambda: ser.read(max(1, ser.in_waiting)))
            except (OSError, TypeError) as exc:  # pyserial raises TypeError on a port closed meanwhile
                raise LinkDown(f"read failed: {exc}") from None
            except Exception as exc:  # serial.SerialException: the device went away
                raise LinkDown(f"read failed: {exc}") from None
            self._buf += chunk


LineLink = _Link
"""A line link (TCP or serial): what a `[[controllers.scpi]]` controller talks through."""


def _next_tick(now: float, interval: float, after: float | None) -> float:
    tick = math.ceil(now / interval) * interval
    if after is not None and tick <= after + interval / 2:
        tick = after + interval
    return tick


class InstrumentSource(QueuedBatches):
    """One instrument: `async with InstrumentSource(cfg, site=.., gateway=.., run=..) as src:`,
    then `async for batch in src.batches(): ...`."""

    def __init__(self, cfg: InstrumentSourceConfig, *, site: str, gateway: str, run: str,
                 buffer: int = 10_000):
        self.cfg = cfg
        self.name = cfg.name
        self.site, self.gateway, self.run = site, gateway, run
        self.topic = f"instrument:{cfg.name}"
        self.link = _Link(cfg)
        self.reachable: bool | None = None
        self.stats: Counter[str] = Counter()
        """lines, readings, rejected, link_errors, dropped (and polls, in query mode)."""
        self._channels = [_Channel(i, re.compile(c.pattern), c.scale, c.offset)
                          for i, c in enumerate(cfg.channels)]
        self._buffer = buffer
        self._queue: asyncio.Queue[SourceBatch | BaseException] | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = RateLimitedLog(log)

    @classmethod
    def for_configs(cls, configs: Sequence[InstrumentSourceConfig], *, site: str, gateway: str, run: str,
                    key: str = "sources.instrument") -> list[InstrumentSource]:
        """One source per instrument; two instruments on one serial port are a ConfigError."""
        problems: list[str] = []
        ports: dict[str, int] = {}
        for i, c in enumerate(configs):
            if urlsplit(c.url).scheme != "serial":
                continue
            path = serial_settings(c.url)[0]
            if path in ports:
                problems.append(f"{key}[{i}].url: serial port {path} is already used by {key}[{ports[path]}]")
            ports.setdefault(path, i)
        if problems:
            raise ConfigError(problems)
        return [cls(c, site=site, gateway=gateway, run=run) for c in configs]

    @property
    def connected(self) -> bool:
        """The last query was answered (query mode), or a line came since the link opened (stream)."""
        return bool(self.reachable)

    async def __aenter__(self) -> InstrumentSource:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"instrument-{self.name}")
        self._task.add_done_callback(self._task_done)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.link.close()


    # -- lines -> readings -----------------------------------------------------------------

    def _emit(self, batch: SourceBatch) -> None:
        assert self._queue is not None
        if not (batch.readings or batch.rejected):
            return
        if self._queue.qsize() >= self._buffer:
            self.stats["dropped"] += len(batch.readings)
            self._log.warning("dropped", "instrument %r: the journal is not keeping up; dropped a line",
                              self.name)
            return
        self._queue.put_nowait(batch)

    def _batch(self, raw: bytes, t_ns: int) -> SourceBatch:
        self.stats["lines"] += 1
        batch = SourceBatch()
        line = ""
        try:
            line = raw.decode(self.cfg.encoding, errors="replace").rstrip("\r\n")
            values, problem = parse_line(self._channels, line)
        except Exception as exc:  # a parser bug must cost this line, never the process
            values, problem = [], f"the line parser failed: {type(exc).__name__}: {exc}"[:300]
            self._log.error("parser-bug", "instrument %r: %s", self.name, problem, exc_info=exc)
        for index, value in values:
            c = self.cfg.channels[index]
            batch.readings.append(Reading(self.site, self.gateway, self.run, c.channel, c.quantity, c.unit,
                                          c.role, value, t_ns))
        self.stats["readings"] += len(values)
        if problem is not None:
            self.stats["rejected"] += 1
            self._log.warning("line", "instrument %r: %s: %r", self.name, problem, line[:200])
            batch.rejected.append(Rejected(self.name, problem, self.topic, raw[:MAX_LINE], time_ns=t_ns))
        return batch

    # -- the link ----------------------------------------------------------------------------

    def _set_reachable(self, ok: bool, reason: str = "") -> SourceBatch | None:
        before, self.reachable = self.reachable, ok
        if ok and before is False:
            log.info("instrument %r recovered", self.name)
        elif ok and before is None:
            log.info("instrument %r (%s) answering", self.name, self.cfg.url)
        elif not ok and before is not False:
            log.warning("instrument %r unreachable: %s", self.name, reason)
            return SourceBatch(rejected=[Rejected(self.name, reason, self.topic, time_ns=time.time_ns())])
        return None

    def _down(self, exc: LinkDown) -> None:
        self.stats["link_errors"] += 1
        self.link.close()
        batch = self._set_reachable(False, exc.reason)
        if batch is not None:
            self._emit(batch)

    async def _run(self) -> None:
        if self.cfg.mode == "query":
            await self._query_loop()
        else:
            await self._stream_loop()

    async def _query_loop(self) -> None:
        cfg = self.cfg
        query = cfg.query.encode(cfg.encoding)
        backoff = Backoff(initial=min(0.5, cfg.interval), maximum=max(30.0, cfg.interval))
        tick: float | None = None
        retry_at = 0.0
        while True:
            tick = _next_tick(time.time(), cfg.interval, tick)
            await asyncio.sleep(max(0.0, tick - time.time()))
            if time.time() < retry_at:
                continue
            self.stats["polls"] += 1
            try:
                if not self.link.is_open:
                    await self.link.open()
                t0 = time.time_ns()
                await self.link.write(query)
                try:
                    raw = await self.link.readline(cfg.timeout)
                except TimeoutError:
                    raise LinkDown(f"no answer within {cfg.timeout:g} s") from None
                t1 = time.time_ns()
            except LinkDown as exc:
                self._down(exc)
                retry_at = time.time() + backoff.next()
                continue
            backoff.reset()
            self._set_reachable(True)
            self._emit(self._batch(raw, (t0 + t1) // 2))

    async def _stream_loop(self) -> None:
        cfg = self.cfg
        backoff = Backoff(initial=0.5, maximum=30.0)
        while True:
            try:
                if not self.link.is_open:
                    await self.link.open()
                try:
                    raw = await self.link.readline(cfg.idle_timeout)
                except TimeoutError:
                    raise LinkDown(f"no line within {cfg.idle_timeout:g} s") from None
            except LinkDown as exc:
                self._down(exc)
                await asyncio.sleep(backoff.next())
                continue
            t_ns = time.time_ns()
            if not self.reachable:  # reachable once a line arrives, not when a connection opens
                self._set_reachable(True)
                backoff.reset()
            self._emit(self._batch(raw, t_ns))
