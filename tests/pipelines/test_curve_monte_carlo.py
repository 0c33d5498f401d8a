"""The correction curve's uncertainty at mid-range against a Monte Carlo of the whole run
(issue 13 section 6).

Each simulated run: a chamber at 10, 20, 30 and 40 degC (1 Hz, 20 min plateaus); the DUT's
true error is 0.1 + 0.002 (T - 25) K.  Drawn once per run, as a real run has them once: the
reference's true correction differs from its certificate's by e ~ N(0, 0.02) K (U = 0.04,
k = 2) and by a drift d ~ U(-0.01, 0.01) K, and the DUT sits where the chamber is delta ~
U(-0.03, 0.03) K warmer (the config's reference_drift and chamber_inhomogeneity).  Per
reading: white noise of 0.002 K on the reference and AR(1) noise (phi 0.9, 0.01 K) on the
DUT.  The pipeline computes the points and fits the degree-1 curve; its error at mid-range
against the DUT's true correction is collected over the runs.  Its spread must match the
curve's stated u there (within 15 %: the Monte Carlo's own 3.5 %,
the budget's conservative rows), which
the fit with the points' covariance does and the weighted fit of independent points, by
half, does not.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from scipy import signal

from pipelines.config import parse_pipeline_config
from pipelines.curve import fit_curves
from pipelines.run import compute
from pipelines.source import ChannelData

RUNS = 400
SETPOINTS = (10.0, 20.0, 30.0, 40.0)
PLATEAU_S, RAMP_S = 1200.0, 300.0
T0 = 1_795_680_000.0
CERT_CORRECTION, U_CAL, DRIFT, INHOMOGENEITY = 0.03, 0.02, 0.01, 0.03
X_MID = 25.1

CONFIG: dict[str, Any] = {
    "run": {"id": "RC-MC"},
    "source": {"kind": "local", "path": "unused.db"},
    "stability": {"window_s": 300, "max_std": 0.05, "max_slope_per_min": 0.01, "min_duration_s": 600},
    "comparisons": [{"dut": "dut1-t", "reference": "ref-t", "quantity": "temperature"}],
    "reference_certificate": {"ref-t": {"points": [[0.0, CERT_CORRECTION, 2 * U_CAL, 2.0],
                                                   [50.0, CERT_CORRECTION, 2 * U_CAL, 2.0]]}},
    "uncertainty": {"reference_drift": DRIFT, "dut_resolution": 1e-9, "chamber_inhomogeneity": INHOMOGENEITY},
}


def dut_error(temperature: np.ndarray | float) -> np.ndarray | float:
    return 0.1 + 0.002 * (np.asarray(temperature) - 25.0)


def true_correction(x: float) -> float:
    """The correction that takes the DUT's reading x to the temperature at its place."""
    t = (x - 0.1 + 0.05) / 1.002  # x = T + 0.1 + 0.002 (T - 25)
    return t - x


def simulate(rng: np.random.Generator) -> dict[str, ChannelData]:
    knots_t, knots_v, at = [0.0], [SETPOINTS[0]], 0.0
    for i, sp in enumerate(SETPOINTS):
        at += PLATEAU_S
        knots_t.append(at)
        knots_v.append(sp)
        if i + 1 < len(SETPOINTS):
            at += RAMP_S
            knots_t.append(at)
            knots_v.append(SETPOINTS[i + 1])
    t = np.arange(0.0, at, 1.0)
    truth = np.interp(t, knots_t, knots_v)
    e, d, delta = rng.normal(0, U_CAL), rng.uniform(-DRIFT, DRIFT), rng.uniform(-INHOMOGENEITY, INHOMOGENEITY)
    ref = truth - (CERT_CORRECTION + e + d) + rng.normal(0, 0.002, t.size)
    phi = 0.9
    noise = signal.lfilter([1.0], [1.0, -phi], rng.normal(0, 0.01 * math.sqrt(1 - phi**2), t.size))
    at_dut = truth + delta
    dut = at_dut + dut_error(at_dut) + noise
    return {"ref-t": ChannelData(T0 + t, ref, "temperature", "degC", "reference"),
            "dut1-t": ChannelData(T0 + t, dut, "temperature", "degC", "dut")}


def test_curve_u_at_mid_range_matches_a_monte_carlo_of_the_run() -> None:
    cfg = parse_pipeline_config(copy.deepcopy(CONFIG))
    rng = np.random.default_rng(28037)
    errors, stated, independent = [], [], []
    for _ in range(RUNS):
        results = compute(cfg, simulate(rng))
        assert len(results) == len(SETPOINTS)
        curve = fit_curves(results, 1)["dut1-t"]
        errors.append(float(curve(X_MID)) - true_correction(X_MID))
        stated.append(float(curve.u_fit(X_MID)[0]))
        independent.append(float(fit_curves(results, 1, correlated=False)["dut1-t"].u_fit(X_MID)[0]))
    spread = float(np.std(errors, ddof=1))
    u_stated, u_independent = float(np.mean(stated)), float(np.mean(independent))
    print(f"Monte Carlo spread at {X_MID} degC: {spread:.4f} K (mean error {np.mean(errors):+.4f}); "
          f"stated u {u_stated:.4f} K (GLS), {u_independent:.4f} K (independent points)")
    assert abs(float(np.mean(errors))) < 3 * spread / math.sqrt(RUNS)  # unbiased
    assert u_stated == pytest.approx(spread, rel=0.15)
    assert u_independent < 0.7 * spread
