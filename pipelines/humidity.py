"""Humidity conversions on the ITS-90 formulations of Hardy (1998).

Reference, for every function below unless its docstring says otherwise:

    B. Hardy, "ITS-90 formulations for vapor pressure, frostpoint temperature, dewpoint
    temperature, and enhancement factors in the range -100 to +100 C", Proceedings of the
    Third International Symposium on Humidity & Moisture, NPL, Teddington, UK, April 1998.

Hardy refits Wexler's (1976, 1977) IPTS-68 equations to ITS-90 temperatures and Greenspan's
(1976) enhancement factors to the same scale, so that a laboratory's reference dew-point
mirror, calibrated on ITS-90, converts to relative humidity without a scale mismatch.

Conventions:

- Temperatures are in degrees Celsius at the interface, in kelvin inside the formulas
  (T = t + 273.15); pressures are in pascals; relative humidity is in %rh.
- Relative humidity is always with respect to liquid water, also below 0 degC (WMO-No. 8,
  Annex 4.B). ``over`` names the phase of the condensate on the mirror: ``"water"`` for a
  dew point, ``"ice"`` for a frost point.
- Scalars in, float out; any array in, ndarray out (broadcast like numpy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "Over",
    "dew_point",
    "dew_point_to_rh",
    "drh_dt",
    "drh_dtd",
    "enhancement_factor",
    "frost_point",
    "rh_to_dew_point",
    "saturation_vapour_pressure",
]

Over = Literal["water", "ice"]
"""Phase of the condensate: liquid water (dew point) or ice (frost point)."""

FloatArray = npt.NDArray[np.float64]
_ArrayIn = npt.NDArray[Any] | Sequence[float]

_T0 = 273.15
"""0 degC in kelvin [K]."""

# Hardy (1998), saturation vapour pressure over water, ITS-90:
# ln e_w = sum_{i=0..6} g_i T^(i-2) + g_7 ln T   [e_w in Pa, T in K]
_G = (
    -2.8365744e3,
    -6.028076559e3,
    1.954263612e1,
    -2.737830188e-2,
    1.6261698e-5,
    7.0229056e-10,
    -1.8680009e-13,
    2.7150305,
)
# Hardy (1998), saturation vapour pressure over ice, ITS-90:
# ln e_i = sum_{i=0..4} k_i T^(i-1) + k_5 ln T   [e_i in Pa, T in K]
_K = (
    -5.8666426e3,
    2.232870244e1,
    1.39387003e-2,
    -3.4262402e-5,
    2.7040955e-8,
    6.7063522e-1,
)
# Hardy (1998), enhancement factor coefficients for T in K (ITS-90):
# alpha = sum_{i=0..3} A_i T^i, beta = exp(sum_{i=0..3} B_i T^i). (Transcriptions of the
# water -50..0 degC A_0 differ in the last digit, ...100e-2 or ...101e-2: 2e-11 in ln f.)
_A_WATER_BELOW_0 = (-5.5898100e-2, 6.7140389e-4, -2.7492721e-6, 3.8268958e-9)
_B_WATER_BELOW_0 = (-8.1985393e1, 5.8230823e-1, -1.6340527e-3, 1.6725084e-6)
_A_WATER_ABOVE_0 = (-1.6302041e-1, 1.8071570e-3, -6.7703064e-6, 8.5813609e-9)
_B_WATER_ABOVE_0 = (-5.9890467e1, 3.4378043e-1, -7.7326396e-4, 6.3405286e-7)
_A_ICE = (-6.0190570e-2, 7.3984060e-4, -3.0897838e-6, 4.3669918e-9)
_B_ICE = (-9.4868712e1, 7.2392075e-1, -2.1963437e-3, 2.4668279e-6)
# Hardy (1998), inverse formulations, T in K from ln e (e in Pa):
# T = sum c_i (ln e)^i / sum d_i (ln e)^i
_C_DEW = (2.0798233e2, -2.0156028e1, 4.6778925e-1, -9.2288067e-6)
_D_DEW = (1.0, -1.3319669e-1, 5.6577518e-3, -7.5172865e-5)
_C_FROST = (2.1257969e2, -1.0264612e1, 1.4354796e-1)
_D_FROST = (1.0, -8.2871619e-2, 2.3540411e-3, -2.4363951e-5)

_NEWTON_STEPS = 3
"""Newton steps on the forward equations in `rh_to_dew_point`.

