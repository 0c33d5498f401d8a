"""The gateway's connection to the central broker for run control.

    subscribes   {prefix}/{site}/{gateway}/control/command    QoS 1, a clean session: a command
                                                                sent while the gateway is away is
                                                                not kept for later (it would have
                                                                expired, or be stale)
    publishes    {prefix}/{site}/{gateway}/control/answer     QoS 1, the signed answer

Site and gateway are percent-encoded like the uplink's topics.  Commands are handled one at
a time, in arrival order; a message that cannot be handled is refused, never the end of the
gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import quote

from gateway.control.config import ControlBroker
from gateway.control.service import ControlService
from gateway.sinks.mqtt.link import LinkSettings, MqttLink, Receiver

__all__ = ["RemoteControl", "answer_topic", "command_topic"]

log = logging.getLogger("remotecal.control")

_FLUSH_S = 60.0
"""How often the count of unsigned refusals not recorded one by one is recorded (if any)."""


def command_topic(prefix: str, site: str, gateway: str) -> str:
    return f"{prefix}/{quote(site, safe='')}/{quote(gateway, safe='')}/control/command"


def answer_topic(prefix: str, site: str, gateway: str) -> str:
    return f"{prefix}/{quote(site, safe='')}/{quote(gateway, safe='')}/control/answer"


class RemoteControl:
    """Takes commands from the broker to `service` and publishes its answers."""

    def __init__(self, service: ControlService, broker: ControlBroker, site: str, gateway: str) -> None:
        self.service = service
        self.command_topic = command_topic(broker.topic_prefix, site, gateway)
        self.answer_topic = answer_topic(broker.topic_prefix, site, gateway)
        self.link = MqttLink(
            LinkSettings(
                host=broker.host,
                port=broker.port,
                client_id=broker.client_id or f"remotecal-control-{site}-{gateway}",
                username=broker.username,
                password=broker.password,
                tls=broker.tls,
                use_tls=broker.uses_tls,
                keepalive=broker.keepalive,
                reconnect_min=broker.reconnect_min,
                reconnect_max=broker.reconnect_max,
            ),
            "run control",
            log,
            on_connected=self._subscribe,
        )
        self._wake = asyncio.Event()
        self.receiver = Receiver(self.link, 16, self._wake.set)
        self.link.client.on_subscribe = self._on_subscribed
        self.subscribed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _subscribe(self, client: object, _session_present: bool) -> None:
        self.link.client.subscribe(self.command_topic, qos=1)

    def _on_subscribed(self, _c: object, _u: object, _mid: int, codes: list[Any], _p: object) -> None:
        """SUBACK: commands reach us from now on (`subscribed`), or the broker refused (its ACL)."""
        if codes and getattr(codes[0], "is_failure", False):
            log.error("run control: the broker refused the subscription to %s (%s): does this account's "
                      "ACL allow reading it?", self.command_topic, codes[0])
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.subscribed.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        self._loop = asyncio.get_running_loop()
        self.receiver.start()
        log.info(
            "run control: commands on %s (%s:%d)",
            self.command_topic,
            self.link.settings.host,
            self.link.settings.port,
        )
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                for m in self.receiver.take():
                    await self._handle(m.topic, m.payload)
                if self.receiver.waiting:
                    continue
                self._wake.clear()
                if self.receiver.waiting:
                    continue
                waking = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waking, stopping}, timeout=_FLUSH_S, return_when=asyncio.FIRST_COMPLETED)
                if not waking.done() and not stopping.done():
                    await self.service.flush_unsigned()
                waking.cancel()
        finally:
            stopping.cancel()
            await self.receiver.stop()
            await self.service.flush_unsigned()

    async def _handle(self, topic: str, payload: bytes) -> None:
        if topic != self.command_topic:
            return
        try:
            answer = await self.service.remote(payload)
        except Exception:  # the service refuses what it can; this is a bug, and not our end
            log.exception("run control: a command could not be handled")
            return
        if answer is not None:
            with contextlib.suppress(Exception):
                self.link.client.publish(self.answer_topic, answer, qos=1)
