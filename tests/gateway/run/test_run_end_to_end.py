"""A remote run end to end on real servers: Mosquitto -> a gateway process with a controller
-> influxd.  A procedure runs to its end with one recorded window per step; a gateway
SIGKILLed mid-step resumes that step, and every reading published reaches InfluxDB exactly
once, tagged with the run; a setpoint read back different fails the step."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.localcontrol import GatewayNotRunning, request_sync
from pipelines.config import parse_pipeline_config
from pipelines.run import compute
from pipelines.source import live_windows, load_run
from tests.gateway.harness import GatewayProcess
from tests.gateway.run.sim import ChamberSim, procedure_text, site_config
from tests.gateway.test_end_to_end import wait_until
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


class SimGateway(GatewayProcess):
    """The gateway with the simulated chamber's controller kind (tests.gateway.run.sim)."""

    def start(self) -> None:
        import subprocess

        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.gateway.run.sim", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )


def status(data: Path) -> dict[str, Any] | None:
    try:
        return dict(request_sync(data, "run.status", timeout=5)["result"])
    except GatewayNotRunning:
        return None


def events(influxd: InfluxD, run: str) -> list[dict[str, Any]]:
    return influxd.rows(f"SELECT * FROM run_event WHERE run = '{run}'", "calibration")


def start_gateway(tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD, **kw: Any) -> tuple[SimGateway, Path]:
    influxd.create_database("calibration")
    data = tmp_path / "gw" / "data"
    gw = SimGateway(tmp_path / "gw", site_config(data, mosquitto.port, influxd.url, **kw))
    gw.start()
    wait_until(lambda: status(data), 30, "the gateway's control socket", gw)
    mosquitto.wait_subscribed("sim/dut/state")
    return gw, data


