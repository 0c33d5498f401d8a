"""A small synthetic calibration run, computed by the real pipeline, for the report and DCC tests.

Three plateaus (10, 20, 30 degC and 30, 50, 70 %rh; 30 min each, 10 min ramps, one sample
every 10 s). Two temperature DUTs compared with ``ref-t`` (whose certificate starts at
10 degC and is allowed to extrapolate, so the first point is flagged), one humidity DUT with
``ref-rh``.
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from pipelines.certificate.issue import Issued
from pipelines.config import PipelineConfig, parse_pipeline_config
from pipelines.curve import Curve
from pipelines.run import PointResult, compute
from pipelines.source import ChannelData

HERE = Path(__file__).parent
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC).timestamp()
PLATEAU_S = 1800.0
RAMP_S = 600.0
STEP_S = 10.0

CONFIG_TEXT = (HERE / "pipeline_example.toml").read_text(encoding="utf-8").replace(
    'points = [[10.0, 0.05',
    'extrapolate = true\npoints = [[10.0, 0.05',
) + """
[[comparisons]]
dut = "dut1-rh"
reference = "ref-rh"
quantity = "relative_humidity"

[reference_certificate.ref-rh]
points = [[0.0, 0.5, 1.0, 2.0], [100.0, 0.2, 1.0, 2.0]]
"""


@dataclass(frozen=True)
class SyntheticRun:
    results: list[PointResult]
    data: dict[str, ChannelData]
    cfg: PipelineConfig
    config_text: str


def _profile(t: np.ndarray, setpoints: tuple[float, ...]) -> np.ndarray:
    knots_t, knots_v = [T0], [setpoints[0]]
    at = T0
    for i, sp in enumerate(setpoints):
        at += PLATEAU_S
        knots_t.append(at)
        knots_v.append(sp)
        if i + 1 < len(setpoints):
            at += RAMP_S
            knots_t.append(at)
            knots_v.append(setpoints[i + 1])
    return np.interp(t, knots_t, knots_v)


def make_run() -> SyntheticRun:
    rng = np.random.default_rng(7)
    end = T0 + 3 * PLATEAU_S + 2 * RAMP_S
    t = np.arange(T0, end, STEP_S)
    temp = _profile(t, (10.0, 20.0, 30.0))
    rh = _profile(t, (30.0, 50.0, 70.0))

    def noisy(v: np.ndarray, sd: float) -> np.ndarray:
        return v + rng.normal(0.0, sd, v.size)

    data = {
        "ref-t": ChannelData(t, noisy(temp - 0.04, 0.003), "temperature", "degC", "reference"),
        "dut1-t": ChannelData(t + 1.0, np.round(noisy(temp + 0.15, 0.01), 2), "temperature", "degC", "dut"),
        "dut2-t": ChannelData(t + 1.0, np.round(noisy(temp - 0.08, 0.01), 2), "temperature", "degC", "dut"),
        "ref-rh": ChannelData(t, noisy(rh - 0.4, 0.003), "relative_humidity", "%rh", "reference"),
        "dut1-rh": ChannelData(t + 1.0, np.round(noisy(rh + 1.2, 0.02), 1), "relative_humidity", "%rh", "dut"),
    }
    cfg = parse_pipeline_config(tomllib.loads(CONFIG_TEXT))
    return SyntheticRun(compute(cfg, data), data, cfg, CONFIG_TEXT)


@pytest.fixture(autouse=True)
def _pdf_without_chromium(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pipeline run` prints certificate.pdf with headless Chromium, about 1 s a run: in the
    tests that run the pipeline for other reasons, a stand-in writes a placeholder PDF.  Tests
    marked ``real_pdf`` (tests/pipelines/test_printable.py) print with Chromium."""
    if request.node.get_closest_marker("real_pdf"):
        return
    import pipelines.certificate.printable as printable

    def placeholder(html_file: Path, pdf_file: Path) -> Path:
        pdf_file.write_bytes(b"%PDF-1.4\n% placeholder: the test did not print with Chromium\n")
        return pdf_file

    monkeypatch.setattr(printable, "print_pdf", placeholder)


@pytest.fixture(scope="session")
def synthetic_run() -> SyntheticRun:
    return make_run()


def issue(results: list[PointResult], cfg: PipelineConfig, *, data: dict[str, ChannelData] | None = None,
          curves: Mapping[str, Curve] | None = None, version: str = "test") -> Issued:
    """The certificate of ``results`` as `pipeline run` issues it (validated against the shipped
    schema), numbered in a register of its own."""
    from pipelines.certificate.issue import issue_certificate

    with tempfile.TemporaryDirectory() as folder:
        return issue_certificate(results, cfg, config_path=Path(folder) / "pipeline.toml",
                                 software_version=version, data=data, curves=curves)
