"""The MQTT source's connection for brokers that speak only MQTT 3.1.1: paho-mqtt 2.x.

The connection is `gateway.sinks.mqtt.link.MqttLink` (paho on a thread of its own, our
capped, jittered reconnect loop, state changes logged once) with MQTT 3.1.1, a persistent
session (`clean_session=False`, a stable client id) and `manual_ack`: the broker keeps
unacknowledged QoS 1 messages and redelivers them after a crash or a reconnect.  Messages
reach the event loop through its bounded `Receiver`, as in the central ingest.  MQTT 5
brokers are reached by the faster `gateway.sources.mqtt.link5` (the default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gateway.sinks.mqtt.link import LinkSettings, MqttLink, Receiver
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.message import Message

__all__ = ["PahoLink"]

log = logging.getLogger("remotecal.source.mqtt")


class PahoLink:
    """Same face as `Mqtt5Link`: `waiting`, `take()`, `ack(m)`, `start()`, `stop()`, `connected`."""

    def __init__(self, cfg: MqttSourceConfig, client_id: str, *, buffer: int,
                 wake: Callable[[], None]) -> None:
        self.cfg = cfg
        link = MqttLink(
            LinkSettings(
                host=cfg.host, port=cfg.port, client_id=client_id, username=cfg.username,
                password=cfg.password, tls=cfg.tls, use_tls=cfg.uses_tls, keepalive=cfg.keepalive,
                reconnect_min=cfg.reconnect_min, reconnect_max=cfg.reconnect_max,
                persistent=True, manual_ack=True, max_inflight=1000, protocol=mqtt.MQTTv311,
            ),
            f"mqtt source {cfg.name!r}", log, on_connected=self._subscribe,
        )
        self._receiver = Receiver(link, buffer, wake)

    def _subscribe(self, client: mqtt.Client, _session_present: bool) -> None:
        client.subscribe([(t.topic, int(self.cfg.qos)) for t in self.cfg.topics])

    @property
    def connected(self) -> bool:
        return self._receiver.link.connected

    @property
    def waiting(self) -> int:
        return self._receiver.waiting

    def take(self) -> list[Message]:
        return self._receiver.take()

    def ack(self, m: Message) -> None:
        self._receiver.ack(m)

    async def start(self) -> None:
        self._receiver.start()

    async def stop(self) -> None:
        await self._receiver.stop()
