"""What every controller kind does alike with a step's setpoints: check them all before
anything is sent, and read each one back until it matches or `confirm_timeout` has passed.

(Not in the package's __init__: that one reaches the kinds through gateway.registry, and the
kinds import this.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from gateway.errors import ControllerError

__all__ = ["CONFIRM_INTERVAL", "Bounded", "check_setpoints", "confirm"]

CONFIRM_INTERVAL = 0.1
"""Seconds between read-backs while a controller's `confirm_timeout` lasts."""


class Bounded(Protocol):
    """A controller block's setpoint: its optional range."""

    @property
    def min(self) -> float | None: ...
    @property
    def max(self) -> float | None: ...


def check_setpoints(setpoints: Mapping[str, float], bounds: Mapping[str, Bounded]) -> None:
    """A controller's check of a step's setpoints, every one before anything is sent:
    ControllerError for a quantity it does not write (`bounds` has a setpoint of each it
    writes) or a value outside its setpoint's min..max."""
    unknown = sorted(set(setpoints) - set(bounds))
    if unknown:
        raise ControllerError(f"writes no {' or '.join(unknown)} setpoint "
                              f"(only {', '.join(sorted(bounds))})")
    for q, value in setpoints.items():
        sp = bounds[q]
        if (sp.min is not None and value < sp.min) or (sp.max is not None and value > sp.max):
            raise ControllerError(f"{q} setpoint {value:g} is outside its "
                                  f"range {_bound(sp.min)}..{_bound(sp.max)}")


def _bound(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


async def confirm(read_back: Callable[[], Awaitable[float]], sent: float, tolerance: float,
                  timeout: float) -> float:
    """A setpoint's read-back: read it until it is within `tolerance` of `sent` or `timeout`
    seconds have passed (every CONFIRM_INTERVAL s; a chamber may take a moment to show a new
    setpoint); the last value read, which the caller compares (NaN never matches)."""
    deadline = time.monotonic() + timeout
    while True:
        back = await read_back()
        if abs(back - sent) <= tolerance or time.monotonic() >= deadline:
            return back
        await asyncio.sleep(CONFIRM_INTERVAL)
