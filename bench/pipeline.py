"""Pipeline benchmark (issue 4): plateaus and corrections of a week-long run, in memory, vs pandas.

    python -m bench.pipeline [--days 7] [--channels 10] [--repeat 5] [--seconds 60]

A synthetic chamber run: `--channels` channels (one reference `ref-t`, the rest DUTs
`dut01-t`, ...) read at 1 Hz for `--days` days (10 x 7 days = 6,048,000 readings). The
chamber steps to a new setpoint every 8 h and follows it as a first-order system
(time constant 20 min); every sensor adds its own lag, offset, noise and resolution; a
20-minute outage of the gateway (no readings on any channel) falls inside one plateau.
All channels of a poll share its time stamp, as the registers of one instrument read in
one request do.

Two implementations of the pipeline's method (SPEC sections 5 and 7, README "the point
budget"; window 600 s, sample std <= 0.02 degC, |least-squares slope| <= 0.01 degC/min,
stretches >= 30 min) run on the same arrays in the same invocation:

    ours     `pipelines.plateaus.find_plateaus` on the reference, then
             `pipelines.run.compute` with a `PipelineConfig` built in code: per plateau and
             DUT, DUT settling (the DUT's own last stable stretch in the plateau, by the
             same criteria), the DUT onto the reference, the certificate, the Type A of
             autocorrelated readings (Zhang 2006, n_eff capped by the DUT's readings), the
             chamber's temporal instability, the DUT's short-term stability, the full GUM
             budget, directions and hysteresis (the coverage factors' cache emptied before
             each run: every run starts cold)
    pandas   the same method written plainly with pandas, as a competent pandas user
             would: the reference's plateaus by `rolling("600s", closed="both")` count, std
             and the slope from rolling means of t, v, t*v and t*t, completeness after gaps
             with a groupby, stretches with shift/cumsum/groupby; every DUT's settling by
             one groupby("point").rolling("600s") over all plateaus and DUT columns at
             once, its last stretch by groupby max; then per point and DUT (a loop over the
             groups, as groupby.apply would) the Type A with every autocovariance by one FFT
             (as statsmodels' acovf(fft=True): length next_fast_len(2n + 1)), the
             least-squares slopes in closed form, the certificate's u, dof and
             interpolation term, the budget (Welch-Satterthwaite, Student t); directions
             and hysteresis by groupby on the results.  Building the Series/DataFrame from
             the arrays is timed with it.

Before anything is timed both are checked to give the same plateaus (sample indices), the
same points (channel, plateau; after DUT settling), the same sample counts, directions and
hysteresis rows, and corrections, n_eff, Type A u, U and hysteresis within `TOLERANCE`.

    wall time   median over `--repeat` runs of each (alternating; at most `--seconds` s of
                timed runs per implementation, at least one run)
    peak memory tracemalloc's peak of the memory allocated during one run of ours (the
                arrays of the run exist before tracing starts, so they are not counted),
                relative to the bytes of the raw arrays (t and value of every channel);
                numpy reports its allocations to tracemalloc. A separate, untimed run.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.fft
from scipy import stats

from bench import machine
from pipelines.config import PipelineConfig, StabilityConfig
from pipelines.plateaus import find_plateaus
from pipelines.run import PointResult, compute
from pipelines.source import ChannelData
from pipelines.uncertainty import _t_quantile

__all__ = ["main", "make_run", "ours", "pandas_corrections", "pandas_plateaus", "pipeline_config"]

FloatArray = npt.NDArray[np.float64]

T0_S = 1_795_000_000  # 2026-11-18, an integral second: 1 Hz stamps are exact in float64
STEP_S = 8 * 3600.0
TAU_S = 1200.0
OUTAGE_S = 1200
SETPOINTS = (20.0, -10.0, 0.0, 10.0, 30.0, 40.0, 50.0, 60.0, 25.0, 15.0, 5.0, -5.0, 35.0)
REFERENCE = "ref-t"
STABILITY = StabilityConfig(window_s=600.0, max_std=0.02, max_slope_per_min=0.01, min_duration_s=1800.0)
CERTIFICATE = [[-30.0, 0.021, 0.03, 2.0], [0.0, 0.012, 0.02, 2.0], [30.0, -0.008, 0.02, 2.0],
               [70.0, -0.031, 0.03, 2.0]]
TARGET_SPEEDUP = 5.0
TARGET_PEAK_RATIO = 3.0


# -- the run -----------------------------------------------------------------------------------


def make_run(days: float, channels: int, seed: int = 4) -> dict[str, ChannelData]:
    """The synthetic run: `channels` channels at 1 Hz over `days` days, one outage."""
    if channels < 2:
        raise ValueError("need a reference and at least one DUT")
    rng = np.random.default_rng(seed)
    n_total = round(days * 86400)
    t_all = np.arange(n_total, dtype=np.float64)
    # Chamber air: first order towards the setpoint of the current 8 h step (exact update per 1 s).
    step = (t_all // STEP_S).astype(np.intp)
    target = np.asarray(SETPOINTS)[step % len(SETPOINTS)]
    air = _first_order(target, TAU_S, start=SETPOINTS[0])
    # The gateway's outage: 20 min without readings, in the middle of the run's 4th step
    # (or of the middle step of a shorter run), late enough to fall inside a plateau.
    steps = max(1, math.ceil(n_total / STEP_S))
    k = min(3, steps // 2)
    outage_at = int(k * STEP_S + 0.6 * min(STEP_S, n_total - k * STEP_S))
    keep = np.ones(n_total, dtype=bool)
    keep[outage_at:outage_at + OUTAGE_S] = False
    t = T0_S + t_all[keep]
    out: dict[str, ChannelData] = {}
    for c in range(channels):
        if c == 0:
            name, role, lag, offset, noise, res = REFERENCE, "reference", 30.0, 0.0, 0.003, 0.001
        else:
            name, role = f"dut{c:02d}-t", "dut"
            lag = float(rng.uniform(40.0, 120.0))
            offset = float(rng.normal(0.0, 0.2))
            noise, res = 0.008, 0.01
        sensed = _first_order(air, lag, start=SETPOINTS[0]) + offset
        v = sensed[keep] + rng.normal(0.0, noise, keep.sum())
        v = np.round(v / res) * res
        # Each channel its own arrays, as `pipelines.source` returns them.
        out[name] = ChannelData(t.copy(), v, "temperature", "degC", role)
    return out


def _first_order(x: FloatArray, tau_s: float, *, start: float) -> FloatArray:
    """y[i] = y[i-1] + a (x[i] - y[i-1]) for a 1 s step, via scipy's lfilter (exact, O(n))."""
    from scipy.signal import lfilter

    a = 1.0 - math.exp(-1.0 / tau_s)
    y, _ = lfilter([a], [1.0, a - 1.0], x, zi=[(1.0 - a) * start])
    return np.asarray(y, dtype=np.float64)


