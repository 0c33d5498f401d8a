"""Logging set-up for every remotecal command: one place, one format.

Lines go to stderr as `TIME LEVEL LOGGER: message` with the time in UTC (ISO 8601, ms).  Under
systemd (stderr is the journal's stream: `JOURNAL_STREAM` names it) the time is left out, as
journald stamps each line itself.  The libraries' chatter (httpx, pymodbus, asyncio) is kept
to warnings.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

__all__ = ["setup_logging"]

_NOISY = ("httpx", "httpcore", "pymodbus", "asyncio")


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z")


def _to_journald() -> bool:
    """stderr is journald's stream (systemd sets JOURNAL_STREAM=device:inode for it)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup_logging(level: str = "info") -> None:
    """Route every logger to stderr at `level` (debug, info, warning, error)."""
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(levelname)-7s %(name)s: %(message)s"
    handler.setFormatter(_UTCFormatter(fmt if _to_journald() else "%(asctime)s " + fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
