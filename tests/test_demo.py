"""`remotecal demo` runs the whole chain and its results match the errors the devices were given."""

from __future__ import annotations

import contextlib
import csv
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# The demo's devices (remotecal/demo/devices.py): DUT errors as functions of the true value; the
# corrections must come back as their negatives, within the expanded uncertainty.
TRUTH = {
    "dut1-t": lambda t: 0.3 + 0.004 * t,
    "dut2-t": lambda t: -0.2,
    "dut3-t": lambda t: 0.1 - 0.003 * t,
    "dut1-rh": lambda rh: -1.5,
    "dut2-rh": lambda rh: 2.0,
    "dut3-rh": lambda rh: -0.8,
}


def test_demo_runs_to_the_end_and_finds_the_truth(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "remotecal", "demo", "--out", str(out), "--speed", "720"],
                          capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"corrections.csv  {out / 'corrections.csv'}" in proc.stdout
    assert f"run events       {out / 'run_events.csv'}" in proc.stdout
    _corrections_match_the_truth(out)
    _the_run_went_through_its_states(out)
    print(f"\ndemo: {elapsed:.1f} s wall for the remote run at x720")
    xml = (out / "certificate.xml").read_bytes()
    from pipelines.dcc import certificate_identifier, read_corrections, validate_dcc

    validate_dcc(xml)
    cid = certificate_identifier(xml)
    report = (out / "report.html").read_text()
    assert cid in report and "<img" in report and "http://" not in report.replace("http://www.w3.org", "")
    assert "SIMULATED DATA" in report and "720 times faster than" in " ".join(report.split())
    assert b"SIMULATED: the readings are a simulation" in xml
    assert read_corrections(xml)
    # The certificate states who and what: the demo's laboratory, customer and each DUT's serial,
    # so the pipeline warns of nothing missing.
    for text in (b"remotecal demo laboratory", b"remotecal demo customer", b"Demo Engineer",
                 b"DEMO-THR-0001", b"DEMO-MQTT-0002", b"DEMO-MQTT-0003"):
        assert text in xml, text
    assert not any(w in proc.stderr for w in ("[certificate]", "[items.", "items: channel")), proc.stderr[-2000:]
    # ... each reference standard with its certificate, the ambient conditions of the room and
    # the laboratory's CMC: nothing "not stated", no CMC warning, no warning at all.
    for text in (b"DEMO-CAL-T-0001", b"DEMO-CAL-RH-0002", b"DEMO-PT100-0001", b"basic_temperature",
                 b"basic_humidityRelative"):
        assert text in xml, text
    assert b"not stated" not in xml
    assert "WARNING" not in proc.stderr and "cmc" not in proc.stderr.lower(), proc.stderr[-2000:]
    assert "No expanded uncertainty stated here is smaller than the calibration" in report
    # The live display's last line ends with a newline (stderr is a pipe here, not a terminal).
    assert proc.stderr.endswith("\n"), proc.stderr[-200:]


def _corrections_match_the_truth(out: Path) -> None:
    """The certificate's points are the procedure's recorded steps: per DUT channel one point
    per step, in the procedure's order, at its setpoints (the humidity up and back down), the
    hysteresis evaluated where a setpoint was met going up and going down."""
    from remotecal.demo.plan import DEMO_HUMIDITY, DEMO_TEMPERATURE

    rows = list(csv.DictReader((out / "corrections.csv").open()))
    assert sorted({r["channel"] for r in rows}) == sorted(TRUTH)
    sweep = [*DEMO_HUMIDITY, *DEMO_HUMIDITY[-2::-1]]  # 30, 50, 70, 50, 30
    assert len(rows) == len(sweep) * len(TRUTH)
    for channel in TRUTH:
        points = sorted((r for r in rows if r["channel"] == channel), key=lambda r: int(r["point"]))
        assert [int(r["point"]) for r in points] == list(range(1, len(sweep) + 1))
        if channel.endswith("-rh"):
            assert [float(r["setpoint"]) for r in points] == sweep, channel
            assert [r["direction"] for r in points] == ["up", "up", "up", "down", "down"], channel
            # up and down met at 30 and 50 %rh: the hysteresis is a number there, not at 70
            assert [r["hysteresis"] != "" for r in points] == [True, True, False, True, True], channel
            assert points[0]["hysteresis"] == points[-1]["hysteresis"]
        else:
            assert {float(r["setpoint"]) for r in points} == {DEMO_TEMPERATURE}, channel
    for r in rows:
        expected = -TRUTH[r["channel"]](float(r["setpoint"]))
        assert abs(float(r["correction"]) - expected) <= float(r["U"]), r


