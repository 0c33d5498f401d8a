"""The windows a remote run recorded live are the calibration points (SPEC section 8,
issue 15 section 3), and the pipeline says where its own detection disagrees."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from gateway.stability import Criteria, StabilityTracker
from pipelines.config import parse_pipeline_config
from pipelines.run import compute, window_disagreements, windows_to_plateaus
from tests.pipelines.test_references import BASE, CERT, run_data


def config():
    doc = {**BASE, "reference_certificate": {"ref-t": {"points": CERT}}}
    return parse_pipeline_config(doc)


def test_windows_streamed_at_the_edge_give_the_pipelines_own_points() -> None:
    """The gateway's tracker, fed reading by reading, records windows; the pipeline given those
    windows computes exactly the points it finds by itself."""
    cfg, data = config(), run_data()
    ref = data["ref-t"]
    st = cfg.stability
    tracker = StabilityTracker(Criteria(st.window_s, st.max_std, st.max_slope_per_min, st.min_duration_s))
    live = []
    for t, v in zip(ref.t_s.tolist(), ref.values.tolist(), strict=True):
        live += [(p.t_start_s, p.t_end_s) for p in tracker.push(t, v).plateaus]
    live += [(p.t_start_s, p.t_end_s) for p in tracker.close().plateaus]
    own = compute(cfg, data)
    recorded = compute(cfg, data, live_windows={"ref-t": live})
    assert len(live) == 2 and recorded == own


def test_disagreements_are_named(caplog: pytest.LogCaptureFixture) -> None:
    cfg, data = config(), run_data()
    own = compute(cfg, data)
    first = own[0]
    # the engineer accepted a window across the change to the second setpoint, and a window
    # nobody else saw
    shifted = (first.t_start_s + 1200.0, own[1].t_start_s + 600.0)
    stray = (first.t_end_s + 100.0, first.t_end_s + 400.0)
    findings: list[str] = []
    with caplog.at_level(logging.WARNING, logger="pipelines.run"):
        compute(cfg, data, live_windows={"ref-t": [shifted, stray]}, findings=findings)
    text = caplog.text
    assert "differs from the pipeline's plateau" in text
    assert "meets the criteria nowhere" in text
    # and they are findings, which report.html lists (not only in the log)
    assert any("differs from the pipeline's plateau" in f for f in findings)
    assert any("meets the criteria nowhere" in f for f in findings)
    assert all(f in text for f in findings), "each finding is logged too"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipelines.run"):
        compute(cfg, data, live_windows={"ref-t": [(first.t_start_s + 1200.0, first.t_end_s)]})
    assert "was not recorded live" in caplog.text  # the second setpoint's plateau
    assert "differs" not in caplog.text  # a window inside the first plateau agrees


def test_window_helpers() -> None:
    t = np.arange(0.0, 100.0)
    assert windows_to_plateaus(t, [(10.0, 19.0), (50.5, 50.7), (30.0, 39.5)]) == [(10, 20), (30, 40)]
    assert window_disagreements(t, [(10, 20)], [(10, 20)], 1.0) == []


def test_windows_inside_the_pipelines_plateaus_agree() -> None:
    """The run engine records a step's window once stability is proven and for record_s: inside
    the plateau the pipeline finds, which starts a window earlier and goes on after it; a
    quantity held through several steps (the temperature of a humidity sweep) is one plateau
    holding every step's window.  None of that is a disagreement (it was one for every window
    of every remote run); a window reaching out of the plateau still is."""
    t = np.arange(0.0, 100.0)
    own = [(0, 100)]
    live = windows_to_plateaus(t, [(12.0, 20.0), (32.0, 40.0), (52.0, 60.0)])
    assert window_disagreements(t, own, live, 5.0) == []
    assert window_disagreements(t, [(10, 50), (60, 90)], windows_to_plateaus(t, [(20.0, 30.0), (70.0, 80.0)]),
                                5.0) == []
    early = window_disagreements(t, [(20, 50)], windows_to_plateaus(t, [(5.0, 40.0)]), 5.0)
    late = window_disagreements(t, [(20, 50)], windows_to_plateaus(t, [(30.0, 60.0)]), 5.0)
    across = window_disagreements(t, [(10, 40), (50, 90)], windows_to_plateaus(t, [(30.0, 60.0)]), 5.0)
    for text in (early, late, across):
        assert len(text) == 1 and "differs from the pipeline's plateau" in text[0]


async def test_windows_recorded_live_are_read_back_from_the_local_store(tmp_path: Path) -> None:
    """The gateway's run_window points, through the local store's sink, are what the pipeline
    reads as the run's live windows (by channel, in seconds, exact); other runs' and other
    measurements' points are not."""
    from gateway.reading import Point
    from gateway.sinks.local.store import LocalStoreConfig, LocalStoreSink
    from pipelines.source import live_windows

    def window(run: str, channel: str, start: int, end: int, measurement: str = "run_window") -> Point:
        return Point(measurement, "lab1", "gw01", run, end, {"step": 0, "start": start, "end": end, "n": 5},
                     (("channel", channel),))

    t0 = 1_800_000_000_123_456_789
    sink = LocalStoreSink(LocalStoreConfig(path=tmp_path / "store.db"))
    await sink.write([window("RC-1", "ref-t", t0 + 600 * 10**9, t0 + 900 * 10**9), window("RC-1", "ref-t", t0, t0 + 300),
                      window("RC-1", "ref-rh", t0, t0 + 10**9), window("RC-2", "ref-t", t0, t0 + 5),
                      window("RC-1", "ref-t", t0, t0 + 7, "run_event")])
    await sink.aclose()
    doc = {**BASE, "reference_certificate": {"ref-t": {"points": CERT}}, "run": {"id": "RC-1"},
           "source": {"kind": "local", "path": str(tmp_path / "store.db")}}
    cfg = parse_pipeline_config(doc)
    assert live_windows(cfg) == {"ref-t": [(t0 / 1e9, (t0 + 300) / 1e9), ((t0 + 600 * 10**9) / 1e9, (t0 + 900 * 10**9) / 1e9)],
                                 "ref-rh": [(t0 / 1e9, (t0 + 10**9) / 1e9)]}
    doc["source"] = {**doc["source"], "live_windows": False}
    assert live_windows(parse_pipeline_config(doc)) == {}


@pytest.mark.parametrize("record_s", [600.0, 300.0])
def test_a_window_recorded_live_shorter_than_the_pipelines_min_duration_gives_the_dut_its_point(
        record_s: float) -> None:
    """As a remote run records them: the step's window starts once the reference was stable
    over window_s (600 s) and lasts record_s - shorter than [stability] min_duration_s (900 s),
    as in the shipped examples (record_s 600 against window_s 600 + min_duration_s 900).  The
    DUT (stable, reading 0.1 K high) gets its point in each window, and the stated U covers
    its true correction.  Before: every DUT point of such a run was lost (the DUT's own
    settling check wanted window_s + min_duration_s inside the window)."""
    cfg, data = config(), run_data()
    own = compute(cfg, data)
    live = [(p.plateau_start_s + 600.0, p.plateau_start_s + 600.0 + record_s) for p in own]
    findings: list[str] = []
    points = compute(cfg, data, live_windows={"ref-t": live}, findings=findings)
    assert len(points) == len(own) == 2, findings
    for p, (w0, w1) in zip(points, live, strict=True):
        assert w0 <= p.t_start_s and p.t_end_s <= w1
        assert abs(p.correction - (-0.1)) <= p.U
    assert not [f for f in findings if "no point" in f]
