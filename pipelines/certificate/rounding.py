"""How a certificate states its numbers (JCGM 100:2008 (GUM) 7.2.6; EA-4/02 M:2022 on reporting).

- The expanded uncertainty U is given to two significant digits, rounded **up** (GUM 7.2.6: "it
  may sometimes be appropriate to round uncertainties up rather than to the nearest digit"): a
  stated U is never smaller than the computed one, so rounding never shrinks the coverage
  interval.  Float noise is taken off first (12 significant digits), so 0.030000000000000002
  is 0.030, not 0.031.
- A value belonging to U (a measured value, an error, a correction, a reference value) is
  rounded to the same decimal place as U, to the nearest, halves away from zero.
- A standard uncertainty u_c is given to two significant digits, to the nearest.
- The coverage factor k to two decimals (2.00, 2.28, 4.53), to the nearest.
- Degrees of freedom: ``inf`` when infinite (Type B only), ``>100`` above 100 (k no longer
  changes at the second decimal), else the integer below (EA-4/02 truncates nu_eff).

Every function returns `decimal.Decimal` (or text), so the digits written are the digits
meant, with no binary round-off in a CSV, an XML or a page: ``str(Decimal)`` is what is
printed.  Unrounded values stay where a machine needs them (see README, "Rounding").
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

__all__ = [
    "dof_text",
    "round_k",
    "round_significant",
    "round_to",
    "round_uncertainty",
    "text",
]

_NOISE_DIGITS = 12


def _decimal(x: float) -> Decimal:
    if not math.isfinite(x):
        raise ValueError(f"{x!r} cannot be rounded")
    return Decimal(repr(float(x)))


def _denoise(d: Decimal) -> Decimal:
    """``d`` to 12 significant digits: what a float carries beyond them is round-off."""
    if d == 0:
        return d
    return d.quantize(Decimal(1).scaleb(d.adjusted() - _NOISE_DIGITS + 1), rounding=ROUND_HALF_EVEN)


def round_uncertainty(big_u: float, digits: int = 2) -> Decimal:
    """An expanded uncertainty to ``digits`` significant digits, rounded up (module docstring).

    >>> str(round_uncertainty(0.0213)), str(round_uncertainty(0.030000000000000002))
    ('0.022', '0.030')
    >>> str(round_uncertainty(0.0996)), str(round_uncertainty(12.01))
    ('0.10', '13')
    """
    if big_u < 0:
        raise ValueError(f"an uncertainty is not negative: {big_u!r}")
    d = _denoise(_decimal(big_u))
    if d == 0:
        return Decimal(0)
    q = Decimal(1).scaleb(d.adjusted() - digits + 1)
    r = d.quantize(q, rounding=ROUND_CEILING)
    if r.adjusted() > d.adjusted():  # 0.0996 -> 0.100: keep two significant digits, 0.10
        r = r.quantize(Decimal(1).scaleb(r.adjusted() - digits + 1), rounding=ROUND_CEILING)
    return r


def round_to(x: float, like: Decimal) -> Decimal:
    """``x`` rounded to the decimal place of ``like`` (a rounded U), halves away from zero."""
    exponent = like.as_tuple().exponent
    assert isinstance(exponent, int)  # a finite Decimal
    return _denoise(_decimal(x)).quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)


def round_significant(x: float, digits: int = 2) -> Decimal:
    """``x`` to ``digits`` significant digits, to the nearest (a standard uncertainty)."""
    d = _denoise(_decimal(x))
    if d == 0:
        return Decimal(0)
    return d.quantize(Decimal(1).scaleb(d.adjusted() - digits + 1), rounding=ROUND_HALF_UP)


def round_k(k: float) -> Decimal:
    """A coverage factor to two decimals: 2.00, 2.28."""
    return _denoise(_decimal(k)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def dof_text(dof: float) -> str:
    """Degrees of freedom as stated: 'inf', '>100', or the integer below (module docstring)."""
    if math.isinf(dof):
        return "inf"
    if dof > 100:
        return ">100"
    return str(math.floor(dof + 1e-9))


def text(d: Decimal) -> str:
    """A rounded number as written: fixed point, never an exponent (0.00012, not 1.2E-4)."""
    return format(d, "f")
