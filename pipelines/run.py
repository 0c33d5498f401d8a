"""Corrections of a run: plateaus, DUT vs corrected reference, GUM budget (SPEC sections 5, 7).

For each `[[comparisons]]` entry and each DUT channel it names (a name, or a glob over the
run's channels of the comparison's quantity):

1. Plateaus are found on the reference channel's own readings with
   `pipelines.plateaus.find_plateaus` and ``[stability]``; plateau i (1-based, in time order)
   is calibration point i of every DUT compared with that reference.
2. The DUT is interpolated linearly onto the reference's sample times inside the plateau.
   A reference sample is dropped where the DUT has no reading on either side of it, or where
   its two neighbours are more than ``window_s`` apart (never interpolate across a gap).
3. The reference is corrected with its certificate: correction(indication), linear between
   the certificate's rows, applied sample by sample; the standard uncertainty U/k of the
   certificate, linear between rows too, at the plateau's mean indication.  Outside the
   certificate's range it is an error, unless ``extrapolate = true``: then the correction is
   extrapolated linearly from the outermost two rows, U/k is held at the outermost row's,
   and the point is flagged ``extrapolated``.
4. correction C = mean(reference corrected) - mean(DUT), over the n kept samples, with
   the budget (all in the quantity's unit, uncorrelated, `pipelines.uncertainty.combine`):

   ============================  ===========================================  ===========
   component                     standard uncertainty                          dof
   ============================  ===========================================  ===========
   repeatability (Type A)        s(reference - DUT) / sqrt(n)                  n - 1
   reference calibration         U/k from the certificate (normal)             inf
   reference drift               half-width / sqrt(3) (rectangular)            inf
   DUT resolution                resolution / (2 sqrt(3))                      inf
   chamber inhomogeneity         half-width / sqrt(3) (rectangular)            inf
   every extra [uncertainty] key half-width / sqrt(3) (rectangular)            inf
   ============================  ===========================================  ===========

5. setpoint = the corrected reference mean rounded to the nearest 0.5 of the unit.
6. With ``[conformity]``, each point gets a decision (`pipelines.conformity`) on its error
   DUT - reference = -C with its U.

Relative humidity against a chilled mirror (``reference_dew_point`` and
``reference_temperature`` instead of ``reference``):

- The reference RH lives on the dew-point channel's time base: the air temperature is
  interpolated onto the dew-point samples (as a DUT is, never across a gap longer than
  ``window_s``; samples without a temperature are dropped), and
  RH = `pipelines.humidity.dew_point_to_rh`(T_d, T, pressure_pa) (Hardy 1998; with
  ``pressure_pa`` the enhancement factor is applied; a channel of quantity ``frost_point``
  is taken over ice).  Both channels are in degC.
- Plateaus are found on this computed RH, not on the dew point alone, with the
  comparison's (or the global) ``[stability]`` in %rh: the RH the DUTs see is stable only
  when both the dew point and the air temperature are (a chamber may step RH by stepping
  the air temperature at a constant dew point, which a dew-point criterion would take for
  one plateau), and the criteria are then in the unit of the DUTs and of the budget.  The
  RH for plateau finding is computed from the raw indications (the certificates'
  corrections are smooth and apply only where a plateau is evaluated, so a ramp outside a
  certificate's range is no error).
- Inside a plateau both channels are corrected with their own certificates, sample by
  sample, and the reference RH is computed from the corrected values; reference_mean is
  its mean, and reference_correction the mean RH change the two certificates make.
- Instead of "reference calibration" the budget has two components, propagated with the
  sensitivity coefficients at the plateau's mean corrected T_d and T (GUM 5.1.3):
  "reference dew point calibration" u = U/k of the mirror's certificate [degC],
  c = dRH/dT_d (`pipelines.humidity.drh_dtd`), and "reference temperature calibration"
  u = U/k of the thermometer's certificate [degC], c = dRH/dT (`drh_dt`, negative).
  ``[uncertainty]`` (or the comparison's own) is in %rh here, as the DUTs.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

from gateway.errors import RemotecalError
from pipelines.config import (
    CertificateConfig,
    ComparisonConfig,
    PipelineConfig,
    StabilityConfig,
    UncertaintyConfig,
)
from pipelines.conformity import decide
from pipelines.humidity import dew_point_to_rh, drh_dt, drh_dtd
from pipelines.plateaus import MIN_SAMPLES as MIN_WINDOW_SAMPLES
from pipelines.plateaus import RollingStats, find_plateaus, rolling_stats
from pipelines.source import ChannelData
from pipelines.uncertainty import (
    Budget,
    Component,
    Contribution,
    budget_of,
    contribution_of,
    rectangular,
    resolution,
    type_a,
)

__all__ = [
    "MIN_SAMPLES",
    "CertificateCorrection",
    "PointResult",
    "ReferenceSeries",
    "StabilityDiagnosis",
    "apply_certificate",
    "compute",
    "diagnose_stability",
    "dut_channels",
    "interpolate_onto",
    "round_setpoint",
]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MIN_SAMPLES = 2
"""Fewest kept samples for a point: a Type A evaluation needs two."""


@dataclass(frozen=True)
class PointResult:
    """One row of corrections.csv: one DUT channel at one plateau, with its budget."""

    run: str
    channel: str
    quantity: str
    unit: str
    reference: str
    point: int
    """1-based index of the plateau on the reference."""
    setpoint: float
    t_start_s: float
    """First reference sample of the plateau [s since the epoch, UTC]."""
    t_end_s: float
    """Last reference sample of the plateau [s since the epoch, UTC]."""
    n: int
    """Samples compared (reference samples of the plateau with a DUT value)."""
    reference_mean: float
    """Mean of the reference, its certificate correction applied [unit]."""
    dut_mean: float
    correction: float
    """reference_mean - dut_mean: what to add to the DUT's reading [unit]."""
    reference_correction: float
    """Mean certificate correction applied to the reference [unit]."""
    extrapolated: bool
    """The reference's certificate was extrapolated for this point."""
    budget: Budget
    reference_equipment: tuple[tuple[str, str], ...] = ()
    """(channel, unit) of every reference instrument behind reference_mean, when that is
    not just (reference, unit): a dew-point mirror and a thermometer."""
    decision: str = ""
    """Statement of conformity (`pipelines.conformity`): pass, fail, conditionalPass,
    conditionalFail; empty without [conformity] (or without an MPE for the quantity)."""
    mpe: float | None = None
    """The maximum permissible error the decision was made against [unit]."""

    @property
    def equipment(self) -> tuple[tuple[str, str], ...]:
        """(channel, unit) of each reference instrument."""
        return self.reference_equipment or ((self.reference, self.unit),)

    @property
    def error(self) -> float:
        """The DUT's error, DUT - reference = -correction [unit]."""
        return -self.correction

    @property
    def u_combined(self) -> float:
        return self.budget.u_combined

    @property
    def U(self) -> float:
        return self.budget.U

    @property
    def k(self) -> float:
        return self.budget.k

    @property
    def dof_eff(self) -> float:
        return self.budget.dof_eff

    @property
    def t_start(self) -> datetime:
        return datetime.fromtimestamp(self.t_start_s, UTC)

    @property
    def t_end(self) -> datetime:
        return datetime.fromtimestamp(self.t_end_s, UTC)

    @property
    def t_end_ns(self) -> int:
        return round(self.t_end_s * 1e9)

    @property
    def flags(self) -> tuple[str, ...]:
        return ("extrapolated",) if self.extrapolated else ()


