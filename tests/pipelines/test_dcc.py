"""certificate.xml: a DCC 3.3.0 that PTB's schema accepts, and that reads back to the results."""

from __future__ import annotations

import math
import uuid
from datetime import date
from pathlib import Path

import pytest
from lxml import etree
from numpy.testing import assert_allclose

from pipelines.dcc import (
    DCC_NS,
    SI_NS,
    DccError,
    Parties,
    build_dcc,
    certificate_identifier,
    dcc_dir,
    dsi_unit,
    read_corrections,
    validate_dcc,
)
from tests.pipelines.conftest import SyntheticRun

NS = {"dcc": DCC_NS, "si": SI_NS}

needs_schema = pytest.mark.skipif(
    not (dcc_dir() / "dcc.xsd").is_file(),
    reason=f"the offline DCC schema folder {dcc_dir()} is absent (set REMOTECAL_DCC_DIR)",
)


@pytest.fixture(scope="module")
def xml(synthetic_run: SyntheticRun) -> bytes:
    return build_dcc(
        synthetic_run.results,
        synthetic_run.cfg,
        channels_meta={"dut1-t": {"manufacturer": "Example Sensors", "model": "TH-1", "serial": "SN 42"}},
        software_version="0.1.0",
        issued=date(2026, 11, 21),
        certificate_id="RC-2026-0042-CERT",
    )


@needs_schema
def test_shipped_example_validates() -> None:
    validate_dcc((dcc_dir() / "example-temperature.xml").read_bytes())


@needs_schema
def test_certificate_validates(xml: bytes) -> None:
    validate_dcc(xml)


@needs_schema
def test_certificate_with_parties_and_generated_id_validates(synthetic_run: SyntheticRun) -> None:
    parties = Parties(laboratory="Cal Lab", laboratory_code="D-K-12345-01-00", laboratory_email="lab@example.org",
                      laboratory_city="Berlin", laboratory_country="DE", customer="ACME", customer_city="Bonn",
                      customer_country="DE", responsible_person="A. Person", country_code="DE")
    out = build_dcc(synthetic_run.results, synthetic_run.cfg, software_version="1.2.3", parties=parties)
    validate_dcc(out)
    uuid.UUID(certificate_identifier(out))  # a UUID when none is given
    assert certificate_identifier(build_dcc(synthetic_run.results, synthetic_run.cfg, software_version="x")) \
        != certificate_identifier(out)


@needs_schema
def test_invalid_certificate_is_refused_with_the_reason(xml: bytes) -> None:
    broken = xml.replace(b"<dcc:countryCodeISO3166_1>ZZ<", b"<dcc:countryCodeISO3166_1>zz<")
    with pytest.raises(DccError, match=r"does not validate.*line \d+:.*countryCodeISO3166_1"):
        validate_dcc(broken)
    with pytest.raises(DccError, match="not well-formed"):
        validate_dcc(b"<dcc:digitalCalibrationCertificate")


def test_missing_schema_folder_is_a_clear_error(tmp_path: Path, xml: bytes) -> None:
    with pytest.raises(DccError, match="REMOTECAL_DCC_DIR"):
        validate_dcc(xml, schema_dir=tmp_path)


def test_schema_folder_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REMOTECAL_DCC_DIR", str(tmp_path))
    assert dcc_dir() == tmp_path
    monkeypatch.delenv("REMOTECAL_DCC_DIR")
    assert dcc_dir().parts[-2:] == ("shared", "dcc")


def test_values_round_trip(xml: bytes, synthetic_run: SyntheticRun) -> None:
    back = read_corrections(xml)
    results = synthetic_run.results
    assert sorted(back) == sorted({r.channel for r in results})
    for r in results:
        row = next(p for p in back[r.channel] if p["point"] == r.point)
        # repr() of a float reads back exactly
        assert row["correction"] == r.correction
        assert row["U"] == r.U
        assert row["k"] == r.k
        assert row["setpoint"] == r.setpoint
        assert row["reference_mean"] == r.reference_mean
        assert row["dut_mean"] == r.dut_mean
        assert row["n"] == r.n
        assert row["u_combined"] == r.u_combined
        assert row["dof_eff"] == r.dof_eff or (math.isinf(r.dof_eff) and math.isinf(row["dof_eff"]))
        assert_allclose(row["correction"], row["reference_mean"] - row["dut_mean"], atol=1e-12)


