"""The MQTT uplink: frame size against JSON and line protocol, codec speed, PUBACK round trips.

    python -m bench.uplink [--seconds 3] [--frame 1000]

Offline, on the same readings (50 series, frames of `--frame` readings):

    bytes/reading    the signed frame vs one JSON object per reading vs line protocol,
                     raw and gzipped (level 6): what a metered uplink carries
    encode+sign      readings/s through `encode_frame` + HMAC-SHA256 (the gateway's side)
    verify+decode    readings/s through HMAC check + `decode_frame` (the ingest's side)
    JSON + gzip      the same readings as gzipped JSON, for comparison

Live, when Mosquitto is installed: a real broker on a free loopback port, a plain subscriber
(so the broker does not answer "no matching subscribers"), and `MqttSink.write()` called one
frame after another, as the delivery runner does: frames/s, readings/s and the PUBACK round
trip (p50, p99) of each write.

Scaling, with Mosquitto and influxd: a backlog of signed frames (about `4 x --seconds` of one
worker's drain) queued for 1, 2, ... `--workers` ingest workers (one `python -m remotecal
ingest` process each, one shared subscription), then drained: readings/s delivered to influxd
for each worker count, and its ratio to one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.encode import make_readings
from gateway.configfile import dumps
from gateway.keys import new_key_file
from gateway.reading import Reading
from gateway.sinks.influxdb.lineprotocol import encode_batch
from gateway.sinks.mqtt.frame import decode_frame, encode_frame, sign, verify

__all__ = ["main"]

KEY = bytes(range(32))


def _json(readings: list[Reading]) -> bytes:
    return json.dumps([{"site": r.site, "gateway": r.gateway, "run": r.run, "channel": r.channel,
                        "quantity": r.quantity, "unit": r.unit, "role": r.role, "value": r.value,
                        "time_ns": r.time_ns} for r in readings]).encode()


def _rate(fn: Callable[[], object], per_call: int, seconds: float) -> float:
    fn()
    n = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        fn()
        n += per_call
    return n / elapsed


def offline(frame_size: int, seconds: float) -> None:
    readings = make_readings(50, frame_size)
    frame = sign(KEY, encode_frame(1, 0, "lab 1", "gw,01", readings))
    print("| encoding | bytes/reading | gzipped bytes/reading |")
    print("|---|---:|---:|")
    for name, body in (("signed frame (struct + string table)", frame), ("JSON, one object per reading",
                       _json(readings)), ("line protocol", encode_batch(readings))):
        print(f"| {name} | {len(body) / frame_size:.1f} | {len(gzip.compress(body, 6)) / frame_size:.1f} |")
    enc = _rate(lambda: sign(KEY, encode_frame(1, 0, "lab 1", "gw,01", readings)), frame_size, seconds)
    dec = _rate(lambda: decode_frame(verify(KEY, frame)), frame_size, seconds)
    packed = gzip.compress(_json(readings), 6)
    json_enc = _rate(lambda: gzip.compress(_json(readings), 6), frame_size, seconds)
    json_dec = _rate(lambda: json.loads(gzip.decompress(packed)), frame_size, seconds)
    print("\n| codec | readings/s |")
    print("|---|---:|")
    print(f"| frame: encode + sign | {enc:,.0f} |")
    print(f"| frame: verify + decode to Readings | {dec:,.0f} |")
    print(f"| JSON: encode + gzip (no signature) | {json_enc:,.0f} |")
    print(f"| JSON: gunzip + decode to dicts (no Readings yet) | {json_dec:,.0f} |", flush=True)


async def _live(port: int, folder: Path, frame_size: int, seconds: float) -> tuple[int, float, list[float]]:
    from gateway.sinks.mqtt.config import MqttSinkConfig
    from gateway.sinks.mqtt.sink import MqttSink

    key = new_key_file("lab 1", "gw,01", folder / "keys")
    cfg = MqttSinkConfig.model_validate({"url": f"mqtt://127.0.0.1:{port}", "key_file": key})
    sink = MqttSink(cfg, site="lab 1", gateway="gw,01", data_dir=folder, name="bench")
    readings = make_readings(50, frame_size)
    try:
        await sink.write(readings)  # connects
        rtts: list[float] = []
        t0 = time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            t = time.perf_counter()
            await sink.write(readings)
            rtts.append(time.perf_counter() - t)
    finally:
        await sink.aclose()
    return len(rtts), elapsed, rtts


def live(frame_size: int, seconds: float) -> None:
    try:
        import paho.mqtt.client as mqtt

        from tests.servers.mosquitto import Mosquitto
    except ImportError as exc:
        print(f"\n(live phase skipped: {exc})")
        return
    with tempfile.TemporaryDirectory(prefix="bench-uplink-") as tmp, \
            Mosquitto(Path(tmp) / "broker") as broker:
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        sub.on_connect = lambda c, *_: c.subscribe("remotecal/v1/#", qos=1)
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        time.sleep(0.5)
        try:
            frames, elapsed, rtts = asyncio.run(_live(broker.port, Path(tmp), frame_size, seconds))
        finally:
            sub.disconnect()
            sub.loop_stop()
    q = statistics.quantiles(rtts, n=100)
    print(f"\nlive: Mosquitto on loopback, frames of {frame_size} readings, one write at a time\n")
    print("| frames/s | readings/s | PUBACK p50 ms | PUBACK p99 ms |")
    print("|---:|---:|---:|---:|")
    print(f"| {frames / elapsed:,.0f} | {frames * frame_size / elapsed:,.0f} | {q[49] * 1e3:.2f} | "
          f"{q[98] * 1e3:.2f} |")


_DRAIN_RATE = 70_000  # readings/s one worker delivers to influxd (bench.ingest), to size the backlog


def _central(folder: Path, port: int, influx_url: str, k: int, w: int) -> str:
    return dumps({
        "ingest": {"worker": f"k{k}w{w}", "data_dir": folder / "data", "keys": folder.parent.parent / "keys",
                   "group": f"scale{k}", "shutdown_grace": "30s"},
        "broker": {"url": f"mqtt://127.0.0.1:{port}", "reconnect_min": "100ms", "reconnect_max": "1s",
                   "max_inflight": 100},
        "journal": {"fsync": "full"},
        "sinks": {"influxdb": [{"name": "influx", "url": influx_url, "database": f"scale{k}",
                                "batch_size": 5000, "flush_interval": "100ms"}]},
    })


def _wait(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _accepted_frames(log: str) -> int:
    lines = [x for x in log.splitlines() if "gateway stopped:" in x]  # the worker is a gateway: its last line
    if not lines:
        return -1
    fields = dict(p.split("=", 1) for p in lines[-1].split("gateway stopped: ", 1)[1].split(", "))
    return int(fields.get("accepted_frames", -1))


def _steady(samples: list[tuple[float, int]], total: int) -> float:
    """readings/s while the backlog went from 20 % to 80 % delivered: start-up and tail left out."""
    t20 = next((t for t, n in samples if n >= 0.2 * total), float("nan"))
    t80, n80 = next(((t, n) for t, n in samples if n >= 0.8 * total), (float("nan"), 0))
    n20 = next((n for t, n in samples if t == t20), 0)
    return (n80 - n20) / (t80 - t20) if t80 > t20 else float("nan")


def _scale_once(tmp: Path, port: int, influx: Any, probe: Any, k: int, frames: list[tuple[str, bytes]],
                total: int, timeout: float) -> tuple[float, float, list[int], int, list[int]]:
    """k workers drain the backlog: (s from start to all landed, steady readings/s,
    frames per worker, readings in influxd, exit codes)."""
    from tests.gateway.harness import Publisher
    from tests.gateway.uplink.harness import IngestProcess

    influx.create_database(f"scale{k}")
    dirs = [tmp / f"k{k}" / f"w{w}" for w in range(k)]
    workers = [IngestProcess(d, _central(d, port, influx.url, k, w)) for w, d in enumerate(dirs)]
    try:
        # The workers' persistent sessions first, then the backlog while they are away: the
        # broker queues it round-robin over the k sessions of the shared subscription.
        for wk in workers:
            wk.start()
        _wait(lambda: all("connected" in wk.log() for wk in workers), 30, "the workers to connect")
        time.sleep(1.0)  # their SUBSCRIBEs are through
        for wk in workers:
            if wk.terminate() != 0:
                raise RuntimeError(f"a worker did not stop cleanly:\n{wk.log()[-2000:]}")
        pub = Publisher(port, f"bench-backlog-{k}")
        try:
            pub.publish_all(frames, timeout=300)
        finally:
            pub.close()
        since = probe.points_written()
        t0 = time.monotonic()
        for wk in workers:
            wk.start()
        t_all, samples = probe.wait_for_samples(f"scale{k}", total, since, timeout, every=0.1)
        codes = [wk.terminate() for wk in workers]
        split = [_accepted_frames(wk.log()) for wk in workers]
        landed = probe.count(f"scale{k}")
    finally:
        for wk in workers:
            wk.kill()
    return t_all - t0, _steady(samples, total), split, landed, codes


def scaling(frame_size: int, seconds: float, max_workers: int, gateways: int = 3) -> bool:
    """The same backlog of signed frames drained by 1..max_workers ingest processes; True if every run
    delivered every reading exactly once and every worker stopped cleanly."""
    try:
        from bench.gateway_ingest import InfluxProbe
        from bench.ingest import _frames
        from tests.servers.influx import InfluxD
        from tests.servers.mosquitto import Mosquitto
    except ImportError as exc:
        print(f"\n(scaling phase skipped: {exc})")
        return True
    rows = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-uplink-scale-") as tmp_s:
        tmp = Path(tmp_s)
        total = max(frame_size * gateways, int(_DRAIN_RATE * 4 * seconds))
        frames = _frames(tmp, gateways, frame_size, total)  # key files in tmp/keys
        total = len(frames) * frame_size
        with Mosquitto(tmp / "broker") as broker, InfluxD(tmp / "influxd") as influx:
            probe = InfluxProbe(influx.url)
            try:
                for k in range(1, max_workers + 1):
                    wall, steady, split, landed, codes = _scale_once(
                        tmp, broker.port, influx, probe, k, frames, total, 60 + 20 * seconds)
                    good = landed == total and all(c == 0 for c in codes) and sum(split) == len(frames)
                    ok = ok and good
                    rows.append((k, wall, steady, split, landed, good))
            finally:
                probe.close()
    base, base_steady = total / rows[0][1], rows[0][2]
    print(f"\nscaling: {len(frames)} signed frames of {frame_size} readings from {gateways} gateways "
          f"({total:,} readings) queued by Mosquitto for k ingest workers "
          f"(`python -m remotecal ingest`, one process each, one shared subscription, persistent "
          f"sessions, journal fsync = full, InfluxDB v1 sink in batches of 5000), then the k workers "
          f"start; the same backlog for each k, into a fresh database.  This machine has "
          f"{os.cpu_count()} cores, shared by Mosquitto, influxd and the k workers: k workers cannot "
          f"have k cores to themselves.\n")
    print("| workers | readings/s, start to all in influxd | x 1 worker | readings/s, 20 % to 80 % delivered "
          "| x 1 worker | frames per worker | in influxd |")
    print("|---:|---:|---:|---:|---:|---|---:|")
    for k, wall, steady, split, landed, good in rows:
        print(f"| {k} | {total / wall:,.0f} | {total / wall / base:.2f} | {steady:,.0f} | "
              f"{steady / base_steady:.2f} | {' / '.join(map(str, split))} | "
              f"{landed:,}{'' if good else ' FAIL'} |")
    print("\nOne run per worker count.  'start' is when the k worker processes are launched (their Python "
          "start-up counts); '20 % to 80 %' is the drain rate once they run, from "
          "influxd's SHOW STATS (points written) polled every 100 ms; all of them in influxd is confirmed "
          "by SELECT COUNT.  'frames per worker' is each worker's accepted_frames.")
    print(f"\n- {'PASS' if ok else 'FAIL'}: every run delivered exactly {total:,} readings and every "
          "worker stopped cleanly")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.uplink", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measured time per phase")
    p.add_argument("--frame", type=int, default=1000, help="readings per frame")
    p.add_argument("--workers", type=int, default=3, help="scaling: 1 .. this many ingest workers")
    args = p.parse_args(argv)
    print(f"frames of {args.frame} readings, 50 series, {args.seconds:g} s per phase; "
          f"Python {platform.python_version()} on {platform.machine()}\n")
    offline(args.frame, args.seconds)
    live(args.frame, args.seconds)
    return 0 if scaling(args.frame, args.seconds, args.workers) else 1


if __name__ == "__main__":
    sys.exit(main())
