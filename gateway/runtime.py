"""The gateway process: one supervisor (`asyncio.TaskGroup`) with named tasks.

    source tasks     MQTT / Modbus -> journal.submit (acks after the group commit)
    journal          group commits on its own thread
    delivery tasks   journal -> sink, one per sink, each with its own cursor
    health           a `gateway_health` record every `health_interval`, via the journal
    housekeeping     trims the quarantine and the redelivery keys
    control          `<data_dir>/control.sock` (gateway.localcontrol): `status`, and what
                     other parts register on `Gateway.control`
    run              with `[[controllers.*]]`: the run engine (gateway.run) - its step loop;
                     every reading is tagged with the run going on (`RunEngine.run_tag`,
                     else `[gateway] run`) as it enters the journal, and the step's
                     references are fed to its stability trackers
    run control      `run.start` ... `run.status` on the control socket, and with `[control]`
                     the institute's signed commands from the central broker (gateway.control)

SIGTERM/SIGINT: the sources stop first (unacknowledged MQTT messages stay with the
broker), the journal commits what it holds, the sinks drain for `shutdown_grace`
seconds, and whatever is left waits in the journal for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway import registry
from gateway.config import GatewayConfig
from gateway.control import control_status, serve_control
from gateway.controllers import build_controllers
from gateway.delivery import DeliveryRunner
from gateway.errors import JournalError, JournalFull, os_error_text
from gateway.journal import Journal, dedupe_key
from gateway.localcontrol import LocalControl
from gateway.plugin import SinkContext, Tags
from gateway.ratelimit import RateLimitedLog
from gateway.reading import HealthSample, Reading
from gateway.run import NotAllowed, RunEngine
from gateway.sdnotify import notify, watchdog_period
from gateway.sinks import Sink
from gateway.sources import Rejected, Source
from gateway.status import SourceTracker, iso, summary_line

__all__ = ["Gateway", "build_sinks", "build_sources"]

log = logging.getLogger("remotecal.gateway")

JOURNAL_STUCK_S = 60.0
"""A journal call longer than this stops the watchdog pings (`Gateway._watchdog`): far above a
group commit with its fsync or a housekeeping round (milliseconds to a few seconds)."""

_CLOCK_FAR_S = 3600.0
"""Sensors' clocks further than this from the gateway's (median) are logged once."""


def _clock_offset(source: Source) -> float | None:
    """The source's estimate of its devices' clock minus ours [s], where it has one."""
    value = getattr(source, "clock_offset_s", None)
    return float(value) if isinstance(value, int | float) else None


def _failed(on_failed: Callable[[], None], committed: asyncio.Future[None]) -> None:
    """A batch's commit failed for good (the journal closed before it could commit)."""
    if committed.cancelled() or committed.exception() is not None:
        on_failed()


def build_sources(cfg: GatewayConfig) -> list[Source]:
    """The source objects of every registered kind's blocks (gateway.registry), in its order."""
    g = cfg.gateway
    tags = Tags(site=g.site, gateway=g.id, run=g.run, data_dir=g.data_dir)
    sources: list[Source] = []
    for kind in registry.SOURCES.values():
        if blocks := cfg.sources.blocks(kind.name):
            sources += kind.build(blocks, tags)
    return sources


def build_sinks(cfg: GatewayConfig) -> list[Sink]:
    """One sink object per configured sink, in `cfg.sink_configs()` order."""
    g = cfg.gateway
    context = SinkContext(site=g.site, gateway=g.id, data_dir=g.data_dir)
    return [registry.SINKS[kind].build(block, identity, context)
            for kind, identity, block in cfg.sink_blocks()]


