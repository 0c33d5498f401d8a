"""A realistic run for the dashboard tests, as line protocol.

Three hours ending now: a chamber stepping through 15, 25 and 35 degC (20 min ramp, then
40 min steady), a reference `ref-t` and two DUTs `dut1-t`, `dut2-t` read every 10 s by
gateway `gw01` of site `lab1`, with a second gateway `gw02` at `lab2` reporting only its
health; `gateway_health` every 10 s with growing counters; one `calibration_point` per DUT
and plateau, stamped at the plateau's end.  The run is a remote one: the run engine's
`run_event` and `run_window` points (a procedure of the three setpoints, the last still
recording).  For the alert rules: channel `amb-t` went silent 30 minutes ago, gateway `gw03`
(lab2) too, `gw02`'s backlog grows over the last 30 minutes and its run `RC-2026-0043` ended a
step not_stable 3 minutes ago.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from gateway.reading import FieldValue, HealthSample, Point, Reading
from gateway.sinks.influxdb.lineprotocol import encode_batch

__all__ = ["Run", "make_run"]

SITE, GATEWAY, RUN = "lab1", "gw01", "RC-2026-0042"
SETPOINTS = (15.0, 25.0, 35.0)
STEP_S, RAMP_S, PERIOD_S = 3600, 1200, 10
DUT_OFFSETS = {"dut1-t": 0.12, "dut2-t": -0.07}


@dataclass(frozen=True)
class Run:
    start_ns: int
    end_ns: int
    body: bytes


def _chamber(t_s: float) -> float:
    """Chamber temperature [degC] t_s seconds into the run: linear ramps, then steady."""
    step = min(int(t_s // STEP_S), len(SETPOINTS) - 1)
    into = t_s - step * STEP_S
    before = SETPOINTS[step - 1] if step else 20.0
    target = SETPOINTS[step]
    return target if into >= RAMP_S else before + (target - before) * into / RAMP_S


STALE_CHANNEL = "amb-t"
"""A chamber channel of the run that went silent 30 minutes before the end: "readings stale"."""
SILENT_S = 1800
REMOTE_RUN_2 = "RC-2026-0043"
"""gw02's run, whose second step ended not_stable 3 minutes before the end."""
CRITERIA = {"window_s_temperature": 600.0, "max_std_temperature": 0.02, "max_slope_per_min_temperature": 0.005}
"""The remote run's criteria for temperature, as the run engine writes them on every event."""


def _remote_run(start_s: int) -> list[Point]:
    """The run engine's points of RUN on gw01 (README "Data in InfluxDB"), by the documented
    schema: a signed start, per step settling -> recording -> the step's end (outcome stable)
    with one run_window on ref-t; the last step still recording; a refused command last."""
    ns = 10**9
    points = [Point("run_event", SITE, GATEWAY, RUN, start_s * ns - 2 * ns, {
        "command": "start", "accepted": True, "reason": "", "actor": "alice@nmc", "origin": "remote",
        "seq": 1_765_000_000_000_001, "procedure": "ab" * 32})]
    for step, setpoint in enumerate(SETPOINTS):
        t0 = start_s + step * STEP_S
        common: dict[str, FieldValue] = {"step": step, "step_name": f"T{setpoint:g}", "actor": "gateway",
                                         "setpoint_temperature": setpoint, **CRITERIA}
        points.append(Point("run_event", SITE, GATEWAY, RUN, t0 * ns, {
            **common, "state": "settling", "reason": "started" if step == 0 else f"step {step - 1} stable",
            **({"actor": "alice@nmc", "procedure": "ab" * 32} if step == 0 else {})}))
        stable = t0 + RAMP_S + 600
        points.append(Point("run_event", SITE, GATEWAY, RUN, stable * ns, {
            **common, "state": "recording", "reason": "stable on ref-t"}))
        if step < len(SETPOINTS) - 1:
            end = t0 + STEP_S - 120
            points.append(Point("run_event", SITE, GATEWAY, RUN, end * ns, {
                **common, "state": "recording", "reason": "recorded", "outcome": "stable"}))
            points.append(Point("run_window", SITE, GATEWAY, RUN, end * ns, {
                "step": step, "start": stable * ns, "end": end * ns, "n": (end - stable) // PERIOD_S + 1,
                "mean": setpoint + 0.001, "std": 0.004, "quantity": "temperature", "unit": "degC",
                "setpoint_temperature": setpoint}, (("channel", "ref-t"),)))
    points.append(Point("run_event", SITE, GATEWAY, RUN, (start_s + len(SETPOINTS) * STEP_S - 300) * ns, {
        "command": "skip", "accepted": False, "refusal": "not allowed", "actor": "bob@nmc",
        "origin": "remote", "reason": "skip is not allowed while recording", "seq": 1_765_000_000_000_002}))
    # gw02 (lab2): a run whose step 1 did not settle within its max_s.
    end_s = start_s + len(SETPOINTS) * STEP_S
    for t, fields in ((end_s - 5400, {"state": "settling", "step": 0, "reason": "started"}),
                      (end_s - 1800, {"state": "settling", "step": 1, "reason": "step 0 stable"}),
                      (end_s - 180, {"state": "settling", "step": 1, "outcome": "not_stable",
                                     "reason": "not stable within max_s = 1620 s (ref-t: std 0.08)"}),
                      (end_s - 179, {"state": "settling", "step": 2, "reason": "step 1 not_stable"})):
        points.append(Point("run_event", "lab2", "gw02", REMOTE_RUN_2, t * ns,
                            {**fields, "actor": "gateway", **CRITERIA}))
    return points


