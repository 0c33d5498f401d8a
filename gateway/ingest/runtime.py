"""`remotecal ingest`: signed frames from the central broker -> own journal -> InfluxDB.

    subscriber (paho thread)   $share/{group}/{prefix}/+/+/readings, QoS 1, MQTT 5,
                               persistent session (clean start off, session expiry),
                               manual acks
    pump                       verify (gateway.ingest.verify), replay check
                               (gateway.ingest.replay), journal.submit; the broker's
                               message is acknowledged only once the journal commit is done
    delivery tasks             journal -> InfluxDB: the gateway's own sinks and runner
    housekeeping               replay state saved each second, journal trimmed

A refused frame is counted by kind, logged (rate-limited), kept whole in the refused frames
(`gateway.ingest.refused`, `remotecal ingest -c ... --quarantine`), and acknowledged once
kept: the broker must not hand it to us again.  Nothing of it is journalled, so nothing of
it reaches InfluxDB - but a frame refused for want of its gateway's key is taken back
(verified, journalled, removed there) once the keys change (`_requeue`): a key installed
late loses no reading; and so is any refused frame an operator asks for (`--requeue`).
Whatever else checking a message raises (a bug) refuses that message as
"malformed", is counted (`input_errors`) and logged with its traceback: no message ends a
worker.
A frame we already hold that comes back with DUP set is the broker's own redelivery (after
a reconnect, or a worker restart, before our ack got through): it is counted as
`redelivered` and acknowledged, not quarantined.
An accepted frame's records that cannot be written (`Frame.invalid`: not finite, no
channel) are quarantined one by one in its commit, counted as `invalid_records`; the rest
of the frame is journalled: one bad reading never costs the frame.

A worker may be killed at any instant: a frame is acknowledged only after its readings are
on disk, so the broker still holds every frame the worker had not committed.  What
Mosquitto 2.0 does with them is measured by tests/gateway/uplink/test_uplink_end_to_end.py:
see `SHARED_SUBSCRIPTION_NOTE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.delivery import DeliveryRunner
from gateway.errors import JournalFull
from gateway.ingest.config import CentralConfig
from gateway.ingest.refused import RefusedFrames
from gateway.ingest.replay import ReplayGuard
from gateway.ingest.verify import REJECT_KINDS, FrameVerifier, Rejection
from gateway.journal import Journal, dedupe_key
from gateway.keys import LISTING_S, KeyFolder
from gateway.ratelimit import RateLimitedLog
from gateway.reading import HealthSample, Reading, Record
from gateway.sdnotify import notify, watchdog_period
from gateway.sinks.influxdb.sink import InfluxDBSink
from gateway.sinks.mqtt.frame import Frame, readings_topic
from gateway.sinks.mqtt.link import LinkSettings, MqttLink, Receiver
from gateway.sources import Rejected
from gateway.sources.mqtt.message import Message

__all__ = ["SHARED_SUBSCRIPTION_NOTE", "Ingest", "IngestSubscriber"]

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

SHARED_SUBSCRIPTION_NOTE = """\
Measured with Mosquitto 2.0.11 (two MQTT 5 members with persistent sessions, one SIGKILLed
holding unacknowledged messages): the broker does NOT hand the dead member's unacknowledged
messages to the live one, and it keeps routing every other new message to the dead member's
session (round-robin goes on over both sessions).  All of them are delivered, the old ones
with DUP set, when the dead worker reconnects with the same client id.  Nothing is lost,
but half the stream waits: restart a dead worker promptly (systemd Restart=always), and in
any case before `session_expiry`.  tests/gateway/uplink/test_uplink_end_to_end.py checks it.

