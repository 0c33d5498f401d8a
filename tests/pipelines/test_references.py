"""Reference standards tied to their certificates (issue 13 section 3): [references.<id>]
with identity, dates, SHA-256, history; expiry refused unless allowed and then flagged;
drift from the calibration history; the interpolation term; a certificate's k as dof."""

from __future__ import annotations

import copy
import hashlib
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from gateway.errors import ConfigError, RemotecalError
from pipelines.certificate.reported import report_points
from pipelines.config import load_pipeline_config, parse_pipeline_config
from pipelines.reference import StretchCorrections, apply_certificate, history_drift, references_of
from pipelines.results import write_corrections_csv
from pipelines.run import compute
from pipelines.source import ChannelData
from pipelines.uncertainty import dof_from_k

T0 = 1_795_680_000.0  # 2026-11-26
PLATEAU_S, RAMP_S = 2400.0, 600.0
SETPOINTS = (20.0, 30.0)
CERT = [[10.0, 0.05, 0.02, 2.0], [20.0, 0.03, 0.02, 2.0], [30.0, 0.02, 0.02, 2.0], [40.0, 0.01, 0.02, 2.0]]

BASE: dict[str, Any] = {
    "run": {"id": "RC-REF-1"},
    "source": {"kind": "local", "path": "unused.db"},
    "stability": {"window_s": 600, "max_std": 0.02, "max_slope_per_min": 0.005, "min_duration_s": 900},
    "comparisons": [{"dut": "dut1-t", "reference": "ref-t", "quantity": "temperature"}],
    "uncertainty": {"reference_drift": 0.01, "dut_resolution": 0.01, "chamber_inhomogeneity": 0.03},
}
REFERENCE: dict[str, Any] = {
    "manufacturer": "Fluke", "model": "5615", "serial": "SN-4711",
    "certificate": "PTB-2026-0815", "laboratory": "PTB",
    "calibration_date": "2026-03-01", "due_date": "2027-03-01",
    "certificate_sha256": "ab" * 32,
    "points": CERT,
}


