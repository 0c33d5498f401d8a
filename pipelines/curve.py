"""A correction curve per DUT channel across its calibration points (``[curve] degree = d``).

For each DUT channel with at least d + 1 points, the polynomial

    correction(x) = a_0 + a_1 x + ... + a_d x^d,    x = the DUT's indication (dut_mean)

is fitted to the points' corrections y by generalised least squares with the points' full
covariance V (ISO/TS 28037:2010, clause 10, "model with correlated y": a = (X^T V^-1 X)^-1
X^T V^-1 y, cov(a) = (X^T V^-1 X)^-1).  V is not diagonal: the reference's certificate, its
drift, the chamber's inhomogeneity at the DUT's place, the pressure gauge and any further
[uncertainty] effect are one error shared by every point of the channel
(`pipelines.budget.is_common`), so

    V_ii = u_c,i^2,   V_ij = sum over common rows k, l of c_ik u_ik c_jl u_jl r_kl   (i != j)

with r_kk = 1 and r_kl the point's own correlations (GUM 5.2).  Treating the points as
independent (weights 1/u_c^2 alone) understates the uncertainty of the offset by as much as
the common rows dominate: the test compares the curve's u at mid-range with a Monte Carlo of
the whole run (simulated readings, the common errors drawn once per run), and the weighted
fit without V falls short of it.  The coefficients' covariance is (X^T V^-1 X)^-1, *not*
scaled by chi^2 / dof: the u are absolute; chi^2 = r^T V^-1 r and dof = n - d - 1 are
reported so that a model that does not fit the points is visible (Birge ratio).

Solved by Cholesky whitening (L L^T = V, then QR of L^-1 X: no normal equations).  The DUT's
indications are taken as exact (ISO/TS 28037's y-only case): their Type A is in the points'
u already.  Coefficients are in increasing powers: a_i is in unit^(1 - i).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipelines.budget import is_common
from pipelines.point import PointResult

__all__ = ["Curve", "fit_curves", "fit_polynomial", "point_covariance"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def fit_polynomial(
    x: npt.ArrayLike, y: npt.ArrayLike, u: npt.ArrayLike, degree: int, cov: npt.ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Least-squares polynomial: coefficients a_0..a_d (increasing powers) and their
    covariance (unscaled).  Without ``cov`` the points are independent with standard
    uncertainties ``u`` (weights 1/u^2); with it, ``cov`` is their covariance matrix
    (diagonal u^2) and the fit is generalised least squares (module docstring).  Raises
    ValueError with fewer than d + 1 points, a u that is not finite and > 0, or a cov that
    is not a positive definite matrix of the points."""
    xs, ys, us = (np.asarray(v, dtype=np.float64) for v in (x, y, u))
    if not (xs.shape == ys.shape == us.shape and xs.ndim == 1):
        raise ValueError("x, y and u must be 1-D arrays of one length")
    if degree < 0:
        raise ValueError(f"degree must be >= 0, not {degree}")
    if xs.size < degree + 1:
        raise ValueError(f"a polynomial of degree {degree} needs {degree + 1} points, got {xs.size}")
    if not (np.all(np.isfinite(us)) and np.all(us > 0)):
        raise ValueError("every u must be finite and > 0")
    design = np.vander(xs, degree + 1, increasing=True)
    if cov is None:
        a = design / us[:, None]
        b = ys / us
    else:
        v = np.asarray(cov, dtype=np.float64)
        if v.shape != (xs.size, xs.size) or not np.all(np.isfinite(v)):
            raise ValueError("cov must be a finite n x n matrix of the points")
        try:
            chol = np.linalg.cholesky(v)
        except np.linalg.LinAlgError:
            raise ValueError("the points' covariance is not positive definite") from None
        a = np.linalg.solve(chol, design)
        b = np.linalg.solve(chol, ys)
    q, r = np.linalg.qr(a)
    if np.any(np.abs(np.diag(r)) <= 1e-12 * np.abs(r).max()):
        raise ValueError(f"the points do not determine a polynomial of degree {degree} "
                         "(too few distinct indications)")
    coef = np.linalg.solve(r, q.T @ b)
    r_inv = np.linalg.inv(r)
    cov_a = r_inv @ r_inv.T
    return coef, cov_a