def pipeline_config() -> PipelineConfig:
    return PipelineConfig.model_validate({
        "run": {"id": "BENCH-PIPELINE"},
        "source": {"kind": "local", "path": Path("unused.db")},
        "stability": STABILITY.model_dump(),
        "comparisons": [{"dut": "dut*", "quantity": "temperature", "reference": REFERENCE}],
        "reference_certificate": {REFERENCE: {"points": CERTIFICATE}},
        "uncertainty": {"reference_drift": 0.01, "dut_resolution": 0.01, "chamber_inhomogeneity": 0.05},
    })


# -- ours --------------------------------------------------------------------------------------


def our_plateaus(data: dict[str, ChannelData]) -> list[tuple[int, int]]:
    ref = data[REFERENCE]
    return find_plateaus(ref.t_s, ref.values, window_s=STABILITY.window_s, max_std=STABILITY.max_std,
                         max_slope_per_min=STABILITY.max_slope_per_min,
                         min_duration_s=STABILITY.min_duration_s)


def ours(cfg: PipelineConfig, data: dict[str, ChannelData]) -> list[PointResult]:
    """`compute`, from cold: the coverage factors cached by an earlier run are dropped first,
    so that no timed run profits from another (all other state is per call)."""
    _t_quantile.cache_clear()
    return compute(cfg, data)


# -- pandas ------------------------------------------------------------------------------------


