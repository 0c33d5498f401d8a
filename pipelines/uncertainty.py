"""GUM uncertainty budgets: combine standard uncertainties, count degrees of freedom, expand.

References:

- JCGM 100:2008 (GUM), "Evaluation of measurement data - Guide to the expression of
  uncertainty in measurement": eq. (10) and (11) for the combined standard uncertainty of
  uncorrelated input quantities, 4.2 for Type A, 4.3.7 and 4.3.9 for the rectangular and
  triangular distributions, F.2.2.1 for resolution, and Annex G, eq. (G.2b) and G.4.1,
  for the Welch-Satterthwaite formula and the coverage factor.
- JCGM 101:2008, 6.4.6, for the U-shaped (arcsine) distribution.
- EA-4/02 M:2013, "Evaluation of the Uncertainty of Measurement in Calibration":
  section 5 and the budget tables of Supplement 2 (quantity, estimate, standard
  uncertainty, distribution, sensitivity coefficient, contribution), and Annex E (k for
  95.45 % coverage from the Student t distribution at nu_eff, truncated to an integer).

- JCGM 100:2008 5.2 (eq. 13, 16) for correlated input quantities, and G.6.6: the
  Welch-Satterthwaite formula does not hold for correlated inputs with finite degrees of
  freedom, so correlations are accepted between components with infinite degrees of
  freedom only (as the GUM Tree Calculator, GTC, computes them; the tests compare).
- N. F. Zhang, "Calculation of the uncertainty of the mean of autocorrelated measurements",
  Metrologia 43 (2006) S276-S281, for the Type A of a mean of autocorrelated readings
  (`autocorrelated_mean`).
- DKD-R 5-7:2018 section 8.2 for the temporal instability of a climatic chamber
  (`temporal_instability`, on the chamber's course).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.fft
from scipy import optimize, special, stats

__all__ = [
    "COVERAGE_PROBABILITY",
    "AutocorrelatedMean",
    "Budget",
    "Component",
    "ComponentLike",
    "Contribution",
    "Correlations",
    "Distribution",
    "autocorrelated_mean",
    "budget_of",
    "combine",
    "contribution_of",
    "coverage_factor",
    "dof_from_k",
    "drift_half_width",
    "normal_from_expanded",
    "rectangular",
    "resolution",
    "sample_mean",
    "temporal_instability",
    "type_a",
    "type_a_autocorrelated",
]

Distribution = Literal["normal", "rectangular", "triangular", "u-shaped", "type A"]

COVERAGE_PROBABILITY = 0.9545
"""Coverage of the expanded uncertainty: the 95.45 % of k = 2 for a normal distribution
(EA-4/02 M:2013 section 5), so that k is exactly 2 when nu_eff is infinite."""

_DIVISORS: dict[str, float] = {
    # Half-width a to standard uncertainty: a/sqrt(3), a/sqrt(6) (GUM 4.3.7, 4.3.9),
    # a/sqrt(2) (arcsine, JCGM 101:2008 6.4.6).
    "rectangular": math.sqrt(3.0),
    "triangular": math.sqrt(6.0),
    "u-shaped": math.sqrt(2.0),
}


@dataclass(frozen=True)
class Component:
    """One input quantity of a budget, as a calibration certificate or procedure states it.

    Give ``u`` (the standard uncertainty) for "normal" and "type A", and ``half_width`` or
    ``u`` for "rectangular", "triangular" and "u-shaped". ``value`` is the estimate x_i,
    shown in the budget table only (often 0 for a correction known to be zero on average).
    ``dof`` is math.inf for a Type B evaluation known exactly (GUM G.4.2) and n - 1 for a
    mean of n readings.
    """

    name: str
    distribution: Distribution = "normal"
    half_width: float | None = None
    u: float | None = None
    sensitivity: float = 1.0
    dof: float = math.inf
    value: float | None = None
    unit: str | None = None
    """Unit of x_i (and of u and value) when it is not the unit of y, e.g. degC for a dew
    point in a budget of %rh; None: the unit of y."""

    def __post_init__(self) -> None:
        if self.distribution not in ("normal", "type A", *_DIVISORS):
            raise ValueError(f"{self.name}: unknown distribution {self.distribution!r}")
        if self.distribution in _DIVISORS:
            if (self.u is None) == (self.half_width is None):
                raise ValueError(f"{self.name}: give exactly one of half_width and u")
        elif self.u is None or self.half_width is not None:
            raise ValueError(f"{self.name}: a {self.distribution} component needs u only")
        for label, x in (("u", self.u), ("half_width", self.half_width)):
            if x is not None and not (math.isfinite(x) and x >= 0):
                raise ValueError(f"{self.name}: {label} must be finite and >= 0, not {x!r}")
        if not math.isfinite(self.sensitivity):
            raise ValueError(f"{self.name}: sensitivity must be finite")
        if not self.dof >= 1:
            raise ValueError(f"{self.name}: dof must be >= 1 or math.inf, not {self.dof!r}")

    @property
    def standard_uncertainty(self) -> float:
        """u(x_i), in the unit of the input quantity."""
        if self.u is not None:
            return self.u
        assert self.half_width is not None  # guaranteed by __post_init__
        return self.half_width / _DIVISORS[self.distribution]


@dataclass(frozen=True)
class Contribution:
    """One row of the budget table (EA-4/02 section 5 layout)."""

    name: str
    distribution: Distribution
    value: float | None
    """Estimate x_i, if stated."""
    u: float
    """Standard uncertainty u(x_i) [unit of x_i]."""
    sensitivity: float
    """Sensitivity coefficient c_i [unit of y / unit of x_i]."""
    contribution: float
    """u_i(y) = |c_i| u(x_i) [unit of y] (GUM eq. 11b)."""
    dof: float
    """Degrees of freedom nu_i; math.inf for Type B."""
    unit: str | None = None
    """Unit of x_i when it is not the unit of y (then c_i is in unit of y / unit of x_i)."""


@dataclass(frozen=True)
class Budget:
    """A combined uncertainty budget."""

    u_combined: float
    """Combined standard uncertainty u_c(y) [unit of y] (GUM eq. 10)."""
    dof_eff: float
    """Effective degrees of freedom (Welch-Satterthwaite, GUM eq. G.2b); math.inf when every
    component has infinite degrees of freedom. Reported unrounded."""
    k: float
    """Coverage factor for 95.45 %: Student t at nu_eff truncated to an integer; 2.0 when
    nu_eff is infinite."""
    U: float
    """Expanded uncertainty k u_c(y) [unit of y]."""
    components: tuple[Contribution, ...]
    correlations: tuple[tuple[str, str, float], ...] = ()
    """(name_i, name_j, r_ij) of each correlated pair of components (GUM 5.2.2), in the
    order given; empty when the inputs are uncorrelated."""


Correlations = Mapping[tuple[str, str], float]
"""Correlation coefficients r(x_i, x_j) between components, by their names (GUM 5.2.2)."""

ComponentLike = Component | tuple[str, float, float, float]
"""A `Component`, or the SPEC's tuple (name, standard_uncertainty, sensitivity, dof)."""


