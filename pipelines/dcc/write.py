"""certificate.xml: a run's certificate (`pipelines.certificate.content.Certificate`) as a PTB
Digital Calibration Certificate, DCC 3.3.0 with D-SI 2.2, laid out as PTB's good-practice DCCs
for temperature and humidity are (namespaces ``dcc`` = https://ptb.de/dcc, ``si`` = https://ptb.de/si):

    dcc:administrativeData
        dccSoftware          remotecal and its version
        coreData             country, language, uniqueIdentifier (the certificate number and
                             revision, `pipelines.certificate.register`), identifications (the
                             run id), begin/endPerformanceDate, performanceLocation, issueDate;
                             for a revision reportAmendedSubstituted (substituted, the number it
                             replaces) and previousReport (that certificate's content SHA-256)
        items                one dcc:item per DUT channel (name, manufacturer, model, serial
                             number; the channel always), id ``itemN``
        calibrationLaboratory, respPersons (the main signer), customer
        statements           ISO/IEC 17025:2017 7.8.4.3 (the results relate only to the items
                             calibrated, valid at the time of calibration); traceability
                             (dcc:traceable, ILAC-P10); the CMC floor (ILAC-P14); with
                             [conformity] the decision rule and its risk (``basic_conformity``,
                             ILAC-G8:09/2019); a provisional certificate says so
    dcc:measurementResults
        measurementResult    one per DUT channel (refId its item):
            usedMethods      ``basic_uncertainty`` (GUM, EA-4/02 M:2022 statement) and the
                             comparison method
            measuringEquipments  one ``basic_standardUsed`` per reference behind the channel:
                             identity, dcc:certificate (number, laboratory, SHA-256 of its
                             file), its certificate's rows
            influenceConditions  ambient temperature (``basic_temperature``, Min/Max), relative
                             humidity (``basic_humidityRelative``, Min/Max) and pressure, from
                             the [conditions] channels over the run
            results
              "calibration"  a dcc:list, one value per point: ``basic_referenceValue`` (with
                             the setpoints as ``basic_calibrationValue`` metadata and the
                             plateaus' end times), ``basic_measuredValue`` (the DUT),
                             ``basic_measurementError`` (DUT - reference) with
                             si:measurementUncertaintyUnivariateXMLList/expandedMUXMLList (U, k,
                             0.9545) and, with [conformity], ``basic_conformity`` metadata with
                             ``basic_toleranceLimitLower/Upper`` (-+MPE) and
                             ``basic_acceptanceLimitLower/Upper``; the correction (reference -
                             DUT = -error, what to add to a reading) with the same U; the
                             reference's own certificate correction, n, plateau times, flags
              "uncertainty budgets"  per point the components (distribution, u(x_i), c_i,
                             u_i(y), dof) and u_c, nu_eff, k, U
              "correction curve"  (with [curve]) coefficients with their covariance

Numbers are the stated ones (`pipelines.certificate.rounding`: U to two significant digits
rounded up, values to U's decimal place, k to two decimals; no 17-digit floats).  Temperature
differences (errors, corrections, uncertainties) are in ``\\kelvin``, temperatures in
``\\degreecelsius``, relative humidity in ``\\percent``.  An infinite number of degrees of
freedom is a ``dcc:noQuantity`` with the text ``inf`` (xs:double's INF is outside si:decimalType).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from lxml import etree
from scipy import stats

from pipelines.certificate.content import Certificate, ReferenceStandard
from pipelines.certificate.reported import FLAG_TEXT, Reported
from pipelines.certificate.rounding import round_significant, round_to, round_uncertainty, text
from pipelines.conformity import LIMIT_REF_TYPES, RULE_TEXT, acceptance_limit
from pipelines.curve import Curve
from pipelines.dcc.common import (
    DCC_NS,
    SCHEMA_VERSION,
    SI_NS,
    DccError,
    dsi_difference_unit,
    dsi_unit,
)
from pipelines.uncertainty import COVERAGE_PROBABILITY

__all__ = ["STATEMENT_17025", "STATEMENT_UNCERTAINTY", "build_dcc"]

XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_NSMAP = {"dcc": DCC_NS, "si": SI_NS, "xsi": XSI_NS}
_D = f"{{{DCC_NS}}}"
_S = f"{{{SI_NS}}}"

STATEMENT_17025 = (
    "The results relate only to the items calibrated and are valid at the time of calibration. "
    "The customer is responsible for arranging recalibration in due time. This certificate may not "
    "be reproduced other than in full except with the permission of the issuing laboratory."
)
STATEMENT_UNCERTAINTY = (
    "The reported expanded uncertainty of measurement is stated as the standard uncertainty of "
    "measurement multiplied by the coverage factor k such that the coverage probability corresponds "
    "to approximately 95 % (95.45 %). The standard uncertainty of measurement has been determined in "
    "accordance with EA-4/02 M:2022 and JCGM 100:2008 (GUM); k is Student's t at the effective degrees "
    "of freedom (Welch-Satterthwaite). U is rounded up to two significant digits, the values to the "
    "same decimal place (GUM 7.2.6)."
)


def _num(x: float, digits: int = 6) -> str:
    """A float that is not a stated result (budget, curve, certificate rows): ``digits``
    significant digits, fixed point, in si:decimalType's syntax."""
    if math.isnan(x) or math.isinf(x):
        raise DccError(f"{x!r} cannot be written as an si:decimalType")
    return text(round_significant(x, digits)) if x != 0 else "0"