def pandas_plateaus(t_s: FloatArray, values: FloatArray) -> list[tuple[int, int]]:
    """The criteria of `pipelines.plateaus`, written plainly with pandas."""
    w = STABILITY.window_s
    index = pd.to_datetime(np.round(t_s * 1e9).astype(np.int64), unit="ns")
    tc = pd.Series(t_s - t_s[0], index=index)
    v = pd.Series(values - values.mean(), index=index)

    def roll(x: pd.Series) -> Any:
        return x.rolling(f"{w:g}s", closed="both")

    n = roll(v).count()
    std = roll(v).std()
    mt, mv = roll(tc).mean(), roll(v).mean()
    mtv, mtt = roll(tc * v).mean(), roll(tc * tc).mean()
    slope = (mtv - mt * mv) / (mtt - mt * mt) * 60.0
    # Complete windows: gap-free data reach back a whole window; at least 3 samples.
    segment = (tc.diff() > w).cumsum()
    segment_t0 = tc.groupby(segment).transform("first")
    complete = (tc - w >= segment_t0) & (n >= 3)
    stable = complete & (std <= STABILITY.max_std) & (slope.abs() <= STABILITY.max_slope_per_min)
    # A stretch: a run of consecutive stable window ends, from the first sample of its first
    # window to its last window's end (its stamps are unique: no samples at one time).
    stable = stable.reset_index(drop=True)
    run = (stable != stable.shift(1, fill_value=False)).cumsum()
    ends = pd.Series(np.arange(len(v)))[stable]
    if ends.empty:
        return []
    runs = ends.groupby(run[stable]).agg(["first", "last"])
    starts = runs["first"] - n.to_numpy()[runs["first"].to_numpy()].astype(np.int64) + 1
    t = tc.to_numpy()
    out: list[tuple[int, int]] = []
    for a, b in zip(starts, runs["last"], strict=True):
        a = max(int(a), out[-1][1]) if out else int(a)  # two plateaus never share a sample
        if t[b] - t[a] >= STABILITY.min_duration_s:
            out.append((a, int(b) + 1))
    return out


@dataclass(frozen=True)
class PandasPoint:
    """One calibration point as the pandas baseline computes it."""

    channel: str
    point: int
    n: int
    n_eff: float
    correction: float
    u_type_a: float
    U: float
    direction: str
    hysteresis: float | None


_Q = (1.0 + 0.9545) / 2.0  # two-sided 95.45 % (EA-4/02)


def _zhang(x: FloatArray, max_n: int) -> tuple[float, float]:
    """u of the mean of autocorrelated readings and n_eff: Zhang (2006) with every
    autocovariance corrected for the sample mean's bias, truncated before the first lag
    that is not positive and once more on the corrected estimates, n_eff in [2, min(n,
    max_n)] (the method of `pipelines.uncertainty.autocorrelated_mean`, written from its
    docstring).  The autocovariances of all lags by FFT, as statsmodels' acovf(fft=True)."""
    n = x.size
    xc = x - x.mean()
    size = scipy.fft.next_fast_len(2 * n + 1, real=True)
    f = scipy.fft.rfft(xc, size)
    c = scipy.fft.irfft(f.real * f.real + f.imag * f.imag, size)[:n] / n
    weight = 1.0 - np.arange(1, n) / n

    def positive_lags(values: FloatArray) -> int:
        bad = np.flatnonzero(values <= 0.0)
        return int(bad[0]) if bad.size else values.size

    def var_mean(last: int) -> float:
        denominator = n - 1.0 - 2.0 * float(weight[:last].sum())
        v = (c[0] + 2.0 * float(c[1:last + 1].sum())) / denominator if denominator > 0 else math.inf
        return v if v > 0 else math.inf

    last = positive_lags(c[1:])
    v = var_mean(last)
    last = max(last, positive_lags(c[1:] / weight + (v if math.isfinite(v) else 0.0)))
    v = var_mean(last)
    gamma0 = c[0] + (v if math.isfinite(v) else 0.0)
    n_eff = gamma0 / v if math.isfinite(v) else 2.0
    if c[0] <= 0:
        n_eff = float(n)
    n_eff = min(max(n_eff, 2.0), float(n), float(max_n))
    return (math.sqrt(gamma0 / n_eff) if gamma0 > 0 else 0.0), n_eff


