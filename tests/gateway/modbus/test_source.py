"""The Modbus source against real pymodbus servers: TCP on loopback, RTU on a socat pty pair."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from firmware_bridge.modbus import DeviceImage, ModbusServer
from gateway.errors import ConfigError
from gateway.sources import SourceBatch
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.source import ModbusSource, next_tick
from tests.gateway.modbus.wire import ORDERS, VALUES, to_registers

TAGS = {"site": "s", "gateway": "g", "run": "r"}
CH = {"quantity": "temperature", "unit": "degC", "role": "dut"}


def reg(channel: str, address: int, **kw: Any) -> dict[str, Any]:
    return {"channel": channel, "address": address, **CH, **kw}


def config(name: str, url: str, registers: list[dict[str, Any]], **kw: Any) -> ModbusSourceConfig:
    return ModbusSourceConfig(name=name, url=url, registers=registers,
                              **{"interval": 0.1, "timeout": 0.3, **kw})


class Collector:
    """Runs sources and keeps every batch they yield, for tests to wait on."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, SourceBatch]] = []
        self._new = asyncio.Event()

    async def pump(self, src: ModbusSource) -> None:
        async with src:
            async for b in src.batches():
                self.batches.append((src.name, b))
                self._new.set()

    async def wait(self, cond: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                self._new.clear()
                await self._new.wait()

    def values(self, channel: str) -> list[float]:
        return [r.value for _, b in self.batches for r in b.readings if r.channel == channel]

    def rejected(self, topic_prefix: str = "") -> list[Any]:
        return [x for _, b in self.batches for x in b.rejected if x.topic.startswith(topic_prefix)]


@pytest.fixture
async def running() -> AsyncIterator[Callable[[list[ModbusSource]], Collector]]:
    tasks: list[asyncio.Task[None]] = []

    def start(sources: list[ModbusSource]) -> Collector:
        c = Collector()
        tasks.extend(asyncio.create_task(c.pump(s)) for s in sources)
        return c

    yield start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def full_image(unit_id: int = 1) -> tuple[DeviceImage, list[dict[str, Any]], dict[str, float]]:
    """Every type in every byte order, in holding and input registers, plus coils and discretes."""
    image = DeviceImage(unit_id)
    registers, expected = [], {}
    for kind, base in (("holding", 0), ("input", 100)):
        address = base
        for order in ORDERS:
            for type_, value in VALUES.items():
                for i, w in enumerate(to_registers(value, type_, order)):
                    image.words[kind][address + i] = w
                name = f"{kind}-{type_}-{order}"
                registers.append(reg(name, address, kind=kind, type=type_, byte_order=order))
                expected[name] = float(value)
                address += len(to_registers(value, type_, order))
    image.words["holding"][60] = (-2345) & 0xFFFF
    registers.append(reg("scaled", 60, type="int16", scale=0.01, offset=1.0))
    expected["scaled"] = -2345 * 0.01 + 1.0
    for kind, bits in (("coil", [1, 0, 1]), ("discrete", [0, 1])):
        for a, bit in enumerate(bits):
            image.words[kind][a] = bit
            registers.append(reg(f"{kind}-{a}", a, kind=kind, quantity="state", unit="1"))
            expected[f"{kind}-{a}"] = float(bit)
    return image, registers, expected


async def _check_full_map(url: str, server: ModbusServer, image_regs: list[dict[str, Any]],
                          expected: dict[str, float], running: Callable[..., Collector]) -> None:
    async with server:
        url = url.format(port=server.port)
        [src] = ModbusSource.for_configs([config("dev", url, image_regs)], **TAGS)
        col = running([src])
        await col.wait(lambda: all(col.values(ch) for ch in expected))
        got = {ch: col.values(ch)[0] for ch in expected}
        assert got == pytest.approx(expected, rel=0, abs=1e-12)
        exact = {ch: v for ch, v in got.items() if ch != "scaled"}
        assert exact == {ch: v for ch, v in expected.items() if ch != "scaled"}
        assert not col.rejected()
        assert src.connected


async def test_every_type_and_byte_order_over_tcp(running: Callable[..., Collector]) -> None:
    image, regs, expected = full_image()
    await _check_full_map("tcp://127.0.0.1:{port}", ModbusServer([image]).tcp(), regs, expected, running)


async def test_every_type_and_byte_order_over_rtu(pty_pair: tuple[str, str],
                                                  running: Callable[..., Collector]) -> None:
    client_end, server_end = pty_pair
    image, regs, expected = full_image(unit_id=7)
    regs_cfg = regs
    server = ModbusServer([image]).rtu(server_end, baudrate=115200)
    async with server:
        cfg = config("dev", f"rtu://{client_end}?baudrate=115200", regs_cfg, unit_id=7)
        [src] = ModbusSource.for_configs([cfg], **TAGS)
        col = running([src])
        await col.wait(lambda: all(col.values(ch) for ch in expected))
        got = {ch: col.values(ch)[0] for ch in expected}
        assert got == pytest.approx(expected, rel=0, abs=1e-12)
        assert not col.rejected()


async def test_a_device_that_stops_answering_does_not_stop_the_other(
        running: Callable[..., Collector], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "remotecal.source.modbus")
    a, b = DeviceImage(1), DeviceImage(1)
    a.set("holding", 0, 1.0)
    b.set("holding", 0, 2.0)
    server_a, server_b = ModbusServer([a]).tcp(), ModbusServer([b]).tcp()
    await server_a.start()
    await server_b.start()
    port_a = server_a.port
    try:
        cfgs = [config("dev-a", f"tcp://127.0.0.1:{port_a}", [reg("a", 0)]),
                config("dev-b", f"tcp://127.0.0.1:{server_b.port}", [reg("b", 0)])]
        src_a, src_b = ModbusSource.for_configs(cfgs, **TAGS)
        col = running([src_a, src_b])
        await col.wait(lambda: bool(col.values("a")) and bool(col.values("b")))

        await server_a.stop()
        await col.wait(lambda: bool(col.rejected("modbus:1")))
        n_a, n_b = len(col.values("a")), len(col.values("b"))
        await col.wait(lambda: len(col.values("b")) >= n_b + 5)  # b keeps its 10 Hz schedule while a is down
        assert len(col.values("a")) <= n_a + 1
        assert not src_a.connected and src_b.connected
        assert len(col.rejected("modbus:1")) == 1  # one record of the change of state, not one per poll
        assert sum("dev-a' unreachable" in r.message for r in caplog.records) == 1

        server_a = ModbusServer([a]).tcp(port=port_a)
        await server_a.start()
        n_a = len(col.values("a"))
        await col.wait(lambda: len(col.values("a")) > n_a, timeout=8)
        assert src_a.connected
        assert sum("dev-a' recovered" in r.message for r in caplog.records) == 1
    finally:
        await server_a.stop()
        await server_b.stop()


async def test_a_refused_register_is_skipped_and_reported_once(
        running: Callable[..., Collector], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "remotecal.source.modbus")
    image = DeviceImage(3)
    for a in range(6):
        image.set("holding", a, 10 + a)
    image.refused.add(("holding", 2))
    regs = [reg(f"r{a}", a) for a in range(6)]
    async with ModbusServer([image]).tcp() as server:
        [src] = ModbusSource.for_configs(
            [config("dev", f"tcp://127.0.0.1:{server.port}", regs, unit_id=3)], **TAGS)
        col = running([src])
        await col.wait(lambda: len(col.values("r5")) >= 5)
        for a in (0, 1, 3, 4, 5):
            assert set(col.values(f"r{a}")) == {10.0 + a}
        assert col.values("r2") == []
        [rej] = col.rejected()
        assert rej.topic == "modbus:3:holding:2" and "illegal data address" in rej.reason
        assert sum("one by one" in r.message for r in caplog.records) == 1
        assert src.connected

        image.refused.clear()
        await col.wait(lambda: bool(col.values("r2")))
        assert col.values("r2")[0] == 12.0
        assert any("modbus:3:holding:2 recovered" in r.message for r in caplog.records)


async def test_nan_and_inf_are_rejected_not_read(running: Callable[..., Collector]) -> None:
    image = DeviceImage(1)
    image.set("input", 0, math.nan, "float32")
    image.set("input", 2, 5.5, "float32")
    image.set("input", 4, math.inf, "float64")
    regs = [reg("nan", 0, kind="input", type="float32"), reg("ok", 2, kind="input", type="float32"),
            reg("inf", 4, kind="input", type="float64")]
    async with ModbusServer([image]).tcp() as server:
        [src] = ModbusSource.for_configs([config("dev", f"tcp://127.0.0.1:{server.port}", regs)], **TAGS)
        col = running([src])
        await col.wait(lambda: len(col.values("ok")) >= 3)
        assert col.values("nan") == [] and col.values("inf") == []
        reasons = sorted((r.topic, r.reason) for r in col.rejected())
        assert reasons == [("modbus:1:input:0", "float32 value is nan"),
                           ("modbus:1:input:4", "float64 value is inf")]


async def test_a_garbled_rtu_answer_marks_only_that_unit_down(
        pty_pair: tuple[str, str], running: Callable[..., Collector],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "remotecal.source.modbus")
    client_end, server_end = pty_pair
    one, two = DeviceImage(1), DeviceImage(2)
    one.set("holding", 0, 11)
    two.set("holding", 0, 22)
    url = f"rtu://{client_end}?baudrate=115200"
    async with ModbusServer([one, two]).rtu(server_end, baudrate=115200):
        cfgs = [config("one", url, [reg("one", 0)], unit_id=1, timeout=0.2),
                config("two", url, [reg("two", 0)], unit_id=2, timeout=0.2)]
        [bus] = ModbusSource.for_configs(cfgs, **TAGS)
        col = running([bus])
        await col.wait(lambda: bool(col.values("one")) and bool(col.values("two")))
        one.fault = "garble"
        await col.wait(lambda: bool(col.rejected("modbus:1")))
        [rej] = col.rejected("modbus:1")
        assert "CRC" in rej.reason
        n_two = len(col.values("two"))
        await col.wait(lambda: len(col.values("two")) >= n_two + 4)
        assert set(col.values("one")) == {11.0} and set(col.values("two")) == {22.0}
        one.fault = None
        n_one = len(col.values("one"))
        await col.wait(lambda: len(col.values("one")) > n_one, timeout=8)
        assert sum("'one' recovered" in r.message for r in caplog.records) == 1


async def test_samples_are_clock_aligned(running: Callable[..., Collector]) -> None:
    image = DeviceImage(1)
    image.set("holding", 0, 1)
    interval = 0.2
    async with ModbusServer([image]).tcp() as server:
        [src] = ModbusSource.for_configs(
            [config("dev", f"tcp://127.0.0.1:{server.port}", [reg("x", 0)], interval=interval)], **TAGS)
        col = running([src])
        await col.wait(lambda: len(col.values("x")) >= 8)
    times = [r.time_ns / 1e9 for _, b in col.batches for r in b.readings]
    ticks = [round(t / interval) for t in times]
    lateness = [t - k * interval for t, k in zip(times, ticks, strict=True)]
    # polled at the tick: a few ms after it (the median), never half an interval late (a poll
    # held up by a loaded machine is no failure; a clock drifting off the grid is)
    assert all(0 <= d < interval / 2 for d in lateness) and sorted(lateness)[len(lateness) // 2] < 0.03, lateness
    assert all(b - a == 1 for a, b in itertools.pairwise(ticks)), ticks  # no tick skipped or doubled


def test_next_tick() -> None:
    assert next_tick(10.05, 0.1) == pytest.approx(10.1)
    assert next_tick(10.0, 1.0) == 10.0
    assert next_tick(10.0, 1.0, after=10.0) == 11.0
    assert next_tick(59.9999, 60.0, after=0.0) == 60.0


def test_rtu_devices_on_one_port_share_a_source_and_must_agree() -> None:
    r = [reg("x", 0)]
    tcp = [config("t1", "tcp://127.0.0.1:502", r), config("t2", "tcp://127.0.0.1:502", r, unit_id=2)]
    rtu = [config("a", "rtu:///dev/ttyX?baudrate=9600", r, unit_id=1),
           config("b", "rtu:///dev/ttyX?baudrate=9600", r, unit_id=2),
           config("c", "rtu:///dev/ttyY", r)]
    sources = ModbusSource.for_configs(tcp + rtu, **TAGS)
    assert sorted(s.name for s in sources) == ["a+b", "c", "t1", "t2"]
    bus = next(s for s in sources if s.name == "a+b")
    assert bus.link.pause == pytest.approx(3.5 * 11 / 9600)
    with pytest.raises(ConfigError) as err:
        ModbusSource.for_configs([rtu[0], config("d", "rtu:///dev/ttyX?baudrate=19200", r, unit_id=1)], **TAGS)
    assert [p.split(":")[0] for p in err.value.problems] == ["sources.modbus[1].url", "sources.modbus[1].unit_id"]


def test_a_coil_with_a_wide_type_fails_at_start() -> None:
    with pytest.raises(ValueError, match="one bit"):
        config("d", "tcp://127.0.0.1:502", [reg("x", 0, kind="coil", type="float32")])


def test_the_sample_config_is_valid() -> None:
    import tomllib
    from pathlib import Path

    import gateway.sources.modbus as pkg

    with (Path(pkg.__file__).parent / "sample.toml").open("rb") as f:
        cfgs = [ModbusSourceConfig(**x) for x in tomllib.load(f)["sources"]["modbus"]]
    assert [s.name for s in ModbusSource.for_configs(cfgs, **TAGS)] == ["ref-hygrometer", "dut1+dut2"]