def _iso(t_s: float) -> str:
    t = datetime.fromtimestamp(t_s, UTC)
    spec = "seconds" if t.microsecond == 0 else "milliseconds"
    return t.isoformat(timespec=spec).replace("+00:00", "Z")


def _sub(parent: etree._Element, tag: str, text_: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs)
    if text_ is not None:
        el.text = text_
    return el


class _Writer:
    def __init__(self, lang: str) -> None:
        self.lang = lang

    def text(self, parent: etree._Element, tag: str, content: str, *, lang: bool = True) -> etree._Element:
        el = _sub(parent, _D + tag)
        if lang:
            _sub(el, _D + "content", content, lang=self.lang)
        else:
            _sub(el, _D + "content", content)
        return el

    def name(self, parent: etree._Element, text_: str) -> None:
        self.text(parent, "name", text_)

    def quantity(self, parent: etree._Element, name: str, ref_type: str | None) -> etree._Element:
        q = _sub(parent, _D + "quantity", **({"refType": ref_type} if ref_type else {}))
        self.name(q, name)
        return q

    def real(self, parent: etree._Element, name: str, ref_type: str, value: str, unit: str) -> etree._Element:
        q = self.quantity(parent, name, ref_type)
        r = _sub(q, _S + "real")
        _sub(r, _S + "value", value)
        _sub(r, _S + "unit", unit)
        return q

    def text_quantity(self, parent: etree._Element, name: str, ref_type: str, text_: str) -> None:
        q = self.quantity(parent, name, ref_type)
        self.text(q, "noQuantity", text_)

    def real_list(
        self,
        parent: etree._Element,
        name: str,
        ref_type: str | None,
        values: Iterable[str],
        unit: str,
        *,
        expanded: tuple[Sequence[str], Sequence[str]] | None = None,
        times: Sequence[str] | None = None,
    ) -> etree._Element:
        q = self.quantity(parent, name, ref_type)
        lst = _sub(q, _S + "realListXMLList")
        _sub(lst, _S + "valueXMLList", " ".join(values))
        _sub(lst, _S + "unitXMLList", unit)
        if times is not None:
            _sub(lst, _S + "dateTimeXMLList", " ".join(times))
        if expanded is not None:
            big_u, k = expanded
            mu = _sub(_sub(lst, _S + "measurementUncertaintyUnivariateXMLList"), _S + "expandedMUXMLList")
            _sub(mu, _S + "valueExpandedMUXMLList", " ".join(big_u))
            _sub(mu, _S + "coverageFactorXMLList", " ".join(k))
            _sub(mu, _S + "coverageProbabilityXMLList", str(COVERAGE_PROBABILITY))
            _sub(mu, _S + "distributionXMLList", "normal")
        return q

    def chars(self, parent: etree._Element, name: str, ref_type: str, items: Iterable[str]) -> None:
        q = self.quantity(parent, name, ref_type)
        _sub(q, _D + "charsXMLList", " ".join(items))

    def contact(self, parent: etree._Element, tag: str, name: str, city: str, country: str,
                email: str | None = None) -> etree._Element:
        el = _sub(parent, _D + tag)
        self.text(el, "name", name, lang=False)
        if email:
            _sub(el, _D + "eMail", email)
        loc = _sub(el, _D + "location")
        _sub(loc, _D + "city", city)
        _sub(loc, _D + "countryCode", country)
        return el

    def statement(self, parent: etree._Element, declaration: str, *, ref_type: str | None = None,
                  norm: str | None = None, reference: str | None = None,
                  traceable: bool | None = None) -> etree._Element:
        st = _sub(parent, _D + "statement", **({"refType": ref_type} if ref_type else {}))
        if traceable is not None:
            _sub(st, _D + "traceable", "true" if traceable else "false")
        if norm:
            _sub(st, _D + "norm", norm)
        if reference:
            _sub(st, _D + "reference", reference)
        self.text(st, "declaration", declaration)
        return st


