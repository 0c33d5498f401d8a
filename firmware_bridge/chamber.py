"""A virtual climatic chamber and the sensors in it, deterministic for a given seed.

The chamber follows a program of setpoint steps with a first-order response (time constant
`tau_s`), a small sinusoidal oscillation (the controller's hunting) and white noise.  Its
state is a closed-form function of simulated time, so any instant can be asked for in any
order and two runs with the same seed agree sample for sample.  `speed` scales time: at
speed 60 a one-hour plateau lasts a minute of wall-clock time.

A `Sensor` indicates true value + error(true value) + noise, quantised to its resolution;
the error curve is a polynomial of the true value, as a calibration certificate would
tabulate it.  Noise is drawn per `noise_step_s` of simulated time from a generator seeded
by (seed, sensor, step), so it does not depend on how often a device is polled.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Chamber", "Command", "Sensor", "Step", "pt100_resistance"]


@dataclass(frozen=True, slots=True)
class Step:
    """Hold `temperature` [degC] and `humidity` [%rh] for `duration_s` [s of simulated time]."""

    temperature: float
    humidity: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class Command:
    """From `sim_t` on, approach (`temperature`, `humidity`) from (`t0`, `rh0`); `control` is
    the setpoint commanded (the approach goes to ambient instead while stopped)."""

    sim_t: float
    temperature: float
    humidity: float
    t0: float
    rh0: float
    control: tuple[float, float] = (math.nan, math.nan)


def _noise(seed: int, key: str, k: int) -> float:
    """A standard normal deviate fixed by (seed, key, k)."""
    return random.Random(f"{seed}:{key}:{k}").gauss(0.0, 1.0)


@dataclass
class Chamber:
    """`chamber.state(now)` -> (temperature [degC], relative humidity [%rh]) at wall-clock `now`."""

    program: Sequence[Step]
    start_temperature: float = 20.0
    start_humidity: float = 50.0
    tau_s: float = 300.0
    oscillation: float = 0.02
    """Amplitude of the temperature hunting [degC]; humidity hunts 10 times as much in %rh."""
    oscillation_period_s: float = 120.0
    noise: float = 0.003
    """Standard deviation of the temperature noise [degC]; humidity's is 10 times as much in %rh."""
    noise_step_s: float = 1.0
    seed: int = 0
    speed: float = 1.0
    t0: float = field(default_factory=time.time)
    """Wall-clock start of the program [s since the epoch]."""
    ambient_temperature: float | None = None
    """What a stopped chamber drifts to [degC]; default start_temperature."""
    ambient_humidity: float | None = None
    """What a stopped chamber drifts to [%rh]; default start_humidity."""
    running: bool = True
    """The chamber's control runs (a stopped one drifts to ambient)."""
    commands: list[Command] = field(default_factory=list)
    control: tuple[float, float] | None = None
    """The setpoints last commanded (temperature, humidity); None: the program's."""

    def command(self, temperature: float | None = None, humidity: float | None = None,
                running: bool | None = None, now: float | None = None) -> None:
        """New setpoints and/or run state from wall-clock `now` (default: now): a first-order
        approach from the state at that instant (never before the last command)."""
        sim_t = self.sim_time(now)
        if self.commands:
            sim_t = max(sim_t, self.commands[-1].sim_t)
        t_sp, rh_sp = self.control if self.control is not None else self.setpoint(sim_t)
        self.control = (t_sp if temperature is None else float(temperature),
                        rh_sp if humidity is None else float(humidity))
        if running is not None:
            self.running = running
        t_now, rh_now = self.mean_state(sim_t)
        target = self.control if self.running else self.ambient
        self.commands.append(Command(sim_t, target[0], target[1], t_now, rh_now, self.control))

    @property
    def ambient(self) -> tuple[float, float]:
        return (self.start_temperature if self.ambient_temperature is None else self.ambient_temperature,
                self.start_humidity if self.ambient_humidity is None else self.ambient_humidity)

    def _command_at(self, sim_t: float) -> Command | None:
        for c in reversed(self.commands):
            if c.sim_t <= sim_t:
                return c
        return None

    def sim_time(self, now: float | None = None) -> float:
        """Simulated seconds since the start of the program."""
        return max(0.0, ((time.time() if now is None else now) - self.t0) * self.speed)

    def setpoint(self, sim_t: float) -> tuple[float, float]:
        if (c := self._command_at(sim_t)) is not None:
            return c.control
        elapsed = 0.0
        for step in self.program:
            if sim_t < elapsed + step.duration_s:
                return step.temperature, step.humidity
            elapsed += step.duration_s
        last = self.program[-1] if self.program else Step(self.start_temperature, self.start_humidity, 0.0)
        return last.temperature, last.humidity

    def mean_state(self, sim_t: float) -> tuple[float, float]:
        """The first-order response to the program (or to the last command), without
        oscillation or noise."""
        c = self._command_at(sim_t)
        if c is not None:
            decay = math.exp(-(sim_t - c.sim_t) / self.tau_s)
            return (c.temperature + (c.t0 - c.temperature) * decay,
                    c.humidity + (c.rh0 - c.humidity) * decay)
        t, rh = self.start_temperature, self.start_humidity
        elapsed = 0.0
        for i, step in enumerate(self.program):
            last = i == len(self.program) - 1  # the last setpoint holds after the program ends
            span = sim_t - elapsed if last else min(step.duration_s, sim_t - elapsed)
            if span <= 0:
                break
            decay = math.exp(-span / self.tau_s)
            t = step.temperature + (t - step.temperature) * decay
            rh = step.humidity + (rh - step.humidity) * decay
            elapsed += step.duration_s
        return t, rh

    def state(self, now: float | None = None) -> tuple[float, float]:
        sim_t = self.sim_time(now)
        t, rh = self.mean_state(sim_t)
        wave = math.sin(2 * math.pi * sim_t / self.oscillation_period_s)
        k = int(sim_t // self.noise_step_s)
        t += self.oscillation * wave + self.noise * _noise(self.seed, "chamber-t", k)
        rh += 10 * self.oscillation * wave + 10 * self.noise * _noise(self.seed, "chamber-rh", k)
        return t, min(100.0, max(0.0, rh))

    @property
    def duration_s(self) -> float:
        """Length of the program [s of simulated time]."""
        return sum(s.duration_s for s in self.program)


def pt100_resistance(t_c: float, r0: float = 100.0) -> float:
    """Resistance [ohm] of an IEC 60751 platinum resistor at `t_c` [degC] (Callendar-Van Dusen)."""
    a, b, c = 3.9083e-3, -5.775e-7, -4.183e-12
    r = 1 + a * t_c + b * t_c**2
    if t_c < 0:
        r += c * (t_c - 100) * t_c**3
    return r0 * r


@dataclass
class Sensor:
    """A sensor in the chamber: indication = true + polyval(error, true) + noise, to `resolution`."""

    name: str
    error: Sequence[float] = ()
    """Coefficients c0, c1, c2 ... of the error as a polynomial of the true value."""
    noise: float = 0.0
    resolution: float = 0.0
    seed: int = 0
    noise_step_s: float = 1.0

    def indicate(self, true_value: float, sim_t: float) -> float:
        value = true_value + sum(c * true_value**i for i, c in enumerate(self.error))
        if self.noise:
            value += self.noise * _noise(self.seed, self.name, int(sim_t // self.noise_step_s))
        if self.resolution:
            value = round(value / self.resolution) * self.resolution
        return value
