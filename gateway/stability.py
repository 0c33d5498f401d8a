"""Stability of a series: the criterion of a calibration plateau, batch and streaming.

One definition serves the pipeline (`pipelines.plateaus.find_plateaus`, SPEC section 5, a
whole run at once) and the gateway (a remote run's step, SPEC section 8, sample by sample
as the readings arrive): both are `StabilityTracker`, which the pipeline feeds the whole
series in one call and the gateway one reading at a time.  Pure numpy, no I/O; `gateway`
owns it because the edge needs it and `gateway` never imports `pipelines`.

The criteria are the ones a laboratory writes in its procedure (SPEC sections 5 and 7):
over every window of ``window_s`` seconds, the standard deviation and the least-squares
slope of the reference stay under limits.

Definitions (all times in seconds, on the samples' own, possibly uneven, clock):

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
- Two stretches separated by less than ``window_s`` seconds of unstable windows would
  share samples.  Each is a longest stretch; their union is none, since it holds the
  unstable windows between them.  (Stable windows merely sharing a sample do not make one
  stretch: that would let an unstable window lie inside a plateau.)  Two plateaus never
  share a sample (issue 14: two calibration points from the same readings are not two
  points): the samples the earlier one holds are its own, and the later plateau starts
  after its last sample - then it must still last ``min_duration_s``.

Arithmetic, identical in batch and streaming (so that the two decide every window alike,
bit for bit; `tests/gateway/test_stability.py` checks it sample for sample):

- Windowed sums come from prefix sums of t, v, t^2, t v and v^2, centred on the series'
  first time and first value (the first sample the tracker sees: the only centre a stream
  knows).  A prefix sum is a plain sequential sum, ``numpy.cumsum``, continued from the
  last prefix when samples arrive later, so it is the same number whether the series came
  in one call or one sample at a time.  Cancellation: the window sums carry an error of
  about eps N d^2 for N samples so far at a distance d from the first value, against
  (n - 1) max_std^2 at the limit; a week at 1 Hz (N = 6e5) keeps it under 1 % of a
  0.02 limit over 600 samples for d up to about 200 units, far beyond a chamber's range.
  Start one tracker per run (the pipeline) or per step (the gateway), not one for months.
- The criteria are compared without square roots or divisions: s <= max_std <=> SS_v <=
  max_std^2 (n - 1), and |b| 60 <= max_slope <=> |SP_tv| 60 <= max_slope SS_t.
- In batch, window bounds take a closed form where the series is evenly sampled (checked
  exactly against the binary search, O(n)), `numpy.searchsorted` elsewhere; the stream
  searches its retained samples.  Both give ``searchsorted(t, t - window_s, "left")``.

A stream keeps only what a later window can need: the samples of the last window (and the
undecided ones) with their prefix sums, a few kilobytes.  The window ending at a sample is
decided once a sample with a later time arrives (a later sample at the same time would
change it) or at `StabilityTracker.close`; a gateway reading at 1 Hz sees each decision
one reading late.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "MIN_SAMPLES",
    "Criteria",
    "Plateau",
    "RollingStats",
    "StabilityTracker",
    "Update",
    "WindowStats",
    "rolling_stats",
    "run_rows",
    "validate_series",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

MIN_SAMPLES = 3
"""Fewest samples in a stable window: two points always fit a line exactly."""

_SERIES = 5
"""Prefix sums kept per sample: of t, v, t^2, t v and v^2 (centred)."""


@dataclass(frozen=True)
class Criteria:
    """A stability criterion: the keys of the pipeline's ``[stability]`` (SPEC section 7)
    and of a procedure step's stability (SPEC section 8)."""

    window_s: float
    """Window length [s], > 0."""
    max_std: float
    """Largest sample standard deviation (ddof=1) of a stable window [unit], >= 0."""
    max_slope_per_min: float
    """Largest absolute least-squares slope of a stable window [unit/min], >= 0."""
    min_duration_s: float = 0.0
    """Stretches with t[end - 1] - t[start] shorter than this are no plateau [s], >= 0."""

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and math.isfinite(self.window_s)):
            raise ValueError(f"window_s must be a positive number of seconds, not {self.window_s!r}")
        limits = (self.max_std, self.max_slope_per_min, self.min_duration_s)
        if not all(x >= 0 and math.isfinite(x) for x in limits):
            raise ValueError("max_std, max_slope_per_min and min_duration_s must be >= 0 and finite")