def _dof(w: _Writer, parent: etree._Element, name: str, ref_type: str, dof: float) -> None:
    if math.isinf(dof):
        w.text_quantity(parent, name, ref_type, "inf")
    else:
        w.real(parent, name, ref_type, _num(dof, 4), r"\one")


def _administrative(w: _Writer, root: etree._Element, c: Certificate) -> etree._Element:
    p = c.parties
    adm = _sub(root, _D + "administrativeData")
    sw = _sub(_sub(adm, _D + "dccSoftware"), _D + "software")
    w.text(sw, "name", "remotecal", lang=False)
    _sub(sw, _D + "release", c.software_version)
    _sub(sw, _D + "type", "application")

    core = _sub(adm, _D + "coreData")
    _sub(core, _D + "countryCodeISO3166_1", p.country_code)
    _sub(core, _D + "usedLangCodeISO639_1", p.language)
    _sub(core, _D + "mandatoryLangCodeISO639_1", p.language)
    _sub(core, _D + "uniqueIdentifier", c.issue.identifier)
    ids = _sub(core, _D + "identifications")
    ident = _sub(ids, _D + "identification")
    _sub(ident, _D + "issuer", "calibrationLaboratory")
    _sub(ident, _D + "value", c.run)
    w.name(ident, "Calibration run")
    ident = _sub(ids, _D + "identification")
    _sub(ident, _D + "issuer", "calibrationLaboratory")
    _sub(ident, _D + "value", c.issue.number)
    w.name(ident, f"Certificate number (revision {c.issue.revision})")
    for origin in c.origins:
        ident = _sub(ids, _D + "identification")
        _sub(ident, _D + "issuer", "calibrationLaboratory")
        _sub(ident, _D + "value", origin)
        w.name(ident, "Gateway that recorded the run (site/gateway)")
    _sub(core, _D + "beginPerformanceDate", datetime.fromtimestamp(c.begin_s, UTC).date().isoformat())
    _sub(core, _D + "endPerformanceDate", datetime.fromtimestamp(c.end_s, UTC).date().isoformat())
    _sub(core, _D + "performanceLocation", p.performance_location)
    _sub(core, _D + "issueDate", c.issue.issued.isoformat())
    if c.issue.replaces is not None:
        ras = _sub(core, _D + "reportAmendedSubstituted")
        _sub(ras, _D + "typeOfChange", "substituted")
        _sub(ras, _D + "replacedUniqueIdentifier", c.issue.replaces.identifier)
        prev = _sub(core, _D + "previousReport")
        w.text(prev, "referral", f"Certificate {c.issue.replaces.identifier}, replaced by this revision")
        _sub(prev, _D + "referralID", c.issue.replaces.identifier)
        _sub(prev, _D + "procedure", "SHA-256 of the certificate's canonical XML (C14N, without signature)")
        _sub(prev, _D + "value", c.issue.replaces.sha256)

    items = _sub(adm, _D + "items")
    for channel in c.channels:
        points = c.points_of(channel)
        meta = c.items.get(channel, {})
        item = _sub(items, _D + "item", id=c.item_id(channel))
        w.name(item, meta.get("name") or f"{points[0].result.quantity.replace('_', ' ')} sensor, "
               f"channel {channel}")
        if meta.get("manufacturer"):
            w.text(_sub(item, _D + "manufacturer"), "name", meta["manufacturer"], lang=False)
        if meta.get("model"):
            _sub(item, _D + "model", meta["model"])
        iids = _sub(item, _D + "identifications")
        if meta.get("serial"):
            i = _sub(iids, _D + "identification")
            _sub(i, _D + "issuer", "manufacturer")
            _sub(i, _D + "value", meta["serial"])
            w.name(i, "Serial number")
        i = _sub(iids, _D + "identification")
        _sub(i, _D + "issuer", "calibrationLaboratory")
        _sub(i, _D + "value", channel)
        w.name(i, "Channel")

    lab = _sub(adm, _D + "calibrationLaboratory")
    if p.laboratory_code:
        _sub(lab, _D + "calibrationLaboratoryCode", p.laboratory_code)
    w.contact(lab, "contact", p.laboratory, p.laboratory_city, p.laboratory_country, p.laboratory_email)

    person = _sub(_sub(adm, _D + "respPersons"), _D + "respPerson")
    w.text(_sub(person, _D + "person"), "name", p.responsible_person, lang=False)
    _sub(person, _D + "role", p.responsible_role)
    _sub(person, _D + "mainSigner", "true")

    w.contact(adm, "customer", p.customer, p.customer_city, p.customer_country)
    _statements(w, adm, c)
    return adm


