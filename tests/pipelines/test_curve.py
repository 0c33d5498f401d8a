"""[curve]: a weighted least-squares polynomial of correction against DUT indication."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest
from lxml import etree

from gateway.errors import ConfigError
from pipelines.config import PipelineConfig, parse_pipeline_config
from pipelines.curve import fit_curves, fit_polynomial, point_covariance
from pipelines.dcc import DCC_NS, SI_NS
from pipelines.report import build_report
from pipelines.results import curve_columns, curve_row
from pipelines.run import compute
from tests.pipelines.conftest import CONFIG_TEXT, issue, make_run


def test_hand_case_exact_line() -> None:
    coef, cov = fit_polynomial([0.0, 1.0, 2.0], [1.0, 3.0, 5.0], [1.0, 1.0, 1.0], 1)
    assert coef == pytest.approx([1.0, 2.0])
    # (A^T A)^-1 with A = [[1, 0], [1, 1], [1, 2]]: [[3, 3], [3, 5]]^-1 = [[5, -3], [-3, 3]] / 6
    assert cov == pytest.approx(np.array([[5.0, -3.0], [-3.0, 3.0]]) / 6.0)


def test_hand_case_weighted_mean() -> None:
    # Degree 0 is the weighted mean: weights 1 and 1/4, (1 * 1 + 2 / 4) / 1.25 = 1.2; variance 1 / 1.25.
    coef, cov = fit_polynomial([10.0, 20.0], [1.0, 2.0], [1.0, 2.0], 0)
    assert coef == pytest.approx([1.2])
    assert cov == pytest.approx(np.array([[0.8]]))


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_against_numpy_polyfit(degree: int) -> None:
    rng = np.random.default_rng(degree)
    x = np.linspace(5.0, 45.0, 9)
    u = rng.uniform(0.01, 0.05, x.size)
    y = 0.1 - 0.004 * x + 1e-4 * x**2 + rng.normal(0, 1, x.size) * u
    coef, cov = fit_polynomial(x, y, u, degree)
    p, pcov = np.polyfit(x, y, degree, w=1.0 / u, cov="unscaled")
    assert coef == pytest.approx(p[::-1], rel=1e-9, abs=1e-12)
    assert cov == pytest.approx(pcov[::-1, ::-1], rel=1e-7, abs=1e-15)


def test_too_few_points_or_bad_u() -> None:
    with pytest.raises(ValueError, match="needs 3 points"):
        fit_polynomial([1.0, 2.0], [0.0, 0.0], [1.0, 1.0], 2)
    with pytest.raises(ValueError, match="finite and > 0"):
        fit_polynomial([1.0, 2.0], [0.0, 0.0], [1.0, 0.0], 1)
    with pytest.raises(ValueError, match="do not determine"):
        fit_polynomial([1.0, 1.0, 1.0], [0.0, 0.1, 0.2], [1.0, 1.0, 1.0], 1)


def _cfg(extra: str) -> PipelineConfig:
    return parse_pipeline_config(tomllib.loads(CONFIG_TEXT + extra))


def test_curves_of_a_run() -> None:
    run = make_run()
    results = compute(_cfg("\n[curve]\ndegree = 1\n"), run.data)
    curves = fit_curves(results, 1)
    assert sorted(curves) == ["dut1-rh", "dut1-t", "dut2-t"]
    c = curves["dut1-t"]
    mine = [r for r in results if r.channel == "dut1-t"]
    assert c.points == (1, 2, 3) and c.dof == 1
    x = np.array([r.dut_mean for r in mine])
    y = np.array([r.correction for r in mine])
    u = np.array([r.u_combined for r in mine])
    # As if independent: numpy's weighted polyfit.
    plain = fit_curves(results, 1, correlated=False)["dut1-t"]
    p, pcov = np.polyfit(x, y, 1, w=1 / u, cov="unscaled")
    assert plain.coefficients == pytest.approx(p[::-1])
    assert plain.covariance == pytest.approx(pcov[::-1, ::-1])
    assert plain.residuals == pytest.approx(y - np.polyval(p, x))
    assert plain.chi2 == pytest.approx(float(np.sum(((y - np.polyval(p, x)) / u) ** 2)))
    # With the points' covariance: the GLS normal equations, written out with inverses.
    v = point_covariance(mine)
    assert np.diag(v) == pytest.approx(u**2)
    assert v[0, 1] > 0  # the certificate, drift and inhomogeneity are shared
    design = np.vander(x, 2, increasing=True)
    w = np.linalg.inv(v)
    cov_a = np.linalg.inv(design.T @ w @ design)
    assert c.coefficients == pytest.approx(cov_a @ design.T @ w @ y, rel=1e-9)
    assert c.covariance == pytest.approx(cov_a, rel=1e-9)
    res = y - design @ c.coefficients
    assert c.chi2 == pytest.approx(float(res @ w @ res), rel=1e-9)
    assert c.u_fit(25.0)[0] > plain.u_fit(25.0)[0]
    # dut1-t reads 0.15 high (the reference 0.04 low): the curve is close to a constant -0.15 - 0.04 + cert.
    assert abs(c.coefficients[1]) < 0.01
    assert float(c.u_fit(20.0)[0]) == pytest.approx(math.sqrt(
        c.covariance[0, 0] + 2 * 20 * c.covariance[0, 1] + 400 * c.covariance[1, 1]))
    # Too few points for degree 3: no curve, logged.
    assert fit_curves(results, 3) == {}

    row = curve_row(c)
    assert list(row) == curve_columns(1)
    assert curve_columns(2)[-3:] == ["cov_a0_a1", "cov_a0_a2", "cov_a1_a2"]
    assert float(row["a0"]) == pytest.approx(c.coefficients[0], rel=1e-9)
    assert float(row["u_a1"]) == pytest.approx(math.sqrt(c.covariance[1, 1]), rel=1e-9)
    assert float(row["cov_a0_a1"]) == pytest.approx(c.covariance[0, 1], rel=1e-9)

    cfg = _cfg("\n[curve]\ndegree = 1\n")
    issued = issue(results, cfg, data=run.data, curves=curves)
    doc = etree.fromstring(issued.xml)
    ns = {"dcc": DCC_NS, "si": SI_NS}
    found = doc.xpath("//dcc:result[@refType='remotecal_correctionCurve']", namespaces=ns)
    assert len(found) == 3
    values = found[0].xpath(".//dcc:quantity[@refType='remotecal_curveCoefficients']/si:realListXMLList/"
                            "si:valueXMLList/text()", namespaces=ns)
    assert [float(v) for v in values[0].split()] == pytest.approx(list(curves["dut1-rh"].coefficients), rel=1e-7)
    page = build_report(issued, run.data, cfg, config_text=CONFIG_TEXT)
    assert page.count('class="curve-residuals"') == 3 and "Correction curves" in page


def test_curve_config() -> None:
    assert _cfg("").curve is None
    curve = _cfg("\n[curve]\ndegree = 2\n").curve
    assert curve is not None and curve.degree == 2
    for bad in ("degree = -1", "degree = 9", "degree = 1.5", "order = 1"):
        with pytest.raises(ConfigError) as e:
            _cfg(f"\n[curve]\n{bad}\n")
        assert e.value.problems[0].startswith("curve."), e.value.problems