def round_setpoint(x: float) -> float:
    """Nearest 0.5, halves rounded up (away from -inf): 20.25 -> 20.5, -0.25 -> 0.0."""
    return math.floor(x * 2.0 + 0.5) / 2.0 + 0.0


@dataclass(frozen=True)
class CertificateCorrection:
    correction: FloatArray
    """Correction of each indication [unit]."""
    u: float
    """Standard uncertainty U/k of the certificate at the mean indication [unit]."""
    extrapolated: bool


def apply_certificate(
    channel: str, cert: CertificateConfig, indications: npt.ArrayLike
) -> CertificateCorrection:
    """Corrections of a reference's indications from its certificate (module docstring, step 3).

    Raises RemotecalError naming the channel and the value when an indication lies outside
    the certificate's rows and the certificate does not allow extrapolation.
    """
    x = np.asarray(indications, dtype=np.float64)
    rows = np.asarray(cert.points, dtype=np.float64)
    ind, corr, u_rows = rows[:, 0], rows[:, 1], rows[:, 2] / rows[:, 3]
    lo, hi = float(ind[0]), float(ind[-1])
    x_min, x_max = (float(x.min()), float(x.max())) if x.size else (lo, hi)
    if math.isnan(x_min) or math.isnan(x_max):
        # NaN hides the extremes: test every indication (NaN is never outside)
        extrapolated = bool(((x < lo) | (x > hi)).any())
    else:
        extrapolated = x_min < lo or x_max > hi
    if extrapolated and not cert.extrapolate:
        outside = (x < lo) | (x > hi)
        worst = float(x[outside][np.argmax(np.abs(x[outside] - (lo + hi) / 2))])
        raise RemotecalError(
            f"reference {channel!r} reads {worst:.6g}, outside its certificate "
            f"({lo:g} to {hi:g}); add points to reference_certificate.{channel} "
            f"or set reference_certificate.{channel}.extrapolate = true"
        )
    if ind.size == 1:
        correction = np.full_like(x, corr[0])
    else:
        correction = np.interp(x, ind, corr)
        if extrapolated:
            below = x < lo
            if below.any():
                slope = (corr[1] - corr[0]) / (ind[1] - ind[0])
                correction[below] = corr[0] + slope * (x[below] - ind[0])
            above = x > hi
            if above.any():
                slope = (corr[-1] - corr[-2]) / (ind[-1] - ind[-2])
                correction[above] = corr[-1] + slope * (x[above] - ind[-1])
    mean_indication = float(x.mean()) if x.size else lo
    # np.interp holds the end values outside the range: the uncertainty is never extrapolated.
    u = float(np.interp(mean_indication, ind, u_rows))
    return CertificateCorrection(correction, u, extrapolated)


