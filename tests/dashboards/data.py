"""A realistic run for the dashboard tests, as line protocol.

Three hours ending now: a chamber stepping through 15, 25 and 35 degC (20 min ramp, then
40 min steady), a reference `ref-t` and two DUTs `dut1-t`, `dut2-t` read every 10 s by
gateway `gw01` of site `lab1`, with a second gateway `gw02` at `lab2` reporting only its
health; `gateway_health` every 10 s with growing counters; one `calibration_point` per DUT
and plateau, stamped at the plateau's end.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from gateway.reading import HealthSample, Reading
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


def make_run(seed: int = 1) -> Run:
    rng = random.Random(seed)
    start_s = int(time.time()) - len(SETPOINTS) * STEP_S
    readings: list[Reading | HealthSample] = []
    for i in range(len(SETPOINTS) * STEP_S // PERIOD_S):
        t_s = start_s + i * PERIOD_S
        true = _chamber(i * PERIOD_S) + 0.01 * math.sin(i / 30)
        channels = {"ref-t": ("reference", true + rng.gauss(0, 0.003))}
        for name, offset in DUT_OFFSETS.items():
            channels[name] = ("dut", true + offset + rng.gauss(0, 0.01))
        for channel, (role, value) in channels.items():
            readings.append(Reading(SITE, GATEWAY, RUN, channel, "temperature", "degC", role,
                                    round(value, 4), t_s * 10**9))
        for site, gateway in ((SITE, GATEWAY), ("lab2", "gw02")):
            readings.append(HealthSample(site, gateway, t_s * 10**9 + 1, {
                "journal_pending": rng.randrange(0, 50), "journal_bytes": 4096 * (1 + i % 7),
                "journal_full": 0, "received": 3 * (i + 1), "rejected": i // 100,
                "duplicates": 0, "refused": 0, "dropped": 0, "delivered": 3 * i,
                "sink_errors": 0, "sink_rejected": 0, "sources_connected": 2,
                "uptime_s": float(i * PERIOD_S),
            }))
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