def traceability_text(c: Certificate) -> str:
    """The traceability statement: every reference standard and how it is traceable."""
    parts = [f"{r.name or 'reference'} {r.channel}: {r.traceability}" for r in c.references]
    return ("The measurement results are metrologically traceable to the International System of Units "
            "(SI) through the reference standards used, each calibrated by a laboratory that "
            "demonstrates its own traceability: " + "; ".join(parts) + ".")


def cmc_text(c: Certificate) -> str:
    """The CMC statement (ILAC-P14): what was checked against the laboratory's CMC, and what not."""
    raised = sum(1 for p in c.points if p.raised_to_cmc)
    outside = sum(1 for p in c.points if "outside_cmc" in p.flags)
    unchecked = sorted({p.result.quantity.replace("_", " ") for p in c.points
                        if p.cmc is None and "outside_cmc" not in p.flags})
    checked = sum(1 for p in c.points if p.cmc is not None)
    parts = []
    if checked:
        parts.append("No expanded uncertainty stated here is smaller than the calibration and measurement "
                     "capability (CMC) of the laboratory for the quantity and range (ILAC-P14:09/2020)"
                     + (f"; {raised} point(s) are stated at the CMC." if raised else "."))
    if outside:
        parts.append(f"{outside} point(s) lie outside the ranges of the laboratory's CMC and are not "
                     "covered by its accreditation.")
    if unchecked:
        parts.append(f"No CMC of the laboratory is stated for {', '.join(unchecked)}: those uncertainties "
                     "are stated as evaluated, without a check against a CMC (ILAC-P14:09/2020).")
    return " ".join(parts)


def _statements(w: _Writer, adm: etree._Element, c: Certificate) -> None:
    sts = _sub(adm, _D + "statements")
    w.statement(sts, STATEMENT_17025, norm="ISO/IEC 17025:2017", reference="7.8.4.3")
    w.statement(sts, traceability_text(c), norm="ILAC P10:07/2020", traceable=True)
    w.statement(sts, cmc_text(c), norm="ILAC-P14:09/2020")
    if c.conformity_rule is not None and any(p.decision for p in c.points):
        w.statement(sts, RULE_TEXT[c.conformity_rule] + " The error is DUT - reference.",
                    ref_type="basic_conformity", norm="ILAC-G8:09/2019")
    if c.issue.provisional:
        w.statement(sts, "PROVISIONAL: the run was still recording when this document was made. It is "
                    "not a calibration certificate.", ref_type="remotecal_provisional")
    if c.simulated:
        w.statement(sts, "SIMULATED: the readings are a simulation (remotecal demo), run "
                    f"{c.time_compression:g} times faster than real time. This is not a calibration "
                    "certificate.",
                    ref_type="remotecal_simulated")


