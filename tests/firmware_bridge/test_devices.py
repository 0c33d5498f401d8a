"""Virtual chamber, sensors and profiles, and an instrument read by the gateway's Modbus source."""

from __future__ import annotations

import asyncio

import pytest

from firmware_bridge.chamber import Chamber, Sensor, Step, pt100_resistance
from firmware_bridge.instrument import VirtualInstrument
from firmware_bridge.modbus import ModbusServer
from firmware_bridge.profile import PROFILES_DIR, gateway_registers, load_profile
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.source import ModbusSource

PROGRAM = [Step(20.0, 50.0, 600.0), Step(30.0, 70.0, 600.0)]


def quiet(**kw: object) -> Chamber:
    return Chamber(PROGRAM, oscillation=0.0, noise=0.0, t0=0.0, **kw)  # type: ignore[arg-type]


def test_chamber_follows_a_first_order_response() -> None:
    c = quiet(tau_s=100.0, start_temperature=10.0, start_humidity=40.0)
    t, rh = c.state(100.0)  # one time constant into the first step
    assert t == pytest.approx(20.0 - 10.0 * 0.36787944, abs=1e-6)
    assert rh == pytest.approx(50.0 - 10.0 * 0.36787944, abs=1e-6)
    t_end, _ = c.state(600.0)
    t, _ = c.state(700.0)  # one time constant into the second step
    assert t == pytest.approx(30.0 - (30.0 - t_end) * 0.36787944, abs=1e-6)
    assert c.state(1e6) == pytest.approx((30.0, 70.0))  # holds the last step


def test_speed_scales_time() -> None:
    slow, fast = quiet(), quiet(speed=60.0)
    assert fast.state(10.0) == pytest.approx(slow.state(600.0))


def test_noise_is_deterministic_per_seed() -> None:
    a, b, c = (Chamber(PROGRAM, seed=s, t0=0.0) for s in (1, 1, 2))
    samples = [5.0, 1.2, 300.7]
    assert [a.state(t) for t in samples] == [b.state(t) for t in reversed(samples)][::-1]
    assert [a.state(t) for t in samples] != [c.state(t) for t in samples]
    assert abs(a.state(300.0)[0] - quiet().state(300.0)[0]) < 0.1


def test_sensor_error_curve_noise_and_resolution() -> None:
    s = Sensor("dut", error=(0.1, 0.01), resolution=0.05)
    assert s.indicate(20.0, 0.0) == pytest.approx(20.3)  # 20 + 0.1 + 0.01 * 20
    assert s.indicate(20.01, 0.0) == pytest.approx(20.3)
    noisy = Sensor("dut", noise=0.1, seed=3)
    assert noisy.indicate(20.0, 5.2) == noisy.indicate(20.0, 5.9) != noisy.indicate(20.0, 6.1)


def test_pt100_resistance_matches_iec_60751_table() -> None:
    assert pt100_resistance(0.0) == pytest.approx(100.0)
    assert pt100_resistance(100.0) == pytest.approx(138.5055, abs=1e-4)
    assert pt100_resistance(-100.0) == pytest.approx(60.2558, abs=1e-4)


def test_profiles_load_and_translate_to_gateway_registers() -> None:
    names = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))
    assert names == ["generic-chamber", "generic-pt100", "generic-thr"]
    thr = load_profile("generic-thr")
    regs = gateway_registers(thr, prefix="dut1", role="dut")
    cfg = ModbusSourceConfig(name="x", url="tcp://127.0.0.1:1", registers=regs)
    assert [r.channel for r in cfg.registers] == ["dut1-t", "dut1-rh", "dut1-t-x100", "dut1-rh-x100"]
    with pytest.raises(FileNotFoundError, match="generic-thr"):
        load_profile("no-such-device")


async def test_a_virtual_instrument_served_over_tcp_reads_back_through_the_gateway() -> None:
    chamber = Chamber(PROGRAM, seed=7, speed=1.0)
    thr = load_profile("generic-thr")
    dut = VirtualInstrument(chamber, thr, unit_id=1, sensors={
        "temperature": Sensor("dut-t", error=(0.2,), resolution=0.001),
        "relative_humidity": Sensor("dut-rh", error=(-1.0,), resolution=0.01),
    })
    pt = VirtualInstrument(chamber, load_profile("generic-pt100"), unit_id=2)
    async with ModbusServer([dut.image(), pt.image()]).tcp() as server:
        url = f"tcp://127.0.0.1:{server.port}"
        cfgs = [
            ModbusSourceConfig(name="dut", url=url, unit_id=1, interval=0.1,
                               registers=gateway_registers(thr, prefix="dut", role="dut")),
            ModbusSourceConfig(name="ref", url=url, unit_id=2, interval=0.1,
                               registers=gateway_registers(pt.profile, prefix="ref", role="reference")),
        ]
        got: dict[str, float] = {}
        sources = ModbusSource.for_configs(cfgs, **{"site": "s", "gateway": "g", "run": "r"})

        async def pump(src: ModbusSource) -> None:
            async with src:
                async for b in src.batches():
                    got.update((r.channel, r.value) for r in b.readings)

        tasks = [asyncio.create_task(pump(s)) for s in sources]
        try:
            async with asyncio.timeout(5):
                while len(got) < 6:
                    await asyncio.sleep(0.05)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    t_true, rh_true = chamber.state()
    assert got["dut-t"] == pytest.approx(t_true + 0.2, abs=0.1)
    assert got["dut-rh"] == pytest.approx(rh_true - 1.0, abs=0.5)
    assert got["dut-t-x100"] == pytest.approx(got["dut-t"], abs=0.006)  # int16 copy, 0.01 resolution
    assert got["dut-rh-x100"] == pytest.approx(got["dut-rh"], abs=0.006)
    assert got["ref-r"] == pytest.approx(pt100_resistance(got["ref-t"]), abs=1e-3)


def test_a_command_starts_a_first_order_approach_from_the_current_state() -> None:
    c = quiet(tau_s=100.0, start_temperature=10.0, start_humidity=40.0)
    fixed = quiet(tau_s=100.0, start_temperature=10.0, start_humidity=40.0)
    assert c.state(150.0) == fixed.state(150.0)  # the program runs until the first command
    at = c.state(150.0)
    c.command(temperature=25.0, now=150.0)
    assert c.state(150.0) == pytest.approx(at)  # continuous: it starts where it was
    assert c.state(250.0) == pytest.approx((25.0 - (25.0 - at[0]) * 0.36787944, 50.0 - (50.0 - at[1]) * 0.36787944))
    assert c.state(100.0) == fixed.state(100.0)  # the past stays as it was
    c.command(running=False, now=250.0)  # stopped: it drifts to ambient (the start values)
    assert c.state(1e6) == pytest.approx((10.0, 40.0))
    assert c.control == (25.0, 50.0)
    c.command(running=True, humidity=60.0, now=300.0)
    assert c.state(1e6) == pytest.approx((25.0, 60.0))


def test_the_setpoint_of_each_instant_is_the_one_in_force_then() -> None:
    c = quiet()
    c.command(temperature=25.0, now=100.0)
    c.command(humidity=60.0, running=False, now=200.0)
    assert [c.setpoint(t) for t in (50.0, 150.0, 250.0)] == [(20.0, 50.0), (25.0, 50.0), (25.0, 60.0)]