def test_administrative_data(xml: bytes, synthetic_run: SyntheticRun) -> None:
    doc = etree.fromstring(xml)
    assert doc.get("schemaVersion") == "3.3.0"
    core = doc.find("dcc:administrativeData/dcc:coreData", NS)
    assert core is not None
    assert core.findtext("dcc:uniqueIdentifier", namespaces=NS) == "RC-2026-0042-CERT"
    assert core.findtext("dcc:beginPerformanceDate", namespaces=NS) == "2026-11-20"
    assert core.findtext("dcc:endPerformanceDate", namespaces=NS) == "2026-11-20"
    assert core.findtext("dcc:issueDate", namespaces=NS) == "2026-11-21"
    assert core.findtext("dcc:identifications/dcc:identification/dcc:value", namespaces=NS) == "RC-2026-0042"
    sw = doc.find("dcc:administrativeData/dcc:dccSoftware/dcc:software", NS)
    assert sw is not None
    assert sw.findtext("dcc:name/dcc:content", namespaces=NS) == "remotecal"
    assert sw.findtext("dcc:release", namespaces=NS) == "0.1.0"
    items = doc.findall("dcc:administrativeData/dcc:items/dcc:item", NS)
    channels = [i.xpath("dcc:identifications/dcc:identification[dcc:name/dcc:content='Channel']/dcc:value",
                        namespaces=NS)[0].text for i in items]
    assert channels == sorted({r.channel for r in synthetic_run.results})
    results = doc.findall("dcc:measurementResults/dcc:measurementResult", NS)
    assert [mr.get("refId") for mr in results] == [item.get("id") for item in items]
    dut1 = items[channels.index("dut1-t")]
    assert dut1.findtext("dcc:model", namespaces=NS) == "TH-1"
    assert dut1.findtext("dcc:identifications/dcc:identification/dcc:value", namespaces=NS) == "SN 42"


def test_units_and_uncertainty_statement(xml: bytes) -> None:
    doc = etree.fromstring(xml)
    units = {u.text for u in doc.iter(f"{{{SI_NS}}}unitXMLList")}
    assert {r"\degreecelsius", r"\percent", r"\one"} <= units
    probabilities = {p.text for p in doc.iter(f"{{{SI_NS}}}coverageProbabilityXMLList")}
    assert probabilities == {"0.9545"}


def test_every_budget_component_is_written(xml: bytes, synthetic_run: SyntheticRun) -> None:
    doc = etree.fromstring(xml)
    budgets = doc.findall(".//dcc:list[@refType='remotecal_uncertaintyBudget']", NS)
    assert len(budgets) == len(synthetic_run.results)
    r = synthetic_run.results[0]
    rows = budgets[0].findall("dcc:list[@refType='remotecal_budgetComponent']", NS)
    assert [row.findtext("dcc:name/dcc:content", namespaces=NS) for row in rows] == [
        c.name for c in r.budget.components
    ]
    for row, c in zip(rows, r.budget.components, strict=True):
        def real(ref_type: str, row: etree._Element = row) -> float:
            return float(row.findtext(f"dcc:quantity[@refType='{ref_type}']/si:real/si:value", namespaces=NS))
        assert real("remotecal_standardUncertainty") == c.u
        assert real("remotecal_sensitivity") == c.sensitivity
        assert real("remotecal_contribution") == c.contribution
        assert row.findtext("dcc:quantity[@refType='remotecal_distribution']/dcc:noQuantity/dcc:content",
                            namespaces=NS) == c.distribution
        dof = row.find("dcc:quantity[@refType='remotecal_dof']", NS)
        assert dof is not None
        if math.isinf(c.dof):
            assert dof.findtext("dcc:noQuantity/dcc:content", namespaces=NS) == "inf"
        else:
            assert float(dof.findtext("si:real/si:value", namespaces=NS)) == c.dof


def test_flags_are_written(xml: bytes, synthetic_run: SyntheticRun) -> None:
    doc = etree.fromstring(xml)
    flags = [q.text for q in doc.iterfind(
        ".//dcc:quantity[@refType='remotecal_flags']/dcc:charsXMLList", NS)]
    assert any("extrapolated" in (f or "") for f in flags)
    assert any(r.extrapolated for r in synthetic_run.results)


def test_no_results_and_non_si_units_are_refused(synthetic_run: SyntheticRun) -> None:
    with pytest.raises(DccError, match="nothing to certify"):
        build_dcc([], synthetic_run.cfg, software_version="0.1.0")
    assert dsi_unit("%rh") == r"\percent"
    with pytest.raises(DccError, match="degF"):
        dsi_unit("degF")