Hardy's inverse polynomial starts within about 1 mK of the forward equation, and ignoring
the enhancement factor in the start adds at most about 0.1 K; Newton converges
quadratically from there, so three steps reach the round-off of float64 (about 1e-12 K).
"""


def _check_over(over: str) -> None:
    if over not in ("water", "ice"):
        raise ValueError(f"over must be 'water' or 'ice', not {over!r}")


def _poly(coefs: Sequence[float], x: FloatArray) -> FloatArray:
    """Evaluate sum c_i x^i by Horner's rule."""
    out = np.full_like(x, coefs[-1])
    for c in reversed(coefs[:-1]):
        out = out * x + c
    return out


def _dpoly(coefs: Sequence[float], x: FloatArray) -> FloatArray:
    """Evaluate d/dx sum c_i x^i."""
    return _poly([i * c for i, c in enumerate(coefs)][1:], x)


def _ln_es(t_k: FloatArray, over: str) -> FloatArray:
    """Natural log of the saturation vapour pressure [ln Pa] at ``t_k`` [K]."""
    if over == "ice":
        k = _K
        return k[0] / t_k + _poly(k[1:5], t_k) + k[5] * np.log(t_k)
    g = _G
    return g[0] / t_k**2 + g[1] / t_k + _poly(g[2:7], t_k) + g[7] * np.log(t_k)


def _dln_es_dt(t_k: FloatArray, over: str) -> FloatArray:
    """Derivative of `_ln_es` with respect to temperature [1/K]."""
    if over == "ice":
        k = _K
        return -k[0] / t_k**2 + _dpoly(k[1:5], t_k) + k[5] / t_k
    g = _G
    return -2.0 * g[0] / t_k**3 - g[1] / t_k**2 + _dpoly(g[2:7], t_k) + g[7] / t_k


def _enhancement_coefficients(
    t_k: FloatArray, over: str, below: npt.NDArray[np.bool_] | None
) -> tuple[list[FloatArray], list[FloatArray]]:
    """Hardy's A_i, B_i per element: over water, the -50..0 degC set where ``below``
    (by default where t < 0 degC) and the 0..100 degC set elsewhere; one set over ice."""
    if over == "ice":
        a = [np.full_like(t_k, c) for c in _A_ICE]
        b = [np.full_like(t_k, c) for c in _B_ICE]
        return a, b
    if below is None:
        below = t_k < _T0
    a = [np.where(below, lo, hi) for lo, hi in zip(_A_WATER_BELOW_0, _A_WATER_ABOVE_0, strict=True)]
    b = [np.where(below, lo, hi) for lo, hi in zip(_B_WATER_BELOW_0, _B_WATER_ABOVE_0, strict=True)]
    return a, b


def _ln_f_and_slope(
    t_k: FloatArray, p_pa: FloatArray, over: str, below: npt.NDArray[np.bool_] | None = None
) -> tuple[FloatArray, FloatArray]:
    """ln of the enhancement factor and its derivative d(ln f)/dT [1/K] at constant P.

    ln f = alpha (1 - e_s/P) + beta (P/e_s - 1), with alpha, beta and e_s functions of T.
    """
    a, b = _enhancement_coefficients(t_k, over, below)
    alpha = a[0] + t_k * (a[1] + t_k * (a[2] + t_k * a[3]))
    dalpha = a[1] + t_k * (2.0 * a[2] + t_k * 3.0 * a[3])
    beta = np.exp(b[0] + t_k * (b[1] + t_k * (b[2] + t_k * b[3])))
    dbeta = beta * (b[1] + t_k * (2.0 * b[2] + t_k * 3.0 * b[3]))
    e_s = np.exp(_ln_es(t_k, over))
    de_s = e_s * _dln_es_dt(t_k, over)
    ln_f = alpha * (1.0 - e_s / p_pa) + beta * (p_pa / e_s - 1.0)
    dln_f = (
        dalpha * (1.0 - e_s / p_pa)
        - alpha * de_s / p_pa
        + dbeta * (p_pa / e_s - 1.0)
        - beta * p_pa * de_s / e_s**2
    )
    return ln_f, dln_f


