"""The gateway's connection to the central broker for run control.

    subscribes   {prefix}/{site}/{gateway}/control/command    QoS 1, a clean session: a command
                                                                sent while the gateway is away is
                                                                not kept for later (it would have
                                                                expired, or be stale)
    publishes    {prefix}/{site}/{gateway}/control/answer     QoS 1, the signed answer

Site and gateway are percent-encoded like the uplink's topics.  Commands are handled one at
a time, in arrival order; a message that cannot be handled is refused, never the end of the
gateway.  The connection is remotecal's MQTT layer (`gateway.mqtt.MqttLink`, MQTT 5 only: run
control through a broker that speaks only 3.1.1 is not supported); a command is acknowledged
once handled, and the answer waits for its PUBACK (an answer the broker did not take - the
connection ended first - is logged: the institute's `remotecal run` sees no answer and says so).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from gateway.control.config import ControlBroker
from gateway.control.service import ControlService
from gateway.mqtt import MqttLink, Subscription, link_settings

__all__ = ["RemoteControl", "answer_topic", "command_topic"]

log = logging.getLogger("remotecal.control")

_FLUSH_S = 60.0
"""How often the count of unsigned refusals not recorded one by one is recorded (if any)."""
_ANSWER_TIMEOUT_S = 10.0
"""How long an answer waits for its PUBACK (the institute's side waits 15 s by default)."""
_INBOX = 16


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
        self._wake = asyncio.Event()
        self.link = MqttLink(
            link_settings(broker, client_id=f"remotecal-control-{site}-{gateway}", receive_maximum=_INBOX,
                          subscriptions=[Subscription(self.command_topic, qos=1)]),
            name="run control", log=log, wake=self._wake.set)
        self.subscribed = self.link.subscribed
        """Set once the broker granted the subscription: commands reach us from then on."""

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        await self.link.start()
        log.info(
            "run control: commands on %s (%s:%d)",
            self.command_topic,
            self.link.settings.host,
            self.link.settings.port,
        )
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                for m in self.link.take():
                    await self._handle(m.topic, m.payload)
                    self.link.ack(m)
                if self.link.waiting:
                    continue
                self._wake.clear()
                if self.link.waiting:
                    continue
                waking = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waking, stopping}, timeout=_FLUSH_S, return_when=asyncio.FIRST_COMPLETED)
                if not waking.done() and not stopping.done():
                    await self.service.flush_unsigned()
                waking.cancel()
        finally:
            stopping.cancel()
            await self.link.stop()
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
            try:
                await asyncio.wait_for(self.link.publish(self.answer_topic, answer), _ANSWER_TIMEOUT_S)
            except (ConnectionError, TimeoutError) as exc:
                log.warning("run control: an answer was not sent (%s); the institute sees no answer",
                            str(exc) or f"no PUBACK within {_ANSWER_TIMEOUT_S:g} s")
