"""Relative humidity against a chilled-mirror dew point and a reference thermometer.

The truth: the air is at 23 degC; the dew point steps 5 -> 12 -> 17 degC (about 30, 49 and
69 %rh), then the air steps to 25 degC at the same 17 degC dew point (about 61 %rh): a
plateau of the RH that a plateau finder on the dew point alone would merge with the third.
The mirror and the thermometer read the truth minus their certificates' corrections (so that
indication + correction is the truth again), with noise, on time bases of their own; the
pressure is 101 325 Pa (the enhancement factor is applied). DUT 1 reads 1.5 %rh high, DUT 2
reads 2 % of the reading high minus 0.5 %rh.
"""

from __future__ import annotations

import math
import tomllib
from typing import Any

import numpy as np
import pytest

from gateway.errors import ConfigError, RemotecalError
from pipelines.config import parse_pipeline_config
from pipelines.dcc import read_corrections
from pipelines.humidity import dew_point_to_rh
from pipelines.report import build_report
from pipelines.run import PointResult, compute
from pipelines.source import ChannelData
from tests.pipelines.conftest import issue

T0 = 1_795_680_000.0
PLATEAU_S = 2400.0
RAMP_S = 600.0
P_PA = 101_325.0
# (dew point, air temperature) of each plateau [degC]
STEPS = ((5.0, 23.0), (12.0, 23.0), (17.0, 23.0), (17.0, 25.0))
CERT_TD = [[0.0, 0.05, 0.1, 2.0], [20.0, -0.05, 0.1, 2.0]]
CERT_T = [[15.0, 0.02, 0.04, 2.0], [30.0, -0.01, 0.04, 2.0]]

CONFIG = f"""
[run]
id = "RC-DEW-1"

[source]
kind = "local"
path = "unused.db"

[stability]
window_s = 600
max_std = 0.02
max_slope_per_min = 0.005
min_duration_s = 900

[[comparisons]]
dut = "dut*-rh"
quantity = "relative_humidity"
reference_dew_point = "mirror-td"
reference_temperature = "ref-t"
pressure_pa = {P_PA}
stability = {{ window_s = 600, max_std = 0.1, max_slope_per_min = 0.02, min_duration_s = 900 }}
uncertainty = {{ reference_drift = 0.3, dut_resolution = 0.1, chamber_inhomogeneity = 0.5 }}

[reference_certificate.mirror-td]
points = {CERT_TD}

[reference_certificate.ref-t]
points = {CERT_T}

[uncertainty]
reference_drift = 0.01
dut_resolution = 0.01
chamber_inhomogeneity = 0.03
"""


def _profile(t: np.ndarray, column: int) -> np.ndarray:
    knots_t, knots_v = [T0], [STEPS[0][column]]
    at = T0
    for i, step in enumerate(STEPS):
        at += PLATEAU_S
        knots_t.append(at)
        knots_v.append(step[column])
        if i + 1 < len(STEPS):
            at += RAMP_S
            knots_t.append(at)
            knots_v.append(STEPS[i + 1][column])
    return np.interp(t, knots_t, knots_v)


def _indication(truth: np.ndarray, cert: list[list[float]]) -> np.ndarray:
    rows = np.asarray(cert)
    x = truth.copy()
    for _ in range(8):
        x = truth - np.interp(x, rows[:, 0], rows[:, 1])
    return x


def dut1(rh: np.ndarray) -> np.ndarray:
    return rh + 1.5


def dut2(rh: np.ndarray) -> np.ndarray:
    return 1.02 * rh - 0.5


def make_data(seed: int = 3) -> dict[str, ChannelData]:
    rng = np.random.default_rng(seed)
    end = T0 + len(STEPS) * PLATEAU_S + (len(STEPS) - 1) * RAMP_S
    t_td = np.arange(T0, end, 5.0)
    t_t = np.arange(T0 + 2.0, end, 7.0)
    t_dut = np.arange(T0 + 1.0, end, 10.0)
    td_true = _profile(t_td, 0)
    t_true = _profile(t_t, 1)
    rh_true = dew_point_to_rh(_profile(t_dut, 0), _profile(t_dut, 1), P_PA)
    return {
        "mirror-td": ChannelData(t_td, _indication(td_true, CERT_TD) + rng.normal(0, 0.005, t_td.size),
                                 "dew_point", "degC", "reference"),
        "ref-t": ChannelData(t_t, _indication(t_true, CERT_T) + rng.normal(0, 0.003, t_t.size),
                             "temperature", "degC", "reference"),
        "dut1-rh": ChannelData(t_dut, dut1(rh_true) + rng.normal(0, 0.05, t_dut.size),
                               "relative_humidity", "%rh", "dut"),
        "dut2-rh": ChannelData(t_dut, dut2(rh_true) + rng.normal(0, 0.05, t_dut.size),
                               "relative_humidity", "%rh", "dut"),
    }


