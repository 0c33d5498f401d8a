"""The MQTT 5 link of the MQTT source, at the protocol level.

A scripted broker on 127.0.0.1 sends exactly the bytes under test - what no real broker can be
made to send (a PUBLISH the codec refuses, a 3.1.1 refusal of a version-5 CONNECT, many
messages in one TCP segment) - and records the PUBACKs it gets.  Everything else about the
link runs against a real Mosquitto in tests/gateway/test_end_to_end.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import mqtt5
import pytest

from gateway.sources import SourceBatch
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.source import MqttSource

TOPICS = [{"topic": "lab/+/raw", "format": "value",
           "fields": [{"channel": "{1}-raw", "quantity": "temperature", "unit": "degC", "role": "dut"}]}]


class ScriptedBroker:
    """Answers CONNECT with `connack`, SUBSCRIBE with a SUBACK, then writes `after_subscribe`
    in one write; every PUBACK packet id it receives lands in `acked`."""

    def __init__(self, connack: bytes, after_subscribe: bytes = b"") -> None:
        self.connack = connack
        self.after_subscribe = after_subscribe
        self.acked: list[int] = []
        self.connects: list[mqtt5.ConnectPacket] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedBroker:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        try:
            while data := await reader.read(65536):
                buf += data
                while buf:
                    try:
                        packet, used = mqtt5.read(memoryview(buf))
                    except IndexError:
                        break
                    buf = buf[used:]
                    if isinstance(packet, mqtt5.ConnectPacket):
                        self.connects.append(packet)
                        writer.write(self.connack)
                    elif isinstance(packet, mqtt5.SubscribePacket):
                        writer.write(mqtt5.SubAckPacket(packet.packet_id, [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE]
                                                        ).write() + self.after_subscribe)
                    elif isinstance(packet, mqtt5.PubAckPacket):
                        self.acked.append(packet.packet_id)
                    elif isinstance(packet, mqtt5.PingReqPacket):
                        writer.write(mqtt5.PingRespPacket().write())
        except ConnectionError:
            pass
        finally:
            writer.close()


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Return once `cond()` holds; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def _source(port: int, buffer: int = 10_000, **options: str) -> MqttSource:
    cfg = MqttSourceConfig.model_validate({"name": "s", "url": f"mqtt://127.0.0.1:{port}", "topics": TOPICS,
                                           "reconnect_min": "50ms", "reconnect_max": "200ms", **options})
    return MqttSource(cfg, site="lab", gateway="gw", run="R", buffer=buffer)


async def _take(src: MqttSource, n: int) -> list[SourceBatch]:
    out: list[SourceBatch] = []

    async def collect() -> None:
        async for batch in src.batches():
            out.append(batch)
            if len(out) == n:
                return
    await asyncio.wait_for(collect(), 10)
    return out


def _publish(topic: str, payload: bytes, mid: int) -> bytes:
    return mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=mid).write()


OK = mqtt5.ConnAckPacket(session_present=True).write()


async def test_messages_of_one_segment_get_distinct_receive_stamps_and_are_acked_only_when_committed() -> None:
    n = 300
    burst = b"".join(_publish(f"lab/p{i % 3}/raw", f"{i}.25".encode(), i + 1) for i in range(n))
    async with ScriptedBroker(OK, burst) as broker, _source(broker.port) as src:
        batches = await _take(src, n)
        stamps = [b.readings[0].time_ns for b in batches]
        assert [b.readings[0].value for b in batches] == [i + 0.25 for i in range(n)]
        assert len(set(stamps)) == n and stamps == sorted(stamps), "a receive stamp is a point's key"
        await asyncio.sleep(0.2)
        assert broker.acked == [], "nothing is acknowledged before the journal commit"
        for b in batches[:100]:
            assert b.on_committed is not None
            b.on_committed()
        await _until(lambda: broker.acked == list(range(1, 101)))
        assert broker.connects[0].clean_start is False and broker.connects[0].session_expiry_interval > 0


# mqtt5 0.8 reports the UnicodeDecodeError as "unraisable" before raising its PanicException:
# the link survives both; the report is the codec's own.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_publish_the_codec_refuses_is_quarantined_and_acked_and_the_next_one_lands() -> None:
    good = _publish("lab/p1/raw", b"21.5", 8)
    bad_topic = b"lab/\xff/raw"  # not UTF-8: the codec refuses the packet
    body = len(bad_topic).to_bytes(2, "big") + bad_topic + (7).to_bytes(2, "big") + b"\x00" + b"20.0"
    bad = bytes([0x32, len(body)]) + body
    async with ScriptedBroker(OK, bad + good) as broker, _source(broker.port) as src:
        first, second = await _take(src, 2)
        assert first.readings == [] and first.rejected[0].reason.startswith("malformed MQTT PUBLISH")
        assert first.rejected[0].topic == "lab/\ufffd/raw" and first.rejected[0].payload == bad
        assert [r.value for r in second.readings] == [21.5]
        for b in (first, second):
            assert b.on_committed is not None
            b.on_committed()
        await _until(lambda: broker.acked == [7, 8])
        assert src.connected, "the connection stays up"


async def test_a_broker_that_answers_in_mqtt_3_1_1_is_named_in_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "remotecal.source.mqtt")
    refused_v311 = b"\x20\x02\x00\x01"  # 3.1.1 CONNACK: unacceptable protocol version
    async with ScriptedBroker(refused_v311) as broker, _source(broker.port):
        for _ in range(100):
            if len(broker.connects) >= 3:
                break
            await asyncio.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(broker.connects) >= 3, "it keeps trying (with backoff)"
    assert lines == [f"mqtt source 's' (127.0.0.1:{broker.port}): refused by the broker - the broker does not "
                     'speak MQTT 5 (set protocol = "3.1.1" for this source)'], "once, naming the fix"


async def test_a_full_inbox_pauses_reading_without_the_keepalive_check_dropping_the_connection() -> None:
    """While the journal refuses input (full), nothing is taken and reading pauses; the
    broker's PINGRESPs then wait unread in the socket - that is no dead connection."""
    burst = b"".join(_publish("lab/p1/raw", f"{i}.5".encode(), i + 1) for i in range(50))
    async with ScriptedBroker(OK, burst) as broker, _source(broker.port, buffer=10, keepalive="1s") as src:
        await asyncio.sleep(3.5)  # > 1.5 x keepalive, paused all along
        assert len(broker.connects) == 1 and src.connected
        batches = await _take(src, 50)
        assert [b.readings[0].value for b in batches] == [i + 0.5 for i in range(50)]
        assert len(broker.connects) == 1
