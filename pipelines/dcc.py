"""certificate.xml: a run's results as a PTB Digital Calibration Certificate, DCC 3.3.0.

Layout (namespaces ``dcc`` = https://ptb.de/dcc, ``si`` = https://ptb.de/si, D-SI 2.2):

    dcc:administrativeData
        dccSoftware          remotecal and its version
        coreData             country, language, uniqueIdentifier (a UUID unless given),
                             identifications (the run id), begin/endPerformanceDate (UTC
                             dates of the first plateau's start and the last one's end),
                             performanceLocation, issueDate
        items                one dcc:item per DUT channel (name, manufacturer, model, serial
                             number from ``channels_meta``: [items.<channel>] through
                             `channels_meta_from_config`; the channel name always), with
                             id ``itemN`` that its measurementResult names in ``refId``
        calibrationLaboratory, respPersons, customer     from `Parties` ([certificate]
                             through `Parties.from_config`)
    dcc:measurementResults
        usedMethods          comparison calibration; GUM / EA-4/02 budget
        measuringEquipments  one per reference channel, with its certificate's rows
        measurementResult    one per DUT channel, with two dcc:result:
            "corrections"    a dcc:list of si:realListXMLList quantities, one value per
                             point: setpoint, reference mean, DUT mean, correction (with
                             si:expandedUncXMLList: U, k, coverage probability 0.9545),
                             the reference's certificate correction, n, and charsXMLList
                             quantities for the plateau times and the flags
            "uncertainty budgets"  per point a dcc:list of components (each a dcc:list
                             named after the component: distribution, estimate if stated,
                             standard uncertainty, sensitivity coefficient, contribution,
                             degrees of freedom) followed by u_c, nu_eff, k and U
            "correction curve"  (with [curve]) the polynomial's coefficients a_0..a_d as one
                             si:realListXMLList (unit^(1-i) each) with their covariance
                             matrix (si:ellipsoidalRegionMUXMLList, k = 1), chi^2, its
                             degrees of freedom and the residuals per point
    dcc:administrativeData/dcc:statements    (with [conformity]) one dcc:statement per DUT
                             channel (refId its item): the decision rule (declaration,
                             norm ILAC-G8:09/2019), dcc:conformityXMLList with one
                             pass / fail / conditionalPass / conditionalFail per point, and
                             the MPE and the errors with their U as data

Quantities carry ``refType`` attributes (``remotecal_*`` and DCC ``basic_*``) so that a reader
finds them without relying on names; `read_corrections` is such a reader.

Units are written in D-SI syntax (``\\degreecelsius``, ``\\percent`` for %rh ...); a unit with
no D-SI spelling (degF) is refused.  An infinite number of degrees of freedom (Type B) has no
D-SI number (xs:double's INF is outside si:decimalType), so it is a ``dcc:noQuantity`` with
the text ``inf``.

`validate_dcc` checks a certificate against PTB's schema offline, from the ``shared/dcc``
folder beside the project (or ``$REMOTECAL_DCC_DIR``).
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict, cast

from lxml import etree
from scipy import stats

from gateway.errors import RemotecalError
from pipelines.config import IssuedCertificateConfig, ItemConfig, PipelineConfig
from pipelines.conformity import RULE_TEXT
from pipelines.curve import Curve
from pipelines.run import PointResult
from pipelines.uncertainty import COVERAGE_PROBABILITY, Contribution

__all__ = [
    "DCC_NS",
    "SCHEMA_VERSION",
    "SI_NS",
    "ChannelMeta",
    "DccError",
    "Parties",
    "build_dcc",
    "certificate_identifier",
    "channels_meta_from_config",
    "dcc_dir",
    "dsi_unit",
    "read_corrections",
    "validate_dcc",
]

DCC_NS = "https://ptb.de/dcc"
SI_NS = "https://ptb.de/si"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_VERSION = "3.3.0"
_NSMAP = {"dcc": DCC_NS, "si": SI_NS, "xsi": XSI_NS}
_D = f"{{{DCC_NS}}}"
_S = f"{{{SI_NS}}}"

_DSI_UNITS = {
    "degC": r"\degreecelsius",
    "K": r"\kelvin",
    "%rh": r"\percent",
    "Pa": r"\pascal",
    "hPa": r"\hecto\pascal",
    "kPa": r"\kilo\pascal",
    "bar": r"\bar",
    "mbar": r"\milli\bar",
    "g/m3": r"\gram\metre\tothe{-3}",
    "g/kg": r"\gram\kilogram\tothe{-1}",
    "ohm": r"\ohm",
    "V": r"\volt",
    "mV": r"\milli\volt",
    "A": r"\ampere",
    "mA": r"\milli\ampere",
    "1": r"\one",
}

_QUDT_URL = "https://www.ptb.de/si/v2.2.1/qudt/quantitykind.xsd"


class DccError(RemotecalError):
    """A certificate cannot be built, or does not validate against the DCC schema."""


class ChannelMeta(TypedDict, total=False):
    """What the certificate says about one DUT channel's instrument; every key optional."""

    name: str
    manufacturer: str
    model: str
    serial: str


