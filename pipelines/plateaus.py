"""Stable plateaus of a chamber run: where the reference is steady enough to compare against.

A calibration point is only as good as the stability of the reference during it, so the
criteria are the ones a laboratory writes in its procedure (SPEC sections 5 and 7): over
every window of ``window_s`` seconds, the standard deviation and the least-squares slope of the
reference stay under limits.

Definitions used here (all times in seconds, on the samples' own, possibly uneven, clock):

- The window ending at sample j is the span [t_j - window_s, t_j] and holds the samples in
  it: from ``start[j]``, the first i with t_i >= t_j - window_s, to j (and any later samples
  at the same time t_j: samples at one time are never split, so the window ending at any of
  them is the one ending at the last).
- A gap is a step t_k - t_(k-1) longer than ``window_s``: no window spans one.
- The window is complete when gap-free data reach back to t_j - window_s. Windows at the
  start of the series or right after a gap are incomplete, and so are windows with fewer
  than 3 samples; incomplete windows are never stable.
- A window is stable when its sample standard deviation (ddof=1) is <= ``max_std`` and the
  absolute value of its least-squares slope, times 60, is <= ``max_slope_per_min``.
- A stretch is a run of consecutive window ends j0..j1 whose windows are all stable, taken
  as long as it goes: the windows ending at j0 - 1 and at j1 + 1 are not stable (or there
  is no such sample).  Its span is the union of its windows, [t_(j0) - window_s, t_(j1)], and
  its plateau the samples in that span, ``(start[j0], j1 + 1)`` (end exclusive).

This is SPEC section 5's "longest stretch in which every window of ``window_s`` seconds meets
both criteria", exactly: window starts and ends both rise with j, so the windows that lie
in the span [t_(j0) - window_s, t_(j1)] are those ending at j0..j1, all stable, and a span
that holds any further window holds the one ending at j0 - 1 or at j1 + 1, which is not;
the plateau is the samples of these windows, no more.  (On an uneven clock the window
ending at j0 - 1 can hold only samples of the plateau, when no sample falls between
t_(j0-1) - window_s and t_(j0) - window_s; it begins before the span all the same, like any
shorter piece of a stable window.)  Consequences:

- A sample that makes every window holding it unstable (a spike, a step) ends one plateau
  before it and begins the next after it; a gap splits a plateau too, since the windows
  after it are incomplete until ``window_s`` of data follow.
- Plateaus can overlap: two stretches separated by less than ``window_s`` seconds of
  unstable windows share samples.  Each is a longest stretch; their union is none, since it
  holds the unstable windows between them.  (Stable windows merely sharing a sample do not
  make one stretch: that would let an unstable window lie inside a plateau.)

Windowed sums come from cumulative sums of t, v, t^2, t v and v^2 (centred on the series'
first time and mean value, which keeps the cancellation in the differences small for runs of
days at 1 Hz), and window bounds in closed form where the series is evenly sampled (checked
exactly, O(n)), from `numpy.searchsorted` where it is not (O(n log n)); vectorised, no loop
over samples, in a few buffers reused through the computation.
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
    Samples at one time share the window ending at the last of them (``n``, ``std`` and
    ``slope_per_min`` are that window's).
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
    t, v, _ = _validate_steps(t_s, values, window_s)
    return t, v


def _validate_steps(
    t_s: npt.ArrayLike, values: npt.ArrayLike, window_s: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """`_validate`, and the steps it checked: a buffer of t's length whose first
    ``len(t) - 1`` entries are ``np.diff(t)`` (the last is undefined), for reuse."""
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.ndim != 1 or t.shape != v.shape:
        raise ValueError(f"t_s and values must be 1-D arrays of one length, not {t.shape} and {v.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
        raise ValueError("t_s and values must be finite (no NaN or inf)")
    steps = np.empty(t.size)
    dt = np.subtract(t[1:], t[:-1], out=steps[:-1] if t.size else steps)  # np.diff(t)
    if np.any(dt < 0):
        raise ValueError("t_s must be sorted in increasing order")
    if not (window_s > 0 and np.isfinite(window_s)):
        raise ValueError(f"window_s must be a positive number of seconds, not {window_s!r}")
    return t, v, steps


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
    last = _last_at_same_time(t)
    if last is not None:
        n, std, slope = n[last], std[last], slope[last]
    return RollingStats(start, n, std, slope)


def _last_at_same_time(t: FloatArray) -> IntArray | None:
    """For each sample, the index of the last sample at its time; None when no two samples
    share a time (the index would be the sample's own)."""
    if t.size < 2:
        return None
    later = t[1:] > t[:-1]
    if later.all():
        return None
    ends = np.flatnonzero(np.append(later, True))  # the last sample of each time
    return np.repeat(ends, np.diff(ends, prepend=-1))


def _window_starts(t: FloatArray, window_s: float) -> IntArray:
    """Index of the first sample of the window ending at each sample:
    ``searchsorted(t, t - window_s, side="left")``."""
    return _starts_and_keys(t, window_s).start


class _Starts(NamedTuple):
    start: IntArray
    """`_window_starts`."""
    keys: FloatArray
    """t - window_s, the keys searched for."""
    shift: int | None
    """w when start[j] = max(j - w, 0) for every j except ``fixed``; None: no such form."""
    fixed: IntArray
    """Where start departs from the closed form (when ``shift`` is not None)."""


def _starts_and_keys(t: FloatArray, window_s: float) -> _Starts:
    """`_window_starts`, the keys ``t - window_s`` it searched for, and its closed form.

    Evenly sampled stretches (the usual logger output, between outages) take a closed form
    from the first step, s_j = max(j - floor(window_s / step), 0), which is then checked
    exactly against the definition (t[s] >= key and t[s - 1] < key, which for sorted t is
    what the search returns; shifted slices, no gathers); only the samples where the check
    fails (after a gap, where the clock is uneven) take a binary search.  If many fail, the
    closed form is corrected by one sample where rounding of t - window_s put it one early,
    and checked again.  Much faster than searching for every sample, which misses the cache.
    """
    keys = t - window_s
    n = t.size
    none = np.zeros(0, dtype=np.intp)
    if n > 2:
        step = float(t[1] - t[0])
        if step > 0:
            w = int(min(np.floor(window_s / step), n))
            start = np.arange(-w, n - w, dtype=np.intp)
            start[:w] = 0
            bad = np.empty(n, dtype=np.bool_)
            # j <= w: s_j = 0 (no sample below it); j > w: s_j = j - w
            np.less(t[0], keys[:w + 1], out=bad[:w + 1])
            if n > w + 1:
                np.less(t[1:n - w], keys[w + 1:], out=bad[w + 1:])
                bad[w + 1:] |= t[:n - w - 1] >= keys[w + 1:]
            fix = np.flatnonzero(bad)
            shift: int | None = w
            if fix.size > n // 16:
                # one sample too early, by rounding of t - window_s: correct where needed
                start += t[start] < keys
                below = start - 1
                np.maximum(below, 0, out=below)
                np.less(t[start], keys, out=bad)
                bad |= (start > 0) & (t[below] >= keys)
                fix = np.flatnonzero(bad)
                shift = None
            if fix.size > n // 2:
                return _Starts(np.searchsorted(t, keys, side="left").astype(np.intp), keys, None, none)
            if fix.size:
                start[fix] = np.searchsorted(t, keys[fix], side="left")
            return _Starts(start, keys, shift, fix)
    return _Starts(np.searchsorted(t, keys, side="left").astype(np.intp), keys, None, none)


def _gather(c: FloatArray, starts: _Starts, out: FloatArray) -> FloatArray:
    """``np.take(c, starts.start, out=out)``, from shifted slices where the closed form holds."""
    w = starts.shift
    if w is None:
        return np.take(c, starts.start, out=out)
    n = out.size
    out[:w + 1] = c[0]
    out[w + 1:] = c[1:n - w]
    if starts.fixed.size:
        out[starts.fixed] = c[starts.start[starts.fixed]]
    return out


def _stable_window_ends(
    t: FloatArray, v: FloatArray, window_s: float, max_std: float, max_slope_per_min: float,
    steps: FloatArray | None = None,
) -> tuple[npt.NDArray[np.bool_], IntArray]:
    """`rolling_stats` reduced to the two comparisons, without square roots or divisions.

    s <= max_std  <=>  SS_v <= max_std^2 (n - 1), and |b| 60 <= max_slope  <=>
    |SP_tv| 60 <= max_slope SS_t (SS_t > 0 for n >= 3 distinct times).  The windows' upper
    ends are the samples themselves, so the upper cumulative sums are plain slices and only
    the lower ends are gathered; every operation works in place in a few buffers.  Same
    definitions (and arithmetic) as `rolling_stats` (its test compares them), except that
    samples at one time are left to the caller: each gets the window up to itself here.

    ``steps`` is `_validate_steps`'s buffer (np.diff(t), then reused), or None.
    """
    starts = _starts_and_keys(t, window_s)
    start, keys = starts.start, starts.keys
    n = t.size
    if n == 0:
        return np.zeros(0, dtype=np.bool_), start
    # Float buffers of the series' length, each reused through the computation: a fresh
    # array costs page faults (zeroed pages) as it is first written, about as much as the
    # arithmetic on it.
    nf = np.arange(1, n + 1, dtype=np.float64)
    nf -= start
    # complete: t - window_s >= the first time of the sample's gap-free segment
    if steps is None:
        steps = np.empty(n)
        np.subtract(t[1:], t[:-1], out=steps[:-1])
    gaps = np.flatnonzero(steps[:-1] > window_s) + 1
    if gaps.size > 64:
        segment_first = np.concatenate(([0], gaps))
        lengths = np.diff(np.append(segment_first, n))
        complete = keys >= np.repeat(t[segment_first], lengths)
    else:
        complete = np.empty(n, dtype=np.bool_)
        for a, b in zip([0, *gaps.tolist()], [*gaps.tolist(), n], strict=True):
            np.greater_equal(keys[a:b], t[a], out=complete[a:b])
    complete &= nf >= MIN_SAMPLES
    tc = np.subtract(t, t[0], out=keys)
    vc = np.subtract(v, v.mean(), out=steps)
    c = np.empty(n + 1)
    c[0] = 0.0
    csum = c[1:]

    def window_sum(x: FloatArray, out: FloatArray) -> FloatArray:
        """sum of x over each window, c[j + 1] - c[start[j]] with c the prefix sums of x,
        into ``out`` (which may be x)."""
        np.cumsum(x, out=csum)
        _gather(c, starts, out)
        np.subtract(csum, out, out=out)
        return out

    s_t = window_sum(tc, np.empty(n))
    s_v = window_sum(vc, np.empty(n))
    work = np.multiply(vc, vc, out=np.empty(n))
    s_vv = window_sum(work, work)
    # SS_v = S_vv - S_v^2 / n  (c is free until the next sum: a temporary)
    ss_v = np.multiply(s_v, s_v, out=csum)
    ss_v /= nf
    np.subtract(s_vv, ss_v, out=s_vv)
    limit = np.subtract(nf, 1.0, out=csum)
    limit *= max_std * max_std
    ok = s_vv <= limit
    s_tv = window_sum(np.multiply(tc, vc, out=work), work)
    s_tt = window_sum(np.multiply(tc, tc, out=vc), vc)
    # SP_tv = S_tv - S_t S_v / n ;  SS_t = S_tt - S_t^2 / n
    tmp = np.multiply(s_t, s_v, out=csum)
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
    """The longest stretches in which every window of ``window_s`` seconds is stable (SPEC 5).

    Each is a run of consecutive window ends j0..j1 whose windows all meet both criteria,
    as long as it goes, and its plateau the samples those windows hold, ``(start[j0], j1 +
    1)``: every window lying in it is stable, and it cannot grow without taking in an
    unstable one.  Windows, completeness, gaps and stretches as defined in the module
    docstring; plateaus separated by less than a window may overlap.

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
        Sample indices, ``end`` exclusive, in time order (of start, and of end).
    """
    if not (max_std >= 0 and max_slope_per_min >= 0 and min_duration_s >= 0):
        raise ValueError("max_std, max_slope_per_min and min_duration_s must be >= 0")
    t, v, steps = _validate_steps(t_s, values, window_s)
    stable, start = _stable_window_ends(t, v, window_s, max_std, max_slope_per_min, steps)
    del steps
    last = _last_at_same_time(t)
    if last is not None:
        stable = stable[last]  # samples at one time: the window ending at the last of them
    # Runs of stable window ends: j0 where one begins, j1 + 1 where it ends.
    edges = np.flatnonzero(np.diff(stable, prepend=False, append=False))
    j0, stop = edges[0::2], edges[1::2]
    a = start[j0]
    keep = t[stop - 1] - t[a] >= min_duration_s
    return [(int(x), int(y)) for x, y in zip(a[keep], stop[keep], strict=True)]
