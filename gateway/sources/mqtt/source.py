"""MQTT source: broker -> readings, each message acknowledged only once it is in the journal.

paho-mqtt 2.x runs on a thread of its own with `manual_ack=True` and a persistent session
(`clean_session=False`, a stable client id): the broker keeps unacknowledged QoS 1 messages
and redelivers them after a crash or a reconnect.  The thread hands raw messages to the
event loop through a bounded buffer; when the buffer is full the thread stops reading the
socket, so backpressure reaches the broker instead of our memory.  We run our own connect
loop rather than paho's so the backoff is capped, exponential and jittered, and a change of
state ("connected", "unreachable") is logged once.

A redelivered message (DUP set) whose bytes were already committed is recognised by its
dedupe key and only acknowledged, so a reading stamped with its receive time is not written
twice under two different times.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from gateway.ratelimit import RateLimitedLog
from gateway.sources import Rejected, SourceBatch
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.parse import MessageParser, Parsed

__all__ = ["MqttSource"]

log = logging.getLogger("remotecal.source.mqtt")


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    generation: int
    received_ns: int


class MqttSource:
    """`async with MqttSource(cfg, ...) as src: async for batch in src.batches(): ...`"""

    def __init__(self, cfg: MqttSourceConfig, *, site: str, gateway: str, run: str,
                 buffer: int = 10_000):
        self.cfg = cfg
        self.name = cfg.name
        self.parser = MessageParser(cfg.topics, site=site, gateway=gateway, run=run,
                                    max_payload=cfg.max_payload)
        self.client_id = cfg.client_id or f"remotecal-{site}-{gateway}-{cfg.name}"
        self.connected = False
        self.messages = 0
        self._rejects_log = RateLimitedLog(log)
        self._buffer: deque[_Message] = deque()
        self._slots = threading.BoundedSemaphore(buffer)
        self._stop = threading.Event()
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting = False
        self._wake = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._client = self._make_client()
        self._state: str | None = None

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if cfg.username is not None:
            c.username_pw_set(cfg.username, cfg.password.get() if cfg.password else None)
        if cfg.uses_tls:
            tls = cfg.tls
            c.tls_set(
                ca_certs=tls.ca_file if tls else None,
                certfile=tls.cert_file if tls else None,
                keyfile=tls.key_file if tls else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if tls and tls.insecure:
                c.tls_insecure_set(True)
        c.max_inflight_messages_set(1000)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    # -- paho thread -------------------------------------------------------------------

    def _set_state(self, state: str, detail: str = "") -> None:
        if state != self._state:
            self._state = state
            line = f"mqtt source {self.name!r} ({self.cfg.host}:{self.cfg.port}): {state}"
            (log.info if state == "connected" else log.warning)(line + (f" - {detail}" if detail else ""))

    def _on_connect(self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self._set_state("refused by the broker", str(reason))
            return
        self._generation += 1
        self.connected = True
        self._set_state("connected", "resumed session" if flags.session_present else "new session")
        client.subscribe([(t.topic, int(self.cfg.qos)) for t in self.cfg.topics])

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode,
                       _p: object) -> None:
        self.connected = False
        # After a refused CONNECT the broker closes the socket: that is still "refused".
        if not self._stop.is_set() and self._state != "refused by the broker":
            self._set_state("unreachable", f"disconnected: {reason}")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        item = _Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.dup), self._generation,
                        time.time_ns())
        while not self._slots.acquire(timeout=0.5):
            if self._stop.is_set():
                return  # not acked: the broker redelivers it to the next session
        self._buffer.append(item)
        if self._waiting and self._loop is not None:
            self._waiting = False
            self._loop.call_soon_threadsafe(self._wake.set)

    def _network_loop(self) -> None:
        delay = self.cfg.reconnect_min
        first = True
        while not self._stop.is_set():
            try:
                if first:
                    self._client.connect(self.cfg.host, self.cfg.port, keepalive=int(self.cfg.keepalive))
                    first = False
                else:
                    self._client.reconnect()
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._set_state("unreachable", str(exc) or type(exc).__name__)
                self._stop.wait(random.uniform(0.5, 1.0) * delay)
                delay = min(delay * 2, self.cfg.reconnect_max)
                continue
            while not self._stop.is_set():
                rc = self._client.loop(timeout=0.2)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self.connected:
                    delay = self.cfg.reconnect_min
            self.connected = False
            if not self._stop.is_set():
                self._stop.wait(random.uniform(0.5, 1.0) * delay)
                delay = min(delay * 2, self.cfg.reconnect_max)
        with contextlib.suppress(Exception):
            self._client.disconnect()
            self._client.loop(timeout=0.1)

    # -- event loop --------------------------------------------------------------------

    async def __aenter__(self) -> MqttSource:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._network_loop, name=f"mqtt-{self.name}", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)

    def _ack(self, m: _Message) -> None:
        if m.qos and m.generation == self._generation and self.connected:
            self._client.ack(m.mid, m.qos)

    async def batches(self) -> AsyncIterator[SourceBatch]:
        while not self._stop.is_set():
            if not self._buffer:
                self._waiting = True
                if not self._buffer:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 0.5)
                self._wake.clear()
                self._waiting = False
                continue
            m = self._buffer.popleft()
            self._slots.release()
            self.messages += 1
            parsed = self.parser.parse(m.topic, m.payload, m.received_ns)
            rejected = []
            for reason in parsed.errors:
                self._rejects_log.warning(
                    reason.split(" ")[0], "mqtt source %r: rejected a message on %r: %s",
                    self.name, m.topic, reason,
                )
                rejected.append(Rejected(self.name, reason, m.topic, m.payload, m.received_ns))
            yield SourceBatch(parsed.readings, rejected, on_committed=functools.partial(self._ack, m),
                              dedupe=(m.topic.encode(), m.payload) if self._dedupe(m, parsed) else None,
                              redelivered=m.dup)

    @staticmethod
    def _dedupe(m: _Message, parsed: Parsed) -> bool:
        """Remember this message for redelivery checks?  Only where a redelivered copy would not
        be the same points: readings stamped with the receive time, or rejects (quarantine
        rows).  A copy of sensor-stamped readings rewrites the same series and timestamps,
        which InfluxDB (and the local store) keep as one point - so no `seen` row is spent."""
        return bool(m.qos) and (not parsed.sensor_time or bool(parsed.errors))
