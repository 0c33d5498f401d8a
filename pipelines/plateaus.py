"""Stable plateaus of a chamber run: where the reference is steady enough to compare against.

A calibration point is only as good as the stability of the reference during it, so the
criteria are the ones a laboratory writes in its procedure (SPEC sections 5 and 7): over
every window of ``window_s`` seconds, the standard deviation and the least-squares slope of the
reference stay under limits.

Definitions used here (all times in seconds, on the samples' own, possibly uneven, clock):

- The window ending at sample j holds the samples i with t_i >= t_j - window_s (a closed
  interval [t_j - window_s, t_j]).
- A gap is a step t_k - t_(k-1) longer than ``window_s``: no window spans one.
- The window is complete when gap-free data reach back to t_j - window_s. Windows at the
  start of the series or right after a gap are incomplete, and so are windows with fewer
  than 3 samples; incomplete windows are never stable.
- A window is stable when its sample standard deviation (ddof=1) is <= ``max_std`` and the
  absolute value of its least-squares slope, times 60, is <= ``max_slope_per_min``.
- Stable windows that share at least one sample chain into a stretch: the plateau runs
  from the first sample of its first window to the last sample of its last one. A sample
  that makes every window around it unstable (a spike, a step) therefore splits a plateau,
  and so does a gap, since windows on either side of it cannot share a sample.

Windowed sums come from cumulative sums of t, v, t^2, t v and v^2 (centred on the series'
first time and mean value, which keeps the cancellation in the differences small for runs of
days at 1 Hz), and window bounds in closed form for evenly sampled series (O(n)) or from one
`numpy.searchsorted` otherwise (O(n log n)); vectorised, no loop over samples.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["RollingStats", "find_plateaus", "rolling_stats"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

MIN_SAMPLES = 3
"""Fewest samples in a stable window: two points always fit a line exactly."""


class RollingStats(NamedTuple):
    """Statistics of the window ending at each sample, as arrays of the series' length.

    ``std`` and ``slope_per_min`` are NaN where the window is incomplete (see module
    docstring) or holds fewer than 3 samples, so that a NaN reads "not enough data yet".
    """

    start: IntArray
    """Index of the window's first sample."""
    n: IntArray
    """Number of samples in the window."""
    std: FloatArray
    """Sample standard deviation (ddof=1) [unit of values]."""
    slope_per_min: FloatArray
    """Least-squares slope [unit of values / min]."""


def _validate(t_s: npt.ArrayLike, values: npt.ArrayLike, window_s: float) -> tuple[FloatArray, FloatArray]:
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.ndim != 1 or t.shape != v.shape:
        raise ValueError(f"t_s and values must be 1-D arrays of one length, not {t.shape} and {v.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
        raise ValueError("t_s and values must be finite (no NaN or inf)")
    if np.any(np.diff(t) < 0):
        raise ValueError("t_s must be sorted in increasing order")
    if not (window_s > 0 and np.isfinite(window_s)):
        raise ValueError(f"window_s must be a positive number of seconds, not {window_s!r}")
    return t, v


def _prefix(x: FloatArray) -> FloatArray:
    """Cumulative sum with a leading zero: sum of x[i:j+1] is out[j+1] - out[i]."""
    out = np.zeros(x.size + 1)
    np.cumsum(x, out=out[1:])
    return out


def rolling_stats(t_s: npt.ArrayLike, values: npt.ArrayLike, window_s: float) -> RollingStats:
    """Standard deviation and least-squares slope over the window ending at each sample.

    Sample variance s^2 = (S_vv - S_v^2/n) / (n - 1) and slope b = S_tv' / S_tt' with
    S_tt' = S_tt - S_t^2/n and S_tv' = S_tv - S_t S_v/n (ordinary least squares; e.g.
    JCGM 100:2008 (GUM) H.3 for the same sums), from windowed sums of cumulative sums.

    Parameters
    ----------
    t_s : array [s]
        Sample times, non-decreasing (uneven spacing allowed), e.g. epoch seconds.
    values : array [unit]
        Readings, e.g. the reference temperature [degC].
    window_s : float [s]
        Window length.

    Returns
    -------
    RollingStats
        ``start``, ``n``, ``std`` [unit] and ``slope_per_min`` [unit/min] per window end.
    """
    t, v = _validate(t_s, values, window_s)
    if t.size == 0:
        empty = np.zeros(0)
        return RollingStats(np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp), empty, empty)
    end = np.arange(t.size)
    start = _window_starts(t, window_s)
    n = end - start + 1

    gap = np.diff(t) > window_s
    segment_first = np.flatnonzero(np.concatenate(([True], gap)))
    segment_start = segment_first[np.cumsum(np.concatenate(([0], gap.astype(np.intp))))]
    complete = (t - window_s >= t[segment_start]) & (n >= MIN_SAMPLES)

    tc = t - t[0]
    vc = v - v.mean()
    sums = [_prefix(x) for x in (tc, vc, tc * tc, tc * vc, vc * vc)]
    s_t, s_v, s_tt, s_tv, s_vv = (s[end + 1] - s[start] for s in sums)
    nf = n.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ss_v = np.maximum(s_vv - s_v * s_v / nf, 0.0)
        ss_t = s_tt - s_t * s_t / nf
        sp_tv = s_tv - s_t * s_v / nf
        std = np.sqrt(ss_v / (nf - 1.0))
        slope = np.where(ss_t > 0, sp_tv / ss_t, np.nan) * 60.0
    std = np.where(complete, std, np.nan)
    slope = np.where(complete, slope, np.nan)
    return RollingStats(start, n, std, slope)