def _line(t: FloatArray, x: FloatArray) -> tuple[float, float, float]:
    """Least-squares slope of x against t, its residuals' sum of squares, and S_tt."""
    tc = t - t.mean()
    xc = x - x.mean()
    stt = float((tc * tc).sum())
    b = float((tc * xc).sum()) / stt if stt > 0 else 0.0
    residual = xc - b * tc
    return b, float((residual * residual).sum()), stt


def _dof_of_k(k: float) -> float:
    """A certificate's k -> its degrees of freedom (EA-4/02 Annex E backwards)."""
    if k <= 2.0:
        return math.inf
    from scipy import optimize

    x = optimize.brentq(lambda lg: float(stats.t.ppf(_Q, math.exp(lg))) - k, 0.0, math.log(1e9))
    return float(max(1, round(math.exp(x))))


def _k_of(dof_eff: float) -> float:
    if math.isinf(dof_eff):
        return 2.0
    nearest = round(dof_eff)
    nu = nearest if nearest >= 1 and 0.0 <= nearest - dof_eff <= 1e-9 * nearest else math.floor(dof_eff)
    return float(stats.t.ppf(_Q, nu))


def _certificate(m: float) -> tuple[float, float, float]:
    """u, dof and interpolation half-width of `CERTIFICATE` at the mean indication m."""
    rows = np.asarray(CERTIFICATE)
    ind, corr, u_rows, k = rows[:, 0], rows[:, 1], rows[:, 2] / rows[:, 3], rows[:, 3]
    u = float(np.interp(m, ind, u_rows))
    i = int(np.clip(np.searchsorted(ind, m), 0, ind.size - 1))
    around = {i, max(i - 1, 0)} if ind[0] < m < ind[-1] else {i}
    dof = min(_dof_of_k(float(k[j])) for j in around)
    interpolation = 0.0
    if ind.size >= 3 and ind[0] < m < ind[-1] and not (ind == m).any():
        # the three rows nearest m: the pair around it and the nearer outer row (upper on a tie)
        lo = i - 2 if i >= 2 and (i >= ind.size - 1 or m - ind[i - 2] < ind[i + 1] - m) else i - 1
        lo = min(max(lo, 0), ind.size - 3)
        quadratic = np.polyval(np.polyfit(ind[lo:lo + 3], corr[lo:lo + 3], 2), m)
        interpolation = abs(float(np.interp(m, ind, corr)) - float(quadratic))
    return u, dof, interpolation


def _budget(rows: list[tuple[float, float]]) -> float:
    """U of (u_i(y), dof_i) rows: RSS, Welch-Satterthwaite, k = t_0.97725(nu_eff)."""
    u = np.array([r[0] for r in rows])
    dof = np.array([r[1] for r in rows])
    uc2 = float((u * u).sum())
    finite = np.isfinite(dof)
    denominator = float((u[finite] ** 4 / dof[finite]).sum())
    dof_eff = uc2 * uc2 / denominator if denominator > 0 else math.inf
    return _k_of(dof_eff) * math.sqrt(uc2)


