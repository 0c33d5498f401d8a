"""remotecal's own exceptions; library exceptions are translated at the edge.

    RemotecalError
    ├── ConfigError              a config file or value is wrong (exit 2)
    ├── JournalError             the journal cannot be opened or written
    │   └── JournalFull          the journal reached its bound; input is refused
    ├── PayloadError             one message or value is bad input (quarantined)
    └── SinkError                a sink could not take a batch
        ├── RetryableError       connection refused, timeout, 5xx: try again later
        │   └── ThrottledError   429/503 with Retry-After: try again after `retry_after` s
        └── PermanentError       the server refuses these points (400): never retry as is
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "JournalError",
    "JournalFull",
    "PayloadError",
    "PermanentError",
    "RemotecalError",
    "RetryableError",
    "SinkError",
    "ThrottledError",
]


class RemotecalError(Exception):
    """Base of every error remotecal raises on purpose."""


class ConfigError(RemotecalError):
    """A configuration problem; `problems` holds one line per key ("key.path: reason")."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


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