def _equipment(w: _Writer, parent: etree._Element, ref: ReferenceStandard) -> None:
    eq = _sub(parent, _D + "measuringEquipment", refType="basic_standardUsed")
    w.name(eq, f"{ref.name or 'Reference'} ({ref.quantity.replace('_', ' ')}), channel {ref.channel}")
    w.text(eq, "description", f"Traceability: {ref.traceability}.")
    if ref.certificate_number or ref.sha256:
        cert = _sub(eq, _D + "certificate")
        w.text(cert, "referral", f"Calibration certificate issued by {ref.laboratory or 'not stated'}")
        _sub(cert, _D + "referralID", ref.certificate_number or "not stated")
        _sub(cert, _D + "procedure", "SHA-256" if ref.sha256 else "none")
        _sub(cert, _D + "value", ref.sha256 or "not stated")
        _sub(cert, _D + "traceable", "true")
    if ref.manufacturer:
        w.text(_sub(eq, _D + "manufacturer"), "name", ref.manufacturer, lang=False)
    if ref.model:
        _sub(eq, _D + "model", ref.model)
    ids = _sub(eq, _D + "identifications")
    if ref.serial:
        i = _sub(ids, _D + "identification")
        _sub(i, _D + "issuer", "manufacturer")
        _sub(i, _D + "value", ref.serial)
        w.name(i, "Serial number")
    i = _sub(ids, _D + "identification")
    _sub(i, _D + "issuer", "calibrationLaboratory")
    _sub(i, _D + "value", ref.channel)
    w.name(i, "Channel")
    if ref.rows:
        unit, diff = dsi_unit(ref.unit), dsi_difference_unit(ref.unit)
        qs = _sub(eq, _D + "measuringEquipmentQuantities")
        columns = (
            ("Certificate: indication", "remotecal_certificateIndication", unit, 0),
            ("Certificate: correction", "remotecal_certificateCorrection", diff, 1),
            ("Certificate: expanded uncertainty U", "remotecal_certificateU", diff, 2),
            ("Certificate: coverage factor k", "remotecal_certificateK", r"\one", 3),
        )
        for name, ref_type, u, col in columns:
            q = _sub(qs, _D + "measuringEquipmentQuantity", refType=ref_type)
            w.name(q, name)
            lst = _sub(q, _S + "realListXMLList")
            _sub(lst, _S + "valueXMLList", " ".join(repr(float(row[col])) for row in ref.rows))
            _sub(lst, _S + "unitXMLList", u)


_CONDITION_REF = {
    "ambient_temperature": ("basic_temperature", "basic_temperatureMin", "basic_temperatureMax"),
    "ambient_humidity": ("basic_humidityRelative", "basic_humidityRelativeMin", "basic_humidityRelativeMax"),
    "ambient_pressure": ("remotecal_pressure", "remotecal_pressureMin", "remotecal_pressureMax"),
}


def _conditions(w: _Writer, mr: etree._Element, c: Certificate) -> None:
    if not c.conditions and not c.missing_conditions:
        return
    ics = _sub(mr, _D + "influenceConditions")
    for cond in c.conditions:
        ref, lo, hi = _CONDITION_REF.get(cond.name, ("remotecal_condition",) * 3)
        ic = _sub(ics, _D + "influenceCondition", refType=ref)
        w.name(ic, cond.label)
        w.text(ic, "description", f"Measured by channel {cond.channel} over the calibration "
               f"({cond.n} readings; mean {_num(cond.mean, 4)} {cond.unit}).")
        data = _sub(ic, _D + "data")
        unit = dsi_unit(cond.unit)
        w.real(data, f"{cond.label}, minimum", lo, _num(cond.minimum, 4), unit)
        w.real(data, f"{cond.label}, maximum", hi, _num(cond.maximum, 4), unit)
    for name in c.missing_conditions:
        ref = _CONDITION_REF.get(name, ("remotecal_condition",))[0]
        ic = _sub(ics, _D + "influenceCondition", refType=ref)
        w.name(ic, name.replace("_", " ").capitalize())
        w.text(ic, "description", "Not recorded: its channel has no readings during the calibration.")
        data = _sub(ic, _D + "data")
        w.text(data, "text", "not recorded")


