"""Central ingest throughput: one worker draining a backlog of signed frames into influxd.

    python -m bench.ingest [--seconds 10] [--frame 1000] [--gateways 3]

A real Mosquitto and a real influxd on free loopback ports.  The worker's persistent session
is created first (the worker starts, subscribes, stops); then frames of `--frame` readings
from `--gateways` gateways are published while it is away, as after an outage of the
central site; then the worker (`gateway.runtime.Gateway` with its uplink source, in this process) starts and
drains them.  The backlog is sized so that draining takes about `--seconds`.

    accepted readings/s   verified, replay-checked, committed to the worker's journal
                          (fsync = "full") and acknowledged to the broker
    delivered readings/s  written to influxd by the InfluxDB sink (batches of 5000)

Both from the worker's start to the last frame accepted / the last reading delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench.encode import make_readings
from gateway.keys import load_key_file, new_key_file
from gateway.reading import Reading
from gateway.sinks.mqtt.frame import encode_frame, readings_topic, sign

__all__ = ["main"]

_PRE_RATE = 150_000  # readings/s, a first guess of the drain rate to size the backlog


def _config(folder: Path, broker_port: int, influx_url: str) -> str:
    return f"""
[ingest]
worker = "bench"
data_dir = "{folder / 'data'}"
keys = "{folder / 'keys'}"

[broker]
url = "mqtt://127.0.0.1:{broker_port}"
max_inflight = 100

[[sinks.influxdb]]
name = "influx"
url = "{influx_url}"
database = "calibration"
batch_size = 5000
flush_interval = "100ms"
"""


async def _run_ingest(cfg_path: Path, total: int | None, timeout: float) -> tuple[float, float]:
    from gateway.ingest.config import load_ingest_config
    from gateway.runtime import Gateway
    from gateway.sources.uplink.source import UplinkSource

    ingest = Gateway(load_ingest_config(cfg_path))
    (source,) = ingest.sources
    assert isinstance(source, UplinkSource)
    task = asyncio.create_task(ingest.run())
    t0 = time.perf_counter()
    accepted_at = delivered_at = float("nan")
    if total is None:
        while not source.connected:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the SUBSCRIBE is through
    else:
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            st = ingest.journal.stats
            if st.received >= total and accepted_at != accepted_at:
                accepted_at = time.perf_counter() - t0
            if sum(st.delivered.values()) >= total:
                delivered_at = time.perf_counter() - t0
                break
            await asyncio.sleep(0.01)
    ingest.request_stop()
    await task
    return accepted_at, delivered_at


def _frames(folder: Path, gateways: int, frame: int, total: int) -> list[tuple[str, bytes]]:
    out = []
    base = make_readings(50, frame)
    for g in range(gateways):
        site, gw = "lab 1", f"gw{g:02d}"
        secret = load_key_file(new_key_file(site, gw, folder / "keys")).secret
        topic = readings_topic("remotecal/v1", site, gw)
        for seq in range(1, total // (frame * gateways) + 1):
            recs = [Reading(site, gw, r.run, r.channel, r.quantity, r.unit, r.role, r.value,
                            r.time_ns + seq * 10**9) for r in base]
            out.append((topic, sign(secret, encode_frame(seq, time.time_ns(), site, gw, recs))))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="about how long the drain should take")
    p.add_argument("--frame", type=int, default=1000, help="readings per frame")
    p.add_argument("--gateways", type=int, default=3)
    args = p.parse_args(argv)
    try:
        from tests.gateway.harness import Publisher
        from tests.servers.influx import InfluxD
        from tests.servers.mosquitto import Mosquitto
    except ImportError as exc:
        print(f"needs the test servers (tests/servers): {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        folder = Path(tmp)
        with Mosquitto(folder / "broker") as broker, InfluxD(folder / "influxd") as influx:
            influx.create_database("calibration")
            cfg = folder / "central.toml"
            total = max(args.frame * args.gateways, int(_PRE_RATE * args.seconds))
            frames = _frames(folder, args.gateways, args.frame, total)
            total = len(frames) * args.frame
            cfg.write_text(_config(folder, broker.port, influx.url))
            asyncio.run(_run_ingest(cfg, None, 0))
            pub = Publisher(broker.port, "bench-publisher")
            pub.publish_all(frames, timeout=300)
            pub.close()
            accepted, delivered = asyncio.run(_run_ingest(cfg, total, 30 * args.seconds + 60))
    print(f"one worker, {len(frames)} frames of {args.frame} readings from {args.gateways} gateways "
          f"({total} readings) waiting in its session; journal fsync = full; "
          f"Python {platform.python_version()} on {platform.machine()}\n")
    print("| accepted readings/s | frames/s | delivered to influxd readings/s |")
    print("|---:|---:|---:|")
    print(f"| {total / accepted:,.0f} | {len(frames) / accepted:,.0f} | {total / delivered:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
