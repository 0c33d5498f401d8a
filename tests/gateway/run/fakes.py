"""A fake controller, procedure and chamber for the run engine's unit tests (the virtual
chamber's controller profile is the integration tests')."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from gateway.controllers import ControllerError
from gateway.reading import Reading


@dataclass
class FakeController:
    """Applies setpoints to a `Chamber`; `mismatch` maps a setpoint key to the value read back."""

    chamber: Chamber
    name: str = "chamber"
    quantities: frozenset[str] = frozenset({"temperature"})
    mismatch: dict[float, float] = field(default_factory=dict)
    applied: list[dict[str, float]] = field(default_factory=list)
    running: list[bool] = field(default_factory=list)

    async def apply(self, setpoints: dict[str, float]) -> None:
        self.applied.append(dict(setpoints))
        t = setpoints.get("temperature")
        if t is not None and t in self.mismatch:
            raise ControllerError(f"temperature setpoint read back {self.mismatch[t]} after writing {t}")
        if t is not None:
            self.chamber.target = t

    async def set_running(self, on: bool) -> None:
        self.running.append(on)

    async def close(self) -> None:
        pass


@dataclass
class Chamber:
    """A reference thermometer in a first-order chamber, read at 1 Hz on a fake clock."""

    value: float = 20.0
    target: float = 20.0
    tau_s: float = 60.0
    noise: float = 0.002
    wobble: float = 0.0
    """Amplitude of a 300 s oscillation that never dies (a chamber that never settles)."""
    t_ns: int = 1_800_000_000 * 10**9
    seed: int = 1

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def tick(self, channel: str = "ref-t", run: str = "cfg") -> Reading:
        self.t_ns += 10**9
        self.value += (self.target - self.value) * (1 - math.exp(-1 / self.tau_s))
        v = self.value + self.rng.gauss(0, self.noise) + self.wobble * math.sin(self.t_ns / 1e9 / 300 * 2 * math.pi)
        return Reading("lab1", "gw01", run, channel, "temperature", "degC", "reference", v, self.t_ns)


@dataclass
class Step:
    index: int
    name: str
    setpoints: dict[str, float]
    settle_min_s: float = 30.0
    stability: Any = field(default_factory=lambda: {"window_s": 60.0, "max_std": 0.01,
                                                    "max_slope_per_min": 0.01, "min_duration_s": 0.0})
    record_s: float = 60.0
    max_s: float = 1800.0
    on_not_stable: str = "continue"
    direction: str | None = None
    final: bool = False


@dataclass
class Procedure:
    steps: list[Step]
    sha256: str = "ab" * 32


def procedure(*temps: float, **kw: Any) -> Procedure:
    return Procedure([Step(i, f"T{t:g}", {"temperature": t}, **kw) for i, t in enumerate(temps)])