def interpolate_onto(
    t_ref: FloatArray, t_dut: FloatArray, v_dut: FloatArray, max_gap_s: float
) -> tuple[FloatArray, BoolArray]:
    """DUT values at the reference's times, and which of them are valid.

    Linear interpolation between the DUT's neighbouring readings; a reference time is
    invalid when it lies before the DUT's first or after its last reading, or between two
    DUT readings more than ``max_gap_s`` apart.  A DUT reading at exactly the reference's
    time is always valid.
    """
    if t_dut.size == 0:
        return np.full(t_ref.shape, np.nan), np.zeros(t_ref.shape, dtype=bool)
    right = np.searchsorted(t_dut, t_ref, side="left")
    inside = (right > 0) & (right < t_dut.size)
    r = np.clip(right, 1, max(t_dut.size - 1, 1))
    exact = (right < t_dut.size) & (t_dut[np.minimum(right, t_dut.size - 1)] == t_ref)
    if t_dut.size > 1:
        span = t_dut[r] - t_dut[r - 1]
        valid = exact | (inside & (span <= max_gap_s))
    else:
        valid = exact
    values = np.interp(t_ref, t_dut, v_dut)
    return values, valid


def dut_channels(comparison: ComparisonConfig, data: dict[str, ChannelData], index: int) -> list[str]:
    """The channels a comparison's ``dut`` names, sorted; an error when it names none.

    A plain name must exist in the run. A glob picks the run's channels of the comparison's
    quantity (never the reference itself).
    """
    pattern = comparison.dut
    if not any(ch in pattern for ch in "*?["):
        if pattern not in data:
            raise RemotecalError(
                f"comparisons[{index}].dut: channel {pattern!r} has no readings in this run"
            )
        if data[pattern].quantity != comparison.quantity:
            raise RemotecalError(
                f"comparisons[{index}].dut: channel {pattern!r} measures "
                f"{data[pattern].quantity}, not {comparison.quantity}"
            )
        return [pattern]
    names = sorted(
        name
        for name, ch in data.items()
        if fnmatch.fnmatchcase(name, pattern)
        and name not in comparison.reference_channels
        and ch.quantity == comparison.quantity
        and ch.role != "reference"
    )
    if not names:
        raise RemotecalError(
            f"comparisons[{index}].dut: {pattern!r} matches no {comparison.quantity} channel of "
            f"this run (channels: {', '.join(sorted(data)) or 'none'})"
        )
    return names


