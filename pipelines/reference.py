"""Reference standards tied to their certificates, and what a certificate does to a reading.

A reference is declared once, as ``[references.<id>]`` (identity, certificate, table,
history) or in SPEC section 7's short form ``[reference_certificate.<channel>]`` (the table
alone).  For every point the pipeline then takes from it:

- the correction of each indication: linear between the certificate's rows; outside them an
  error unless ``extrapolate = true`` (then linear from the outermost two rows, flagged);
- the standard uncertainty U/k, linear between rows (held at the outermost row outside),
  with the degrees of freedom its k implies (EA-4/02 Annex E read backwards,
  `pipelines.uncertainty.dof_from_k`: k = 2.87 means nu = 4, k = 2 infinity), the fewer of
  the two rows around the mean indication;
- an interpolation term: linear interpolation between two rows is a model; its error is
  taken as the difference between the linear interpolation and the quadratic through the
  nearest three rows, at the mean indication (zero at a row, zero with two rows or fewer),
  as the half-width of a rectangular distribution;
- the drift since calibration (half-width, rectangular): with earlier certificates
  (``history``), the largest change of correction between successive calibrations, at the
  current certificate's indications that both cover; else the reference's ``drift``; else
  ``[uncertainty] reference_drift``;
- its validity: a point measured after the certificate's due date is refused unless
  ``[run] allow_expired_references = true``, and then flagged ``expired_reference``; a
  point before the calibration date is refused (the table did not exist yet).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

from gateway.errors import RemotecalError
from pipelines.config import CertificateConfig, ComparisonConfig, PipelineConfig, ReferenceConfig
from pipelines.humidity import dew_point_to_rh
from pipelines.source import ChannelData
from pipelines.uncertainty import dof_from_k, sample_mean

__all__ = [
    "CertificateCorrection",
    "Reference",
    "ReferenceInfo",
    "ReferenceSeries",
    "StretchCorrections",
    "apply_certificate",
    "history_drift",
    "interpolate_onto",
    "reference_series",
    "references_of",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Rows = Sequence[tuple[float, float, float, float]]


@dataclass(frozen=True)
class ReferenceInfo:
    """Who a reference standard is and which certificate it carries: what the DCC's
    ``dcc:measuringEquipment`` and the report state (``[references.<id>]``)."""

    id: str
    channel: str
    serial: str
    certificate: str
    """The certificate's number."""
    laboratory: str
    """The laboratory that issued it."""
    calibration_date: date
    due_date: date
    manufacturer: str | None = None
    model: str | None = None
    certificate_sha256: str | None = None
    """SHA-256 (hex) of the certificate's file, checked against the file when one is given."""
    history: tuple[tuple[str | None, date], ...] = ()
    """(certificate number, calibration date) of each earlier calibration, oldest first."""


@dataclass(frozen=True)
class Reference:
    """One reference channel with its certificate: the table, its validity and drift."""

    channel: str
    key: str
    """Its config table, for messages: ``references.<id>`` or ``reference_certificate.<channel>``."""
    rows: tuple[tuple[float, float, float, float], ...]
    extrapolate: bool
    info: ReferenceInfo | None
    drift: float | None
    """Half-width of the drift [unit of the channel]; None: [uncertainty] reference_drift."""
    drift_source: Literal["history", "configured", "uncertainty"]


@dataclass(frozen=True)
class CertificateCorrection:
    correction: FloatArray
    """Correction of each indication [unit]."""
    u: float
    """Standard uncertainty U/k of the certificate at the mean indication [unit]."""
    extrapolated: bool
    dof: float = math.inf
    """Degrees of freedom its k implies (math.inf for k = 2)."""
    interpolation: float = 0.0
    """Half-width of the interpolation term at the mean indication [unit]."""


def history_drift(current: Rows, earlier: Sequence[Rows]) -> float:
    """Largest change of correction between successive calibrations [unit]: each pair of
    successive tables compared at the current table's indications that both cover (linear
    between rows), the largest absolute difference over every pair."""
    tables = [*earlier, current]
    at = np.asarray([r[0] for r in current], dtype=np.float64)
    largest = 0.0
    for old, new in itertools.pairwise(tables):
        o, n = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
        lo, hi = max(o[0, 0], n[0, 0]), min(o[-1, 0], n[-1, 0])
        x = at[(at >= lo) & (at <= hi)]
        if x.size == 0:
            x = np.array([(lo + hi) / 2.0]) if lo <= hi else np.array([n[0, 0]])
        change = np.interp(x, n[:, 0], n[:, 1]) - np.interp(x, o[:, 0], o[:, 1])
        largest = max(largest, float(np.max(np.abs(change))))
    return largest


def references_of(cfg: PipelineConfig) -> dict[str, Reference]:
    """Every reference channel's `Reference`, from [references.<id>] and
    [reference_certificate.<channel>] (the config check made them one per channel)."""
    out: dict[str, Reference] = {}
    for channel, cert in cfg.reference_certificate.items():
        out[channel] = _short_form(channel, cert)
    for ref_id, ref in cfg.references.items():
        out[ref.channel or ref_id] = _declared(ref_id, ref)
    return out


