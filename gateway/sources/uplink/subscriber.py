"""The shared subscription of an uplink source, and what Mosquitto does with it.

remotecal's MQTT layer (`gateway.mqtt.MqttLink`, MQTT 5 on the event loop) with a
persistent session and manual acks: a frame is acknowledged only once the journal (or the
refused frames) holds it, and only on the connection that brought it; the broker has at most
`max_inflight` frames in flight to this worker (the CONNACK's Receive Maximum).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from gateway.mqtt import Message, MqttLink, Subscription, link_settings
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
    """The shared subscription: `start()`, `await next()`, `ack(m)` after the commit, `stop()`."""

    def __init__(self, cfg: UplinkSourceConfig) -> None:
        self.topic_filter = f"$share/{cfg.group}/{cfg.topic_prefix}/+/+/readings"
        self._wake = asyncio.Event()
        self._taken: collections.deque[Message] = collections.deque()
        self.link = MqttLink(
            link_settings(cfg, client_id=f"remotecal-ingest-{cfg.worker}", persistent=True,
                          session_expiry_s=int(cfg.session_expiry), receive_maximum=cfg.max_inflight,
                          subscriptions=[Subscription(self.topic_filter, qos=1)]),
            name=f"ingest {cfg.worker!r}", log=log, wake=self._wake.set)

    def start(self) -> None:
        """Connect (on the event loop that takes the messages)."""
        self.link.start_nowait()

    async def stop(self) -> None:
        await self.link.stop()

    def ack(self, m: Message) -> None:
        self.link.ack(m)

    async def next(self) -> Message:
        """The next message."""
        while True:
            if self._taken:
                return self._taken.popleft()
            self._taken.extend(self.link.take())
            if self._taken:
                continue
            self._wake.clear()
            if not self.link.waiting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.2)
