"""The run engine: executes a procedure's steps at the edge (SPEC section 8, issue 15).

States (README, "Remote runs"):

    idle        no run was ever started on this gateway (journal)
    settling    step i's setpoints are written; waiting for the settling minimum and for every
                reference channel of the step to be stable (gateway.stability)
    recording   stable: recording the step's window for `record_s` seconds of readings
                (stability lost on the way: settling again, the window starts over)
    paused      held by a command (or a restart that could not resume); setpoints stay
    finished    every step done
    aborted     by a command (local or remote)
    failed      a controller error (a setpoint read back different, an I/O failure), or a step
                not stable within its `max_s` whose procedure says `on_not_stable = "stop"`
    (aborted and failed write the procedure's final, safe setpoints first, when it has them)

A step ends `stable` (its window recorded: one `run_window` point per reference channel),
`not_stable` (`max_s` passed first; the run goes on or fails as the step says) or `skipped`.

Every transition is a `run_event` point and a `run_log` row, written with the run's state in
one journal transaction (gateway.journal.runs): a gateway killed at any instant comes back
in the state of its last transition.  A run that was settling or recording resumes that step
- the setpoints written again, its stability evaluated afresh from new readings, its
settling minimum and `max_s` counted from the resumption - and says so in a `run_event`
(or, with `[run] on_restart = "pause"`, holds paused until resumed); a paused run stays
paused, with its reason.  Nothing restarts or skips a step silently.

Clocks: `settle_min_s` and `max_s` on the gateway's clock (`clock`), the stability and the
recorded window on the readings' own times.

The run tag: while a run is settling, recording or paused, every reading the gateway
commits carries the run id as its `run` tag (`run_tag`); otherwise `[gateway] run`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.controllers import Controller, ControllerError, route
from gateway.errors import JournalError, JournalFull, RemotecalError
from gateway.journal import Journal
from gateway.journal.runs import RunRow, RunTable
from gateway.reading import FieldValue, Point, Reading, Record
from gateway.run.plan import QUANTITY_OF_SETPOINT, StepPlan, plan_from_json, plan_of, plan_to_json
from gateway.stability import Criteria, StabilityTracker

__all__ = ["ACTIVE", "STATES", "TERMINAL", "NotAllowed", "RunEngine"]

log = logging.getLogger("remotecal.run")

STATES = ("idle", "settling", "recording", "paused", "finished", "aborted", "failed")
STEPPING = frozenset({"settling", "recording"})
ACTIVE = frozenset({"settling", "recording", "paused"})
"""A run is going on: its readings carry its id."""
TERMINAL = frozenset({"idle", "finished", "aborted", "failed"})

_KEEP_SETTLING = 20_000
"""Samples a reference keeps while settling (the window starts at a recent one)."""

RUN_EVENT = "run_event"
RUN_WINDOW = "run_window"


class NotAllowed(RemotecalError):
    """A command not allowed in the run's current state (its reason is the message)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Live:
    """One reference channel of the current step."""

    channel: str
    key: str
    """The setpoint key it is evaluated for ("temperature", "humidity")."""
    quantity: str
    unit: str
    criteria: Criteria
    tracker: StabilityTracker
    broken: bool = False
    """A window decided unstable since recording began."""
    samples: list[tuple[float, int, float]] = field(default_factory=list)
    """(t [s], time_ns, value): the latest while settling, all since recording began."""
    dropped: int = 0
    pending: list[Reading] = field(default_factory=list)
    """Readings `observe` queued, fed to the tracker at the next evaluation."""

    def settled(self) -> bool:
        cur = self.tracker.current
        return self.tracker.stable and cur is not None and cur.duration_s >= self.criteria.min_duration_s

    @property
    def last_t(self) -> float:
        w = self.tracker.last_window
        return -math.inf if w is None else w.t_s


