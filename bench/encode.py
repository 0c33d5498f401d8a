"""Line-protocol encoding: ours (`gateway.sinks.influxdb.lineprotocol`) vs influxdb-client's `Point`.

    python -m bench.encode [--seconds 3] [--channels 50] [--batch 5000]

The same readings (`--channels` series x enough timestamps, tags with a space and a comma
to escape, as a real site name has) are encoded in batches of `--batch`, as the sink does,
by each encoder in turn for `--seconds` each, in the same run.  Both bodies are checked to be
the same points (influxdb-client sorts tags by key, and so do we; it writes the float 20.0
as "20", we as "20.0", which InfluxDB reads alike) before anything is timed.

    readings/s   readings encoded per second of wall time (single thread)
    ns/reading   the inverse
    bytes/reading  body size (before gzip)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from gateway.reading import Reading
from gateway.sinks.influxdb.lineprotocol import LineEncoder

__all__ = ["main", "make_readings"]


def make_readings(channels: int, n: int) -> list[Reading]:
    """`n` readings over `channels` series with realistic tags and values."""
    out = []
    for i in range(n):
        c = i % channels
        out.append(Reading("lab 1", "gw,01", "RUN-2026-11-23", f"dut{c:02d}-t", "temperature", "degC",
                           "dut" if c else "reference", 20.0 + (i % 1000) * 0.001 + c / 7,
                           1_795_000_000_000_000_000 + i * 1_000_000))
    return out


def _ours(batch: Sequence[Reading]) -> bytes:
    return _ENCODER.encode_batch(batch)


_ENCODER = LineEncoder()


def _influxdb_client(batch: Sequence[Reading]) -> bytes:
    from influxdb_client import Point, WritePrecision

    lines = []
    for r in batch:
        p = Point("reading")
        for k in ("site", "gateway", "run", "channel", "quantity", "unit", "role"):
            p.tag(k, getattr(r, k))
        for k, v in r.tags:
            p.tag(k, v)
        lines.append(p.field("value", r.value).time(r.time_ns, WritePrecision.NS).to_line_protocol())
    return "\n".join(lines).encode()


def _lines(body: bytes) -> list[tuple[str, float, str]]:
    """(series, value, time) of each line: influxdb-client writes the float 20.0 as '20', we as '20.0'."""
    out = []
    for line in body.decode().split("\n"):
        series, value, ts = line.rsplit(" ", 2)
        out.append((series, float(value.removeprefix("value=")), ts))
    return out


def _rate(fn: Callable[[Sequence[Reading]], bytes], batches: list[list[Reading]], seconds: float
          ) -> tuple[float, int]:
    """(readings/s, body bytes of one batch) over at least `seconds` of repeated whole batches."""
    fn(batches[0])  # warm caches, as a running sink has them
    done = 0
    t0 = time.perf_counter()
    while True:
        for b in batches:
            fn(b)
            done += len(b)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done / elapsed, len(fn(batches[0]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.encode", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measured time per encoder")
    p.add_argument("--channels", type=int, default=50)
    p.add_argument("--batch", type=int, default=5000)
    args = p.parse_args(argv)
    try:
        import influxdb_client  # noqa: F401
    except ImportError:
        print("influxdb-client is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    readings = make_readings(args.channels, args.batch * 4)
    batches = [readings[i:i + args.batch] for i in range(0, len(readings), args.batch)]
    ours, theirs = _lines(_ours(batches[0])), _lines(_influxdb_client(batches[0]))
    if ours != theirs:
        print(f"the encoders disagree:\n  ours   {ours[0]!r}\n  theirs {theirs[0]!r}", file=sys.stderr)
        return 1
    rounds = 5
    print(f"{len(readings)} readings, {args.channels} series, batches of {args.batch}, "
          f"{args.seconds:g} s each in {rounds} alternating rounds; Python {platform.python_version()} "
          f"on {platform.machine()}\n")
    print("| encoder | readings/s, median (range) | ns/reading | bytes/reading |")
    print("|---|---:|---:|---:|")
    encoders = (("gateway.sinks.influxdb.lineprotocol", _ours), ("influxdb-client Point", _influxdb_client))
    rates: dict[str, list[float]] = {name: [] for name, _ in encoders}
    sizes: dict[str, int] = {}
    for _ in range(rounds):
        for name, fn in encoders:
            rate, sizes[name] = _rate(fn, batches, args.seconds / rounds)
            rates[name].append(rate)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, _ in encoders:
        m = medians[name]
        print(f"| {name} | {m:,.0f} ({min(rates[name]):,.0f} - {max(rates[name]):,.0f}) | {1e9 / m:,.0f} | "
              f"{sizes[name] / args.batch:.1f} |")
    our_rates, their_rates = rates.values()
    # Each round times both within a second: the ratio of a round is free of the machine's
    # drift between rounds (clock boost at the start, neighbours), the ratio of medians is not.
    ratios = [a / b for a, b in zip(our_rates, their_rates, strict=True)]
    ratio = statistics.median(ratios)
    print(f"\nours is {ratio:.1f}x influxdb-client's Point on the same readings (median of the "
          f"{rounds} rounds' ratios, {min(ratios):.1f}x - {max(ratios):.1f}x)\n")
    print(f"- {'PASS' if ratio >= 10 else 'FAIL'}: {ratio:.1f}x (target >= 10x)")
    return 0 if ratio >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