class Gateway:
    """Wires config, journal, sources and sinks together and runs them until stopped."""

    def __init__(self, cfg: GatewayConfig):
        self.cfg = cfg
        g = cfg.gateway
        j = cfg.journal
        self.journal = Journal(
            g.data_dir / "journal.db", cfg.sink_names(), fsync=j.fsync, max_size=j.max_size,
            on_full=j.on_full, commit_interval=j.commit_interval, quarantine_max=j.quarantine_max,
        )
        self.sources = build_sources(cfg)
        self.sinks = build_sinks(cfg)
        self.runners = [
            DeliveryRunner(self.journal, s, max_retry_interval=c.max_retry_interval)
            for s, (_, c) in zip(self.sinks, cfg.sink_configs(), strict=True)
        ]
        self.controllers = build_controllers(cfg)
        self.run_engine: RunEngine | None = None
        """The run engine, when the site has controllers (gateway.control drives it)."""
        if self.controllers:
            self.run_engine = RunEngine(self.journal, self.controllers, site=g.site, gateway=g.id,
                                        idle_run=g.run, on_restart=cfg.run.on_restart)
        self.started = time.monotonic()
        self.started_ns = time.time_ns()
        self.trackers = {s.name: SourceTracker(s.name, self.started_ns) for s in self.sources}
        self._delivered_at_summary: dict[str, int] = {}
        self._refused_log = RateLimitedLog(log)
        self._clock_far = False
        self._journal_stuck = False
        self._grace_ends: float | None = None
        """When `shutdown_grace` ends (set at the stop): the sources' last commits, the last
        health point and the sinks' drain share it."""
        self._stop = asyncio.Event()
        self._sources_done = asyncio.Event()
        self.control = LocalControl(g.data_dir)
        self.control.register("status", self._status_op)
        # run control: run.start ... run.status on the control socket; with [control], signed
        # commands from the institute through the central broker (gateway.control)
        self.run_control, self.remote_control = serve_control(
            cfg, self.journal, self.control, self.run_engine, not_allowed=(NotAllowed,))

    def request_stop(self) -> None:
        if not self._stop.is_set():
            self._grace_ends = time.monotonic() + self.cfg.gateway.shutdown_grace
            log.info("stopping: sources first, then the sinks drain for up to %.0f s",
                     self.cfg.gateway.shutdown_grace)
            notify("STOPPING=1", "STATUS=stopping: the sinks drain for up to "
                   f"{self.cfg.gateway.shutdown_grace:.0f} s")
            self._stop.set()

    def health_fields(self) -> dict[str, float | int]:
        """The `gateway_health` point's fields: the journal's, the sinks' and the sources'
        counters, and what each source with a `health_fields()` adds (gateway.sources)."""
        st = self.journal.stats
        fields: dict[str, float | int] = {
            "journal_pending": st.pending,
            "journal_bytes": st.size_bytes,
            "journal_full": int(st.full),
            "journal_failing": int(st.failing),
            "journal_series": st.series,
            "journal_lost": st.lost,
            "journal_damaged": st.damaged,
            "received": st.received,
            "records": st.records,
            "journal_pending_start": st.pending_at_start,
            "rejected": st.rejected,
            "duplicates": st.duplicates,
            "refused": st.refused,
            "dropped": st.dropped,
            "quarantined": st.quarantined,
            "quarantine_dropped": st.quarantine_dropped,
            "held_series": st.held_series,
            "held_records": st.held_records,
            "delivered": sum(st.delivered.values()),
            "sink_errors": sum(r.errors for r in self.runners),
            "sink_rejected": sum(r.rejected_points for r in self.runners),
            "sources_connected": sum(1 for s in self.sources if getattr(s, "connected", True)),
            "uptime_s": round(time.monotonic() - self.started, 3),
            **self._health_clock_offset(),
        }
        for source in self.sources:
            if (more := getattr(source, "health_fields", None)) is not None:
                for k, v in more().items():
                    fields[k] = fields.get(k, 0) + v
        return fields

    def _health_clock_offset(self) -> dict[str, float]:
        """`clock_offset_s`: the sensors' clocks minus the gateway's, as the sources with
        sensor-stamped input see it (their median); absent without such input."""
        offsets = [o for s in self.sources if (o := _clock_offset(s)) is not None]
        return {"clock_offset_s": round(statistics.median(offsets), 3)} if offsets else {}

    async def _status_op(self, _request: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    def status(self) -> dict[str, Any]:
        """What this gateway is doing (gateway.status describes the keys)."""
        g = self.cfg.gateway
        st = self.journal.stats
        sinks = []
        for r in self.runners:
            state, detail = r.state
            sinks.append({"name": r.sink.name, "pending": self.journal.pending_for(r.sink.name),
                          "delivered": st.delivered.get(r.sink.name, 0),
                          "last_delivery": iso(r.last_delivery_ns), "state": state, "detail": detail})
        return {
            "site": g.site, "gateway": g.id, "pid": os.getpid(),
            "run": g.run if self.run_engine is None else self.run_engine.run_tag,
            "started": iso(self.started_ns),
            "uptime_s": round(time.monotonic() - self.started, 3), "now": iso(time.time_ns()),
            "sources": [self.trackers[s.name].state(_clock_offset(s)) for s in self.sources],
            "sinks": sinks,
            "journal": {"pending": st.pending, "bytes": st.size_bytes, "full": st.full, "failing": st.failing,
                        "quarantined": st.quarantined},
            "health": self.health_fields(),
            "control": control_status(self.cfg, self.run_control, self.remote_control),
        }

    def _track(self) -> None:
        """Sample each source's connection (a change is logged by the source itself)."""
        for s in self.sources:
            self.trackers[s.name].sample(bool(getattr(s, "connected", True)))

    async def _summary(self) -> None:
        st = self.status()
        interval = self.cfg.gateway.summary_interval
        line = summary_line(st, self._delivered_at_summary, interval)
        log.info("status: %s", line)
        notify(f"STATUS={line}")
        self._delivered_at_summary = {k["name"]: k["delivered"] for k in st["sinks"]}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        g = self.cfg.gateway
        log.info("gateway %s/%s run %s: journal %s, %d source(s), %d sink(s)", g.site, g.id, g.run,
                 self.journal.path, len(self.sources), len(self.sinks))
        notify("STATUS=opening the journal (checked, recovered if damaged)")
        await self.journal.open()
        for source in self.sources:  # a source that reads back what the journal holds (gateway.sources)
            if (use := getattr(source, "use_journal", None)) is not None:
                use(self.journal)
        if self.run_engine is not None:
            await self.run_engine.open()  # before any reading: the run tag is right from the first
        self._track()
        if self.journal.stats.lost or self.journal.stats.damaged:
            await self._health()  # a damaged or lost journal is in a health point at once
        try:
            try:
                await self.control.start()
            except OSError as exc:  # the data is worth more than the status: run without it
                log.error("no control socket (gateway status will not answer): %s", os_error_text(exc))
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch_journal(), name="journal-watch")
                for r in self.runners:
                    tg.create_task(r.run(), name=f"deliver-{r.sink.name}")
                if self.run_engine is not None:
                    tg.create_task(self.run_engine.serve(self._stop), name="run")
                if self.remote_control is not None:
                    tg.create_task(self.remote_control.run(self._stop), name="run-control")
                tg.create_task(self._sources(), name="sources")
                tg.create_task(self._periodic(self._health, g.health_interval), name="health")
                tg.create_task(self._periodic(self._housekeeping, 600.0), name="housekeeping")
                tg.create_task(self._periodic(self._track_async, 1.0), name="track")
                if g.summary_interval > 0:
                    tg.create_task(self._periodic(self._summary, g.summary_interval), name="summary")
                if (period := watchdog_period()) is not None:
                    tg.create_task(self._periodic(self._watchdog, period), name="watchdog")
                notify("READY=1", f"STATUS=running: {len(self.sources)} source(s), {len(self.sinks)} sink(s)")
                await self._stop.wait()
                await self._sources_done.wait()
                if (why := await self._within_grace(self._last_health)) is not None:
                    log.warning("the last health point is not committed (%s); it is delivered at the next "
                                "start", why)
                for r in self.runners:
                    r.stop(self._grace_left())
        except* JournalError as group:  # one line, not a traceback: the journal is damaged
            raise group.exceptions[0] from None
        finally:
            await self.control.close()
            for s in self.sinks:
                await s.aclose()
            for c in self.controllers.values():
                try:
                    await c.close()
                except Exception as exc:  # the journal must still close
                    log.error("controller %s: close failed: %s", c.name, exc)
            await self.journal.close()
            self._log_counters()

    async def _periodic(self, fn: Callable[[], Any], every: float) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)
                return
            await fn()

    async def _watch_journal(self) -> None:
        """End the gateway (exit 1: systemd restarts it) once the journal turns out damaged: the
        next start sets it aside and recovers it."""
        damaged = asyncio.create_task(self.journal.wait_damaged())
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait({damaged, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if damaged.done():
            raise JournalError(f"the journal is damaged ({damaged.result()}); the next start recovers it")
        damaged.cancel()

    async def _watchdog(self) -> None:
        """WATCHDOG=1 from the event loop: a loop that hangs (a blocking call, a deadlock) stops
        the pings and systemd restarts the gateway; the journal resumes where it was.  So does
        a journal thread stuck in one SQLite call for JOURNAL_STUCK_S (a storage that hangs):
        the event loop still runs then, but nothing is committed or delivered."""
        stuck = self.journal.busy_for()
        if stuck >= JOURNAL_STUCK_S:
            if not self._journal_stuck:
                log.error("the journal has been in one SQLite call for %.0f s (its storage hangs?): no more "
                          "watchdog pings, so systemd restarts the gateway", stuck)
                self._journal_stuck = True
            return
        self._journal_stuck = False
        notify("WATCHDOG=1")

    async def _track_async(self) -> None:
        self._track()

    async def _housekeeping(self) -> None:
        try:
            await self.journal.housekeeping()
        except JournalError as exc:  # disk full, I/O error: the bounds are kept at the next round
            log.error("journal housekeeping failed: %s", exc)

    def _grace_left(self) -> float:
        """What is left of `shutdown_grace` [s] (all of it before a stop was asked for)."""
        if self._grace_ends is None:
            return self.cfg.gateway.shutdown_grace
        return max(0.0, self._grace_ends - time.monotonic())

    async def _within_grace(self, work: Callable[[], Awaitable[object]]) -> str | None:
        """`work` (journal commits) within what is left of shutdown_grace: None once done, else
        why not (commits fail - a full disk - or take longer); the journal keeps what it has."""
        try:
            async with asyncio.timeout(self._grace_left()):
                await work()
        except (TimeoutError, JournalError) as exc:
            return str(exc) or "commits did not finish within shutdown_grace"
        return None

    async def _last_health(self) -> None:
        """At shutdown: the health point that counts every input, committed before the sinks
        are told to stop - a runner that finds nothing committed ends its drain at once, and a
        reading or health point still in the commit queue would then wait for the next start."""
        await self.journal.flush()  # the last submissions, in the counters
        await self._health(wait=True)

    async def _health(self, *, wait: bool = False) -> None:
        g = self.cfg.gateway
        fields = self.health_fields()
        self._watch_clock(fields.get("clock_offset_s"))
        sample = HealthSample(g.site, g.id, time.time_ns(), fields)
        with contextlib.suppress(JournalFull):
            committed = self.journal.submit([sample], wait=wait)
            if committed is not None:
                await committed

    def _watch_clock(self, offset_s: float | None) -> None:
        """Say once (per episode) when the sensors' clocks are far from the gateway's: the
        readings the gateway stamps itself (Modbus, instruments, MQTT without time_path) carry
        its clock, and sensor times too far ahead of it are refused."""
        far = offset_s is not None and abs(offset_s) > _CLOCK_FAR_S
        if far and not self._clock_far:
            assert offset_s is not None
            ahead = "behind" if offset_s > 0 else "ahead of"
            log.warning("the gateway clock is %.0f s (%.1f days) %s the sensors' clocks (median of the "
                        "recent sensor-stamped MQTT messages; gateway_health clock_offset_s): readings "
                        "stamped by the gateway carry its time - check its time synchronisation (NTP)%s",
                        abs(offset_s), abs(offset_s) / 86_400, ahead,
                        "" if offset_s > 0 else ", unless a backlog of old messages is being drained")
        elif not far and self._clock_far and offset_s is not None:
            log.info("the gateway clock is within %.0f s of the sensors' clocks again (%+.3f s)",
                     _CLOCK_FAR_S, offset_s)
        if offset_s is not None:
            self._clock_far = far

    async def _sources(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._pump(s), name=f"source-{s.name}") for s in self.sources]
                await self._stop.wait()
                for t in tasks:
                    t.cancel()
        finally:
            self._sources_done.set()

    async def _pump(self, source: Source) -> None:
        """Source -> journal; never awaits a commit, so one fsync serves many messages.

        While the journal takes no records (full, or its commits fail), an input acknowledged
        on commit (MQTT) waits - the broker keeps it, and whatever comes after it - and a
        polled one is refused: counted, logged, its rejects still quarantined.

        A batch's own readings are tagged with the run going on; the records it relays from
        other gateways (`SourceBatch.records`) keep theirs.  When the gateway stops, what the
        source handed over is committed before it closes, so its acks find it connected."""
        tracker = self.trackers[source.name]
        debug = log.isEnabledFor(logging.DEBUG)
        async with source:
            try:
                await self._take(source, tracker, debug)
            finally:
                if (why := await self._within_grace(self.journal.flush)) is not None:
                    log.warning("source %r: its last input is not committed before it closes (%s); the "
                                "broker hands unacknowledged messages out again", source.name, why)

    async def _take(self, source: Source, tracker: SourceTracker, debug: bool) -> None:
        engine = self.run_engine
        async for batch in source.batches():
            relayed = sum(1 for r in batch.records if isinstance(r, Reading))
            tracker.counted(len(batch.readings) + relayed)
            if debug:
                log.debug("source %r: %d reading(s)%s, %d rejected%s", source.name, len(batch.readings),
                          f" and {len(batch.records)} relayed record(s)" if batch.records else "",
                          len(batch.rejected), " (redelivered)" if batch.redelivered else "")
            key = dedupe_key(source.name.encode(), *batch.dedupe) if batch.dedupe else None
            while True:
                # tagged as it enters the journal: the run going on now, or [gateway] run
                readings = batch.readings if engine is None else engine.tag(batch.readings)
                try:
                    records = [*readings, *batch.records] if batch.records else readings
                    committed = self.journal.submit(
                        records, batch.rejected, dedupe=key, redelivered=batch.redelivered,
                        on_committed=batch.on_committed, wait=batch.on_failed is not None)
                except JournalFull as exc:
                    if batch.on_committed is None:
                        self._refuse(source, len(batch.readings) + relayed, batch.rejected, exc)
                        break
                    await self.journal.wait_writable()
                    continue
                if committed is not None and batch.on_failed is not None:
                    committed.add_done_callback(functools.partial(_failed, batch.on_failed))
                if engine is not None and readings:
                    engine.observe(readings)
                break

    def _refuse(self, source: Source, readings: int, rejected: Sequence[Rejected], why: JournalFull) -> None:
        self.journal.stats.refused += readings
        self._refused_log.warning(source.name, "source %r: %d reading(s) refused, NOT committed (%s); "
                                  "counted as refused", source.name, readings, why)
        if rejected:
            self.journal.submit([], rejected)

    def _log_counters(self) -> None:
        f = self.health_fields()
        log.info("gateway stopped: " + ", ".join(f"{k}={v}" for k, v in f.items()))