class Plateau(NamedTuple):
    """A stretch of stable windows and the samples it holds (module docstring)."""

    start: int
    """Index of its first sample (the first window's start) in the series."""
    end: int
    """Index after its last sample (the last stable window's end), exclusive."""
    t_start_s: float
    """Time of its first sample [s]."""
    t_end_s: float
    """Time of its last sample [s]."""

    @property
    def duration_s(self) -> float:
        """t[end - 1] - t[start] [s], what ``min_duration_s`` is compared with."""
        return self.t_end_s - self.t_start_s


class WindowStats(NamedTuple):
    """The window ending at one sample, for display (a live view, a diagnosis): the
    decision is ``stable``; ``std`` and ``slope_per_min`` are computed from the same sums
    and are NaN where the window is incomplete."""

    end: int
    """The window's last sample (its end, inclusive)."""
    t_s: float
    """Its time [s]."""
    start: int
    """The window's first sample."""
    n: int
    std: float
    """Sample standard deviation (ddof=1) [unit]."""
    slope_per_min: float
    """Least-squares slope [unit/min]."""
    stable: bool


class Update(NamedTuple):
    """What one call to `StabilityTracker.extend` (or push, close) decided."""

    first: int
    """Index of the first window end decided by this call."""
    stable: BoolArray
    """Whether the windows ending at first, first + 1, ... are stable (decided now, final)."""
    plateaus: tuple[Plateau, ...]
    """Stretches that ended in this call and last at least ``min_duration_s``, in order."""


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