def _limits(w: _Writer, meta: etree._Element, points: Sequence[Reported], rule: str, unit: str) -> None:
    data = _sub(meta, _D + "data")
    mpe = points[0].mpe
    assert mpe is not None
    lo, hi = LIMIT_REF_TYPES["tolerance"]
    mpe_dec = [round_to(mpe, p.U_dec) for p in points]
    w.real_list(data, "Lower tolerance limit (-MPE)", lo, (text(-m) for m in mpe_dec), unit)
    w.real_list(data, "Upper tolerance limit (+MPE)", hi, (text(m) for m in mpe_dec), unit)
    al = [round_to(acceptance_limit(float(p.U_dec), mpe, rule), p.U_dec) for p in points]  # type: ignore[arg-type]
    lo, hi = LIMIT_REF_TYPES["acceptance"]
    w.real_list(data, "Lower acceptance limit", lo, (text(-a) for a in al), unit)
    w.real_list(data, "Upper acceptance limit", hi, (text(a) for a in al), unit)
    w.real_list(data, "Probability that the true error lies outside the tolerance", "remotecal_riskOutside",
                (_num(p.probability_outside or 0.0, 2) for p in points), r"\one")


def _results(w: _Writer, results: etree._Element, c: Certificate, channel: str) -> None:
    points = c.points_of(channel)
    r0 = points[0].result
    unit, diff = dsi_unit(r0.unit), dsi_difference_unit(r0.unit)
    res = _sub(results, _D + "result", refType="remotecal_calibrationResults")
    w.name(res, f"Calibration results of channel {channel} ({r0.quantity.replace('_', ' ')})")
    w.text(res, "description", (
        "One value per calibration point, in the order of the calibration. Measurement error = DUT - "
        "reference; correction = reference - DUT = -error (add it to the DUT's reading). U is the expanded "
        "uncertainty of both."))
    lst = _sub(_sub(res, _D + "data"), _D + "list")
    flags = sorted({f for p in points for f in p.flags})
    if flags:
        w.text(lst, "description", " ".join(f"{f}: {FLAG_TEXT.get(f, f)}." for f in flags))
    times = [_iso(p.result.t_end_s) for p in points]
    w.chars(lst, "Point", "remotecal_point", (str(p.result.point) for p in points))
    ref = w.real_list(lst, "Reference value", "basic_referenceValue",
                      (p.reference_mean_text for p in points), unit, times=times)
    md = _sub(_sub(ref, _D + "measurementMetaData"), _D + "metaData", refType="basic_calibrationValue")
    w.text(md, "declaration", "Calibration point (setpoint)")
    w.real_list(_sub(md, _D + "data"), "Setpoint", None, (p.setpoint_text for p in points), unit)
    w.real_list(lst, "Indicated value of the calibration item (mean)", "basic_measuredValue",
                (p.dut_mean_text for p in points), unit)
    expanded = ([p.U_text for p in points], [p.k_text for p in points])
    err = w.real_list(lst, "Measurement error (DUT - reference)", "basic_measurementError",
                      (p.error_text for p in points), diff, expanded=expanded)
    decided = [p for p in points if p.decision]
    if decided and len(decided) == len(points) and c.conformity_rule is not None:
        meta = _sub(_sub(err, _D + "measurementMetaData"), _D + "metaData", refType="basic_conformity")
        _sub(meta, _D + "norm", "ILAC-G8:09/2019")
        w.text(meta, "declaration", "Conformity")
        _sub(meta, _D + "conformityXMLList", " ".join(p.decision for p in points))
        _limits(w, meta, points, c.conformity_rule, diff)
    w.real_list(lst, "Correction (reference - DUT)", "remotecal_correction",
                (p.correction_text for p in points), diff, expanded=expanded)
    w.real_list(lst, "Certificate correction applied to the reference", "remotecal_referenceCorrection",
                (text(round_to(p.result.reference_correction, p.U_dec)) for p in points), diff)
    w.chars(lst, "Reference channel", "remotecal_reference", (p.result.reference for p in points))
    w.real_list(lst, "Number of readings", "remotecal_n", (str(p.result.n) for p in points), r"\one")
    w.chars(lst, "Start of plateau (UTC)", "remotecal_plateauStart",
            (_iso(p.result.t_start_s) for p in points))
    w.chars(lst, "End of plateau (UTC)", "remotecal_plateauEnd", times)
    w.chars(lst, "Flags", "remotecal_flags", (",".join(p.flags) or "none" for p in points))

    res = _sub(results, _D + "result", refType="remotecal_uncertaintyBudgets")
    w.name(res, f"Uncertainty budgets of channel {channel}")
    data = _sub(res, _D + "data")
    for p in points:
        _budget(w, data, p, diff)
    if channel in c.curves:
        _curve(w, results, c.curves[channel], diff)