def _as_component(c: ComponentLike) -> Component:
    if isinstance(c, Component):
        return c
    name, u, sensitivity, dof = c
    # The tuple carries no distribution; SPEC section 7 uses finite dof for Type A only.
    distribution: Distribution = "type A" if math.isfinite(dof) else "normal"
    return Component(name, distribution, u=u, sensitivity=sensitivity, dof=dof)


_ROUND_OFF = 1e-9
"""Relative distance below an integer within which nu_eff is taken as that integer: the
Welch-Satterthwaite quotient of a single component with nu = 2 comes out as
1.9999999999999998 in about a quarter of cases (sqrt and squares rounding), and truncating
that to 1 would take k = 13.97 instead of 4.53."""


def coverage_factor(dof_eff: float) -> float:
    """k for 95.45 % two-sided coverage at ``dof_eff`` degrees of freedom.

    EA-4/02 Annex E (and GUM G.4.1): the Student t quantile t_0.97725 at nu_eff truncated
    to the next lower integer, which errs on the side of a larger k; exactly 2.0 for
    infinite nu_eff, the normal distribution's k by EA-4/02's definition of 95.45 %.
    A nu_eff within a relative 1e-9 below an integer is that integer (round-off of the
    Welch-Satterthwaite quotient, not fewer degrees of freedom).
    """
    if math.isinf(dof_eff):
        return 2.0
    return _t_quantile(_truncate(dof_eff))


def _truncate(dof: float) -> int:
    """floor(dof), robust to round-off just below an integer (`_ROUND_OFF`)."""
    nearest = round(dof)
    if nearest >= 1 and 0.0 <= nearest - dof <= _ROUND_OFF * nearest:
        return int(nearest)
    return math.floor(dof)


def dof_from_k(k: float) -> float:
    """The degrees of freedom a coverage factor implies at 95.45 % (EA-4/02 Annex E read
    backwards): the nu whose Student t quantile t_0.97725(nu) is ``k``, to the nearest
    integer; math.inf for k <= 2 (a normal distribution, or a k stated for a lower
    coverage).  A certificate's "U = 0.02 K, k = 2.87" then means nu = 4 (t_0.97725(4) =
    2.869), which Welch-Satterthwaite must carry instead of infinity.
    """
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"coverage factor k must be finite and > 0, not {k!r}")
    if k <= 2.0 + 1e-12:
        return math.inf
    return float(_dof_from_k(round(k, 12)))