@dataclass(frozen=True)
class Parties:
    """Who calibrated what for whom, where.  The defaults say "not stated" (and "ZZ", the
    ISO 3166 code for an unknown country) so that a certificate always validates; a real
    certificate states them."""

    laboratory: str = "not stated"
    laboratory_code: str | None = None
    laboratory_email: str | None = None
    laboratory_city: str = "not stated"
    laboratory_country: str = "ZZ"
    customer: str = "not stated"
    customer_city: str = "not stated"
    customer_country: str = "ZZ"
    responsible_person: str = "not stated"
    responsible_role: str = "calibration engineer"
    country_code: str = "ZZ"
    """countryCodeISO3166_1 of the certificate (the laboratory's country)."""
    language: str = "en"
    performance_location: str = "laboratory"
    """laboratory | customer | laboratoryBranch | customerBranch | other."""

    @classmethod
    def from_config(cls, section: IssuedCertificateConfig | None) -> Parties:
        """The parties a [certificate] section states; the defaults where it is absent, or
        for the keys it leaves out.  The certificate's country is the laboratory's unless
        country_code says otherwise."""
        if section is None:
            return cls()
        given = section.model_dump(exclude={"identifier"}, exclude_none=True)
        given.setdefault("country_code", section.laboratory_country)
        return cls(**given)


def channels_meta_from_config(items: Mapping[str, ItemConfig]) -> dict[str, ChannelMeta]:
    """`build_dcc`'s ``channels_meta`` from the [items.<channel>] sections (the same keys)."""
    return {channel: cast(ChannelMeta, item.model_dump(exclude_none=True)) for channel, item in items.items()}


def dsi_unit(unit: str) -> str:
    """The D-SI spelling of one of remotecal's units (gateway.quantities)."""
    try:
        return _DSI_UNITS[unit]
    except KeyError:
        raise DccError(
            f"unit {unit!r} has no D-SI spelling; a DCC needs SI units "
            f"({', '.join(sorted(_DSI_UNITS))})"
        ) from None


def _num(x: float) -> str:
    """Shortest text that reads back as the same float, in si:decimalType's syntax."""
    if math.isnan(x) or math.isinf(x):
        raise DccError(f"{x!r} cannot be written as an si:decimalType")
    return repr(float(x))


def _iso(t_s: float) -> str:
    t = datetime.fromtimestamp(t_s, UTC)
    spec = "seconds" if t.microsecond == 0 else "milliseconds"
    return t.isoformat(timespec=spec).replace("+00:00", "Z")


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _text(parent: etree._Element, tag: str, content: str, lang: str | None = None) -> etree._Element:
    el = _sub(parent, _D + tag)
    if lang is None:
        _sub(el, _D + "content", content)
    else:
        _sub(el, _D + "content", content, lang=lang)
    return el


def _contact(parent: etree._Element, tag: str, name: str, city: str, country: str,
             email: str | None = None) -> etree._Element:
    el = _sub(parent, _D + tag)
    _text(el, "name", name)
    if email:
        _sub(el, _D + "eMail", email)
    loc = _sub(el, _D + "location")
    _sub(loc, _D + "city", city)
    _sub(loc, _D + "countryCode", country)
    return el


