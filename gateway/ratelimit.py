"""Log lines that cannot flood: one line per key per period, with a count of the rest."""

from __future__ import annotations

import logging
import time

__all__ = ["ConnectionStateLog", "RateLimitedLog"]


class RateLimitedLog:
    """At most one line per `key` every `period_s`; the next line says how many were held back."""

    def __init__(self, logger: logging.Logger, period_s: float = 10.0):
        self._log = logger
        self._period = period_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        self._emit(logging.WARNING, key, msg, args, None)

    def error(self, key: str, msg: str, *args: object, exc_info: BaseException | None = None) -> None:
        """As `warning`, at ERROR, with `exc_info`'s traceback (a bug, not bad input)."""
        self._emit(logging.ERROR, key, msg, args, exc_info)

    def _emit(self, level: int, key: str, msg: str, args: tuple[object, ...],
              exc_info: BaseException | None) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            self._log.log(level, msg + " (and %d more like it since the last line)", *args, held,
                          exc_info=exc_info)
        else:
            self._log.log(level, msg, *args, exc_info=exc_info)


class ConnectionStateLog:
    """A connection's state ("connected", "unreachable", "refused by the broker", ...) logged
    once per change: `{name} ({host}:{port}): {state} - {detail}`, at INFO for "connected"
    and WARNING otherwise, so a broker that stays down does not fill the log."""

    def __init__(self, logger: logging.Logger, name: str, host: str, port: int):
        self._log = logger
        self._where = f"{name} ({host}:{port})"
        self.state: str | None = None

    def set(self, state: str, detail: str = "") -> None:
        if state != self.state:
            self.state = state
            line = f"{self._where}: {state}" + (f" - {detail}" if detail else "")
            (self._log.info if state == "connected" else self._log.warning)(line)
