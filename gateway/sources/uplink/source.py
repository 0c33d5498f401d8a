"""`UplinkSource`: signed frames of other gateways -> batches for the gateway's journal.

    subscriber     $share/{group}/{prefix}/+/+/readings, QoS 1, MQTT 5, persistent session,
                   manual acks (gateway.sources.uplink.subscriber)
    receive        verify (gateway.ingest.verify), replay check (gateway.ingest.replay),
                   a batch for the runtime; the broker's message is acknowledged only once
                   the journal commit is done and the replay window took its number
    refused        refused frames kept whole (gateway.ingest.refused), acknowledged once kept
    requeue        refused frames taken back: when the keys change, and on request
    housekeeping   replay state saved each second, the keys folder listed

The runtime (gateway.runtime) runs it like any source: its supervisor, journal, full-journal
wait (a batch with `on_committed` waits: the broker keeps the frame), health point and
shutdown.  A frame's records carry their own site, gateway and run (`SourceBatch.records`):
the runtime never retags them with its own run.

A refused frame is counted by kind, logged (rate-limited), kept whole in the refused frames
(`remotecal ingest -c ... --quarantine`), and acknowledged once kept: the broker must not
hand it to us again.  Nothing of it is journalled, so nothing of it reaches InfluxDB - but a
frame refused for want of its gateway's key is taken back (verified, journalled, removed
there) once the keys change (`_requeue`): a key installed late loses no reading; and so is
any refused frame an operator asks for (`--requeue`).  Whatever else checking a message
raises (a bug) refuses that message as "malformed", is counted (`input_errors`) and logged
with its traceback: no message ends a worker.
A frame we already hold that comes back with DUP set is the broker's own redelivery (after
a reconnect, or a worker restart, before our ack got through): it is counted as
`redelivered` and acknowledged once the commit before it is done, not refused.
An accepted frame's records that cannot be written (`Frame.invalid`: not finite, no
channel) are quarantined one by one in its commit, counted as `invalid_records`; the rest
of the frame is journalled: one bad reading never costs the frame.

A worker may be killed at any instant: a frame is acknowledged only after its readings are
on disk, so the broker still holds every frame the worker had not committed.  What
Mosquitto 2.0 does with them: `SHARED_SUBSCRIPTION_NOTE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gateway.ingest.refused import RefusedFrames
from gateway.ingest.replay import ReplayGuard
from gateway.ingest.verify import REJECT_KINDS, FrameVerifier, Rejection
from gateway.keys import LISTING_S, KeyFolder
from gateway.mqtt.message import Message
from gateway.ratelimit import RateLimitedLog
from gateway.reading import Reading, Record
from gateway.sinks.mqtt.frame import Frame, readings_topic
from gateway.sources import QueuedBatches, Rejected, SourceBatch
from gateway.sources.uplink.config import UplinkSourceConfig
from gateway.sources.uplink.subscriber import IngestSubscriber

if TYPE_CHECKING:
    from gateway.journal import Journal

__all__ = ["UplinkSource"]

log = logging.getLogger("remotecal.ingest")

REQUEUE_RETRY_S = 30.0
"""A requeue whose commit failed is tried again after this long."""
REQUESTS_S = 1.0
"""Frames an operator asked to requeue are looked for this often."""


class _Kept(Protocol):
    """A kept frame: a row of the refused frames, or of the journal's quarantine."""

    @property
    def id(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class UplinkSource(QueuedBatches):
    """One ingest worker's input: subscriber, verifier, replay guard, refused frames."""

    def __init__(self, cfg: UplinkSourceConfig, state_dir: Path) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.state_dir = state_dir
        self._requeue_wanted = asyncio.Event()
        self._requeue_wanted.set()  # at start: keys may have come while this worker was down
        keys = KeyFolder(cfg.keys)
        keys.load()
        self.verifier = FrameVerifier(cfg.topic_prefix, keys, on_change=self._requeue_wanted.set)
        self.replay = ReplayGuard(state_dir / "replay.db", cfg.replay_window)
        self.refused = RefusedFrames(state_dir / "refused.db", cfg.refused_max_size)
        self.subscriber = IngestSubscriber(cfg)
        self.journal: Journal | None = None
        """The gateway's journal (`use_journal`): frames an ingest from before refused.db kept
        in its quarantine are taken back from there."""
        self.accepted_frames = 0
        self.redelivered = 0
        self.requeued = 0
        self.rejected: Counter[str] = Counter({k: 0 for k in REJECT_KINDS})
        self.input_errors = 0
        """Exceptions other than a Rejection while checking a frame: bugs, each frame refused."""
        self.invalid_records = 0
        """Records of accepted frames that cannot be written (not finite, no channel): each one
        quarantined with its reason; the rest of its frame is journalled."""
        self._rejects_log = RateLimitedLog(log)
        self._errors_log = RateLimitedLog(log, 60.0)
        self._tasks: list[asyncio.Task[None]] = []
        self._refused_writer: asyncio.Task[None] | None = None
        self._received = asyncio.Event()
        """Set once no message is taken any more: the refused frames' writer drains, then ends."""

    @property
    def connected(self) -> bool:
        return self.subscriber.link.connected

    def use_journal(self, journal: Journal) -> None:
        self.journal = journal

    async def __aenter__(self) -> UplinkSource:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.replay.open()
        self.refused.open()
        self._queue = asyncio.Queue()
        log.info("uplink %r, ingest %s: %d gateway key(s), %s, state in %s", self.name, self.cfg.worker,
                 len(self.verifier.keys), self.subscriber.topic_filter, self.state_dir)
        self._refused_writer = asyncio.create_task(self.refused.run(self._received),
                                                   name=f"{self.name}-refused")
        self._refused_writer.add_done_callback(self._task_done)
        for coro, what in ((self._receive(), "receive"), (self._requeue_loop(), "requeue"),
                           (self._every(self.replay.save, 1.0), "replay-save"),
                           # Each frame looks at the keys folder; this finds keys that came while none did.
                           (self._every(self._refresh_keys, LISTING_S), "keys")):
            task = asyncio.create_task(coro, name=f"{self.name}-{what}")
            task.add_done_callback(self._task_done)
            self._tasks.append(task)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """The runtime committed what it took (its acks ran); what is still queued stays with the
        broker.  The refused frames' writer drains (and acks), then the link and the stores close."""
        try:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._received.set()
            if self._refused_writer is not None:
                with contextlib.suppress(Exception):
                    await self._refused_writer
        finally:
            await self.subscriber.stop()
            await self.replay.close()
            self.refused.close()

    def health_fields(self) -> dict[str, float | int]:
        """This worker's counters, in the gateway's `gateway_health` point: `rejected` adds the
        refused frames to the gateway's count, `rejected_<kind>` says which."""
        fields: dict[str, float | int] = {
            "rejected": sum(self.rejected.values()), "accepted_frames": self.accepted_frames,
            "redelivered": self.redelivered, "requeued_frames": self.requeued,
            "input_errors": self.input_errors, "invalid_records": self.invalid_records,
            "refused_deleted": self.refused.deleted,
        }
        fields |= {f"rejected_{_field(k)}": n for k, n in self.rejected.items()}
        return fields

    async def _every(self, fn: Callable[[], Awaitable[None]], every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await fn()

    async def _refresh_keys(self) -> None:
        # On the loop, like the look each frame takes: a folder of small files, one owner.
        self.verifier.refresh()

    async def _receive(self) -> None:
        self.subscriber.start()
        while True:
            self.on_message(await self.subscriber.next())

    def on_message(self, m: Message) -> None:
        """One message of the subscription: its batch is queued for the runtime, or it is refused."""
        assert self._queue is not None, "use `async with source:` first"
        if (batch := self._handle(m)) is not None:
            self._queue.put_nowait(batch)

    def _handle(self, m: Message) -> SourceBatch | None:
        """The batch of one message, or None if it is refused (kept whole, acked once kept)."""
        ack = lambda: self.subscriber.ack(m)  # noqa: E731 - one line, read right here
        try:
            frame = self._check(m)
        except Rejection as exc:
            if exc.kind == "replayed" and m.dup:
                # The broker's own redelivery (a publisher cannot set DUP on what we receive,
                # MQTT 3.3.1.1) of a frame we hold: an ack we could not send, or a frame
                # still being committed.  Ack it once the commits before it are done.
                self.redelivered += 1
                return SourceBatch(on_committed=ack)
            self._refuse(m, exc)
            return None

        def accepted() -> None:
            self.accepted_frames += 1
            ack()

        return self._frame_batch(frame, m.topic, guarded=True, then=accepted)

    def _check(self, m: Message) -> Frame:
        """The verified frame of `m`, or Rejection - also for whatever else checking it raised
        (a bug: counted as `input_errors` and logged with its traceback, rate-limited), so no
        message can end the worker."""
        try:
            if m.error is not None:
                raise Rejection("malformed", m.error)
            frame = self.verifier.check(m.topic, m.payload)
            why = self.replay.check(frame.site, frame.gateway, frame.seq, frame.epoch)
            if why is not None:
                kind, _, detail = why.partition(": ")
                raise Rejection(kind, detail)
            return frame
        except Rejection:
            raise
        except Exception as exc:
            self.input_errors += 1
            self._errors_log.error("check", "ingest: checking a frame on %r raised %s (a bug); the frame is "
                                   "refused with it", m.topic, type(exc).__name__, exc_info=exc)
            raise Rejection("malformed", f"internal error: {type(exc).__name__}: {exc}"[:500]) from None

    def _refuse(self, m: Message, exc: Rejection) -> None:
        """Count, log (rate-limited) and keep a refused frame whole (`gateway.ingest.refused`),
        acknowledged once that is committed: a frame refused for want of a key is taken back
        by `_requeue` once the key is there, any other when an operator requeues it."""
        self.rejected[exc.kind] += 1
        self._rejects_log.warning(exc.kind, "ingest: refused a frame on %r: %s", m.topic, exc.reason)
        self.refused.submit(exc.kind, m.topic, exc.reason, m.payload, m.received_ns,
                            on_committed=lambda: self.subscriber.ack(m))

    def _invalid(self, frame: Frame, topic: str, record: Record, why: str) -> Rejected:
        """The quarantine row of one record of `frame` that cannot be written (counted, logged)."""
        self.invalid_records += 1
        what = record.channel if isinstance(record, Reading) else type(record).__name__
        reason = f"invalid record: {why} ({what!r} in frame {frame.seq} of {frame.site}/{frame.gateway})"
        self._rejects_log.warning("invalid record", "ingest: %s; quarantined, the rest of the frame is "
                                  "journalled", reason)
        return Rejected("ingest", reason[:500], topic, repr(record).encode(), time.time_ns())

    def _frame_batch(self, frame: Frame, topic: str, *, guarded: bool, then: Callable[[], None],
                     failed: Callable[[], None] | None = None) -> SourceBatch:
        """A verified frame's records with its redelivery key; `then` runs at the commit.

        Its records that cannot be written (`Frame.invalid`) are quarantined one by one in the
        same commit, each with its reason: the frame's other readings are journalled.

        `guarded`: the replay window holds its number while it is committed and remembers it
        after (released if the commit fails).  While the journal is full the runtime keeps
        the batch waiting: the frame is not acknowledged, the broker keeps it."""
        site, gw, seq, epoch = frame.site, frame.gateway, frame.seq, frame.epoch

        def committed() -> None:
            if guarded:
                self.replay.accept(site, gw, seq, epoch)
            then()

        def not_committed() -> None:
            if guarded:
                self.replay.release(site, gw, seq, epoch)
            if failed is not None:
                failed()

        rejected = [self._invalid(frame, topic, r, why) for r, why in frame.invalid]
        if guarded:
            self.replay.reserve(site, gw, seq, epoch)
        # With the source named "uplink" (as `remotecal ingest` names it), the journal's key is
        # the one the ingest had before it was a source; epoch 0 (frames from before epochs)
        # keeps the key it had.
        dedupe = (site.encode(), gw.encode(), seq.to_bytes(8, "little"),
                  *([epoch.to_bytes(8, "little")] if epoch else []))
        return SourceBatch(rejected=rejected, on_committed=committed, dedupe=dedupe, redelivered=True,
                           records=list(frame.records), on_failed=not_committed)

    async def _requeue_loop(self) -> None:
        """Frames waiting for a key: at start and whenever the keys change.  Frames an operator
        asked to requeue (`remotecal ingest --requeue`): looked for each second."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requeue_wanted.wait(), REQUESTS_S)
            keys_changed = self._requeue_wanted.is_set()
            self._requeue_wanted.clear()
            await self._requeue(waiting=keys_changed)

    async def _requeue(self, *, waiting: bool = True) -> None:
        """Take back the refused frames (kept whole) that verify now: those that waited for
        their gateway's key (`waiting`), and those an operator asked for.

        They were received, not replayed: the replay window does not apply to them (a frame
        "too old" for it is still taken), only the journal's redelivery keys, which drop a
        frame already journalled.  Each leaves the refused frames once committed (a crash
        before that journals it again at the next pass, and the keys drop it).  One still
        refused stays, with its reason now."""
        # Only the rows of gateways that have a key now: the others would be refused again.
        topics = [readings_topic(self.cfg.topic_prefix, site, gw) for site, gw in self.verifier.keys]
        passes: list[tuple[str, Callable[[int], Awaitable[Sequence[_Kept]]],
                           Callable[[Sequence[int]], Awaitable[None]], bool]] = [
            ("an operator asked to requeue", lambda after: self.refused.requested(after=after),
             self.refused.remove, True)]
        if waiting:
            passes.append(("refused earlier for want of a key",
                           lambda after: self.refused.waiting(topics, after=after),
                           self.refused.remove, True))
            if (journal := self.journal) is not None:  # kept by an ingest from before refused.db
                passes.append(("quarantined earlier for want of a key",
                               lambda after: journal.quarantined("ingest", "unknown gateway:", topics,
                                                                 after=after),
                               journal.release_quarantined, False))
        for what, fetch, release, update in passes:
            if not await self._take_back(what, fetch, release, update):
                return

    async def _take_back(self, what: str, fetch: Callable[[int], Awaitable[Sequence[_Kept]]],
                         release: Callable[[Sequence[int]], Awaitable[None]], update: bool) -> bool:
        """One pass of `_requeue`; False if a commit failed (tried again in REQUEUE_RETRY_S)."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        after = 0
        while rows := await fetch(after):
            after = rows[-1].id
            taken: list[int] = []
            still: list[tuple[int, str, str]] = []
            waits: list[asyncio.Future[None]] = []
            for row in rows:
                try:
                    frame = self.verifier.check(row.topic, row.payload)
                except Rejection as exc:
                    still.append((row.id, exc.kind, exc.reason))
                    continue
                except Exception as exc:
                    self.input_errors += 1
                    self._errors_log.error("requeue", "ingest: checking a refused frame again raised %s "
                                           "(a bug); it stays", type(exc).__name__, exc_info=exc)
                    still.append((row.id, "malformed", f"internal error: {type(exc).__name__}: {exc}"[:500]))
                    continue
                fresh = self.replay.check(frame.site, frame.gateway, frame.seq, frame.epoch) is None
                done: asyncio.Future[None] = loop.create_future()
                self._queue.put_nowait(self._frame_batch(
                    frame, row.topic, guarded=fresh, then=functools.partial(self._requeued, done),
                    failed=functools.partial(_fail, done)))
                waits.append(done)
                taken.append(row.id)
            if update:
                await self.refused.refused_again(still)
            if still:
                log.info("ingest: %d frame(s) %s are still refused: %s", len(still), what, still[0][2])
            if waits:
                outcomes = await asyncio.gather(*waits, return_exceptions=True)
                done_ids = [i for i, o in zip(taken, outcomes, strict=True)
                            if not isinstance(o, BaseException)]
                await release(done_ids)
                log.info("ingest: %d frame(s) %s verify now: journalled", len(done_ids), what)
                if len(done_ids) < len(taken):
                    # A commit failed (the journal logged why): those rows stay; try again later.
                    log.warning("ingest: %d requeued frame(s) could not be journalled; they stay and are "
                                "tried again in %.0f s", len(taken) - len(done_ids), REQUEUE_RETRY_S)
                    loop.call_later(REQUEUE_RETRY_S, self._requeue_wanted.set)
                    return False
        return True

    def _requeued(self, done: asyncio.Future[None]) -> None:
        self.requeued += 1
        if not done.done():
            done.set_result(None)


def _fail(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_exception(RuntimeError("the journal did not commit it"))


def _field(kind: str) -> str:
    """A rejection kind as a field name: no spaces (`unknown gateway` -> `unknown_gateway`)."""
    return kind.replace(" ", "_")