def make_run(seed: int = 1) -> Run:
    rng = random.Random(seed)
    start_s = int(time.time()) - len(SETPOINTS) * STEP_S
    readings: list[Reading | HealthSample | Point] = []
    for i in range(len(SETPOINTS) * STEP_S // PERIOD_S):
        t_s = start_s + i * PERIOD_S
        true = _chamber(i * PERIOD_S) + 0.01 * math.sin(i / 30)
        channels = {"ref-t": ("reference", true + rng.gauss(0, 0.003))}
        for name, offset in DUT_OFFSETS.items():
            channels[name] = ("dut", true + offset + rng.gauss(0, 0.01))
        if i * PERIOD_S < len(SETPOINTS) * STEP_S - SILENT_S:
            channels[STALE_CHANNEL] = ("chamber", true + 0.05)
        for channel, (role, value) in channels.items():
            readings.append(Reading(SITE, GATEWAY, RUN, channel, "temperature", "degC", role,
                                    round(value, 4), t_s * 10**9))
        late = i * PERIOD_S - (len(SETPOINTS) * STEP_S - SILENT_S)  # s into the last 30 minutes
        for site, gateway in ((SITE, GATEWAY), ("lab2", "gw02"), ("lab2", "gw03")):
            if gateway == "gw03" and late >= 0:
                continue  # gw03 went offline 30 minutes ago
            # gw02's uplink stopped delivering 30 minutes ago: its backlog grows ~3 readings/s.
            pending = 3 * late // PERIOD_S * PERIOD_S if gateway == "gw02" and late >= 0 else rng.randrange(0, 50)
            readings.append(HealthSample(site, gateway, t_s * 10**9 + 1, {
                "journal_pending": pending, "journal_bytes": 4096 * (1 + i % 7),
                "journal_full": 0, "received": 3 * (i + 1), "rejected": i // 100,
                "duplicates": 0, "refused": 0, "dropped": 0, "delivered": 3 * i,
                "sink_errors": 0, "sink_rejected": 0, "sources_connected": 2,
                "uptime_s": float(i * PERIOD_S),
            }))
    readings.extend(_remote_run(start_s))
    lines = [encode_batch(readings).decode()]
    for point, setpoint in enumerate(SETPOINTS, start=1):
        end_s = start_s + point * STEP_S - 60
        for channel, offset in DUT_OFFSETS.items():
            lines.append(
                f"calibration_point,channel={channel},point={point},quantity=temperature,run={RUN} "
                f"setpoint={setpoint},reference_mean={setpoint + 0.001},dut_mean={setpoint + offset},"
                f"correction={-offset},u_combined=0.021,U=0.043,k=2.03,n=240i,dof_eff=180.5 "
                f"{end_s * 10**9}"
            )
    return Run(start_s * 10**9, (start_s + len(SETPOINTS) * STEP_S) * 10**9, "\n".join(lines).encode())
