"""`remotecal pipeline run` on a run that gives no calibration point: exit 1 with one line,
no certificate, no results left from an earlier run, a diagnosis as report.html."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from gateway.reading import Reading
from pipelines.pipeline import NoCalibrationPoint, run_pipeline
from remotecal.cli import main

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not

RUN = "RC-NOPLATEAU-1"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC).timestamp()
STEP_S = 10.0

CONFIG = """\
[run]
id = "{run}"

[source]
kind = "local"
path = "store.db"

[stability]
window_s = {window_s}
max_std = {max_std}
max_slope_per_min = 0.005
min_duration_s = {min_duration_s}

[[comparisons]]
dut = "dut*-t"
reference = "ref-t"
quantity = "temperature"

[reference_certificate.ref-t]
points = [[0.0, 0.05, 0.02, 2.0], [40.0, 0.01, 0.02, 2.0]]

[uncertainty]
reference_drift = 0.01
dut_resolution = 0.01
chamber_inhomogeneity = 0.03

[curve]
degree = 1
"""


def chamber_readings(*, dut_between_s: tuple[float, float] | None = None) -> list[Reading]:
    """10, 20 and 30 degC for 30 min each with 10 min ramps, one reading every 10 s: a
    reference (noise 0.003 degC) and two DUTs; with ``dut_between_s`` the DUTs read only
    between these times after the start."""
    rng = np.random.default_rng(3)
    knots_t = T0 + np.array([0.0, 1800.0, 2400.0, 4200.0, 4800.0, 6600.0])
    knots_v = np.array([10.0, 10.0, 20.0, 20.0, 30.0, 30.0])
    t = np.arange(T0, knots_t[-1], STEP_S)
    true = np.interp(t, knots_t, knots_v)
    channels = {"ref-t": ("reference", true + rng.normal(0.0, 0.003, t.size))}
    for name, offset in (("dut1-t", 0.15), ("dut2-t", -0.08)):
        channels[name] = ("dut", np.round(true + offset + rng.normal(0.0, 0.01, t.size), 2))
    out = []
    for name, (role, values) in channels.items():
        for ts, v in zip(t, values, strict=True):
            if role == "dut" and dut_between_s is not None and not (
                    dut_between_s[0] <= ts - T0 <= dut_between_s[1]):
                continue
            out.append(Reading("lab1", "gw01", RUN, name, "temperature", "degC", role, float(v), round(ts * 1e9)))
    return out


def make_store(folder: Path, readings: list[Reading]) -> None:
    from gateway.sinks.local.store import LocalStoreConfig, LocalStoreSink

    sink = LocalStoreSink(LocalStoreConfig(path=folder / "store.db"))

    async def fill() -> None:
        await sink.write(readings)
        await sink.aclose()

    asyncio.run(fill())


def write_config(folder: Path, name: str = "pipeline.toml", *, window_s: float = 600.0, max_std: float = 0.02,
                 min_duration_s: float = 900.0) -> Path:
    p = folder / name
    p.write_text(CONFIG.format(run=RUN, window_s=window_s, max_std=max_std, min_duration_s=min_duration_s))
    return p


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("store")
    make_store(folder, chamber_readings())
    return folder


def run_cli(config: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = main(["pipeline", "run", "-c", str(config), "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def test_no_plateau_exits_1_names_the_criteria_and_leaves_no_results(
    store: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out = store / "out"
    # An earlier run of the same run id calibrated: all its results are in DIR.
    code, stdout, err = run_cli(write_config(store), out, capsys)
    assert code == 0 and err == []
    before = {p.name for p in out.iterdir()}
    assert {"corrections.csv", "curve.csv", "certificate.xml", "report.html"} <= before

    # Then the criteria tighten below the reference's noise (0.003 degC): no plateau.
    strict = write_config(store, "strict.toml", max_std=0.001)
    with caplog.at_level(logging.WARNING, logger="pipelines.pipeline"):
        code, stdout, err = run_cli(strict, out, capsys)
    assert code == 1
    assert stdout == ""
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith(f"remotecal: run {RUN!r} has no calibration point, nothing to certify")
    assert ("ref-t with [stability] window_s = 600, max_std = 0.001, max_slope_per_min = 0.005, "
            "min_duration_s = 900: no 600 s window met both limits; the steadiest, ending ") in line
    assert line.endswith(f"; diagnosis in {out / 'report.html'}")

    # Nothing that could pass for this run's results is left; the earlier ones are logged.
    assert {p.name for p in out.iterdir()} == {"report.html"}
    assert any("removed corrections.csv, curve.csv, certificate.xml, certificate.html, certificate.pdf of an "
               "earlier run" in r.getMessage()
               for r in caplog.records)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f'<h1 id="no-calibration">No calibration point: run {RUN}</h1>' in page
    assert "certificate-sha256" not in page and "certificate-id" not in page
    assert page.count('<img class="plot"') == 1  # the reference's trace, std and slope
    assert "max_std = 0.001" in page  # the config, verbatim

    # The steadiest window's figures are the reference's own, checked with numpy.
    with pytest.raises(NoCalibrationPoint) as caught:
        run_pipeline(strict, out)
    (d,) = caught.value.diagnoses
    assert d.plateaus == [] and d.stretches == [] and d.steadiest is not None
    t, v = d.reference.t_s, d.reference.values
    j = d.steadiest
    window = (t >= t[j] - 600.0) & (t <= t[j])
    std = np.std(v[window], ddof=1)
    slope = abs(np.polyfit(t[window] - t[j], v[window], 1)[0]) * 60.0
    end = datetime.fromtimestamp(t[j], UTC).isoformat().replace("+00:00", "Z")
    assert f"ending {end}, had std {std:.3g} degC and |slope| {slope:.3g} degC/min" in line
    # ... and no window is nearer both limits.
    std_all, slope_all = d.stats.std, np.abs(d.stats.slope_per_min)
    nearness = np.fmax(std_all / 0.001, slope_all / 0.005)
    assert np.nanmin(nearness) == nearness[j] > 1.0

    # A run that calibrates again writes its results as before.
    code, stdout, err = run_cli(write_config(store), out, capsys)
    assert code == 0 and {p.name for p in out.iterdir()} == before
    assert "No calibration point" not in (out / "report.html").read_text(encoding="utf-8")


def test_stable_but_shorter_than_min_duration(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(store, "long.toml", min_duration_s=3600.0)
    code, _, err = run_cli(config, store / "out-long", capsys)
    assert code == 1 and len(err) == 1
    m = re.search(r"ref-t with \[stability\] .* min_duration_s = 3600: stable for at most (\d+) s at a time, "
                  r"under min_duration_s 3600 s", err[0])
    assert m, err[0]
    # 30 min plateaus: stable from one window after the ramp ends to the next ramp.
    assert 1100 <= int(m.group(1)) <= 1800
    assert not (store / "out-long" / "certificate.xml").exists()
    assert not (store / "out-long" / "corrections.csv").exists()
    assert "stable for at most" in (store / "out-long" / "report.html").read_text(encoding="utf-8")


def test_no_complete_window(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(store, "wide.toml", window_s=20000.0, min_duration_s=0.0)
    code, _, err = run_cli(config, store / "out-wide", capsys)
    assert code == 1 and len(err) == 1
    assert "ref-t with [stability] window_s = 20000" in err[0]
    assert ": no complete 20000 s window (660 readings over 6590 s;" in err[0]


def test_plateaus_but_no_dut_reading_in_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_store(tmp_path, chamber_readings(dut_between_s=(2000.0, 2300.0)))  # the DUTs read during a ramp
    code, _, err = run_cli(write_config(tmp_path), tmp_path / "out", capsys)
    assert code == 1 and len(err) == 1
    assert ": 3 plateau(s), but no DUT channel has 2 readings in any of them; diagnosis in" in err[0]
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report.html"}


def test_diagnosis_of_a_dew_point_reference() -> None:
    """The RH computed from a mirror and a thermometer is what plateaus are found on: the
    diagnosis names both channels, the comparison's own criteria and %rh."""
    from pipelines.config import parse_pipeline_config
    from pipelines.report import build_diagnosis
    from pipelines.run import compute, diagnose_stability
    from tests.pipelines.test_dewpoint import config, make_data

    doc = config()
    doc["comparisons"][0]["stability"]["max_std"] = 0.001
    cfg = parse_pipeline_config(doc)
    data = make_data()
    assert compute(cfg, data) == []
    (d,) = diagnose_stability(cfg, data)
    assert d.label == "mirror-td + ref-t (RH)"
    assert d.criteria.startswith("comparisons[0].stability window_s = 600, max_std = 0.001, ")
    assert re.fullmatch(r"no 600 s window met both limits; the steadiest, ending \S+Z, had std \S+ %rh "
                        r"and \|slope\| \S+ %rh/min", d.summary()), d.summary()
    page = build_diagnosis([d], cfg, config_text="", software_version="test")
    assert "<b>mirror-td + ref-t (RH)</b>: no 600 s window met both limits" in page


