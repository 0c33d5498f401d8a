"""Sinks: where the journal's records go.

A sink takes a batch and either succeeds or raises a classified `SinkError`:
`RetryableError` (try the same batch again after a backoff), `ThrottledError` (again after
`retry_after` seconds) or `PermanentError` (the server refuses these points; the runner
isolates the bad ones by splitting, quarantines them with the server's reason and delivers
the rest).  Delivery order, cursors and retries belong to the runner (`gateway.delivery`),
not to the sink.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.reading import Record

__all__ = ["Sink"]


class Sink(Protocol):
    """What the delivery runner needs of a sink."""

    name: str
    batch_size: int
    flush_interval_s: float

    async def write(self, records: Sequence[Record]) -> None:
        """Deliver every record, or raise a `gateway.errors.SinkError` subclass."""

    async def aclose(self) -> None:
        """Release connections."""