Also measured: after a restart of Mosquitto 2.0.11 itself, a persistent session keeps its
queued messages but not its shared subscriptions (plain ones are restored) until the worker
reconnects and subscribes again.  Meanwhile a gateway's PUBACK says "no matching
subscribers" and the uplink keeps the frame and retries (gateway.sinks.mqtt.sink), so
nothing is lost - unless some other client subscribes to the readings topics on the central
broker: then the broker accepts the frames for that client alone.  Keep the readings topics
to the ingest workers.
"""


class IngestSubscriber:
    """The shared subscription; messages reach the event loop through a bounded `Receiver`."""

    def __init__(self, cfg: CentralConfig, buffer: int = 10_000) -> None:
        b, i = cfg.broker, cfg.ingest
        self.topic_filter = f"$share/{i.group}/{i.topic_prefix}/+/+/readings"
        self._wake = asyncio.Event()
        self.link = MqttLink(
            LinkSettings(
                host=b.host, port=b.port, client_id=b.client_id or f"remotecal-ingest-{i.worker}",
                username=b.username, password=b.password, tls=b.tls, use_tls=b.uses_tls,
                keepalive=b.keepalive, reconnect_min=b.reconnect_min, reconnect_max=b.reconnect_max,
                persistent=True, session_expiry_s=int(b.session_expiry), manual_ack=True,
                max_inflight=b.max_inflight,
            ),
            f"ingest {i.worker!r}", log, on_connected=self._subscribe,
        )
        self._receiver = Receiver(self.link, buffer, self._wake.set)

    def _subscribe(self, client: mqtt.Client, _session_present: bool) -> None:
        client.subscribe(self.topic_filter, options=SubscribeOptions(qos=1))

    def start(self) -> None:
        self._receiver.start()

    async def stop(self) -> None:
        await self._receiver.stop()

    def ack(self, m: Message) -> None:
        self._receiver.ack(m)

    async def next(self, stop: asyncio.Event) -> Message | None:
        """The next message, or None once `stop` is set."""
        while not stop.is_set():
            got = self._receiver.take(1)
            if got:
                return got[0]
            self._wake.clear()
            if not self._receiver.waiting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.2)
        return None


class Ingest:
    """One ingest worker: wires subscriber, verifier, replay guard, journal and sinks."""

    def __init__(self, cfg: CentralConfig) -> None:
        self.cfg = cfg
        i, j = cfg.ingest, cfg.journal
        self._requeue_wanted = asyncio.Event()
        self._requeue_wanted.set()  # at start: keys may have come while this worker was down
        keys = KeyFolder(i.keys)
        keys.load()
        self.verifier = FrameVerifier(i.topic_prefix, keys, on_change=self._requeue_wanted.set)
        self.journal = Journal(
            i.data_dir / "journal.db", cfg.sink_names(), fsync=j.fsync, max_size=j.max_size,
            on_full=j.on_full, commit_interval=j.commit_interval, quarantine_max=j.quarantine_max,
        )
        self.replay = ReplayGuard(i.data_dir / "replay.db", i.replay_window)
        self.refused = RefusedFrames(i.data_dir / "refused.db", i.refused_max_size)
        names = cfg.sink_names()
        self.sinks = [InfluxDBSink(s, name=n) for s, n in zip(cfg.sinks.influxdb, names, strict=True)]
        self.runners = [DeliveryRunner(self.journal, s, max_retry_interval=c.max_retry_interval)
                        for s, c in zip(self.sinks, cfg.sinks.influxdb, strict=True)]
        self.subscriber = IngestSubscriber(cfg)
        self.accepted_frames = 0
        self.redelivered = 0
        self.requeued = 0
        self.rejected: Counter[str] = Counter({k: 0 for k in REJECT_KINDS})
        self.input_errors = 0
        """Exceptions other than a Rejection while checking a frame: bugs, each frame quarantined."""
        self.invalid_records = 0
        """Records of accepted frames that cannot be written (not finite, no channel): each one
        quarantined with its reason; the rest of its frame is journalled."""
        self._rejects_log = RateLimitedLog(log)
        self._errors_log = RateLimitedLog(log, 60.0)
        self._stop = asyncio.Event()
        self._pumped = asyncio.Event()
        """Set once the pump ended: the refused frames' writer drains, then ends."""

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stopping: no new frames, then the sinks drain for up to %.0f s",
                     self.cfg.ingest.shutdown_grace)
            notify("STOPPING=1", "STATUS=stopping: the sinks drain")
            self._stop.set()
            self._requeue_wanted.set()  # wakes the requeue loop to end

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        i = self.cfg.ingest
        i.data_dir.mkdir(parents=True, exist_ok=True)
        log.info("ingest %s: %d gateway key(s), %s, journal %s", i.worker, len(self.verifier.keys),
                 self.subscriber.topic_filter, self.journal.path)
        await self.journal.open()
        self.replay.open()
        self.refused.open()
        try:
            async with asyncio.TaskGroup() as tg:
                for r in self.runners:
                    tg.create_task(r.run(), name=f"deliver-{r.sink.name}")
                pump = tg.create_task(self._pump(), name="pump")
                tg.create_task(self.refused.run(self._pumped), name="refused")
                tg.create_task(self._periodic(self.replay.save, 1.0), name="replay-save")
                # Each frame looks at the keys folder; this finds keys that came while none did.
                tg.create_task(self._periodic(self._refresh_keys, LISTING_S), name="keys")
                tg.create_task(self._requeue_loop(), name="requeue")
                tg.create_task(self._periodic(self.journal.housekeeping, 600.0), name="housekeeping")
                tg.create_task(self._periodic(self._health, i.health_interval), name="health")
                if (period := watchdog_period()) is not None:  # pings from the event loop
                    tg.create_task(self._periodic(_watchdog, period), name="watchdog")
                notify("READY=1", f"STATUS=running: {len(self.verifier.keys)} gateway key(s)")
                await self._stop.wait()
                await pump
                self._pumped.set()
                await self._health()
                for r in self.runners:
                    r.stop(i.shutdown_grace)
        finally:
            for s in self.sinks:
                await s.aclose()
            await self.journal.close()
            await self.replay.close()
            self.refused.close()
            log.info("ingest stopped: %s", self.counters())

    def counters(self) -> str:
        """The counters of the log's last line (health field names, as in `health_fields`)."""
        st = self.journal.stats
        parts = [f"accepted_frames={self.accepted_frames}", f"redelivered={self.redelivered}",
                 f"requeued={self.requeued}", f"input_errors={self.input_errors}",
                 f"invalid_records={self.invalid_records}", f"refused_deleted={self.refused.deleted}",
                 f"readings={st.received}",
                 f"duplicates={st.duplicates}", f"delivered={sum(st.delivered.values())}"]
        parts += [f"rejected_{_field(k)}={n}" for k, n in self.rejected.items()]
        return ", ".join(parts)

    def health_fields(self) -> dict[str, float | int]:
        """This worker's counters as a `gateway_health` point (site `[ingest] site`, gateway
        `ingest-{worker}`), so the Fleet dashboard shows the central workers beside the gateways."""
        st = self.journal.stats
        fields: dict[str, float | int] = {
            "journal_pending": st.pending, "journal_bytes": st.size_bytes, "journal_full": int(st.full),
            "received": st.received, "rejected": sum(self.rejected.values()),
            "delivered": sum(st.delivered.values()), "duplicates": st.duplicates,
            "accepted_frames": self.accepted_frames, "redelivered": self.redelivered,
            "requeued_frames": self.requeued, "sink_errors": sum(r.errors for r in self.runners),
            "input_errors": self.input_errors, "invalid_records": self.invalid_records,
            "refused_deleted": self.refused.deleted,
        }
        fields |= {f"rejected_{_field(k)}": n for k, n in self.rejected.items()}
        return fields

    async def _health(self) -> None:
        i = self.cfg.ingest
        sample = HealthSample(i.site, f"ingest-{i.worker}", time.time_ns(), self.health_fields())
        with contextlib.suppress(JournalFull):
            self.journal.submit([sample])

    async def _requeue_loop(self) -> None:
        """Frames waiting for a key: at start and whenever the keys change.  Frames an operator
        asked to requeue (`remotecal ingest --requeue`): looked for each second."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requeue_wanted.wait(), REQUESTS_S)  # request_stop sets it too
            if self._stop.is_set():
                return
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
        prefix = self.cfg.ingest.topic_prefix
        # Only the rows of gateways that have a key now: the others would be refused again.
        topics = [readings_topic(prefix, site, gw) for site, gw in self.verifier.keys]
        passes: list[tuple[str, Callable[[int], Awaitable[Sequence[_Kept]]],
                           Callable[[Sequence[int]], Awaitable[None]], bool]] = [
            ("an operator asked to requeue", lambda after: self.refused.requested(after=after),
             self.refused.remove, True)]
        if waiting:
            passes += [
                ("refused earlier for want of a key", lambda after: self.refused.waiting(topics, after=after),
                 self.refused.remove, True),
                # Kept in the journal's quarantine by an ingest from before refused.db.
                ("quarantined earlier for want of a key",
                 lambda after: self.journal.quarantined("ingest", "unknown gateway:", topics, after=after),
                 self.journal.release_quarantined, False)]
        for what, fetch, release, update in passes:
            if not await self._take_back(what, fetch, release, update):
                return

    async def _take_back(self, what: str, fetch: Callable[[int], Awaitable[Sequence[_Kept]]],
                         release: Callable[[Sequence[int]], Awaitable[None]], update: bool) -> bool:
        """One pass of `_requeue`; False if it has to stop (stopping, or a commit failed)."""
        after = 0
        while not self._stop.is_set():
            rows = await fetch(after)
            if not rows:
                return True
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
                fut = await self._journal_frame(frame, row.topic, guarded=fresh, then=self._count_requeued)
                if fut is None:
                    return False  # stopping: the rows stay for the next start
                waits.append(fut)
                taken.append(row.id)
            if update:
                await self.refused.refused_again(still)
            if still:
                log.info("ingest: %d frame(s) %s are still refused: %s", len(still), what, still[0][2])
            if waits:
                outcomes = await asyncio.gather(*waits, return_exceptions=True)
                done = [i for i, o in zip(taken, outcomes, strict=True) if not isinstance(o, BaseException)]
                await release(done)
                log.info("ingest: %d frame(s) %s verify now: journalled", len(done), what)
                if len(done) < len(taken):
                    # A commit failed (the journal logged why): those rows stay; try again later.
                    log.warning("ingest: %d requeued frame(s) could not be journalled; they stay and are "
                                "tried again in %.0f s", len(taken) - len(done), REQUEUE_RETRY_S)
                    asyncio.get_running_loop().call_later(REQUEUE_RETRY_S, self._requeue_wanted.set)
                    return False
        return False

    async def _refresh_keys(self) -> None:
        # On the loop, like the look each frame takes: a folder of small files, one owner.
        self.verifier.refresh()

    async def _periodic(self, fn: Callable[[], Awaitable[None]], every: float) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)
                return
            await fn()

    async def _pump(self) -> None:
        sub = self.subscriber
        sub.start()
        try:
            while (m := await sub.next(self._stop)) is not None:
                await self._handle(m)
        finally:
            await sub.stop()

    async def _handle(self, m: Message) -> None:
        ack = lambda: self.subscriber.ack(m)  # noqa: E731 - one line, read right here
        try:
            frame = self._check(m)
        except Rejection as exc:
            if exc.kind == "replayed" and m.dup:
                # The broker's own redelivery (a publisher cannot set DUP on what we receive,
                # MQTT 3.3.1.1) of a frame we hold: an ack we could not send, or a frame
                # still being committed.  Ack it once that commit is done; not an attack.
                self.redelivered += 1
                self.journal.submit([], on_committed=ack)
                return
            self._refuse(m, exc)
            return

        def accepted() -> None:
            self.accepted_frames += 1
            ack()

        await self._journal_frame(frame, m.topic, guarded=True, then=accepted)

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
                                   "quarantined with it", m.topic, type(exc).__name__, exc_info=exc)
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

    def _count_requeued(self) -> None:
        self.requeued += 1

    async def _journal_frame(self, frame: Frame, topic: str, *, guarded: bool,
                             then: Callable[[], None]) -> asyncio.Future[None] | None:
        """Submit a verified frame's readings with its redelivery key; `then` runs at the commit.

        Its records that cannot be written (`Frame.invalid`) are quarantined one by one in the
        same commit, each with its reason: the frame's other readings are journalled.

        `guarded`: the replay window holds its number while it is committed and remembers it
        after (released if the commit fails).  While the journal is full the frame waits (the
        broker keeps it: it is not acknowledged), or, once the ingest stops, is given up: None
        (not journalled, not acknowledged: the broker hands it out again)."""
        site, gw, seq, epoch = frame.site, frame.gateway, frame.seq, frame.epoch
        # Epoch 0 (frames from before epochs) keeps the key it had.
        key = dedupe_key(b"uplink", site.encode(), gw.encode(), seq.to_bytes(8, "little"),
                         *([epoch.to_bytes(8, "little")] if epoch else []))

        def committed() -> None:
            if guarded:
                self.replay.accept(site, gw, seq, epoch)
            then()

        def failed(fut: asyncio.Future[None]) -> None:
            if guarded and not fut.cancelled() and fut.exception() is not None:
                self.replay.release(site, gw, seq, epoch)

        rejected = [self._invalid(frame, topic, r, why) for r, why in frame.invalid]
        if guarded:
            self.replay.reserve(site, gw, seq, epoch)
        while True:
            try:
                fut = self.journal.submit(frame.records, rejected, dedupe=key, redelivered=True,
                                          on_committed=committed, wait=True)
                break
            except JournalFull:
                if self._stop.is_set():
                    if guarded:
                        self.replay.release(site, gw, seq, epoch)
                    return None
                await asyncio.sleep(1.0)
        assert fut is not None
        fut.add_done_callback(failed)
        return fut


def _field(kind: str) -> str:
    """A rejection kind as a field name: no spaces (`unknown gateway` -> `unknown_gateway`)."""
    return kind.replace(" ", "_")


async def _watchdog() -> None:
    notify("WATCHDOG=1")