@functools.lru_cache(maxsize=256)
def _dof_from_k(k: float) -> int:
    q = (1.0 + COVERAGE_PROBABILITY) / 2.0
    if k >= _t_quantile(1):
        return 1
    # t_q(nu) falls with nu towards 2: solve on log(nu) between 1 and 1e9
    nu = optimize.brentq(lambda x: float(special.stdtrit(math.exp(x), q)) - k, 0.0, math.log(1e9))
    return max(1, round(math.exp(nu)))


@functools.lru_cache(maxsize=1024)
def _t_quantile(dof: int) -> float:
    """Student t quantile t_0.97725 at ``dof`` degrees of freedom.

    `scipy.special.stdtrit` is what ``scipy.stats.t.ppf`` evaluates for dof > 0 (same
    value, bit for bit) without its ~50 us of argument handling; anything else goes
    through ``t.ppf`` (NaN for dof <= 0)."""
    q = (1.0 + COVERAGE_PROBABILITY) / 2.0
    if dof > 0:
        return float(special.stdtrit(float(dof), q))
    return float(stats.t.ppf(q, dof))


def combine(components: Iterable[ComponentLike], correlations: Correlations | None = None) -> Budget:
    """Combine input quantities into a budget with its expanded uncertainty.

    u_c^2 = sum_i (c_i u(x_i))^2 + 2 sum_i<j c_i c_j u(x_i) u(x_j) r(x_i, x_j) (GUM eq. 10,
    eq. 16); nu_eff = u_c^4 / sum_i (u_i(y)^4 / nu_i) (GUM eq. G.2b), where components with
    nu_i = inf add nothing to the sum; k from `coverage_factor`; U = k u_c.

    Parameters
    ----------
    components : iterable of Component or (name, u, sensitivity, dof)
        At least one. ``u`` is a standard uncertainty [unit of x_i], ``sensitivity`` the
        sensitivity coefficient c_i [unit of y / unit of x_i], ``dof`` the degrees of
        freedom (math.inf for Type B).
    correlations : mapping (name_i, name_j) -> r, optional
        Correlation coefficients between components (by name; names must then be unique).
        Both components of a correlated pair must have infinite degrees of freedom (GUM
        G.6.6: Welch-Satterthwaite does not hold otherwise).

    Returns
    -------
    Budget
    """
    parts = [_as_component(c) for c in components]
    if not parts:
        raise ValueError("an uncertainty budget needs at least one component")
    return budget_of(tuple(contribution_of(c) for c in parts), correlations)


def contribution_of(c: Component) -> Contribution:
    """The budget-table row of one component: u(x_i), c_i and u_i(y) = |c_i| u(x_i)."""
    u = c.standard_uncertainty
    return Contribution(
        name=c.name,
        distribution=c.distribution,
        value=c.value,
        u=u,
        sensitivity=c.sensitivity,
        contribution=abs(c.sensitivity) * u,
        dof=c.dof,
        unit=c.unit,
    )


def budget_of(rows: tuple[Contribution, ...], correlations: Correlations | None = None) -> Budget:
    """`combine` of components already turned into rows (`contribution_of`): a caller that
    combines the same components into many budgets makes their rows once."""
    if not rows:
        raise ValueError("an uncertainty budget needs at least one component")
    variance = math.fsum(r.contribution**2 for r in rows)
    pairs = _correlated_pairs(rows, correlations or {})
    if pairs:
        by_name = {r.name: r for r in rows}
        variance += math.fsum(
            2.0 * by_name[a].sensitivity * by_name[a].u * by_name[b].sensitivity * by_name[b].u * r
            for a, b, r in pairs
        )
        if variance < -1e-12 * math.fsum(r.contribution**2 for r in rows):
            raise ValueError("the correlations make the combined variance negative: "
                             "they are not a valid correlation matrix")
        variance = max(variance, 0.0)
    u_c = math.sqrt(variance)
    denominator = math.fsum(r.contribution**4 / r.dof for r in rows if math.isfinite(r.dof))
    dof_eff = variance**2 / denominator if denominator > 0 else math.inf
    k = coverage_factor(dof_eff)
    return Budget(u_combined=u_c, dof_eff=dof_eff, k=k, U=k * u_c, components=rows, correlations=pairs)


