"""Capped, jittered exponential backoff (the "full jitter" of AWS's architecture blog)."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """`next()` gives the next delay in seconds; `reset()` after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0):
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self._current = initial

    def next(self) -> float:
        delay = random.uniform(0.5, 1.0) * self._current
        self._current = min(self._current * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        self._current = self.initial
