"""MQTT source: broker -> readings, each message acknowledged only once it is in the journal.

The connection is a link: `gateway.mqtt.MqttLink` (MQTT 5, on the event loop, the default:
remotecal's one MQTT layer) or `link311.PahoLink` (paho, for brokers that speak only 3.1.1;
`protocol = "3.1.1"`).  Both
keep a persistent session, so the broker keeps unacknowledged QoS 1 messages and redelivers
them after a crash or a reconnect, and both log a change of state ("connected",
"unreachable", "refused by the broker") once.  This module turns their messages into
readings and hands them to the journal; the journal's commit acknowledges them.

A redelivered message (DUP set) whose bytes were already committed is recognised by its
dedupe key and only acknowledged, so a reading stamped with its receive time is not written
twice under two different times.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Literal

from gateway.mqtt import SESSION_NEVER_EXPIRES, Message, MqttLink, Subscription, link_settings
from gateway.ratelimit import RateLimitedLog
from gateway.sources import Rejected, SourceBatch
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.link311 import PahoLink
from gateway.sources.mqtt.parse import MessageParser, Parsed, retained_refusal

__all__ = ["MqttSource", "mqtt5_link"]

log = logging.getLogger("remotecal.source.mqtt")


def mqtt5_link(cfg: MqttSourceConfig, client_id: str, *, buffer: int, wake: Callable[[], None]) -> MqttLink:
    """The source's MQTT 5 link: a persistent session that never expires, at most `buffer`
    QoS 1 messages in flight to us, retained messages asked for only when they are read."""
    # Retain flag set = sent because we subscribed (retain_as_published off: a live message
    # comes without it); with retained = "ignore" the broker is asked not to send those.
    retained: Literal["send", "never"] = "never" if cfg.retained == "ignore" else "send"
    settings = link_settings(cfg, client_id=client_id, persistent=True,
                             session_expiry_s=SESSION_NEVER_EXPIRES, receive_maximum=buffer,
                             subscriptions=[Subscription(t.topic, cfg.qos, retained) for t in cfg.topics])
    return MqttLink(settings, name=f"mqtt source {cfg.name!r}", log=log, wake=wake,
                    not_mqtt5_hint='set protocol = "3.1.1" for this source')


class MqttSource:
    """`async with MqttSource(cfg, ...) as src: async for batch in src.batches(): ...`"""

    def __init__(self, cfg: MqttSourceConfig, *, site: str, gateway: str, run: str,
                 buffer: int = 10_000):
        self.cfg = cfg
        self.name = cfg.name
        self.parser = MessageParser(cfg.topics, site=site, gateway=gateway, run=run,
                                    max_payload=cfg.max_payload)
        self.client_id = cfg.client_id or f"remotecal-{site}-{gateway}-{cfg.name}"
        self.messages = 0
        self.retained_ignored = 0
        self._retained_log = RateLimitedLog(log, 60.0)
        self._rejects_log = RateLimitedLog(log)
        self._wake = asyncio.Event()
        self._closing = False
        self._link: MqttLink | PahoLink = (
            PahoLink(cfg, self.client_id, buffer=buffer, wake=self._wake.set) if cfg.protocol == "3.1.1"
            else mqtt5_link(cfg, self.client_id, buffer=buffer, wake=self._wake.set))

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def clock_offset_s(self) -> float | None:
        """The sensors' clocks minus the gateway's (median of recent sensor-stamped messages)."""
        offset = self.parser.clock.offset_ns()
        return None if offset is None else offset / 1e9

    async def __aenter__(self) -> MqttSource:
        await self._link.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        await self._link.stop()

    async def batches(self) -> AsyncIterator[SourceBatch]:
        link = self._link
        while not self._closing:
            if not link.waiting:
                self._wake.clear()
                if not link.waiting:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 0.5)
                continue
            for m in link.take():
                self.messages += 1
                yield self._batch(m)

    def _batch(self, m: Message) -> SourceBatch:
        if m.retain and m.error is None:
            why = retained_refusal(self.cfg.retained, self.cfg.topics, m.topic)
            if why is not None:  # acknowledged, not read: an old copy sent at the subscribe
                self.retained_ignored += 1
                self._retained_log.warning("retained", "mqtt source %r: ignored %s on %r", self.name, why,
                                           m.topic[:200])
                return SourceBatch(on_committed=functools.partial(self._link.ack, m))
        if m.error is not None:
            parsed = Parsed([], [m.error])
        else:
            try:
                parsed = self.parser.parse(m.topic, m.payload, m.received_ns)
            except Exception as exc:  # a parser bug must cost this message, never the process
                reason = f"the parser failed: {type(exc).__name__}: {exc}"[:300]
                self._rejects_log.error("parser-bug", "mqtt source %r: %s (message on %r quarantined)",
                                        self.name, reason, m.topic[:200], exc_info=exc)
                parsed = Parsed([], [reason])
        rejected = []
        for reason in parsed.errors:
            self._rejects_log.warning(reason.split(" ")[0], "mqtt source %r: rejected a message on %r: %s",
                                      self.name, m.topic[:200], reason)
            rejected.append(Rejected(self.name, reason, m.topic, m.payload, m.received_ns))
        return SourceBatch(parsed.readings, rejected, on_committed=functools.partial(self._link.ack, m),
                           dedupe=(m.topic.encode(), m.payload) if self._dedupe(m, parsed) else None,
                           redelivered=m.dup)

    @staticmethod
    def _dedupe(m: Message, parsed: Parsed) -> bool:
        """Remember this message for redelivery checks?  Only where a redelivered copy would not
        be the same points: readings stamped with the receive time, or rejects (quarantine
        rows).  A copy of sensor-stamped readings rewrites the same series and timestamps,
        which InfluxDB (and the local store) keep as one point - so no `seen` row is spent."""
        return bool(m.qos) and (not parsed.sensor_time or bool(parsed.errors))
