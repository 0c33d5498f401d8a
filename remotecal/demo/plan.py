"""What the demo runs: its remote run's procedure, timing, stability criteria and output folder.

The demo is a remote run: the institute sends a signed start carrying the procedure
(`DEMO_STEPS`: a relative-humidity sweep up and back down at 25 degC, DKD-R 5-8's sequence so
the hysteresis shows, then back to a safe setpoint), the gateway steps the controllable
virtual chamber through it and records each step's window once stable, and the pipeline's
calibration points are those windows.

The chamber runs `speed` times faster than real time; readings are stamped by the wall clock,
so the demo's stability criteria and the procedure's times, set in chamber time (a 600 s
window, a 900 s minimum plateau, a slope of at most 0.01 K/min or 0.05 %rh/min, a standard
deviation of at most 0.03 K or 0.3 %rh), are scaled by the same factor
(remotecal.demo.configs, as deploy/examples/procedure.toml is for sim.toml's x60).

`--speed` is at most MAX_SPEED (2000): the gateway reads every device each 0.1 s of wall
clock, and at x2000 the 600 s window lasts 0.3 s and holds the 3 readings a window needs
(pipelines.plateaus.MIN_SAMPLES); any faster and no plateau can be found.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.errors import RemotecalError, os_error_text
from pipelines.plateaus import MIN_SAMPLES

__all__ = [
    "ACTOR", "CHAMBER_TAU_S", "DEFAULT_SPEED", "DEMO_FINAL", "DEMO_HUMIDITY", "DEMO_TEMPERATURE", "GATEWAY",
    "IDLE_RUN", "INSTITUTE", "MAX_SPEED", "POLL_S", "RUN_ID", "SITE", "DemoPlan", "check_influx",
    "influx_url_arg", "prepare_out", "speed_arg",
]

# The procedure (remotecal.demo.configs.procedure_text): a humidity sweep up and down at one
# temperature, then the safe setpoint.  The chamber starts at the first step's setpoints.
DEMO_TEMPERATURE = 25.0                      # degC, every step
DEMO_HUMIDITY = (30.0, 50.0, 70.0)           # %rh, swept up_down: 30, 50, 70, 50, 30
DEMO_FINAL = (25.0, 50.0)                    # the safe setpoint at the end (nothing recorded)
SETTLE_MIN_S = 600.0                         # chamber time: not stable before this after a write
RECORD_S = 2400.0                            # a step's window: a DUT's first window, MIN_DURATION_S, margin
MAX_S = 7200.0                               # a step not stable by then ends not_stable
FINAL_MAX_S = 3600.0
CHAMBER_TAU_S = 180.0
"""The chamber's time constant [s]: a small benchtop chamber, stable about 20 min after a 20 %rh step."""

SITE, GATEWAY = "demo-lab", "gw-demo"
INSTITUTE = "remotecal demo institute"
ACTOR = "Demo Engineer (remotecal demo institute)"
"""Who sends the start (the command's actor)."""
RUN_ID = "DEMO-0001"
"""The remote run's id, given by the institute's start."""
IDLE_RUN = "demo-idle"
"""The gateway's run tag outside a run ([gateway] run)."""

# The demo's stability criteria in chamber time; pipeline.toml gets them scaled by the speed.
WINDOW_S = 600.0
MIN_DURATION_S = 900.0
MAX_STD_T = 0.03          # K; a standard deviation does not scale with time
MAX_SLOPE_T = 0.01        # K/min
MAX_STD_RH = 0.3          # %rh
MAX_SLOPE_RH = 0.05       # %rh/min

POLL_S = 0.1
"""How often (wall clock) the gateway polls the Modbus devices and the MQTT nodes publish."""
MAX_SPEED = float(round(WINDOW_S / (MIN_SAMPLES * POLL_S)))
"""Above this the stability window, WINDOW_S / speed of wall clock, holds fewer readings than
a window needs (MIN_SAMPLES, one per POLL_S): no plateau could be found."""
DEFAULT_SPEED = 720.0


@dataclass
class DemoPlan:
    """What the demo runs: its timing and where everything goes."""

    out: Path
    speed: float = DEFAULT_SPEED
    influx_url: str | None = None
    poll_s: float = POLL_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be a finite number > 0, not {self.speed!r}")

    @property
    def max_wall_s(self) -> float:
        """The longest the run may take (every step to its max_s), wall clock."""
        steps = 2 * len(DEMO_HUMIDITY) - 1
        return (steps * MAX_S + FINAL_MAX_S) / self.speed


def prepare_out(out: Path) -> Path:
    """Create `out` and an empty `out/work`; RemotecalError naming the path and the reason
    when that cannot be done (a path under /proc, a file in the way, no permission)."""
    if out.exists() and not out.is_dir():
        raise RemotecalError(f"--out {out}: not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno and exc.filename == str(out) else os_error_text(exc)
        raise RemotecalError(f"--out {out}: cannot create the output directory: {reason}") from None
    work = out / "work"
    try:
        if work.is_dir() and not work.is_symlink():
            shutil.rmtree(work)
        elif work.exists() or work.is_symlink():
            work.unlink()
        work.mkdir()
    except OSError as exc:
        raise RemotecalError(
            f"--out {out}: cannot prepare the work directory: {os_error_text(exc)}") from None
    return work


def speed_arg(text: str) -> float:
    """--speed: a number > 0 and at most MAX_SPEED (argparse reports the ArgumentTypeError)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number > 0 and at most {MAX_SPEED:g}, not {text!r}") from None
    if not (math.isfinite(x) and 0 < x <= MAX_SPEED):
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range: the speed must be > 0 and at most {MAX_SPEED:g} "
            f"(at x{MAX_SPEED:g} the {WINDOW_S:g} s stability window lasts {WINDOW_S / MAX_SPEED:g} s "
            f"and holds the {MIN_SAMPLES} readings a window needs at one per {POLL_S:g} s)")
    return x


def influx_url_arg(text: str) -> str:
    """--influx: an http:// or https:// URL with a host."""
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number or out of range
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL of an InfluxDB, not {text!r}")
    return text


def check_influx(url: str, timeout: float = 3.0) -> None:
    """RemotecalError when nothing answers at `url`: the demo would run for nothing, then fail."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout):
            pass
    except OSError as exc:
        raise RemotecalError(f"--influx {url}: cannot connect: {os_error_text(exc)}") from None