@dataclass(frozen=True)
class ReferenceSeries:
    """What a comparison's plateaus are found on: the reference channel's readings, or the
    RH computed from a dew point and an air temperature (module docstring)."""

    name: str
    """The reference channel, or the dew-point channel."""
    t_s: FloatArray
    values: FloatArray
    """Indications in the comparison's unit (for a dew-point reference: RH from the raw
    channels) [unit]."""
    unit: str
    dew_point: FloatArray | None = None
    """Raw dew point at t_s [degC] (dew-point reference only)."""
    air_temperature: FloatArray | None = None
    """Raw air temperature interpolated onto t_s [degC] (dew-point reference only)."""
    temperature_name: str = ""
    over: Literal["water", "ice"] = "water"


@dataclass(frozen=True)
class _Evaluated:
    corrected: FloatArray
    """Reference values, certificate(s) applied [unit]."""
    reference_correction: float
    components: list[Component]
    extrapolated: bool
    mean: float
    """Mean of ``corrected`` [unit]."""

    @functools.cached_property
    def rows(self) -> tuple[Contribution, ...]:
        """``components`` as budget rows, made once for every DUT compared at the plateau."""
        return tuple(contribution_of(c) for c in self.components)


def _reference_series(
    cfg: PipelineConfig, comparison: ComparisonConfig, data: dict[str, ChannelData], index: int
) -> ReferenceSeries:
    """The series to find plateaus on; RemotecalError (one line) on a missing or wrong channel."""

    def channel(key: str, name: str, quantities: tuple[str, ...], unit: str | None) -> ChannelData:
        ch = data.get(name)
        if ch is None or ch.t_s.size == 0:
            raise RemotecalError(
                f"comparisons[{index}].{key}: channel {name!r} has no readings in run {cfg.run.id!r}"
            )
        if ch.quantity not in quantities:
            raise RemotecalError(
                f"comparisons[{index}].{key}: channel {name!r} measures {ch.quantity}, "
                f"not {' or '.join(quantities)}"
            )
        if unit is not None and ch.unit != unit:
            raise RemotecalError(
                f"comparisons[{index}].{key}: channel {name!r} is in {ch.unit}; a dew-point "
                f"reference needs {unit}"
            )
        return ch

    if not comparison.dew_point_reference:
        ref = channel("reference", comparison.reference_name, (comparison.quantity,), None)
        return ReferenceSeries(comparison.reference_name, ref.t_s, ref.values, ref.unit)
    td_name, t_name = comparison.reference_channels
    td = channel("reference_dew_point", td_name, ("dew_point", "frost_point"), "degC")
    air = channel("reference_temperature", t_name, ("temperature",), "degC")
    window_s = (comparison.stability or cfg.stability).window_s
    t_air, valid = interpolate_onto(td.t_s, air.t_s, air.values, window_s)
    if not valid.any():
        raise RemotecalError(
            f"comparisons[{index}].reference_temperature: channel {t_name!r} has no readings "
            f"beside those of {td_name!r}"
        )
    over: Literal["water", "ice"] = "ice" if td.quantity == "frost_point" else "water"
    t_s, dew, t_air = td.t_s[valid], td.values[valid], t_air[valid]
    rh = np.asarray(dew_point_to_rh(dew, t_air, comparison.pressure_pa, over), dtype=np.float64)
    return ReferenceSeries(td_name, t_s, rh, "%rh", dew, t_air, t_name, over)


