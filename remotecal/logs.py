"""Logging set-up for every remotecal command: one place, one format.

Lines go to stderr as `TIME LEVEL LOGGER: message` with the time in UTC (ISO 8601, ms).  Under
systemd (stderr is the journal's stream: `JOURNAL_STREAM` names it) the time is left out, as
journald stamps each line itself, and each line starts with its syslog priority (`<3>` error,
`<4>` warning, `<6>` info, `<7>` debug; sd-daemon(3)), which journald takes off and keeps as
the entry's priority: `journalctl -u remotecal-gateway@lab1 -p warning` shows the warnings and
errors only.  Every line of a multi-line record (a traceback) carries its record's priority.
The libraries' chatter (httpx, asyncio) is kept to warnings, and pymodbus says nothing at any
level: its lines are per request ("No response received ..." at every poll of a silent device,
hex dumps of the last frames appended, "Repeating....") where remotecal logs a device's state
once per change (gateway.sources.modbus, firmware_bridge.modbus).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

__all__ = ["error_prefix", "setup_logging"]

_NOISY = ("httpx", "httpcore", "asyncio")
_SILENT = ("pymodbus",)


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z")


# sd-daemon(3) / syslog(3) priorities
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def _priority(level: int) -> int:
    """A level between the standard ones takes the priority of the one below it."""
    for floor in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if level >= floor:
            return _PRIORITY[floor]
    return _PRIORITY[logging.DEBUG]


class _JournaldFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prio = _priority(record.levelno)
        return "\n".join(f"<{prio}>{line}" for line in text.split("\n"))


def _to_journald() -> bool:
    """stderr is journald's stream (systemd sets JOURNAL_STREAM=device:inode for it)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def error_prefix() -> str:
    """`<3>` (error) where stderr is journald's stream, so a command's own error lines (a bad
    config at start) show under `journalctl -p err`; else nothing."""
    return "<3>" if _to_journald() else ""


def setup_logging(level: str = "info") -> None:
    """Route every logger to stderr at `level` (debug, info, warning, error)."""
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(levelname)-7s %(name)s: %(message)s"
    handler.setFormatter(_JournaldFormatter(fmt) if _to_journald() else _UTCFormatter("%(asctime)s " + fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for silent in _SILENT:
        logging.getLogger(silent).setLevel(logging.CRITICAL + 1)
