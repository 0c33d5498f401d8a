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

Input quantities are taken as uncorrelated: a budget with correlated inputs must fold the
correlation into its own components first (GUM 5.2).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special, stats

__all__ = [
    "COVERAGE_PROBABILITY",
    "Budget",
    "Component",
    "ComponentLike",
    "Contribution",
    "Distribution",
    "budget_of",
    "combine",
    "contribution_of",
    "coverage_factor",
    "normal_from_expanded",
    "rectangular",
    "resolution",
    "type_a",
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


ComponentLike = Component | tuple[str, float, float, float]
"""A `Component`, or the SPEC's tuple (name, standard_uncertainty, sensitivity, dof)."""


def _as_component(c: ComponentLike) -> Component:
    if isinstance(c, Component):
        return c
    name, u, sensitivity, dof = c
    # The tuple carries no distribution; SPEC section 7 uses finite dof for Type A only.
    distribution: Distribution = "type A" if math.isfinite(dof) else "normal"
    return Component(name, distribution, u=u, sensitivity=sensitivity, dof=dof)


def coverage_factor(dof_eff: float) -> float:
    """k for 95.45 % two-sided coverage at ``dof_eff`` degrees of freedom.

    EA-4/02 Annex E (and GUM G.4.1): the Student t quantile t_0.97725 at nu_eff truncated
    to the next lower integer, which errs on the side of a larger k; exactly 2.0 for
    infinite nu_eff, the normal distribution's k by EA-4/02's definition of 95.45 %.
    """
    if math.isinf(dof_eff):
        return 2.0
    return _t_quantile(math.floor(dof_eff))


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


def combine(components: Iterable[ComponentLike]) -> Budget:
    """Combine uncorrelated input quantities into a budget with its expanded uncertainty.

    u_c^2 = sum_i (c_i u(x_i))^2 (GUM eq. 10); nu_eff = u_c^4 / sum_i (u_i(y)^4 / nu_i)
    (GUM eq. G.2b), where components with nu_i = inf add nothing to the sum; k from
    `coverage_factor`; U = k u_c.

    Parameters
    ----------
    components : iterable of Component or (name, u, sensitivity, dof)
        At least one. ``u`` is a standard uncertainty [unit of x_i], ``sensitivity`` the
        sensitivity coefficient c_i [unit of y / unit of x_i], ``dof`` the degrees of
        freedom (math.inf for Type B).

    Returns
    -------
    Budget
    """
    parts = [_as_component(c) for c in components]
    if not parts:
        raise ValueError("an uncertainty budget needs at least one component")
    return budget_of(tuple(contribution_of(c) for c in parts))


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


def budget_of(rows: tuple[Contribution, ...]) -> Budget:
    """`combine` of components already turned into rows (`contribution_of`): a caller that
    combines the same components into many budgets makes their rows once."""
    if not rows:
        raise ValueError("an uncertainty budget needs at least one component")
    variance = math.fsum(r.contribution**2 for r in rows)
    u_c = math.sqrt(variance)
    denominator = math.fsum(r.contribution**4 / r.dof for r in rows if math.isfinite(r.dof))
    dof_eff = variance**2 / denominator if denominator > 0 else math.inf
    k = coverage_factor(dof_eff)
    return Budget(u_combined=u_c, dof_eff=dof_eff, k=k, U=k * u_c, components=rows)


def rectangular(
    name: str, half_width: float, sensitivity: float = 1.0, *, value: float | None = None
) -> Component:
    """A Type B quantity known only to lie within +-``half_width``: u = a / sqrt(3) (GUM
    4.3.7), e.g. a drift limit or a chamber inhomogeneity [unit of x_i]."""
    return Component(name, "rectangular", half_width=half_width, sensitivity=sensitivity, value=value)


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