class _Writer:
    def __init__(self, lang: str) -> None:
        self.lang = lang

    def name(self, parent: etree._Element, text: str) -> None:
        _text(parent, "name", text, self.lang)

    def quantity(self, parent: etree._Element, name: str, ref_type: str) -> etree._Element:
        q = _sub(parent, _D + "quantity", refType=ref_type)
        self.name(q, name)
        return q

    def real(self, parent: etree._Element, name: str, ref_type: str, value: float, unit: str) -> None:
        q = self.quantity(parent, name, ref_type)
        r = _sub(q, _S + "real")
        _sub(r, _S + "value", _num(value))
        _sub(r, _S + "unit", unit)

    def text_quantity(self, parent: etree._Element, name: str, ref_type: str, text: str) -> None:
        q = self.quantity(parent, name, ref_type)
        nq = _sub(q, _D + "noQuantity")
        _sub(nq, _D + "content", text, lang=self.lang)

    def real_list(
        self,
        parent: etree._Element,
        name: str,
        ref_type: str,
        values: Sequence[float],
        unit: str,
        *,
        expanded: tuple[Sequence[float], Sequence[float]] | None = None,
        times: Sequence[str] | None = None,
    ) -> None:
        q = self.quantity(parent, name, ref_type)
        lst = _sub(q, _S + "realListXMLList")
        _sub(lst, _S + "valueXMLList", " ".join(_num(v) for v in values))
        _sub(lst, _S + "unitXMLList", unit)
        if times is not None:
            _sub(lst, _S + "dateTimeXMLList", " ".join(times))
        if expanded is not None:
            big_u, k = expanded
            unc = _sub(lst, _S + "expandedUncXMLList")
            _sub(unc, _S + "uncertaintyXMLList", " ".join(_num(v) for v in big_u))
            _sub(unc, _S + "coverageFactorXMLList", " ".join(_num(v) for v in k))
            _sub(unc, _S + "coverageProbabilityXMLList", _num(COVERAGE_PROBABILITY))
            _sub(unc, _S + "distributionXMLList", "normal")

    def chars(self, parent: etree._Element, name: str, ref_type: str, items: Iterable[str]) -> None:
        q = self.quantity(parent, name, ref_type)
        _sub(q, _D + "charsXMLList", " ".join(items))


def _by_channel(results: Sequence[PointResult]) -> dict[str, list[PointResult]]:
    out: dict[str, list[PointResult]] = {}
    for r in results:
        out.setdefault(r.channel, []).append(r)
    for points in out.values():
        points.sort(key=lambda r: (r.reference, r.point))
    return out


def _administrative(
    root: etree._Element,
    results: Sequence[PointResult],
    by_channel: Mapping[str, list[PointResult]],
    channels_meta: Mapping[str, ChannelMeta],
    parties: Parties,
    software_version: str,
    issued: date,
    certificate_id: str,
) -> None:
    lang = parties.language
    adm = _sub(root, _D + "administrativeData")

    sw = _sub(_sub(adm, _D + "dccSoftware"), _D + "software")
    _text(sw, "name", "remotecal")
    _sub(sw, _D + "release", software_version)
    _sub(sw, _D + "type", "application")

    core = _sub(adm, _D + "coreData")
    _sub(core, _D + "countryCodeISO3166_1", parties.country_code)
    _sub(core, _D + "usedLangCodeISO639_1", lang)
    _sub(core, _D + "mandatoryLangCodeISO639_1", lang)
    _sub(core, _D + "uniqueIdentifier", certificate_id)
    ident = _sub(_sub(core, _D + "identifications"), _D + "identification")
    _sub(ident, _D + "issuer", "calibrationLaboratory")
    _sub(ident, _D + "value", " ".join(sorted({r.run for r in results})))
    _text(ident, "name", "Calibration run", lang)
    begin = min(r.t_start_s for r in results)
    end = max(r.t_end_s for r in results)
    _sub(core, _D + "beginPerformanceDate", datetime.fromtimestamp(begin, UTC).date().isoformat())
    _sub(core, _D + "endPerformanceDate", datetime.fromtimestamp(end, UTC).date().isoformat())
    _sub(core, _D + "performanceLocation", parties.performance_location)
    _sub(core, _D + "issueDate", issued.isoformat())

    items = _sub(adm, _D + "items")
    for number, (channel, points) in enumerate(by_channel.items(), start=1):
        meta = channels_meta.get(channel, {})
        item = _sub(items, _D + "item", id=f"item{number}")
        _text(item, "name", meta.get("name") or f"{points[0].quantity.replace('_', ' ')} sensor, "
              f"channel {channel}", lang)
        if meta.get("manufacturer"):
            _text(_sub(item, _D + "manufacturer"), "name", meta["manufacturer"])
        if meta.get("model"):
            _sub(item, _D + "model", meta["model"])
        ids = _sub(item, _D + "identifications")
        if meta.get("serial"):
            i = _sub(ids, _D + "identification")
            _sub(i, _D + "issuer", "manufacturer")
            _sub(i, _D + "value", meta["serial"])
            _text(i, "name", "Serial number", lang)
        i = _sub(ids, _D + "identification")
        _sub(i, _D + "issuer", "calibrationLaboratory")
        _sub(i, _D + "value", channel)
        _text(i, "name", "Channel", lang)

    lab = _sub(adm, _D + "calibrationLaboratory")
    if parties.laboratory_code:
        _sub(lab, _D + "calibrationLaboratoryCode", parties.laboratory_code)
    _contact(lab, "contact", parties.laboratory, parties.laboratory_city, parties.laboratory_country,
             parties.laboratory_email)

    person = _sub(_sub(adm, _D + "respPersons"), _D + "respPerson")
    _text(_sub(person, _D + "person"), "name", parties.responsible_person)
    _sub(person, _D + "role", parties.responsible_role)
    _sub(person, _D + "mainSigner", "true")

    _contact(adm, "customer", parties.customer, parties.customer_city, parties.customer_country)


