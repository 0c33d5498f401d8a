"""pipelines.plateaus on synthetic chamber runs and against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from pipelines.plateaus import find_plateaus, rolling_stats

CRITERIA = {"window_s": 600.0, "max_std": 0.02, "max_slope_per_min": 0.005}
TAU_S = 300.0  # chamber time constant
STEP_S = 3 * 3600.0  # time at each setpoint


def chamber(t: np.ndarray, setpoints: list[float], noise: float, seed: int = 1) -> np.ndarray:
    """First-order chamber response to setpoint steps every STEP_S, plus white noise."""
    rng = np.random.default_rng(seed)
    k = np.minimum((t // STEP_S).astype(int), len(setpoints) - 1)
    sp = np.asarray(setpoints)
    previous = np.where(k > 0, sp[np.maximum(k - 1, 0)], sp[0])
    since = t - k * STEP_S
    v = sp[k] + (previous - sp[k]) * np.exp(-since / TAU_S)
    return v + rng.normal(0.0, noise, t.size)


def check_steps(t: np.ndarray, v: np.ndarray, setpoints: list[float]) -> None:
    plateaus = find_plateaus(t, v, **CRITERIA, min_duration_s=900.0)
    assert len(plateaus) == len(setpoints)
    assert plateaus[0][0] <= 1  # the first setpoint holds from the start of the data
    for k, (a, b) in enumerate(plateaus):
        if k > 0:
            # The least-squares slope of a window is about the exponential's slope at the
            # window's middle, 60 * 10 K / tau * exp(-s / tau); it falls under 0.005 K/min
            # at s = tau ln(400) = 1797 s, so the first stable window ends near 1797 + 300 s
            # and starts near 1497 s after the step.
            settled = k * STEP_S + TAU_S * np.log(400.0) - 300.0
            assert settled - 60.0 <= t[a] <= settled + 120.0
        # The plateau holds to the step, and by the brief's window semantics a few seconds
        # past it: the first samples of the next ramp barely move a 600-sample window.
        step = (k + 1) * STEP_S if k < len(setpoints) - 1 else t[-1]
        assert step - 5.0 <= t[b - 1] <= step + 30.0
        assert_allclose(v[a:b].mean(), setpoints[k], atol=0.01)


def test_chamber_steps_regular_sampling() -> None:
    t = np.arange(0.0, 3 * STEP_S, 1.0)
    v = chamber(t, [10.0, 20.0, 30.0], noise=0.005)
    check_steps(t, v, [10.0, 20.0, 30.0])


def test_chamber_steps_uneven_sampling() -> None:
    rng = np.random.default_rng(7)
    t = np.cumsum(rng.uniform(0.5, 3.0, 25000))
    t = t[t < 3 * STEP_S]
    v = chamber(t, [10.0, 20.0, 30.0], noise=0.005)
    check_steps(t, v, [10.0, 20.0, 30.0])


def test_gap_longer_than_the_window_splits_a_plateau() -> None:
    t = np.arange(0.0, 7200.0, 1.0)
    flat = chamber(t, [20.0], noise=0.005)
    cut = (t > 3000.0) & (t < 3700.0)  # 700 s without data, window 600 s
    plateaus = find_plateaus(t[~cut], flat[~cut], **CRITERIA)
    assert plateaus == [(0, 3001), (3001, int((~cut).sum()))]
    # A shorter dropout (300 s) is spanned by the windows and keeps one plateau.
    cut = (t > 3000.0) & (t < 3300.0)
    assert find_plateaus(t[~cut], flat[~cut], **CRITERIA) == [(0, int((~cut).sum()))]


def test_min_duration_drops_a_short_plateau() -> None:
    t = np.arange(0.0, 1000.0, 1.0)
    v = chamber(t, [20.0], noise=0.005)
    assert find_plateaus(t, v, **CRITERIA, min_duration_s=900.0) == [(0, 1000)]
    assert find_plateaus(t, v, **CRITERIA, min_duration_s=1200.0) == []


def test_slope_criterion_alone_rejects_a_slow_ramp() -> None:
    t = np.arange(0.0, 3600.0, 1.0)
    rng = np.random.default_rng(3)
    v = 20.0 + 0.006 / 60.0 * t + rng.normal(0.0, 1e-4, t.size)
    stats = rolling_stats(t, v, 600.0)
    # The ramp's spread over 600 s is 0.06 K / sqrt(12) = 0.017 K: under max_std.
    assert np.nanmax(stats.std) < CRITERIA["max_std"]
    assert_allclose(stats.slope_per_min[600:], 0.006, rtol=1e-3)
    assert find_plateaus(t, v, **CRITERIA) == []
    assert find_plateaus(t, v, **{**CRITERIA, "max_slope_per_min": 0.007}) == [(0, t.size)]


def test_std_criterion_alone_rejects_noise() -> None:
    t = np.arange(0.0, 3600.0, 1.0)
    v = chamber(t, [20.0], noise=0.03)
    assert find_plateaus(t, v, **CRITERIA) == []
    assert find_plateaus(t, v, **{**CRITERIA, "max_std": 0.05}) == [(0, t.size)]


def test_a_spike_splits_a_plateau() -> None:
    t = np.arange(0.0, 3600.0, 1.0)
    v = chamber(t, [20.0], noise=0.005)
    v[1800] += 1.0
    assert find_plateaus(t, v, **CRITERIA) == [(0, 1800), (1801, t.size)]


def test_windows_need_three_samples() -> None:
    # One sample every 400 s: a 600 s window never holds more than 2.
    t = np.arange(0.0, 20000.0, 400.0)
    assert find_plateaus(t, np.full(t.size, 20.0), **CRITERIA) == []
    # Every 250 s: 3 per window. The first complete window, [150 s, 750 s], starts at the
    # second sample, so the first one is in no complete window and not in the plateau.
    t = np.arange(0.0, 20000.0, 250.0)
    assert find_plateaus(t, np.full(t.size, 20.0), **CRITERIA) == [(1, t.size)]


def test_rolling_stats_match_numpy_on_a_line_plus_noise() -> None:
    rng = np.random.default_rng(11)
    t = 1.7e9 + np.cumsum(rng.uniform(0.2, 2.0, 3000))  # epoch seconds: large offsets
    v = 25.0 + 0.01 * (t - t[0]) / 60.0 + rng.normal(0.0, 0.01, t.size)
    stats = rolling_stats(t, v, 300.0)
    assert np.all(np.isnan(stats.std[t - t[0] < 300.0]))
    for j in (400, 1500, 2999):
        i = stats.start[j]
        assert t[j] - t[i] <= 300.0 and t[j] - t[i - 1] > 300.0
        assert stats.n[j] == j - i + 1
        # Cumulative sums against direct sums: agreement to ~1e-9 relative shows the
        # centring keeps the cancellation harmless even with epoch-second times.
        assert_allclose(stats.std[j], np.std(v[i : j + 1], ddof=1), rtol=1e-9)
        slope = np.polyfit(t[i : j + 1] - t[i], v[i : j + 1], 1)[0] * 60.0
        assert_allclose(stats.slope_per_min[j], slope, rtol=1e-8)


def brute_force(
    t: np.ndarray,
    v: np.ndarray,
    window_s: float,
    max_std: float,
    max_slope_per_min: float,
    min_duration_s: float,
) -> list[tuple[int, int]]:
    """The module docstring's definitions, one window at a time, in plain loops: O(n^2)."""
    n = len(t)
    windows = []
    for j in range(n):
        i = 0
        while t[i] < t[j] - window_s:
            i += 1
        first = j
        while first > 0 and t[first] - t[first - 1] <= window_s:
            first -= 1
        if t[j] - window_s < t[first] or j - i + 1 < 3:
            continue
        xs, ys = t[i : j + 1], v[i : j + 1]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        std = (sum((y - my) ** 2 for y in ys) / (len(ys) - 1)) ** 0.5
        if std <= max_std and abs(sxy / sxx * 60.0) <= max_slope_per_min:
            windows.append((i, j))
    stretches: list[list[int]] = []
    for i, j in windows:
        if stretches and i <= stretches[-1][1]:
            stretches[-1][1] = j
        else:
            stretches.append([i, j])
    return [(a, b + 1) for a, b in stretches if t[b] - t[a] >= min_duration_s]