def _budget(w: _Writer, parent: etree._Element, p: Reported, unit: str) -> None:
    r = p.result
    lst = _sub(parent, _D + "list", refType="remotecal_uncertaintyBudget")
    w.name(lst, f"Point {r.point}, setpoint {p.setpoint_text} {r.unit}")
    for c in r.budget.components:
        row = _sub(lst, _D + "list", refType="remotecal_budgetComponent")
        w.name(row, c.name)
        w.text_quantity(row, "Distribution", "remotecal_distribution", c.distribution)
        x_unit, c_unit = unit, r"\one"
        if c.unit is not None and c.unit != r.unit:
            # An input in another unit (a dew point in a budget of %rh): c_i in unit of y per
            # unit of x_i, a temperature difference in kelvin.
            x_unit = dsi_difference_unit(c.unit)
            c_unit = f"{unit}{x_unit}\\tothe{{-1}}"
        if c.value is not None:
            w.real(row, "Estimate", "remotecal_estimate", _num(c.value, 6),
                   dsi_unit(c.unit or r.unit))
        w.real(row, "Standard uncertainty", "remotecal_standardUncertainty", _num(c.u, 2), x_unit)
        w.real(row, "Sensitivity coefficient", "remotecal_sensitivity", _num(c.sensitivity, 3), c_unit)
        w.real(row, "Contribution", "remotecal_contribution", _num(c.contribution, 2), unit)
        _dof(w, row, "Degrees of freedom", "remotecal_dof", c.dof)
    w.real(lst, "Combined standard uncertainty", "remotecal_combinedUncertainty", p.u_combined_text, unit)
    _dof(w, lst, "Effective degrees of freedom", "remotecal_dofEff", r.dof_eff)
    w.real(lst, "Coverage factor", "remotecal_coverageFactor", p.k_text, r"\one")
    w.real(lst, "Expanded uncertainty", "remotecal_expandedUncertainty", p.U_text, unit)
    if p.cmc is not None:
        w.real(lst, "CMC at this point", "remotecal_cmc", text(round_uncertainty(p.cmc)), unit)


def _power(unit: str, power: int) -> str:
    """A D-SI unit to an integer power."""
    return r"\one" if power == 0 else unit if power == 1 else f"{unit}\\tothe{{{power}}}"


