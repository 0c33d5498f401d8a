"""[conformity]: decisions per ILAC-G8:09/2019, in corrections.csv, the report and the DCC."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import pytest
from lxml import etree

from gateway.errors import ConfigError
from pipelines.config import PipelineConfig, parse_pipeline_config
from pipelines.conformity import decide
from pipelines.dcc import DCC_NS, SI_NS, validate_dcc
from pipelines.pipeline import run_pipeline
from pipelines.report import build_report
from pipelines.results import CSV_COLUMNS, EXTRA_COLUMNS
from pipelines.run import compute
from tests.pipelines.conftest import CONFIG_TEXT, issue, make_run

# Hand numbers, binary fractions so that MPE - U and MPE + U are exact: MPE 0.5, U 0.125.
# Acceptance limit 0.375, rejection limit 0.625.


@pytest.mark.parametrize(
    ("error", "simple", "guard_band"),
    [
        (0.0, "pass", "pass"),
        (0.25, "pass", "pass"),
        (-0.375, "pass", "pass"),  # on the acceptance limit: pass
        (0.4375, "pass", "conditionalPass"),
        (-0.5, "pass", "conditionalPass"),  # on the tolerance limit
        (0.5625, "fail", "conditionalFail"),
        (-0.625, "fail", "conditionalFail"),  # on the rejection limit
        (0.75, "fail", "fail"),
        (-3.0, "fail", "fail"),
    ],
)
def test_decisions_by_hand(error: float, simple: str, guard_band: str) -> None:
    assert decide(error, 0.125, 0.5, "simple") == simple
    assert decide(error, 0.125, 0.5, "guard_band") == guard_band


def test_guard_band_wider_than_the_mpe_never_passes() -> None:
    assert decide(0.0, 0.75, 0.5, "guard_band") == "conditionalPass"
    assert decide(0.0, 0.5, 0.5, "guard_band") == "pass"  # AL = 0: only a zero error passes
    assert decide(1.0, 0.75, 0.5, "guard_band") == "conditionalFail"
    assert decide(1.5, 0.75, 0.5, "guard_band") == "fail"


def _cfg(extra: str) -> PipelineConfig:
    return parse_pipeline_config(tomllib.loads(CONFIG_TEXT + extra))


def test_config() -> None:
    assert _cfg("").conformity is None
    c = _cfg('\n[conformity]\nmpe = 0.5\nrule = "guard_band"\n').conformity
    assert c is not None and c.mpe_for("temperature") == 0.5 and c.rule == "guard_band"
    c = _cfg("\n[conformity]\nmpe = { temperature = 0.2, relative_humidity = 2.0 }\n").conformity
    assert c is not None and c.rule == "simple"
    assert c.mpe_for("temperature") == 0.2 and c.mpe_for("dew_point") is None
    for bad, key in (("mpe = -1", "conformity.mpe"), ("mpe = 0.5\nrule = 'strict'", "conformity.rule"),
                     ("mpe = { temprature = 0.2 }", "conformity.mpe"), ("rule = 'simple'", "conformity.mpe")):
        with pytest.raises(ConfigError) as e:
            _cfg(f"\n[conformity]\n{bad}\n")
        assert any(p.startswith(f"{key}") for p in e.value.problems), e.value.problems


def test_decisions_in_the_results_report_and_dcc() -> None:
    run = make_run()
    # dut1-t reads 0.15 high against a true 0.04-low reference; dut2-t 0.08 low; dut1-rh 1.2 high.
    cfg = _cfg('\n[conformity]\nmpe = { temperature = 0.2 }\nrule = "guard_band"\n')
    results = compute(cfg, run.data)
    for r in results:
        if r.quantity == "temperature":
            assert r.mpe == 0.2
            assert r.decision == decide(-r.correction, r.U, 0.2, "guard_band")
        else:
            assert r.decision == "" and r.mpe is None
    assert {r.decision for r in results if r.channel == "dut2-t"} == {"pass"}  # |-0.08| + U < 0.2
    issued = issue(results, cfg, data=run.data)
    xml = issued.xml
    ns = {"dcc": DCC_NS, "si": SI_NS}
    doc = etree.fromstring(xml)
    (rule,) = doc.xpath("//dcc:administrativeData/dcc:statements/dcc:statement[@refType='basic_conformity']",
                        namespaces=ns)
    assert rule.findtext(f"{{{DCC_NS}}}norm") == "ILAC-G8:09/2019"
    assert "Guard band w = U" in rule.findtext(f"{{{DCC_NS}}}declaration/{{{DCC_NS}}}content")
    # PTB's good-practice place: metadata of the measurement error, with the limits' refTypes
    metas = doc.xpath("//dcc:quantity[@refType='basic_measurementError']/dcc:measurementMetaData/"
                      "dcc:metaData[@refType='basic_conformity']", namespaces=ns)
    assert len(metas) == 2  # the two temperature channels; the RH one has no MPE
    stated = {p.result.channel: p for p in issued.content.points}
    got = metas[0].findtext(f"{{{DCC_NS}}}conformityXMLList").split()
    assert got == [p.decision for p in issued.content.points_of("dut1-t")]
    assert stated["dut2-t"].decision == "pass"
    limits = metas[0].xpath("dcc:data/dcc:quantity/@refType", namespaces=ns)
    assert limits[:4] == ["basic_toleranceLimitLower", "basic_toleranceLimitUpper",
                          "basic_acceptanceLimitLower", "basic_acceptanceLimitUpper"]
    assert not doc.xpath("//*[@refType='remotecal_mpe' or @refType='remotecal_error']")
    page = build_report(issued, run.data, cfg, config_text=CONFIG_TEXT)
    assert 'id="conformity"' in page and "Guard band w = U" in page and "P(true error outside ±MPE)" in page

    simple = _cfg("\n[conformity]\nmpe = 0.2\n")
    results = compute(simple, run.data)
    assert [r.decision for r in results if r.channel == "dut1-rh"] == ["fail"] * 3  # 1.2 %rh > 0.2
    assert all(r.decision == "pass" for r in results if r.channel == "dut2-t")


def test_pipeline_writes_decisions_and_curves(tmp_path: Path) -> None:
    from tests.pipelines.test_run import local_run_config

    config = local_run_config(tmp_path, '\n[curve]\ndegree = 1\n\n[conformity]\nmpe = 0.12\nrule = "simple"\n')
    out = run_pipeline(config, tmp_path / "out")
    assert out.curve_path == tmp_path / "out" / "curve.csv"
    with open(tmp_path / "out" / "corrections.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == (*CSV_COLUMNS, *EXTRA_COLUMNS)
        rows = list(reader)
    # dut1-t reads 0.15 high (fail at MPE 0.12), dut2-t 0.08 low plus 0.002/degC, at most 0.1 (pass).
    assert {row["decision"] for row in rows if row["channel"] == "dut1-t"} == {"fail"}
    assert {row["decision"] for row in rows if row["channel"] == "dut2-t"} == {"pass"}
    assert all(row["mpe"] == "0.12" and row["curve_residual"] != "" for row in rows)
    with open(tmp_path / "out" / "curve.csv", newline="") as f:
        curves = {row["channel"]: row for row in csv.DictReader(f)}
    assert sorted(curves) == ["dut1-t", "dut2-t"]
    # dut2-t's error is -0.08 + 0.002 (t - 20): correction = 0.08 - 0.002 (x - 20) with x ~ t.
    assert float(curves["dut2-t"]["a1"]) == pytest.approx(-0.002, abs=5e-4)
    assert float(curves["dut2-t"]["a0"]) == pytest.approx(0.12, abs=0.01)
    assert float(curves["dut1-t"]["a0"]) == pytest.approx(-0.15, abs=0.01)
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Statements of conformity" in report and "Correction curves" in report
    validate_dcc((tmp_path / "out" / "certificate.xml").read_bytes())
