"""One MQTT 5 connection on the event loop, packets by `mqtt5`: remotecal's MQTT layer.

Built from one `LinkSettings` (gateway.mqtt.settings.link_settings, from any broker config
block): host, credentials, TLS, keepalive, reconnect bounds, session (clean start, expiry),
Receive Maximum and the subscriptions (shared ones too).  Every MQTT client of remotecal is
one of these: the MQTT source, the uplink sink, run control (the gateway's side, and the
institute's `remotecal run`: `connect_once`), the ingest's shared subscription
(`[[sources.uplink]]`).  paho-mqtt is left only for MQTT sources on brokers that speak only
3.1.1 (`protocol = "3.1.1"`, gateway.sources.mqtt.link311): `mqtt5` speaks MQTT 5 only, and
the demo's embedded amqtt broker 3.1.1 only.  Run control through a 3.1.1 broker is not
supported.

Why not paho?  A sensor message is small and comes alone, so the per-message cost of the
client is the source's cost.  paho reads each packet with several `recv` calls and builds it
in Python; this link does one `recv` of up to 256 KiB parsed by `mqtt5` (the sans-I/O MQTT 5
codec, in Rust, of the aiomqtt maintainers) in a tight loop, and writes all PUBACKs of a
journal commit in one `send`.  Measured by bench/mqtt_layers.py, 20,000 QoS 1 messages
queued by Mosquitto for a persistent MQTT 5 session, each handed to the event loop and
acknowledged there (manual ack), 2 CPUs shared with the team: this link 1.8-4.4 us of CPU
per message (91-272k messages/s), paho 2.x with manual_ack=True behind a bounded inbox
72-213 us (4.5-10.7k/s): 40-48x (four runs; 2026-12-07: 4.4 vs 212.9 us before this
package, 3.7 vs 174.1 us after).

Delivery guarantee: each QoS 1 message is acknowledged (PUBACK) only after the journal
committed it, and only on the connection it came on (`generation`); the MQTT source's and
the ingest's sessions are persistent (clean start off; session expiry "never", and the
ingest's `session_expiry`), so the broker keeps and resends what was not acknowledged.  Flow
control is the broker's: MQTT 5's Receive Maximum caps the QoS 1 messages in flight to us at
`receive_maximum` (`buffer`); QoS 0 input beyond `buffer` pauses reading the socket.  A
packet the codec cannot parse is not allowed to stop the stream: a PUBLISH is handed on as
malformed (quarantined with its reason, then acknowledged); anything else ends the
connection, which is then made anew.

Publishing (the uplink sink, run control's answers and commands): `publish()` sends a QoS 1
PUBLISH with a packet id of its own and returns the broker's PUBACK reason code, so a caller
tells success from 0x10 "no matching subscribers" (the frame went nowhere: keep it) and from
a refusal.  At most the broker's Receive Maximum (CONNACK) are in flight; a publish beyond
waits for a PUBACK.  The connection's end fails every publish still waiting: the caller holds
the message (the uplink: in its journal) and publishes it anew, so nothing is resent from
memory across connections.  Measured with a sink writing one frame after another to
Mosquitto (bench.uplink's live phase, CPU of the sink's process per frame, two runs):
10-reading frames 427 us on paho -> 195-211 us here, 1000-reading frames 1223 -> 755-810 us
(encoding and signing included); frames/s 1,828 -> 1,973-2,747 and 703 -> 590-1,050.
The ingest on this link (bench.uplink's scaling phase: 840 frames of 1000 readings queued for
1 and 2 workers, fsync = full, into influxd; two runs each, same machine and hour): drain rate
(20 % to 80 % delivered) 1 worker 88.9-108.0k readings/s on paho -> 111.2-119.8k here,
2 workers 105.8-119.8k -> 136.2-142.7k; every reading delivered exactly once in each run.

Conformance against a real Mosquitto, in the suite: reconnect and session resumption
(tests/gateway/test_end_to_end.py: broker restart, SIGKILL of the gateway), flow control
(Receive Maximum both ways: test_mqtt_link5.py, a full inbox pauses reading without the
keepalive dropping the link; test_mqtt_publish.py, a broker's Receive Maximum of 3 is never
exceeded), PUBACK reason codes, publishes failed by a lost connection, keepalive, TLS with a
client certificate and a password (test_mqtt_tls_auth.py, test_mqtt_publish.py), shared
subscriptions (tests/gateway/uplink/test_uplink_end_to_end.py).  `mqtt5` is a 0.x package:
pinned to its minor (pyproject.toml: >=0.8,<0.9).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import mqtt5

from gateway.backoff import Backoff
from gateway.mqtt.message import Message
from gateway.mqtt.settings import LinkSettings, ssl_context
from gateway.netprobe import MQTT_PORTS, http_server, looks_like_http, not_mqtt
from gateway.ratelimit import ConnectionStateLog
from gateway.takeover import TakeoverWatch

__all__ = ["NO_MATCHING_SUBSCRIBERS", "BrokerRefused", "MqttLink", "NotMqtt", "puback_reason"]

NO_MATCHING_SUBSCRIBERS = 0x10
"""PUBACK reason code: the broker took the message, but nobody subscribes to its topic."""

_CONNECT_TIMEOUT = 10.0
_PUBLISH = 0x30
_CONNACK = 0x20
_CLOSED = "connection closed"
_NOT_MQTT5 = "the broker does not speak MQTT 5 ({})"
_RETAIN_HANDLING = {"send": mqtt5.RetainHandling.SEND_ALWAYS, "never": mqtt5.RetainHandling.SEND_NEVER}


class BrokerRefused(ConnectionError):
    """CONNACK with a failure reason: credentials, authorisation, protocol."""


class NotMqtt(ConnectionError):
    """Another protocol's server answers there (HTTP): the URL's port is wrong."""


def puback_reason(code: int) -> str:
    """A PUBACK reason code in words: "QUOTA_EXCEEDED (0x97)" (just "0x.." if MQTT 5 has no name for it)."""
    try:
        return f"{mqtt5.PubAckReasonCode(code).name} (0x{code:02X})"
    except ValueError:
        return f"0x{code:02X}"


def _varint(buf: memoryview, pos: int) -> tuple[int, int] | None:
    """MQTT's Variable Byte Integer at `pos`: (value, bytes used), or None if incomplete."""
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i + 1
        shift += 7
    raise ValueError("malformed remaining length")


