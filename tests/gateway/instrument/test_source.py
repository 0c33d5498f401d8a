"""The instrument source against the virtual SCPI thermometer (TCP), a line server, and a pty (serial)."""

from __future__ import annotations

import asyncio
import os
import re
import time
import tty
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from firmware_bridge.chamber import Chamber, Step
from firmware_bridge.scpi import ScpiThermometer
from gateway.sources import SourceBatch
from gateway.sources.instrument.config import InstrumentSourceConfig
from gateway.sources.instrument.source import InstrumentSource, _Channel, parse_line

TAGS = {"site": "s", "gateway": "g", "run": "r"}
NUMBER = r"(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
T = {"channel": "ref-t", "quantity": "temperature", "unit": "degC", "role": "reference",
     "pattern": rf"^\s*{NUMBER}\s*$"}


def config(url: str, **kw: Any) -> InstrumentSourceConfig:
    return InstrumentSourceConfig.model_validate(
        {"name": "ref", "url": url, "channels": [T], **{"interval": 0.1, "timeout": 0.3, **kw}})


class Collector:
    def __init__(self) -> None:
        self.batches: list[SourceBatch] = []
        self._new = asyncio.Event()

    async def pump(self, src: InstrumentSource) -> None:
        async with src:
            async for b in src.batches():
                self.batches.append(b)
                self._new.set()

    async def wait(self, cond: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                self._new.clear()
                await self._new.wait()

    def values(self, channel: str = "ref-t") -> list[float]:
        return [r.value for b in self.batches for r in b.readings if r.channel == channel]

    def reasons(self) -> list[str]:
        return [x.reason for b in self.batches for x in b.rejected]


@pytest.fixture
async def running() -> AsyncIterator[Callable[[InstrumentSource], Collector]]:
    tasks: list[asyncio.Task[None]] = []

    def start(src: InstrumentSource) -> Collector:
        c = Collector()
        tasks.append(asyncio.create_task(c.pump(src)))
        return c

    yield start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def chamber() -> Chamber:
    return Chamber([Step(23.0, 45.0, 3600.0)], start_temperature=23.0, start_humidity=45.0, seed=2)


def test_parse_line_scale_offset_and_invalid_values() -> None:
    chans = [_Channel(0, re.compile(rf"T={NUMBER}"), 1.0, 0.0), _Channel(1, re.compile(rf"R={NUMBER}"), 0.1, 1.0)]
    assert parse_line(chans, "T=23.5 R=100") == ([(0, 23.5), (1, 11.0)], None)
    assert parse_line(chans, "R=5") == ([(1, 1.5)], None)
    assert parse_line(chans, "hello") == ([], "no channel's pattern matches the line")
    values, problem = parse_line(chans, "T=9.91E37 R=5")
    assert values == [(1, 1.5)] and problem is not None and "overrange" in problem
    chans = [_Channel(0, re.compile(r"T=(?P<value>\S+)"), 1.0, 0.0)]
    assert parse_line(chans, "T=nan")[1] is not None and parse_line(chans, "T=abc")[1] == "not a number: 'abc'"
    # plain ASCII decimals only (float() takes these; issue 11 item 12)
    for text in ("1_000", "\uff12\uff11.5", "\u0662\u0661", "infinity", "NaN"):
        assert parse_line(chans, f"T={text}") == ([], f"not a number: {text!r}")
    assert parse_line(chans, "T=+2.345E+01") == ([(0, 23.45)], None)


async def test_query_mode_reads_the_thermometer_on_the_ticks(running: Callable[..., Collector]) -> None:
    ch = chamber()
    async with ScpiThermometer(ch) as th:
        src = InstrumentSource(config(f"tcp://127.0.0.1:{th.port}"), **TAGS)
        c = running(src)
        await c.wait(lambda: len(c.values()) >= 5)
    readings = [r for b in c.batches for r in b.readings]
    assert all(abs(r.value - 23.0) < 0.1 for r in readings)
    r = readings[0]
    assert (r.site, r.gateway, r.run, r.channel, r.quantity, r.unit, r.role) == (
        "s", "g", "r", "ref-t", "temperature", "degC", "reference")
    # stamped at the middle of the exchange, just after a 100 ms tick: most of them in the
    # tick's first half (the median; one poll held up by a loaded machine is no failure)
    assert sorted(r.time_ns % 100_000_000 for r in readings)[len(readings) // 2] < 50_000_000
    assert abs(readings[-1].time_ns - time.time_ns()) < 1e9
    assert src.connected and src.stats["polls"] >= 5 and src.stats["readings"] == len(readings)
    assert c.reasons() == []


async def test_silent_instrument_is_reported_once_then_recovers(running: Callable[..., Collector]) -> None:
    async with ScpiThermometer(chamber()) as th:
        src = InstrumentSource(config(f"tcp://127.0.0.1:{th.port}", timeout=0.2), **TAGS)
        c = running(src)
        await c.wait(lambda: len(c.values()) >= 2)
        th.fault = "silent"
        await c.wait(lambda: len(c.reasons()) >= 1)
        assert c.reasons() == ["no answer within 0.2 s"] and not src.connected
        await asyncio.sleep(1.0)
        assert c.reasons() == ["no answer within 0.2 s"]  # once, not at every retry
        n = len(c.values())
        th.fault = None
        await c.wait(lambda: len(c.values()) >= n + 2)
        assert src.connected and src.stats["link_errors"] >= 1


async def test_garbled_answers_are_quarantined_with_the_line(running: Callable[..., Collector]) -> None:
    async with ScpiThermometer(chamber()) as th:
        th.fault = "garble"
        src = InstrumentSource(config(f"tcp://127.0.0.1:{th.port}"), **TAGS)
        c = running(src)
        await c.wait(lambda: len(c.reasons()) >= 2)
        rejected = [x for b in c.batches for x in b.rejected]
        assert rejected[0].payload == b"#?!garbled" and rejected[0].topic == "instrument:ref"
        assert c.values() == [] and src.connected


async def test_instrument_restart_is_survived(running: Callable[..., Collector]) -> None:
    ch = chamber()
    th = ScpiThermometer(ch)
    await th.start()
    port = th.port
    src = InstrumentSource(config(f"tcp://127.0.0.1:{port}"), **TAGS)
    c = running(src)
    try:
        await c.wait(lambda: len(c.values()) >= 2)
        await th.stop()
        await c.wait(lambda: len(c.reasons()) >= 1)
        assert not src.connected
        th = ScpiThermometer(ch).tcp(port=port)
        await th.start()
        n = len(c.values())
        await c.wait(lambda: len(c.values()) >= n + 2, timeout=10)
        assert src.connected
    finally:
        await th.stop()


async def test_stream_mode_lines_with_several_channels(running: Callable[..., Collector]) -> None:
    lines = [b"T=23.10 RH=45.0\r\n", b"boot v1.2\r\n", b"T=23.20 RH=45.5\r\n"]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for line in lines:
            writer.write(line)
            await writer.drain()
            await asyncio.sleep(0.05)
        await asyncio.sleep(10)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rh = {"channel": "rh", "quantity": "relative_humidity", "unit": "%rh", "role": "reference",
          "pattern": rf"RH={NUMBER}"}
    cfg = InstrumentSourceConfig.model_validate({
        "name": "hygro", "url": f"tcp://127.0.0.1:{port}", "mode": "stream", "terminator": "\r\n",
        "channels": [{**T, "pattern": rf"T={NUMBER}"}, rh]})
    async with server:
        c = running(InstrumentSource(cfg, **TAGS))
        await c.wait(lambda: len(c.values("rh")) >= 2)
    assert c.values() == [23.10, 23.20] and c.values("rh") == [45.0, 45.5]
    assert c.reasons() == ["no channel's pattern matches the line"]
    assert [x.payload for b in c.batches for x in b.rejected] == [b"boot v1.2"]


async def test_stream_mode_idle_timeout_reconnects(running: Callable[..., Collector]) -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(b"21.5\n")
        await writer.drain()
        await asyncio.sleep(10)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        src = InstrumentSource(config(f"tcp://127.0.0.1:{port}", mode="stream", idle_timeout=0.2), **TAGS)
        c = running(src)
        await c.wait(lambda: len(c.values()) >= 2)
    assert connections >= 2 and c.reasons()[0] == "no line within 0.2 s"


async def test_serial_query_mode_on_a_pty(running: Callable[..., Collector]) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    loop = asyncio.get_running_loop()
    got = bytearray()

    def answer() -> None:
        got.extend(os.read(master, 1024))
        while b"\n" in got:
            line, _, rest = got.partition(b"\n")
            got[:] = rest
            if line.strip() == b"FETC?":
                os.write(master, b"+24.5000\r\n")

    loop.add_reader(master, answer)
    try:
        cfg = config(f"serial://{path}?baudrate=9600", terminator="\r\n")
        c = running(InstrumentSource(cfg, **TAGS))
        await c.wait(lambda: len(c.values()) >= 3)
        assert set(c.values()) == {24.5} and c.reasons() == []
    finally:
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)


async def test_unreachable_port_is_reported(running: Callable[..., Collector]) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    src = InstrumentSource(config(f"tcp://127.0.0.1:{port}"), **TAGS)
    c = running(src)
    await c.wait(lambda: len(c.reasons()) >= 1)
    assert c.reasons()[0].startswith(f"cannot connect to tcp://127.0.0.1:{port}") and not src.connected


def test_the_sample_config_is_valid_and_one_serial_port_serves_one_instrument() -> None:
    import tomllib
    from pathlib import Path

    import gateway.sources.instrument as pkg
    from gateway.errors import ConfigError

    with (Path(pkg.__file__).parent / "sample.toml").open("rb") as f:
        cfgs = [InstrumentSourceConfig(**x) for x in tomllib.load(f)["sources"]["instrument"]]
    sources = InstrumentSource.for_configs(cfgs, **TAGS)
    assert [s.name for s in sources] == ["ref-thermometer", "ref-hygrometer"]
    twice = [*cfgs, cfgs[1].model_copy(update={"name": "other", "url": "serial:///dev/ttyUSB0?baudrate=19200"})]
    with pytest.raises(ConfigError, match=r"sources.instrument\[2\].url: serial port /dev/ttyUSB0 is already used"):
        InstrumentSource.for_configs(twice, **TAGS)
