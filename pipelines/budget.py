"""The GUM budget of a calibration point (SPEC section 7; EA-4/02 M:2022 section 5 layout).

Rows, all in the comparison's unit unless a unit is named (then propagated with the
sensitivity coefficient at the point, GUM 5.1.3):

==================================  ================================================  ==============
component                           standard uncertainty                              dof
==================================  ================================================  ==============
repeatability (Type A)              of the mean of reference - DUT, autocorrelated:   n_eff - 1
                                    `uncertainty.autocorrelated_mean`, n_eff <= the
                                    DUT's own readings
chamber temporal instability        DKD-R 5-7 8.2: largest deviation of the           inf
                                    chamber's course (the reference's least-squares
                                    line) from its mean over the point, rect.
DUT short-term stability            the DUT's drift against the reference over the    inf
                                    point beyond its noise (`drift_half_width`), rect.
reference calibration               U/k of the certificate at the mean indication     from its k
reference interpolation             linear vs quadratic between rows, rect.           inf
reference drift                     history, the reference's drift, or                inf
                                    [uncertainty] reference_drift, rect.
DUT resolution                      resolution / (2 sqrt 3)                           inf
chamber inhomogeneity               half-width / sqrt 3                               inf
every extra [uncertainty] key       half-width / sqrt 3                               inf
hysteresis                          |C_up - C_down| / 2 at one setpoint, rect.        inf
==================================  ================================================  ==============

The chamber's temporal instability is DKD-R 5-7's for a chamber, on its course rather than
single readings (`pipelines.uncertainty.temporal_instability` says why); in a comparison its
common part cancels in reference - DUT, and what does not (a DUT slower than the reference,
at another place) is what the row bounds: conservative, as the guideline is.  The DUT's
short-term stability counts only a drift the noise cannot explain, because the Type A
holds that noise (a coverage test on simulated runs shows the stated U then covers 95 %:
tests/pipelines/test_type_a_coverage.py).

Against a dew point and an air temperature (relative humidity), the reference rows are
instead, each in degC with c = dRH/dT_d or dRH/dT at the point's mean corrected values
(`pipelines.humidity.drh_dtd`, `drh_dt`, with the mirror's pressure):

- reference dew point calibration / interpolation / drift (the mirror's [references] drift
  or history, in degC), reference temperature calibration / interpolation / drift;
- air temperature inhomogeneity ([uncertainty] temperature_inhomogeneity, degC, rect.);
- pressure (comparison pressure_u_pa [Pa], c = dRH/dP by central differences, with the
  mirror's pressure moving alike when it is separate: the same gauge);
- correlated: the dew point's and the temperature's calibrations, and their drifts, with
  the comparison's correlation_dew_point_temperature (GUM 5.2).

A reference without a drift of its own (SPEC section 7's short form) falls back to
[uncertainty] reference_drift in the comparison's unit (%rh for humidity), as before.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipelines.config import ComparisonConfig, UncertaintyConfig
from pipelines.humidity import Over, dew_point_to_rh, drh_dt, drh_dtd
from pipelines.reference import (
    CertificateCorrection,
    Reference,
    ReferenceInfo,
    ReferenceSeries,
    apply_certificate,
    expired_at,
)
from pipelines.uncertainty import (
    Budget,
    Component,
    Contribution,
    _centred,
    _drift_half_width,
    _temporal_instability,
    _type_a_autocorrelated,
    budget_of,
    contribution_of,
    rectangular,
    resolution,
    sample_mean,
)

__all__ = ["POINT_SPECIFIC", "ReferenceEvaluation", "evaluate_reference", "fixed_rows", "is_common",
           "point_budget", "with_row"]

FloatArray = npt.NDArray[np.float64]

POINT_SPECIFIC = frozenset({
    "chamber temporal instability", "DUT short-term stability", "DUT resolution", "hysteresis",
    "reference interpolation", "reference dew point interpolation", "reference temperature interpolation",
})
"""Type B rows whose error differs from point to point (each point's own course, reading,
sequence or place between certificate rows).  Every other Type B row is one error shared by
all the points of a DUT channel: the same reference and certificate, the same drift, the same
place in the chamber, the same pressure gauge, the same further [uncertainty] effect."""


def is_common(row: Contribution) -> bool:
    """Whether a budget row's error is common to every point of a channel (`POINT_SPECIFIC`);
    Type A rows never are."""
    return row.distribution != "type A" and row.name not in POINT_SPECIFIC


@dataclass(frozen=True)
class ReferenceEvaluation:
    """The reference over a point's samples: corrected values and its budget rows."""

    corrected: FloatArray
    """Reference values, certificate(s) applied [unit]."""
    reference_correction: float
    components: tuple[Component, ...]
    correlations: dict[tuple[str, str], float]
    extrapolated: bool
    mean: float
    """Mean of ``corrected`` [unit]."""
    expired: bool
    """A reference was past its due date at the point."""
    references: tuple[ReferenceInfo, ...]
    gas_temperature: float | None = None
    dew_point: float | None = None

    @functools.cached_property
    def rows(self) -> tuple[Contribution, ...]:
        """``components`` as budget rows, made once for every DUT compared at the point."""
        return tuple(contribution_of(c) for c in self.components)


