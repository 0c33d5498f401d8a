"""A run that fails part-way leaves DIR as it was: no new results beside stale ones (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from remotecal.cli import main
from tests.pipelines.test_run import local_run_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return local_run_config(tmp_path)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_failure_part_way_leaves_the_earlier_results_untouched(
        config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["pipeline", "run", "-c", str(config), "--out", str(out)]) == 0
    before = _snapshot(out)
    assert {"corrections.csv", "certificate.xml", "report.html", "certificate.html", "certificate.pdf"} <= set(before)

    # The same run with [curve] (a new curve.csv, other content) fails while writing the report.
    config.write_text(config.read_text() + "\n[curve]\ndegree = 1\n")
    import pipelines.report as report

    def broken(*args: object, **kwargs: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "build_report", broken)
    assert main(["pipeline", "run", "-c", str(config), "--out", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert _snapshot(out) == before  # no curve.csv, no new corrections.csv: the old set, whole

    monkeypatch.undo()
    assert main(["pipeline", "run", "-c", str(config), "--out", str(out)]) == 0
    after = _snapshot(out)
    assert "curve.csv" in after and after["corrections.csv"] != before["corrections.csv"]
    assert not [p for p in out.iterdir() if p.name.startswith(".remotecal-results-")]