def _budget(w: _Writer, parent: etree._Element, r: PointResult, unit: str) -> None:
    lst = _sub(parent, _D + "list", refType="remotecal_uncertaintyBudget")
    w.name(lst, f"Point {r.point}, setpoint {r.setpoint:g} {r.unit}")
    c: Contribution
    for c in r.budget.components:
        row = _sub(lst, _D + "list", refType="remotecal_budgetComponent")
        w.name(row, c.name)
        w.text_quantity(row, "Distribution", "remotecal_distribution", c.distribution)
        x_unit, c_unit = unit, r"\one"
        if c.unit is not None and c.unit != r.unit:
            # An input in another unit (a dew point in a budget of %rh): c_i in unit of y per
            # unit of x_i, a temperature difference in kelvin.
            x_unit = dsi_unit(c.unit)
            per = r"\kelvin" if c.unit in ("degC", "K") else x_unit
            c_unit = f"{unit}{per}\\tothe{{-1}}"
        if c.value is not None:
            w.real(row, "Estimate", "remotecal_estimate", c.value, x_unit)
        w.real(row, "Standard uncertainty", "remotecal_standardUncertainty", c.u, x_unit)
        w.real(row, "Sensitivity coefficient", "remotecal_sensitivity", c.sensitivity, c_unit)
        w.real(row, "Contribution", "remotecal_contribution", c.contribution, unit)
        _dof(w, row, "Degrees of freedom", "remotecal_dof", c.dof)
    w.real(lst, "Combined standard uncertainty", "remotecal_combinedUncertainty", r.u_combined, unit)
    _dof(w, lst, "Effective degrees of freedom", "remotecal_dofEff", r.dof_eff)
    w.real(lst, "Coverage factor", "remotecal_coverageFactor", r.k, r"\one")
    w.real(lst, "Expanded uncertainty", "remotecal_expandedUncertainty", r.U, unit)


def _power(unit: str, p: int) -> str:
    """A D-SI unit to an integer power."""
    return r"\one" if p == 0 else unit if p == 1 else f"{unit}\\tothe{{{p}}}"