def _short_form(channel: str, cert: CertificateConfig) -> Reference:
    return Reference(channel, f"reference_certificate.{channel}", tuple(cert.points), cert.extrapolate,
                     None, None, "uncertainty")


def _declared(ref_id: str, ref: ReferenceConfig) -> Reference:
    channel = ref.channel or ref_id
    info = ReferenceInfo(
        id=ref_id, channel=channel, serial=ref.serial, certificate=ref.certificate,
        laboratory=ref.laboratory, calibration_date=ref.calibration_date, due_date=ref.due_date,
        manufacturer=ref.manufacturer, model=ref.model, certificate_sha256=ref.certificate_sha256,
        history=tuple((h.certificate, h.calibration_date) for h in ref.history),
    )
    drift: float | None
    source: Literal["history", "configured", "uncertainty"]
    if ref.history:
        drift, source = history_drift(ref.points, [h.points for h in ref.history]), "history"
    elif ref.drift is not None:
        drift, source = ref.drift, "configured"
    else:
        drift, source = None, "uncertainty"
    return Reference(channel, f"references.{ref_id}", tuple(ref.points), ref.extrapolate, info, drift, source)


def expired_at(ref: Reference, t_s: float) -> bool:
    """Whether a point at ``t_s`` [s since the epoch] falls after the reference's due date
    (the due date's day included); RemotecalError for a point before its calibration date."""
    if ref.info is None:
        return False
    day = datetime.fromtimestamp(t_s, UTC).date()
    if day < ref.info.calibration_date:
        raise RemotecalError(
            f"{ref.key}: the run ({day.isoformat()}) precedes the certificate's calibration_date "
            f"({ref.info.calibration_date.isoformat()}); its table cannot apply"
        )
    return day > ref.info.due_date


def _interpolation_half_width(ind: FloatArray, corr: FloatArray, x: float) -> float:
    """|linear - quadratic| at x: the quadratic through the three rows nearest x."""
    if ind.size < 3 or x <= ind[0] or x >= ind[-1] or bool(np.any(ind == x)):
        return 0.0
    i = int(np.searchsorted(ind, x))  # ind[i - 1] < x < ind[i]
    lo = i - 2 if i >= 2 and (i >= ind.size - 1 or x - ind[i - 2] < ind[i + 1] - x) else i - 1
    lo = min(max(lo, 0), ind.size - 3)
    xs, ys = ind[lo:lo + 3], corr[lo:lo + 3]
    quadratic = sum(ys[a] * math.prod((x - xs[b]) / (xs[a] - xs[b]) for b in range(3) if b != a)
                    for a in range(3))
    return abs(float(np.interp(x, ind, corr)) - quadratic)


def apply_certificate(
    channel: str, cert: Reference | CertificateConfig, indications: npt.ArrayLike
) -> CertificateCorrection:
    """Corrections of a reference's indications from its certificate (module docstring).

    Raises RemotecalError naming the channel and the value when an indication lies outside
    the certificate's rows and the certificate does not allow extrapolation.
    """
    ref = cert if isinstance(cert, Reference) else _short_form(channel, cert)
    x = np.asarray(indications, dtype=np.float64)
    rows = np.asarray(ref.rows, dtype=np.float64)
    correction, extrapolated = _corrections(channel, ref, rows, x)
    return _at_mean(ref, rows, x, correction, extrapolated)