def pandas_corrections(data: dict[str, ChannelData]) -> list[PandasPoint]:
    """The pipeline's method written plainly with pandas: plateaus on the reference, DUT
    settling by a groupby-rolling over every plateau, then per point and DUT the corrected
    reference, the Type A of autocorrelated data, the regressions and the budget, and the
    directions and hysteresis of the results."""
    st = STABILITY
    w = st.window_s
    ref = data[REFERENCE]
    plateaus = pandas_plateaus(ref.t_s, ref.values)
    duts = sorted(name for name in data if name != REFERENCE)

    def index(t_s: FloatArray) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(pd.to_datetime(np.round(t_s * 1e9).astype(np.int64), unit="ns"))

    frame = pd.DataFrame({name: pd.Series(ch.values, index=index(ch.t_s)) for name, ch in data.items()})
    frame = frame.reindex(index(ref.t_s))
    frame["t"] = ref.t_s
    # Every plateau's samples, one group per point (two plateaus may share samples).
    points = pd.concat([frame.iloc[a:b].assign(point=i) for i, (a, b) in enumerate(plateaus, start=1)])
    group = points["point"].to_numpy()
    first = points.groupby("point")[["t", *duts]].transform("first")
    tc = points["t"] - first["t"]
    v = points[duts] - first[duts]

    # DUT settling: the criteria on each DUT's own readings in the plateau, by windows of the
    # plateau only (groupby-rolling), its last stretch of stable windows.
    cols = pd.DataFrame({"t": tc, "tt": tc * tc, **{f"v {d}": v[d] for d in duts},
                         **{f"tv {d}": tc * v[d] for d in duts}, "point": group}, index=points.index)
    rolling = cols.groupby("point").rolling(f"{w:g}s", closed="both")
    mean = rolling[[c for c in cols if c != "point"]].mean()
    std = rolling[[f"v {d}" for d in duts]].std()
    n = rolling["t"].count().to_numpy()
    new_segment = np.r_[True, (group[1:] != group[:-1]) | (np.diff(tc.to_numpy()) > w)]
    segment_t0 = tc.groupby(np.cumsum(new_segment)).transform("first").to_numpy()
    complete = (tc.to_numpy() - w >= segment_t0) & (n >= 3)
    mt, mtt = mean["t"].to_numpy(), mean["tt"].to_numpy()
    stable = np.empty((len(points), len(duts)), dtype=bool)
    for j, d in enumerate(duts):
        with np.errstate(invalid="ignore", divide="ignore"):  # one-sample windows: incomplete anyway
            slope = (mean[f"tv {d}"].to_numpy() - mt * mean[f"v {d}"].to_numpy()) / (mtt - mt * mt) * 60.0
        stable[:, j] = (complete & (std[f"v {d}"].to_numpy() <= st.max_std)
                        & (np.abs(slope) <= st.max_slope_per_min))
    same_group = np.r_[False, group[1:] == group[:-1]][:, None]
    rises = stable & ~(np.vstack([np.zeros((1, len(duts)), dtype=bool), stable[:-1]]) & same_group)
    pos = np.arange(len(points))[:, None]
    last_rise = pd.DataFrame(np.where(rises, pos, -1), columns=duts).groupby(group).max()
    last_end = pd.DataFrame(np.where(stable, pos, -1), columns=duts).groupby(group).max()

    t_all = points["t"].to_numpy()
    raw_all = points[REFERENCE].to_numpy()
    corrected_all = raw_all + np.interp(raw_all, *np.asarray(CERTIFICATE)[:, :2].T)
    dut_all = {d: points[d].to_numpy() for d in duts}
    group_end = pd.Series(np.arange(len(points))).groupby(group).last() + 1
    fixed = [(0.01 / 2.0 / math.sqrt(3.0), math.inf),  # DUT resolution
             (0.05 / math.sqrt(3.0), math.inf),  # chamber inhomogeneity
             (0.01 / math.sqrt(3.0), math.inf)]  # reference drift ([uncertainty] reference_drift)
    records = []
    for number in range(1, len(plateaus) + 1):
        g1 = int(group_end[number])
        for d in duts:
            rise, end = int(last_rise.at[number, d]), int(last_end.at[number, d])
            if rise < 0:
                continue
            start = rise - int(n[rise]) + 1
            if t_all[end] - t_all[start] < st.min_duration_s:
                continue
            span = slice(start, g1)
            t = t_all[span]
            raw, corrected = raw_all[span], corrected_all[span]
            dut = dut_all[d][span]
            diff = corrected - dut
            u_a, n_eff = _zhang(diff, max(diff.size, 2))
            u_cal, dof_cal, interpolation = _certificate(float(raw.mean()))
            b_ref, _, _ = _line(t, corrected)
            instability = abs(b_ref) * float(t[-1] - t[0]) / 2.0
            b_d, ss_d, stt = _line(t, diff)
            u_b = math.sqrt(ss_d / (t.size - 2) / stt * t.size / max(min(n_eff, t.size), 2.0))
            stability = max(abs(b_d) - 2.0 * u_b, 0.0) * float(t[-1] - t[0]) / 2.0
            rows = [(u_a, n_eff - 1.0), (instability / math.sqrt(3.0), math.inf),
                    (stability / math.sqrt(3.0), math.inf), (u_cal, dof_cal), *fixed]
            if interpolation > 0:
                rows.append((interpolation / math.sqrt(3.0), math.inf))
            records.append({"channel": d, "point": number, "n": t.size, "n_eff": n_eff,
                            "reference": float(corrected.mean()), "correction": float(diff.mean()),
                            "u_type_a": u_a, "rows": rows})
    out = pd.DataFrame.from_records(records)
    # Directions from the plateaus' setpoints in time order; hysteresis per channel and setpoint.
    means = np.array([frame[REFERENCE].iloc[a:b].mean() for a, b in plateaus])
    setpoints = pd.Series(np.floor(means * 2.0 + 0.5) / 2.0 + 0.0, index=range(1, len(plateaus) + 1))
    step = np.sign(setpoints.diff()).replace(0.0, np.nan).ffill().fillna(1.0)
    out["direction"] = out["point"].map(pd.Series(np.where(step > 0, "up", "down"), index=setpoints.index))
    out["setpoint"] = np.floor(out["reference"] * 2.0 + 0.5) / 2.0 + 0.0
    spread = (out.groupby(["channel", "setpoint", "direction"])["correction"].agg(["min", "max"])
              .unstack("direction"))
    h = pd.Series(np.nan, index=spread.index)
    if {"up", "down"} <= set(spread.columns.get_level_values(1)):
        h = pd.concat([(spread["max", "up"] - spread["min", "down"]).abs(),
                       (spread["max", "down"] - spread["min", "up"]).abs()], axis=1).max(axis=1, skipna=False)
    out = out.join(h.rename("hysteresis"), on=["channel", "setpoint"])
    result = []
    for r in out.itertuples(index=False):
        rows = list(r.rows)
        hyst = None if pd.isna(r.hysteresis) else float(r.hysteresis)
        if hyst is not None:
            rows.append((hyst / 2.0 / math.sqrt(3.0), math.inf))
        result.append(PandasPoint(r.channel, int(r.point), int(r.n), float(r.n_eff), float(r.correction),
                                  float(r.u_type_a), _budget(rows), str(r.direction), hyst))
    return result


