"""Sources: where readings come from.

A source is an async context manager; `async for batch in source.batches()` yields
`SourceBatch`es: the readings one input message (or one poll) gave, the inputs it had to
reject with their reasons, and a callback the runtime calls once all of that is committed
to the journal (an MQTT source acknowledges the broker's message there).  The runtime never
awaits that commit before taking the next batch, so one fsync covers many messages.

Most sources read this gateway's own devices: their readings are tagged with the run going
on as they enter the journal.  The uplink source (gateway.sources.uplink) relays what other
gateways measured: its records (readings, health samples, points) carry their own site,
gateway and run, so they travel in `SourceBatch.records`, which the runtime journals as they
are.  A source may also say how it is doing beyond the runtime's counters: a
`health_fields()` method adds its fields to the gateway's `gateway_health` point, its
`gateway status` and its last log line; a `use_journal(journal)` method is given the open
journal before the source starts (the uplink takes back frames it kept there).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.reading import Reading, Record

__all__ = ["QueuedBatches", "Rejected", "Source", "SourceBatch"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """One bad input, kept in the quarantine: where it came from and why it was refused."""

    source: str
    reason: str
    topic: str = ""
    payload: bytes = b""
    time_ns: int = 0
    keep_whole: bool = False
    """Keep the whole payload, not its first KiB: input that may become good later (a frame
    of a gateway whose key is not installed yet) and must then be taken back."""


@dataclass(slots=True)
class SourceBatch:
    readings: list[Reading] = field(default_factory=list)
    """This gateway's readings: tagged with the run going on as they enter the journal."""
    rejected: list[Rejected] = field(default_factory=list)
    on_committed: Callable[[], None] | None = None
    dedupe: tuple[bytes, ...] | None = None
    """Identity of the input message (e.g. topic and payload) for redelivery detection."""
    redelivered: bool = False
    """The transport says this input may have been handed over before (MQTT DUP)."""
    records: list[Record] = field(default_factory=list)
    """Records relayed from other gateways, with their own site, gateway and run: journalled
    as they are (never retagged, not fed to this gateway's run engine), after `readings`."""
    on_failed: Callable[[], None] | None = None
    """Runs instead of `on_committed` if the commit fails for good (the journal closed
    before it could commit): a source that holds something for the batch lets it go."""


class Source(Protocol):
    name: str

    async def __aenter__(self) -> Source: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def batches(self) -> AsyncIterator[SourceBatch]: ...


class QueuedBatches:
    """For sources whose own tasks put batches on `self._queue`: `batches()` yields them, and a
    task that fails puts its exception there (`_task_done`), so the runtime sees it."""

    _queue: asyncio.Queue[SourceBatch | BaseException] | None = None

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._queue is not None:
            self._queue.put_nowait(task.exception())  # type: ignore[arg-type]

    async def batches(self) -> AsyncIterator[SourceBatch]:
        if self._queue is None:
            raise RuntimeError("use `async with source:` before iterating its batches")
        while True:
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
