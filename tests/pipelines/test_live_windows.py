"""The windows a remote run recorded live are the calibration points (SPEC section 8,
issue 15 section 3), and the pipeline says where its own detection disagrees."""

from __future__ import annotations

import logging

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
    # the engineer accepted the first point 20 minutes into it, and a window nobody else saw
    shifted = (first.t_start_s + 1200.0, first.t_end_s)
    stray = (first.t_end_s + 100.0, first.t_end_s + 400.0)
    with caplog.at_level(logging.WARNING, logger="pipelines.run"):
        points = compute(cfg, data, live_windows={"ref-t": [shifted, stray]})
    text = caplog.text
    assert "differs from the pipeline's plateau" in text
    assert "meets the criteria nowhere" in text
    assert "was not recorded live" in text  # the second setpoint's plateau
    assert points[0].t_start_s == pytest.approx(shifted[0], abs=1.0)


def test_window_helpers() -> None:
    t = np.arange(0.0, 100.0)
    assert windows_to_plateaus(t, [(10.0, 19.0), (50.5, 50.7), (30.0, 39.5)]) == [(10, 20), (30, 40)]
    assert window_disagreements(t, [(10, 20)], [(10, 20)], 1.0) == []