class RunEngine:
    """One gateway's run: commands (`start`, `pause`, `resume`, `skip`, `abort`, `status`), the
    step loop (`serve`), the readings it evaluates (`observe`) and the run tag (`run_tag`)."""

    def __init__(self, journal: Journal, controllers: Mapping[str, Controller], *, site: str, gateway: str,
                 idle_run: str, clock: Callable[[], int] = time.time_ns, tick_s: float = 1.0,
                 on_restart: str = "resume", gather_s: float = 0.05):
        self.journal = journal
        self.controllers = dict(controllers)
        self.site, self.gateway, self.idle_run = site, gateway, idle_run
        self.clock = clock
        self.tick_s = tick_s
        self.gather_s = gather_s
        """After a reading wakes the loop, it waits this long for more before evaluating."""
        self.on_restart = on_restart
        """A run found settling or recording at `open`: "resume" its step, or hold it "pause"d."""
        self.state = "idle"
        self.run = ""
        self.step: int | None = None
        self.plan: list[StepPlan] = []
        self.reason = ""
        self.actor = ""
        self.procedure_sha = ""
        self.started_ns = 0
        self.step_started_ns = 0
        self.state_since_ns = 0
        self.record_from: float | None = None
        self.last_command: dict[str, Any] = {}
        self.resumes = 0
        self.outcomes: list[str] = []
        self._live: dict[str, _Live] = {}
        self._ignored: set[str] = set()
        """Channels no reference of the current step (reset with `_live`)."""
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._last_ns = 0
        self._restarted_from: str | None = None
        self._ended: str | None = None
        """The current step's outcome once its end is written, until the next step begins: a
        restart in between goes on to what follows the step, never records it again."""

    # -- the run tag and the readings ---------------------------------------------------

    @property
    def run_tag(self) -> str:
        """The `run` tag of a reading committed now."""
        return self.run if self.state in ACTIVE else self.idle_run

    def tag(self, readings: Sequence[Reading]) -> Sequence[Reading]:
        """`readings` with the run tag of now (the same list when they carry it already)."""
        tag = self.run_tag
        if all(r.run == tag for r in readings):
            return readings
        return [r if r.run == tag else Reading(r.site, r.gateway, tag, r.channel, r.quantity, r.unit, r.role,
                                              r.value, r.time_ns, r.tags) for r in readings]

    def observe(self, readings: Sequence[Reading]) -> None:
        """Queue the current step's reference readings for its stability trackers, fed at the
        next evaluation (cheap, and nothing while no step runs).  A reading a tracker cannot
        take (older than the channel's last one, not finite) is dropped and counted."""
        if self.state not in STEPPING or self.step is None:
            return
        step = self.plan[self.step]
        t_min = self.step_started_ns
        live_of, ignored = self._live, self._ignored
        groups: dict[str, list[Reading]] = {}
        for r in readings:
            ch = r.channel
            if ch in ignored:
                continue
            if ch not in live_of and self._new_live(step, r) is None:
                ignored.add(ch)
                continue
            if r.time_ns < t_min:
                continue  # taken before the step's setpoints were written
            groups.setdefault(ch, []).append(r)
        for ch, group in groups.items():
            live_of[ch].pending += group
        if groups:
            self._wakeup.set()

    def _drain(self) -> None:
        """Feed the readings `observe` queued to their trackers: one call per channel."""
        for live in self._live.values():
            if live.pending:
                group, live.pending = live.pending, []
                self._feed(live, group)

    def _feed(self, live: _Live, group: list[Reading]) -> None:
        """One tracker call for a channel's readings (one per reading only when they hold one
        the tracker refuses, which is then dropped)."""
        samples = [(r.time_ns / 1e9, r.time_ns, r.value) for r in group]
        try:
            updates = [live.tracker.extend([s[0] for s in samples], [s[2] for s in samples])]
        except ValueError:
            updates, kept = [], []
            for s in samples:
                try:
                    updates.append(live.tracker.push(s[0], s[2]))
                    kept.append(s)
                except ValueError:
                    live.dropped += 1
            samples = kept
        live.samples += samples
        if self.state == "recording":
            if not all(bool(u.stable.all()) for u in updates):
                live.broken = True
        elif len(live.samples) > _KEEP_SETTLING:
            del live.samples[:_KEEP_SETTLING // 2]

    def _new_live(self, step: StepPlan, r: Reading) -> _Live | None:
        key = step.key_of(r.channel, r.quantity, r.role)
        if key is None:
            return None
        criteria = step.criteria_for(key)
        live = _Live(r.channel, key, r.quantity, r.unit, criteria, StabilityTracker(criteria))
        self._live[r.channel] = live
        return live

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Load the stored run (before any reading is committed, so the tag is right from the
        first one).  A run that was stepping resumes its step when `serve` starts."""
        row = await self.journal.run_state()
        if row is None:
            return
        d = row.data
        self.run, self.state, self.step = row.run, row.state, row.step
        self.reason, self.actor = str(d.get("reason", "")), str(d.get("actor", ""))
        self.procedure_sha = str(d.get("procedure", ""))
        self.started_ns = int(d.get("started_ns", 0))
        self.step_started_ns = int(d.get("step_started_ns", 0))
        self.state_since_ns = row.updated_ns
        self.last_command = dict(d.get("last_command", {}))
        self.resumes = int(d.get("resumes", 0))
        self.outcomes = list(d.get("outcomes", []))
        ended = d.get("ended")
        self._ended = str(ended) if ended else None
        self._last_ns = row.updated_ns
        try:
            self.plan = plan_from_json(d.get("plan", []))
        except (TypeError, ValueError, KeyError) as exc:
            self.plan = []
            if self.state in ACTIVE:
                self._restarted_from = "unreadable"
                self.reason = f"the stored procedure cannot be read ({exc})"
            return
        if self.state in ACTIVE:
            self._restarted_from = self.state
            log.warning("run %s was %s in step %s when the gateway stopped", self.run, self.state, self.step)

    async def serve(self, stop: asyncio.Event) -> None:
        """The step loop, until `stop` is set: resumes a run found at `open`, then evaluates
        the step when readings came (gathering them for `gather_s`) and every `tick_s`."""
        if self._restarted_from is not None:
            async with self._lock:
                await self._after_restart()
        while not stop.is_set():
            self._wakeup.clear()
            waiter = asyncio.create_task(self._wakeup.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.tick_s, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if stop.is_set():
                return
            if self._wakeup.is_set() and self.gather_s:
                await asyncio.sleep(self.gather_s)  # readings of the next few messages, in one go
            async with self._lock:
                try:
                    self._drain()
                    await self._tick()
                except JournalError:
                    raise  # damaged or closing: the gateway's supervisor decides
                except Exception:  # a bug here must not end the gateway: logged, tried at the next tick
                    log.exception("run %s: evaluating step %s failed", self.run, self.step)

    async def evaluate(self) -> None:
        """Evaluate the step now (`serve` does at every reading and every `tick_s`)."""
        async with self._lock:
            if self._restarted_from is not None:
                await self._after_restart()
            self._drain()
            await self._tick()

    async def _after_restart(self) -> None:
        was, self._restarted_from = self._restarted_from, None
        if was == "unreadable" or self.step is None or not self.plan:
            why = self.reason or "no step to resume"
            await self._transition("paused", reason=f"gateway restarted; {why}", actor="gateway")
            return
        if self._ended is not None and self.step is not None:
            outcome, step = self._ended, self.plan[self.step]
            why = f"gateway restarted after step {step.index} ended {outcome}"
            goes_on = not (outcome == "not_stable" and step.on_not_stable == "stop")
            if self.on_restart == "pause" and goes_on and step.index + 1 < len(self.plan):
                self.step, self._ended = step.index + 1, None  # resume enters it
                await self._transition("paused", actor="gateway",
                                       reason=f"{why}; held paused before step {self.step} "
                                              "([run] on_restart = 'pause')")
                return
            await self._after_end(step, outcome, actor="gateway", reason=why)
            return
        if was in STEPPING and self.on_restart == "pause":
            await self._transition("paused", actor="gateway",
                                   reason=f"gateway restarted while {was} in step {self.step}; held paused "
                                          "([run] on_restart = 'pause'): resume to go on with the step")
            return
        if was == "paused":
            await self._transition("paused", reason=f"gateway restarted while paused ({self.reason})",
                                   actor="gateway")
            return
        self.resumes += 1
        lost = " (its partial window is discarded)" if was == "recording" else ""
        await self._enter_step(self.step, actor="gateway",
                               reason=f"gateway restarted while {was} in step {self.step}{lost}: step "
                                      "resumed, setpoints written again, stability evaluated afresh")

    # -- commands ----------------------------------------------------------------------

    async def start(self, procedure: Any, run_id: str, actor: str) -> dict[str, Any]:
        """Start `procedure` as run `run_id`; NotAllowed while a run goes on or for a bad id."""
        async with self._lock:
            why = None
            if self.state in ACTIVE:
                why = f"run {self.run} is {self.state} in step {self.step}; abort it first"
            elif not run_id or not run_id.strip() or "\n" in run_id:
                why = "the run id must be one non-empty line"
            elif run_id == self.idle_run:
                why = f"the run id {run_id!r} is the gateway's tag for readings outside a run ([gateway] run)"
            plan: list[StepPlan] = []
            if why is None:
                try:
                    plan = plan_of(procedure)
                except ValueError as exc:
                    why = f"the procedure cannot run: {exc}"
            self._note_command("start", actor, why)
            if why is not None:
                raise NotAllowed(why)
            self.run, self.plan, self.outcomes, self.resumes = run_id, plan, [], 0
            self.procedure_sha = str(getattr(procedure, "sha256", ""))
            self.started_ns = self._now()
            self.state = "settling"  # the tag from this instant on
            for c in self.controllers.values():
                try:
                    await c.set_running(True)
                except Exception as exc:
                    await self._transition("failed", actor=actor, step=0,
                                           reason=f"controller {c.name}: cannot start the chamber: {exc}")
                    return self._status()
            await self._enter_step(0, actor=actor, reason="started", extra={"procedure": self.procedure_sha})
            return self._status()

    async def pause(self, actor: str, reason: str = "") -> dict[str, Any]:
        async with self._lock:
            await self._allow("pause", actor, STEPPING)
            await self._transition("paused", actor=actor, reason=reason or "paused")
            return self._status()

    async def resume(self, actor: str) -> dict[str, Any]:
        async with self._lock:
            await self._allow("resume", actor, {"paused"})
            assert self.step is not None
            await self._enter_step(self.step, actor=actor, reason="resumed")
            return self._status()

    async def skip(self, actor: str, reason: str = "") -> dict[str, Any]:
        async with self._lock:
            await self._allow("skip", actor, ACTIVE)
            await self._end_step("skipped", actor=actor, reason=reason or "skipped")
            return self._status()

    async def abort(self, actor: str, reason: str = "", local: bool = False) -> dict[str, Any]:
        """Abort the run: `aborted`, then the procedure's final (safe) setpoints are written
        when it has a final step (a failure there is logged and in the event's reason)."""
        async with self._lock:
            await self._allow("abort", actor, ACTIVE)
            why = (reason or "aborted") + await self._safe_setpoints()
            await self._transition("aborted", actor=actor, reason=why, extra={"local": local})
            return self._status()

    async def status(self) -> dict[str, Any]:
        return self._status()

    async def _safe_setpoints(self) -> str:
        """Write the procedure's final (safe) setpoints, when it has a final step and the run is
        not in it; what happened, for the reason ("" when nothing was to be done)."""
        safe = next((s for s in reversed(self.plan) if s.final), None)
        if safe is None or safe.index == self.step:
            return ""
        try:
            await self._apply(safe.setpoints)
        except Exception as exc:
            log.error("run %s: the safe setpoints of step %d: %s", self.run, safe.index, exc)
            return f"; the safe setpoints could not be written: {exc}"
        return f"; safe setpoints of step {safe.index} written"

    async def _allow(self, command: str, actor: str, states: Any) -> None:
        why = None
        if self.state not in states:
            what = f"run {self.run} is {self.state}" if self.run else "no run"
            why = f"{command} is not allowed: {what}"
        self._note_command(command, actor, why)
        if why is not None:
            raise NotAllowed(why)

    def _note_command(self, command: str, actor: str, refused: str | None) -> None:
        """The latest command, for `status` (gateway.control records every command: its journal
        row and its run_event point)."""
        self.last_command = {"command": command, "actor": actor, "accepted": refused is None,
                             "reason": refused or "", "time_ns": self.clock()}

    # -- the steps ---------------------------------------------------------------------

    async def _tick(self) -> None:
        if self.state not in STEPPING or self.step is None:
            return
        step = self.plan[self.step]
        elapsed = (self.clock() - self.step_started_ns) / 1e9
        lives = list(self._live.values())
        if self.state == "settling":
            settled = self._covered(step, lives) and all(x.settled() for x in lives)
            if elapsed >= step.settle_min_s and settled:
                self.record_from = max(x.last_t for x in lives)
                for x in lives:
                    x.broken, x.samples = False, [p for p in x.samples if p[0] >= self.record_from]
                names = ", ".join(sorted(x.channel for x in lives))
                await self._transition("recording", reason=f"stable on {names}", actor="gateway")
                return
        elif self.record_from is not None:
            broken = sorted(x.channel for x in lives if x.broken)
            if broken:
                self.record_from = None
                await self._transition("settling", actor="gateway",
                                       reason=f"stability lost on {', '.join(broken)} while recording; "
                                              "the window starts over")
                return
            if all(x.last_t >= self.record_from + step.record_s for x in lives):
                await self._end_step("stable", actor="gateway", reason=f"recorded {step.record_s:g} s",
                                     windows=() if step.final else self._windows(step, lives))
                return
        if elapsed >= step.max_s:
            why = f"not stable within max_s = {step.max_s:g} s ({self._unstable(lives, step)})"
            await self._end_step("not_stable", actor="gateway", reason=why)

    @staticmethod
    def _covered(step: StepPlan, lives: list[_Live]) -> bool:
        """Every reference the step needs has readings."""
        if step.references:
            return set(step.references) <= {x.channel for x in lives}
        return bool(lives) and set(step.setpoints) <= {x.key for x in lives}

    @staticmethod
    def _unstable(lives: list[_Live], step: StepPlan) -> str:
        if not lives:
            return "no reading of a reference for " + ", ".join(sorted(step.setpoints))
        parts = []
        for x in sorted(lives, key=lambda x: x.channel):
            w = x.tracker.last_window
            if w is None or not math.isfinite(w.std):
                parts.append(f"{x.channel}: no complete window")
            else:
                parts.append(f"{x.channel}: std {w.std:.4g}, slope {w.slope_per_min:.4g}/min")
        return "; ".join(parts)

    def _windows(self, step: StepPlan, lives: list[_Live]) -> list[Record]:
        assert self.record_from is not None and self.step is not None
        t0 = self.record_from
        t1 = min(x.last_t for x in lives)
        out: list[Record] = []
        for x in lives:
            inside = [(ns, v) for t, ns, v in x.samples if t0 <= t <= t1]
            if not inside:
                continue
            values = [v for _, v in inside]
            start_ns, end_ns = inside[0][0], inside[-1][0]  # the readings' own times, exactly
            n = len(values)
            mean = math.fsum(values) / n
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
            fields: dict[str, FieldValue] = {"step": self.step, "start": start_ns, "end": end_ns, "n": n,
                                             "quantity": x.quantity, "unit": x.unit, "mean": mean}
            if n > 1:
                fields["std"] = std
            fields.update(self._setpoint_fields(step))
            out.append(Point(RUN_WINDOW, self.site, self.gateway, self.run, end_ns, fields,
                             (("channel", x.channel),)))
        return out

    async def _end_step(self, outcome: str, *, actor: str, reason: str,
                        windows: Sequence[Record] = ()) -> None:
        assert self.step is not None
        step = self.plan[self.step]
        self.outcomes.append(outcome)
        self._ended = outcome
        await self._event(self.state, actor=actor, reason=reason, extra={"outcome": outcome}, points=windows)
        self.record_from = None
        await self._after_end(step, outcome, actor=actor, reason=f"step {step.index} {outcome}")

    async def _after_end(self, step: StepPlan, outcome: str, *, actor: str, reason: str) -> None:
        """What follows a step's end: the next step, `finished`, or `failed` (not stable, stop)."""
        if outcome == "not_stable" and step.on_not_stable == "stop":
            why = f"step {step.index} not stable and on_not_stable = 'stop'" + await self._safe_setpoints()
            await self._transition("failed", actor=actor, reason=why)
        elif step.index + 1 >= len(self.plan):
            await self._transition("finished", actor=actor, reason="every step done")
        else:
            await self._enter_step(step.index + 1, actor=actor, reason=reason)

    async def _enter_step(self, index: int, *, actor: str, reason: str,
                          extra: dict[str, FieldValue] | None = None) -> None:
        """Write step `index`'s setpoints (a controller error fails the run), then `settling`."""
        self.step, self.record_from, self._ended = index, None, None
        self._live, self._ignored = {}, set()
        self.step_started_ns = self._now()
        self.state = "settling"
        step = self.plan[index]
        try:
            await self._apply(step.setpoints)
        except Exception as exc:
            why = f"step {index}: {exc}" + await self._safe_setpoints()
            await self._transition("failed", actor=actor, reason=why)
            return
        self.step_started_ns = self._now()
        self._live, self._ignored = {}, set()
        await self._transition("settling", actor=actor, reason=reason, extra=extra)

    async def _apply(self, setpoints: dict[str, float]) -> None:
        """Each controller writes its setpoints (gateway.controllers.route) and reads them back;
        ControllerError naming the controller otherwise."""
        for name, part in route(self.controllers, setpoints).items():
            try:
                await self.controllers[name].apply(part)
            except ControllerError as exc:
                raise ControllerError(f"controller {name}: {exc.reason}") from exc
            except Exception as exc:  # a controller's bug or an I/O error it let through
                raise ControllerError(f"controller {name}: {type(exc).__name__}: {exc}") from exc

    # -- points and state --------------------------------------------------------------

    def _now(self) -> int:
        """The clock, strictly increasing: two points of one series never share a time."""
        t = max(self.clock(), self._last_ns + 1)
        self._last_ns = t
        return t

    def _setpoint_fields(self, step: StepPlan | None) -> dict[str, FieldValue]:
        if step is None:
            return {}
        return {f"setpoint_{k}": float(v) for k, v in step.setpoints.items()}

    @staticmethod
    def _criteria_fields(step: StepPlan | None) -> dict[str, FieldValue]:
        """The step's stability criteria per reading quantity (`max_std_temperature`,
        `max_slope_per_min_relative_humidity`, ...): what the dashboards draw as the limits."""
        if step is None:
            return {}
        fields: dict[str, FieldValue] = {}
        for key in step.setpoints:
            quantity = QUANTITY_OF_SETPOINT.get(key)
            if quantity is None:
                continue
            c = step.criteria_for(key)
            fields |= {f"window_s_{quantity}": float(c.window_s), f"max_std_{quantity}": float(c.max_std),
                       f"max_slope_per_min_{quantity}": float(c.max_slope_per_min)}
        return fields

    async def _transition(self, state: str, *, actor: str, reason: str, step: int | None = None,
                          extra: dict[str, FieldValue] | None = None) -> None:
        if step is not None:
            self.step = step
        self.state, self.reason, self.actor = state, reason, actor
        self.state_since_ns = self._now()
        if state not in STEPPING:
            self._live, self._ignored, self.record_from = {}, set(), None
        log.info("run %s: %s%s (%s, by %s)", self.run, state,
                 f" step {self.step}" if self.step is not None else "", reason, actor)
        await self._event(state, actor=actor, reason=reason, extra=extra, time_ns=self.state_since_ns)

    async def _event(self, state: str, *, actor: str, reason: str, extra: dict[str, FieldValue] | None = None,
                     points: Sequence[Record] = (), time_ns: int | None = None) -> None:
        t = time_ns if time_ns is not None else self._now()
        fields: dict[str, FieldValue] = {"state": state, "reason": reason, "actor": actor}
        step = self.plan[self.step] if self.step is not None and self.step < len(self.plan) else None
        if self.step is not None:
            fields["step"] = self.step
        if step is not None:
            fields["step_name"] = step.name
        fields.update(self._setpoint_fields(step))
        fields.update(self._criteria_fields(step))
        fields.update(extra or {})
        row = RunRow(self.run, self.state, self.step, self._data(), t)
        log_fields = {k: v for k, v in fields.items() if k not in ("state", "step", "actor", "reason")}

        def also(db: Any) -> None:
            RunTable.save(db, row)
            RunTable.log(db, t, self.run, state, self.step, actor, reason, log_fields)

        await self._append([Point(RUN_EVENT, self.site, self.gateway, self.run, t, fields), *points], also)

    def _data(self) -> dict[str, Any]:
        return {"plan": plan_to_json(self.plan), "procedure": self.procedure_sha,
                "started_ns": self.started_ns, "step_started_ns": self.step_started_ns,
                "reason": self.reason, "actor": self.actor,
                "last_command": self.last_command, "resumes": self.resumes, "outcomes": self.outcomes,
                "ended": self._ended}

    async def _append(self, records: list[Record], also: Callable[[Any], None]) -> None:
        """Commit the records with the state; while the journal is full, wait for it."""
        while True:
            try:
                await self.journal.append(records, also=also)
                return
            except JournalFull as exc:
                log.error("run %s: the journal takes no records (%s); the transition waits", self.run, exc)
                await self.journal.wait_writable()

    # -- status ------------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        now = self.clock()
        step = self.plan[self.step] if self.step is not None and self.step < len(self.plan) else None
        refs = []
        for x in sorted(self._live.values(), key=lambda x: x.channel):
            w = x.tracker.last_window
            cur = x.tracker.current
            refs.append({
                "channel": x.channel, "quantity": x.quantity, "unit": x.unit, "stable": x.settled(),
                "std": _num(w.std) if w else None, "slope_per_min": _num(w.slope_per_min) if w else None,
                "n": w.n if w else 0, "stable_for_s": round(cur.duration_s, 3) if cur else 0.0,
                "window_s": x.criteria.window_s, "max_std": x.criteria.max_std,
                "max_slope_per_min": x.criteria.max_slope_per_min, "dropped": x.dropped,
            })
        out: dict[str, Any] = {
            "state": self.state, "run": self.run or None, "run_tag": self.run_tag,
            "step": self.step, "step_name": step.name if step else None, "steps": len(self.plan),
            "setpoints": dict(step.setpoints) if step else {},
            "time_in_state_s": round((now - self.state_since_ns) / 1e9, 3) if self.state_since_ns else None,
            "step_elapsed_s": round((now - self.step_started_ns) / 1e9, 3)
            if self.state in STEPPING and self.step_started_ns else None,
            "settle_min_s": step.settle_min_s if step else None, "record_s": step.record_s if step else None,
            "max_s": step.max_s if step else None,
            "recording_since_s": self.record_from, "references": refs,
            "reason": self.reason, "actor": self.actor, "last_command": dict(self.last_command),
            "procedure": self.procedure_sha or None, "outcomes": list(self.outcomes), "resumes": self.resumes,
            "controllers": sorted(self.controllers),
        }
        return out


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None