def _ln_effective_es(
    t_k: FloatArray,
    p_pa: FloatArray | None,
    over: str,
    below: npt.NDArray[np.bool_] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """ln(f e_s) [ln Pa] and its derivative [1/K]; f = 1 when ``p_pa`` is None."""
    ln_e = _ln_es(t_k, over)
    dln_e = _dln_es_dt(t_k, over)
    if p_pa is None:
        return ln_e, dln_e
    ln_f, dln_f = _ln_f_and_slope(t_k, p_pa, over, below)
    return ln_e + ln_f, dln_e + dln_f


def _newton(
    td_k: FloatArray,
    ln_target: FloatArray,
    p_pa: FloatArray | None,
    over: str,
    below: npt.NDArray[np.bool_] | None = None,
) -> FloatArray:
    """Solve ln(f e_s)(T) = ln_target for T [K] from ``td_k``, f's coefficients held fixed."""
    for _ in range(_NEWTON_STEPS):
        ln_eff, slope = _ln_effective_es(td_k, p_pa, over, below)
        td_k = td_k - (ln_eff - ln_target) / slope
    return td_k


def _floats(*xs: Any) -> tuple[bool, list[FloatArray]]:
    """Inputs as broadcast float64 arrays, and whether every input was a scalar."""
    scalar = all(np.ndim(x) == 0 for x in xs if x is not None)
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in xs if x is not None))
    return scalar, [np.array(a, dtype=np.float64) for a in arrays]


def _out(value: FloatArray, scalar: bool) -> Any:
    return float(value) if scalar else value


@overload
def saturation_vapour_pressure(t_c: float, over: Over = "water") -> float: ...
@overload
def saturation_vapour_pressure(t_c: _ArrayIn, over: Over = "water") -> FloatArray: ...
def saturation_vapour_pressure(t_c: Any, over: Over = "water") -> Any:
    """Saturation vapour pressure of pure water vapour over a plane surface.

    Hardy (1998), ITS-90 formulations: over water
    ln e_w = sum_{i=0..6} g_i T^(i-2) + g_7 ln T, over ice ln e_i = sum_{i=0..4} k_i T^(i-1)
    + k_5 ln T. Hardy gives them for -100 to +100 degC; the water equation below 0 degC is
    the vapour pressure of supercooled water.

    Parameters
    ----------
    t_c : float or array [degC]
        Temperature (ITS-90).
    over : "water" or "ice"
        Phase of the condensed water.

    Returns
    -------
    float or array [Pa]
        Saturation vapour pressure, without enhancement factor (pure vapour).
    """
    _check_over(over)
    scalar, (t,) = _floats(t_c)
    return _out(np.exp(_ln_es(t + _T0, over)), scalar)


@overload
def enhancement_factor(  # type: ignore[overload-overlap]
    t_c: float, p_pa: float, over: Over = "water"
) -> float: ...
@overload
def enhancement_factor(t_c: _ArrayIn | float, p_pa: _ArrayIn | float, over: Over = "water") -> FloatArray: ...
def enhancement_factor(t_c: Any, p_pa: Any, over: Over = "water") -> Any:
    """Water vapour enhancement factor f in CO2-free air.

    Hardy (1998), after Greenspan (1976): f = exp(alpha (1 - e_s/P) + beta (P/e_s - 1)),
    alpha = sum_{i=0..3} A_i T^i, beta = exp(sum_{i=0..3} B_i T^i), T in K. Over water,
    Hardy's -50..0 degC coefficients apply below 0 degC and the 0..100 degC ones above;
    over ice, the -100..0 degC coefficients. Outside those ranges the polynomials are
    extrapolated.

    f is the ratio of the saturation vapour pressure of water in moist air at total
    pressure P to that of pure water vapour: e_s' = f e_s.

    Parameters
    ----------
    t_c : float or array [degC]
        Temperature (ITS-90).
    p_pa : float or array [Pa]
        Total pressure of the moist air.
    over : "water" or "ice"
        Phase of the condensed water.

    Returns
    -------
    float or array [1]
        Enhancement factor (about 1.004 at room temperature and 101 325 Pa).
    """
    _check_over(over)
    scalar, (t, p) = _floats(t_c, p_pa)
    ln_f, _ = _ln_f_and_slope(t + _T0, p, over)
    return _out(np.exp(ln_f), scalar)