def _evaluate_reference(
    cfg: PipelineConfig, comparison: ComparisonConfig, ref: ReferenceSeries,
    sel: npt.NDArray[np.intp] | slice,
) -> _Evaluated:
    """The reference's corrected values at the samples ``sel`` and its budget components."""
    if ref.dew_point is None or ref.air_temperature is None:
        v = ref.values[sel]
        cc = apply_certificate(ref.name, cfg.reference_certificate[ref.name], v)
        mean_corr = float(cc.correction.mean())
        component = Component("reference calibration", "normal", u=cc.u, value=mean_corr)
        corrected = v + cc.correction
        return _Evaluated(corrected, mean_corr, [component], cc.extrapolated, float(corrected.mean()))
    td, ta = ref.dew_point[sel], ref.air_temperature[sel]
    cd = apply_certificate(ref.name, cfg.reference_certificate[ref.name], td)
    ct = apply_certificate(ref.temperature_name, cfg.reference_certificate[ref.temperature_name], ta)
    td_c, ta_c = td + cd.correction, ta + ct.correction
    p = comparison.pressure_pa
    rh = np.asarray(dew_point_to_rh(td_c, ta_c, p, ref.over), dtype=np.float64)
    td_m, ta_m = float(td_c.mean()), float(ta_c.mean())
    components = [
        Component("reference dew point calibration", "normal", u=cd.u,
                  sensitivity=float(drh_dtd(td_m, ta_m, p, ref.over)),
                  value=float(cd.correction.mean()), unit="degC"),
        Component("reference temperature calibration", "normal", u=ct.u,
                  sensitivity=float(drh_dt(td_m, ta_m, p, ref.over)),
                  value=float(ct.correction.mean()), unit="degC"),
    ]
    correction = float(rh.mean() - ref.values[sel].mean())
    return _Evaluated(rh, correction, components, cd.extrapolated or ct.extrapolated, float(rh.mean()))


def _fixed_rows(unc: UncertaintyConfig) -> tuple[Contribution, ...]:
    """The budget's rows that do not depend on the point (after the reference's)."""
    components = [
        rectangular("reference drift", unc.reference_drift),
        resolution("DUT resolution", unc.dut_resolution, sensitivity=-1.0),
        rectangular("chamber inhomogeneity", unc.chamber_inhomogeneity),
    ]
    components += [rectangular(name, hw) for name, hw in unc.extra_half_widths.items()]
    return tuple(contribution_of(c) for c in components)


def _budget(diff: FloatArray, reference: tuple[Contribution, ...], fixed: tuple[Contribution, ...]) -> Budget:
    """`pipelines.uncertainty.combine` of Type A, the reference's components and the fixed ones."""
    return budget_of((contribution_of(type_a("repeatability (Type A)", diff)), *reference, *fixed))


class _PlateauCache:
    """What every DUT compared with one reference shares at a plateau: whether the
    reference's times are strictly increasing there, and the reference evaluated over the
    whole plateau (certificate applied, its components)."""

    def __init__(self, cfg: PipelineConfig, comparison: ComparisonConfig, reference: ReferenceSeries):
        self.cfg, self.comparison, self.reference = cfg, comparison, reference
        self._strict: dict[tuple[int, int], bool] = {}
        self._evaluated: dict[tuple[int, int], _Evaluated] = {}

    def strictly_increasing(self, a: int, b: int) -> bool:
        key = (a, b)
        if key not in self._strict:
            t = self.reference.t_s[a:b]
            self._strict[key] = bool(np.all(t[1:] > t[:-1]))
        return self._strict[key]

    def evaluated(self, a: int, b: int) -> _Evaluated:
        key = (a, b)
        if key not in self._evaluated:
            self._evaluated[key] = _evaluate_reference(self.cfg, self.comparison, self.reference, slice(a, b))
        return self._evaluated[key]