# -- measuring ---------------------------------------------------------------------------------


def timed(fns: dict[str, Callable[[], object]], repeat: int, budget_s: float) -> dict[str, list[float]]:
    """Wall times of each function, run in turn, `repeat` times or until each has used `budget_s`."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if times[name] and sum(times[name]) >= budget_s:
                continue
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def traced_peak(fn: Callable[[], object]) -> int:
    """Peak bytes allocated (and traced by tracemalloc) while `fn` runs."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


TOLERANCE = 1e-9
"""Agreement of ours and pandas: corrections [degC] absolutely; n_eff, the Type A u and U
relatively.  Both compute the same method in different arithmetic (autocovariances by FFT
of other lengths or by direct sums, rolling sums, closed-form least squares): round-off,
some 1e-13 relative, a million times below this."""


def agreement(cfg: PipelineConfig, data: dict[str, ChannelData]) -> tuple[list[str], bool, int]:
    """Lines describing how ours and pandas agree; whether they do; the number of plateaus."""
    ref = data[REFERENCE]
    a, b = our_plateaus(data), pandas_plateaus(ref.t_s, ref.values)
    lines = []
    same = a == b
    if same:
        lines.append(f"plateaus: identical, {len(a)} on both sides (sample indices equal)")
    else:
        worst = max((max(abs(x[0] - y[0]), abs(x[1] - y[1])) for x, y in zip(a, b, strict=False)),
                    default=0)
        lines.append(f"plateaus: DIFFER: ours {len(a)}, pandas {len(b)}; largest boundary difference "
                     f"among the first {min(len(a), len(b))}: {worst} samples")
    results = ours(cfg, data)
    points = {(p.channel, p.point): p for p in pandas_corrections(data)}
    ours_keys = {(r.channel, r.point) for r in results}
    dropped = len(a) * len({r.channel for r in results}) - len(results)
    if ours_keys != set(points):
        same = False
        only_ours, only_pandas = sorted(ours_keys - set(points)), sorted(set(points) - ours_keys)
        lines.append(f"points: DIFFER: ours {len(ours_keys)}, pandas {len(points)}; only ours: "
                     f"{only_ours[:5]}, only pandas: {only_pandas[:5]}")
        return lines, same, len(a)

    def rel(x: float, y: float) -> float:
        return abs(x - y) / max(abs(x), abs(y), 1e-300)

    pairs = [(r, points[r.channel, r.point]) for r in results]
    n_same = all(r.n == p.n for r, p in pairs)
    d_corr = max((abs(r.correction - p.correction) for r, p in pairs), default=0.0)
    d_neff = max((rel(r.n_eff, p.n_eff) for r, p in pairs), default=0.0)
    d_ua = max((rel(_type_a_u(r), p.u_type_a) for r, p in pairs), default=0.0)
    d_u = max((rel(r.U, p.U) for r, p in pairs), default=0.0)
    directions = all(r.direction == p.direction for r, p in pairs)
    hysteresis = [(r.hysteresis, p.hysteresis) for r, p in pairs]
    h_same = all((x is None) == (y is None) for x, y in hysteresis)
    d_h = max((abs(x - y) for x, y in hysteresis if x is not None and y is not None), default=0.0)
    settled = sum(r.t_start_s > r.plateau_start_s for r in results)
    ok = (n_same and directions and h_same and d_corr <= TOLERANCE and d_neff <= TOLERANCE
          and d_ua <= TOLERANCE and d_u <= TOLERANCE and d_h <= TOLERANCE)
    same = same and ok
    lines.append(f"points: the same {len(results)} on both sides ({len({r.channel for r in results})} DUTs x "
                 f"{len(a)} plateaus, {dropped} without a point: the DUT never stable long enough); "
                 f"{settled} start later than their plateau (DUT settling); sample counts "
                 f"{'equal' if n_same else 'DIFFER'}; directions {'equal' if directions else 'DIFFER'}; "
                 f"hysteresis rows {'on the same points' if h_same else 'DIFFER'} "
                 f"({sum(x is not None for x, _ in hysteresis)})")
    lines.append(f"largest differences (tolerance {TOLERANCE:g}): correction {d_corr:.1e} degC, hysteresis "
                 f"{d_h:.1e} degC; relative: n_eff {d_neff:.1e}, Type A u {d_ua:.1e}, U {d_u:.1e}"
                 + ("" if ok else " (DIFFER)"))
    return lines, same, len(a)