def _inverse(e_pa: Any, c: Sequence[float], d: Sequence[float]) -> Any:
    scalar, (e,) = _floats(e_pa)
    x = np.log(e)
    return _out(_poly(c, x) / _poly(d, x) - _T0, scalar)


@overload
def dew_point(e_pa: float) -> float: ...
@overload
def dew_point(e_pa: _ArrayIn) -> FloatArray: ...
def dew_point(e_pa: Any) -> Any:
    """Dew-point temperature of pure water vapour at vapour pressure ``e_pa``.

    Hardy (1998), inverse dew-point formulation:
    T_d = sum_{i=0..3} c_i (ln e)^i / sum_{i=0..3} d_i (ln e)^i. Hardy states it agrees with
    the inverse of the forward water equation to within a fraction of a millikelvin over
    -100 to +100 degC; `rh_to_dew_point` refines it with Newton steps when exactness matters.

    Parameters
    ----------
    e_pa : float or array [Pa]
        Water vapour pressure (already divided by the enhancement factor, if any).

    Returns
    -------
    float or array [degC]
        Dew-point temperature (ITS-90).
    """
    return _inverse(e_pa, _C_DEW, _D_DEW)


@overload
def frost_point(e_pa: float) -> float: ...
@overload
def frost_point(e_pa: _ArrayIn) -> FloatArray: ...
def frost_point(e_pa: Any) -> Any:
    """Frost-point temperature of pure water vapour at vapour pressure ``e_pa``.

    Hardy (1998), inverse frost-point formulation:
    T_f = sum_{i=0..2} c_i (ln e)^i / sum_{i=0..3} d_i (ln e)^i, the inverse of the ice
    equation over -100 to 0 degC.

    Parameters
    ----------
    e_pa : float or array [Pa]
        Water vapour pressure (already divided by the enhancement factor, if any).

    Returns
    -------
    float or array [degC]
        Frost-point temperature (ITS-90).
    """
    return _inverse(e_pa, _C_FROST, _D_FROST)


@overload
def dew_point_to_rh(  # type: ignore[overload-overlap]
    td_c: float, t_c: float, p_pa: float | None = None, over: Over = "water", *,
    p_mirror_pa: float | None = None,
) -> float: ...
@overload
def dew_point_to_rh(
    td_c: _ArrayIn | float,
    t_c: _ArrayIn | float,
    p_pa: _ArrayIn | float | None = None,
    over: Over = "water",
    *,
    p_mirror_pa: _ArrayIn | float | None = None,
) -> FloatArray: ...
def dew_point_to_rh(td_c: Any, t_c: Any, p_pa: Any = None, over: Over = "water", *,
                    p_mirror_pa: Any = None) -> Any:
    """Relative humidity (with respect to water) from a dew or frost point.

    RH = 100 f(T_d, P) e(T_d) / (f_w(T, P) e_w(T)), with e and f over ``over`` at the dew or
    frost point and over water at the air temperature (WMO-No. 8, Annex 4.B, with Hardy's
    (1998) e_s and f). Without ``p_pa`` both enhancement factors are taken as 1.

    A mirror that measures the gas at another pressure P_m (a sampled or pumped mirror)
    sees the same mole fraction of water vapour, f(T_d, P_m) e(T_d) / P_m, so at the
    chamber's pressure P the vapour pressure is that times P: RH = 100 f(T_d, P_m) e(T_d)
    (P / P_m) / (f_w(T, P) e_w(T)) (e.g. DKD-R 5-8:2019, the pressure ratio of the
    generator; WMO-No. 8 Annex 4.B for the mole fraction).

    Parameters
    ----------
    td_c : float or array [degC]
        Dew point (``over="water"``) or frost point (``over="ice"``).
    t_c : float or array [degC]
        Air temperature.
    p_pa : float or array [Pa], optional
        Total pressure; applies the enhancement factor at both temperatures.
    over : "water" or "ice"
        Phase of the condensate at ``td_c``.
    p_mirror_pa : float or array [Pa], optional
        Total pressure at the mirror when it differs from ``p_pa`` (which is then required).

    Returns
    -------
    float or array [%rh]
    """
    _check_over(over)
    if p_mirror_pa is not None and p_pa is None:
        raise ValueError("p_mirror_pa needs p_pa, the pressure of the air at t_c")
    scalar, arrays = _floats(td_c, t_c, p_pa, p_mirror_pa)
    td, t = arrays[0] + _T0, arrays[1] + _T0
    p = arrays[2] if p_pa is not None else None
    p_m = arrays[3] if p_mirror_pa is not None else p
    ln_num, _ = _ln_effective_es(td, p_m, over)
    ln_den, _ = _ln_effective_es(t, p, "water")
    if p_mirror_pa is not None:
        ln_num = ln_num + np.log(p / p_m)  # type: ignore[operator]
    return _out(100.0 * np.exp(ln_num - ln_den), scalar)


