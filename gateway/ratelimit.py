"""Log lines that cannot flood: one line per key per period, with a count of the rest."""

from __future__ import annotations

import logging
import time

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """At most one line per `key` every `period_s`; the next line says how many were held back."""

    def __init__(self, logger: logging.Logger, period_s: float = 10.0):
        self._log = logger
        self._period = period_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            self._log.warning(msg + " (and %d more like it since the last line)", *args, held)
        else:
            self._log.warning(msg, *args)
