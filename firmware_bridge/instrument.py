"""A virtual instrument: sensors in a chamber, served with the register map of a profile.

    chamber = Chamber([Step(20, 50, 600), Step(30, 60, 600)], seed=1, speed=60)
    dut = VirtualInstrument(chamber, load_profile("generic-thr"), unit_id=1,
                            sensors={"temperature": Sensor("dut1-t", error=(0.1, 0.002), noise=0.01,
                                                           resolution=0.01, seed=1)})
    async with ModbusServer([dut.image()]).tcp() as server: ...

A measurand without its own sensor reads the chamber's true value.  `resistance` is the
IEC 60751 resistance at the indicated temperature, as a Pt100 transmitter reports it.

A controller profile's setpoints and run register (firmware_bridge.profile) are writable: a
write commands the chamber (clamped to the setpoint's min/max), and reading them gives what
the chamber holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from firmware_bridge.chamber import Chamber, Sensor, pt100_resistance
from firmware_bridge.modbus import DeviceImage
from firmware_bridge.profile import Profile

__all__ = ["VirtualInstrument"]


@dataclass
class VirtualInstrument:
    chamber: Chamber
    profile: Profile
    unit_id: int = 1
    sensors: dict[str, Sensor] = field(default_factory=dict)

    def measure(self, measurand: str, now: float | None = None) -> float:
        """The instrument's indication of `measurand` at wall-clock `now` (default: now)."""
        sim_t = self.chamber.sim_time(now)
        t, rh = self.chamber.state(now)
        if measurand in ("temperature", "resistance"):
            sensor = self.sensors.get("temperature")
            t_ind = sensor.indicate(t, sim_t) if sensor else t
            return t_ind if measurand == "temperature" else pt100_resistance(t_ind)
        if measurand == "relative_humidity":
            sensor = self.sensors.get("relative_humidity")
            return sensor.indicate(rh, sim_t) if sensor else rh
        raise ValueError(f"unknown measurand {measurand!r}")

    def image(self) -> DeviceImage:
        """The Modbus unit that serves this instrument's profile, live."""
        image = DeviceImage(self.unit_id)
        for r in self.profile.registers:
            image.bind(r.kind, r.address, partial(self.measure, r.measurand), r.type, r.byte_order,
                       r.scale, r.offset)
        for s in self.profile.setpoints:
            image.on_write("holding", s.address, partial(self._set, s.quantity, s.min, s.max), s.type,
                           s.byte_order, s.scale, s.offset)
            image.bind("holding", s.address, partial(self.held, s.quantity), s.type, s.byte_order,
                       s.scale, s.offset)
        run = self.profile.run
        if run is not None:
            image.on_write(run.kind, run.address, self._run)
            image.set(run.kind, run.address, float(self.chamber.running))
        return image

    def held(self, quantity: str) -> float:
        """The setpoint the chamber holds now."""
        t, rh = self.chamber.control or self.chamber.setpoint(self.chamber.sim_time())
        return t if quantity == "temperature" else rh

    def _set(self, quantity: str, lo: float | None, hi: float | None, value: float) -> None:
        if lo is not None:
            value = max(lo, value)
        if hi is not None:
            value = min(hi, value)
        if quantity == "temperature":
            self.chamber.command(temperature=value)
        else:
            self.chamber.command(humidity=value)

    def _run(self, value: float) -> None:
        self.chamber.command(running=bool(value))
