"""The shared subscription of an uplink source, and what Mosquitto does with it.

paho with manual acks: a frame is acknowledged only once the journal (or the refused
frames) holds it.  gateway/mqtt/ is to carry this onto the one asyncio MQTT link the
sources use; until then it is the paho link of the uplink sink (gateway.sinks.mqtt.link).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.mqtt.message import Message
from gateway.sinks.mqtt.link import LinkSettings, MqttLink, Receiver
from gateway.sources.uplink.config import UplinkSourceConfig

__all__ = ["SHARED_SUBSCRIPTION_NOTE", "IngestSubscriber"]

log = logging.getLogger("remotecal.ingest")

SHARED_SUBSCRIPTION_NOTE = """\
Measured with Mosquitto 2.0.11 (two MQTT 5 members with persistent sessions, one SIGKILLed
holding unacknowledged messages): the broker does NOT hand the dead member's unacknowledged
messages to the live one, and it keeps routing every other new message to the dead member's
session (round-robin goes on over both sessions).  All of them are delivered, the old ones
with DUP set, when the dead worker reconnects with the same client id.  Nothing is lost,
but half the stream waits: restart a dead worker promptly (systemd Restart=always), and in
any case before `session_expiry`.  tests/gateway/uplink/test_uplink_end_to_end.py checks it.

Also measured: after a restart of Mosquitto 2.0.11 itself, a persistent session keeps its
queued messages but not its shared subscriptions (plain ones are restored) until the worker
reconnects and subscribes again.  Meanwhile a gateway's PUBACK says "no matching
subscribers" and the uplink keeps the frame and retries (gateway.sinks.mqtt.sink), so
nothing is lost - unless some other client subscribes to the readings topics on the central
broker: then the broker accepts the frames for that client alone.  Keep the readings topics
to the ingest workers.
"""


class IngestSubscriber:
    """The shared subscription; messages reach the event loop through a bounded `Receiver`."""

    def __init__(self, cfg: UplinkSourceConfig, buffer: int = 10_000) -> None:
        self.topic_filter = f"$share/{cfg.group}/{cfg.topic_prefix}/+/+/readings"
        self._wake = asyncio.Event()
        self.link = MqttLink(
            LinkSettings(
                host=cfg.host, port=cfg.port, client_id=cfg.client_id or f"remotecal-ingest-{cfg.worker}",
                username=cfg.username, password=cfg.password, tls=cfg.tls, use_tls=cfg.uses_tls,
                keepalive=cfg.keepalive, reconnect_min=cfg.reconnect_min, reconnect_max=cfg.reconnect_max,
                persistent=True, session_expiry_s=int(cfg.session_expiry), manual_ack=True,
                max_inflight=cfg.max_inflight,
            ),
            f"ingest {cfg.worker!r}", log, on_connected=self._subscribe,
        )
        self._receiver = Receiver(self.link, buffer, self._wake.set)

    def _subscribe(self, client: mqtt.Client, _session_present: bool) -> None:
        client.subscribe(self.topic_filter, options=SubscribeOptions(qos=1))

    def start(self) -> None:
        self._receiver.start()

    async def stop(self) -> None:
        await self._receiver.stop()

    def ack(self, m: Message) -> None:
        self._receiver.ack(m)

    async def next(self) -> Message:
        """The next message."""
        while True:
            got = self._receiver.take(1)
            if got:
                return got[0]
            self._wake.clear()
            if not self._receiver.waiting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.2)