def _run_events(out: Path) -> list[dict[str, object]]:
    """The run's run_event points, as the demo's store holds them, in time order."""
    import json
    import sqlite3

    from remotecal.demo import RUN_ID

    with contextlib.closing(sqlite3.connect(out / "work" / "store.db")) as db:
        rows = db.execute("SELECT fields FROM point WHERE measurement = 'run_event' AND run = ? "
                          "ORDER BY time_ns", (RUN_ID,)).fetchall()
    return [json.loads(f) for (f,) in rows]


def _the_run_went_through_its_states(out: Path) -> None:
    """The institute's signed start (remote, accepted, by the demo's engineer), then each step
    settling and recording, the final safe setpoint, finished: every transition in the store."""
    from remotecal.demo.plan import ACTOR

    events = _run_events(out)
    start = events[0]
    assert start["command"] == "start" and start["accepted"] is True, start
    assert start["origin"] == "remote" and start["actor"] == ACTOR and start.get("seq"), start
    states = [(e["state"], e.get("step")) for e in events if "state" in e]
    assert states[0] == ("settling", 0) and states[-1] == ("finished", 5), states
    for step in range(6):
        assert ("settling", step) in states and ("recording", step) in states, (step, states)
    outcomes = [e.get("outcome") for e in events if "outcome" in e]
    assert outcomes == ["stable"] * 6, outcomes
    assert [e["setpoint_humidity"] for e in events if e.get("state") == "settling"] == [30, 50, 70, 50, 30, 50]
    # ... and the same transitions in the demo's output, out/run_events.csv
    rows = list(csv.DictReader((out / "run_events.csv").open()))
    assert [(r["state"], r["step"], r["outcome"], r["command"]) for r in rows] == [
        (str(e.get("state", "")), str(e.get("step", "")), str(e.get("outcome", "")), str(e.get("command", "")))
        for e in events]
    assert rows[-1]["state"] == "finished" and rows[0]["command"] == "start" and rows[0]["actor"] == ACTOR


def test_demo_on_its_embedded_broker_when_mosquitto_is_not_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # `make demo` on a machine without Mosquitto: the embedded amqtt broker, MQTT 3.1.1.
    import asyncio
    import shutil

    import remotecal.demo.broker
    import remotecal.demo.chain as chain
    from remotecal.demo import DemoPlan

    which = shutil.which
    monkeypatch.setattr(remotecal.demo.broker.shutil, "which",
                        lambda name, *a, **k: None if name == "mosquitto" else which(name, *a, **k))
    used: list[str] = []
    broker = chain.broker

    @contextlib.asynccontextmanager
    async def spy(workdir: Path) -> AsyncIterator[tuple[int, str]]:
        async with broker(workdir) as (port, protocol):
            used.append(protocol)
            yield port, protocol

    monkeypatch.setattr(chain, "broker", spy)
    out = tmp_path / "demo"
    outputs = asyncio.run(chain.run_demo(DemoPlan(out=out, speed=720)))
    assert used == ["3.1.1"]
    assert outputs["certificate.xml"] == out / "certificate.xml"
    _corrections_match_the_truth(out)
    _the_run_went_through_its_states(out)  # the signed start, handed over in-process
    assert "run control (MQTT 5)" in caplog.text  # said, not hidden


def test_ctrl_c_on_the_demo_says_interrupted_and_exits_130(tmp_path: Path) -> None:
    """Ctrl-C in a terminal while the chain runs: the gateway flushes and stops, the display
    ends, and the one line says what happened (not "the demo gateway stopped early")."""
    import os
    import pty
    import select
    import signal

    pid, fd = pty.fork()
    if pid == 0:  # the child: the demo on a terminal, as a person runs it
        os.execv(sys.executable, [sys.executable, "-m", "remotecal", "demo", "--out", str(tmp_path / "demo")])
    screen = b""
    interrupted = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 0.2)[0]:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
            if not interrupted and b"ref-t" in screen:  # the display shows readings: the chain runs
                os.kill(pid, signal.SIGINT)
                interrupted = True
    finally:
        if not interrupted:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = screen.decode(errors="replace")
    assert interrupted, text[-2000:]
    assert os.waitstatus_to_exitcode(status) == 130, text[-2000:]
    assert "Traceback" not in text and "stopped early" not in text, text[-2000:]
    assert text.rstrip().endswith("remotecal demo: interrupted"), text[-2000:]
