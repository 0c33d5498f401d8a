"""The MQTT source's connection for brokers that speak only MQTT 3.1.1: paho-mqtt 2.x.

The connection is `gateway.sinks.mqtt.link.MqttLink` (paho on a thread of its own, our
capped, jittered reconnect loop, state changes logged once), here with MQTT 3.1.1, a
persistent session (`clean_session=False`, a stable client id) and `manual_ack`: the broker
keeps unacknowledged QoS 1 messages and redelivers them after a crash or a reconnect.  The
paho thread hands messages to the event loop through a bounded inbox; when it is full the
thread stops reading the socket, so backpressure reaches the broker instead of our memory.
MQTT 5 brokers are reached by the faster `gateway.sources.mqtt.link5` (the default).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gateway.sinks.mqtt.link import LinkSettings, MqttLink
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.message import Message

__all__ = ["PahoLink"]

log = logging.getLogger("remotecal.source.mqtt")


class PahoLink:
    """Same face as `Mqtt5Link`: `inbox`/`take()`, `ack(m)`, `start()`, `stop()`, `connected`."""

    def __init__(self, cfg: MqttSourceConfig, client_id: str, *, buffer: int,
                 wake: Callable[[], None]) -> None:
        self.cfg = cfg
        self._wake = wake
        self._inbox: list[Message] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, buffer))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link = MqttLink(
            LinkSettings(
                host=cfg.host, port=cfg.port, client_id=client_id, username=cfg.username,
                password=cfg.password, tls=cfg.tls, use_tls=cfg.uses_tls, keepalive=cfg.keepalive,
                reconnect_min=cfg.reconnect_min, reconnect_max=cfg.reconnect_max,
                persistent=True, manual_ack=True, max_inflight=1000, protocol=mqtt.MQTTv311,
            ),
            f"mqtt source {cfg.name!r}", log, on_connected=self._subscribe,
        )
        self._link.client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._link.connected

    # -- paho thread -------------------------------------------------------------------

    def _subscribe(self, client: mqtt.Client, _session_present: bool) -> None:
        client.subscribe([(t.topic, int(self.cfg.qos)) for t in self.cfg.topics])

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        item = Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.dup), self._link.generation,
                       time.time_ns())
        while not self._slots.acquire(timeout=0.5):
            if self._link.stopping:
                return  # not acked: the broker redelivers it to the next session
        with self._lock:
            self._inbox.append(item)
            first = len(self._inbox) == 1
        if first and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)

    # -- event loop --------------------------------------------------------------------

    @property
    def inbox(self) -> list[Message]:
        return self._inbox

    def take(self) -> list[Message]:
        with self._lock:
            out, self._inbox = self._inbox, []
        for _ in out:
            self._slots.release()
        return out

    def ack(self, m: Message) -> None:
        if m.qos and m.generation == self._link.generation and self._link.connected:
            self._link.client.ack(m.mid, m.qos)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._link.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self._link.stop)
