"""pipelines.plateaus on synthetic chamber runs and against a brute-force reference."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

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


class Criteria(NamedTuple):
    window_s: float
    max_std: float
    max_slope_per_min: float


def window_of(t: np.ndarray, j: int, window_s: float) -> np.ndarray:
    """Indices of the samples in the window ending at sample j: the span [t_j - window_s, t_j]."""
    return np.flatnonzero((t >= t[j] - window_s) & (t <= t[j]))


def window_is_stable(t: np.ndarray, v: np.ndarray, j: int, c: Criteria) -> bool:
    """The module docstring's definitions, directly: complete (gap-free data back to
    t_j - window_s, 3 samples or more), then numpy's std and polyfit against the limits."""
    first = j  # the first sample of j's gap-free segment
    while first > 0 and t[first] - t[first - 1] <= c.window_s:
        first -= 1
    idx = window_of(t, j, c.window_s)
    if t[j] - c.window_s < t[first] or idx.size < 3:
        return False
    std = np.std(v[idx], ddof=1)
    slope = np.polyfit(t[idx] - t[idx[0]], v[idx], 1)[0] * 60.0
    return bool(std <= c.max_std and abs(slope) <= c.max_slope_per_min)


def spec_brute_force(t: np.ndarray, v: np.ndarray, c: Criteria, min_duration_s: float = 0.0) -> list[tuple[int, int]]:
    """SPEC 5's sentence, checked candidate by candidate (no shared code, no run logic).

    A candidate stretch is a span of time [t_a' - window_s, t_b'] for window ends a' <= b';
    the windows of ``window_s`` seconds in it are those whose own spans lie in it; it meets
    the SPEC when every one of them is stable.  The longest are those whose windows are not
    a proper subset of another's; the plateau is the samples in the span.
    """
    n = t.size
    ok = [window_is_stable(t, v, j, c) for j in range(n)]
    valid: set[tuple[int, int]] = set()  # (first, last) window end of each candidate's windows
    for a in range(n):
        for b in range(a, n):
            inside = np.flatnonzero((t - c.window_s >= t[a] - c.window_s) & (t <= t[b]))
            if not all(ok[j] for j in inside):
                break  # a longer candidate holds these windows too
            valid.add((int(inside[0]), int(inside[-1])))
    longest = [(lo, hi) for lo, hi in valid
               if not any(lo2 <= lo and hi <= hi2 and (lo2, hi2) != (lo, hi) for lo2, hi2 in valid)]
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(longest):
        samples = np.flatnonzero((t >= t[lo] - c.window_s) & (t <= t[hi]))
        a, b = int(samples[0]), int(samples[-1]) + 1
        a = max(a, out[-1][1]) if out else a  # two plateaus never share a sample (issue 14)
        if t[b - 1] - t[a] >= min_duration_s:
            out.append((a, b))
    return out


def is_valid_stretch(t: np.ndarray, v: np.ndarray, a: int, b: int, c: Criteria) -> bool:
    """Whether samples a..b-1 are a stretch that meets SPEC 5: exactly the samples of a span
    [t_j - window_s, t_(b-1)] starting with a window j (so every sample is in a window of it)
    in which every window of ``window_s`` seconds is stable."""
    if a < 0 or b > t.size or a >= b:
        return False
    for j in range(a, b):
        lo = t[j] - c.window_s
        samples = np.flatnonzero((t >= lo) & (t <= t[b - 1]))
        if samples[0] != a or samples[-1] != b - 1:
            continue
        inside = np.flatnonzero((t - c.window_s >= lo) & (t <= t[b - 1]))
        if all(window_is_stable(t, v, k, c) for k in inside):
            return True
    return False