def _curve(w: _Writer, results: etree._Element, curve: Curve, unit: str, lang: str) -> None:
    res = _sub(results, _D + "result", refType="remotecal_correctionCurve")
    w.name(res, f"Correction curve of channel {curve.channel}")
    terms = " + ".join(["a0"] + [f"a{i} x" + (f"^{i}" if i > 1 else "") for i in range(1, curve.degree + 1)])
    desc = _sub(res, _D + "description")
    _sub(desc, _D + "content", (
        f"correction(x) = {terms}, x the DUT's indication, fitted to the points' corrections by "
        "weighted least squares with weights 1/u_c^2; covariance of the coefficients unscaled "
        f"(the points taken as uncorrelated). Valid from {curve.x.min():.6g} to {curve.x.max():.6g}."
    ), lang=lang)
    lst = _sub(_sub(res, _D + "data"), _D + "list")
    w.real(lst, "Degree", "remotecal_curveDegree", curve.degree, r"\one")
    units = [_power(unit, 1 - i) for i in range(curve.degree + 1)]
    q = w.quantity(lst, "Coefficients a0 .. ad", "remotecal_curveCoefficients")
    rl = _sub(q, _S + "realListXMLList")
    _sub(rl, _S + "labelXMLList", " ".join(f"a{i}" for i in range(curve.degree + 1)))
    _sub(rl, _S + "valueXMLList", " ".join(_num(float(a)) for a in curve.coefficients))
    _sub(rl, _S + "unitXMLList", " ".join(units))
    multivariate = _sub(rl, _S + "measurementUncertaintyMultivariateXMLList")
    region = _sub(multivariate, _S + "ellipsoidalRegionMUXMLList")
    matrix = _sub(region, _S + "covarianceMatrixXMLList")
    rows = range(curve.degree + 1)
    for j in rows:
        cov = _sub(_sub(matrix, _S + "columnXMLList"), _S + "covarianceXMLList")
        _sub(cov, _S + "valueXMLList", " ".join(_num(float(curve.covariance[i, j])) for i in rows))
        _sub(cov, _S + "unitXMLList", " ".join(_power(unit, 2 - i - j) for i in rows))
    _sub(region, _S + "coverageFactorXMLList", "1.0")
    # k = 1 around d + 1 coefficients: the chi-squared probability of the unit ellipsoid.
    _sub(region, _S + "coverageProbabilityXMLList", _num(float(stats.chi2.cdf(1.0, curve.degree + 1))))
    _sub(region, _S + "distributionXMLList", "normal")
    w.real(lst, "Chi-squared of the fit", "remotecal_curveChi2", curve.chi2, r"\one")
    w.real(lst, "Residual degrees of freedom", "remotecal_curveDof", curve.dof, r"\one")
    w.chars(lst, "Point", "remotecal_point", (str(p) for p in curve.points))
    w.real_list(lst, "Residual (correction - curve)", "remotecal_curveResidual",
                [float(x) for x in curve.residuals], unit)


def _statements(adm: etree._Element, cfg: PipelineConfig, by_channel: Mapping[str, list[PointResult]],
                lang: str) -> None:
    """Statements of conformity (ILAC-G8:09/2019), one per DUT channel with decisions."""
    if cfg.conformity is None:
        return
    w = _Writer(lang)
    statements: etree._Element | None = None
    for number, (channel, points) in enumerate(by_channel.items(), start=1):
        decided = [r for r in points if r.decision]
        if not decided:
            continue
        if statements is None:
            statements = _sub(adm, _D + "statements")
        unit = dsi_unit(decided[0].unit)
        mpe = decided[0].mpe
        assert mpe is not None
        st = _sub(statements, _D + "statement", refId=f"item{number}", refType="basic_conformity")
        rule = "guard band w = U" if cfg.conformity.rule == "guard_band" else "simple acceptance"
        w.name(st, f"Conformity of channel {channel} to MPE ±{mpe:g} {decided[0].unit} ({rule})")
        _sub(st, _D + "norm", "ILAC-G8:09/2019")
        decl = _sub(st, _D + "declaration")
        _sub(decl, _D + "content", (
            f"{RULE_TEXT[cfg.conformity.rule]} The error is DUT - reference = -correction, "
            f"per point; MPE = {mpe:g} {decided[0].unit}."
        ), lang=lang)
        _sub(st, _D + "conformityXMLList", " ".join(r.decision for r in decided))
        lst = _sub(_sub(st, _D + "data"), _D + "list")
        w.real(lst, "Maximum permissible error", "remotecal_mpe", mpe, unit)
        w.chars(lst, "Point", "remotecal_point", (str(r.point) for r in decided))
        w.real_list(lst, "Error (DUT - reference)", "remotecal_error", [r.error for r in decided], unit,
                    expanded=([r.U for r in decided], [r.k for r in decided]))


