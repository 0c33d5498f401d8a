"""pipelines.uncertainty against worked examples of the GUM and EA-4/02, computed by hand."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from pipelines.uncertainty import (
    Component,
    combine,
    coverage_factor,
    dof_from_k,
    normal_from_expanded,
    rectangular,
    resolution,
    type_a,
)


def test_gum_h1_gauge_block() -> None:
    # JCGM 100:2008 H.1, Table H.1: end-gauge of 50 mm nominal length (l_s = 50 mm,
    # alpha_s = 11.5e-6 /degC, mean temperature offset theta = -0.1 degC), in nm:
    #   l_s         U = 75 nm, k = 3          -> u = 25 nm,  c = 1,  nu = 18
    #   d           u = 9.7 nm                ->             c = 1,  nu = 25.6
    #   delta alpha +-1e-6 /degC rectangular  -> u = 0.577e-6 /degC,
    #               c = -l_s theta = 5.0e6 nm degC             -> 2.887 nm, nu = 50
    #   delta theta +-0.05 degC rectangular   -> u = 0.028868 degC,
    #               c = -l_s alpha_s = -575 nm/degC            -> 16.599 nm, nu = 2
    # u_c^2 = 625 + 94.09 + 8.333 + 275.52 = 1002.95 nm^2, u_c = 31.67 nm (GUM: 32 nm)
    # nu_eff = 1002.95^2 / (25^4/18 + 9.7^4/25.6 + 2.887^4/50 + 16.599^4/2)
    #        = 1.00591e6 / (21701.4 + 346.0 + 1.39 + 37959) = 16.76   (GUM: 16.7)
    # GUM H.1.6 truncates to 16 and takes t_95(16) = 2.12, U_95 = 68 nm; at 95.45 %
    # (EA-4/02) the same nu gives k = t_0.97725(16) = 2.169 and U = 68.7 nm.
    ls_nm, alpha_s, theta = 50e6, 11.5e-6, -0.1
    budget = combine(
        [
            normal_from_expanded("l_s", U=75.0, k=3.0, dof=18),
            Component("d", u=9.7, dof=25.6),
            # First-order sensitivities to alpha_s and theta vanish (GUM H.1.3.3, Table
            # H.1); such a row must pass through with a zero contribution.
            Component("alpha_s", "rectangular", half_width=2e-6, sensitivity=0.0),
            Component("delta_alpha", "rectangular", half_width=1e-6, sensitivity=-ls_nm * theta, dof=50),
            Component("delta_theta", "rectangular", half_width=0.05, sensitivity=-ls_nm * alpha_s, dof=2),
        ]
    )
    contributions = [c.contribution for c in budget.components]
    assert_allclose(contributions, [25.0, 9.7, 0.0, 2.887, 16.599], atol=1e-3)
    assert_allclose(budget.u_combined, 31.669, atol=1e-3)
    assert round(budget.u_combined) == 32  # as GUM H.1.6 states it
    assert_allclose(budget.dof_eff, 16.763, atol=1e-3)
    # The t quantiles themselves: GUM Table G.2 gives t_95(16) = 2.12.
    assert_allclose(stats.t.ppf(0.975, 16), 2.12, atol=5e-3)
    assert budget.k == stats.t.ppf(0.97725, 16)
    assert_allclose(budget.k, 2.169, atol=1e-3)
    assert_allclose(budget.U, 2.169 * 31.669, rtol=1e-3)


def test_gum_h1_welch_satterthwaite_of_d() -> None:
    # GUM H.1.3.2: u(d) combines the mean of 5 repeated comparisons (5.8 nm, nu = 24),
    # the comparator's random (3.9 nm, nu = 5) and systematic (6.7 nm, nu = 8) effects:
    # u^2 = 33.64 + 15.21 + 44.89 = 93.74 nm^2 -> u = 9.68 nm (GUM: 9.7 nm)
    # nu = 93.74^2 / (5.8^4/24 + 3.9^4/5 + 6.7^4/8) = 8787 / (47.15 + 46.27 + 251.9) = 25.4
    # The GUM prints 25.6 from unrounded inputs: 1 % covers the rounding of the inputs
    # to two digits (a 0.05 nm rounding of 5.8 nm is 0.9 % of it).
    budget = combine([("d_bar", 5.8, 1.0, 24), ("d1", 3.9, 1.0, 5), ("d2", 6.7, 1.0, 8)])
    assert_allclose(budget.u_combined, 9.7, rtol=1e-2)
    assert_allclose(budget.dof_eff, 25.6, rtol=1e-2)
    assert_allclose(budget.dof_eff, 25.45, atol=0.01)


def test_ea_4_02_s2_weight() -> None:
    # EA-4/02 M:2013, S2: calibration of a weight of nominal value 10 kg against a
    # reference weight, in mg:
    #   m_S   reference, U = 45 mg (k = 2)          -> 22.5 mg
    #   dm_D  drift of the reference, +-15 mg rect  -> 15/sqrt(3) = 8.660 mg
    #   dm    observed difference, pooled s = 25 mg
    #         from an earlier evaluation, n = 3     -> 25/sqrt(3) = 14.434 mg
    #   dm_C  comparator, +-10 mg rect              -> 5.774 mg
    #   dB    air buoyancy, +-10 mg rect            -> 5.774 mg
    # u^2 = 506.25 + 75.00 + 208.33 + 33.33 + 33.33 = 856.25 mg^2, u = 29.26 mg (EA: 29.3)
    # k = 2, U = 58.5 mg (EA: 59 mg); m_X = 10 000.005 g + 0.020 g = 10 000.025 g.
    parts = [
        normal_from_expanded("m_S", U=45.0, k=2.0, value=10_000_005.0),
        rectangular("dm_D", 15.0, value=0.0),
        Component("dm", u=25.0 / math.sqrt(3.0), value=20.0),
        rectangular("dm_C", 10.0, value=0.0),
        rectangular("dB", 10.0, value=0.0),
    ]
    budget = combine(parts)
    assert_allclose([c.u for c in budget.components], [22.5, 8.660, 14.434, 5.774, 5.774], atol=1e-3)
    assert_allclose(budget.u_combined, 29.262, atol=1e-3)
    assert round(budget.u_combined, 1) == 29.3
    assert budget.dof_eff == math.inf
    assert budget.k == 2.0
    assert_allclose(budget.U, 58.52, atol=0.01)
    assert math.ceil(budget.U) == 59
    # The estimates, in mg, add up to EA's result m_X = 10 000.025 g.
    estimate_mg = math.fsum(c.value or 0.0 for c in budget.components)
    assert_allclose(estimate_mg / 1e3, 10_000.025, atol=1e-9)


def test_spec_temperature_budget_with_a_dominant_type_a() -> None:
    # A temperature point with the SPEC section 7 contributions, and a short plateau
    # whose Type A term dominates, in K:
    #   reference certificate U = 0.02, k = 2        -> 0.010 000
    #   reference drift +-0.01 rect                  -> 0.005 774
    #   DUT resolution 0.01                          -> 0.01 / (2 sqrt 3) = 0.002 887
    #   chamber inhomogeneity +-0.03 rect            -> 0.017 321
    #   Type A: s = 0.05 over n = 5 readings         -> 0.05 / sqrt 5 = 0.022 361, nu = 4
    # u^2 = 1.0e-4 + 3.3333e-5 + 8.3333e-6 + 3.0e-4 + 5.0e-4 = 9.41667e-4, u = 0.030687
    # nu_eff = (9.41667e-4)^2 / (0.022361^4 / 4) = 8.86736e-7 / 6.25e-8 = 14.19 -> 14
    # k = t_0.97725(14) = 2.1953, U = 2.1953 * 0.030687 = 0.06737
    # Readings 20 + (-0.05, 0.05, -0.05, 0.05, 0): mean 20, s^2 = 4 * 0.0025 / 4 = 0.0025.
    samples = [19.95, 20.05, 19.95, 20.05, 20.0]
    budget = combine(
        [
            normal_from_expanded("reference", U=0.02, k=2.0),
            rectangular("reference drift", 0.01),
            resolution("DUT resolution", 0.01),
            rectangular("chamber inhomogeneity", 0.03),
            type_a("repeatability", samples),
        ]
    )
    assert_allclose(
        [c.contribution for c in budget.components],
        [0.010000, 0.005774, 0.002887, 0.017321, 0.022361],
        atol=1e-6,
    )
    assert_allclose(budget.u_combined, 0.030687, atol=1e-6)
    assert_allclose(budget.dof_eff, 14.187, atol=1e-3)
    assert budget.k == stats.t.ppf(0.97725, 14)
    assert_allclose(budget.k, 2.20, atol=5e-3)
    assert_allclose(budget.U, 0.06737, atol=1e-5)
    assert budget.components[-1].dof == 4
    mean = budget.components[-1].value
    assert mean is not None
    assert_allclose(mean, 20.0, atol=1e-12)


@pytest.mark.parametrize(
    ("dof", "k"),
    [(1, 13.97), (2, 4.53), (3, 3.31), (4, 2.87), (5, 2.65), (6, 2.52), (7, 2.43),
     (8, 2.37), (10, 2.28), (20, 2.13), (50, 2.05), (math.inf, 2.00)],
)  # fmt: skip
def test_coverage_factor_against_ea_4_02_table_e1(dof: float, k: float) -> None:
    # EA-4/02 M:2013 Table E.1 prints k to two decimals: half a unit of the last one.
    assert_allclose(coverage_factor(dof), k, atol=5e-3)


def test_coverage_factor_truncates_and_is_exactly_two_at_infinity() -> None:
    assert coverage_factor(16.76) == coverage_factor(16.0)
    assert coverage_factor(16.76) > stats.t.ppf(0.97725, 16.76)  # the conservative side
    assert coverage_factor(math.inf) == 2.0
    assert combine([("b", 0.1, 1.0, math.inf)]).k == 2.0


def test_spec_tuples_and_component_rows() -> None:
    budget = combine([("type A", 0.003, 1.0, 9), ("certificate", 0.004, -2.0, math.inf)])
    a, b = budget.components
    assert (a.distribution, b.distribution) == ("type A", "normal")
    assert b.contribution == 0.008  # |c| u: the sign of c does not matter
    assert_allclose(budget.u_combined, math.hypot(0.003, 0.008), rtol=1e-15)
    # nu_eff = (0.003^2 + 0.008^2)^2 / (0.003^4 / 9) = 5.329e-9 / 9e-12 = 592.1
    assert_allclose(budget.dof_eff, 592.11, atol=0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        budget.U = 0.0  # type: ignore[misc]


def test_distributions_and_helpers() -> None:
    a = 0.06
    assert_allclose(Component("r", "rectangular", half_width=a).standard_uncertainty, a / 3**0.5)
    assert_allclose(Component("t", "triangular", half_width=a).standard_uncertainty, a / 6**0.5)
    assert_allclose(Component("u", "u-shaped", half_width=a).standard_uncertainty, a / 2**0.5)
    assert Component("r", "rectangular", u=0.01).standard_uncertainty == 0.01
    assert_allclose(resolution("res", 0.1).standard_uncertainty, 0.1 / (2 * 3**0.5))
    assert normal_from_expanded("cert", U=0.3, k=3.0, dof=12).dof == 12
    single = type_a("mean", 0.002, n=10)
    assert (single.u, single.dof, single.value) == (0.002, 9, None)
    readings = type_a("readings", [1.0, 2.0, 3.0, 4.0])
    assert_allclose(readings.standard_uncertainty, np.std([1, 2, 3, 4], ddof=1) / 2.0)
    assert (readings.dof, readings.value) == (3, 2.5)


def test_zero_uncertainty_everywhere_gives_zero_and_infinite_dof() -> None:
    budget = combine([("a", 0.0, 1.0, 4), ("b", 0.0, 3.0, math.inf)])
    assert (budget.u_combined, budget.dof_eff, budget.k, budget.U) == (0.0, math.inf, 2.0, 0.0)


def test_invalid_budgets_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one"):
        combine([])
    with pytest.raises(ValueError, match=">= 0"):
        combine([("negative", -0.1, 1.0, math.inf)])
    with pytest.raises(ValueError, match=">= 0"):
        rectangular("negative", -0.5)
    with pytest.raises(ValueError, match="exactly one"):
        Component("both", "rectangular", half_width=0.1, u=0.05)
    with pytest.raises(ValueError, match="exactly one"):
        Component("neither", "triangular")
    with pytest.raises(ValueError, match="u only"):
        Component("normal with a half-width", "normal", half_width=0.1)
    with pytest.raises(ValueError, match="distribution"):
        Component("x", "gaussian", u=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dof"):
        combine([("no dof", 0.1, 1.0, 0)])
    with pytest.raises(ValueError, match="dof"):
        Component("nan dof", u=0.1, dof=math.nan)
    with pytest.raises(ValueError, match="finite"):
        combine([("nan", math.nan, 1.0, math.inf)])
    with pytest.raises(ValueError, match="n"):
        type_a("no n", 0.01)
    with pytest.raises(ValueError, match="readings"):
        type_a("one reading", [1.0])
    with pytest.raises(ValueError, match="n = 3"):
        type_a("mismatch", [1.0, 2.0], n=3)
    with pytest.raises(ValueError, match="coverage factor"):
        normal_from_expanded("k0", U=0.1, k=0.0)


def test_nu_eff_round_off_below_an_integer_keeps_the_integer() -> None:
    """A single component with nu = 2 gives nu_eff = 1.9999999999999998 in about a quarter of
    random cases (u_c = sqrt(u^2) rounds); truncating that took k = t(1) = 13.97 instead of
    t(2) = 4.53.  Failed before the fix."""
    rng = np.random.default_rng(0)
    below = 0
    for u in rng.uniform(1e-4, 10.0, 400):
        b = combine([("A", float(u), 1.0, 2.0)])
        below += b.dof_eff < 2.0
        assert b.k == pytest.approx(stats.t.ppf(0.97725, 2), rel=1e-12), (u, b.dof_eff)
    assert below > 40  # the round-off does happen
    assert coverage_factor(1.9999999999999998) == coverage_factor(2)
    assert coverage_factor(2.5) == coverage_factor(2)
    assert coverage_factor(1.9999) == coverage_factor(1)  # a real 1.9999 stays 1


@pytest.mark.parametrize(("k", "dof"), [(2.87, 4), (13.97, 1), (4.53, 2), (3.31, 3), (2.32, 9), (2.05, 51),
                                        (2.0, math.inf), (1.96, math.inf)])
def test_a_certificate_k_implies_its_dof(k: float, dof: float) -> None:
    """EA-4/02 Table E.1 read backwards: k = 2.87 at 95.45 % is nu = 4."""
    assert dof_from_k(k) == dof
    if math.isfinite(dof):
        assert_allclose(stats.t.ppf(0.97725, dof), k, atol=0.03)


def test_a_dominant_reference_with_k_2_87_carries_its_dof() -> None:
    """Today U was 21 % too small when such a reference dominates: with nu = inf k is 2,
    with the implied nu = 4 (plus small Type B) it is about 2.8."""
    ref = normal_from_expanded("reference", U=0.0287, k=2.87, dof=dof_from_k(2.87))
    b = combine([ref, rectangular("drift", 0.002)])
    assert 4.0 < b.dof_eff < 4.2 and b.k == pytest.approx(stats.t.ppf(0.97725, 4))
    old = combine([normal_from_expanded("reference", U=0.0287, k=2.87), rectangular("drift", 0.002)])
    assert pytest.approx(stats.t.ppf(0.97725, 4) / 2.0) == b.U / old.U
    assert b.U / old.U > 1.4


def gtc_budget(rows: list[tuple[str, float, float, float]], correlations: dict[tuple[str, str], float]):
    """The same budget in the GUM Tree Calculator: y = sum c_i x_i with x_i = ureal(0, u_i, nu_i)."""
    GTC = pytest.importorskip("GTC")
    x = {name: GTC.ureal(0.0, u, dof, label=name, independent=not any(name in p for p in correlations))
         for name, u, _, dof in rows}
    for (a, b), r in correlations.items():
        GTC.set_correlation(r, x[a], x[b])
    y = sum(c * x[name] for name, _, c, _ in rows)
    return GTC.uncertainty(y), GTC.dof(y)


@pytest.mark.parametrize("case", range(4))
def test_correlated_budgets_against_gtc(case: int) -> None:
    """GUM 5.2 (eq. 16) against GTC: correlated Type B components (infinite dof), with and
    without a Type A beside them, positive and negative sensitivities and correlations."""
    rows, corr = [
        ([("td", 0.05, 3.1, math.inf), ("t", 0.02, -2.4, math.inf)], {("td", "t"): 0.8}),
        ([("td", 0.05, 3.1, math.inf), ("t", 0.02, -2.4, math.inf), ("A", 0.03, 1.0, 12.0)],
         {("td", "t"): 0.8}),
        ([("a", 0.1, 1.0, math.inf), ("b", 0.2, 1.0, math.inf), ("c", 0.05, -0.5, math.inf),
          ("A", 0.08, 1.0, 5.0)], {("a", "b"): -0.3, ("b", "c"): 0.6, ("a", "c"): 0.1}),
        ([("ref", 0.01, 1.0, math.inf), ("drift", 0.006, 1.0, math.inf), ("A", 0.002, -1.0, 30.0)],
         {("ref", "drift"): 1.0}),
    ][case]
    ours = combine(rows, correlations=corr)
    u, dof = gtc_budget(rows, corr)
    assert_allclose(ours.u_combined, u, rtol=1e-12)
    if math.isinf(ours.dof_eff):
        assert math.isinf(dof)
    else:
        assert_allclose(ours.dof_eff, dof, rtol=1e-9)
    assert ours.correlations == tuple((a, b, r) for (a, b), r in corr.items())


def test_correlations_are_checked() -> None:
    rows = [("a", 0.1, 1.0, math.inf), ("b", 0.1, 1.0, 5.0)]
    with pytest.raises(ValueError, match="infinite degrees of freedom"):
        combine(rows, correlations={("a", "b"): 0.5})
    with pytest.raises(ValueError, match="no component named"):
        combine(rows, correlations={("a", "z"): 0.5})
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        combine([("a", 0.1, 1.0, math.inf), ("b", 0.1, 1.0, math.inf)], correlations={("a", "b"): 1.5})
    # the SPEC's signature is unchanged
    assert combine(rows).u_combined == pytest.approx(math.sqrt(0.02))


def test_a_point_budget_holds_the_numbers_of_the_functions_it_names() -> None:
    # point_budget centres the times once for the instability and the drift, and takes the
    # difference's mean from its Type A: each row as the documented function gives it, exactly.
    from pipelines.budget import ReferenceEvaluation, point_budget
    from pipelines.uncertainty import drift_half_width, temporal_instability, type_a_autocorrelated

    rng = np.random.default_rng(8)
    for n in (3, 4, 50, 2000, 25_001):
        t = 1.79e9 + np.arange(n, dtype=np.float64) + rng.uniform(0, 0.2, n)
        reference = 20.0 + 1e-5 * (t - t[0]) + rng.normal(0, 0.003, n)
        diff = 0.1 + 2e-6 * (t - t[0]) + np.cumsum(rng.normal(0, 0.002, n)) * 0.1
        ev = ReferenceEvaluation(reference, 0.0, (), {}, False, float(reference.mean()), False, ())
        rows = {r.name: r for r in point_budget(t, reference, diff, n, ev, ()).budget.components}
        a = type_a_autocorrelated("repeatability (Type A)", diff, max_n=n)
        assert (rows["repeatability (Type A)"].u, rows["repeatability (Type A)"].value) == (a.u, a.value)
        assert rows["chamber temporal instability"].u == temporal_instability(t, reference) / math.sqrt(3.0)
        assert rows["DUT short-term stability"].u == drift_half_width(t, diff, a.dof + 1.0) / math.sqrt(3.0)


def test_sample_mean_is_numpy_mean_bit_for_bit() -> None:
    # The pipeline's means skip ndarray.mean's Python bookkeeping; the numbers must not move.
    from pipelines.uncertainty import sample_mean

    rng = np.random.default_rng(11)
    base = rng.normal(20.0, 3.0, 70_000)
    arrays = [base[o:o + n] for o in (0, 1, 3, 7) for n in (1, 2, 7, 8, 9, 127, 128, 129, 8191, 8193, 25_000, 69_000)]
    arrays += [base[::3], base[5:20_000:2], np.array([-0.0]), np.array([1e308, 1e308]), np.array([1.0, math.nan]),
               np.array([math.inf, 1.0]), np.array([math.inf, -math.inf]), np.zeros(0), np.arange(5),
               rng.normal(size=(30, 40)), np.float32(rng.normal(size=100))]
    for x in arrays:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want, got = float(x.mean()), sample_mean(x)
        assert np.float64(got).tobytes() == np.float64(want).tobytes(), (x.shape, x.dtype)
