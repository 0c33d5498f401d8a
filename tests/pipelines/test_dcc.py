"""certificate.xml: a DCC 3.3.0 that PTB's schema (shipped in the package) accepts, laid out with
PTB's good-practice refTypes and current D-SI elements, stating rounded values, and that reads
back to what it states."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from pipelines.certificate.content import Certificate, Issue, Parties, Replaced, make_content
from pipelines.dcc import (
    DCC_NS,
    SI_NS,
    DccError,
    build_dcc,
    certificate_identifier,
    dsi_difference_unit,
    dsi_unit,
    read_corrections,
    schema_dir,
    validate_dcc,
)
from tests.pipelines.conftest import SyntheticRun

NS = {"dcc": DCC_NS, "si": SI_NS}
ISSUE = Issue("RC-2026-0042-CERT", "RC-2026-0042-CERT", issued=date(2026, 11, 21))


@pytest.fixture(scope="module")
def content(synthetic_run: SyntheticRun) -> Certificate:
    c = make_content(synthetic_run.results, synthetic_run.cfg, software_version="0.1.0", issue=ISSUE,
                     data=synthetic_run.data)
    return replace(c, items={"dut1-t": {"manufacturer": "Example Sensors", "model": "TH-1", "serial": "SN 42"}})


@pytest.fixture(scope="module")
def xml(content: Certificate) -> bytes:
    return build_dcc(content)


def test_schema_ships_inside_the_package() -> None:
    folder = schema_dir()
    assert folder.parts[-3:] == ("pipelines", "dcc", "schemas")
    for name in ("dcc.xsd", "si/SI_Format.xsd", "d-sig/xmldsig-core-schema.xsd", "si/qudt/quantitykind.xsd",
                 "LICENSE-LGPL-3", "LICENSE-GPL-3", "README.md"):
        assert (folder / name).is_file(), name
    validate_dcc((folder / "example-temperature.xml").read_bytes())


def test_certificate_validates(xml: bytes) -> None:
    validate_dcc(xml)


def test_invalid_certificate_is_refused_with_the_reason(xml: bytes) -> None:
    broken = xml.replace(b"<dcc:countryCodeISO3166_1>ZZ<", b"<dcc:countryCodeISO3166_1>zz<")
    with pytest.raises(DccError, match=r"does not validate.*line \d+:.*countryCodeISO3166_1"):
        validate_dcc(broken)
    with pytest.raises(DccError, match="not well-formed"):
        validate_dcc(b"<dcc:digitalCalibrationCertificate")


def test_missing_schema_folder_is_a_clear_error(tmp_path: Path, xml: bytes) -> None:
    with pytest.raises(DccError, match="installation of remotecal is incomplete"):
        validate_dcc(xml, schema_folder=tmp_path)


def test_good_practice_ref_types_and_current_dsi(xml: bytes) -> None:
    doc = etree.fromstring(xml)
    ref_types = set(doc.xpath("//@refType"))
    assert {"basic_referenceValue", "basic_measuredValue", "basic_measurementError", "basic_calibrationValue",
            "basic_standardUsed", "basic_uncertainty"} <= ref_types
    # D-SI 2.2: no deprecated uncertainty elements
    assert not list(doc.iter(f"{{{SI_NS}}}expandedUncXMLList", f"{{{SI_NS}}}expandedUnc"))
    mus = doc.xpath("//dcc:quantity[@refType='basic_measurementError']/si:realListXMLList/"
                    "si:measurementUncertaintyUnivariateXMLList/si:expandedMUXMLList", namespaces=NS)
    assert len(mus) == 3
    assert {m.findtext("si:coverageProbabilityXMLList", namespaces=NS) for m in mus} == {"0.9545"}


def test_temperature_differences_in_kelvin(xml: bytes) -> None:
    doc = etree.fromstring(xml)

    def unit(ref_type: str, channel_item: str) -> str:
        return doc.xpath(f"//dcc:measurementResult[@refId='{channel_item}']//dcc:quantity[@refType='{ref_type}']"
                         "/si:realListXMLList/si:unitXMLList/text()", namespaces=NS)[0]

    # items in channel order: dut1-rh, dut1-t, dut2-t
    assert unit("basic_referenceValue", "item2") == r"\degreecelsius"
    assert unit("basic_measurementError", "item2") == r"\kelvin"
    assert unit("remotecal_correction", "item2") == r"\kelvin"
    assert unit("basic_measurementError", "item1") == r"\percent"
    assert dsi_difference_unit("degC") == r"\kelvin" and dsi_unit("degC") == r"\degreecelsius"


def test_values_are_stated_rounded_and_read_back(xml: bytes, content: Certificate) -> None:
    back = read_corrections(xml)
    assert sorted(back) == sorted(content.channels)
    for p in content.points:
        r = p.result
        row = next(x for x in back[r.channel] if x["point"] == r.point)
        assert Decimal(repr(row["U"])) == p.U_dec
        assert len(p.U_dec.as_tuple().digits) == 2  # two significant digits
        assert p.U_dec >= Decimal(repr(r.U))  # rounded up, never below the budget
        assert row["error"] == float(p.error_dec) == -row["correction"]
        assert abs(row["error"] - r.error) <= float(p.U_dec) / 10  # to U's decimal place
        assert row["k"] == float(p.k_dec) and p.k_text.count(".") == 1 and len(p.k_text.split(".")[1]) == 2
        assert row["setpoint"] == r.setpoint and row["n"] == r.n
    # no 17-digit floats anywhere in the stated results
    doc = etree.fromstring(xml)
    for lst in doc.iterfind(".//dcc:result[@refType='remotecal_calibrationResults']//si:valueXMLList", NS):
        assert all(len(v.replace("-", "").replace(".", "")) <= 8 for v in lst.text.split()), lst.text


def test_administrative_data_and_statements(xml: bytes, synthetic_run: SyntheticRun) -> None:
    doc = etree.fromstring(xml)
    assert doc.get("schemaVersion") == "3.3.0"
    core = doc.find("dcc:administrativeData/dcc:coreData", NS)
    assert core is not None
    assert certificate_identifier(xml) == core.findtext("dcc:uniqueIdentifier", namespaces=NS) == "RC-2026-0042-CERT"
    assert core.findtext("dcc:beginPerformanceDate", namespaces=NS) == "2026-11-20"
    assert core.findtext("dcc:issueDate", namespaces=NS) == "2026-11-21"
    assert core.find("dcc:reportAmendedSubstituted", NS) is None
    statements = doc.findall("dcc:administrativeData/dcc:statements/dcc:statement", NS)
    norms = [s.findtext("dcc:norm", namespaces=NS) for s in statements]
    assert "ISO/IEC 17025:2017" in norms and "ILAC P10:07/2020" in norms and "ILAC-P14:09/2020" in norms
    st17025 = statements[norms.index("ISO/IEC 17025:2017")]
    assert st17025.findtext("dcc:reference", namespaces=NS) == "7.8.4.3"
    assert "relate only to the items calibrated" in st17025.findtext("dcc:declaration/dcc:content", namespaces=NS)
    traceability = statements[norms.index("ILAC P10:07/2020")]
    assert traceability.findtext("dcc:traceable", namespaces=NS) == "true"
    method = doc.find(".//dcc:usedMethod[@refType='basic_uncertainty']", NS)
    assert method is not None and "EA-4/02 M:2022" in [n.text for n in method.findall("dcc:norm", NS)]
    items = doc.findall("dcc:administrativeData/dcc:items/dcc:item", NS)
    dut1 = items[1]
    assert dut1.findtext("dcc:model", namespaces=NS) == "TH-1"
    assert dut1.findtext("dcc:identifications/dcc:identification/dcc:value", namespaces=NS) == "SN 42"


def test_reference_standards_are_measuring_equipment(xml: bytes) -> None:
    doc = etree.fromstring(xml)
    eqs = doc.xpath("//dcc:measurementResult[@refId='item2']/dcc:measuringEquipments/"
                    "dcc:measuringEquipment[@refType='basic_standardUsed']", namespaces=NS)
    assert len(eqs) == 1
    assert "Traceability:" in eqs[0].findtext("dcc:description/dcc:content", namespaces=NS)
    assert eqs[0].xpath("dcc:identifications/dcc:identification/dcc:value/text()", namespaces=NS) == ["ref-t"]


def test_a_revision_names_the_one_it_replaces(content: Certificate) -> None:
    rev = replace(content, issue=Issue("RC-1-R1", "RC-1", revision=1, issued=date(2026, 11, 22),
                                       replaces=Replaced("RC-1", "ab" * 32)))
    xml = build_dcc(rev)
    validate_dcc(xml)
    doc = etree.fromstring(xml)
    core = doc.find("dcc:administrativeData/dcc:coreData", NS)
    assert core is not None
    assert core.findtext("dcc:reportAmendedSubstituted/dcc:typeOfChange", namespaces=NS) == "substituted"
    assert core.findtext("dcc:reportAmendedSubstituted/dcc:replacedUniqueIdentifier", namespaces=NS) == "RC-1"
    assert core.findtext("dcc:previousReport/dcc:value", namespaces=NS) == "ab" * 32


def test_every_budget_component_is_written(xml: bytes, content: Certificate) -> None:
    doc = etree.fromstring(xml)
    budgets = doc.findall(".//dcc:list[@refType='remotecal_uncertaintyBudget']", NS)
    assert len(budgets) == len(content.points)
    p = content.points_of("dut1-rh")[0]
    rows = budgets[0].findall("dcc:list[@refType='remotecal_budgetComponent']", NS)
    assert [row.findtext("dcc:name/dcc:content", namespaces=NS) for row in rows] == [
        c.name for c in p.result.budget.components]
    for row, c in zip(rows, p.result.budget.components, strict=True):
        u = float(row.findtext("dcc:quantity[@refType='remotecal_standardUncertainty']/si:real/si:value",
                               namespaces=NS))
        assert u == pytest.approx(c.u, rel=0.05)
        dof = row.find("dcc:quantity[@refType='remotecal_dof']", NS)
        assert dof is not None
        if math.isinf(c.dof):
            assert dof.findtext("dcc:noQuantity/dcc:content", namespaces=NS) == "inf"


def test_flags_are_written_and_explained(xml: bytes) -> None:
    doc = etree.fromstring(xml)
    flags = [q.text for q in doc.iterfind(".//dcc:quantity[@refType='remotecal_flags']/dcc:charsXMLList", NS)]
    assert any("extrapolated" in (f or "") for f in flags)
    explained = doc.xpath("//dcc:result[@refType='remotecal_calibrationResults']/dcc:data/dcc:list/"
                          "dcc:description/dcc:content/text()", namespaces=NS)
    assert any("extrapolated: the reference's indication" in e for e in explained)


def test_no_results_and_non_si_units_are_refused(content: Certificate) -> None:
    with pytest.raises(DccError, match="nothing to certify"):
        build_dcc(replace(content, points=[]))
    assert dsi_unit("%rh") == r"\percent"
    with pytest.raises(DccError, match="degF"):
        dsi_unit("degF")


def test_parties_default_to_not_stated() -> None:
    assert Parties().laboratory == "not stated" and Parties().country_code == "ZZ"


def test_package_data_ships_every_schema_and_template_file() -> None:
    """The wheel holds what pyproject's package-data names: every file of schemas/ and templates/."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, folder in (("pipelines.dcc", "pipelines/dcc/schemas"), ("pipelines", "pipelines/templates")):
        base = root / package.replace(".", "/")
        for f in (root / folder).rglob("*"):
            if f.is_file():
                rel = f.relative_to(base).as_posix()
                assert any(fnmatch.fnmatch(rel, pat) and rel.count("/") == pat.count("/")
                           for pat in data[package]), rel


