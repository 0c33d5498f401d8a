"""The MQTT source's connection for brokers that speak only MQTT 3.1.1: paho-mqtt 2.x.

Why paho here: remotecal's MQTT layer (`gateway.mqtt`) is built on `mqtt5`, a codec of MQTT 5
only, and some brokers speak only 3.1.1 (the demo's embedded amqtt broker, for one).  This
is paho's only use in the gateway (firmware_bridge's simulated sensor nodes publish with it,
as a device would): the uplink sink, run control and the ingest speak MQTT 5
through `gateway.mqtt` (run control through a 3.1.1 broker is not supported).

The connection (`PahoConnection`) is paho on a thread of its own with our capped, jittered
reconnect loop (state changes logged once), MQTT 3.1.1, a persistent session
(`clean_session=False`, a stable client id) and `manual_ack`: the broker keeps
unacknowledged QoS 1 messages and redelivers them after a crash or a reconnect.  Messages
reach the event loop through a bounded `Receiver`; an acknowledgement is only sent on the
connection (`generation`) that delivered the message, as the broker forgets message ids
across connections.  It costs ~40x the CPU per message of the MQTT 5 link
(bench/mqtt_layers.py, which also measures it on an MQTT 5 session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.backoff import Backoff
from gateway.mqtt.message import Message
from gateway.mqtt.settings import LinkSettings, link_settings
from gateway.netprobe import http_server_sync, not_mqtt
from gateway.ratelimit import ConnectionStateLog
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.parse import retained_refusal
from gateway.takeover import TakeoverWatch

__all__ = ["PahoConnection", "PahoLink", "Receiver"]

log = logging.getLogger("remotecal.source.mqtt")

_SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason code: another client took our session


class PahoConnection:
    """Keeps one paho client connected on a thread of its own: our capped, jittered
    reconnect loop rather than paho's, so a change of state is logged once and the retry delay
    is jittered.  `on_connected(client, session_present)` runs on the paho thread."""

    def __init__(self, settings: LinkSettings, name: str, log: logging.Logger,
                 on_connected: Callable[[mqtt.Client, bool], None] | None = None, *,
                 protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311) -> None:
        """The one `gateway.mqtt.LinkSettings` (its subscriptions aside: `on_connected`
        subscribes); `receive_maximum` caps paho's own in-flight window; always manual acks.
        `protocol`: MQTT 3.1.1 (what this fallback is for; persistent = clean session off) or
        5 (bench/mqtt_layers.py compares paho with the MQTT 5 link on one protocol)."""
        self.settings = settings
        self.protocol = protocol
        self.name = name
        self.connected = False
        self.generation = 0
        self._on_connected = on_connected
        self._state = ConnectionStateLog(log, name, settings.host, settings.port)
        self._takeover = TakeoverWatch(log, name, settings.host, settings.port, settings.client_id)
        self._log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=self.protocol,
            clean_session=None if self.protocol == mqtt.MQTTv5 else not s.persistent,
            reconnect_on_failure=False, manual_ack=True,
        )
        if s.username is not None:
            c.username_pw_set(s.username, s.password.get() if s.password else None)
        if s.use_tls:
            c.tls_set(
                ca_certs=s.tls.ca_file if s.tls else None,
                certfile=s.tls.cert_file if s.tls else None,
                keyfile=s.tls.key_file if s.tls else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if s.tls and s.tls.insecure:
                c.tls_insecure_set(True)
        c.max_inflight_messages_set(s.receive_maximum)
        c.max_queued_messages_set(0)
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        return c

    def _handle_connect(self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags,
                        reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self._state.set("refused by the broker", str(reason))
            return
        self.generation += 1
        self.connected = True
        self._takeover.connected()
        if not self._takeover.in_episode:  # the tug of war of a session takeover is not logged
            self._state.set("connected", "resumed session" if flags.session_present else "new session")
        if self._on_connected is not None:
            self._on_connected(client, bool(flags.session_present))

    def _handle_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode,
                           _p: object) -> None:
        had_connack, self.connected = self.connected, False
        if had_connack and not self._stop.is_set():
            if reason.value == _SESSION_TAKEN_OVER:
                self._takeover.session_taken_over("session taken over (DISCONNECT 0x8E):")
            elif reason.is_failure:  # the broker closed a working connection without a word
                self._takeover.closed_by_broker()
            if self._takeover.taken_over or self._takeover.in_episode:
                return
        if not self._stop.is_set() and self._state.state != "refused by the broker":
            # No CONNACK before the end: is it a broker at all? (an HTTP server on a wrong port)
            s = self.settings
            tls = _probe_tls() if s.use_tls else None
            status = None if had_connack else http_server_sync(s.host, s.port, tls)
            if status is not None:
                self._state.set("not an MQTT broker", not_mqtt(status))
            else:
                self._state.set("unreachable", f"disconnected: {reason}")

    def _connect_properties(self) -> Properties | None:
        if not self.settings.session_expiry_s:
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        return props

    def _network_loop(self) -> None:
        s = self.settings
        backoff = Backoff(s.reconnect_min, s.reconnect_max)
        first = True
        v5: dict[str, Any] = ({"clean_start": not s.persistent, "properties": self._connect_properties()}
                              if self.protocol == mqtt.MQTTv5 else {})  # 3.1.1: clean_session, on the client
        while not self._stop.is_set():
            try:
                if first:
                    self.client.connect(s.host, s.port, keepalive=int(s.keepalive), **v5)
                    first = False
                else:
                    self.client.reconnect()
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._takeover.unreachable()
                self._state.set("unreachable", str(exc) or type(exc).__name__)
                self._stop.wait(backoff.next())
                continue
            while not self._stop.is_set():
                try:
                    if self.client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                        break
                except Exception as exc:  # raised by a callback: a bug, which must not end this thread
                    self._log.error("%s: %s on the MQTT thread (a bug); reconnecting", self.name,
                                    type(exc).__name__, exc_info=exc)
                    with contextlib.suppress(Exception):
                        self.client.disconnect()
                    break
                if self.connected:
                    self._takeover.still_ours()
                    if not self._takeover.in_episode:  # a takeover's tug of war slows down
                        backoff = Backoff(s.reconnect_min, s.reconnect_max)
            if self.connected:  # the loop broke without paho calling on_disconnect
                lost = mqtt.ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
                self._handle_disconnect(self.client, None, None, lost, None)
            if not self._stop.is_set():
                self._stop.wait(backoff.next())
        with contextlib.suppress(Exception):
            self.client.disconnect()
            self.client.loop(timeout=0.1)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._network_loop, name=f"mqtt-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect and join the thread (blocking: call it through `asyncio.to_thread`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()


def _probe_tls() -> ssl.SSLContext:
    """TLS for asking what answers (nothing secret is sent): no certificate check."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Receiver:
    """The messages of a subscribing `PahoConnection`, handed from its paho thread to the event loop
    through a bounded inbox: while `buffer` messages wait, the paho thread stops reading the
    socket, so backpressure reaches the broker instead of our memory.  `wake` runs on the
    event loop when the inbox stops being empty; `ack(m)` acknowledges (manual_ack) only on
    the connection that brought `m`, as the broker forgets message ids across connections."""

    def __init__(self, link: PahoConnection, buffer: int, wake: Callable[[], None]) -> None:
        self.link = link
        self._wake = wake
        self._inbox: deque[Message] = deque()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, buffer))
        self._loop: asyncio.AbstractEventLoop | None = None
        link.client.on_message = self._on_message

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic, error = msg.topic, None
        except UnicodeDecodeError:  # MQTT demands UTF-8; a broker that lets it through must not stop us
            topic, error = bytes(msg._topic).decode("utf-8", "replace"), "topic is not UTF-8"
        item = Message(topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.dup), self.link.generation,
                       time.time_ns(), error=error)
        while not self._slots.acquire(timeout=0.5):
            if self.link.stopping:
                return  # not acked: the broker redelivers it to the next session
        with self._lock:
            self._inbox.append(item)
            first = len(self._inbox) == 1
        if first and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)

    @property
    def waiting(self) -> int:
        """Messages in the inbox."""
        return len(self._inbox)

    def take(self, limit: int | None = None) -> list[Message]:
        """The oldest `limit` messages of the inbox (all without a limit)."""
        with self._lock:
            n = len(self._inbox) if limit is None else min(limit, len(self._inbox))
            out = [self._inbox.popleft() for _ in range(n)]
        for _ in out:
            self._slots.release()
        return out

    def ack(self, m: Message) -> None:
        if m.qos and m.generation == self.link.generation and self.link.connected:
            self.link.client.ack(m.mid, m.qos)

    def start(self) -> None:
        """Connect (on the event loop that takes the messages)."""
        self._loop = asyncio.get_running_loop()
        self.link.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.link.stop)


class PahoLink:
    """Same face as `gateway.mqtt.MqttLink`: `waiting`, `take()`, `ack(m)`, `start()`, `stop()`,
    `connected`."""

    def __init__(self, cfg: MqttSourceConfig, client_id: str, *, buffer: int,
                 wake: Callable[[], None]) -> None:
        self.cfg = cfg
        link = PahoConnection(link_settings(cfg, client_id=client_id, persistent=True, receive_maximum=1000),
                              f"mqtt source {cfg.name!r}", log, on_connected=self._subscribe)
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