def _dof(w: _Writer, parent: etree._Element, name: str, ref_type: str, dof: float) -> None:
    if math.isinf(dof):
        w.text_quantity(parent, name, ref_type, "inf")
    else:
        w.real(parent, name, ref_type, dof, r"\one")


def _measurement_results(
    root: etree._Element,
    cfg: PipelineConfig,
    by_channel: Mapping[str, list[PointResult]],
    lang: str,
    curves: Mapping[str, Curve],
) -> None:
    w = _Writer(lang)
    mrs = _sub(root, _D + "measurementResults")

    method = _sub(_sub(mrs, _D + "usedMethods"), _D + "usedMethod", refType="remotecal_comparison")
    w.name(method, "Calibration by comparison with a reference in a climatic chamber")
    desc = _sub(method, _D + "description")
    _sub(desc, _D + "content", (
        "On each plateau where the reference is stable, the DUT is compared with the reference "
        "corrected by its own calibration certificate: correction = mean(reference) - mean(DUT). "
        "The uncertainty is evaluated per point with uncorrelated inputs, Welch-Satterthwaite "
        "effective degrees of freedom and k from Student's t for 95.45 % coverage."
    ), lang=lang)
    _sub(method, _D + "norm", "JCGM 100:2008")
    _sub(method, _D + "norm", "EA-4/02 M:2013")

    units = {ch: unit for points in by_channel.values() for r in points for ch, unit in r.equipment}
    equipment = _sub(mrs, _D + "measuringEquipments")
    for ref in sorted(units):
        eq = _sub(equipment, _D + "measuringEquipment", refType="basic_referenceStandard")
        w.name(eq, f"Reference, channel {ref}")
        ids = _sub(_sub(eq, _D + "identifications"), _D + "identification")
        _sub(ids, _D + "issuer", "calibrationLaboratory")
        _sub(ids, _D + "value", ref)
        _text(ids, "name", "Channel", lang)
        cert = cfg.reference_certificate.get(ref)
        if cert is not None:
            unit = dsi_unit(units[ref])
            qs = _sub(eq, _D + "measuringEquipmentQuantities")
            columns = (
                ("Certificate: indication", "remotecal_certificateIndication", unit, 0),
                ("Certificate: correction", "remotecal_certificateCorrection", unit, 1),
                ("Certificate: expanded uncertainty U", "remotecal_certificateU", unit, 2),
                ("Certificate: coverage factor k", "remotecal_certificateK", r"\one", 3),
            )
            for name, ref_type, u, col in columns:
                q = _sub(qs, _D + "measuringEquipmentQuantity", refType=ref_type)
                w.name(q, name)
                lst = _sub(q, _S + "realListXMLList")
                _sub(lst, _S + "valueXMLList", " ".join(_num(row[col]) for row in cert.points))
                _sub(lst, _S + "unitXMLList", u)

    for number, (channel, points) in enumerate(by_channel.items(), start=1):
        unit = dsi_unit(points[0].unit)
        mr = _sub(mrs, _D + "measurementResult", refId=f"item{number}")
        refs = ", ".join(sorted({r.reference for r in points}))
        w.name(mr, f"Calibration of channel {channel} against {refs}")
        results = _sub(mr, _D + "results")

        res = _sub(results, _D + "result", refType="remotecal_corrections")
        w.name(res, f"Corrections of channel {channel} ({points[0].quantity.replace('_', ' ')})")
        desc = _sub(res, _D + "description")
        _sub(desc, _D + "content", (
            "One value per calibration point. Correction = reference mean - DUT mean: add it to the "
            "DUT's reading. The expanded uncertainty is that of the correction."
        ), lang=lang)
        lst = _sub(_sub(res, _D + "data"), _D + "list")
        times = [_iso(r.t_end_s) for r in points]
        w.text_quantity(lst, "DUT channel", "remotecal_channel", channel)
        w.chars(lst, "Point", "remotecal_point", (str(r.point) for r in points))
        w.chars(lst, "Reference channel", "remotecal_reference", (r.reference for r in points))
        w.real_list(lst, "Setpoint", "basic_nominalValue", [r.setpoint for r in points], unit)
        w.chars(lst, "Start of plateau (UTC)", "remotecal_plateauStart", (_iso(r.t_start_s) for r in points))
        w.chars(lst, "End of plateau (UTC)", "remotecal_plateauEnd", times)
        w.real_list(lst, "Number of readings", "remotecal_n", [r.n for r in points], r"\one")
        w.real_list(lst, "Reference mean (certificate correction applied)", "basic_referenceValue",
                    [r.reference_mean for r in points], unit)
        w.real_list(lst, "DUT mean", "basic_measuredValue", [r.dut_mean for r in points], unit)
        w.real_list(lst, "Correction", "remotecal_correction", [r.correction for r in points], unit,
                    expanded=([r.U for r in points], [r.k for r in points]), times=times)
        w.real_list(lst, "Certificate correction of the reference", "remotecal_referenceCorrection",
                    [r.reference_correction for r in points], unit)
        w.chars(lst, "Flags", "remotecal_flags", (",".join(r.flags) or "none" for r in points))

        res = _sub(results, _D + "result", refType="remotecal_uncertaintyBudgets")
        w.name(res, f"Uncertainty budgets of channel {channel}")
        data = _sub(res, _D + "data")
        for r in points:
            _budget(w, data, r, unit)
        if channel in curves:
            _curve(w, results, curves[channel], unit, lang)


