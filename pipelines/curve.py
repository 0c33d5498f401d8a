"""A correction curve per DUT channel across its calibration points (``[curve] degree = d``).

For each DUT channel with at least d + 1 points, the polynomial

    correction(x) = a_0 + a_1 x + ... + a_d x^d,    x = the DUT's indication (dut_mean)

is fitted to the points' corrections by weighted least squares with weights 1 / u_c^2
(u_c = u_combined of each point), i.e. it minimises chi^2 = sum ((C_j - f(x_j)) / u_j)^2.
With the design matrix A (A_ji = x_j^i / u_j) and b_j = C_j / u_j, the coefficients solve
A a = b (QR, not the normal equations), and their covariance is (A^T A)^-1, *not* scaled
by chi^2 / dof: the u_j are absolute standard uncertainties (numpy.polyfit's
``cov="unscaled"``; JCGM 100:2008 H.3 fits a calibration line the same way).  chi^2 and
dof = n - d - 1 are reported so that a model that does not fit the points (chi^2 much
larger than dof, a Birge ratio sqrt(chi^2 / dof) well above 1) is visible.

The points are taken as uncorrelated; Type B contributions common to every point (the
reference's certificate, its drift) are in fact correlated between points, so the
coefficients' covariance is a lower bound for the offset a_0 and the curve is a convenience
for users between points, not a replacement of the points' own U.

Coefficients are in increasing powers: a_i is in unit^(1 - i) (a_0 in the unit, a_1
dimensionless ...).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipelines.run import PointResult

__all__ = ["Curve", "fit_curves", "fit_polynomial"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def fit_polynomial(
    x: npt.ArrayLike, y: npt.ArrayLike, u: npt.ArrayLike, degree: int
) -> tuple[FloatArray, FloatArray]:
    """Weighted least-squares polynomial (weights 1/u^2): coefficients a_0..a_d (increasing
    powers) and their covariance (unscaled).  Raises ValueError with fewer than d + 1
    points or a u that is not finite and > 0."""
    xs, ys, us = (np.asarray(v, dtype=np.float64) for v in (x, y, u))
    if not (xs.shape == ys.shape == us.shape and xs.ndim == 1):
        raise ValueError("x, y and u must be 1-D arrays of one length")
    if degree < 0:
        raise ValueError(f"degree must be >= 0, not {degree}")
    if xs.size < degree + 1:
        raise ValueError(f"a polynomial of degree {degree} needs {degree + 1} points, got {xs.size}")
    if not (np.all(np.isfinite(us)) and np.all(us > 0)):
        raise ValueError("every u must be finite and > 0")
    a = np.vander(xs, degree + 1, increasing=True) / us[:, None]
    b = ys / us
    q, r = np.linalg.qr(a)
    if np.any(np.abs(np.diag(r)) <= 1e-12 * np.abs(r).max()):
        raise ValueError(f"the points do not determine a polynomial of degree {degree} "
                         "(too few distinct indications)")
    coef = np.linalg.solve(r, q.T @ b)
    r_inv = np.linalg.inv(r)
    cov = r_inv @ r_inv.T
    return coef, cov


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
        return float(np.sum((self.residuals / self.u) ** 2))

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


def fit_curves(results: Sequence[PointResult], degree: int) -> dict[str, Curve]:
    """A curve per DUT channel with at least ``degree + 1`` points (others are logged and
    left without a curve), by channel name in sorted order."""
    by_channel: dict[str, list[PointResult]] = {}
    for r in results:
        by_channel.setdefault(r.channel, []).append(r)
    curves: dict[str, Curve] = {}
    for channel in sorted(by_channel):
        points = sorted(by_channel[channel], key=lambda r: r.point)
        x = np.array([r.dut_mean for r in points])
        y = np.array([r.correction for r in points])
        u = np.array([r.u_combined for r in points])
        try:
            coef, cov = fit_polynomial(x, y, u, degree)
        except ValueError as exc:
            log.warning("%s: no correction curve of degree %d: %s", channel, degree, exc)
            continue
        first = points[0]
        curves[channel] = Curve(first.run, channel, first.quantity, first.unit, degree, coef, cov,
                                tuple(r.point for r in points), x, y, u)
    return curves