def _drift(name: str, ref: Reference, fallback: float | None, sensitivity: float = 1.0,
           unit: str | None = None) -> Component | None:
    if ref.drift is not None:
        return rectangular(name, ref.drift, sensitivity, unit=unit)
    if fallback is not None:
        return rectangular(name, fallback)
    return None


def evaluate_reference(
    comparison: ComparisonConfig, references: dict[str, Reference], series: ReferenceSeries,
    unc: UncertaintyConfig, sel: npt.NDArray[np.intp] | slice, t_point_s: float,
    certificate: tuple[CertificateCorrection, FloatArray] | None = None,
) -> ReferenceEvaluation:
    """The reference's corrected values at the samples ``sel`` and its budget components.

    ``t_point_s`` is when the point was measured, for the references' validity (the caller
    refuses an expired one or allows it).  ``certificate``: `apply_certificate` of a
    single reference's indications at ``sel`` and those indications corrected, already
    known (`pipelines.reference.StretchCorrections`).
    """
    if series.dew_point is None or series.air_temperature is None:
        ref = references[series.name]
        v = series.values[sel]
        if certificate is None:
            cc = apply_certificate(series.name, ref, v)
            corrected = v + cc.correction
        else:
            cc, corrected = certificate
        mean_corr = sample_mean(cc.correction)
        optional = [
            Component("reference calibration", "normal", u=cc.u, value=mean_corr, dof=cc.dof),
            rectangular("reference interpolation", cc.interpolation) if cc.interpolation > 0 else None,
            _drift("reference drift", ref, unc.reference_drift),
        ]
        return ReferenceEvaluation(
            corrected, mean_corr, tuple(c for c in optional if c is not None), {}, cc.extrapolated,
            sample_mean(corrected), expired_at(ref, t_point_s), tuple(r for r in (ref.info,) if r))
    mirror, thermometer = references[series.name], references[series.temperature_name]
    td, ta = series.dew_point[sel], series.air_temperature[sel]
    cd = apply_certificate(series.name, mirror, td)
    ct = apply_certificate(series.temperature_name, thermometer, ta)
    td_c, ta_c = td + cd.correction, ta + ct.correction
    p, p_m = comparison.pressure_pa, comparison.mirror_pressure_pa
    rh = np.asarray(dew_point_to_rh(td_c, ta_c, p, series.over, p_mirror_pa=p_m), dtype=np.float64)
    td_m, ta_m = float(td_c.mean()), float(ta_c.mean())
    c_td = float(drh_dtd(td_m, ta_m, p, series.over, p_mirror_pa=p_m))
    c_t = float(drh_dt(td_m, ta_m, p, series.over, p_mirror_pa=p_m))
    parts = [
        Component("reference dew point calibration", "normal", u=cd.u, sensitivity=c_td,
                  value=float(cd.correction.mean()), unit="degC", dof=cd.dof),
        Component("reference temperature calibration", "normal", u=ct.u, sensitivity=c_t,
                  value=float(ct.correction.mean()), unit="degC", dof=ct.dof),
    ]
    if cd.interpolation > 0:
        parts.append(rectangular("reference dew point interpolation", cd.interpolation, c_td, unit="degC"))
    if ct.interpolation > 0:
        parts.append(rectangular("reference temperature interpolation", ct.interpolation, c_t, unit="degC"))
    own_drift = mirror.drift is not None or thermometer.drift is not None
    for name, ref, c in (("reference dew point drift", mirror, c_td),
                         ("reference temperature drift", thermometer, c_t)):
        drift = _drift(name, ref, None, c, "degC")
        if drift is not None:
            parts.append(drift)
    if not own_drift:
        parts.append(rectangular("reference drift", unc.reference_drift))
    if unc.temperature_inhomogeneity:
        parts.append(rectangular("air temperature inhomogeneity", unc.temperature_inhomogeneity, c_t,
                                 unit="degC"))
    if p is not None and comparison.pressure_u_pa > 0:
        parts.append(Component("pressure", "normal", u=comparison.pressure_u_pa,
                               sensitivity=_drh_dp(td_m, ta_m, p, p_m, series.over), unit="Pa"))
    r = comparison.correlation_dew_point_temperature
    names = {c.name for c in parts}
    correlations = {}
    if r:
        for a, b in (("reference dew point calibration", "reference temperature calibration"),
                     ("reference dew point drift", "reference temperature drift")):
            if a in names and b in names:
                correlations[(a, b)] = r
    correction = float(rh.mean() - series.values[sel].mean())
    expired = expired_at(mirror, t_point_s) or expired_at(thermometer, t_point_s)
    infos = tuple(x for x in (mirror.info, thermometer.info) if x is not None)
    return ReferenceEvaluation(rh, correction, tuple(parts), correlations, cd.extrapolated or ct.extrapolated,
                               float(rh.mean()), expired, infos, ta_m, td_m)


