"""The MQTT source's connection for brokers that speak only MQTT 3.1.1: paho-mqtt 2.x.

The connection is `gateway.sinks.mqtt.link.MqttLink` (paho on a thread of its own, our
capped, jittered reconnect loop, state changes logged once) with MQTT 3.1.1, a persistent
session (`clean_session=False`, a stable client id) and `manual_ack`: the broker keeps
unacknowledged QoS 1 messages and redelivers them after a crash or a reconnect.  Messages
reach the event loop through its bounded `Receiver`, as in the central ingest.  MQTT 5
brokers are reached by the faster `gateway.mqtt.MqttLink` (the default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gateway.mqtt.message import Message
from gateway.sinks.mqtt.link import LinkSettings, MqttLink, Receiver
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.parse import retained_refusal

__all__ = ["PahoLink"]

log = logging.getLogger("remotecal.source.mqtt")


class PahoLink:
    """Same face as `gateway.mqtt.MqttLink`: `waiting`, `take()`, `ack(m)`, `start()`, `stop()`,
    `connected`."""

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
        self.retained_ignored = 0
        self._to_receiver = self._receiver._on_message
        link.client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        """Retained messages (MQTT 3.1.1 sets the flag only on those sent at a subscribe) are
        judged here, on paho's thread: one not to be read is acknowledged and dropped."""
        if msg.retain:
            try:
                why = retained_refusal(self.cfg.retained, self.cfg.topics, msg.topic)
            except UnicodeDecodeError:
                why = None  # the receiver quarantines a topic that is not UTF-8
            if why is not None:
                self.retained_ignored += 1
                log.info("mqtt source %r: ignored %s on %r", self.cfg.name, why, msg.topic[:200])
                if msg.qos:
                    client.ack(msg.mid, msg.qos)
                return
        self._to_receiver(client, userdata, msg)

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