def build_dcc(
    results: Sequence[PointResult],
    cfg: PipelineConfig,
    *,
    channels_meta: Mapping[str, ChannelMeta] | None = None,
    software_version: str,
    issued: date | datetime | None = None,
    certificate_id: str | None = None,
    parties: Parties | None = None,
    curves: Mapping[str, Curve] | None = None,
) -> bytes:
    """The run's certificate as DCC 3.3.0 XML (UTF-8, with declaration).

    ``certificate_id`` is the DCC's uniqueIdentifier (a random UUID when None; read it back
    with `certificate_identifier`); ``issued`` the issue date (today, UTC, when None);
    ``curves`` the correction curves by channel (`pipelines.curve`), if any.
    Raises DccError when there are no results or a unit has no D-SI spelling.
    """
    if not results:
        raise DccError(f"run {cfg.run.id!r} has no calibration points: there is nothing to certify")
    if issued is None:
        issued = datetime.now(UTC).date()
    elif isinstance(issued, datetime):
        issued = issued.astimezone(UTC).date() if issued.tzinfo else issued.date()
    parties = parties or Parties()
    certificate_id = certificate_id or str(uuid.uuid4())
    by_channel = _by_channel(results)

    root = etree.Element(_D + "digitalCalibrationCertificate", nsmap=_NSMAP)
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{DCC_NS} https://ptb.de/dcc/v{SCHEMA_VERSION}/dcc.xsd")
    root.set("schemaVersion", SCHEMA_VERSION)
    _administrative(root, results, by_channel, channels_meta or {}, parties, software_version, issued,
                    certificate_id)
    adm = root.find(_D + "administrativeData")
    assert adm is not None
    _statements(adm, cfg, by_channel, parties.language)
    _measurement_results(root, cfg, by_channel, parties.language, curves or {})
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def dcc_dir() -> Path:
    """The offline DCC schema folder: $REMOTECAL_DCC_DIR, else ``shared/dcc`` beside the project."""
    env = os.environ.get("REMOTECAL_DCC_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "dcc"


class _LocalSchemas(etree.Resolver):
    """Maps the one absolute import in D-SI (the QUDT stand-in) to the local copy; everything
    else dcc.xsd imports is relative already.  Never lets the parser reach the network."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        if system_url == _QUDT_URL:
            return self.resolve_filename(str(self.folder / "si" / "qudt" / "quantitykind.xsd"), context)
        return None


@lru_cache(maxsize=4)
def _schema(folder: Path) -> etree.XMLSchema:
    xsd = folder / "dcc.xsd"
    if not xsd.is_file():
        raise DccError(
            f"the DCC schema is not at {xsd}; set REMOTECAL_DCC_DIR to the folder holding dcc.xsd"
        )
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_LocalSchemas(folder))
    try:
        return etree.XMLSchema(etree.parse(str(xsd), parser))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise DccError(f"cannot load the DCC schema {xsd}: {exc}") from None


def validate_dcc(xml_bytes: bytes, schema_dir: Path | None = None) -> None:
    """Raise DccError listing the first problems (line: message) unless ``xml_bytes`` is a
    valid DCC 3.3.0 according to the schema in ``schema_dir`` (default: `dcc_dir`)."""
    schema = _schema((schema_dir or dcc_dir()).resolve())
    try:
        doc = etree.fromstring(xml_bytes, etree.XMLParser(no_network=True, resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        raise DccError(f"certificate is not well-formed XML: {exc}") from None
    if not schema.validate(doc):
        errors = [f"line {e.line}: {e.message}" for e in schema.error_log]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise DccError("certificate does not validate against DCC 3.3.0: " + "; ".join(errors[:5]) + more)


def certificate_identifier(xml_bytes: bytes) -> str:
    """The coreData uniqueIdentifier of a certificate."""
    doc = etree.fromstring(xml_bytes)
    found = doc.findtext(f"{_D}administrativeData/{_D}coreData/{_D}uniqueIdentifier")
    if not found:
        raise DccError("certificate has no coreData/uniqueIdentifier")
    return found


def read_corrections(xml_bytes: bytes) -> dict[str, list[dict[str, float]]]:
    """Per DUT channel, per point: setpoint, reference_mean, dut_mean, correction, U, k, n and
    (from the budget) u_combined and dof_eff, read back from a certificate by refType."""
    doc = etree.fromstring(xml_bytes)
    out: dict[str, list[dict[str, float]]] = {}
    ns = {"dcc": DCC_NS, "si": SI_NS}

    def values(
        lst: etree._Element, ref_type: str, path: str = "si:realListXMLList/si:valueXMLList"
    ) -> list[float]:
        text = lst.findtext(f"dcc:quantity[@refType='{ref_type}']/{path}", namespaces=ns)
        if text is None:
            raise DccError(f"certificate has no quantity {ref_type}")
        return [float(x) for x in text.split()]

    def dof(parent: etree._Element, ref_type: str) -> float:
        q = parent.find(f"dcc:quantity[@refType='{ref_type}']", ns)
        if q is None:
            raise DccError(f"certificate has no quantity {ref_type}")
        value = q.findtext("si:real/si:value", namespaces=ns)
        return math.inf if value is None else float(value)

    for mr in doc.iterfind("dcc:measurementResults/dcc:measurementResult", ns):
        res = mr.find("dcc:results/dcc:result[@refType='remotecal_corrections']", ns)
        if res is None:
            continue
        lst = res.find("dcc:data/dcc:list", ns)
        assert lst is not None
        budgets = mr.findall(
            "dcc:results/dcc:result[@refType='remotecal_uncertaintyBudgets']/dcc:data/dcc:list", ns
        )
        channel = lst.findtext(
            "dcc:quantity[@refType='remotecal_channel']/dcc:noQuantity/dcc:content", namespaces=ns
        ) or ""
        unc = "si:realListXMLList/si:expandedUncXMLList/"
        columns = {
            "point": [float(x) for x in (lst.findtext(
                "dcc:quantity[@refType='remotecal_point']/dcc:charsXMLList", namespaces=ns) or "").split()],
            "setpoint": values(lst, "basic_nominalValue"),
            "n": values(lst, "remotecal_n"),
            "reference_mean": values(lst, "basic_referenceValue"),
            "dut_mean": values(lst, "basic_measuredValue"),
            "correction": values(lst, "remotecal_correction"),
            "U": values(lst, "remotecal_correction", unc + "si:uncertaintyXMLList"),
            "k": values(lst, "remotecal_correction", unc + "si:coverageFactorXMLList"),
            "reference_correction": values(lst, "remotecal_referenceCorrection"),
        }
        rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        for row, budget in zip(rows, budgets, strict=True):
            row["u_combined"] = values(budget, "remotecal_combinedUncertainty", "si:real/si:value")[0]
            row["dof_eff"] = dof(budget, "remotecal_dofEff")
        out[channel] = rows
    return out
