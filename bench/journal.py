"""Journal throughput per fsync policy: durable appends/s and delivery/s.

    python -m bench.journal [--seconds 3] [--dir /var/lib/remotecal]

For `fsync = "full"` and `"normal"` in turn, each in a fresh journal in `--dir` (default: a
temporary folder; give the disk the gateway will use, as fsync costs are the disk's):

    awaited appends/s    `await journal.append([one reading])`, one after the other: each
                         waits for its own commit, as a caller that needs the ack at once
    pipelined readings/s `journal.submit()` of 10-reading batches without waiting (the
                         gateway's source pump), 1000 in flight at most: group commit
    delivered readings/s `next_batch(5000)` + `commit_delivery()` over what was appended,
                         as a sink that keeps up (the sink's own write is not included;
                         the batch is the journal's rows, no `Reading` is made)

Each phase runs `--seconds`.  Figures depend on the disk far more than on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path

from gateway.journal import Journal
from gateway.reading import Reading

__all__ = ["main", "run_policy"]

_SINK = "bench"


def _reading(i: int) -> Reading:
    return Reading("lab 1", "gw,01", "RUN-1", f"ch{i % 50:02d}", "temperature", "degC", "dut",
                   20.0 + (i % 1000) * 0.001, 1_795_000_000_000_000_000 + i)


async def _awaited(journal: Journal, seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        await journal.append([_reading(n)])
        n += 1
    return n / elapsed


async def _pipelined(journal: Journal, seconds: float, batch: int = 10, in_flight: int = 1000) -> float:
    n = 0
    pending: list[asyncio.Future[None]] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fut = journal.submit([_reading(n + k) for k in range(batch)], wait=True)
        assert fut is not None
        pending.append(fut)
        n += batch
        if len(pending) >= in_flight:
            await pending[0]
            pending = [f for f in pending if not f.done()]
        else:
            await asyncio.sleep(0)
    await asyncio.gather(*pending)
    return n / (time.perf_counter() - t0)


async def _delivery(journal: Journal, seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        batch = await journal.next_batch(_SINK, 5000)
        if batch is None:
            break
        await journal.commit_delivery(_SINK, batch.last_seq, len(batch))
        n += len(batch)
    return n / (time.perf_counter() - t0)


async def run_policy(folder: Path, fsync: str, seconds: float) -> tuple[float, float, float]:
    async with Journal(folder / f"journal-{fsync}.db", [_SINK], fsync=fsync) as journal:
        awaited = await _awaited(journal, seconds)
        pipelined = await _pipelined(journal, seconds)
        delivered = await _delivery(journal, seconds)
    return awaited, pipelined, delivered


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measured time per phase")
    p.add_argument("--dir", type=Path, default=None,
                   help="where the journals go (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-journal-", dir=args.dir) as tmp:
        print(f"journals in {tmp}, {args.seconds:g} s per phase; Python {platform.python_version()} "
              f"on {platform.machine()}\n")
        print("| fsync | awaited appends/s | pipelined readings/s | delivered readings/s |")
        print("|---|---:|---:|---:|")
        for policy in ("full", "normal"):
            a, b, c = asyncio.run(run_policy(Path(tmp), policy, args.seconds))
            print(f"| {policy} | {a:,.0f} | {b:,.0f} | {c:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