def _correlated_pairs(
    rows: tuple[Contribution, ...], correlations: Correlations
) -> tuple[tuple[str, str, float], ...]:
    """The correlations as (name_i, name_j, r), checked: known, distinct, unique names,
    |r| <= 1, infinite dof on both sides; zero coefficients dropped."""
    if not correlations:
        return ()
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError("correlated components need unique names")
    dof = {r.name: r.dof for r in rows}
    out: list[tuple[str, str, float]] = []
    seen: set[frozenset[str]] = set()
    for (a, b), r in correlations.items():
        for name in (a, b):
            if name not in dof:
                raise ValueError(f"correlation of {a!r} and {b!r}: no component named {name!r}")
        if a == b:
            raise ValueError(f"correlation of {a!r} with itself")
        if not (math.isfinite(r) and -1.0 <= r <= 1.0):
            raise ValueError(f"correlation of {a!r} and {b!r} must be in [-1, 1], not {r!r}")
        if frozenset((a, b)) in seen:
            raise ValueError(f"correlation of {a!r} and {b!r} given twice")
        seen.add(frozenset((a, b)))
        if r == 0.0:
            continue
        if math.isfinite(dof[a]) or math.isfinite(dof[b]):
            raise ValueError(
                f"correlation of {a!r} and {b!r}: both need infinite degrees of freedom "
                "(Welch-Satterthwaite does not hold for correlated inputs with finite dof, GUM G.6.6)"
            )
        out.append((a, b, float(r)))
    return tuple(out)


def rectangular(
    name: str, half_width: float, sensitivity: float = 1.0, *, value: float | None = None,
    unit: str | None = None,
) -> Component:
    """A Type B quantity known only to lie within +-``half_width``: u = a / sqrt(3) (GUM
    4.3.7), e.g. a drift limit or a chamber inhomogeneity [unit of x_i]."""
    return Component(name, "rectangular", half_width=half_width, sensitivity=sensitivity, value=value,
                     unit=unit)


def normal_from_expanded(
    name: str,
    U: float,
    k: float,
    sensitivity: float = 1.0,
    dof: float = math.inf,
    *,
    value: float | None = None,
) -> Component:
    """A quantity quoted with an expanded uncertainty ``U`` and coverage factor ``k``, e.g.
    from a calibration certificate: u = U / k (GUM 4.3.3) [unit of x_i]."""
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"{name}: coverage factor k must be > 0, not {k!r}")
    return Component(name, "normal", u=U / k, sensitivity=sensitivity, dof=dof, value=value)


def type_a(
    name: str,
    samples_or_std_of_mean: npt.ArrayLike,
    n: int | None = None,
    sensitivity: float = 1.0,
) -> Component:
    """A Type A evaluation (GUM 4.2): the experimental standard deviation of the mean.

    Given readings, u = s / sqrt(N) with s the sample standard deviation (ddof=1) and
    nu = N - 1 (GUM eq. 3-5); ``n`` may be omitted or must equal N. Given a number, it is
    already the standard deviation of the mean, and ``n`` (the number of readings behind
    it) sets nu = n - 1. The estimate (``value``) is the mean of the readings, if given.

    Parameters
    ----------
    samples_or_std_of_mean : array [unit of x_i] or float [unit of x_i]
    n : int, optional
    sensitivity : float [unit of y / unit of x_i]
    """
    x = np.asarray(samples_or_std_of_mean, dtype=np.float64)
    if x.ndim == 0:
        if n is None or n < 2:
            raise ValueError(f"{name}: give n >= 2, the number of readings behind the mean")
        return Component(name, "type A", u=float(x), sensitivity=sensitivity, dof=n - 1)
    count = x.size
    if x.ndim != 1 or count < 2:
        raise ValueError(f"{name}: a Type A evaluation needs at least 2 readings")
    if n is not None and n != count:
        raise ValueError(f"{name}: n = {n} but {count} readings were given")
    # np.std(x, ddof=1) and x.mean(), spelled out so that the mean is summed once: the
    # same ufunc calls in the same order as numpy's own _var, hence the same bits.
    mean = np.add.reduce(x) / count
    dev = np.subtract(x, mean)
    np.square(dev, out=dev)
    std = np.sqrt(np.add.reduce(dev) / (count - 1))
    u = float(std / math.sqrt(count))
    return Component(name, "type A", u=u, sensitivity=sensitivity, dof=count - 1, value=float(mean))


def resolution(
    name: str, resolution: float, sensitivity: float = 1.0, *, value: float | None = None
) -> Component:
    """The finite resolution of an indicating instrument: a rectangular distribution of
    half-width resolution / 2, so u = resolution / (2 sqrt(3)) (GUM F.2.2.1)."""
    return Component(name, "rectangular", half_width=resolution / 2.0, sensitivity=sensitivity, value=value)


