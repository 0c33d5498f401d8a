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
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.encode import make_readings
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.uplink", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measured time per phase")
    p.add_argument("--frame", type=int, default=1000, help="readings per frame")
    args = p.parse_args(argv)
    print(f"frames of {args.frame} readings, 50 series, {args.seconds:g} s per phase; "
          f"Python {platform.python_version()} on {platform.machine()}\n")
    offline(args.frame, args.seconds)
    live(args.frame, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
