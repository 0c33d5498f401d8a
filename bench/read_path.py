"""Read-path benchmark (issue 4): a run's readings from a real influxd into numpy arrays.

    python -m bench.read_path [--channels 10] [--points 100000] [--repeat 3] [--seconds 60]

A real influxd 1.x (`tests.servers.influx.InfluxD`: its own temporary folder, free loopback
port, stopped at the end whatever happens) gets `--channels` x `--points` readings of one
run (10 x 100,000 = 1,000,000 by default; 1 Hz, all channels at each second, values with
three decimals), encoded by the gateway's `gateway.sinks.influxdb.lineprotocol.encode_batch`
in batches of 5000 and POSTed to /write, as the sink does.  Then the run is read back, in
the same invocation, by

    ours       `pipelines.source.query_readings` (what `load_run` calls): one InfluxQL query,
               chunked (`chunk_size` 50,000, the default), each chunk's values straight into
               numpy arrays
    baseline   the naive way: the same InfluxQL query text, not chunked, the whole answer
               parsed with `json.loads`, every point converted on its own into Python lists
               (time / 1e9, float(value)), one numpy array per channel at the end

Both are checked to return the same channels, times and values as were written before
anything is timed.

    readings/s   readings returned / wall time of the whole call (HTTP, influxd's own query
                 and JSON encoding on its side, parsing and conversion on ours); median over
                 `--repeat` runs, the two alternating after one untimed warm-up run of each
    peak memory  tracemalloc's peak during one separate, untimed run of each (this process
                 only; influxd's memory is not counted)
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from bench import machine
from gateway.reading import Reading
from gateway.sinks.influxdb.lineprotocol import encode_batch
from pipelines.config import PipelineConfig
from pipelines.source import ChannelData, _readings_query, query_readings
from tests.servers.influx import InfluxD

__all__ = ["main", "naive_read", "write_run"]

FloatArray = npt.NDArray[np.float64]
Written = dict[str, tuple[npt.NDArray[np.int64], FloatArray]]
"""Per channel: times [ns] and values, as written."""

DATABASE = "calibration"
RUN = "BENCH-READ-2026-11-23"
T0_NS = 1_795_000_000 * 10**9
BATCH = 5000


def channel_name(c: int) -> str:
    return "ref-t" if c == 0 else f"dut{c:02d}-t"


def expected(channels: int, points: int, seed: int = 4) -> Written:
    """What is written: per channel, times [ns] and values (three decimals)."""
    rng = np.random.default_rng(seed)
    t = T0_NS + np.arange(points, dtype=np.int64) * 10**9
    return {channel_name(c): (t, np.round(20.0 + c * 0.1 + rng.normal(0.0, 0.05, points), 3))
            for c in range(channels)}


def write_run(url: str, data: Written) -> tuple[int, float, float]:
    """POST the readings in time order (all channels of each second together), `BATCH` a request.

    Returns (readings, seconds spent encoding, seconds spent in HTTP requests).
    """
    names = list(data)
    points = len(next(iter(data.values()))[0])
    per_batch = max(1, BATCH // len(names))
    written, t_encode, t_http = 0, 0.0, 0.0
    with httpx.Client(timeout=60.0, trust_env=False) as client:
        for i0 in range(0, points, per_batch):
            rows = range(i0, min(points, i0 + per_batch))
            batch = [
                Reading("lab 1", "gw01", RUN, name, "temperature", "degC", "reference" if c == 0 else "dut",
                        float(data[name][1][i]), int(data[name][0][i]))
                for i in rows for c, name in enumerate(names)
            ]
            t0 = time.perf_counter()
            body = encode_batch(batch)
            t1 = time.perf_counter()
            r = client.post(f"{url}/write", params={"db": DATABASE, "precision": "ns"}, content=body)
            t2 = time.perf_counter()
            if r.status_code != 204:
                raise RuntimeError(f"influxd refused a write: {r.status_code} {r.text[:200]}")
            written += len(batch)
            t_encode += t1 - t0
            t_http += t2 - t1
    return written, t_encode, t_http


def naive_read(cfg: PipelineConfig) -> dict[str, ChannelData]:
    """The baseline: the same query, one JSON document, every point converted on its own."""
    assert cfg.source.url is not None and cfg.source.database is not None
    params = {"db": cfg.source.database, "q": _readings_query(cfg), "epoch": "ns"}
    with httpx.Client(timeout=cfg.source.timeout, trust_env=False) as client:
        r = client.post(f"{cfg.source.url}/query", data=params)
    r.raise_for_status()
    doc: dict[str, Any] = json.loads(r.text)
    out: dict[str, ChannelData] = {}
    for result in doc["results"]:
        if "error" in result:
            raise RuntimeError(result["error"])
        for s in result.get("series", []):
            tags = s["tags"]
            t_col, v_col = s["columns"].index("time"), s["columns"].index("value")
            ts: list[float] = []
            vs: list[float] = []
            for row in s["values"]:
                if row[v_col] is None:
                    continue
                ts.append(row[t_col] / 1e9)
                vs.append(float(row[v_col]))
            out[tags["channel"]] = ChannelData(np.array(ts), np.array(vs), tags["quantity"], tags["unit"],
                                               tags["role"])
    return out


def check(name: str, got: dict[str, ChannelData], want: Written) -> str:
    if set(got) != set(want):
        return f"{name}: DIFFERS: channels {sorted(got)} instead of {sorted(want)}"
    for ch, (t_ns, v) in want.items():
        g = got[ch]
        if not (np.array_equal(g.t_s, t_ns.astype(np.float64) / 1e9) and np.array_equal(g.values, v)):
            return f"{name}: DIFFERS in channel {ch}"
    n = sum(ch.t_s.size for ch in got.values())
    return f"{name}: {len(got)} channels, {n:,} readings, times and values equal to those written"


def traced_peak(fn: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def pipeline_config(url: str) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "run": {"id": RUN},
        "source": {"kind": "influxdb", "url": url, "database": DATABASE},
        "stability": {"window_s": 600.0, "max_std": 0.02, "max_slope_per_min": 0.01},
        "comparisons": [{"dut": "dut*", "quantity": "temperature", "reference": "ref-t"}],
        "reference_certificate": {"ref-t": {"points": [[0.0, 0.0, 0.02, 2.0], [50.0, 0.0, 0.02, 2.0]]}},
        "uncertainty": {"reference_drift": 0.01, "dut_resolution": 0.01, "chamber_inhomogeneity": 0.05},
    })


def measure(influx: InfluxD, args: argparse.Namespace) -> tuple[list[str], bool]:
    out: list[str] = []
    influx.create_database(DATABASE)
    want = expected(args.channels, args.points)
    n, t_encode, t_http = write_run(influx.url, want)
    cfg = pipeline_config(influx.url)
    fns: dict[str, Callable[[], dict[str, ChannelData]]] = {
        "ours": lambda: query_readings(cfg),
        "baseline": lambda: naive_read(cfg),
    }
    checks = [check(name, fn(), want) for name, fn in fns.items()]  # also the untimed warm-up
    same = all("DIFFERS" not in c for c in checks)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.repeat):
        for name, fn in fns.items():
            if times[name] and sum(times[name]) >= args.seconds:
                continue
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    peaks = {name: traced_peak(fn) for name, fn in fns.items()}
    med = {name: statistics.median(ts) for name, ts in times.items()}
    best = {name: min(ts) for name, ts in times.items()}
    raw = n * 16

    out.append(f"Machine: {machine()}; numpy {np.__version__}, httpx {httpx.__version__}, "
               f"{influx_version(influx)} on 127.0.0.1\n")
    out.append(f"Data: {n:,} readings ({args.channels} channels x {args.points:,}, one run, 1 Hz, values "
               f"with three decimals) written in {t_encode + t_http:.1f} s: encode_batch {t_encode:.1f} s "
               f"({n / t_encode:,.0f} readings/s), HTTP /write in batches of {BATCH} {t_http:.1f} s "
               f"({n / t_http:,.0f} readings/s). Query: `{_readings_query(cfg)}`, epoch=ns.\n")
    out.append("Agreement (checked before timing):\n")
    out += [f"- {c}" for c in checks]
    out.append("")
    speedup = med["baseline"] / med["ours"]
    runs = f"{len(times['ours'])} / {len(times['baseline'])} runs"
    rows = [
        ("wall time, median (best)", f"{med['ours']:.2f} s ({best['ours']:.2f} s)",
         f"{med['baseline']:.2f} s ({best['baseline']:.2f} s)"),
        ("**readings/s**, median", f"**{n / med['ours']:,.0f}**", f"{n / med['baseline']:,.0f}"),
        ("speed-up over the baseline", f"**{speedup:.1f}x**", "1x"),
        ("peak memory allocated (tracemalloc)", f"{peaks['ours'] / 1e6:,.1f} MB",
         f"{peaks['baseline'] / 1e6:,.1f} MB"),
        ("... / the arrays returned (16 bytes a reading)", f"{peaks['ours'] / raw:.1f}x",
         f"{peaks['baseline'] / raw:.1f}x"),
    ]
    out.append(f"| {runs} | ours (`query_readings`, chunked) | baseline (one JSON, per point) |")
    out.append("|---|---:|---:|")
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out.append("")
    out.append("Notes: wall time covers the whole call, influxd's side included (it runs the query and "
               "encodes the JSON on the other core while this process parses). Peak memory counts this "
               "process's allocations traced by tracemalloc (Python objects and numpy arrays; the "
               "transport's buffers too), one separate untimed run each; it includes the returned "
               "arrays.\n")
    out.append(f"- {'PASS' if same else 'FAIL'}: both read back exactly what was written")
    return out, same


def influx_version(influx: InfluxD) -> str:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        r = client.get(f"{influx.url}/ping")
    return f"influxd {r.headers.get('X-Influxdb-Version', '?')}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.read_path", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=10, help="channels of the run (default 10)")
    p.add_argument("--points", type=int, default=100_000, help="readings per channel (default 100000)")
    p.add_argument("--repeat", type=int, default=3, help="timed reads of each (default 3)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="at most this many seconds of timed reads per implementation (default 60)")
    args = p.parse_args(argv)
    if args.channels < 1 or args.points < 1 or args.repeat < 1 or args.seconds <= 0:
        p.error("--channels, --points and --repeat must be at least 1, --seconds positive")
    print(f"Read path: {args.channels * args.points:,} readings into a fresh influxd, then read back ...",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-read-path-") as tmp:
        influx = InfluxD(Path(tmp) / "influxd")
        try:
            influx.start()
            lines, same = measure(influx, args)
        finally:
            influx.stop()  # also after an error, and a no-op if it never started
    print("\n".join(lines))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