def _onto_plateau(
    t_ref: FloatArray, t_dut: FloatArray, v_dut: FloatArray, max_gap_s: float, lo: int, hi: int,
    strictly_increasing: bool,
) -> tuple[FloatArray, BoolArray | None]:
    """`interpolate_onto` for the sorted reference times of one plateau, on the DUT's
    readings around it only; identical results.

    ``lo`` is ``searchsorted(t_dut, t_ref[0], "left")`` and ``hi`` is
    ``searchsorted(t_dut, t_ref[-1], "right")``.  The DUT's readings from lo - 1 to hi (the
    neighbours on either side included) are all that interpolation, its gap test and the
    end tests look at for reference times in [t_ref[0], t_ref[-1]].  Where the DUT read at
    exactly the reference's (strictly increasing) times, its values are taken as they are,
    which is what interpolation returns at a reading's own time; valid is then None: all.
    """
    m = t_ref.size
    if strictly_increasing and hi - lo == m and bool((t_dut[lo:hi] == t_ref).all()):
        return v_dut[lo:hi], None
    i0, i1 = max(lo - 1, 0), min(hi + 1, t_dut.size)
    return interpolate_onto(t_ref, t_dut[i0:i1], v_dut[i0:i1], max_gap_s)


def _compare(
    cfg: PipelineConfig,
    comparison: ComparisonConfig,
    reference: ReferenceSeries,
    plateaus: list[tuple[int, int]],
    channel: str,
    dut: ChannelData,
    shared: _PlateauCache,
) -> list[PointResult]:
    window_s = (comparison.stability or cfg.stability).window_s
    fixed = _fixed_rows(comparison.uncertainty or cfg.uncertainty)
    ref_name = reference.name
    equipment: tuple[tuple[str, str], ...] = ()
    if reference.dew_point is not None:
        equipment = ((ref_name, "degC"), (reference.temperature_name, "degC"))
    if not plateaus:
        return []
    # Where each plateau's reference times fall among the DUT's: two searches in all.
    first = reference.t_s[np.array([a for a, _ in plateaus], dtype=np.intp)]
    last = reference.t_s[np.array([b - 1 for _, b in plateaus], dtype=np.intp)]
    los = np.searchsorted(dut.t_s, first, side="left").tolist()
    his = np.searchsorted(dut.t_s, last, side="right").tolist()
    out = []
    for number, ((a, b), lo, hi) in enumerate(zip(plateaus, los, his, strict=True), start=1):
        t_ref = reference.t_s[a:b]
        v_dut, valid = _onto_plateau(t_ref, dut.t_s, dut.values, window_s, lo, hi,
                                     shared.strictly_increasing(a, b))
        n = b - a if valid is None else int(valid.sum())
        if n < MIN_SAMPLES:
            log.warning(
                "%s: no DUT readings in plateau %d of %s (%s to %s); no point",
                channel, number, ref_name,
                datetime.fromtimestamp(t_ref[0], UTC).isoformat(),
                datetime.fromtimestamp(t_ref[-1], UTC).isoformat(),
            )
            continue
        if valid is not None and n < valid.size:
            log.info("%s, point %d: %d of %d reference samples have no DUT value (gap)",
                     channel, number, valid.size - n, valid.size)
            v_dut = v_dut[valid]
            ev = _evaluate_reference(cfg, comparison, reference, a + np.flatnonzero(valid))
        else:
            ev = shared.evaluated(a, b)
        diff = ev.corrected - v_dut
        reference_mean = ev.mean
        dut_mean = float(v_dut.mean())
        budget = _budget(diff, ev.rows, fixed)
        if ev.extrapolated:
            log.warning("%s, point %d: certificate of %s extrapolated", channel, number,
                        " or ".join(name for name, _ in equipment) or ref_name)
        result = PointResult(
            run=cfg.run.id,
            channel=channel,
            quantity=comparison.quantity,
            unit=dut.unit,
            reference=ref_name,
            point=number,
            setpoint=round_setpoint(reference_mean),
            t_start_s=float(t_ref[0]),
            t_end_s=float(t_ref[-1]),
            n=n,
            reference_mean=reference_mean,
            dut_mean=dut_mean,
            correction=reference_mean - dut_mean,
            reference_correction=ev.reference_correction,
            extrapolated=ev.extrapolated,
            budget=budget,
            reference_equipment=equipment,
        )
        out.append(_with_decision(cfg, result))
    return out