@overload
def rh_to_dew_point(  # type: ignore[overload-overlap]
    rh: float, t_c: float, p_pa: float | None = None, over: Over = "water"
) -> float: ...
@overload
def rh_to_dew_point(
    rh: _ArrayIn | float,
    t_c: _ArrayIn | float,
    p_pa: _ArrayIn | float | None = None,
    over: Over = "water",
) -> FloatArray: ...
def rh_to_dew_point(rh: Any, t_c: Any, p_pa: Any = None, over: Over = "water") -> Any:
    """Dew point (or frost point) from relative humidity, the inverse of `dew_point_to_rh`.

    Solves f(T_d, P) e(T_d) = (RH/100) f_w(T, P) e_w(T) for T_d: Hardy's (1998) inverse
    polynomial gives the start, then Newton steps on the forward equations (with their
    analytic derivative) make the round trip through `dew_point_to_rh` exact to float64
    round-off rather than to the polynomial's fraction of a millikelvin.

    Parameters
    ----------
    rh : float or array [%rh]
        Relative humidity with respect to water, > 0.
    t_c : float or array [degC]
        Air temperature.
    p_pa : float or array [Pa], optional
        Total pressure; applies the enhancement factor at both temperatures.
    over : "water" or "ice"
        ``"ice"`` returns the frost point.

    Returns
    -------
    float or array [degC]
    """
    _check_over(over)
    scalar, arrays = _floats(rh, t_c, p_pa)
    h, t = arrays[0], arrays[1] + _T0
    p = arrays[2] if p_pa is not None else None
    ln_den, _ = _ln_effective_es(t, p, "water")
    ln_e = np.log(h / 100.0) + ln_den
    start = dew_point(np.exp(ln_e)) if over == "water" else frost_point(np.exp(ln_e))
    td = start + _T0
    if p is None or over == "ice":
        return _out(_newton(td, ln_e, p, over) - _T0, scalar)
    # Hardy's two water ranges of f meet with a jump of about 3 ppm at 0 degC, so f e_w is
    # not monotonic there (at 101 325 Pa, the 40 uK below 0 degC map onto RH values also
    # reached from at or above 0 degC). Solve on each range and keep the root that lies in
    # its own range, preferring the upper one: every dew point at or above 0 degC round-trips.
    # An upper root a round-off below 0 degC (1 nK here) is 0 degC itself.
    # (The inputs' broadcast shape: ``td`` is a float when they are scalars, as
    # `dew_point` returns one for a scalar.)
    upper = _newton(td, ln_e, p, over, np.zeros(h.shape, dtype=np.bool_))
    lower = _newton(td, ln_e, p, over, np.ones(h.shape, dtype=np.bool_))
    in_upper = upper >= _T0 - 1e-9
    return _out(np.where(in_upper, np.maximum(upper, _T0), lower) - _T0, scalar)


