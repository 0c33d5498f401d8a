"""remotecal's own exceptions; library exceptions are translated at the edge.

    RemotecalError
    ├── ConfigError              a config file or value is wrong (exit 2)
    │   └── DataDirInUse         another process holds the data_dir (exit 2)
    ├── JournalError             the journal cannot be opened or written
    │   └── JournalFull          the journal reached its bound; input is refused
    ├── ControllerError          a chamber controller did not take or confirm a setpoint
    ├── PayloadError             one message or value is bad input (quarantined)
    └── SinkError                a sink could not take a batch
        ├── RetryableError       connection refused, timeout, 5xx: try again later
        │   └── ThrottledError   429/503 with Retry-After: try again after `retry_after` s
        └── PermanentError       the server refuses these points (400): never retry as is
            └── SchemaConflictError   ... because of their series' schema (a field type
                                      conflict): every point of the series, not a bad one
"""

from __future__ import annotations

import os
import socket

__all__ = [
    "ConfigError",
    "ControllerError",
    "DataDirInUse",
    "JournalError",
    "JournalFull",
    "PayloadError",
    "PermanentError",
    "RemotecalError",
    "RetryableError",
    "SchemaConflictError",
    "SinkError",
    "ThrottledError",
    "os_error_text",
]


class RemotecalError(Exception):
    """Base of every error remotecal raises on purpose."""


class ConfigError(RemotecalError):
    """A configuration problem; `problems` holds one line per key ("key.path: reason")."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class DataDirInUse(ConfigError):
    """Another process (named in the message) holds the data_dir: two would share one journal."""


class ControllerError(RemotecalError):
    """A chamber controller could not write or confirm a setpoint (gateway.controllers);
    `reason` is one line for the step that fails."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class JournalError(RemotecalError):
    """The journal cannot be opened or written."""


class JournalFull(JournalError):
    """The journal is at its configured bound and the policy is to refuse input."""


class PayloadError(RemotecalError):
    """One input message or value is invalid; `reason` is a short, stable text."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class SinkError(RemotecalError):
    """A sink could not deliver a batch."""


class RetryableError(SinkError):
    """Transient: the same batch may succeed later."""


class ThrottledError(RetryableError):
    """The server asked us to come back after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float):
        self.retry_after = retry_after
        super().__init__(message)


class PermanentError(SinkError):
    """The server refuses (some of) these points; `reason` is its own message."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class SchemaConflictError(PermanentError):
    """The server refuses these points for their series' schema - InfluxDB's "field type
    conflict": a field of another type in the same measurement and shard.  Every point of the
    series is refused until someone resolves it; the points themselves are good."""


def os_error_text(exc: OSError) -> str:
    """One line for an OSError: the file it names (if any) and the system's reason."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror or exc}"
    if not (exc.errno and exc.errno > 0):
        return str(exc) or type(exc).__name__
    reason = os.strerror(exc.errno)
    if exc.filename is not None:
        names = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else f"{exc.filename}"
        return f"{names}: {reason}"
    if exc.strerror and exc.strerror.lower() != reason.lower():
        return exc.strerror  # asyncio's bind errors name the address in strerror
    return reason
