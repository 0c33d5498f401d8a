"""The virtual SCPI thermometer: what it answers, over TCP."""

from __future__ import annotations

import asyncio

from firmware_bridge.chamber import Chamber, Sensor, Step
from firmware_bridge.scpi import ScpiThermometer


def chamber() -> Chamber:
    return Chamber([Step(23.0, 45.0, 3600.0)], start_temperature=23.0, start_humidity=45.0, seed=4,
                   t0=1_700_000_000.0)


def test_answers() -> None:
    th = ScpiThermometer(chamber(), idn="acme,T1,42,2.0")
    assert th.answer("*idn?\r\n") == "acme,T1,42,2.0"
    value = th.answer("FETC?")
    assert value is not None and value.startswith("+") and abs(float(value) - 23.0) < 0.1
    for q in ("FETCH?", "read?", "MEAS:TEMP?", "MEASURE:TEMPERATURE?"):
        assert th.answer(q) is not None
    assert th.answer("SYST:ERR?") == '0,"No error"'
    assert th.answer("BOGUS") is None
    assert th.answer("SYST:ERR?") == '-113,"Undefined header"'
    assert th.answer("BOGUS") is None and th.answer("*CLS") is None
    assert th.answer("SYST:ERR?") == '0,"No error"'
    assert th.answer("") is None and th.answer("*RST") is None


def test_sensor_error_and_resolution() -> None:
    ch = chamber()
    th = ScpiThermometer(ch, Sensor("ref", error=(0.25,), resolution=0.01), digits=2)
    now = ch.t0 + 100
    assert th.measure(now) == round((ch.state(now)[0] + 0.25) / 0.01) * 0.01


async def test_over_tcp_with_faults() -> None:
    async with ScpiThermometer(chamber()) as th:
        reader, writer = await asyncio.open_connection("127.0.0.1", th.port)
        writer.write(b"*IDN?\nFETC?\r\n")
        assert (await reader.readline()).startswith(b"remotecal,VirtualThermometer")
        assert abs(float(await reader.readline()) - 23.0) < 0.1
        th.fault = "garble"
        writer.write(b"FETC?\n")
        assert await reader.readline() == b"#?!garbled\n"
        th.fault = "silent"
        writer.write(b"FETC?\n")
        try:
            await asyncio.wait_for(reader.readline(), 0.3)
            raise AssertionError("a silent instrument answered")
        except TimeoutError:
            pass
        writer.close()
    assert th.queries == 4


async def test_stream() -> None:
    async with ScpiThermometer(chamber(), stream=0.05) as th:
        reader, writer = await asyncio.open_connection("127.0.0.1", th.port)
        lines = [await asyncio.wait_for(reader.readline(), 2) for _ in range(3)]
        assert all(abs(float(x) - 23.0) < 0.1 for x in lines)
        writer.close()