def _window_starts(t: FloatArray, window_s: float) -> IntArray:
    """Index of the first sample of the window ending at each sample:
    ``searchsorted(t, t - window_s, side="left")``.

    Evenly sampled series (the usual logger output) take a closed form, checked exactly
    against the definition, instead of a binary search per sample (5x faster at 1e6 samples);
    anything else, or a check that fails, takes the search.
    """
    keys = t - window_s
    if t.size > 2:
        step = t[1] - t[0]
        if step > 0 and np.all(np.diff(t) == step):
            start = np.arange(t.size, dtype=np.intp)
            start -= int(np.floor(window_s / step))
            np.maximum(start, 0, out=start)
            below = start - 1
            if bool(np.all(t[start] >= keys)) and bool(np.all((below < 0) | (t[below] < keys))):
                return start
            # one sample too early, by rounding of t - window_s: correct where needed
            start += t[start] < keys
            below = start - 1
            if bool(np.all(t[start] >= keys)) and bool(np.all((below < 0) | (t[below] < keys))):
                return start
    return np.searchsorted(t, keys, side="left").astype(np.intp)


def _stable_window_ends(
    t: FloatArray, v: FloatArray, window_s: float, max_std: float, max_slope_per_min: float
) -> tuple[npt.NDArray[np.bool_], IntArray]:
    """`rolling_stats` reduced to the two comparisons, without square roots or divisions.

    s <= max_std  <=>  SS_v <= max_std^2 (n - 1), and |b| 60 <= max_slope  <=>
    |SP_tv| 60 <= max_slope SS_t (SS_t > 0 for n >= 3 distinct times).  The windows' upper
    ends are the samples themselves, so the upper cumulative sums are plain slices and only
    the lower ends are gathered; every operation works in place on as few temporaries as it
    can.  Same definitions as `rolling_stats` (its test compares them).
    """
    start = _window_starts(t, window_s)
    if t.size == 0:
        return np.zeros(0, dtype=np.bool_), start
    nf = np.arange(1, t.size + 1, dtype=np.float64)
    nf -= start
    gap = np.diff(t) > window_s
    if gap.any():
        segment_first = np.flatnonzero(np.concatenate(([True], gap)))
        segment_start = segment_first[np.cumsum(np.concatenate(([0], gap.astype(np.intp))))]
        complete = t - window_s >= t[segment_start]
    else:
        complete = t - window_s >= t[0]
    complete &= nf >= MIN_SAMPLES
    tc = t - t[0]
    vc = v - v.mean()

    def window_sum(x: FloatArray) -> FloatArray:
        c = _prefix(x)
        out = c[1:].copy()
        out -= c[start]
        return out

    s_t = window_sum(tc)
    s_v = window_sum(vc)
    s_vv = window_sum(vc * vc)
    # SS_v = S_vv - S_v^2 / n
    ss_v = s_v * s_v
    ss_v /= nf
    np.subtract(s_vv, ss_v, out=ss_v)
    del s_vv
    limit = nf - 1.0
    limit *= max_std * max_std
    ok = ss_v <= limit
    del ss_v, limit
    s_tv = window_sum(tc * vc)
    s_tt = window_sum(tc * tc)
    # SP_tv = S_tv - S_t S_v / n ;  SS_t = S_tt - S_t^2 / n
    tmp = s_t * s_v
    tmp /= nf
    s_tv -= tmp
    np.multiply(s_t, s_t, out=tmp)
    tmp /= nf
    s_tt -= tmp
    np.abs(s_tv, out=s_tv)
    s_tv *= 60.0
    s_tt *= max_slope_per_min
    ok &= s_tv <= s_tt
    ok &= complete
    return ok, start


def find_plateaus(
    t_s: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    window_s: float,
    max_std: float,
    max_slope_per_min: float,
    min_duration_s: float = 0.0,
) -> list[tuple[int, int]]:
    """Stretches in which every window of ``window_s`` seconds is stable (SPEC section 5).

    Stability, windows, gaps and chaining are as defined in the module docstring.

    Parameters
    ----------
    t_s : array [s]
        Sample times, non-decreasing (uneven spacing allowed).
    values : array [unit]
        Readings of the channel that sets stability, normally the reference.
    window_s : float [s]
        Window length.
    max_std : float [unit]
        Largest sample standard deviation (ddof=1) of a stable window.
    max_slope_per_min : float [unit/min]
        Largest absolute least-squares slope of a stable window.
    min_duration_s : float [s]
        Stretches with t[end - 1] - t[start] shorter than this are dropped.

    Returns
    -------
    list of (start, end)
        Sample indices, ``end`` exclusive, in time order.
    """
    if not (max_std >= 0 and max_slope_per_min >= 0 and min_duration_s >= 0):
        raise ValueError("max_std, max_slope_per_min and min_duration_s must be >= 0")
    t, v = _validate(t_s, values, window_s)
    stable, start = _stable_window_ends(t, v, window_s, max_std, max_slope_per_min)
    ends = np.flatnonzero(stable)
    if ends.size == 0:
        return []
    starts = start[ends]
    # A stable window opens a new stretch unless it shares a sample with the previous one.
    opens = np.concatenate(([True], starts[1:] > ends[:-1]))
    first = np.flatnonzero(opens)
    last = np.concatenate((first[1:] - 1, [ends.size - 1]))
    plateaus = []
    for a, b in zip(starts[first], ends[last], strict=True):
        if t[b] - t[a] >= min_duration_s:
            plateaus.append((int(a), int(b) + 1))
    return plateaus