@pytest.mark.parametrize("seed", range(8))
def test_same_plateaus_as_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dt = rng.uniform(0.5, 2.0, 400)
    dt[rng.integers(0, 400, 2)] = rng.uniform(15.0, 40.0, 2)  # gaps, some over the window
    t = np.cumsum(dt)
    level = np.repeat(rng.uniform(10.0, 30.0, 8), 50)
    v = level + rng.normal(0.0, 0.01, 400) + 0.002 * np.sin(t / 7.0)
    for window_s, max_std, max_slope, min_dur in [
        (20.0, 0.012, 0.05, 0.0),
        (20.0, 0.015, 0.1, 30.0),
        (10.0, 0.01, 0.2, 0.0),
    ]:
        fast = find_plateaus(
            t,
            v,
            window_s=window_s,
            max_std=max_std,
            max_slope_per_min=max_slope,
            min_duration_s=min_dur,
        )
        slow = brute_force(t, v, window_s, max_std, max_slope, min_dur)
        assert fast == slow
    assert any(brute_force(t, v, 20.0, 0.015, 0.1, 0.0))  # the comparison is not vacuous


def test_empty_and_invalid_input() -> None:
    assert find_plateaus([], [], **CRITERIA) == []
    with pytest.raises(ValueError, match="sorted"):
        find_plateaus([0.0, 2.0, 1.0], [1.0, 1.0, 1.0], **CRITERIA)
    with pytest.raises(ValueError, match="one length"):
        find_plateaus([0.0, 1.0], [1.0], **CRITERIA)
    with pytest.raises(ValueError, match="finite"):
        find_plateaus([0.0, 1.0], [1.0, float("nan")], **CRITERIA)
    with pytest.raises(ValueError, match="window_s"):
        rolling_stats([0.0, 1.0], [1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        find_plateaus([0.0], [1.0], window_s=10.0, max_std=-1.0, max_slope_per_min=1.0)


@pytest.mark.parametrize(("step", "window"), [(1.0, 600.0), (0.1, 0.3), (0.1, 60.0), (1 / 3, 10.0), (2.5, 7.5)])
def test_window_starts_closed_form_equals_the_search(step: float, window: float) -> None:
    """Evenly sampled series take a closed form; it must equal searchsorted exactly, also where
    t - window_s rounds across a sample."""
    from pipelines.plateaus import _window_starts

    t = 1_795_000_000.0 + np.arange(20_000) * step
    np.testing.assert_array_equal(_window_starts(t, window), np.searchsorted(t, t - window, side="left"))
    uneven = t.copy()
    uneven[5000:] += 0.25 * step
    np.testing.assert_array_equal(_window_starts(uneven, window), np.searchsorted(uneven, uneven - window, side="left"))