@overload
def drh_dtd(  # type: ignore[overload-overlap]
    td_c: float, t_c: float, p_pa: float | None = None, over: Over = "water", *,
    p_mirror_pa: float | None = None,
) -> float: ...
@overload
def drh_dtd(
    td_c: _ArrayIn | float,
    t_c: _ArrayIn | float,
    p_pa: _ArrayIn | float | None = None,
    over: Over = "water",
    *,
    p_mirror_pa: _ArrayIn | float | None = None,
) -> FloatArray: ...
def drh_dtd(td_c: Any, t_c: Any, p_pa: Any = None, over: Over = "water", *, p_mirror_pa: Any = None) -> Any:
    """Sensitivity coefficient dRH/dT_d of `dew_point_to_rh`, for GUM propagation.

    Analytic: dRH/dT_d = RH (d ln e/dT + d ln f/dT) at T_d (GUM, JCGM 100:2008, 5.1.3,
    sensitivity coefficient c_i = df/dx_i), from the derivatives of Hardy's (1998) equations.

    Parameters
    ----------
    td_c : float or array [degC]
        Dew point (``over="water"``) or frost point (``over="ice"``).
    t_c : float or array [degC]
        Air temperature.
    p_pa : float or array [Pa], optional
        Total pressure; includes the enhancement factor's slope when given.
    over : "water" or "ice"
        Phase of the condensate at ``td_c``.

    Returns
    -------
    float or array [%rh/K]
        Positive: a higher dew point means moister air (about 3.4 %rh/K at 20 degC,
        50 %rh).
    """
    _check_over(over)
    rh = dew_point_to_rh(td_c, t_c, p_pa, over, p_mirror_pa=p_mirror_pa)
    scalar, arrays = _floats(td_c, p_pa, p_mirror_pa)
    p = arrays[1] if p_pa is not None else None
    p_m = arrays[2] if p_mirror_pa is not None else p
    _, slope = _ln_effective_es(arrays[0] + _T0, p_m, over)
    return _out(np.asarray(rh) * slope, scalar and np.ndim(t_c) == 0)


@overload
def drh_dt(  # type: ignore[overload-overlap]
    td_c: float, t_c: float, p_pa: float | None = None, over: Over = "water", *,
    p_mirror_pa: float | None = None,
) -> float: ...
@overload
def drh_dt(
    td_c: _ArrayIn | float,
    t_c: _ArrayIn | float,
    p_pa: _ArrayIn | float | None = None,
    over: Over = "water",
    *,
    p_mirror_pa: _ArrayIn | float | None = None,
) -> FloatArray: ...
def drh_dt(td_c: Any, t_c: Any, p_pa: Any = None, over: Over = "water", *, p_mirror_pa: Any = None) -> Any:
    """Sensitivity coefficient dRH/dT of `dew_point_to_rh` to the air temperature.

    Analytic: dRH/dT = -RH (d ln e_w/dT + d ln f_w/dT) at T (GUM, JCGM 100:2008, 5.1.3),
    from the derivatives of Hardy's (1998) equations.

    Parameters
    ----------
    td_c : float or array [degC]
        Dew point (``over="water"``) or frost point (``over="ice"``).
    t_c : float or array [degC]
        Air temperature.
    p_pa : float or array [Pa], optional
        Total pressure; includes the enhancement factor's slope when given.
    over : "water" or "ice"
        Phase of the condensate at ``td_c``.

    Returns
    -------
    float or array [%rh/K]
        Negative: warmer air at the same dew point is drier (about -3.1 %rh/K at
        20 degC, 50 %rh).
    """
    _check_over(over)
    rh = dew_point_to_rh(td_c, t_c, p_pa, over, p_mirror_pa=p_mirror_pa)
    scalar, arrays = _floats(t_c, p_pa)
    p = arrays[1] if p_pa is not None else None
    _, slope = _ln_effective_es(arrays[0] + _T0, p, "water")
    return _out(-np.asarray(rh) * slope, scalar and np.ndim(td_c) == 0)
