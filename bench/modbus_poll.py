"""Modbus polling benchmark (issue 3): many virtual Modbus TCP devices polled at 1 Hz by one process.

    python -m bench.modbus_poll [--seconds 60] [--devices 50] [--no-journal]

The device side runs in a child process (this module with `--serve N`): N firmware_bridge
`ModbusServer`s on free 127.0.0.1 ports, each a `VirtualInstrument` of a chamber with a
register map of 10 int16 input registers (addresses 0..9, scale 0.01, read as one request).
The child prints its ports on one JSON line and serves until its stdin closes; the bench
closes it, then terminates (and if need be kills) the child, so no process is left behind.

The gateway side runs in this process, alone, so that its CPU time is the gateway's: one
`ModbusSource` per device (`ModbusSource.for_configs`), each consumed as the gateway's
runtime does (`async with source`, `async for batch in source.batches()`, then
`Journal.submit`) into a Journal in a temporary directory (fsync = "full", the default;
no sink drains it), or, with `--no-journal`, into a counter only.

Two phases run one after the other in the same invocation: the baseline (one device), then
N devices; each polls for a warm-up (connections open, not measured) and then `--seconds`.
Figures of each phase:

    readings/s        readings the consumer received during the window / its length
    polls             polls whose request started in the window / devices x ticks in it
    start - tick      when the request left (taken by wrapping the link's `read`) minus the
                      1 s tick the poll belongs to: the scheduling jitter of the gateway
    time_ns - tick    the reading's timestamp minus its tick; a reading is stamped with the
                      request's midpoint, so this is start - tick + half the round trip
    request duration  the round trip to the (virtual) device, lock included
    CPU               process_time / wall time of the polling process over the window, in
                      % of one core (every thread: the event loop and the journal's)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import machine
from firmware_bridge.chamber import Chamber, Sensor, Step
from firmware_bridge.instrument import VirtualInstrument
from firmware_bridge.modbus import ModbusServer
from firmware_bridge.profile import Profile, gateway_registers
from gateway.journal import Journal
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.source import ModbusSource

__all__ = ["PhaseResult", "bench_profile", "main", "run_phase"]

INTERVAL_S = 1.0
REGISTERS = 10
WARMUP_S = 3.0
TARGET_P99_JITTER_MS = 20.0
TARGET_CPU_PCT = 15.0


def bench_profile() -> Profile:
    """10 int16 input registers at 0..9 (x0.01), temperature and humidity in turn: one read per poll."""
    regs = [
        {"name": f"r{i}", "measurand": "temperature" if i % 2 == 0 else "relative_humidity",
         "unit": "degC" if i % 2 == 0 else "%rh", "kind": "input", "address": i, "type": "int16",
         "scale": 0.01}
        for i in range(REGISTERS)
    ]
    return Profile.model_validate({"profile": {"name": "bench-10"}, "registers": regs})


# -- device side (child process) --------------------------------------------------------------


async def serve(n: int) -> None:
    """Serve `n` virtual devices on 127.0.0.1; print their ports as JSON; stop when stdin closes."""
    chamber = Chamber([Step(23.0, 45.0, 86400.0)], start_temperature=23.0, start_humidity=45.0, seed=1)
    profile = bench_profile()
    servers = [
        ModbusServer([VirtualInstrument(chamber, profile, unit_id=1, sensors={
            "temperature": Sensor(f"dev{i}-t", error=(0.05,), noise=0.01, resolution=0.01, seed=i),
        }).image()]).tcp("127.0.0.1", 0)
        for i in range(n)
    ]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with contextlib.AsyncExitStack() as stack:
        for s in servers:
            await stack.enter_async_context(s)
        print(json.dumps({"ports": [s.port for s in servers]}), flush=True)
        while await stdin.read(4096):
            pass


class DeviceProcess:
    """`async with DeviceProcess(n) as ports:` the child process that serves the virtual devices."""

    def __init__(self, n: int):
        self.n = n
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> list[int]:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.modbus_poll", "--serve", str(self.n),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd=str(Path(__file__).resolve().parent.parent))
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 60.0)
            ports = json.loads(line)["ports"]
        except (TimeoutError, ValueError, KeyError):
            await self._end()
            raise RuntimeError("the device process did not report its ports") from None
        return [int(p) for p in ports]

    async def __aexit__(self, *exc: object) -> None:
        await self._end()

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the device process has used so far; NaN if unknown."""
        if self.proc is None:
            return float("nan")
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def _end(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10.0)
        except TimeoutError:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self.proc = None


# -- gateway side (this process) ---------------------------------------------------------------


