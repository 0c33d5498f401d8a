"""Pipeline benchmark (issue 4): plateaus and corrections of a week-long run, in memory, vs pandas.

    python -m bench.pipeline [--days 7] [--channels 10] [--repeat 5] [--seconds 60]

A synthetic chamber run: `--channels` channels (one reference `ref-t`, the rest DUTs
`dut01-t`, ...) read at 1 Hz for `--days` days (10 x 7 days = 6,048,000 readings). The
chamber steps to a new setpoint every 8 h and follows it as a first-order system
(time constant 20 min); every sensor adds its own lag, offset, noise and resolution; a
20-minute outage of the gateway (no readings on any channel) falls inside one plateau.
All channels of a poll share its time stamp, as the registers of one instrument read in
one request do.

Two implementations of SPEC section 5's criteria (window 600 s, sample std <= 0.02 degC,
|least-squares slope| <= 0.01 degC/min, stretches >= 30 min; definitions in
`pipelines.plateaus`) run on the same arrays in the same invocation:

    ours     `pipelines.plateaus.find_plateaus` on the reference (vectorised windowed sums
             from cumulative sums), then `pipelines.run.compute` with a `PipelineConfig`
             built in code: interpolation onto the reference, certificate, corrections and
             the full GUM budget of every DUT at every plateau (the coverage factors'
             cache emptied before each run: every run starts cold)
    pandas   a straightforward pandas version of the same criteria: a Series on a
             DatetimeIndex, `rolling("600s", closed="both")` count and std, the slope from
             rolling means of t, v, t*v and t*t, completeness after gaps with a groupby,
             the same stretches (runs of consecutive stable window ends, each from its
             first window's first sample to its last window's end) with shift/cumsum/groupby;
             then the reference corrected with the same certificate (np.interp) and one
             groupby over the plateau labels for the mean and std of every DUT and of the
             difference. Building the Series/DataFrame from the arrays is timed with it.

Before anything is timed both are checked to give the same plateaus (sample indices) and
the same corrections, sample counts and Type A uncertainties.

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
    return [(int(a), int(b) + 1) for a, b in zip(starts, runs["last"], strict=True)
            if t[b] - t[a] >= STABILITY.min_duration_s]


@dataclass(frozen=True)
class PandasPoint:
    channel: str
    point: int
    n: int
    correction: float
    u_type_a: float


def pandas_corrections(data: dict[str, ChannelData]) -> list[PandasPoint]:
    """Plateaus on the reference, then per plateau and DUT: means, difference and its std."""
    ref = data[REFERENCE]
    plateaus = pandas_plateaus(ref.t_s, ref.values)
    index = pd.to_datetime(np.round(ref.t_s * 1e9).astype(np.int64), unit="ns")
    frame = pd.DataFrame({name: pd.Series(ch.values, index=pd.to_datetime(
        np.round(ch.t_s * 1e9).astype(np.int64), unit="ns")) for name, ch in data.items()})
    frame = frame.reindex(index)
    label = np.full(len(index), -1)
    for i, (a, b) in enumerate(plateaus, start=1):
        label[a:b] = i
    rows = [float(r[0]) for r in CERTIFICATE], [float(r[1]) for r in CERTIFICATE]
    corrected = frame[REFERENCE] + np.interp(frame[REFERENCE].to_numpy(), rows[0], rows[1])
    duts = [name for name in data if name != REFERENCE]
    diffs = frame[duts].rsub(corrected, axis=0)
    inside = label > 0
    stats = diffs[inside].groupby(label[inside]).agg(["mean", "std", "count"])
    out = []
    for name in sorted(duts):
        s = stats[name]
        for point, row in s.iterrows():
            out.append(PandasPoint(name, int(point), int(row["count"]), float(row["mean"]),
                                   float(row["std"]) / math.sqrt(row["count"])))
    return out


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
    if ours_keys != set(points):
        same = False
        lines.append(f"points: DIFFER: ours {len(ours_keys)}, pandas {len(points)}")
    else:
        d_corr = max((abs(r.correction - points[r.channel, r.point].correction) for r in results),
                     default=0.0)
        d_u = max((abs(_type_a_u(r) - points[r.channel, r.point].u_type_a) for r in results), default=0.0)
        n_same = all(r.n == points[r.channel, r.point].n for r in results)
        ok = n_same and d_corr < 1e-9 and d_u < 1e-9
        same = same and ok
        lines.append(f"corrections: {len(results)} points ({len(results) // max(1, len(a))} DUTs x "
                     f"{len(a)} plateaus); sample counts {'equal' if n_same else 'DIFFER'}; largest "
                     f"difference of correction {d_corr:.1e} degC, of Type A u {d_u:.1e} degC"
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
          "arrays, ours starts from the `ChannelData` arrays as `load_run` returns them. *Ours* for "
          "plateaus + corrections is `pipelines.run.compute` (interpolation onto the reference, "
          "certificate, full GUM budget per point), more work than the pandas version's means and std "
          "(pandas joins the DUTs on exact time stamps and makes no budget). All channels of a poll share "
          "its time stamp here, so ours finds every DUT reading at the reference's own times and takes "
          "them as they are (what interpolation returns there); DUTs on their own clocks take the "
          "interpolation path, which costs more. "
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