def _curve(w: _Writer, results: etree._Element, curve: Curve, unit: str) -> None:
    res = _sub(results, _D + "result", refType="remotecal_correctionCurve")
    w.name(res, f"Correction curve of channel {curve.channel}")
    terms = " + ".join(["a0"] + [f"a{i} x" + (f"^{i}" if i > 1 else "") for i in range(1, curve.degree + 1)])
    w.text(res, "description", (
        f"correction(x) = {terms}, x the DUT's indication, fitted to the points' corrections by "
        "weighted least squares with weights 1/u_c^2; covariance of the coefficients unscaled "
        f"(the points taken as uncorrelated). Valid from {curve.x.min():.6g} to {curve.x.max():.6g}."))
    lst = _sub(_sub(res, _D + "data"), _D + "list")
    w.real(lst, "Degree", "remotecal_curveDegree", str(curve.degree), r"\one")
    rows = range(curve.degree + 1)
    q = w.quantity(lst, "Coefficients a0 .. ad", "remotecal_curveCoefficients")
    rl = _sub(q, _S + "realListXMLList")
    _sub(rl, _S + "labelXMLList", " ".join(f"a{i}" for i in rows))
    _sub(rl, _S + "valueXMLList", " ".join(_num(float(a), 8) for a in curve.coefficients))
    _sub(rl, _S + "unitXMLList", " ".join(_power(unit, 1 - i) for i in rows))
    multivariate = _sub(rl, _S + "measurementUncertaintyMultivariateXMLList")
    region = _sub(multivariate, _S + "ellipsoidalRegionMUXMLList")
    matrix = _sub(region, _S + "covarianceMatrixXMLList")
    for j in rows:
        cov = _sub(_sub(matrix, _S + "columnXMLList"), _S + "covarianceXMLList")
        _sub(cov, _S + "valueXMLList", " ".join(_num(float(curve.covariance[i, j]), 8) for i in rows))
        _sub(cov, _S + "unitXMLList", " ".join(_power(unit, 2 - i - j) for i in rows))
    _sub(region, _S + "coverageFactorXMLList", "1.0")
    # k = 1 around d + 1 coefficients: the chi-squared probability of the unit ellipsoid.
    _sub(region, _S + "coverageProbabilityXMLList", _num(float(stats.chi2.cdf(1.0, curve.degree + 1)), 6))
    _sub(region, _S + "distributionXMLList", "normal")
    w.real(lst, "Chi-squared of the fit", "remotecal_curveChi2", _num(curve.chi2, 4), r"\one")
    w.real(lst, "Residual degrees of freedom", "remotecal_curveDof", str(curve.dof), r"\one")
    w.chars(lst, "Point", "remotecal_point", (str(p) for p in curve.points))
    w.real_list(lst, "Residual (correction - curve)", "remotecal_curveResidual",
                (_num(float(x), 3) for x in curve.residuals), unit)


def _measurement_results(w: _Writer, root: etree._Element, c: Certificate) -> None:
    mrs = _sub(root, _D + "measurementResults")
    for channel in c.channels:
        points = c.points_of(channel)
        mr = _sub(mrs, _D + "measurementResult", refId=c.item_id(channel))
        refs = ", ".join(sorted({p.result.reference for p in points}))
        w.name(mr, f"Calibration of channel {channel} against {refs}")
        methods = _sub(mr, _D + "usedMethods")
        m = _sub(methods, _D + "usedMethod", refType="basic_uncertainty")
        w.name(m, "Expanded uncertainty")
        w.text(m, "description", STATEMENT_UNCERTAINTY)
        _sub(m, _D + "norm", "EA-4/02 M:2022")
        _sub(m, _D + "norm", "JCGM 100:2008")
        m = _sub(methods, _D + "usedMethod", refType="remotecal_comparison")
        w.name(m, "Calibration by comparison with reference standards in a climatic chamber")
        w.text(m, "description", (
            "On each plateau where the reference is stable, the calibration item is compared with the "
            "reference corrected by its own calibration certificate. Type A: the standard uncertainty of "
            "the mean difference for autocorrelated readings, from the effective number of independent "
            "samples."))
        equipment = _sub(mr, _D + "measuringEquipments")
        for ref in c.references_of(channel):
            _equipment(w, equipment, ref)
        _conditions(w, mr, c)
        _results(w, _sub(mr, _D + "results"), c, channel)


def build_dcc(c: Certificate) -> bytes:
    """The certificate as DCC 3.3.0 XML (UTF-8, with declaration).  Raises DccError when there
    is nothing to certify or a unit has no D-SI spelling."""
    if not c.points:
        raise DccError(f"run {c.run!r} has no calibration points: there is nothing to certify")
    w = _Writer(c.parties.language)
    root = etree.Element(_D + "digitalCalibrationCertificate", nsmap=_NSMAP)
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{DCC_NS} https://ptb.de/dcc/v{SCHEMA_VERSION}/dcc.xsd")
    root.set("schemaVersion", SCHEMA_VERSION)
    _administrative(w, root, c)
    _measurement_results(w, root, c)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