def validate_series(t_s: npt.ArrayLike, values: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """t and values as float arrays; ValueError unless both are 1-D of one length, finite,
    and t is non-decreasing."""
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.ndim != 1 or t.shape != v.shape:
        raise ValueError(f"t_s and values must be 1-D arrays of one length, not {t.shape} and {v.shape}")
    if not (np.isfinite(t).all() and np.isfinite(v).all()):
        raise ValueError("t_s and values must be finite (no NaN or inf)")
    if t.size > 1 and bool((t[1:] < t[:-1]).any()):
        raise ValueError("t_s must be sorted in increasing order")
    return t, v


def _finite_values(values: npt.ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    """`validate_series`' checks of the values, for times already checked."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape != shape:
        raise ValueError(f"t_s and values must be 1-D arrays of one length, not {shape} and {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("t_s and values must be finite (no NaN or inf)")
    return v


def _prefix(x: FloatArray) -> FloatArray:
    """Cumulative sum with a leading zero: sum of x[i:j+1] is out[j+1] - out[i]."""
    out = np.zeros(x.size + 1)
    np.cumsum(x, out=out[1:])
    return out


def rolling_stats(t_s: npt.ArrayLike, values: npt.ArrayLike, window_s: float) -> RollingStats:
    """Standard deviation and least-squares slope over the window ending at each sample.

    For display and diagnosis (how near each window came to the limits); the decision is
    `StabilityTracker`'s.  Sample variance s^2 = (S_vv - S_v^2/n) / (n - 1) and slope
    b = S_tv' / S_tt' with S_tt' = S_tt - S_t^2/n and S_tv' = S_tv - S_t S_v/n (ordinary
    least squares; e.g. JCGM 100:2008 (GUM) H.3 for the same sums), from windowed sums of
    cumulative sums (centred on the first time and the mean value).

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
    t, v = validate_series(t_s, values)
    if not (window_s > 0 and np.isfinite(window_s)):
        raise ValueError(f"window_s must be a positive number of seconds, not {window_s!r}")
    if t.size == 0:
        empty = np.zeros(0)
        return RollingStats(np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp), empty, empty)
    end = np.arange(t.size)
    start = _starts_and_keys(t, window_s).start
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


def _window_differences(c: FloatArray, starts: _Starts, out: FloatArray) -> FloatArray:
    """``c[1:n + 1] - np.take(c, starts.start)`` into ``out`` (n = out.size): the window sums
    of the first n ends, subtracting from shifted slices where the closed form holds (no
    gathered copy first: the same operands, the same bits)."""
    w = starts.shift
    n = out.size
    if w is None:
        np.take(c, starts.start, out=out)
        return np.subtract(c[1:n + 1], out, out=out)
    k = min(w + 1, n)
    np.subtract(c[1:k + 1], c[0], out=out[:k])
    np.subtract(c[w + 2:n + 1], c[1:n - w], out=out[w + 1:])
    if starts.fixed.size:
        fixed = starts.fixed
        out[fixed] = c[fixed + 1] - c[starts.start[fixed]]
    return out


def _stats_of(n: float, s_t: float, s_v: float, s_tt: float, s_tv: float, s_vv: float) -> tuple[float, float]:
    """std and slope per minute of one window from its sums (for display)."""
    if n < 2:
        return math.nan, math.nan
    ss_v = max(s_vv - s_v * s_v / n, 0.0)
    ss_t = s_tt - s_t * s_t / n
    sp_tv = s_tv - s_t * s_v / n
    slope = sp_tv / ss_t * 60.0 if ss_t > 0 else math.nan
    return math.sqrt(ss_v / (n - 1.0)), slope


def _std_ok(nf: FloatArray, s_v: FloatArray, s_vv: FloatArray, max_std: float,
            scratch: FloatArray) -> BoolArray:
    """s <= max_std  <=>  SS_v = S_vv - S_v^2 / n <= max_std^2 (n - 1), without square roots
    or divisions; consumes ``s_vv`` and ``scratch``."""
    np.multiply(s_v, s_v, out=scratch)
    scratch /= nf
    s_vv -= scratch
    np.subtract(nf, 1.0, out=scratch)
    scratch *= max_std * max_std
    ok: BoolArray = s_vv <= scratch
    return ok


def _std_within(nf: FloatArray, s_v: FloatArray, s_vv: FloatArray, limit: FloatArray,
                scratch: FloatArray) -> BoolArray:
    """`_std_ok` with its right side, max_std^2 (n - 1), given (the times' alone: `run_rows`
    computes it once); the same operations on the same operands."""
    np.multiply(s_v, s_v, out=scratch)
    scratch /= nf
    s_vv -= scratch
    ok: BoolArray = s_vv <= limit
    return ok


def _slope_ok(nf: FloatArray, s_t: FloatArray, s_v: FloatArray, s_tt: FloatArray, s_tv: FloatArray,
              max_slope_per_min: float, scratch: FloatArray) -> BoolArray:
    """|b| 60 <= max_slope  <=>  |SP_tv| 60 <= max_slope SS_t, with SP_tv = S_tv - S_t S_v / n
    and SS_t = S_tt - S_t^2 / n (> 0 for n >= 3 distinct times); consumes ``s_tt``,
    ``s_tv`` and ``scratch``."""
    limit = _slope_limit(nf, s_t, s_tt, max_slope_per_min, scratch)
    return _slope_within(nf, s_t, s_v, s_tv, limit, scratch)


def _slope_limit(nf: FloatArray, s_t: FloatArray, s_tt: FloatArray, max_slope_per_min: float,
                 scratch: FloatArray) -> FloatArray:
    """max_slope SS_t, the right side of `_slope_ok` (the times' alone), in ``s_tt``."""
    np.multiply(s_t, s_t, out=scratch)
    scratch /= nf
    s_tt -= scratch
    s_tt *= max_slope_per_min
    return s_tt


def _slope_within(nf: FloatArray, s_t: FloatArray, s_v: FloatArray, s_tv: FloatArray, limit: FloatArray,
                  scratch: FloatArray) -> BoolArray:
    """|SP_tv| 60 <= ``limit`` (`_slope_limit`); consumes ``s_tv`` and ``scratch``."""
    np.multiply(s_t, s_v, out=scratch)
    scratch /= nf
    s_tv -= scratch
    np.abs(s_tv, out=s_tv)
    s_tv *= 60.0
    ok: BoolArray = s_tv <= limit
    return ok


class _SharedTimes:
    """What deciding a whole series' windows takes from its times alone (window bounds,
    completeness, counts, the centred times and the window sums of t and t^2), kept by
    the first of several trackers run over the same times for the others (`run_rows`)."""

    def __init__(self) -> None:
        self.starts: _Starts | None = None
        self.complete: BoolArray | None = None
        self.segment_t = math.nan
        self.nf: FloatArray | None = None
        self.tc: FloatArray | None = None
        self.s_t: FloatArray | None = None
        self.s_tt_last = math.nan
        self.limit: FloatArray | None = None
        """max_slope SS_t per window (`_slope_limit`)."""
        self.valid: BoolArray | None = None
        """complete and holding at least MIN_SAMPLES samples."""
        self.std_limit: FloatArray | None = None
        """max_std^2 (n - 1) per window, the right side of `_std_ok`."""
        self.times: FloatArray | None = None
        """The times (validated by the tracker that filled this)."""
        self.same: IntArray | None = None
        self.same_done = False

    def fill(self, starts: _Starts | None, complete: BoolArray, segment_t: float, nf: FloatArray,
             tc: FloatArray, s_t: FloatArray, s_tt_last: float, limit: FloatArray, valid: BoolArray,
             times: FloatArray, std_limit: FloatArray) -> None:
        self.starts, self.complete, self.segment_t, self.nf = starts, complete, segment_t, nf
        self.times = times
        self.tc, self.s_t, self.s_tt_last, self.limit, self.valid = tc, s_t, s_tt_last, limit, valid
        self.std_limit = std_limit


def run_rows(criteria: Criteria, t_s: npt.ArrayLike,
             rows: npt.ArrayLike | Sequence[npt.NDArray[np.float64]], *,
             disjoint: bool = True) -> list[Update]:
    """``StabilityTracker(criteria).run(t_s, row)`` for each row of ``rows`` (series read at
    the same times ``t_s``, e.g. the channels of one instrument polled together): the same
    decisions and plateaus, bit for bit, for a little over half the work per further row,
    since the window bounds, completeness, sums of the times and both criteria's limits
    are computed once.  ``rows``: a 2-D array, or a list or tuple of 1-D arrays (taken
    as they are, not stacked into a copy).  ValueError as `StabilityTracker.run` (per row)."""
    t = np.asarray(t_s, dtype=np.float64)
    values: Sequence[npt.NDArray[np.float64]] | npt.NDArray[np.float64]
    if isinstance(rows, list | tuple) and all(isinstance(r, np.ndarray) and r.ndim == 1 for r in rows):
        values = rows
    else:
        values = np.asarray(rows, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"rows must be a 2-D array (one series per row), not {values.shape}")
    shared = _SharedTimes()
    return [StabilityTracker(criteria, disjoint=disjoint)._advance(t, row, final=True, shared=shared)
            for row in values]


class StabilityTracker:
    """Stable windows and plateaus of one series, fed in time order, all at once or one
    sample at a time, with the same decisions either way (module docstring).

    ``extend(t, v)`` / ``push(t, v)`` add samples and return an `Update`: the windows
    decided by that call (each window is decided once a later time arrives) and the
    plateaus that ended in it; ``close()`` decides the rest at the end of the data and
    ends the open stretch.  Between calls, `current` is the stretch in progress (what a
    live display shows as "stable since"), `last_window` the statistics of the latest
    decided window.

    Samples are numbered from 0 in the order they are given; plateaus are index ranges in
    that numbering, with their times.  A call with bad input (NaN, a time before the last
    one, arrays of two lengths) raises ValueError and changes nothing: the caller can drop
    that reading and go on.
    """

    def __init__(self, criteria: Criteria, *, disjoint: bool = True) -> None:
        """``disjoint``: two plateaus never share a sample (the later starts after the earlier
        one's last sample; calibration points).  False: every stretch starts at its first
        stable window's first sample, whatever came before (a DUT's settling: from when its
        own readings are stable)."""
        self.criteria = criteria
        self._disjoint = disjoint
        self._count = 0
        """Samples given so far."""
        self._decided = 0
        """Window ends decided so far (the first undecided one's index)."""
        self._base = 0
        """Index of the first retained sample."""
        self._t = np.zeros(0)
        """Times of the retained samples (buffer; valid from _lo to _hi)."""
        self._c = np.zeros((_SERIES, 1))
        """Prefix sums: _c[:, _lo + i] is the sum over the samples before retained sample i
        (valid from _lo to _hi inclusive)."""
        self._lo = 0
        self._hi = 0
        self._origin: tuple[float, float] | None = None
        """(t, v) of the first sample: the centre of the sums."""
        self._segment_t = math.nan
        """Time of the first sample of the latest sample's gap-free segment."""
        self._open: tuple[int, float] | None = None
        """(first sample, its time) of the stretch in progress."""
        self._claimed = 0
        """Index after the last plateau's last sample: a later plateau starts there at the
        earliest, so two plateaus never share a sample."""
        self._last_stable = False
        self._last_window: WindowStats | None = None
        self._closed = False

    @property
    def count(self) -> int:
        """Samples given so far."""
        return self._count

    @property
    def decided(self) -> int:
        """Window ends decided so far: the windows ending at 0 .. decided - 1."""
        return self._decided

    @property
    def stable(self) -> bool:
        """Whether the latest decided window is stable."""
        return self._last_stable

    @property
    def last_window(self) -> WindowStats | None:
        """The latest decided window (None before the first decision)."""
        return self._last_window

    @property
    def current(self) -> Plateau | None:
        """The stretch in progress, up to the latest decided window (however short), or
        None when that window is not stable.  ``current.duration_s >=
        criteria.min_duration_s`` says it is a plateau already."""
        if self._open is None or self._last_window is None:
            return None
        start, t_start = self._open
        return Plateau(start, self._decided, t_start, self._last_window.t_s)

    def push(self, t_s: float, value: float) -> Update:
        """Add one sample; see `extend`."""
        return self.extend(np.array([t_s], dtype=np.float64), np.array([value], dtype=np.float64))

    def extend(self, t_s: npt.ArrayLike, values: npt.ArrayLike) -> Update:
        """Add samples (times in seconds, non-decreasing and not before the last sample
        given; values finite) and decide every window that now can be."""
        return self._advance(t_s, values, final=False)

    def close(self) -> Update:
        """End of the data: decide the remaining windows and end the stretch in progress.
        Nothing can be added afterwards."""
        return self._advance(np.zeros(0), np.zeros(0), final=True)

    def run(self, t_s: npt.ArrayLike, values: npt.ArrayLike) -> Update:
        """`extend` with the whole series, then `close`, in one step (the batch use)."""
        return self._advance(t_s, values, final=True)

    # -- the computation ---------------------------------------------------------------

    def _advance(self, t_s: npt.ArrayLike, values: npt.ArrayLike, *, final: bool,
                 shared: _SharedTimes | None = None) -> Update:
        """Add samples and decide windows (`extend`, `close`, `run`).  ``shared``: what a
        first call over the same times in another tracker computed from the times alone
        (`run_rows`); it fills it when empty."""
        if self._closed:
            raise ValueError("this stability tracker is closed; start a new one")
        if shared is not None and shared.times is t_s:
            t, v = shared.times, _finite_values(values, shared.times.shape)  # its times: checked
        else:
            t, v = validate_series(t_s, values)
        m = self._hi - self._lo
        """Samples retained from earlier calls (none before the first sample)."""
        if t.size and m and t[0] < self._t[self._hi - 1]:
            raise ValueError(f"t_s must be sorted in increasing order ({t[0]!r} after "
                             f"{self._t[self._hi - 1]!r})")
        if final:
            self._closed = True
        if self._origin is None:
            if t.size == 0:
                return Update(0, np.zeros(0, dtype=np.bool_), ())
            self._origin = (float(t[0]), float(v[0]))
            self._segment_t = float(t[0])
        t0, v0 = self._origin
        w = self.criteria.window_s

        # The retained samples and the new ones as one local series (local index i is
        # sample self._base + i); the first call works on the caller's array itself.
        times = t if m == 0 else self._append_times(t)
        d = self._decided - self._base
        end = times.size if final else _first_of_last_time(times)
        keep_from = min(int(np.searchsorted(times, times[-1] - w, side="left")), end)

        # Window starts of the ends d .. end - 1, and completeness.
        if m or not final:
            shared = None  # only whole series (`run`) over the same times share
        reuse = shared is not None and shared.nf is not None
        starts: _Starts | None = None
        nf: FloatArray
        if reuse:
            assert shared is not None and shared.starts is not None and shared.complete is not None
            assert shared.nf is not None
            starts, complete, self._segment_t = shared.starts, shared.complete, shared.segment_t
            start, keys = starts.start, starts.keys
            nf = shared.nf
        else:
            if d == 0:
                starts = _starts_and_keys(times[:end], w)
                start, keys = starts.start, starts.keys
            else:
                keys = times[d:end] - w
                start = np.searchsorted(times, keys, side="left").astype(np.intp)
            complete = self._completeness(times, m, d, end, keys)
            nf = np.arange(d + 1, end + 1, dtype=np.float64)
            nf -= start
        # a closed tracker keeps nothing (it decides no later window)
        tails = np.empty((_SERIES, times.size - keep_from + 1)) if m == 0 and not final else None
        c_batch = np.empty(times.size + 1) if m == 0 else None
        size = end - d

        def window_sums(series: int, x: FloatArray, out: FloatArray) -> FloatArray:
            """Sum of x over each window, c[j + 1] - c[start[j]] with c the prefix sums, into
            ``out`` (which may hold x: c is made first)."""
            if c_batch is None:
                c = self._prefix_sums(series, x, m)
            else:
                c = c_batch
                c[0] = 0.0
                np.cumsum(x, out=c[1:])
                if tails is not None:
                    tails[series] = c[keep_from:]
            if size == 0:
                return out[:0]
            if starts is not None:  # d == 0
                return _window_differences(c, starts, out[:size])
            np.take(c, start, out=out[:size])
            np.subtract(c[d + 1:end + 1], out[:size], out=out[:size])
            return out[:size]

        # Centred series and their window sums, in buffers reused as they free up (a fresh
        # array costs page faults as it is first written, as much as the arithmetic on it).
        k = t.size
        vc = np.subtract(v, v0)
        work = np.empty(max(k, size))
        scratch = np.empty(max(k, size))
        s_v = window_sums(1, vc, np.empty(size))
        s_vv = window_sums(4, np.multiply(vc, vc, out=work[:k]), work)
        last = size - 1
        tail = (float(s_v[last]), float(s_vv[last])) if size else (math.nan, math.nan)
        if reuse:
            assert shared is not None and shared.std_limit is not None
            stable = _std_within(nf, s_v, s_vv, shared.std_limit, scratch[:size])
        else:
            stable = _std_ok(nf, s_v, s_vv, self.criteria.max_std, scratch[:size])
        if reuse:
            # the sums of t, the slope limit and the valid windows are the first tracker's
            assert shared is not None and shared.tc is not None and shared.s_t is not None
            tc, s_t = shared.tc, shared.s_t
            s_tv = window_sums(3, np.multiply(tc, vc, out=vc), work)
            spare = scratch[:size]
        else:
            tc = np.subtract(t, t0)
            s_t = window_sums(0, tc, np.empty(size))
            s_tv = window_sums(3, np.multiply(tc, vc, out=vc), work)
            if shared is not None:  # keep t and the sums of t and t^2 for the next tracker
                s_tt = window_sums(2, np.multiply(tc, tc), np.empty(size))
                s_tt_last = float(s_tt[last]) if size else math.nan
                limit = _slope_limit(nf, s_t, s_tt, self.criteria.max_slope_per_min, scratch[:size])
                valid = complete & (nf >= MIN_SAMPLES)
                shared.fill(starts, complete, self._segment_t, nf, tc, s_t, s_tt_last, limit, valid,
                            t, (nf - 1.0) * (self.criteria.max_std * self.criteria.max_std))
                spare = scratch[:size]
            else:
                s_tt = window_sums(2, np.multiply(tc, tc, out=tc), scratch)
                spare = tc[:size] if k >= size else np.empty(size)
        del vc
        del tc
        last_stats = (math.nan, math.nan)
        if size:
            tt_last = float(s_tt[last]) if shared is None else shared.s_tt_last
            last_stats = _stats_of(float(nf[last]), float(s_t[last]), tail[0], tt_last,
                                   float(s_tv[last]), tail[1])
        if shared is None:
            stable &= _slope_ok(nf, s_t, s_v, s_tt, s_tv, self.criteria.max_slope_per_min, spare)
            stable &= complete
            stable &= nf >= MIN_SAMPLES
            del s_tt
        else:
            assert shared.limit is not None and shared.valid is not None
            stable &= _slope_within(nf, s_t, s_v, s_tv, shared.limit, spare)
            stable &= shared.valid
        del s_t, s_v, s_tv, s_vv, work, scratch, spare
        if shared is None:
            same = _last_at_same_time(times[d:end])
        else:
            if not shared.same_done:
                shared.same, shared.same_done = _last_at_same_time(times[d:end]), True
            same = shared.same
        if same is not None:
            stable = stable[same]  # samples at one time: the window ending at the last of them
        plateaus = self._stretches(times, d, start, stable, final)
        if size:
            ok = bool(complete[-1]) and nf[-1] >= MIN_SAMPLES
            std, slope = last_stats if ok else (math.nan, math.nan)
            self._last_window = WindowStats(self._base + end - 1, float(times[end - 1]),
                                            self._base + int(start[-1]), int(nf[-1]), std, slope,
                                            bool(stable[-1]))
            self._last_stable = bool(stable[-1])
        update = Update(self._base + d, stable, plateaus)
        self._count += t.size
        self._decided = self._base + end
        if not final:
            self._retain(times, keep_from, tails)
        return update

    def _append_times(self, t: FloatArray) -> FloatArray:
        """Append t to the retained times (making room first) and return the local series."""
        retained = self._hi - self._lo
        if self._hi + t.size > self._t.size:
            capacity = max(2 * (retained + t.size), 64)
            buf = np.empty(capacity)
            buf[:retained] = self._t[self._lo:self._hi]
            c = np.empty((_SERIES, capacity + 1))
            c[:, :retained + 1] = self._c[:, self._lo:self._hi + 1]
            self._t, self._c = buf, c
            self._lo, self._hi = 0, retained
        self._t[self._hi:self._hi + t.size] = t
        return self._t[self._lo:self._hi + t.size]

    def _prefix_sums(self, series: int, x: FloatArray, m: int) -> FloatArray:
        """The prefix sums of one centred series over the local series: the retained
        samples' and, continued from them (a plain sequential sum), the new samples'."""
        c = self._c[series, self._lo:self._hi + 1 + x.size]
        if x.size:
            x = x.copy()
            x[0] += c[m]  # seed + x0, then sequentially on: numpy.cumsum's own order
            np.cumsum(x, out=c[m + 1:])
        return c

    def _completeness(self, times: FloatArray, m: int, d: int, end: int, keys: FloatArray) -> BoolArray:
        """complete[j] for the ends d .. end - 1: key_j >= the first time of j's gap-free
        segment, and advance the segment to the latest sample's."""
        w = self.criteria.window_s
        lo = max(m, 1)  # new samples that can follow a gap (the very first starts a segment)
        if times.size > lo:
            steps = np.subtract(times[lo:], times[lo - 1:-1])
            gaps = np.flatnonzero(steps > w) + lo
            del steps
        else:
            gaps = np.zeros(0, dtype=np.intp)
        inside = gaps[gaps < end]
        complete = np.empty(end - d, dtype=np.bool_)
        if inside.size > 64:
            bounds = np.concatenate(([d], inside, [end]))
            firsts = np.concatenate(([self._segment_t], times[inside]))
            np.greater_equal(keys, np.repeat(firsts, np.diff(bounds)), out=complete)
        else:
            bounds_list = [d, *inside.tolist(), end]
            firsts_list = [self._segment_t, *times[inside].tolist()]
            for a, b, first in zip(bounds_list[:-1], bounds_list[1:], firsts_list, strict=True):
                np.greater_equal(keys[a - d:b - d], first, out=complete[a - d:b - d])
        if gaps.size:
            self._segment_t = float(times[gaps[-1]])
        return complete

    def _stretches(self, times: FloatArray, d: int, start: IntArray, stable: BoolArray,
                   final: bool) -> tuple[Plateau, ...]:
        """Follow the runs of stable windows through the newly decided ends; the stretches
        that end here (and last min_duration_s) as plateaus."""
        base = self._base
        previous_t = self._last_window.t_s if self._last_window is not None else math.nan
        out: list[Plateau] = []
        if stable.size:
            prev = np.empty(stable.size, dtype=np.bool_)
            prev[0] = self._last_stable
            prev[1:] = stable[:-1]
            rises = np.flatnonzero(stable & ~prev)
            falls = np.flatnonzero(~stable & prev)
            del prev
            for p in np.sort(np.concatenate((rises, falls))).tolist():
                if stable[p]:
                    # the samples the last plateau holds are its own (they are retained: they
                    # come after this window's start)
                    a = max(int(start[p]), self._claimed - base)
                    self._open = (base + a, float(times[a]))
                else:
                    # its last stable window ends at d + p - 1, decided here or (p = 0) before,
                    # when that sample may be forgotten already
                    assert self._open is not None
                    t_end = float(times[d + p - 1]) if p > 0 else previous_t
                    self._end_stretch(out, Plateau(self._open[0], base + d + p, self._open[1], t_end))
        if final and self._open is not None:
            self._end_stretch(out, Plateau(self._open[0], base + times.size, self._open[1], float(times[-1])))
        return tuple(out)

    def _end_stretch(self, out: list[Plateau], stretch: Plateau) -> None:
        """The stretch in progress ended: a plateau when it lasts min_duration_s."""
        self._open = None
        if stretch.duration_s >= self.criteria.min_duration_s:
            out.append(stretch)
            if self._disjoint:
                self._claimed = stretch.end

    def _retain(self, times: FloatArray, keep_from: int, tails: FloatArray | None) -> None:
        """Keep the samples a later window can hold (t >= t_last - window_s) and the
        undecided ones, with their prefix sums; forget the rest."""
        if tails is not None:
            # the first call: copy the tail out of the caller's array into our buffers
            kept = times.size - keep_from
            capacity = max(2 * kept, 64)
            self._t = np.empty(capacity)
            self._t[:kept] = times[keep_from:]
            self._c = np.empty((_SERIES, capacity + 1))
            self._c[:, :kept + 1] = tails
            self._lo, self._hi = 0, kept
        else:
            self._hi = self._lo + times.size
            self._lo += keep_from
        self._base += keep_from


def _first_of_last_time(t: FloatArray) -> int:
    """Index of the first sample at the series' last time (samples at one time are decided
    together, once a later time shows there are no more of them)."""
    if t.size == 0:
        return 0
    return int(np.searchsorted(t, t[-1], side="left"))