def _salvage_publish(packet: memoryview, body: int, error: str, generation: int, now: int) -> Message:
    """A PUBLISH the codec refused (`body`: where its variable header starts): topic and
    packet id read by hand, so that it can be quarantined - all its bytes, with the codec's
    reason - and acknowledged like any other rejected input."""
    header = packet[0]
    qos = (header >> 1) & 0x03
    tlen = int.from_bytes(packet[body:body + 2], "big")
    topic = bytes(packet[body + 2:body + 2 + tlen]).decode("utf-8", "replace")
    mid = int.from_bytes(packet[body + 2 + tlen:body + 4 + tlen], "big") if qos else 0
    return Message(topic, bytes(packet), mid, min(qos, 1), bool(header & 0x08), generation, now,
                   error=f"malformed MQTT PUBLISH ({error})")


class _Protocol(asyncio.Protocol):
    """Bytes in -> packets; PUBLISH -> the link's inbox, the rest -> the waiting session."""

    def __init__(self, link: MqttLink) -> None:
        loop = asyncio.get_running_loop()
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[mqtt5.ConnAckPacket] = loop.create_future()
        self.suback: asyncio.Future[mqtt5.SubAckPacket] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.last_rx = time.monotonic()
        self._rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.connack.done() and not self._rest and looks_like_http(data):
            # an HTTP server answers our CONNECT with its error page
            status = data.split(b"\r\n", 1)[0].decode("latin-1", "replace")[:80]
            self.connack.set_exception(NotMqtt(not_mqtt(status)))
            if self.transport is not None:
                self.transport.close()
            return
        buf = self._rest + data if self._rest else data
        view = memoryview(buf)
        pos, end = 0, len(buf)
        link = self.link
        generation = link.generation
        # Receive-time stamps must differ (a reading without a sensor time is keyed by it):
        # one clock read per chunk, then 1 ns apart, always after the previous chunk's.
        now = max(time.time_ns(), link.last_stamp + 1)
        inbox = link.inbox
        read = mqtt5.read
        publish = mqtt5.PublishPacket
        try:
            while pos < end:
                try:
                    packet, used = read(view[pos:])
                except IndexError:
                    break  # the rest of the packet is still on its way
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:  # mqtt5 can raise a pyo3 PanicException
                    after = self._malformed(view, pos, end, exc, generation, now)
                    if after is None:
                        return
                    pos = after
                    now += 1
                    continue
                pos += used
                if type(packet) is publish:
                    inbox.append(Message(packet.topic, packet.payload, packet.packet_id or 0, int(packet.qos),
                                         packet.duplicate, generation, now, retain=packet.retain))
                    now += 1
                else:
                    self._control(packet)
        finally:
            link.last_stamp = now - 1
            self._rest = bytes(view[pos:]) if pos < end else b""
            view.release()
        self.last_rx = time.monotonic()
        link.received()

    def _malformed(self, view: memoryview, pos: int, end: int, exc: BaseException, generation: int,
                   now: int) -> int | None:
        """Handle a packet the codec refused: where the next packet starts, or None when the
        connection has to end."""
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        try:
            size = _varint(view, pos + 1)
        except ValueError:
            size = None
        if view[pos] == _CONNACK and size == (2, 1) and not self.connack.done():
            # A 3.1.1 broker answers a version-5 CONNECT with its own CONNACK ("unacceptable
            # protocol version") and closes: say so rather than "unreadable packet".
            self.connack.set_exception(BrokerRefused(_NOT_MQTT5.format(self.link.not_mqtt5_hint)))
            return None
        if size is None or view[pos] & 0xF0 != _PUBLISH or pos + 1 + size[1] + size[0] > end:
            self.link.protocol_error(f"unreadable packet from the broker: {reason}")
            if self.transport is not None:
                self.transport.close()
            return None
        after = pos + 1 + size[1] + size[0]
        self.link.inbox.append(_salvage_publish(view[pos:after], 1 + size[1], reason, generation, now))
        return after

    def _control(self, packet: Any) -> None:
        if isinstance(packet, mqtt5.ConnAckPacket):
            if not self.connack.done():
                self.connack.set_result(packet)
        elif isinstance(packet, mqtt5.PubAckPacket):
            self.link.puback(packet.packet_id, int(packet.reason_code))
        elif isinstance(packet, mqtt5.SubAckPacket):
            if not self.suback.done():
                self.suback.set_result(packet)
        elif isinstance(packet, mqtt5.DisconnectPacket):
            self.link.server_disconnect(packet)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(str(exc) if exc else _CLOSED)
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(ConnectionError(str(exc) if exc else "connection closed by the broker"))
                fut.exception()  # retrieved: nobody may be waiting any more


