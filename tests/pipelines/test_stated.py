"""What a certificate states: GUM 7.2.6 rounding, the laboratory's CMC floor (ILAC-P14) from the
[cmc] table, decisions made on the stated numbers with their risk."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import numpy as np
import pytest

from gateway.errors import ConfigError
from pipelines.certificate.config import CmcRange, cmc_for
from pipelines.certificate.reported import report_points
from pipelines.certificate.rounding import dof_text, round_k, round_to, round_uncertainty, text
from pipelines.config import parse_pipeline_config
from pipelines.conformity import probability_outside
from tests.pipelines.conftest import CONFIG_TEXT, SyntheticRun


@pytest.mark.parametrize(("u", "stated"), [
    (0.0213, "0.022"), (0.030000000000000002, "0.030"), (0.0996, "0.10"), (12.01, "13"), (0.02, "0.020"),
    (1.0, "1.0"), (0.000123, "0.00013"), (99.1, "100"), (0.0991, "0.10"),
])
def test_u_is_rounded_up_to_two_significant_digits(u: float, stated: str) -> None:
    assert text(round_uncertainty(u)) == stated


def test_rounded_u_is_never_smaller_and_at_most_ten_percent_larger() -> None:
    for u in 10.0 ** np.random.default_rng(3).uniform(-6, 4, 2000):
        r = round_uncertainty(float(u))
        assert len(r.normalize().as_tuple().digits) <= 2, (u, r)
        exact = Decimal(repr(float(u)))
        assert exact * (1 - Decimal("1e-11")) <= r <= exact * Decimal("1.1"), (u, r)


def test_value_to_the_decimal_place_of_u_and_k_and_dof() -> None:
    assert text(round_to(10.01049, Decimal("0.022"))) == "10.010"
    assert text(round_to(-0.0715, Decimal("0.043"))) == "-0.072"  # halves away from zero
    assert text(round_to(20.36, Decimal("13"))) == "20"
    assert text(round_k(2.0)) == "2.00" and text(round_k(13.968)) == "13.97"
    assert (dof_text(float("inf")), dof_text(5.53e8), dof_text(100.0), dof_text(4.9999999999)) == \
        ("inf", ">100", "100", "5")


CMC = """
[[cmc.temperature]]
min = -40.0
max = 15.0
U = 0.05

[[cmc.temperature]]
min = 15.0
max = 25.0
U = 0.02
U_relative = 0.001
"""


def _cfg(extra: str):  # type: ignore[no-untyped-def]
    return parse_pipeline_config(tomllib.loads(CONFIG_TEXT + extra))


def test_u_is_never_stated_below_the_cmc(synthetic_run: SyntheticRun) -> None:
    cfg = _cfg(CMC)
    points = {(p.result.channel, p.result.point): p for p in report_points(cfg, synthetic_run.results)}
    low = points[("dut1-t", 1)]  # 10 degC: CMC 0.05 above the budget's U (~0.042)
    assert low.result.U < 0.05 and low.U == 0.05 and low.U_text == "0.050" and "cmc" in low.flags
    mid = points[("dut1-t", 2)]  # 20 degC: CMC 0.02 + 0.001 * 20 = 0.04
    assert mid.cmc == pytest.approx(0.02 + 0.001 * mid.result.reference_mean) and mid.cmc <= mid.U
    high = points[("dut1-t", 3)]  # 30 degC: outside every range
    assert high.cmc is None and "outside_cmc" in high.flags and high.U == high.result.U
    rh = points[("dut1-rh", 1)]  # no table for the quantity: no floor, no flag
    assert rh.cmc is None and "cmc" not in rh.flags and "outside_cmc" not in rh.flags
    assert cmc_for(cfg.cmc, "temperature", 15.0) == pytest.approx(0.05)  # shared boundary: the larger


@pytest.mark.parametrize(("extra", "problem"), [
    ("[[cmc.temperature]]\nmin = 10.0\nmax = 5.0\nU = 0.1\n", "cmc.temperature[0].max: must be above min"),
    ("[[cmc.temperature]]\nmin = 0.0\nmax = 20.0\nU = 0.1\n[[cmc.temperature]]\nmin = 10.0\nmax = 30.0\nU = 0.1\n",
     "cmc.temperature[1].min: overlaps cmc.temperature[0] (0 to 20)"),
    ("[[cmc.humidity]]\nmin = 0.0\nmax = 20.0\nU = 0.1\n", "cmc.humidity: "),
    ("[[cmc.temperature]]\nmin = 0.0\nmax = 20.0\nU = 0\n", "cmc.temperature.0.U"),
    ("[[cmc.temperature]]\nmin = 0.0\nmax = 20.0\nU = 0.1\nk = 2\n", "cmc.temperature.0.k"),
])
def test_a_bad_cmc_table_is_refused_with_its_key_path(extra: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        _cfg(extra)
    assert any(p.replace("[0]", ".0").startswith(problem.replace("[0]", ".0")) or p.startswith(problem)
               for p in e.value.problems), e.value.problems


def test_decisions_on_stated_numbers_with_their_risk(synthetic_run: SyntheticRun) -> None:
    cfg = _cfg('\n[conformity]\nmpe = { temperature = 0.2 }\nrule = "guard_band"\n')
    for p in report_points(cfg, synthetic_run.results):
        if p.result.quantity != "temperature":
            assert p.decision == "" and p.probability_outside is None
            continue
        assert p.mpe == 0.2 and p.probability_outside is not None
        assert p.probability_outside == pytest.approx(
            probability_outside(float(p.error_dec), float(p.U_dec) / float(p.k_dec), 0.2))
        if p.decision == "pass":  # guard band w = U: a pass has at most 1 - Phi(k) ~ 2.3 %
            assert p.probability_outside <= 0.0228
    assert probability_outside(0.2, 0.05, 0.2) == pytest.approx(0.5)  # on the limit: 50 %


def test_cmc_range_model() -> None:
    r = CmcRange(min=0.0, max=10.0, U=0.1, U_relative=0.01)
    assert r.at(-5.0) == pytest.approx(0.15)


def test_the_cmc_statement_says_what_was_checked(synthetic_run: SyntheticRun) -> None:
    from pipelines.certificate.content import Issue, make_content
    from pipelines.dcc.write import cmc_text

    def text_for(extra: str) -> str:
        c = make_content(synthetic_run.results, _cfg(extra), software_version="t", issue=Issue("X", "X"))
        return cmc_text(c)

    none = text_for("")
    assert "No CMC of the laboratory is stated for relative humidity, temperature" in none
    assert "No expanded uncertainty stated here is smaller" not in none
    some = text_for(CMC)
    assert "6 point(s) are stated at the CMC" not in some  # 30 degC is outside: 4 raised, 2 outside
    assert "2 point(s) lie outside the ranges" in some and "for relative humidity:" in some