def _with_decision(cfg: PipelineConfig, r: PointResult) -> PointResult:
    if cfg.conformity is None:
        return r
    mpe = cfg.conformity.mpe_for(r.quantity)
    if mpe is None:
        return r
    return replace(r, decision=decide(r.error, r.U, mpe, cfg.conformity.rule), mpe=mpe)


def compute(cfg: PipelineConfig, data: dict[str, ChannelData]) -> list[PointResult]:
    """Every calibration point of the run: per comparison, per DUT channel, per plateau.

    Raises RemotecalError (one line) when a reference has no readings, a comparison names
    no channel, a channel has the wrong unit, or a reference leaves its certificate.
    """
    results: list[PointResult] = []
    plateaus_of: dict[tuple[object, ...], list[tuple[int, int]]] = {}
    compared_in: dict[str, int] = {}
    for i, comparison in enumerate(cfg.comparisons):
        reference = _reference_series(cfg, comparison, data, i)
        ref_name = reference.name
        st = comparison.stability or cfg.stability
        key = (comparison.reference_channels, comparison.pressure_pa, st)
        if key not in plateaus_of:
            plateaus_of[key] = find_plateaus(
                reference.t_s,
                reference.values,
                window_s=st.window_s,
                max_std=st.max_std,
                max_slope_per_min=st.max_slope_per_min,
                min_duration_s=st.min_duration_s,
            )
            if plateaus_of[key]:
                log.info("%s: %d plateau(s)", ref_name, len(plateaus_of[key]))
            else:
                log.warning("%s: no plateau meets [stability] in run %s; no calibration point",
                            ref_name, cfg.run.id)
        plateaus = plateaus_of[key]
        shared = _PlateauCache(cfg, comparison, reference)
        for channel in dut_channels(comparison, data, i):
            if channel in compared_in:
                # Its points would share run/channel/quantity/point with the other comparison's.
                raise RemotecalError(
                    f"comparisons[{i}].dut: channel {channel!r} is already compared in "
                    f"comparisons[{compared_in[channel]}]; compare each DUT channel with one reference"
                )
            compared_in[channel] = i
            dut = data[channel]
            if dut.unit != reference.unit:
                raise RemotecalError(
                    f"comparisons[{i}]: {channel!r} is in {dut.unit} but {ref_name!r} in "
                    f"{reference.unit}; compare channels of one unit"
                )
            results.extend(_compare(cfg, comparison, reference, plateaus, channel, dut, shared))
    results.sort(key=lambda r: (r.channel, r.reference, r.point))
    return results