def test_a_run_killed_mid_step_resumes_that_step_and_loses_or_doubles_no_reading(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    chamber = ChamberSim(mosquitto.port)
    gw, data = start_gateway(tmp_path, mosquitto, influxd)
    try:
        chamber.start()
        wait_until(lambda: len(chamber.sent) > 20, 30, "readings before the run")
        reply = request_sync(data, "run.start", procedure=procedure_text(), run="RC-E2E", actor="alice@nmc")
        assert reply["ok"] and reply["result"]["state"] == "settling" and reply["result"]["step"] == 0
        wait_until(lambda: (s := status(data)) and s["step"] == 1 and s["state"] == "settling", 60,
                   "step 1", gw)
        time.sleep(0.3)
        gw.kill()  # SIGKILL mid-step
        time.sleep(1.0)  # readings wait at the broker meanwhile
        gw.start()
        wait_until(lambda: status(data), 30, "the restarted gateway", gw)
        st = status(data)
        assert st is not None and st["run"] == "RC-E2E" and st["step"] == 1, st
        wait_until(lambda: (s := status(data)) and s["state"] == "finished", 90, "the end of the run", gw)
        time.sleep(0.5)
        chamber.halt()
        chamber.join(30)
        assert chamber.error is None, chamber.error
        published = len(chamber.sent)
        wait_until(lambda: count(influxd) >= published, 60, f"{published} readings in influxd", gw)
        time.sleep(0.5)
        assert gw.terminate() == 0
    finally:
        chamber.halt()
        gw.kill()
    # every reading published reached InfluxDB exactly once, each with its sensor time
    rows = influxd.rows("SELECT value, run FROM reading WHERE channel = 'ref-t'", "calibration")
    duts = influxd.rows("SELECT value FROM reading WHERE channel = 'dut-t'", "calibration")
    assert sorted(r["value"] for r in duts) == sorted(v for _, v in chamber.dut_sent)
    assert len(rows) == published, "lost or duplicated readings"
    assert sorted(r["value"] for r in rows) == sorted(v for _, v in chamber.sent)
    # tagged with the run from its start to its end, [gateway] run outside
    first = min(int(e["time"]) for e in events(influxd, "RC-E2E"))
    tags = {r["run"] for r in rows}
    assert tags == {"between-runs", "RC-E2E"}
    assert all(r["run"] == "between-runs" for r in rows if int(r["time"]) < first - 2 * 10**9)
    ev = events(influxd, "RC-E2E")
    resumed = [e for e in ev if "gateway restarted while settling in step 1" in (e["reason"] or "")]
    assert len(resumed) == 1 and resumed[0]["step"] == 1 and resumed[0]["actor"] == "gateway"
    outcomes = [(e["step"], e["outcome"]) for e in ev if e.get("outcome")]
    assert outcomes == [(0, "stable"), (1, "stable"), (2, "stable")]
    assert ev[-1]["state"] == "finished"
    start = [e for e in ev if e.get("command") == "start"]  # gateway.control's point of the command
    assert len(start) == 1 and start[0]["accepted"] is True and start[0]["actor"].startswith("alice@nmc")
    # one recorded window per step, each inside its step and at its setpoint
    windows = influxd.rows("SELECT * FROM run_window WHERE run = 'RC-E2E'", "calibration")
    assert [(w["step"], w["channel"]) for w in windows] == [(0, "ref-t"), (1, "ref-t"), (2, "ref-t")]
    for w, sp in zip(windows, (20.0, 25.0, 30.0), strict=True):
        assert w["setpoint_temperature"] == sp and abs(w["mean"] - sp) < 0.01
        assert w["end"] - w["start"] >= 2 * 10**9 and int(w["time"]) == w["end"]
        inside = [v for t, v in chamber.sent if w["start"] <= t * 10**6 <= w["end"]]
        assert len(inside) == w["n"]
    # the pipeline takes the windows recorded live as its calibration points
    cfg = parse_pipeline_config({
        "run": {"id": "RC-E2E"},
        "source": {"kind": "influxdb", "url": influxd.url, "database": "calibration", "write_results": False},
        "stability": {"window_s": 1.0, "max_std": 0.01, "max_slope_per_min": 0.5},
        "comparisons": [{"dut": "dut-t", "reference": "ref-t", "quantity": "temperature", "dut_settling": False}],
        "uncertainty": {"reference_drift": 0.01, "dut_resolution": 0.01, "chamber_inhomogeneity": 0.03},
        "reference_certificate": {"ref-t": {"points": [[10.0, 0.0, 0.02, 2.0], [40.0, 0.0, 0.02, 2.0]]}},
    })
    live = live_windows(cfg)
    assert live == {"ref-t": [(w["start"] / 1e9, w["end"] / 1e9) for w in windows]}
    points = compute(cfg, load_run(cfg), live_windows=live)
    assert [(p.setpoint, p.n) for p in points] == [(20.0, windows[0]["n"]), (25.0, windows[1]["n"]),
                                                   (30.0, windows[2]["n"])]
    for p, w in zip(points, windows, strict=True):
        assert (p.t_start_s, p.t_end_s) == (w["start"] / 1e9, w["end"] / 1e9)
        assert p.reference_mean == pytest.approx(w["mean"], abs=1e-9)
        assert p.correction == pytest.approx(-0.1, abs=0.005)
    print(f"\nrun end to end: {published} readings, {len(ev)} run events, resumed after SIGKILL in step 1")


def count(influxd: InfluxD) -> int:
    res = influxd.query("SELECT COUNT(value) FROM reading WHERE channel = 'ref-t'", "calibration")[0]
    series = res.get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_a_setpoint_read_back_different_fails_the_step(tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    chamber = ChamberSim(mosquitto.port)
    gw, data = start_gateway(tmp_path, mosquitto, influxd, read_back={"25.0": 24.5})
    try:
        chamber.start()
        request_sync(data, "run.start", procedure=procedure_text(), run="RC-BAD", actor="bob")
        st = wait_until(lambda: (s := status(data)) and s["state"] == "failed" and s, 60, "the failure", gw)
        assert st["step"] == 1 and "read back 24.5 after writing 25" in st["reason"], st
        wait_until(lambda: any(e["state"] == "failed" for e in events(influxd, "RC-BAD")), 30, "the event", gw)
    finally:
        chamber.halt()
        gw.kill()
    ev = events(influxd, "RC-BAD")
    assert ev[-1]["state"] == "failed" and ev[-1]["step"] == 1 and ev[-1]["setpoint_temperature"] == 25.0
    assert [w["step"] for w in influxd.rows("SELECT * FROM run_window", "calibration")] == [0]


def test_a_chamber_that_never_settles_ends_the_step_not_stable_at_its_timeout(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    chamber = ChamberSim(mosquitto.port, wobble=0.2)
    gw, data = start_gateway(tmp_path, mosquitto, influxd)
    try:
        chamber.start()
        request_sync(data, "run.start", procedure=procedure_text(max_s=3.0), run="RC-WOBBLE", actor="bob")
        wait_until(lambda: (s := status(data)) and s["state"] == "finished", 60, "the end", gw)
        wait_until(lambda: any(e["state"] == "finished" for e in events(influxd, "RC-WOBBLE")), 30, "events", gw)
    finally:
        chamber.halt()
        gw.kill()
    ev = events(influxd, "RC-WOBBLE")
    ends = [e for e in ev if e.get("outcome")]
    assert [(e["step"], e["outcome"]) for e in ends] == [(0, "not_stable"), (1, "not_stable"), (2, "not_stable")]
    assert all("not stable within max_s = 3 s" in e["reason"] for e in ends)
    starts = {e["step"]: int(e["time"]) for e in ev if e["state"] == "settling" and not e.get("outcome")}
    for e in ends:  # no step ended before its timeout
        assert (int(e["time"]) - starts[e["step"]]) / 1e9 >= 3.0
    assert influxd.rows("SELECT * FROM run_window", "calibration") == []