def test_a_declared_reference_is_measuring_equipment_with_its_certificate_hash() -> None:
    """[references.<id>] (identity, certificate number, laboratory, dates, SHA-256) reaches the
    DCC's measuringEquipment (dcc:certificate, hash type) and the traceability statement."""
    from pipelines.config import parse_pipeline_config
    from pipelines.run import compute
    from tests.pipelines.test_references import config, run_data

    cfg = parse_pipeline_config(config())
    c = make_content(compute(cfg, run_data()), cfg, software_version="t", issue=ISSUE)
    (ref,) = c.references
    assert (ref.certificate_number, ref.laboratory, ref.serial, ref.sha256) == ("PTB-2026-0815", "PTB", "SN-4711",
                                                                                "ab" * 32)
    xml = build_dcc(c)
    validate_dcc(xml)
    doc = etree.fromstring(xml)
    (eq,) = doc.xpath("//dcc:measuringEquipment[@refType='basic_standardUsed']", namespaces=NS)
    assert eq.findtext("dcc:certificate/dcc:referralID", namespaces=NS) == "PTB-2026-0815"
    assert eq.findtext("dcc:certificate/dcc:procedure", namespaces=NS) == "SHA-256"
    assert eq.findtext("dcc:certificate/dcc:value", namespaces=NS) == "ab" * 32
    assert eq.findtext("dcc:manufacturer/dcc:name/dcc:content", namespaces=NS) == "Fluke"
    assert eq.findtext("dcc:model", namespaces=NS) == "5615"
    statements = " ".join(doc.xpath("//dcc:statement/dcc:declaration/dcc:content/text()", namespaces=NS))
    assert "calibrated by PTB, certificate PTB-2026-0815 of 2026-03-01, due 2027-03-01" in statements