@dataclass(frozen=True)
class StabilityDiagnosis:
    """How near one reference came to a plateau, for a run without calibration points:
    what the engineer needs to see which criterion failed and by how much."""

    reference: ReferenceSeries
    stability: StabilityConfig
    section: str
    """Where ``stability`` comes from: ``[stability]`` or ``comparisons[i].stability``."""
    plateaus: list[tuple[int, int]]
    """As `compute` finds them (``min_duration_s`` applied)."""
    stretches: list[tuple[int, int]]
    """Every stretch of stable windows, however short (``min_duration_s`` 0)."""
    stats: RollingStats
    """Standard deviation and slope of the window ending at each sample."""
    steadiest: int | None
    """The sample whose window came nearest both limits: the smallest
    max(std / max_std, |slope| / max_slope_per_min); None when no window is complete."""

    @property
    def label(self) -> str:
        """The reference channel, or the dew-point and temperature channels behind an RH."""
        ref = self.reference
        return f"{ref.name} + {ref.temperature_name} (RH)" if ref.temperature_name else ref.name

    @property
    def criteria(self) -> str:
        """The criteria as the config gives them, e.g. ``[stability] window_s = 600, ...``."""
        st = self.stability
        return (f"{self.section} window_s = {st.window_s:g}, max_std = {st.max_std:g}, "
                f"max_slope_per_min = {st.max_slope_per_min:g}, min_duration_s = {st.min_duration_s:g}")

    @property
    def longest_s(self) -> float:
        """Duration of the longest stretch of stable windows, t[end - 1] - t[start] [s]; 0 without one."""
        t = self.reference.t_s
        return max((float(t[b - 1] - t[a]) for a, b in self.stretches), default=0.0)

    def summary(self) -> str:
        """One clause: why this reference gave no calibration point."""
        st, ref = self.stability, self.reference
        unit = ref.unit
        if self.plateaus:
            return (f"{len(self.plateaus)} plateau(s), but no DUT channel has {MIN_SAMPLES} readings "
                    "in any of them")
        if self.stretches:
            return (f"stable for at most {self.longest_s:.0f} s at a time, under min_duration_s "
                    f"{st.min_duration_s:g} s")
        if self.steadiest is None:
            span = float(ref.t_s[-1] - ref.t_s[0]) if ref.t_s.size else 0.0
            return (f"no complete {st.window_s:g} s window ({ref.t_s.size} readings over {span:.0f} s; "
                    f"a window needs {st.window_s:g} s of data without a longer gap and "
                    f"{MIN_WINDOW_SAMPLES} readings)")
        j = self.steadiest
        end = datetime.fromtimestamp(float(ref.t_s[j]), UTC).isoformat().replace("+00:00", "Z")
        return (f"no {st.window_s:g} s window met both limits; the steadiest, ending {end}, had "
                f"std {self.stats.std[j]:.3g} {unit} and |slope| {abs(self.stats.slope_per_min[j]):.3g} "
                f"{unit}/min")


def _over_limit(x: FloatArray, limit: float) -> FloatArray:
    """x / limit, with 0 / 0 = 0 (a zero limit met exactly) and NaN kept."""
    if limit > 0:
        return x / limit
    return np.where(x > 0, np.inf, np.where(np.isnan(x), np.nan, 0.0))


def diagnose_stability(cfg: PipelineConfig, data: dict[str, ChannelData]) -> list[StabilityDiagnosis]:
    """Per reference and stability criteria, as `compute` finds plateaus: the plateaus, the
    stable stretches however short, the windows' statistics and the steadiest window.

    Raises RemotecalError as `compute` does for a missing or wrong reference channel.
    """
    out: list[StabilityDiagnosis] = []
    seen: set[tuple[object, ...]] = set()
    for i, comparison in enumerate(cfg.comparisons):
        st = comparison.stability or cfg.stability
        key = (comparison.reference_channels, comparison.pressure_pa, st)
        if key in seen:
            continue
        seen.add(key)
        ref = _reference_series(cfg, comparison, data, i)
        criteria = {"window_s": st.window_s, "max_std": st.max_std, "max_slope_per_min": st.max_slope_per_min}
        stretches = find_plateaus(ref.t_s, ref.values, **criteria)
        t = ref.t_s
        plateaus = [(a, b) for a, b in stretches if t[b - 1] - t[a] >= st.min_duration_s]
        stats = rolling_stats(ref.t_s, ref.values, st.window_s)
        with np.errstate(divide="ignore", invalid="ignore"):
            nearness = np.fmax(_over_limit(stats.std, st.max_std),
                               _over_limit(np.abs(stats.slope_per_min), st.max_slope_per_min))
        complete = ~np.isnan(nearness)
        steadiest = int(np.nanargmin(nearness)) if complete.any() else None
        section = "[stability]" if comparison.stability is None else f"comparisons[{i}].stability"
        out.append(StabilityDiagnosis(ref, st, section, plateaus, stretches, stats, steadiest))
    return out