class AutocorrelatedMean(NamedTuple):
    """Type A of the mean of autocorrelated readings (`autocorrelated_mean`); scalars for
    one series, arrays for rows of many."""

    u: npt.NDArray[np.float64] | float
    """Standard uncertainty of the mean [unit of x]."""
    n_eff: npt.NDArray[np.float64] | float
    """Effective number of independent readings (<= n and <= ``max_n``)."""
    lag: npt.NDArray[np.intp] | int
    """Last lag whose autocovariance was summed (0: none)."""

    @property
    def dof(self) -> npt.NDArray[np.float64] | float:
        """Degrees of freedom, n_eff - 1 (SPEC section 7)."""
        return self.n_eff - 1.0


_FIRST_LAGS = 32
"""Fewest lags the first autocovariance pass of one series computes: at least this and
n / 4, as many as its FFT gives without wrapping around (a chamber plateau of 25 000
samples at 1 Hz: 7768 lags; the pipeline benchmark's truncation lags reach 1720)."""


def _fft_size(m: int) -> int:
    """The smallest 2^a or 3 * 2^b that is >= m: the lengths pocketfft transforms fastest."""
    m = max(m, 1)
    third = -(-m // 3)
    return min(1 << (m - 1).bit_length(), 3 << (third - 1).bit_length())


def _autocovariances(xc: npt.NDArray[np.float64], lags: int) -> npt.NDArray[np.float64]:
    """c_k = (1/n) sum_i xc_i xc_(i+k), k = 0..lags (at most n - 1), along the last axis of
    centred xc, by FFT: the circular autocorrelation of xc padded with zeros to a length
    >= n + lags is the plain one for those lags.

    One series (the pipeline, point by point) pads to the fastest length >= n + lags
    (`_fft_size`; 2.3x faster than padding to 2n for all lags at n = 25 000, and faster
    than 32 direct sums from n = 900 on: 22 vs 80 us, 371 vs 413 us at 25 000, measured);
    rows of many series pad to a power of two >= 2n - 1 as before.  scipy.fft (pocketfft,
    one thread) took half numpy.fft's time at these lengths, same algorithm.
    """
    n = xc.shape[-1]
    lags = min(lags, n - 1)
    size = _fft_size(n + lags) if xc.ndim == 1 else 1 << (2 * n - 1).bit_length()
    f = scipy.fft.rfft(xc, size, axis=-1)
    np.multiply(f, np.conj(f), out=f)
    c = scipy.fft.irfft(f, size, axis=-1)[..., : lags + 1]
    c /= n
    return np.asarray(c, dtype=np.float64)


def sample_mean(x: npt.NDArray[np.float64]) -> float:
    """``float(x.mean())`` of a float64 array, the same number: numpy's own sum
    (`numpy.add.reduce`) divided by the size, as ``ndarray.mean`` computes it, without its
    Python-level bookkeeping (a few microseconds a call; a benchmark run of the pipeline
    takes 1,300 means).  Anything else (empty, another dtype) goes through ``x.mean()``."""
    if x.size == 0 or x.dtype != np.float64:
        return float(x.mean())
    return float(np.add.reduce(x, axis=None)) / x.size


def _dot(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """sum(a * b) without BLAS: numpy.dot hands 1-D products to a threaded BLAS, whose
    threads spin for a core; on a loaded 2-CPU machine one 25 000-sample product then took
    1.3 ms instead of 13 us (measured, the pipeline benchmark's 198 points: 8.7 s)."""
    return float(np.einsum("i,i->", a, b))


def _first_not_above(values: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Per row, the index of the first value <= 0, or the row's length when there is none."""
    below = values <= 0.0
    return np.where(below.any(axis=-1), below.argmax(axis=-1), values.shape[-1]).astype(np.intp)


def _mean_variance(c: npt.NDArray[np.float64], n: int, last: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
    """Var(mean) from autocovariances summed to lag ``last`` (per row), corrected for the
    bias the sample mean puts in every autocovariance (module function docstring).  One
    series sums its lags 1..last alone; rows of many, every lag with the others masked."""
    m = int(last[0]) if c.shape[0] == 1 else c.shape[-1] - 1
    k = np.arange(1, m + 1)
    use = k[None, :] <= last[:, None]
    s = np.where(use, c[:, 1:m + 1], 0.0).sum(axis=-1)
    w = np.where(use, 1.0 - k[None, :] / n, 0.0).sum(axis=-1)
    denominator = n - 1.0 - 2.0 * w
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(denominator > 0, (c[:, 0] + 2.0 * s) / denominator, np.inf)
    return np.asarray(np.where(v > 0, v, np.inf), dtype=np.float64)


def autocorrelated_mean(x: npt.ArrayLike, *, max_n: npt.ArrayLike | None = None) -> AutocorrelatedMean:
    """Standard uncertainty of the mean of autocorrelated readings, and their effective number.

    Readings of a chamber at 1 Hz are autocorrelated: s / sqrt(n) understates the spread of
    their mean (1.7x at a lag-1 correlation phi = 0.5, 3x at 0.8, 4.4x at 0.9 on AR(1)
    series of 900) and n - 1 overstates its degrees of freedom.  Following Zhang (2006),

        Var(mean) = (gamma_0 / n) (1 + 2 sum_k=1..K (1 - k/n) rho_k),  n_eff = gamma_0 / Var(mean)

    with the autocovariances gamma_k estimated from the readings and the sum truncated at
    K, before the first lag whose estimate is not positive.  Estimates about the sample mean
    are biased low by Var(mean) itself, every one of them (E c_k ~ (1 - k/n)(gamma_k -
    Var(mean)) for the estimator c_k with divisor n); solving for Var(mean) with that bias
    in gives the closed form

        Var(mean) = (c_0 + 2 sum_k=1..K c_k) / (n - 1 - 2 sum_k=1..K (1 - k/n)),

    which for K = 0 is s^2 / n exactly, and equals Zhang's s^2 (n - 1) / (n (n_eff - 1))
    when only c_0's bias is corrected.  K is found on the raw estimates, then once more on
    the corrected ones (c_k / (1 - k/n) + Var(mean) > 0), which the bias had cut short.
    Degrees of freedom: n_eff - 1 (SPEC section 7).

    Why this and not batch means, on evidence (AR(1), n = 900, 6000 runs per phi; coverage
    of t_0.97725(nu) u around the true mean; target 95.45 %):

        phi                      0      0.5    0.8    0.9    0.95
        s / sqrt(n), n - 1      95.4   75.2   49.6   35.4   24.9
        batch means, 10 / 20    95.0   95.5   94.8   94.8   92.8  /  95.0 95.4 94.5 93.0 88.8
        Zhang, raw estimates    95.8   95.7   95.4   94.5   93.0
        this (bias-corrected)   96.2   95.2   95.1   95.3   94.1

    Batch means need batches much longer than the correlation time, which at phi = 0.95
    leaves too few of them (and waste degrees of freedom on uncorrelated data); Zhang's
    estimator with raw autocovariances truncates early and undercovers at high phi.
    At n = 300 and phi = 0.95 (n_eff ~ 10) coverage falls to 92 %: plateaus should hold
    more than a few tens of independent readings.

    ``max_n`` caps n_eff: the number of the DUT's own readings behind the series (a DUT
    read every 10 s and interpolated onto a 1 Hz reference holds a tenth of the samples'
    information; interpolation makes the series smoother, which this estimate mostly sees
    by itself, and the cap makes sure).  n_eff is also at most n, and at least 2 (a series
    whose autocovariance never turns, a trend, gets n_eff = 2 and one degree of freedom:
    it says nothing about its own mean).  With a cap, u^2 = (c_0 + Var(mean)) / n_eff.

    Parameters
    ----------
    x : array [unit], 1-D (one series) or 2-D (one series per row, vectorised)
        The readings, evenly sampled (uneven sampling is taken as even: a lag is a count).
    max_n : int or array of int per row, optional
        Largest n_eff allowed (the DUT's own readings).

    Returns
    -------
    AutocorrelatedMean
        ``u`` [unit], ``n_eff``, ``lag``; floats for 1-D input, arrays for 2-D.
    """
    return _autocorrelated_mean(x, max_n)[0]


def _autocorrelated_mean(
    x: npt.ArrayLike, max_n: npt.ArrayLike | None,
) -> tuple[AutocorrelatedMean, npt.NDArray[np.float64]]:
    """`autocorrelated_mean`, and the mean of each row (shape (rows, 1)), which it computes
    anyway (a 1-D series is one row: its mean is ``x.mean()``, the same number)."""
    a = np.asarray(x, dtype=np.float64)
    one = a.ndim == 1
    rows = a[None, :] if one else a
    if rows.ndim != 2 or rows.shape[-1] < 2:
        raise ValueError("the mean of autocorrelated readings needs at least 2 readings per series")
    if one and (max_n is None or np.ndim(max_n) == 0):
        with np.errstate(invalid="ignore", over="ignore"):
            m = sample_mean(a)  # rows.mean(axis=-1) of its one row: the same sum
        if not math.isfinite(m) and not np.isfinite(a).all():
            raise ValueError("readings must be finite")
        one_cap = None if max_n is None else float(np.asarray(max_n, dtype=np.float64))
        return _one_series(a - m, one_cap), np.full((1, 1), m)
    with np.errstate(invalid="ignore", over="ignore"):
        mean = rows.mean(axis=-1, keepdims=True)
    # finite means: every reading is finite (a NaN or an infinity would show in its row's
    # sum); otherwise look at the readings (finite ones may overflow a sum)
    if not np.isfinite(mean).all() and not np.isfinite(rows).all():
        raise ValueError("readings must be finite")
    n = rows.shape[-1]
    xc = rows - mean
    # One series: the lags a short FFT gives (`_autocovariances`), all of them only when the
    # correlation outlasts those; rows: all lags at once.
    lags = _fft_size(n + max(_FIRST_LAGS, n // 4)) - n if one else n - 1
    while True:
        c = np.atleast_2d(_autocovariances(xc[0] if one else xc, lags))
        available = c.shape[-1] - 1
        last = _first_not_above(c[:, 1:])  # lags 1..last are positive
        v = _mean_variance(c, n, last)
        w = 1.0 - np.arange(1, available + 1) / n
        with np.errstate(invalid="ignore"):
            corrected = c[:, 1:] / w + np.where(np.isfinite(v), v, 0.0)[:, None]
        last = np.maximum(_first_not_above(corrected), last)
        if available < n - 1 and bool((last >= available).any()):
            lags = n - 1  # the correlation outlasts the first lags: take them all
            continue
        break
    v = _mean_variance(c, n, last)
    gamma0 = c[:, 0] + np.where(np.isfinite(v), v, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(np.isfinite(v) & (v > 0), gamma0 / v, 2.0)
    n_eff = np.where(c[:, 0] > 0, n_eff, float(n))  # readings all alike: nothing correlates
    n_eff = np.clip(n_eff, 2.0, float(n))
    if max_n is not None:
        cap = np.asarray(max_n, dtype=np.float64)
        if np.any(cap < 2):
            raise ValueError("max_n must be at least 2")
        n_eff = np.minimum(n_eff, cap)
    zero = gamma0 <= 0
    u = np.sqrt(np.where(zero, 0.0, gamma0 / n_eff))
    if one:
        return AutocorrelatedMean(float(u[0]), float(n_eff[0]), int(last[0])), mean
    return AutocorrelatedMean(u, n_eff, last), mean


def _one_series(xc: npt.NDArray[np.float64], max_n: float | None) -> AutocorrelatedMean:
    """`autocorrelated_mean` of one centred series (``max_n`` a number or None): the rows'
    computation for a single row, in scalars where that has one value, and the corrected
    estimates' truncation lag found from the first lags on (each estimate is its own lag's
    alone): every operation on the same numbers in the same order, the same result (the
    rows' per-call overhead was a third of a 25 000-sample series' FFTs)."""
    n = xc.size
    lags = _fft_size(n + max(_FIRST_LAGS, n // 4)) - n
    while True:
        c = _autocovariances(xc, lags)
        available = c.size - 1
        last = _first_at_most_zero(c[1:])  # lags 1..last are positive
        v = _one_mean_variance(c, n, last)
        last = max(_first_corrected_at_most_zero(c, n, v if math.isfinite(v) else 0.0), last)
        if available < n - 1 and last >= available:
            lags = n - 1  # the correlation outlasts the first lags: take them all
            continue
        break
    v = _one_mean_variance(c, n, last)
    c0 = float(c[0])
    finite = math.isfinite(v)  # v > 0 always (`_mean_variance`)
    gamma0 = c0 + (v if finite else 0.0)
    n_eff = gamma0 / v if finite else 2.0
    if not c0 > 0:
        n_eff = float(n)  # readings all alike: nothing correlates
    n_eff = float(np.clip(n_eff, 2.0, float(n)))
    if max_n is not None:
        if max_n < 2:
            raise ValueError("max_n must be at least 2")
        n_eff = float(np.minimum(n_eff, max_n))  # NaN as the rows' path takes it
    u = math.sqrt(0.0 if gamma0 <= 0 else gamma0 / n_eff)
    return AutocorrelatedMean(u, n_eff, last)


def _first_at_most_zero(values: npt.NDArray[np.float64]) -> int:
    """`_first_not_above` of one series."""
    below = values <= 0.0
    i = int(below.argmax()) if below.size else 0
    return i if below.size and below[i] else values.size


def _one_mean_variance(c: npt.NDArray[np.float64], n: int, last: int) -> float:
    """`_mean_variance` of one series: its lags 1..last summed alone (the same sums)."""
    s = float(c[1:last + 1].sum())
    w = float((1.0 - np.arange(1, last + 1) / n).sum())
    denominator = n - 1.0 - 2.0 * w
    v = (float(c[0]) + 2.0 * s) / denominator if denominator > 0 else math.inf
    return v if v > 0 else math.inf


_CHUNK = 2048
"""Lags whose bias-corrected estimates one step of `_first_corrected_at_most_zero` computes."""


def _first_corrected_at_most_zero(c: npt.NDArray[np.float64], n: int, v: float) -> int:
    """The first lag k - 1 (k = 1..) whose corrected estimate c_k / (1 - k/n) + v is not
    positive, or the number of lags; computed a chunk of lags at a time (the truncation lag
    comes early: the benchmark's reach 1720 of 7768)."""
    available = c.size - 1
    for lo in range(0, available, _CHUNK):
        hi = min(lo + _CHUNK, available)
        w = 1.0 - np.arange(lo + 1, hi + 1) / n
        corrected = c[lo + 1:hi + 1] / w + v
        i = _first_at_most_zero(corrected)
        if i < corrected.size:
            return lo + i
    return available


def type_a_autocorrelated(
    name: str, samples: npt.ArrayLike, *, max_n: int | None = None, sensitivity: float = 1.0
) -> Component:
    """A Type A evaluation of the mean of autocorrelated readings (`autocorrelated_mean`):
    u of the mean, dof = n_eff - 1, the mean as its estimate."""
    return _type_a_autocorrelated(name, samples, max_n, sensitivity)[0]


def _type_a_autocorrelated(
    name: str, samples: npt.ArrayLike, max_n: int | None, sensitivity: float = 1.0,
) -> tuple[Component, float]:
    """`type_a_autocorrelated` and the readings' mean (its ``value``), as a float."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"{name}: a Type A evaluation needs at least 2 readings")
    m, means = _autocorrelated_mean(x, max_n)
    mean = float(means[0, 0])
    return Component(name, "type A", u=float(m.u), sensitivity=sensitivity, dof=float(m.n_eff) - 1.0,
                     value=mean), mean


def temporal_instability(t_s: npt.ArrayLike, values: npt.ArrayLike) -> float:
    """Half-width of the temporal instability of a chamber over a plateau [unit], taken as a
    rectangular distribution (DKD-R 5-7:2018, 8.2: the largest deviation of the chamber's
    value from its mean over the period).

    Evaluated on the chamber's course, the least-squares line of the reference's readings
    against time: |b| (t_end - t_start) / 2 is the largest deviation of that line from its
    mean.  Not on single readings: their largest deviation counts the reference's own
    noise (which the Type A of the comparison holds) and the plateau's edge samples (its
    windows tolerate the first seconds of the next ramp), and grows with the number of
    readings; the course is what a DUT slower than the reference, at another place, turns
    into an error of the comparison.
    """
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return 0.0
    return _temporal_instability(t, v, *_centred(t))


def _centred(t: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
    """t - mean(t) and its sum of squares (S_tt), for the least-squares slopes against t
    (`temporal_instability`, `drift_half_width`: at one point, computed once for both)."""
    tc = t - sample_mean(t)
    return tc, _dot(tc, tc)


def _temporal_instability(t: npt.NDArray[np.float64], v: npt.NDArray[np.float64],
                          tc: npt.NDArray[np.float64], sxx: float) -> float:
    """`temporal_instability` with `_centred` (t) given."""
    if sxx <= 0:
        return 0.0
    b = _dot(tc, v - sample_mean(v)) / sxx
    return abs(b) * float(t[-1] - t[0]) / 2.0


def drift_half_width(t_s: npt.ArrayLike, x: npt.ArrayLike, n_eff: float) -> float:
    """Half-width of a drift over a plateau beyond what the readings' noise explains [unit].

    The least-squares slope b of x against t, times half the plateau's duration, less
    twice the slope's standard uncertainty (its residual scatter with n_eff independent
    readings among n, the same autocorrelation as the Type A): a trend the noise could
    make is already in the Type A of the mean, a trend beyond it is not (the Type A takes
    the readings as stationary).  Zero when the slope is within 2 u(b).  Used for the DUT's
    short-term stability against the reference (DKD-R 5-8), as a rectangular half-width.

    Parameters
    ----------
    t_s : array [s]
    x : array [unit]
    n_eff : float
        Effective number of independent readings of x (`autocorrelated_mean`).
    """
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(x, dtype=np.float64)
    if v.size < 3:
        return 0.0
    return _drift_half_width(t, v, n_eff, *_centred(t))


def _drift_half_width(t: npt.NDArray[np.float64], v: npt.NDArray[np.float64], n_eff: float,
                      tc: npt.NDArray[np.float64], sxx: float, mean: float | None = None) -> float:
    """`drift_half_width` with `_centred` (t) given, and the mean of v when known."""
    n = v.size
    if sxx <= 0:
        return 0.0
    vc = v - (sample_mean(v) if mean is None else mean)
    b = _dot(tc, vc) / sxx
    residual = vc - b * tc
    s2 = _dot(residual, residual) / (n - 2)
    u_b = math.sqrt(s2 / sxx * n / max(min(n_eff, n), 2.0))
    span = float(t[-1] - t[0])
    return max(abs(b) - 2.0 * u_b, 0.0) * span / 2.0