def _type_a_u(r: PointResult) -> float:
    return next(c.u for c in r.budget.components if c.name == "repeatability (Type A)")


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _ms(x: float) -> str:
    return f"{x * 1e3:,.1f} ms" if x < 10 else f"{x:,.2f} s"


def _mb(x: float) -> str:
    return f"{x / 1e6:,.1f} MB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=float, default=7.0, help="length of the run (default 7)")
    p.add_argument("--channels", type=int, default=10, help="channels, the reference included (default 10)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs of each implementation (default 5)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="at most this many seconds of timed runs per implementation and task (default 60)")
    args = p.parse_args(argv)
    if args.days * 86400 < 3 * STEP_S or args.channels < 2 or args.repeat < 1 or args.seconds <= 0:
        p.error("--days must be at least 1 (three 8 h steps), --channels at least 2, "
                "--repeat at least 1 and --seconds positive")
    import pandas

    print(f"Pipeline: {args.channels} channels x {args.days:g} days at 1 Hz ...", file=sys.stderr, flush=True)
    data = make_run(args.days, args.channels)
    cfg = pipeline_config()
    readings = sum(ch.t_s.size for ch in data.values())
    raw_bytes = sum(ch.t_s.nbytes + ch.values.nbytes for ch in data.values())
    ref = data[REFERENCE]
    ref_bytes = ref.t_s.nbytes + ref.values.nbytes

    lines, same, n_plateaus = agreement(cfg, data)

    plateau_times = timed({
        "ours": lambda: our_plateaus(data),
        "pandas": lambda: pandas_plateaus(ref.t_s, ref.values),
    }, args.repeat, args.seconds)
    full_times = timed({
        "ours": lambda: ours(cfg, data),
        "pandas": lambda: pandas_corrections(data),
    }, args.repeat, args.seconds)
    peak_plateaus = traced_peak(lambda: our_plateaus(data))
    peak_ours = traced_peak(lambda: ours(cfg, data))
    peak_pandas = traced_peak(lambda: pandas_corrections(data))

    tp_o, tp_p = _median(plateau_times["ours"]), _median(plateau_times["pandas"])
    tf_o, tf_p = _median(full_times["ours"]), _median(full_times["pandas"])
    speedup = tf_p / tf_o
    ratio = peak_ours / raw_bytes

    print(f"Machine: {machine()}; numpy {np.__version__}, pandas {pandas.__version__}\n")
    print(f"Run: {args.channels} channels x {args.days:g} days at 1 Hz with one {OUTAGE_S // 60} min outage: "
          f"{readings:,} readings ({ref.t_s.size:,} per channel); raw arrays (t and value, float64, of "
          f"every channel) {_mb(raw_bytes)}, of the reference {_mb(ref_bytes)}. Setpoint every "
          f"{STEP_S / 3600:g} h; [stability] window {STABILITY.window_s:g} s, std <= {STABILITY.max_std:g}, "
          f"|slope| <= {STABILITY.max_slope_per_min:g}/min, >= {STABILITY.min_duration_s:g} s.\n")
    print("Agreement (checked before timing):\n")
    for line in lines:
        print(f"- {line}")
    print()
    runs = f"median of {len(full_times['ours'])} / {len(full_times['pandas'])} runs"
    bp_o, bp_p = min(plateau_times["ours"]), min(plateau_times["pandas"])
    bf_o, bf_p = min(full_times["ours"]), min(full_times["pandas"])
    rows = [
        ("plateaus of the reference, wall, median (best)", f"{_ms(tp_o)} ({_ms(bp_o)})",
         f"{_ms(tp_p)} ({_ms(bp_p)})", f"{tp_p / tp_o:.1f}x ({bp_p / bp_o:.1f}x)", ""),
        (f"**plateaus + corrections of {args.channels - 1} DUTs, wall, median (best)**",
         f"{_ms(tf_o)} ({_ms(bf_o)})", f"{_ms(tf_p)} ({_ms(bf_p)})",
         f"**{speedup:.1f}x** ({bf_p / bf_o:.1f}x)", f">= {TARGET_SPEEDUP:g}x"),
        ("readings/s, plateaus + corrections", f"{readings / tf_o:,.0f}", f"{readings / tf_p:,.0f}", "", ""),
        ("peak memory allocated, plateaus only (tracemalloc)", _mb(peak_plateaus), "", "", ""),
        ("**peak memory allocated, plateaus + corrections (tracemalloc)**", _mb(peak_ours),
         _mb(peak_pandas), "", ""),
        ("**... / raw arrays of the run**", f"**{ratio:.2f}x**", f"{peak_pandas / raw_bytes:.2f}x", "",
         f"< {TARGET_PEAK_RATIO:g}x"),
        ("... / raw arrays of the reference", f"{peak_ours / ref_bytes:.2f}x",
         f"{peak_pandas / ref_bytes:.2f}x", "", ""),
    ]
    print(f"| {runs} | ours | pandas | speed-up | target |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(f"Notes: {n_plateaus} plateaus. Wall times are `time.perf_counter()` medians, single thread, the "
          "two implementations alternating; pandas' time includes building its Series/DataFrame from the "
          "arrays, ours starts from the `ChannelData` arrays as `load_run` returns them. Both compute the "
          "pipeline's method: DUT settling, the Type A of autocorrelated readings (autocovariances by FFT), "
          "the chamber's temporal instability and the DUT's short-term stability, the certificate's rows, "
          "the budget, directions and hysteresis. All channels of a poll share its time stamp here, so ours "
          "finds every DUT reading at the reference's own times and takes them as they are (what "
          "interpolation returns there), and settles the DUTs of a plateau together "
          "(`gateway.stability.run_rows`); pandas joins the DUTs on exact time stamps. DUTs on their own "
          "clocks take the interpolation path and settle one by one, which costs ours more. "
          "Peak memory is tracemalloc's peak over one separate, untimed run of each (numpy and pandas "
          "report their array allocations to tracemalloc), started after the run's arrays exist: memory "
          "the computation allocates on top of its input, not the input itself.\n")
    verdicts = [
        f"{'PASS' if speedup >= TARGET_SPEEDUP else 'FAIL'}: plateaus + corrections: speed-up over pandas "
        f"{speedup:.1f}x, median wall times (target >= {TARGET_SPEEDUP:g}x)",
        f"{'PASS' if ratio < TARGET_PEAK_RATIO else 'FAIL'}: peak memory {ratio:.2f}x the raw arrays "
        f"(target < {TARGET_PEAK_RATIO:g}x)",
        f"{'PASS' if same else 'FAIL'}: ours and pandas agree",
    ]
    print("\n".join(f"- {v}" for v in verdicts))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