@dataclass
class PhaseResult:
    devices: int
    window_s: float
    readings: int = 0
    polls: int = 0
    expected_polls: int = 0
    start_dev_ms: list[float] = field(default_factory=list)
    stamp_dev_ms: list[float] = field(default_factory=list)
    duration_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    device_cpu_s: float = float("nan")
    rejected: int = 0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.window_s

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_s / self.window_s

    @property
    def device_cpu_pct(self) -> float:
        return 100.0 * self.device_cpu_s / self.window_s


def _nearest_tick_ns(t_ns: int, interval_ns: int) -> int:
    return (t_ns + interval_ns // 2) // interval_ns * interval_ns


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100.0 * len(s) + 0.5) - 1))
    return s[k]


def _instrument(src: ModbusSource, starts: list[tuple[int, int]]) -> None:
    """Record (request start, request end) [ns] of every read of `src`'s link."""
    link = src.link
    read = link.read

    async def timed_read(unit: int, kind: str, address: int, count: int) -> tuple[list[int], int]:
        t0 = time.time_ns()
        out = await read(unit, kind, address, count)
        starts.append((t0, time.time_ns()))
        return out

    link.read = timed_read  # type: ignore[method-assign]


async def run_phase(ports: Sequence[int], seconds: float, *, journal_dir: Path | None,
                    warmup: float = WARMUP_S, device_cpu: Callable[[], float] | None = None) -> PhaseResult:
    """Poll the devices at `ports` for `warmup` + `seconds`; the figures of the last `seconds`."""
    profile = bench_profile()
    configs = [
        ModbusSourceConfig.model_validate({
            "name": f"dev{i:02d}", "url": f"tcp://127.0.0.1:{port}", "interval": INTERVAL_S, "timeout": 1.0,
            "registers": gateway_registers(profile, prefix=f"dev{i:02d}", role="dut"),
        })
        for i, port in enumerate(ports)
    ]
    sources = ModbusSource.for_configs(configs, site="bench", gateway="bench", run="bench")
    requests: list[tuple[int, int]] = []
    for s in sources:
        _instrument(s, requests)
    journal = Journal(journal_dir / "journal.db", ["bench"]) if journal_dir is not None else None
    interval_ns = round(INTERVAL_S * 1e9)
    window: list[int] = []  # [start, end] ns once the measured window is open
    result = PhaseResult(len(ports), seconds)

    async def pump(source: ModbusSource) -> None:
        async with source:
            async for batch in source.batches():
                if journal is not None:
                    journal.submit(batch.readings, batch.rejected)
                if window:
                    result.readings += len(batch.readings)
                    result.rejected += len(batch.rejected)
                    result.stamp_dev_ms += [(r.time_ns - _nearest_tick_ns(r.time_ns, interval_ns)) / 1e6
                                            for r in batch.readings]

    if journal is not None:
        await journal.open()
    try:
        async with asyncio.timeout(warmup + seconds + 60.0):
            tasks = [asyncio.create_task(pump(s), name=f"pump-{s.name}") for s in sources]
            try:
                await asyncio.sleep(warmup)
                # Open the window half an interval away from the ticks, so no poll straddles its edges.
                now = time.time()
                t_open = (int(now / INTERVAL_S) + 1.5) * INTERVAL_S
                await asyncio.sleep(t_open - now)
                dev0 = device_cpu() if device_cpu else float("nan")
                wall0, cpu0 = time.time_ns(), time.process_time()
                requests.clear()
                window[:] = [wall0]
                await asyncio.sleep(seconds)
                wall1, cpu1 = time.time_ns(), time.process_time()
                dev1 = device_cpu() if device_cpu else float("nan")
                window.append(wall1)
                done = list(requests)
            finally:
                for t in tasks:
                    t.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                    raise r
    finally:
        if journal is not None:
            await journal.close()
    result.window_s = (wall1 - wall0) / 1e9
    result.cpu_s = cpu1 - cpu0
    result.device_cpu_s = dev1 - dev0
    # Readings of batches received in the window may have been polled at its very start;
    # keep the request figures to polls that started inside it.
    for t0, t1 in done:
        if wall0 <= t0 < wall1:
            result.polls += 1
            result.start_dev_ms.append((t0 - _nearest_tick_ns(t0, interval_ns)) / 1e6)
            result.duration_ms.append((t1 - t0) / 1e6)
    ticks = sum(1 for k in range(wall0 // interval_ns, wall1 // interval_ns + 1)
                if wall0 <= k * interval_ns < wall1)
    result.expected_polls = ticks * len(ports)
    return result


# -- report ------------------------------------------------------------------------------------


def table(base: PhaseResult, many: PhaseResult) -> str:
    def ms(values: Sequence[float], q: float) -> str:
        return f"{percentile(values, q):.2f} ms"

    rows: list[tuple[str, str, str, str]] = [
        ("readings/s", f"{base.readings_per_s:.1f}", f"{many.readings_per_s:.1f}",
         f"{many.devices * REGISTERS / INTERVAL_S:.0f} expected"),
        ("polls done / scheduled", f"{base.polls} / {base.expected_polls}",
         f"{many.polls} / {many.expected_polls}", "all"),
        ("p50 request start - tick", ms(base.start_dev_ms, 50), ms(many.start_dev_ms, 50), ""),
        ("**p99 request start - tick**", ms(base.start_dev_ms, 99), ms(many.start_dev_ms, 99),
         f"< {TARGET_P99_JITTER_MS:g} ms"),
        ("max request start - tick", ms(base.start_dev_ms, 100), ms(many.start_dev_ms, 100), ""),
        ("p50 reading time_ns - tick", ms(base.stamp_dev_ms, 50), ms(many.stamp_dev_ms, 50), ""),
        ("p99 reading time_ns - tick", ms(base.stamp_dev_ms, 99), ms(many.stamp_dev_ms, 99), ""),
        ("p50 request duration", ms(base.duration_ms, 50), ms(many.duration_ms, 50), ""),
        ("p99 request duration", ms(base.duration_ms, 99), ms(many.duration_ms, 99), ""),
        ("**CPU, % of one core**", f"{base.cpu_pct:.2f} %", f"{many.cpu_pct:.2f} %",
         f"< {TARGET_CPU_PCT:g} %"),
        ("device process CPU, % of one core (not the gateway's)", f"{base.device_cpu_pct:.2f} %",
         f"{many.device_cpu_pct:.2f} %", ""),
        ("measured window", f"{base.window_s:.1f} s", f"{many.window_s:.1f} s", ""),
    ]
    head = f"| figure | 1 device (baseline) | {many.devices} devices | target |"
    lines = [head, "|---|---:|---:|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def verdict(many: PhaseResult) -> str:
    p99 = percentile(many.start_dev_ms, 99)
    ok_jitter = p99 < TARGET_P99_JITTER_MS
    ok_cpu = many.cpu_pct < TARGET_CPU_PCT
    ok_polls = many.polls >= many.expected_polls
    return (f"p99 jitter {'meets' if ok_jitter else 'MISSES'} the target, "
            f"CPU {'meets' if ok_cpu else 'MISSES'} the target, {'no' if ok_polls else 'SOME'} polls missed.")


async def run(devices: int, seconds: float, use_journal: bool) -> tuple[PhaseResult, PhaseResult]:
    devices_proc = DeviceProcess(devices + 1)
    async with devices_proc as ports:
        with tempfile.TemporaryDirectory(prefix="remotecal-bench-") as tmp:
            jdir = Path(tmp)
            base = await run_phase(ports[:1], seconds, journal_dir=jdir / "base" if use_journal else None,
                                   device_cpu=devices_proc.cpu_s)
            many = await run_phase(ports[1:], seconds, journal_dir=jdir / "many" if use_journal else None,
                                   device_cpu=devices_proc.cpu_s)
    return base, many


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.modbus_poll", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="measured window of each phase (default 60)")
    p.add_argument("--devices", type=int, default=50, help="devices of the second phase (default 50)")
    p.add_argument("--no-journal", action="store_true", help="count the batches instead of journaling them")
    p.add_argument("--serve", type=int, metavar="N", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return 0
    if args.seconds <= 0 or args.devices < 1:
        p.error("--seconds must be positive and --devices at least 1")
    total = 2 * (args.seconds + WARMUP_S + 1.5)
    print(f"Modbus TCP polling: 1 device, then {args.devices} devices of {REGISTERS} registers at "
          f"{1 / INTERVAL_S:g} Hz, {args.seconds:g} s each after a {WARMUP_S:g} s warm-up "
          f"(about {total:.0f} s in all) ...", file=sys.stderr, flush=True)
    base, many = asyncio.run(run(args.devices, args.seconds, not args.no_journal))
    consumer = ("batches submitted to a gateway Journal in a temporary directory (fsync full, no sink)"
                if not args.no_journal else "batches counted, no journal")
    print(f"Machine: {machine()}\n")
    print(f"Devices: {args.devices + 1} firmware_bridge ModbusServers (127.0.0.1) in one child process; "
          f"polling and consuming in this process; consumer: {consumer}.\n")
    print(table(base, many))
    print()
    print("Notes: *request start - tick* is when the poll's request left (the source's link `read` wrapped "
          "by the bench) minus the 1 s wall-clock tick it belongs to: the gateway's scheduling jitter. "
          "A reading's `time_ns` is the midpoint of its request, so *reading time_ns - tick* adds half "
          "the round trip to the virtual devices: all of them are asked at the same tick and one process "
          "answers them in turn, so the round trip grows with the device count (see its CPU row). "
          "CPU is `time.process_time()` over wall time of the polling process (all its threads), in % of "
          "one core.\n")
    print(verdict(many))
    return 0


if __name__ == "__main__":
    sys.exit(main())
