"""Stable plateaus of a chamber run: where the reference is steady enough to compare against.

A calibration point is only as good as the stability of the reference during it, so the
criteria are the ones a laboratory writes in its procedure (SPEC sections 5 and 7): over
every window of ``window_s`` seconds, the standard deviation and the least-squares slope of
the reference stay under limits.

The definitions (windows, gaps, completeness, stretches) and the arithmetic live in
`gateway.stability`, the ground floor the gateway shares: a remote run's step is judged
live at the edge (SPEC section 8) by the same code, fed one reading at a time, that finds
the pipeline's plateaus here from the whole run at once.  This module keeps SPEC section
5's function and names.
"""

from __future__ import annotations

import numpy.typing as npt

from gateway.stability import MIN_SAMPLES, Criteria, RollingStats, StabilityTracker, rolling_stats

__all__ = ["MIN_SAMPLES", "RollingStats", "find_plateaus", "rolling_stats"]


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
    unstable one.  Windows, completeness, gaps and stretches as defined in
    `gateway.stability`; two plateaus never share a sample (a later one starts after the
    earlier one's last sample).

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
    criteria = Criteria(window_s, max_std, max_slope_per_min, min_duration_s)
    update = StabilityTracker(criteria).run(t_s, values)
    return [(p.start, p.end) for p in update.plateaus]
