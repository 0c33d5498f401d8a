"""Type A of autocorrelated chamber data (SPEC section 7, issue 13 section 1): coverage on
simulated AR(1) runs with known truth.

Each run is n = 900 readings (15 min at 1 Hz) of an AR(1) process x_i = phi x_(i-1) + e_i
started in its stationary state, whose true mean is 0.  The stated expanded uncertainty
U = k(n_eff - 1) u must cover the truth in 95 % +- 2 % of the runs for phi up to 0.95
(6000 runs per phi: a Monte Carlo standard error of 0.3 %).  The old evaluation, s / sqrt(n)
with n - 1 degrees of freedom, covers 75 %, 50 %, 35 % and 25 % at phi = 0.5 ... 0.95.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from pipelines.uncertainty import autocorrelated_mean, combine, coverage_factor, type_a, type_a_autocorrelated

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not

RUNS = 6000
N = 900
PHIS = (0.0, 0.5, 0.8, 0.9, 0.95)


def ar1(rng: np.random.Generator, phi: float, runs: int, n: int) -> np.ndarray:
    e = rng.normal(size=(runs, n))
    e[:, 0] /= math.sqrt(1.0 - phi * phi)  # stationary start
    return np.asarray(signal.lfilter([1.0], [1.0, -phi], e, axis=1))


def k_of(dof: np.ndarray) -> np.ndarray:
    """`coverage_factor` per run (it caches the few distinct integers)."""
    return np.array([coverage_factor(float(d)) for d in dof])


@pytest.fixture(scope="module")
def runs() -> dict[float, np.ndarray]:
    rng = np.random.default_rng(20061)
    return {phi: ar1(rng, phi, RUNS, N) for phi in PHIS}


@pytest.mark.parametrize("phi", PHIS)
def test_stated_u_covers_the_truth_95_percent(runs: dict[float, np.ndarray], phi: float) -> None:
    x = runs[phi]
    m = autocorrelated_mean(x)
    coverage = float(np.mean(np.abs(x.mean(axis=1)) <= k_of(np.asarray(m.dof)) * m.u))
    print(f"phi {phi}: coverage {coverage:.2%}, median n_eff {np.median(m.n_eff):.0f}")
    assert 0.93 <= coverage <= 0.97
    # n_eff near the AR(1) value n (1 - phi) / (1 + phi) for n >> the correlation time
    assert np.median(m.n_eff) == pytest.approx(N * (1 - phi) / (1 + phi), rel=0.15)


@pytest.mark.parametrize("phi", PHIS[1:])
def test_the_old_evaluation_fails(runs: dict[float, np.ndarray], phi: float) -> None:
    """s / sqrt(n) with n - 1 dof, as the pipeline computed before."""
    x = runs[phi]
    u = x.std(axis=1, ddof=1) / math.sqrt(N)
    coverage = float(np.mean(np.abs(x.mean(axis=1)) <= coverage_factor(N - 1) * u))
    print(f"phi {phi}: old coverage {coverage:.2%}")
    assert coverage < 0.80


def test_through_the_budget_one_series_at_a_time(runs: dict[float, np.ndarray]) -> None:
    """The pipeline's path: `type_a_autocorrelated` of one series into `combine`: the same
    u and dof as the vectorised evaluation, and the same coverage on a subset."""
    x = runs[0.9][:400]
    m = autocorrelated_mean(x)
    covered = 0
    for i, row in enumerate(x):
        b = combine([type_a_autocorrelated("repeatability (Type A)", row)])
        assert b.u_combined == pytest.approx(float(m.u[i]), rel=1e-12)
        assert b.dof_eff == pytest.approx(float(m.n_eff[i]) - 1.0, rel=1e-12)
        covered += abs(row.mean()) <= b.U
    assert 0.91 <= covered / x.shape[0] <= 0.99


def test_white_noise_gives_the_classical_type_a() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=900)
    m = autocorrelated_mean(x)
    classic = type_a("t", x)
    if m.lag == 0:  # no positive lag-1 estimate: exactly s / sqrt(n)
        assert m.u == pytest.approx(classic.u, rel=1e-12) and m.n_eff == pytest.approx(900, rel=1e-12)
    assert m.u == pytest.approx(classic.u, rel=0.1)


def test_the_dut_own_readings_cap_n_eff() -> None:
    """A DUT read every 10 s, interpolated onto a 1 Hz reference: its 90 readings are not
    900; n_eff never exceeds them, and u grows accordingly."""
    rng = np.random.default_rng(9)
    t = np.arange(900.0)
    dut_t = t[::10]
    dut = rng.normal(0.0, 0.01, dut_t.size)
    diff = -np.interp(t, dut_t, dut) + rng.normal(0.0, 0.0005, t.size)
    free = autocorrelated_mean(diff)
    capped = autocorrelated_mean(diff, max_n=dut_t.size)
    assert capped.n_eff <= 90 and free.n_eff < 300  # interpolation shows as correlation anyway
    assert capped.u >= free.u
    c = type_a_autocorrelated("A", diff, max_n=90)
    assert c.dof <= 89


def test_degenerate_series() -> None:
    const = autocorrelated_mean(np.full(50, 3.0))
    assert const.u == 0.0 and const.n_eff == 50
    trend = autocorrelated_mean(np.linspace(0.0, 1.0, 200))
    assert trend.n_eff == 2.0  # a pure trend says nothing about its own mean
    with pytest.raises(ValueError, match="at least 2"):
        autocorrelated_mean([1.0])
    with pytest.raises(ValueError, match="finite"):
        autocorrelated_mean([1.0, math.nan, 2.0])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_readings_that_are_not_finite_are_refused_in_any_row(bad: float) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 200))
    x[1, 57] = bad
    with pytest.raises(ValueError, match="finite"):
        autocorrelated_mean(x)
    with pytest.raises(ValueError, match="finite"):
        autocorrelated_mean(x[1])
    x[1, 58] = -bad  # +inf and -inf: a NaN sum, refused all the same
    with pytest.raises(ValueError, match="finite"):
        autocorrelated_mean(x)


def test_the_type_a_estimate_is_the_mean_of_the_readings_and_its_u_that_of_the_rows() -> None:
    rng = np.random.default_rng(6)
    x = ar1(rng, 0.9, 40, 3000) * 0.01 + 20.0
    m = autocorrelated_mean(x)
    for i, row in enumerate(x):
        c = type_a_autocorrelated("A", row)
        assert c.value == float(row.mean())
        assert c.u == pytest.approx(float(m.u[i]), rel=1e-12)


def test_one_series_is_evaluated_as_the_rows_evaluate_one_row() -> None:
    # One series (the pipeline's, point by point) takes a scalar path; a cap given as a
    # sequence takes the rows' path with that series as its only row and the same FFT.
    # Both must give the same numbers, bit for bit.
    rng = np.random.default_rng(12)
    series = [ar1(rng, phi, 1, n)[0] * 0.01 + 20.0 for phi in (0.0, 0.5, 0.9, 0.99, 0.999)
              for n in (2, 3, 40, 900, 5000, 25_000)]
    series += [np.full(300, 3.0), np.linspace(0.0, 1.0, 2000), np.r_[np.zeros(500), np.ones(500)],
               np.sin(np.arange(4000) / 300.0), rng.normal(size=7) * 1e-12]
    slow_lag = [m.lag for m in (autocorrelated_mean(x) for x in series)]
    assert max(slow_lag) > 2048  # a truncation lag beyond the first chunk of corrected lags
    for x in series:
        for cap in (None, 2, 3.5, 90, x.size):
            one = autocorrelated_mean(x, max_n=cap)
            rows = autocorrelated_mean(x, max_n=[x.size if cap is None else cap])
            assert (one.u, one.n_eff, one.lag) == (rows.u, rows.n_eff, rows.lag), (x.size, cap)
    with pytest.raises(ValueError, match="max_n"):
        autocorrelated_mean(series[3], max_n=1)