def _drh_dp(td: float, t: float, p: float, p_mirror: float | None, over: str) -> float:
    """dRH/dP [%rh/Pa], central differences (1 Pa steps): the chamber's pressure, and the
    mirror's with it when the mirror has its own (one gauge, one error)."""
    h = 1.0
    phase: Over = "ice" if over == "ice" else "water"

    def rh(q: float) -> float:
        q_mirror = None if p_mirror is None else q + (p_mirror - p)
        return float(dew_point_to_rh(td, t, q, phase, p_mirror_pa=q_mirror))

    return (rh(p + h) - rh(p - h)) / (2.0 * h)


def fixed_rows(unc: UncertaintyConfig) -> tuple[Contribution, ...]:
    """The budget's rows that depend on neither the point nor the reference."""
    components = [
        resolution("DUT resolution", unc.dut_resolution, sensitivity=-1.0),
        rectangular("chamber inhomogeneity", unc.chamber_inhomogeneity),
    ]
    components += [rectangular(name, hw) for name, hw in unc.extra_half_widths.items()
                   if name != "temperature_inhomogeneity"]
    return tuple(contribution_of(c) for c in components)


@dataclass(frozen=True)
class PointBudget:
    budget: Budget
    n_eff: float


def point_budget(
    t_s: FloatArray, reference: FloatArray, diff: FloatArray, n_dut: int,
    ev: ReferenceEvaluation, fixed: tuple[Contribution, ...],
) -> PointBudget:
    """The whole budget of one DUT at one point: Type A of ``diff`` (reference - DUT) with
    at most ``n_dut`` independent readings, the chamber's temporal instability from the
    corrected ``reference`` [unit], the DUT's short-term stability, the reference's rows and
    the fixed ones."""
    a, diff_mean = _type_a_autocorrelated("repeatability (Type A)", diff, max(n_dut, 2))
    n_eff = a.dof + 1.0
    # temporal_instability(t_s, reference) and drift_half_width(t_s, diff, n_eff), t_s
    # centred once for both and diff's mean the Type A's: the same operations, the same numbers
    t = np.asarray(t_s, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    tc, sxx = _centred(t) if ref.size >= 2 or diff.size >= 3 else (t, 0.0)
    instability = _temporal_instability(t, ref, tc, sxx) if ref.size >= 2 else 0.0
    drift = _drift_half_width(t, diff, n_eff, tc, sxx, diff_mean) if diff.size >= 3 else 0.0
    rows = (
        contribution_of(a),
        contribution_of(rectangular("chamber temporal instability", instability)),
        contribution_of(rectangular("DUT short-term stability", drift, sensitivity=-1.0)),
        *ev.rows,
        *fixed,
    )
    return PointBudget(budget_of(rows, ev.correlations), n_eff)


def with_row(budget: Budget, component: Component) -> Budget:
    """The budget with one more row (e.g. hysteresis, known once every point is)."""
    return budget_of((*budget.components, contribution_of(component)),
                     {(a, b): r for a, b, r in budget.correlations})