def random_run(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Criteria]:
    """A short series that makes plateaus and breaks them: even, uneven (with samples at one
    time) and gappy clocks; levels, ramps, spikes and noise."""
    n = int(rng.integers(12, 60))
    window_s = float(rng.uniform(3.0, 9.0))
    clock = rng.integers(3)
    if clock == 0:
        dt = np.ones(n)
    elif clock == 1:
        dt = rng.uniform(0.2, 3.0, n)
    else:
        dt = rng.choice([0.0, 0.5, 1.0, 1.0, 2.0], n)
    gaps = rng.integers(0, n, rng.integers(0, 3))
    dt[gaps] = rng.uniform(0.5, 2.0, gaps.size) * window_s
    t = 1.7e9 + np.cumsum(dt)
    level = np.repeat(rng.uniform(19.0, 21.0, 4), -(-n // 4))[:n]
    v = level + rng.normal(0.0, 0.01, n) + rng.choice([0.0, 0.02], n) * (t - t[0]) / 60.0
    spikes = rng.integers(0, n, rng.integers(0, 3))
    v[spikes] += rng.normal(0.0, 0.05, spikes.size)
    c = Criteria(window_s, float(rng.uniform(0.008, 0.03)), float(rng.uniform(0.05, 1.0)))
    return t, v, c


@pytest.mark.slow
def test_no_unstable_window_in_a_plateau_and_none_can_grow() -> None:
    """Property, over many short random series: (a) every window in a plateau's stretch is
    stable, (b) adding the sample before or after makes the stretch fail, (c) no sample is in
    two plateaus (a later stretch's samples the one before holds are that one's), and the
    plateaus are the brute force's."""
    found = 0
    for seed in range(400):
        t, v, c = random_run(np.random.default_rng(seed))
        plateaus = find_plateaus(t, v, **c._asdict())
        taken = 0
        for a, b in plateaus:
            assert a >= taken, (seed, (a, b))  # (c) no sample in two plateaus
            a0 = a  # a plateau that starts where the one before ended is the rest of a stretch
            if a == taken and a > 0:  # its stretch: the earliest start of a valid one ending at b
                a0 = next(x for x in range(a + 1) if is_valid_stretch(t, v, x, b, c))
            assert is_valid_stretch(t, v, a0, b, c), (seed, (a, b))  # (a)
            assert not is_valid_stretch(t, v, a0 - 1, b, c), (seed, (a, b))  # (b)
            assert not is_valid_stretch(t, v, a0, b + 1, c), (seed, (a, b))
            taken = b
        assert plateaus == spec_brute_force(t, v, c), seed
        found += len(plateaus)
    assert found > 400  # not vacuous


def test_the_audit_example() -> None:
    """Seed 0, 1 Hz, window 10 s: the window ending at sample 24 (samples 14-24) is unstable
    (slope 0.14/min), so no plateau holds it; chaining windows that share a sample gave (12, 39)."""
    t = np.arange(200.0)
    v = np.cumsum(np.random.default_rng(0).normal(0.0, 0.01, 200))
    c = Criteria(10.0, 0.03, 0.06)
    assert_array_equal(window_of(t, 24, c.window_s), np.arange(14, 25))
    assert not window_is_stable(t, v, 24, c)
    assert_allclose(np.polyfit(t[14:25], v[14:25], 1)[0] * 60.0, 0.1415, atol=1e-4)
    plateaus = find_plateaus(t, v, **c._asdict())
    assert (12, 39) not in plateaus
    assert not [(a, b) for a, b in plateaus if a <= 14 and b >= 25]
    # Stable windows end at 22-23, 29 and 37-38: three stretches, overlapping ones too; the
    # samples of each belong to the earlier plateau (they used to be (12, 24), (19, 30), (27, 39)).
    assert plateaus[1:4] == [(12, 24), (24, 30), (30, 39)]
    assert plateaus == spec_brute_force(t, v, c)


@pytest.mark.slow
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
        c = Criteria(window_s, max_std, max_slope)
        fast = find_plateaus(t, v, **c._asdict(), min_duration_s=min_dur)
        assert fast == spec_brute_force(t, v, c, min_dur)
    assert any(spec_brute_force(t, v, Criteria(20.0, 0.015, 0.1)))  # the comparison is not vacuous


def test_samples_at_one_time_are_never_split() -> None:
    """A window is a span of time: samples at one time are in it together, so a plateau
    neither begins nor ends between them."""
    t = np.repeat(np.arange(0.0, 60.0, 1.0), 2)  # every time twice
    v = 20.0 + np.random.default_rng(5).normal(0.0, 0.01, t.size)
    v[61] += 0.2  # the second reading at t = 30 s is off
    c = Criteria(5.0, 0.02, 1.0)
    plateaus = find_plateaus(t, v, **c._asdict())
    assert plateaus == spec_brute_force(t, v, c)
    assert plateaus[0] == (0, 60) and plateaus[1][0] == 62
    for a, b in plateaus:
        assert a % 2 == 0 and b % 2 == 0
    stats = rolling_stats(t, v, c.window_s)
    assert_array_equal(stats.n[0::2], stats.n[1::2])
    assert_array_equal(stats.std[0::2], stats.std[1::2])
    assert stats.n[61] == window_of(t, 61, c.window_s).size
    assert_allclose(stats.std[60], np.std(v[window_of(t, 61, c.window_s)], ddof=1), rtol=1e-9)


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
    from gateway.stability import _window_starts

    t = 1_795_000_000.0 + np.arange(20_000) * step
    np.testing.assert_array_equal(_window_starts(t, window), np.searchsorted(t, t - window, side="left"))
    uneven = t.copy()
    uneven[5000:] += 0.25 * step
    np.testing.assert_array_equal(_window_starts(uneven, window), np.searchsorted(uneven, uneven - window, side="left"))