def config(**changes: Any) -> dict[str, Any]:
    doc = tomllib.loads(CONFIG)
    doc["comparisons"][0].update(changes)
    for k, v in changes.items():
        if v is None:
            del doc["comparisons"][0][k]
    return doc


@pytest.fixture(scope="module")
def results() -> list[PointResult]:
    return compute(parse_pipeline_config(config()), make_data())


def test_rh_dut_errors_come_back_within_u(results: list[PointResult]) -> None:
    assert [(r.channel, r.point) for r in results] == [(ch, p) for ch in ("dut1-rh", "dut2-rh") for p in (1, 2, 3, 4)]
    for r in results:
        td, t = STEPS[r.point - 1]
        rh = dew_point_to_rh(td, t, P_PA)
        truth = rh - (dut1 if r.channel == "dut1-rh" else dut2)(np.array([rh]))[0]
        assert abs(r.correction - truth) <= r.U, (r.channel, r.point, r.correction, truth, r.U)
        assert abs(r.correction - truth) < 0.05
        assert r.reference_mean == pytest.approx(rh, abs=0.03)
        assert r.reference == "mirror-td" and r.unit == "%rh" and r.quantity == "relative_humidity"
        assert r.equipment == (("mirror-td", "degC"), ("ref-t", "degC"))
        assert not r.extrapolated
    # The air-temperature step at a constant dew point is a plateau of its own.
    assert [r.setpoint for r in results[:4]] == [round(dew_point_to_rh(td, t, P_PA) * 2) / 2 for td, t in STEPS]


def test_budget_propagates_both_reference_channels(results: list[PointResult]) -> None:
    h = 1e-4
    for r in results:
        td, t = STEPS[r.point - 1]
        names = [c.name for c in r.budget.components]
        assert names == ["repeatability (Type A)", "chamber temporal instability", "DUT short-term stability",
                         "reference dew point calibration", "reference temperature calibration",
                         "reference drift", "DUT resolution", "chamber inhomogeneity"]
        c_td, c_t = r.budget.components[3:5]
        fd_td = (dew_point_to_rh(td + h, t, P_PA) - dew_point_to_rh(td - h, t, P_PA)) / (2 * h)
        fd_t = (dew_point_to_rh(td, t + h, P_PA) - dew_point_to_rh(td, t - h, P_PA)) / (2 * h)
        assert c_td.sensitivity == pytest.approx(fd_td, rel=2e-3)
        assert c_t.sensitivity == pytest.approx(fd_t, rel=2e-3)
        assert c_td.sensitivity > 0 > c_t.sensitivity
        assert c_td.u == pytest.approx(0.05) and c_t.u == pytest.approx(0.02)
        assert c_td.unit == c_t.unit == "degC"
        assert c_td.contribution == pytest.approx(abs(c_td.sensitivity) * 0.05)
        assert c_t.contribution == pytest.approx(abs(c_t.sensitivity) * 0.02)
        assert c_td.value == pytest.approx(float(np.interp(td, [0, 20], [0.05, -0.05])), abs=1e-3)
        assert r.budget.u_combined == pytest.approx(math.sqrt(sum(c.contribution**2 for c in r.budget.components)))
        (drift,) = [c for c in r.budget.components if c.name == "reference drift"]
        assert drift.u == pytest.approx(0.3 / math.sqrt(3))  # the comparison's own [uncertainty], in %rh


def test_without_pressure_no_enhancement_factor() -> None:
    data = make_data()
    with_p = compute(parse_pipeline_config(config()), data)
    without = compute(parse_pipeline_config(config(pressure_pa=None)), data)
    for a, b in zip(with_p, without, strict=True):
        td, t = STEPS[a.point - 1]
        expected = dew_point_to_rh(td, t, P_PA) - dew_point_to_rh(td, t)
        assert a.reference_mean - b.reference_mean == pytest.approx(expected, abs=2e-3)


