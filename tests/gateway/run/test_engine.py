"""The run engine with a fake controller and a simulated reference on a fake clock: steps,
windows, not_stable at max_s, controller errors, commands, the run tag and a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.journal import Journal
from gateway.reading import Point, Reading
from gateway.run import TERMINAL, NotAllowed, RunEngine
from tests.gateway.run.fakes import Chamber, FakeController, procedure


def engine_for(journal: Journal, chamber: Chamber, controller: FakeController) -> RunEngine:
    return RunEngine(journal, {"chamber": controller}, site="lab1", gateway="gw01", idle_run="between-runs",
                     clock=lambda: chamber.t_ns)


async def drive(engine: RunEngine, chamber: Chamber, seconds: int, until: Any = None) -> None:
    """Feed one reading a second (tagged as the gateway does) and evaluate after each."""
    for _ in range(seconds):
        engine.observe(engine.tag([chamber.tick()]))
        await engine.evaluate()
        if engine.state in TERMINAL or (until is not None and until(engine)):
            return


async def points(journal: Journal, measurement: str) -> list[Point]:
    batch = await journal.next_batch("s", 100_000)
    assert batch is not None
    return [r for r in batch.records if isinstance(r, Point) and r.measurement == measurement]


async def test_a_procedure_runs_to_the_end_and_its_windows_match_the_steps(tmp_path: Path) -> None:
    chamber = Chamber()
    ctl = FakeController(chamber)
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, ctl)
        await engine.open()
        assert engine.tag([chamber.tick()])[0].run == "between-runs"
        status = await engine.start(procedure(20.0, 25.0, 30.0), "RC-1", "alice@nmc")
        assert status["state"] == "settling" and status["step"] == 0 and engine.run_tag == "RC-1"
        await drive(engine, chamber, 20_000)
        assert engine.state == "finished", engine.reason
        assert engine.outcomes == ["stable"] * 3
        assert ctl.applied == [{"temperature": 20.0}, {"temperature": 25.0}, {"temperature": 30.0}]
        assert ctl.running == [True]
        assert engine.tag([chamber.tick()])[0].run == "between-runs"
        windows = await points(journal, "run_window")
        events = await points(journal, "run_event")
        history = await journal.run_history("RC-1")
    assert [w.fields["step"] for w in windows] == [0, 1, 2]
    for w, sp in zip(windows, (20.0, 25.0, 30.0), strict=True):
        f = w.fields
        assert w.run == "RC-1" and dict(w.tags) == {"channel": "ref-t"}
        assert f["setpoint_temperature"] == sp and abs(float(f["mean"]) - sp) < 0.01
        assert int(f["end"]) - int(f["start"]) >= 60 * 10**9 and f["n"] >= 60 and w.time_ns == f["end"]
    states = [(e.fields["state"], e.fields.get("step"), e.fields.get("outcome")) for e in events]
    assert states == [("settling", 0, None), ("recording", 0, None), ("recording", 0, "stable"),
                      ("settling", 1, None), ("recording", 1, None), ("recording", 1, "stable"),
                      ("settling", 2, None), ("recording", 2, None), ("recording", 2, "stable"),
                      ("finished", 2, None)]
    assert events[0].fields["actor"] == "alice@nmc" and events[0].fields["reason"] == "started"
    assert events[0].fields["procedure"] == "ab" * 32 and events[0].fields["setpoint_temperature"] == 20.0
    # Each point of a step names its criteria per quantity: the dashboards' limits.
    for e in events:
        assert (e.fields["window_s_temperature"], e.fields["max_std_temperature"],
                e.fields["max_slope_per_min_temperature"]) == (60.0, 0.01, 0.01)
        assert not any(k.endswith("_relative_humidity") for k in e.fields)
    assert [e.time_ns for e in events] == sorted({e.time_ns for e in events})  # strictly increasing
    assert [h.state for h in history][-1] == "finished" and len(history) == len(events)


async def test_a_chamber_that_never_settles_ends_the_step_not_stable_at_its_timeout(tmp_path: Path) -> None:
    chamber = Chamber(wobble=0.5)
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, FakeController(chamber))
        await engine.open()
        await engine.start(procedure(20.0, 25.0, max_s=600.0), "RC-2", "bob")
        t0 = chamber.t_ns
        await drive(engine, chamber, 5000, until=lambda e: e.step == 1)
        assert engine.outcomes == ["not_stable"] and engine.state == "settling" and engine.step == 1
        assert (chamber.t_ns - t0) / 1e9 == pytest.approx(600.0, abs=1.5)
        events = await points(journal, "run_event")
    end = next(e for e in events if e.fields.get("outcome") == "not_stable")
    assert end.fields["step"] == 0 and "not stable within max_s = 600 s" in str(end.fields["reason"])
    assert "ref-t: std" in str(end.fields["reason"])


async def test_not_stable_with_stop_fails_the_run(tmp_path: Path) -> None:
    chamber = Chamber(wobble=0.5)
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, FakeController(chamber))
        await engine.open()
        await engine.start(procedure(20.0, 25.0, max_s=300.0, on_not_stable="stop"), "RC-3", "bob")
        await drive(engine, chamber, 5000)
        assert engine.state == "failed" and engine.step == 0 and "on_not_stable = 'stop'" in engine.reason


async def test_a_setpoint_read_back_different_fails_the_step(tmp_path: Path) -> None:
    chamber = Chamber()
    ctl = FakeController(chamber, mismatch={25.0: 24.5})
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, ctl)
        await engine.open()
        await engine.start(procedure(20.0, 25.0, 30.0), "RC-4", "bob")
        await drive(engine, chamber, 20_000)
        assert engine.state == "failed" and engine.step == 1
        assert "read back 24.5 after writing 25.0" in engine.reason and "controller chamber" in engine.reason
        assert ctl.applied[-1] == {"temperature": 25.0}  # step 2 never written
        events = await points(journal, "run_event")
    assert events[-1].fields["state"] == "failed" and events[-1].fields["step"] == 1


async def test_commands_and_their_points(tmp_path: Path) -> None:
    chamber = Chamber()
    proc = procedure(20.0, 25.0)
    proc.steps.append(type(proc.steps[0])(2, "safe", {"temperature": 21.0}, final=True))
    ctl = FakeController(chamber)
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, ctl)
        await engine.open()
        with pytest.raises(NotAllowed, match="no run"):
            await engine.pause("bob")
        await engine.start(proc, "RC-5", "alice")
        with pytest.raises(NotAllowed, match="abort it first"):
            await engine.start(proc, "RC-6", "alice")
        await drive(engine, chamber, 10)
        st = await engine.pause("alice", "door opened")
        assert st["state"] == "paused" and st["reason"] == "door opened" and engine.run_tag == "RC-5"
        await drive(engine, chamber, 3000)
        assert engine.state == "paused"  # no step runs while paused
        with pytest.raises(NotAllowed):
            await engine.pause("alice")
        await engine.resume("alice")
        assert engine.state == "settling" and engine.step == 0
        await engine.skip("alice", "not needed")
        assert engine.step == 1 and engine.outcomes == ["skipped"]
        st = await engine.abort("carol@site", "power cut planned", local=True)
        assert st["state"] == "aborted" and "safe setpoints of step 2 written" in st["reason"]
        assert ctl.applied[-1] == {"temperature": 21.0}
        with pytest.raises(NotAllowed, match="aborted"):
            await engine.resume("alice")  # a local abort wins over a later resume
        assert engine.run_tag == "between-runs"
        st = await engine.status()
        assert st["last_command"]["command"] == "resume" and st["last_command"]["accepted"] is False
        events = await points(journal, "run_event")
    assert not [e for e in events if "command" in e.fields]  # gateway.control records commands
    abort = next(e for e in events if e.fields["state"] == "aborted")
    assert abort.fields["local"] is True and abort.fields["actor"] == "carol@site"


async def test_a_restart_resumes_the_step_it_was_in(tmp_path: Path) -> None:
    chamber = Chamber()
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, FakeController(chamber))
        await engine.open()
        await engine.start(procedure(20.0, 25.0, 30.0), "RC-7", "alice")
        await drive(engine, chamber, 20_000, until=lambda e: e.step == 1 and e.state == "recording")
    # the process is gone: a new journal object and engine on the same file
    ctl = FakeController(chamber)
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, ctl)
        await engine.open()
        assert engine.run_tag == "RC-7" and engine.step == 1  # tagged before any step runs
        await engine.evaluate()
        assert engine.state == "settling" and engine.step == 1 and ctl.applied == [{"temperature": 25.0}]
        assert "restarted while recording in step 1" in engine.reason and "partial window" in engine.reason
        await drive(engine, chamber, 20_000)
        assert engine.state == "finished" and engine.outcomes == ["stable"] * 3
        windows = await points(journal, "run_window")
    assert [w.fields["step"] for w in windows] == [0, 1, 2]  # step 1 recorded once, after the restart


async def test_a_restart_while_paused_stays_paused(tmp_path: Path) -> None:
    chamber = Chamber()
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, FakeController(chamber))
        await engine.open()
        await engine.start(procedure(20.0, 25.0), "RC-8", "alice")
        await engine.pause("alice", "lunch")
    ctl = FakeController(chamber)
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, ctl)
        await engine.open()
        await engine.evaluate()
        assert engine.state == "paused" and "restarted while paused (lunch)" in engine.reason
        assert ctl.applied == [] and engine.run_tag == "RC-8"


async def test_bad_start_arguments_are_refused(tmp_path: Path) -> None:
    chamber = Chamber()
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, FakeController(chamber))
        await engine.open()
        with pytest.raises(NotAllowed, match="one non-empty line"):
            await engine.start(procedure(20.0), " ", "a")
        with pytest.raises(NotAllowed, match=r"\[gateway\] run"):
            await engine.start(procedure(20.0), "between-runs", "a")
        with pytest.raises(NotAllowed, match="no step"):
            await engine.start(procedure(), "RC-9", "a")
        assert engine.state == "idle" and engine.run_tag == "between-runs"


def test_the_example_procedure_becomes_the_engines_steps() -> None:
    from gateway.procedure import load_procedure
    from gateway.run import plan_of
    from gateway.run.plan import plan_from_json, plan_to_json

    proc = load_procedure(Path(__file__).parents[3] / "deploy/examples/procedure.toml")
    plan = plan_of(proc)
    assert len(plan) == len(proc.steps) and plan[-1].final
    first = plan[0]
    named = {ch: q for q, chs in proc.references.items() for ch in chs}
    assert set(named.values()) == {"temperature", "humidity"} and first.references == named
    rh = next(ch for ch, q in named.items() if q == "humidity")
    assert first.key_of(rh, "relative_humidity", "dut") == "humidity"  # a named channel, whatever its role
    assert first.key_of("ref2-t", "temperature", "reference") is None  # named references only
    assert first.criteria_for("humidity").max_std == 0.5 and first.criteria_for("temperature").max_std == 0.05
    assert plan_from_json(plan_to_json(plan)) == plan


async def test_a_restart_between_a_steps_end_and_the_next_goes_on_never_records_it_again(tmp_path: Path) -> None:
    """Killed after step 0's end (its window committed) while step 1's setpoint is being
    written: the restart goes on with step 1; step 0 is not recorded twice."""
    import asyncio

    chamber = Chamber()
    ctl = FakeController(chamber)
    hang = asyncio.Event()
    writing = asyncio.Event()

    async def apply_hanging(setpoints: dict[str, float]) -> None:
        ctl.applied.append(dict(setpoints))
        if setpoints["temperature"] == 25.0:
            writing.set()
            await hang.wait()  # the process dies here
        chamber.target = setpoints["temperature"]

    ctl.apply = apply_hanging  # type: ignore[method-assign]
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, ctl)
        await engine.open()
        await engine.start(procedure(20.0, 25.0), "RC-10", "alice")
        task = asyncio.create_task(drive(engine, chamber, 20_000))
        await writing.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    ctl2 = FakeController(chamber)
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, ctl2)
        await engine.open()
        assert engine.run_tag == "RC-10" and engine.step == 0
        await engine.evaluate()
        assert engine.state == "settling" and engine.step == 1 and ctl2.applied == [{"temperature": 25.0}]
        assert engine.reason == "gateway restarted after step 0 ended stable"
        await drive(engine, chamber, 20_000)
        assert engine.state == "finished" and engine.outcomes == ["stable", "stable"]
        windows = await points(journal, "run_window")
    assert [w.fields["step"] for w in windows] == [0, 1]


async def test_a_reading_the_tracker_refuses_is_dropped_alone(tmp_path: Path) -> None:
    """A batch with a reading older than the channel's last (or not finite): that one is dropped
    and counted, the others of the batch are evaluated; readings of other channels and roles,
    and readings taken before the step began, are not evaluated."""
    chamber = Chamber()
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, FakeController(chamber))
        await engine.open()
        early = chamber.tick()
        await engine.start(procedure(20.0), "RC-11", "alice")
        a, b, c = chamber.tick(), chamber.tick(), chamber.tick()
        dut = Reading(a.site, a.gateway, a.run, "dut-t", "temperature", "degC", "dut", 20.1, a.time_ns)
        nan = Reading(a.site, a.gateway, a.run, a.channel, a.quantity, a.unit, a.role, float("nan"), c.time_ns + 1)
        engine.observe([early, a, dut, c, b, nan])
        await engine.evaluate()
        st = await engine.status()
        (ref,) = st["references"]
        assert ref["channel"] == "ref-t" and ref["dropped"] == 2  # b came after c; the NaN
        assert engine._live["ref-t"].tracker.count == 2  # a and c: not `early`, not the DUT


@pytest.mark.parametrize("cause", ["not_stable", "read_back"])
async def test_a_failed_run_returns_the_chamber_to_the_final_safe_setpoint(tmp_path: Path, cause: str) -> None:
    """on_not_stable = "stop" ends the procedure there, then [final] (README "Procedures"); a
    controller error too: the safe setpoints are written before `failed`."""
    chamber = Chamber(wobble=0.5 if cause == "not_stable" else 0.0)
    ctl = FakeController(chamber, mismatch={25.0: 24.0} if cause == "read_back" else {})
    proc = procedure(20.0, 25.0, max_s=300.0, on_not_stable="stop")
    proc.steps.append(type(proc.steps[0])(2, "safe", {"temperature": 21.0}, final=True))
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, ctl)
        await engine.open()
        await engine.start(proc, "RC-12", "alice")
        await drive(engine, chamber, 5000)
        assert engine.state == "failed" and "safe setpoints of step 2 written" in engine.reason
        assert ctl.applied[-1] == {"temperature": 21.0}


@pytest.mark.parametrize("where", ["recording", "between"])
async def test_on_restart_pause_holds_the_run_paused(tmp_path: Path, where: str) -> None:
    """[run] on_restart = "pause": a restarted gateway writes no setpoint until a resume, which
    goes on with the step it was in (or the next one, when the step had ended)."""
    import asyncio

    chamber = Chamber()
    ctl = FakeController(chamber)
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = engine_for(journal, chamber, ctl)
        await engine.open()
        await engine.start(procedure(20.0, 25.0), "RC-13", "alice")
        if where == "recording":
            await drive(engine, chamber, 20_000, until=lambda e: e.state == "recording")
        else:
            hang = asyncio.Event()

            async def apply_hanging(setpoints: dict[str, float]) -> None:
                await hang.wait()

            ctl.apply = apply_hanging  # type: ignore[method-assign]
            task = asyncio.create_task(drive(engine, chamber, 20_000))
            while engine.step != 1:
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    ctl2 = FakeController(chamber)
    async with Journal(tmp_path / "journal.db", ["s"]) as journal:
        engine = RunEngine(journal, {"chamber": ctl2}, site="lab1", gateway="gw01", idle_run="between-runs",
                           clock=lambda: chamber.t_ns, on_restart="pause")
        await engine.open()
        await engine.evaluate()
        assert engine.state == "paused" and "on_restart = 'pause'" in engine.reason and ctl2.applied == []
        assert engine.step == (0 if where == "recording" else 1) and engine.run_tag == "RC-13"
        await engine.resume("alice")
        await drive(engine, chamber, 20_000)
        assert engine.state == "finished"
        windows = await points(journal, "run_window")
    assert [w.fields["step"] for w in windows] == [0, 1]