def point_covariance(points: Sequence[PointResult]) -> FloatArray:
    """Covariance matrix of the points' corrections [unit^2] (module docstring): u_c^2 on the
    diagonal, the rows common to every point off it (with the points' own correlations)."""
    n = len(points)
    v = np.zeros((n, n))
    common: list[dict[str, float]] = []
    for p in points:
        common.append({r.name: r.sensitivity * r.u for r in p.budget.components if is_common(r)})
    pairs: dict[frozenset[str], float] = {}
    for p in points:
        for a, b, rho in p.budget.correlations:
            pairs[frozenset((a, b))] = rho
    for i in range(n):
        v[i, i] = points[i].u_combined ** 2
        for j in range(i + 1, n):
            ci, cj = common[i], common[j]
            total = sum(ci[k] * cj[k] for k in ci.keys() & cj.keys())
            total += sum(ci[a] * cj[b] * pairs.get(frozenset((a, b)), 0.0)
                         for a in ci for b in cj if a != b)
            v[i, j] = v[j, i] = total
    return v


@dataclass(frozen=True)
class Curve:
    """The fitted correction curve of one DUT channel."""

    run: str
    channel: str
    quantity: str
    unit: str
    degree: int
    coefficients: FloatArray
    """a_0 .. a_d: correction(x) = sum a_i x^i [unit^(1 - i)]."""
    covariance: FloatArray
    """Covariance of the coefficients, (d+1) x (d+1) [unit^(2 - i - j)]."""
    points: tuple[int, ...]
    x: FloatArray
    """The points' DUT means [unit]."""
    y: FloatArray
    """The points' corrections [unit]."""
    u: FloatArray
    """The points' combined standard uncertainties [unit]."""
    point_cov: FloatArray | None = None
    """The points' covariance the fit used (`point_covariance`) [unit^2]; None: independent."""

    def __call__(self, x: npt.ArrayLike) -> FloatArray:
        """The curve's correction at DUT indications ``x`` [unit]."""
        return np.asarray(np.polynomial.polynomial.polyval(np.asarray(x, dtype=np.float64),
                                                           self.coefficients), dtype=np.float64)

    def u_fit(self, x: npt.ArrayLike) -> FloatArray:
        """Standard uncertainty of the curve's value at ``x`` from the coefficients'
        covariance alone, sqrt(J C J^T) with J = (1, x, ..., x^d) [unit]."""
        xs = np.atleast_1d(np.asarray(x, dtype=np.float64))
        j = np.vander(xs, self.degree + 1, increasing=True)
        return np.sqrt(np.einsum("ij,jk,ik->i", j, self.covariance, j))

    @property
    def standard_uncertainties(self) -> FloatArray:
        """u(a_i) = sqrt(C_ii)."""
        return np.sqrt(np.diag(self.covariance))

    @property
    def residuals(self) -> FloatArray:
        """C_j - f(x_j) at each point [unit]."""
        return self.y - self(self.x)

    @property
    def chi2(self) -> float:
        """r^T V^-1 r (sum (r/u)^2 for independent points)."""
        if self.point_cov is None:
            return float(np.sum((self.residuals / self.u) ** 2))
        r = self.residuals
        return float(r @ np.linalg.solve(self.point_cov, r))

    @property
    def dof(self) -> int:
        """Residual degrees of freedom n - d - 1."""
        return int(self.x.size - self.degree - 1)

    @property
    def birge_ratio(self) -> float:
        """sqrt(chi^2 / dof); nan when dof = 0."""
        return math.sqrt(self.chi2 / self.dof) if self.dof > 0 else math.nan

    def residual_of(self, point: int) -> float:
        return float(self.residuals[self.points.index(point)])


def fit_curves(results: Sequence[PointResult], degree: int, *, correlated: bool = True) -> dict[str, Curve]:
    """A curve per DUT channel with at least ``degree + 1`` points (others are logged and
    left without a curve), by channel name in sorted order; with the points' full
    covariance (``correlated``, the default) or as if independent (for comparison only)."""
    by_channel: dict[str, list[PointResult]] = {}
    for r in results:
        by_channel.setdefault(r.channel, []).append(r)
    curves: dict[str, Curve] = {}
    for channel in sorted(by_channel):
        points = sorted(by_channel[channel], key=lambda r: r.point)
        x = np.array([r.dut_mean for r in points])
        y = np.array([r.correction for r in points])
        u = np.array([r.u_combined for r in points])
        v = point_covariance(points) if correlated else None
        try:
            coef, cov = fit_polynomial(x, y, u, degree, v)
        except ValueError as exc:
            log.warning("%s: no correction curve of degree %d: %s", channel, degree, exc)
            continue
        first = points[0]
        curves[channel] = Curve(first.run, channel, first.quantity, first.unit, degree, coef, cov,
                                tuple(r.point for r in points), x, y, u, v)
    return curves
