"""CPU per message of the two MQTT client layers, each as the gateway uses it (issue 12).

    python -m bench.mqtt_layers [--messages 20000]

Both take a backlog of QoS 1 messages that Mosquitto queued for their persistent MQTT 5
session, hand each to the event loop and acknowledge it there (manual ack), as the MQTT
source and the ingest do after their journal commit:

    mqtt5 link   gateway.mqtt.MqttLink: asyncio protocol, packets parsed by
                 the `mqtt5` codec, PUBACKs of one batch in one write
    paho         gateway.sources.mqtt.link311.PahoConnection + Receiver (the 3.1.1 fallback's
                 code, here on an MQTT 5 session as the ingest used it): paho-mqtt 2.x on its own thread,
                 manual_ack=True, messages handed over through a bounded inbox

CPU is `time.process_time()` of the consumer process (all its threads) from its first
message to its last, per message; wall is the same span.  One consumer runs at a time,
beside Mosquitto, on the same CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from queue import Queue
from typing import Any

from bench import machine
from bench.gateway_ingest import _get, _Run

LAYERS = ("mqtt5 link", "paho")


def _consumer(layer: str, port: int, prefix: str, n: int, subscribe_only: bool, q: Queue[Any]) -> None:
    """Child process: resume `prefix`'s session on `layer`, take and ack n messages; report
    ("done", count, cpu seconds, wall seconds) from the first message to the last."""
    from gateway.sources.mqtt.config import MqttSourceConfig

    cfg = MqttSourceConfig.model_validate({
        "name": "bench", "url": f"mqtt://127.0.0.1:{port}", "client_id": f"bench-layer-{prefix}",
        "topics": [{"topic": f"{prefix}/+/state", "format": "value", "fields": [
            {"channel": "c", "quantity": "temperature", "unit": "degC", "role": "dut"}]}]})

    async def run() -> tuple[Any, ...]:
        wake = asyncio.Event()
        if layer == "mqtt5 link":
            from gateway.sources.mqtt.source import mqtt5_link

            link5 = mqtt5_link(cfg, cfg.client_id or "", buffer=10_000, wake=wake.set)
            await link5.start()
            take, ack, stop = link5.take, link5.ack, link5.stop
            connected = lambda: link5.connected  # noqa: E731
        else:
            import logging

            import paho.mqtt.client as mqtt
            from paho.mqtt.subscribeoptions import SubscribeOptions

            from gateway.mqtt.settings import LinkSettings
            from gateway.sources.mqtt.link311 import PahoConnection, Receiver

            def subscribe(client: mqtt.Client, _session_present: bool) -> None:
                client.subscribe(f"{prefix}/+/state", options=SubscribeOptions(qos=1))

            link = PahoConnection(LinkSettings(host="127.0.0.1", port=port, client_id=cfg.client_id or "",
                                               persistent=True, session_expiry_s=3600, receive_maximum=1000),
                                  "bench", logging.getLogger("bench"), on_connected=subscribe,
                                  protocol=mqtt.MQTTv5)
            receiver = Receiver(link, 10_000, wake.set)
            receiver.start()
            take, ack, stop = receiver.take, receiver.ack, receiver.stop
            connected = lambda: link.client.is_connected()  # noqa: E731
        try:
            deadline = time.monotonic() + 20
            while not connected():
                if time.monotonic() > deadline:
                    return ("error", "no CONNACK within 20 s")
                await asyncio.sleep(0.001)
            if subscribe_only:
                await asyncio.sleep(0.5)  # its SUBSCRIBE reaches the broker
                return ("done", 0, 0.0, 0.0)
            count, cpu0, wall0 = 0, 0.0, 0.0
            deadline = time.monotonic() + 120
            while count < n and time.monotonic() < deadline:
                wake.clear()
                got = take()
                if not got:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), 0.5)
                    continue
                if count == 0:
                    cpu0, wall0 = time.process_time(), time.monotonic()
                for m in got:
                    ack(m)
                count += len(got)
            return ("done", count, time.process_time() - cpu0, time.monotonic() - wall0)
        finally:
            await stop()

    q.put(asyncio.run(run()))


def measure(layer: str, run: _Run, n: int) -> tuple[int, float, float]:
    prefix = "l5" if layer == "mqtt5 link" else "paho"
    _get(run.spawn(_consumer, layer, run.port, prefix, 0, True), f"{layer} (session)", 30)
    run.backlog(prefix, n)
    _, count, cpu, wall = _get(run.spawn(_consumer, layer, run.port, prefix, n, False), layer, 150)
    return int(count), float(cpu), float(wall)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mqtt_layers", description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=None, help="ignored: --messages sets the length")
    args = p.parse_args(argv)
    from tests.servers.mosquitto import Mosquitto

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-layers-") as tmp, \
            Mosquitto(Path(tmp) / "mosquitto") as broker:
        run = _Run(broker.port, sensors=10, publishers=2)
        try:
            for layer in LAYERS:
                rows.append((layer, *measure(layer, run, args.messages)))
        finally:
            run.close()
    print(f"{args.messages:,} QoS 1 messages queued for a persistent MQTT 5 session, "
          f"taken and acked one by one on the event loop; Mosquitto on 127.0.0.1. {machine()}\n")
    print("| layer | messages | CPU µs/message | wall µs/message | messages/s |\n|---|---:|---:|---:|---:|")
    for layer, count, cpu, wall in rows:
        per_cpu, per_wall = cpu / count * 1e6, wall / count * 1e6
        print(f"| {layer} | {count:,} | {per_cpu:.1f} | {per_wall:.1f} | {count / wall:,.0f} |")
    base = rows[0][2] / rows[0][1]
    for layer, count, cpu, _ in rows[1:]:
        print(f"\n- INFO: {layer} takes {cpu / count / base:.1f}x the CPU per message of the mqtt5 link")
    return 0 if all(r[1] == args.messages for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
