"""QoS 1 publishing on remotecal's MQTT layer (`gateway.mqtt.MqttLink`) against a real Mosquitto:
the PUBACK's reason code per publish, the broker's Receive Maximum, connection loss, TLS.

The link logs "connected" at CONNACK, before its SUBSCRIBE is granted: a test publishes to a
subscriber only after `mosquitto.wait_subscribed(filter)` (or the link's `subscribed`)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.errors import RetryableError
from gateway.mqtt import MqttLink, Subscription, link_settings
from gateway.mqtt_broker import BrokerConnection
from tests.gateway.test_mqtt_tls_auth import pki  # noqa: F401 (a fixture)
from tests.gateway.uplink.test_mqtt_sink import _Collector, _sink, reading
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

log = logging.getLogger("test.mqtt")


@asynccontextmanager
async def _link(url: str, client_id: str, *subscriptions: str, **block: object) -> AsyncIterator[MqttLink]:
    broker = BrokerConnection.model_validate({"url": url, "reconnect_min": "100ms", "reconnect_max": "1s", **block})
    link = MqttLink(link_settings(broker, client_id=client_id,
                                  subscriptions=[Subscription(s) for s in subscriptions]),
                    name=f"test link {client_id}", log=log)
    await link.start()
    try:
        assert await link.wait_connected(20)
        yield link
    finally:
        await link.stop()


async def _take(link: MqttLink, n: int) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    while len(got) < n:
        for m in link.take():
            got.append((m.topic, m.payload))
            link.ack(m)
        await asyncio.sleep(0.01)
    return got


async def test_the_puback_reason_code_comes_back_per_publish(mosquitto: Mosquitto) -> None:
    async with _link(mosquitto.url, "sub", "lab/+/x") as sub, _link(mosquitto.url, "pub") as pub:
        await asyncio.to_thread(mosquitto.wait_subscribed, "lab/+/x")
        assert await pub.publish("lab/a/x", b"1") == 0x00
        assert await pub.publish("nobody/listens", b"2") == 0x10  # no matching subscribers
        assert await asyncio.wait_for(_take(sub, 1), 20) == [("lab/a/x", b"1")]


async def test_the_broker_receive_maximum_bounds_what_is_in_flight(tmp_path: Path) -> None:
    # Mosquitto tells an MQTT 5 client its max_inflight_messages as the CONNACK's Receive Maximum.
    with Mosquitto(tmp_path / "broker", extra_conf="max_inflight_messages 3\n") as broker:
        async with _link(broker.url, "sub", "lab/#") as sub, _link(broker.url, "pub") as pub:
            await asyncio.to_thread(broker.wait_subscribed, "lab/#")
            assert pub.send_maximum == 3
            codes = await asyncio.gather(*(pub.publish(f"lab/{i}", b"%d" % i) for i in range(40)))
            assert codes == [0] * 40
            assert pub.peak_in_flight == 3, "three at once, never more"
            got = await asyncio.wait_for(_take(sub, 40), 30)
            assert sorted(got) == sorted((f"lab/{i}", b"%d" % i) for i in range(40))


async def test_a_lost_connection_fails_the_pending_publish_and_the_retry_delivers(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    sink = _sink(tmp_path, mosquitto.port, reconnect_min="100ms", reconnect_max="500ms")
    topic = sink.topic
    first = _Collector(mosquitto.port, topic)
    try:
        await sink.write([reading(0)])
        mosquitto.pause()  # the next PUBACK never comes
        pending = asyncio.create_task(sink.write([reading(1)]))
        while sink._link.in_flight == 0:
            await asyncio.sleep(0.01)
        mosquitto.kill()
        with pytest.raises(RetryableError, match="disconnected before the PUBACK"):
            await pending
        assert sink._link.in_flight == 0
        first.c.loop_stop()
        mosquitto.start()
        second = _Collector(mosquitto.port, topic)
        try:
            await sink.write([reading(1)])  # the delivery runner's retry of the same records
            while not second.payloads:
                await asyncio.sleep(0.01)
        finally:
            second.close()
    finally:
        await sink.aclose()
    assert sink.frames == 2


async def test_publish_over_tls_with_a_client_certificate_and_a_password(tmp_path: Path, pki: Path) -> None:  # noqa: F811
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "gw01", "s3cret pw"], check=True, timeout=30)
    conf = (f"password_file {pwfile}\ncafile {pki}/ca.pem\ncertfile {pki}/server.pem\n"
            f"keyfile {pki}/server.key\nrequire_certificate true\n")
    broker = Mosquitto(tmp_path / "broker", extra_conf=conf)
    broker.conf_path.write_text(broker.conf_path.read_text().replace("allow_anonymous true\n",
                                                                      "allow_anonymous false\n"))
    tls = {"username": "gw01", "password": "s3cret pw",
           "tls": {"ca_file": f"{pki}/ca.pem", "cert_file": f"{pki}/client.pem", "key_file": f"{pki}/client.key"}}
    with broker:
        url = f"mqtts://127.0.0.1:{broker.port}"
        async with _link(url, "sub", "lab/tls", **tls) as sub, _link(url, "pub", **tls) as pub:
            await asyncio.wait_for(sub.subscribed.wait(), 20)
            assert await pub.publish("lab/tls", b"21.5") == 0
            assert await asyncio.wait_for(_take(sub, 1), 20) == [("lab/tls", b"21.5")]
