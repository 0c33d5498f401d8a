"""Line-protocol encoding: ours (`gateway.sinks.influxdb.lineprotocol`) vs influxdb-client's `Point`.

    python -m bench.encode [--seconds 3] [--channels 50] [--batch 5000]

The same readings (`--channels` series x enough timestamps, tags with a space and a comma
to escape, as a real site name has) are encoded in batches of `--batch`, by each encoder in
turn, in alternating rounds of the same run.  Each encoder gets the readings in the form its
path has them:

- ours, as the InfluxDB sink encodes: the batches the journal hands the sink (`next_batch`
  of a real journal the readings were appended to: journal rows, `RecordRows`);
- ours, from `Reading` objects (a list), for comparison;
- influxdb-client's `Point`, built from the `Reading` objects (given for free: turning
  journal rows into objects would cost it more).

All bodies are checked to be the same points (influxdb-client sorts tags by key, and so do
we; it writes the float 20.0 as "20", we as "20.0", which InfluxDB reads alike) before
anything is timed.  The target (10x) is for the sink's path.

    readings/s   readings encoded per second of wall time (single thread)
    ns/reading   the inverse
    bytes/reading  body size (before gzip)
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.journal import Journal
from gateway.reading import Reading, Record
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


async def _journal_batches(readings: list[Reading], size: int) -> list[Sequence[Record]]:
    """The readings as the sink gets them: appended to a journal, read back by `next_batch`."""
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        async with Journal(Path(tmp) / "journal.db", ["influxdb"], fsync="normal") as journal:
            await journal.append(readings)
            out: list[Sequence[Record]] = []
            while (batch := await journal.next_batch("influxdb", size)) is not None:
                out.append(batch.records)
                await journal.commit_delivery("influxdb", batch.last_seq, len(batch))
    return out


def _ours(batch: Sequence[Record]) -> bytes:
    return _ENCODER.encode_batch(batch)


_ENCODER = LineEncoder()


def _influxdb_client(batch: Sequence[Record]) -> bytes:
    from influxdb_client import Point, WritePrecision

    lines = []
    for r in batch:
        assert isinstance(r, Reading)
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


def _rate(fn: Callable[[Sequence[Record]], bytes], batches: Sequence[Sequence[Record]], seconds: float
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
    n = args.batch
    objects: list[Sequence[Record]] = [readings[i:i + n] for i in range(0, len(readings), n)]
    rows = asyncio.run(_journal_batches(readings, args.batch))
    if [list(b) for b in rows] != objects:
        print("the journal did not give back the readings appended to it", file=sys.stderr)
        return 1
    theirs = _lines(_influxdb_client(objects[0]))
    for what, body in (("journal batch", _ours(rows[0])), ("Reading objects", _ours(objects[0]))):
        if _lines(body) != theirs:
            print(f"the encoders disagree ({what}):\n  ours   {_lines(body)[0]!r}\n  theirs {theirs[0]!r}",
                  file=sys.stderr)
            return 1
    rounds = 5
    print(f"{len(readings)} readings, {args.channels} series, batches of {args.batch}, "
          f"{args.seconds:g} s each in {rounds} alternating rounds; Python {platform.python_version()} "
          f"on {platform.machine()}\n")
    print("| encoder, input | readings/s, median (range) | ns/reading | bytes/reading |")
    print("|---|---:|---:|---:|")
    sink = "ours (the sink's path), journal batches"
    encoders: list[tuple[str, Callable[[Sequence[Record]], bytes], list[Sequence[Record]]]] = [
        (sink, _ours, rows),
        ("ours, `Reading` objects", _ours, objects),
        ("influxdb-client `Point`, `Reading` objects", _influxdb_client, objects),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in encoders}
    sizes: dict[str, int] = {}
    for _ in range(rounds):
        for name, fn, batches in encoders:
            rate, sizes[name] = _rate(fn, batches, args.seconds / rounds)
            rates[name].append(rate)
    for name, _, _ in encoders:
        m = statistics.median(rates[name])
        print(f"| {name} | {m:,.0f} ({min(rates[name]):,.0f} - {max(rates[name]):,.0f}) | {1e9 / m:,.0f} | "
              f"{sizes[name] / args.batch:.1f} |")
    # Each round times all within a second: the ratio of a round is free of the machine's
    # drift between rounds (clock boost at the start, neighbours), the ratio of medians is not.
    point = rates[encoders[-1][0]]
    result = {}
    for name, _, _ in encoders[:-1]:
        ratios = [a / b for a, b in zip(rates[name], point, strict=True)]
        result[name] = statistics.median(ratios)
        print(f"\n{name}: {result[name]:.1f}x influxdb-client's Point on the same readings (median of "
              f"the {rounds} rounds' ratios, {min(ratios):.1f}x - {max(ratios):.1f}x)")
    ratio = result[sink]
    print(f"\n- {'PASS' if ratio >= 10 else 'FAIL'}: the sink's path {ratio:.1f}x (target >= 10x)")
    return 0 if ratio >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