class MqttLink:
    """Keeps one connection up (capped, jittered backoff); `inbox` collects messages,
    `ack(m)` queues a PUBACK, written with the others of the same event-loop turn;
    `publish()` sends at QoS 1 and returns the PUBACK's reason code.
    `name` starts its log lines ("mqtt source 'plant'"); `wake` runs when messages came;
    `not_mqtt5_hint` is what to do about a broker that speaks only MQTT 3.1.1."""

    def __init__(self, settings: LinkSettings, *, name: str, log: logging.Logger,
                 wake: Callable[[], None] = lambda: None,
                 not_mqtt5_hint: str = "this connection needs MQTT 5") -> None:
        self.settings = settings
        self.name = name
        self.not_mqtt5_hint = not_mqtt5_hint
        self.client_id = settings.client_id
        self.buffer = settings.receive_maximum
        self.connected = False
        self.generation = 0
        self.last_stamp = 0
        self.inbox: list[Message] = []
        self._log = log
        self._state = ConnectionStateLog(log, name, settings.host, settings.port)
        self._wake = wake
        self._proto: _Protocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._acks: list[bytes] = []
        self._flush_scheduled = False
        self._paused = False
        self._stopping = False
        self._suback_task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        """Set while the broker has granted every subscription of this connection."""
        self.subscription_answered = asyncio.Event()
        """Set once a SUBACK came (granted or not: `refused_subscriptions`)."""
        self.refused_subscriptions: list[tuple[str, str]] = []
        """(topic filter, reason) of each subscription the last SUBACK refused."""
        self._up = asyncio.Event()
        self.send_maximum = 65535
        """The broker's Receive Maximum (CONNACK): QoS 1 publishes of ours it takes in flight."""
        self.peak_in_flight = 0
        self._inflight: dict[int, asyncio.Future[int]] = {}
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._last_mid = 0
        self._ssl = ssl_context(settings)
        self._takeover = TakeoverWatch(log, name, settings.host, settings.port, settings.client_id)

    # -- called by the protocol ------------------------------------------------------

    def received(self) -> None:
        if self.inbox:
            self._wake()
            if len(self.inbox) >= self.buffer and not self._paused and self._proto and self._proto.transport:
                self._paused = True
                self._proto.transport.pause_reading()

    def protocol_error(self, detail: str) -> None:
        self._log.error("%s: %s; reconnecting", self.name, detail)

    def server_disconnect(self, packet: Any) -> None:
        if int(packet.reason_code) == mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER:
            self._session_taken_over("session taken over (DISCONNECT 0x8E):")
            return
        reason = getattr(packet.reason_code, "name", packet.reason_code)
        self._state.set("unreachable", f"the broker disconnected us: {reason}")

    def _session_taken_over(self, how: str) -> None:
        self._takeover.session_taken_over(how)

    @property
    def in_takeover_episode(self) -> bool:
        return self._takeover.in_episode

    # -- called by the source --------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Messages in the inbox."""
        return len(self.inbox)

    def take(self) -> list[Message]:
        """Every message received so far (and reading resumes if it was paused)."""
        out, self.inbox = self.inbox, []
        if self._paused and self._proto is not None and self._proto.transport is not None:
            self._paused = False
            self._proto.last_rx = time.monotonic()  # the keepalive check starts over
            self._proto.transport.resume_reading()
        return out

    def ack(self, m: Message) -> None:
        if m.qos and m.generation == self.generation and self.connected:
            self._acks.append(mqtt5.PubAckPacket(m.mid).write())
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._flush_scheduled = False
        acks, self._acks = self._acks, []
        proto = self._proto
        if acks and self.connected and proto is not None and proto.transport is not None:
            proto.transport.write(b"".join(acks))

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the connection (CONNACK); whether it is up."""
        if not self.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), timeout)
        return self.connected

    async def publish(self, topic: str, payload: bytes) -> int:
        """Send `payload` to `topic` at QoS 1 and return the PUBACK's reason code (0 success,
        0x10 no matching subscribers, 0x80 and above refused).  At most the broker's Receive
        Maximum of them are in flight: one more waits for a PUBACK.  ConnectionError when not
        connected, or when the connection ends before the PUBACK: the message is not sent again
        on the next connection - the caller still holds it and publishes it anew.  A publish
        whose caller stops waiting keeps its packet id (and its slot) until its PUBACK."""
        if not self.connected:
            raise ConnectionError("not connected")
        generation = self.generation
        loop = asyncio.get_running_loop()
        while len(self._inflight) >= self.send_maximum:
            slot: asyncio.Future[None] = loop.create_future()
            self._slot_waiters.append(slot)
            await slot
            if not self.connected or self.generation != generation:
                raise ConnectionError("disconnected before the PUBLISH was sent")
        proto = self._proto
        if proto is None or proto.transport is None:
            raise ConnectionError("not connected")
        mid = self._last_mid
        while True:
            mid = mid % 65535 + 1
            if mid not in self._inflight:
                break
        self._last_mid = mid
        done: asyncio.Future[int] = loop.create_future()
        self._inflight[mid] = done
        self.peak_in_flight = max(self.peak_in_flight, len(self._inflight))
        proto.transport.write(
            mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=mid).write())
        return await done

    @property
    def in_flight(self) -> int:
        """QoS 1 publishes of ours sent and not yet acknowledged."""
        return len(self._inflight)

    def puback(self, mid: int, reason_code: int) -> None:
        done = self._inflight.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(reason_code)
        while self._slot_waiters and len(self._inflight) < self.send_maximum:
            slot = self._slot_waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                break

    def _fail_publishes(self, reason: str) -> None:
        """The connection ended: every publish still waiting for its PUBACK (or a slot) fails."""
        inflight, self._inflight = self._inflight, {}
        for done in inflight.values():
            if not done.done():
                done.set_exception(ConnectionError(reason))
        waiters, self._slot_waiters = self._slot_waiters, collections.deque()
        for slot in waiters:
            if not slot.done():
                slot.set_result(None)

    async def start(self) -> None:
        self.start_nowait()

    def start_nowait(self) -> None:
        """Connect (and keep connecting) in a task of the running event loop."""
        self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        proto = self._proto
        if self.connected and proto is not None and proto.transport is not None:
            self._flush_acks()
            proto.transport.write(mqtt5.DisconnectPacket().write())
            proto.transport.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the connection --------------------------------------------------------------

    async def connect_once(self) -> None:
        """One attempt, no retry and no line logged (for a one-shot client that reports its
        own failure): raises OSError or ssl.SSLError (cannot reach), BrokerRefused, NotMqtt,
        ConnectionError or TimeoutError (no CONNACK); once connected, the link serves the
        connection in a task until `stop()` or its end, and is not made anew."""
        self._stopping = False
        try:
            proto, connack = await self._connect()
        except BaseException:
            self._disconnected()
            raise
        self._subscribe(proto)
        self._task = asyncio.create_task(self._serve_once(proto, connack), name=f"mqtt-{self.name}")

    async def _serve_once(self, proto: _Protocol, connack: mqtt5.ConnAckPacket) -> None:
        try:
            await self._serve(proto, connack)
        except (OSError, TimeoutError, ConnectionError):
            pass
        finally:
            self._disconnected()

    async def _run(self) -> None:
        backoff = Backoff(self.settings.reconnect_min, self.settings.reconnect_max)
        while not self._stopping:
            try:
                await self._session(backoff)
            except BrokerRefused as exc:
                self._state.set("refused by the broker", str(exc))
            except NotMqtt as exc:
                self._state.set("not an MQTT broker", str(exc))
            except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                self._takeover.unreachable()
                self._state.set("unreachable", str(exc) or type(exc).__name__)
            finally:
                self._disconnected()
            if not self._stopping:
                await asyncio.sleep(backoff.next())

    def _disconnected(self) -> None:
        self.connected = False
        self._up.clear()
        self.subscribed.clear()
        self._fail_publishes("disconnected before the PUBACK")
        self._paused = False
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def _session(self, backoff: Backoff) -> None:
        proto, connack = await self._connect()
        self._takeover.connected()
        if not self.in_takeover_episode:  # the tug of war is neither logged nor hurried
            backoff.reset()
            self._state.set("connected", "resumed session" if connack.session_present else "new session")
        self._subscribe(proto)
        await self._serve(proto, connack)

    async def _connect(self) -> tuple[_Protocol, mqtt5.ConnAckPacket]:
        """TCP (and TLS), CONNECT, a successful CONNACK: the connection is up."""
        cfg = self.settings
        loop = asyncio.get_running_loop()
        self.generation += 1  # before any byte arrives: the CONNACK's chunk may carry messages
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), cfg.host, cfg.port, ssl=self._ssl),
            _CONNECT_TIMEOUT)
        self._proto = proto
        assert proto.transport is not None
        proto.transport.write(mqtt5.ConnectPacket(
            self.client_id,
            username=cfg.username,
            password=cfg.password.get().encode() if cfg.password else None,
            clean_start=not cfg.persistent,
            keep_alive=int(cfg.keepalive),
            session_expiry_interval=cfg.session_expiry_s,
            receive_max=self.buffer,
        ).write())
        try:
            connack = await asyncio.wait_for(proto.connack, _CONNECT_TIMEOUT)
        except TimeoutError:
            proto.transport.close()
            status = await http_server(cfg.host, cfg.port, self._ssl)  # a server that waits for a line
            if status is not None:
                raise NotMqtt(not_mqtt(status)) from None
            raise ConnectionError(f"no CONNACK within {_CONNECT_TIMEOUT:.0f} s: not an MQTT broker (is the "
                                  f"port right? {MQTT_PORTS}), or one that does not speak MQTT 5 and does "
                                  f"not say so ({self.not_mqtt5_hint})") from None
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            raise BrokerRefused(connack.reason_str or connack.reason_code.name)
        self.send_maximum = max(1, connack.receive_max)
        self.connected = True
        self._up.set()
        return proto, connack

    def _subscribe(self, proto: _Protocol) -> None:
        # Retain flag set = sent because we subscribed (retain_as_published off: a live message
        # comes without it); retained = "never" asks the broker not to send those.
        subscriptions = self.settings.subscriptions
        if subscriptions and proto.transport is not None:
            proto.transport.write(mqtt5.SubscribePacket(1, [
                mqtt5.TopicFilter(t.topic_filter, max_qos=mqtt5.QoS(t.qos), retain_as_published=False,
                                  retain_handling=_RETAIN_HANDLING[t.retained]) for t in subscriptions
            ]).write())
            self._suback_task = asyncio.create_task(self._check_suback(proto))

    async def _serve(self, proto: _Protocol, connack: mqtt5.ConnAckPacket) -> None:
        """Keepalive until the connection ends."""
        assert proto.transport is not None
        keepalive = int(self.settings.keepalive)
        if connack.server_keep_alive is not None:
            keepalive = connack.server_keep_alive
        ping = mqtt5.PingReqPacket().write()
        while not proto.closed.done():
            done, _ = await asyncio.wait([proto.closed], timeout=keepalive / 2 if keepalive > 0 else None)
            if done:
                break
            # Paused (inbox full), the broker's PINGRESPs wait unread: no sign of a dead link.
            if not self._paused and time.monotonic() - proto.last_rx > 1.5 * keepalive:
                proto.transport.close()
                raise ConnectionError(f"no packet from the broker for {1.5 * keepalive:.0f} s")
            proto.transport.write(ping)
            self._takeover.still_ours()
        reason = proto.closed.result()
        if not self._stopping and not self._takeover.taken_over and reason == _CLOSED:
            self._takeover.closed_by_broker()
        if not self._stopping and not self._takeover.taken_over and not self.in_takeover_episode:
            self._state.set("unreachable", f"disconnected: {reason}")

    async def _check_suback(self, proto: _Protocol) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            suback = await asyncio.wait_for(proto.suback, _CONNECT_TIMEOUT)
            answered = zip(self.settings.subscriptions, suback.reason_codes, strict=False)
            refused = [(t.topic_filter, code) for t, code in answered if int(code) >= 0x80]
            self.refused_subscriptions = [(f, getattr(code, "name", str(code))) for f, code in refused]
            self.subscription_answered.set()
            if not refused and proto is self._proto:
                self.subscribed.set()
            for (topic_filter, code), (_, why) in zip(refused, self.refused_subscriptions, strict=True):
                acl = " (does this account's ACL allow reading it?)" if int(code) == 0x87 else ""
                self._log.error("%s: the broker refused the subscription to %r: %s%s",
                                self.name, topic_filter, why, acl)