def _corrections(channel: str, ref: Reference, rows: FloatArray, x: FloatArray) -> tuple[FloatArray, bool]:
    """The correction of each indication (each from its own indication alone) and whether
    any lies outside the rows; RemotecalError for that unless the certificate extrapolates."""
    ind, corr = rows[:, 0], rows[:, 1]
    lo, hi = float(ind[0]), float(ind[-1])
    x_min, x_max = (float(x.min()), float(x.max())) if x.size else (lo, hi)
    if math.isnan(x_min) or math.isnan(x_max):
        # NaN hides the extremes: test every indication (NaN is never outside)
        extrapolated = bool(((x < lo) | (x > hi)).any())
    else:
        extrapolated = x_min < lo or x_max > hi
    if extrapolated and not ref.extrapolate:
        outside = (x < lo) | (x > hi)
        worst = float(x[outside][np.argmax(np.abs(x[outside] - (lo + hi) / 2))])
        raise RemotecalError(
            f"reference {channel!r} reads {worst:.6g}, outside its certificate "
            f"({lo:g} to {hi:g}); add points to {ref.key} or set {ref.key}.extrapolate = true"
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
    return correction, extrapolated


class _Table:
    """A certificate's rows as the point-by-point evaluation reads them, made once per
    stretch: the columns, U/k, the rows as Python floats, each row's dof when first asked."""

    def __init__(self, rows: FloatArray):
        self.rows = rows
        self.ind, self.corr, self.u_rows = rows[:, 0], rows[:, 1], rows[:, 2] / rows[:, 3]
        self.lo, self.hi = float(self.ind[0]), float(self.ind[-1])
        self.ind_list: list[float] = self.ind.tolist()
        self.corr_list: list[float] = self.corr.tolist()
        self._dof: dict[int, float] = {}

    def dof(self, j: int) -> float:
        if j not in self._dof:
            self._dof[j] = dof_from_k(float(self.rows[j, 3]))
        return self._dof[j]


def _at_mean(ref: Reference, rows: FloatArray | _Table, x: FloatArray, correction: FloatArray,
             extrapolated: bool) -> CertificateCorrection:
    """What the certificate states at the mean indication of x: U/k, its dof, the interpolation term."""
    table = rows if isinstance(rows, _Table) else _Table(rows)
    ind, lo, hi = table.ind, table.lo, table.hi
    mean_indication = sample_mean(x) if x.size else lo
    # np.interp holds the end values outside the range: the uncertainty is never extrapolated.
    u = float(np.interp(mean_indication, ind, table.u_rows))
    i = min(max(int(ind.searchsorted(mean_indication)), 0), ind.size - 1)
    around = {i, max(i - 1, 0)} if lo < mean_indication < hi else {i}
    dof = min(table.dof(j) for j in around)
    if math.isnan(mean_indication):
        interpolation = _interpolation_half_width(ind, table.corr, mean_indication)
    else:
        interpolation = _interpolation_at(table, mean_indication)
    return CertificateCorrection(correction, u, extrapolated, dof, interpolation)


def _interpolation_at(table: _Table, x: float) -> float:
    """`_interpolation_half_width` at a number x (not NaN) on the rows as Python floats (the
    rows strictly increase: the config checks it): the same operations, the same result."""
    ind, corr = table.ind_list, table.corr_list
    n = len(ind)
    if n < 3 or x <= ind[0] or x >= ind[-1] or x in ind:
        return 0.0
    i = bisect.bisect_left(ind, x)  # ind[i - 1] < x < ind[i]
    lo = i - 2 if i >= 2 and (i >= n - 1 or x - ind[i - 2] < ind[i + 1] - x) else i - 1
    lo = min(max(lo, 0), n - 3)
    xs, ys = ind[lo:lo + 3], corr[lo:lo + 3]
    quadratic = sum(ys[a] * math.prod((x - xs[b]) / (xs[a] - xs[b]) for b in range(3) if b != a)
                    for a in range(3))
    # a numpy float, as the numpy rows made it there (the same number, and the same type)
    return np.float64(abs(float(np.interp(x, table.ind, table.corr)) - quadratic))


class StretchCorrections:
    """`apply_certificate` of every span that ends with a stretch of indications (a plateau
    whose DUTs settle at different samples), the indications corrected once.

    A correction depends on its own indication alone, so the corrections of a span are a
    slice of the stretch's: the same numbers, and so are the corrected values (indication +
    correction, elementwise); the mean indication and what the certificate states there
    are the span's own.  A stretch with an indication outside the certificate's rows is
    left to `apply_certificate` span by span (its errors and extrapolation flags are the
    span's)."""

    def __init__(self, channel: str, ref: Reference, indications: FloatArray):
        self.channel, self.ref, self.x = channel, ref, indications
        self.rows = np.asarray(ref.rows, dtype=np.float64)
        self.table = _Table(self.rows)
        self._correction: FloatArray | None = None
        self._corrected: FloatArray | None = None
        x = indications
        lo, hi = float(self.rows[0, 0]), float(self.rows[-1, 0])
        self.inside = bool(x.size) and bool(x.min() >= lo) and bool(x.max() <= hi)
        """Every indication lies within the rows (NaN: not inside, left to apply_certificate)."""

    def span(self, offset: int) -> tuple[CertificateCorrection, FloatArray]:
        """`apply_certificate` of the indications from ``offset`` on, and those indications
        corrected."""
        x = self.x[offset:]
        if not self.inside:
            cc = apply_certificate(self.channel, self.ref, x)
            return cc, x + cc.correction
        if self._correction is None:
            self._correction, _ = _corrections(self.channel, self.ref, self.rows, self.x)
            self._corrected = self.x + self._correction
        assert self._corrected is not None
        cc = _at_mean(self.ref, self.table, x, self._correction[offset:], False)
        return cc, self._corrected[offset:]


def interpolate_onto(
    t_ref: FloatArray, t_dut: FloatArray, v_dut: FloatArray, max_gap_s: float
) -> tuple[FloatArray, BoolArray]:
    """Values of a series at the reference's times, and which of them are valid.

    Linear interpolation between the series' neighbouring readings; a reference time is
    invalid when it lies before the series' first or after its last reading, or between two
    readings more than ``max_gap_s`` apart.  A reading at exactly the reference's time is
    always valid.
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


@dataclass(frozen=True)
class ReferenceSeries:
    """What a comparison's plateaus are found on: the reference channel's readings, or the
    RH computed from a dew point and an air temperature (`pipelines.run`)."""

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


def reference_series(
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
    rh = np.asarray(dew_point_to_rh(dew, t_air, comparison.pressure_pa, over,
                                    p_mirror_pa=comparison.mirror_pressure_pa), dtype=np.float64)
    return ReferenceSeries(td_name, t_s, rh, "%rh", dew, t_air, t_name, over)