def test_certificate_report_and_dcc(results: list[PointResult]) -> None:
    cfg = parse_pipeline_config(config())
    issued = issue(results, cfg, data=make_data())
    xml = issued.xml
    back = read_corrections(xml)
    assert [row["correction"] for row in back["dut1-rh"]] == [float(p.correction_dec) for p in issued.content.points_of("dut1-rh")]
    assert b"channel mirror-td</dcc:content>" in xml and b"channel ref-t</dcc:content>" in xml
    assert b"\\percent\\kelvin\\tothe{-1}" in xml
    page = build_report(issued, make_data(), cfg, config_text=CONFIG)
    assert "reference dew point calibration" in page and "mirror-td" in page


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"reference": "ref-rh"}, "comparisons[0].reference_dew_point"),
        ({"reference_dew_point": None, "reference_temperature": None, "pressure_pa": None},
         "comparisons[0].reference"),
        ({"reference_temperature": None}, "comparisons[0].reference_temperature"),
        ({"reference_dew_point": None}, "comparisons[0].reference_dew_point"),
        ({"quantity": "temperature"}, "comparisons[0].reference_dew_point"),
        ({"reference_dew_point": "ref-t"}, "comparisons[0].reference_temperature"),
        ({"reference_dew_point": "other-td"}, "comparisons[0].reference_dew_point"),
        ({"pressure_pa": -5.0}, "comparisons[0].pressure_pa"),
    ],
)
def test_exactly_one_reference_form(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_pipeline_config(config(**changes))
    assert any(p.startswith(f"{key}:") for p in e.value.problems), e.value.problems


def test_pressure_only_with_a_dew_point() -> None:
    doc = config(reference_dew_point=None, reference_temperature=None, reference="ref-t",
                 quantity="temperature")
    with pytest.raises(ConfigError) as e:
        parse_pipeline_config(doc)
    assert e.value.problems == [
        "comparisons[0].pressure_pa: applies to a dew-point reference (reference_dew_point) only"]


def test_wrong_reference_channels() -> None:
    cfg = parse_pipeline_config(config())
    data = make_data()
    bad = {**data, "mirror-td": data["mirror-td"]._replace(unit="K")}
    with pytest.raises(RemotecalError, match=r"comparisons\[0\]\.reference_dew_point: .*'mirror-td' is in K"):
        compute(cfg, bad)
    bad = {k: v for k, v in data.items() if k != "ref-t"}
    with pytest.raises(RemotecalError, match=r"comparisons\[0\]\.reference_temperature: channel 'ref-t' has no"):
        compute(cfg, bad)
    bad = {**data, "ref-t": data["ref-t"]._replace(quantity="dew_point")}
    with pytest.raises(RemotecalError, match=r"measures dew_point, not temperature"):
        compute(cfg, bad)


def test_a_frost_point_channel_is_taken_over_ice() -> None:
    t = np.arange(T0, T0 + 3600.0, 5.0)
    rng = np.random.default_rng(11)
    fp, air = -10.0, 23.0
    data = {
        "mirror-td": ChannelData(t, fp - 0.05 + rng.normal(0, 0.002, t.size), "frost_point", "degC", "reference"),
        "ref-t": ChannelData(t, _indication(np.full(t.size, air), CERT_T), "temperature", "degC", "reference"),
        "dut1-rh": ChannelData(t, np.full(t.size, 10.0), "relative_humidity", "%rh", "dut"),
    }
    doc = config()
    doc["reference_certificate"]["mirror-td"] = {"points": [[-20.0, 0.05, 0.1, 2.0], [0.0, 0.05, 0.1, 2.0]]}
    (r,) = compute(parse_pipeline_config(doc), data)
    assert r.reference_mean == pytest.approx(dew_point_to_rh(fp, air, P_PA, over="ice"), abs=1e-3)
    assert r.reference_mean < dew_point_to_rh(fp, air, P_PA) - 0.5  # e_ice < e_water at -10 degC
    (c_td,) = [c for c in r.budget.components if c.name == "reference dew point calibration"]
    h = 1e-4
    fd = (dew_point_to_rh(fp + h, air, P_PA, over="ice") - dew_point_to_rh(fp - h, air, P_PA, over="ice")) / (2 * h)
    assert c_td.sensitivity == pytest.approx(fd, rel=2e-3)
