"""The MQTT source's connection for brokers that speak only MQTT 3.1.1: paho-mqtt 2.x.

paho runs on a thread of its own with `manual_ack=True` and a persistent session
(`clean_session=False`, a stable client id): the broker keeps unacknowledged QoS 1 messages
and redelivers them after a crash or a reconnect.  The thread hands messages to the event
loop through a bounded inbox; when it is full the thread stops reading the socket, so
backpressure reaches the broker instead of our memory.  We run our own connect loop rather
than paho's, so the backoff is capped, exponential and jittered.  MQTT 5 brokers are reached
by the faster `gateway.sources.mqtt.link5` (the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gateway.backoff import Backoff
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.message import Message

__all__ = ["PahoLink"]


class PahoLink:
    """Same face as `Mqtt5Link`: `inbox`/`take()`, `ack(m)`, `start()`, `stop()`."""

    def __init__(self, cfg: MqttSourceConfig, client_id: str, *, buffer: int,
                 set_state: Callable[..., None], wake: Callable[[], None]) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.connected = False
        self.generation = 0
        self._set_state = set_state
        self._wake = wake
        self._inbox: list[Message] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, buffer))
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._refused = False
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False,
                        protocol=mqtt.MQTTv311, reconnect_on_failure=False, manual_ack=True)
        if cfg.username is not None:
            c.username_pw_set(cfg.username, cfg.password.get() if cfg.password else None)
        if cfg.uses_tls:
            tls = cfg.tls
            c.tls_set(ca_certs=tls.ca_file if tls else None, certfile=tls.cert_file if tls else None,
                      keyfile=tls.key_file if tls else None, cert_reqs=ssl.CERT_REQUIRED)
            if tls and tls.insecure:
                c.tls_insecure_set(True)
        c.max_inflight_messages_set(1000)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    # -- paho thread -------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self._refused = True
            self._set_state("refused by the broker", str(reason))
            return
        self._refused = False
        self.generation += 1
        self.connected = True
        self._set_state("connected", "resumed session" if flags.session_present else "new session")
        client.subscribe([(t.topic, int(self.cfg.qos)) for t in self.cfg.topics])

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode,
                       _p: object) -> None:
        self.connected = False
        # After a refused CONNECT the broker closes the socket: that is still "refused".
        if not self._stop.is_set() and not self._refused:
            self._set_state("unreachable", f"disconnected: {reason}")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        item = Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.dup), self.generation,
                       time.time_ns())
        while not self._slots.acquire(timeout=0.5):
            if self._stop.is_set():
                return  # not acked: the broker redelivers it to the next session
        with self._lock:
            self._inbox.append(item)
            first = len(self._inbox) == 1
        if first and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)

    def _network_loop(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min, self.cfg.reconnect_max)
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
                self._stop.wait(backoff.next())
                continue
            while not self._stop.is_set():
                if self._client.loop(timeout=0.2) != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self.connected:
                    backoff.reset()
            self.connected = False
            if not self._stop.is_set():
                self._stop.wait(backoff.next())
        with contextlib.suppress(Exception):
            self._client.disconnect()
            self._client.loop(timeout=0.1)

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
        if m.qos and m.generation == self.generation and self.connected:
            self._client.ack(m.mid, m.qos)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._network_loop, name=f"mqtt-{self.cfg.name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