def config(**reference: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["references"] = {"ref-t": {**copy.deepcopy(REFERENCE), **reference}}
    return doc


def run_data(t0: float = T0, seed: int = 1) -> dict[str, ChannelData]:
    rng = np.random.default_rng(seed)
    knots_t, knots_v, at = [t0], [SETPOINTS[0]], t0
    for i, sp in enumerate(SETPOINTS):
        at += PLATEAU_S
        knots_t.append(at)
        knots_v.append(sp)
        if i + 1 < len(SETPOINTS):
            at += RAMP_S
            knots_t.append(at)
            knots_v.append(SETPOINTS[i + 1])
    t = np.arange(t0, at, 1.0)
    truth = np.interp(t, knots_t, knots_v)
    ref = truth - np.interp(truth, [r[0] for r in CERT], [r[1] for r in CERT]) + rng.normal(0, 0.002, t.size)
    dut = np.round(truth + 0.1 + rng.normal(0, 0.005, t.size), 2)
    return {"ref-t": ChannelData(t, ref, "temperature", "degC", "reference"),
            "dut1-t": ChannelData(t, dut, "temperature", "degC", "dut")}


def test_a_declared_reference_gives_its_identity_to_every_point() -> None:
    results = compute(parse_pipeline_config(config()), run_data())
    assert len(results) == 2
    for r in results:
        (info,) = r.references
        assert (info.id, info.channel, info.serial, info.certificate, info.laboratory) == (
            "ref-t", "ref-t", "SN-4711", "PTB-2026-0815", "PTB")
        assert (info.manufacturer, info.model, info.certificate_sha256) == ("Fluke", "5615", "ab" * 32)
        assert str(info.calibration_date) == "2026-03-01" and str(info.due_date) == "2027-03-01"
        assert not r.expired_reference and r.flags == ()
        assert r.correction == pytest.approx(-0.1, abs=0.01)


def test_the_spec_short_form_is_still_a_reference_without_identity() -> None:
    doc = copy.deepcopy(BASE)
    doc["reference_certificate"] = {"ref-t": {"points": CERT}}
    results = compute(parse_pipeline_config(doc), run_data())
    assert results and all(r.references == () for r in results)


@pytest.mark.parametrize(("change", "message"), [
    ({"serial": None}, r"references\.ref-t\.serial: "),
    ({"certificate_sha256": "xyz"}, r"references\.ref-t\.certificate_sha256: expected the SHA-256"),
    ({"due_date": "2026-02-01"}, r"references\.ref-t\.due_date: must be after calibration_date"),
    ({"history": [{"calibration_date": "2026-04-01", "points": CERT}]},
     r"references\.ref-t\.history: \[0\]\.calibration_date: an earlier calibration must precede"),
    ({"points": [[10.0, 0.0, 0.02, 2.0], [5.0, 0.0, 0.02, 2.0]]}, r"references\.ref-t\.points: \[1\]: indications"),
    ({"drift": -1.0}, r"references\.ref-t\.drift: "),
    ({"certificate_file": "cert.pdf", "certificate_sha256": None},
     r"references\.ref-t\.certificate_sha256: required with certificate_file"),
])
def test_bad_references_name_their_key(change: dict[str, Any], message: str) -> None:
    doc = config()
    for key, value in change.items():
        if value is None:
            doc["references"]["ref-t"].pop(key)
        else:
            doc["references"]["ref-t"][key] = value
    with pytest.raises(ConfigError, match=message):
        parse_pipeline_config(doc)


def test_one_channel_one_certificate() -> None:
    doc = config()
    doc["reference_certificate"] = {"ref-t": {"points": CERT}}
    with pytest.raises(ConfigError, match=r"references\.ref-t: channel 'ref-t' already has a certificate"):
        parse_pipeline_config(doc)
    doc = config(channel="ref-other")
    with pytest.raises(ConfigError, match=r"comparisons\[0\]\.reference: no certificate for 'ref-t'"):
        parse_pipeline_config(doc)


def test_the_certificate_file_must_hash_to_the_stated_sha256(tmp_path: Path) -> None:
    pdf = tmp_path / "ptb-2026-0815.pdf"
    pdf.write_bytes(b"%PDF-1.7 the certificate")
    good = hashlib.sha256(pdf.read_bytes()).hexdigest()
    path = tmp_path / "pipeline.toml"
    path.write_text(tomli_w.dumps(config(certificate_file=pdf.name, certificate_sha256=good)))
    cfg = load_pipeline_config(path)
    assert cfg.references["ref-t"].certificate_file == pdf.resolve()
    path.write_text(tomli_w.dumps(config(certificate_file=pdf.name, certificate_sha256="0" * 64)))
    with pytest.raises(ConfigError, match=r"references\.ref-t\.certificate_file: the file's SHA-256 is " + good):
        load_pipeline_config(path)
    path.write_text(tomli_w.dumps(config(certificate_file="missing.pdf")))
    with pytest.raises(ConfigError, match=r"references\.ref-t\.certificate_file: cannot read"):
        load_pipeline_config(path)


def test_an_expired_reference_is_refused_unless_allowed(tmp_path: Path) -> None:
    late = T0 + 200 * 86400.0  # 2027-06: after the due date
    with pytest.raises(RemotecalError, match=r"reference ref-t \(due 2027-03-01\) is past its certificate's due date"):
        compute(parse_pipeline_config(config()), run_data(late))
    doc = config()
    doc["run"]["allow_expired_references"] = True
    allowed = parse_pipeline_config(doc)
    results = compute(allowed, run_data(late))
    assert results and all(r.expired_reference and "expired_reference" in r.flags for r in results)
    csv = write_corrections_csv(report_points(allowed, results), tmp_path / "corrections.csv").read_text()
    assert "expired_reference" in csv
    early = T0 - 365 * 86400.0  # before the calibration date: the table did not exist
    with pytest.raises(RemotecalError, match=r"references\.ref-t: the run \(2025-11-26\) precedes"):
        compute(parse_pipeline_config(config(calibration_date="2025-12-01", due_date="2026-12-01")), run_data(early))


def test_drift_from_the_calibration_history() -> None:
    """Largest change between successive calibrations, at the current table's indications:
    2024 -> 2025 changes by at most 0.012, 2025 -> 2026 by at most 0.02 (at 40 degC)."""
    h2024 = [[10.0, 0.060, 0.02, 2.0], [40.0, 0.020, 0.02, 2.0]]
    h2025 = [[10.0, 0.055, 0.02, 2.0], [20.0, 0.040, 0.02, 2.0], [40.0, 0.030, 0.02, 2.0]]
    expected = max(
        max(abs(np.interp(x, [r[0] for r in h2025], [r[1] for r in h2025])
                - np.interp(x, [r[0] for r in h2024], [r[1] for r in h2024])) for x in (10, 20, 30, 40)),
        max(abs(c - np.interp(x, [r[0] for r in h2025], [r[1] for r in h2025])) for x, c, *_ in CERT),
    )
    assert history_drift(CERT, [h2024, h2025]) == pytest.approx(expected)
    assert expected == pytest.approx(0.02)
    doc = config(history=[{"calibration_date": "2024-03-01", "certificate": "A", "points": h2024},
                          {"calibration_date": "2025-03-01", "certificate": "B", "points": h2025}])
    (r, _) = compute(parse_pipeline_config(doc), run_data())
    (drift,) = [c for c in r.budget.components if c.name == "reference drift"]
    assert drift.u == pytest.approx(0.02 / math.sqrt(3))
    assert [h[0] for h in r.references[0].history] == ["A", "B"]
    # without a history: the reference's own drift, else [uncertainty] reference_drift
    (r, _) = compute(parse_pipeline_config(config(drift=0.004)), run_data())
    assert [c.u for c in r.budget.components if c.name == "reference drift"] == [pytest.approx(0.004 / math.sqrt(3))]
    (r, _) = compute(parse_pipeline_config(config()), run_data())
    assert [c.u for c in r.budget.components if c.name == "reference drift"] == [pytest.approx(0.01 / math.sqrt(3))]


def test_interpolation_term_between_rows() -> None:
    """|linear - quadratic through the three nearest rows| at the point's mean indication,
    rectangular; the quadratic by numpy.polyfit as the independent computation."""
    curved = [[10.0, 0.00, 0.02, 2.0], [20.0, 0.06, 0.02, 2.0], [30.0, 0.08, 0.02, 2.0], [40.0, 0.06, 0.02, 2.0]]
    doc = config(points=curved)
    results = compute(parse_pipeline_config(doc), run_data())
    for r in results:
        x = r.reference_mean - r.reference_correction  # the mean indication
        (term,) = [c for c in r.budget.components if c.name == "reference interpolation"]
        three = sorted(curved, key=lambda row: abs(row[0] - x))[:3]  # the nearest three (even spacing)
        q = np.polyval(np.polyfit([c[0] for c in three], [c[1] for c in three], 2), x)
        lin = np.interp(x, [c[0] for c in curved], [c[1] for c in curved])
        assert term.u == pytest.approx(abs(lin - q) / math.sqrt(3), rel=1e-3, abs=1e-9)
    # at a row, or with a straight table, there is none
    results = compute(parse_pipeline_config(config(points=[[10.0, 0.0, 0.02, 2.0], [40.0, 0.03, 0.02, 2.0]])),
                      run_data())
    assert not [c for r in results for c in r.budget.components if c.name == "reference interpolation"]


def test_a_certificate_k_carries_its_dof_into_the_budget() -> None:
    """U = 0.0287 at k = 2.87: nu = 4; a dominant reference then sets nu_eff ~ 4 and k ~ 2.87
    (it was infinity and 2.0: U 30 % too small)."""
    table = [[10.0, 0.0, 0.287, 2.87], [40.0, 0.0, 0.287, 2.87]]
    (r, _) = compute(parse_pipeline_config(config(points=table)), run_data())
    (cal,) = [c for c in r.budget.components if c.name == "reference calibration"]
    assert cal.dof == dof_from_k(2.87) == 4
    assert 4.0 <= r.dof_eff < 5.0 and r.k == pytest.approx(2.87, abs=0.01)


def test_example_config_documents_references() -> None:
    text = Path("deploy/examples/pipeline.toml").read_text()
    doc = tomllib.loads(text)
    parse_pipeline_config(doc)
    assert "[references." in text


@pytest.mark.parametrize("extrapolate", [False, True])
def test_every_span_of_a_stretch_is_corrected_as_apply_certificate_corrects_it(extrapolate: bool) -> None:
    # DUTs settle at different samples of one plateau: the plateau's corrections are made
    # once and each DUT's span takes its slice; every number as apply_certificate's own.
    ref = references_of(parse_pipeline_config(config(extrapolate=extrapolate)))["ref-t"]
    rng = np.random.default_rng(3)
    stretches = {"inside": 20.0 + np.cumsum(rng.normal(0, 0.3, 5000)) * 0.01,
                 "on a row and its ends": np.r_[10.0, rng.uniform(10.0, 40.0, 3000), 20.0, 40.0],
                 "outside at its start": np.r_[45.0, rng.uniform(12.0, 38.0, 3000)],
                 "NaN": np.r_[rng.uniform(12.0, 38.0, 1000), np.nan, rng.uniform(12.0, 38.0, 1000)]}
    for name, x in stretches.items():
        stretch = StretchCorrections("ref-t", ref, x)
        for offset in (0, 1, 7, 333, x.size // 2, x.size - 2, x.size - 1):
            try:
                expected = apply_certificate("ref-t", ref, x[offset:])
            except RemotecalError as e:
                with pytest.raises(RemotecalError, match=re.escape(str(e))):
                    stretch.span(offset)
                continue
            cc, corrected = stretch.span(offset)
            assert cc.correction.tobytes() == expected.correction.tobytes(), (name, offset)
            assert corrected.tobytes() == (x[offset:] + expected.correction).tobytes(), (name, offset)
            assert (cc.extrapolated, cc.dof) == (expected.extrapolated, expected.dof), (name, offset)
            for got, want in ((cc.u, expected.u), (cc.interpolation, expected.interpolation)):
                assert got == want or (math.isnan(got) and math.isnan(want)), (name, offset)


def test_the_interpolation_term_on_python_floats_is_the_numpy_rows_term() -> None:
    # Point by point the certificate's interpolation term is computed on the rows as Python
    # floats; it must be the number (and the numpy type) the numpy rows give.
    from pipelines.reference import _interpolation_at, _interpolation_half_width, _Table

    rng = np.random.default_rng(4)
    tables = [np.asarray(CERT, dtype=np.float64), np.array([[0.0, 0.1, 0.2, 2.0], [10.0, 0.3, 0.2, 2.0]]),
              np.array([[-30.0, 0.021, 0.03, 2.0], [0.0, 0.012, 0.02, 2.0], [30.0, -0.008, 0.02, 2.0],
                        [70.0, -0.031, 0.03, 2.0]])]
    ind = np.sort(rng.uniform(-80.0, 150.0, 9))
    tables.append(np.column_stack([ind, rng.normal(0, 0.05, 9), np.full(9, 0.02), np.full(9, 2.0)]))
    for rows in tables:
        table = _Table(rows)
        ind, corr = rows[:, 0], rows[:, 1]
        xs = [*ind, *(ind[:-1] + np.diff(ind) / 2), *rng.uniform(ind[0] - 5, ind[-1] + 5, 400),
              float(np.nextafter(ind[0], np.inf)), float(np.nextafter(ind[-1], -np.inf))]
        for x in map(float, xs):
            want, got = _interpolation_half_width(ind, corr, x), _interpolation_at(table, x)
            assert type(got) is type(want) and got == want, (rows.shape, x)
        assert any(_interpolation_at(table, float(x)) > 0 for x in xs) == (len(ind) >= 3)


def test_a_dut_settles_from_the_first_stable_window_of_its_last_stretch() -> None:
    """DUT settling (dut_settling): the point starts where the DUT's own last stretch of stable
    windows starts - its first window's first sample - even when an earlier stretch held some
    of those samples.  (Two reference plateaus never share a sample; a DUT's stretches are not
    calibration points.  Before: the DUT's point started up to a window later, and bench.pipeline's
    pandas baseline disagreed on 180 of 198 points.)"""
    from gateway.stability import Criteria, run_rows

    doc = copy.deepcopy(BASE)
    doc["stability"] = {"window_s": 600, "max_std": 0.02, "max_slope_per_min": 1.0, "min_duration_s": 900}
    doc["reference_certificate"] = {"ref-t": {"points": CERT}}
    t = T0 + np.arange(0.0, 4000.0)
    ref = np.full(t.size, 20.0)
    dut = np.where(t >= T0 + 1000.0, 20.15, 20.1)  # a 0.05 K step: windows holding it mid-way fail
    data = {"ref-t": ChannelData(t, ref, "temperature", "degC", "reference"),
            "dut1-t": ChannelData(t, dut, "temperature", "degC", "dut")}
    (point,) = compute(parse_pipeline_config(doc), data)
    (stretches,) = run_rows(Criteria(600.0, 0.02, 1.0), t, [dut], disjoint=False)
    last = stretches.plateaus[-1]
    assert point.t_start_s == t[last.start] < T0 + 1000.0  # its first window holds the step's start
    assert point.n == t.size - last.start