def test_a_run_without_curve_removes_an_earlier_curve_csv(
    tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    code, _, _ = run_cli(write_config(store, "with-curve.toml"), out, capsys)
    assert code == 0 and (out / "curve.csv").is_file()
    no_curve = store / "no-curve.toml"
    no_curve.write_text((store / "with-curve.toml").read_text().replace("[curve]\ndegree = 1\n", ""))
    with caplog.at_level(logging.WARNING, logger="pipelines.pipeline"):
        code, _, err = run_cli(no_curve, out, capsys)
    assert code == 0, err
    assert not (out / "curve.csv").exists()
    assert {"corrections.csv", "certificate.xml", "report.html"} <= {p.name for p in out.iterdir()}
    assert any("removed curve.csv of an earlier run" in r.getMessage() for r in caplog.records)


def test_a_dut_without_points_is_named_in_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # dut2-t reads only during the first ramp: the run is certified for dut1-t alone.
    readings = [r for r in chamber_readings()
                if r.channel != "dut2-t" or 2000.0 <= r.time_ns / 1e9 - T0 <= 2300.0]
    make_store(tmp_path, readings)
    code, stdout, _ = run_cli(write_config(tmp_path), tmp_path / "out", capsys)
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].startswith("3 calibration point(s) for 1 DUT channel(s)")
    assert "no calibration point for 1 DUT channel(s): dut2-t (not on the certificate; see the warnings)" in lines
    # and the report says why, point by point: not only the log
    page = (tmp_path / "out" / "report.html").read_text()
    findings = re.search(r'<ul id="findings">(.*?)</ul>', page, re.S)
    assert findings is not None
    items = re.findall(r"<li>(.*?)</li>", findings.group(1))
    assert len(items) == 3 and all(i.startswith("dut2-t: no DUT readings in plateau ") for i in items), items
