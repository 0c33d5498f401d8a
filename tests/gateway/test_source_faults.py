"""Faults of the sources' input against real servers (issue 11): what one message does to the
gateway process (Mosquitto -> `remotecal gateway run` -> influxd).

A message the parser cannot read is quarantined with the parser's reason, the good messages
beside it reach InfluxDB, and the process keeps running.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.journal import Journal
from tests.gateway.harness import GatewayProcess, Publisher, site_config, state_message
from tests.gateway.test_end_to_end import T0_MS, count_readings, v1_sink, wait_until
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


def test_a_json_number_past_the_int_string_limit_is_quarantined_and_the_gateway_keeps_running(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    """A 5000-digit JSON integer makes `json.loads` raise a plain ValueError (Python's 4300
    digit limit): it used to escape the source, end the gateway (exit 1) and come back at each
    start, redelivered by the broker."""
    data = tmp_path / "gw" / "data"
    poison = b'{"t": ' + b"7" * 5000 + b', "rh": 40.0, "ts": 1795000000000}'
    with GatewayProcess(tmp_path / "gw", site_config(data, mosquitto.port, v1_sink(influxd))) as gw:
        pub = Publisher(mosquitto.port)
        mosquitto.wait_subscribed("lab/+/state")
        pub.publish_all(state_message("good", i, T0_MS + i * 100) for i in range(50))
        pub.publish_all([("lab/poison/state", poison)])
        pub.publish_all(state_message("good", i, T0_MS + i * 100) for i in range(50, 100))
        pub.close()
        wait_until(lambda: count_readings(influxd) >= 200, 60, "the good readings", gw)
        assert gw.proc is not None and gw.proc.poll() is None, gw.log()[-3000:]
        assert gw.terminate() == 0
    assert count_readings(influxd) == 200
    total, rows = Journal.read_quarantine(data / "journal.db", 10)
    assert total == 1
    assert rows[0].topic == "lab/poison/state"
    assert "malformed JSON" in rows[0].reason and "4300" in rows[0].reason, rows[0].reason
    assert "Traceback" not in gw.log()


def test_a_value_overflowed_by_scale_is_quarantined_and_its_neighbours_land(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    """Finiteness is checked after scale/offset: 1e10 x 1e300 was an inf reading in the journal."""
    data = tmp_path / "gw" / "data"
    topics = [{"topic": "lab/+/state", "format": "json", "time_path": "ts", "fields": [
        {"path": "t", "channel": "{1}-t", "quantity": "temperature", "unit": "degC", "role": "dut", "scale": 1e300},
        {"path": "rh", "channel": "{1}-rh", "quantity": "relative_humidity", "unit": "%rh", "role": "dut"}]}]
    with GatewayProcess(tmp_path / "gw", site_config(data, mosquitto.port, v1_sink(influxd), topics=topics)) as gw:
        pub = Publisher(mosquitto.port)
        mosquitto.wait_subscribed("lab/+/state")
        pub.publish_all(("lab/s/state", f'{{"t": {1e-299 * i}, "rh": {i}, "ts": {T0_MS + i}}}') for i in range(20))
        pub.publish_all([("lab/s/state", f'{{"t": 1e10, "rh": 99, "ts": {T0_MS + 20}}}')])
        pub.close()
        wait_until(lambda: count_readings(influxd) >= 41, 60, "the good readings", gw)
        assert gw.terminate() == 0
    assert count_readings(influxd) == 41
    rows = influxd.rows("SELECT value FROM reading WHERE channel = 's-t'", "calibration")
    assert len(rows) == 20 and all(abs(r["value"]) < 1e10 for r in rows)
    total, [row] = Journal.read_quarantine(data / "journal.db", 10)
    assert total == 1
    assert row.reason == "path 't' is inf after scale = 1e+300, offset = 0 (raw 10000000000.0)"


def test_an_empty_topic_level_or_an_overlong_one_is_quarantined_never_a_point_without_a_channel(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    """Channel "{1}" from "lab//state" was a point with an empty channel tag (InfluxDB drops
    the tag: a reading of no channel); a 300-character level made a 300-character channel."""
    data = tmp_path / "gw" / "data"
    topics = [{"topic": "lab/+/state", "format": "json", "time_path": "ts", "fields": [
        {"path": "t", "channel": "{1}", "quantity": "temperature", "unit": "degC", "role": "dut"}]}]
    with GatewayProcess(tmp_path / "gw", site_config(data, mosquitto.port, v1_sink(influxd), topics=topics)) as gw:
        pub = Publisher(mosquitto.port)
        mosquitto.wait_subscribed("lab/+/state")
        pub.publish_all([("lab//state", f'{{"t": 1.0, "ts": {T0_MS}}}'),
                         ("lab/" + "y" * 300 + "/state", f'{{"t": 2.0, "ts": {T0_MS}}}')])
        pub.publish_all(("lab/a/state", f'{{"t": {i}, "ts": {T0_MS + i}}}') for i in range(10))
        pub.close()
        wait_until(lambda: count_readings(influxd) >= 10, 60, "the good readings", gw)
        wait_until(lambda: Journal.read_quarantine(data / "journal.db", 10)[0] >= 2, 30, "the quarantine", gw)
        assert gw.terminate() == 0
    rows = influxd.rows("SELECT value, channel FROM reading", "calibration")
    assert sorted((r["channel"], r["value"]) for r in rows) == [("a", float(i)) for i in range(10)]
    total, quarantined = Journal.read_quarantine(data / "journal.db", 10)
    assert total == 2
    assert sorted(r.reason for r in quarantined) == [
        f"channel name is 300 characters long (at most 256) (made from topic {'lab/' + 'y' * 76!r}... "
        "(310 characters) by '{1}')",
        "topic 'lab//state' has an empty level where a channel name is made of it"]


def _publish_retained(port: int, messages: list[tuple[str, str]]) -> None:
    pub = Publisher(port, "retained-publisher")
    for topic, payload in messages:
        info = pub.client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(30)
        assert info.is_published()
    pub.close()


@pytest.mark.parametrize(("protocol", "retained"), [("5", None), ("3.1.1", None), ("5", "sensor_time"),
                                                    ("3.1.1", "sensor_time")])
def test_retained_messages_are_not_stamped_anew_at_each_subscribe(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD, protocol: str, retained: str | None) -> None:
    """The broker sends a topic's retained message at every (re)subscribe: read with the receive
    time, an old value became a new point at each restart.  Default: not read at all; with
    retained = "sensor_time" only those carrying the sensor's time are read (the same point each
    time).  Live messages published with the retain flag are ordinary readings."""
    data = tmp_path / "gw" / "data"
    cfg = site_config(data, mosquitto.port, v1_sink(influxd), protocol=protocol)
    if retained:
        cfg = cfg.replace('name = "broker"', f'name = "broker"\nretained = "{retained}"', 1)
        assert f'retained = "{retained}"' in cfg
    _publish_retained(mosquitto.port, [("lab/old/raw", "11.5"),
                                       ("lab/old/state", f'{{"t": 1.5, "rh": 2.5, "ts": {T0_MS - 1000}}}')])
    gw = GatewayProcess(tmp_path / "gw", cfg)
    expected = 0
    for start in range(2):
        with gw:
            if start == 0:
                mosquitto.wait_subscribed("lab/+/state")
            _publish_retained(mosquitto.port, [state_message(f"live{start}", i, T0_MS + i) for i in range(10)])
            pub = Publisher(mosquitto.port)
            pub.publish_all([(f"lab/live{start}/raw", "5.5")])
            pub.close()
            expected += 21
            wait_until(lambda n=expected: count_readings(influxd) >= n + (2 if retained else 0), 60,
                       "the live readings", gw)
            assert gw.terminate() == 0
    rows = influxd.rows("SELECT value, channel FROM reading", "calibration")
    old = sorted((r["channel"], r["value"], r["time"]) for r in rows if r["channel"].startswith("old"))
    if retained:
        assert old == [("old-rh", 2.5, (T0_MS - 1000) * 10**6), ("old-t", 1.5, (T0_MS - 1000) * 10**6)]
    else:
        assert old == []
    assert len(rows) == expected + len(old)
    assert "ignored a retained message" in gw.log() or (protocol == "5" and not retained)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_two_gateways_with_one_client_id_are_named_once_not_logged_as_endless_reconnects(
        tmp_path: Path, mosquitto: Mosquitto, protocol: str) -> None:
    """Each connect of one takes the session from the other (Mosquitto 2.0 just closes the old
    connection); it was logged as "unreachable - disconnected: connection closed" and "connected"
    at every round, forever.  Now: a few such lines, then one line naming the client id."""
    sink = '[[sinks.local]]\nname = "local"\npath = "{}"\n'
    gws = []
    for k in range(2):
        cfg = site_config(tmp_path / f"gw{k}" / "data", mosquitto.port, sink.format(tmp_path / f"gw{k}" / "store.db"),
                          protocol=protocol)
        cfg = cfg.replace('name = "broker"', 'name = "broker"\nclient_id = "same-id"', 1)
        gws.append(GatewayProcess(tmp_path / f"gw{k}", cfg))
    with gws[0], gws[1]:
        wait_until(lambda: mosquitto.log_tail(10**7).count("already connected, closing old connection") >= 16, 60,
                   "16 takeovers at the broker", gws[0])
        logs = [gw.log() for gw in gws]
        for gw in gws:
            assert gw.terminate() == 0
    for log in logs:
        assert log.count("another client connected with the same MQTT client id 'same-id'") <= 1
        churn = [line for line in log.splitlines() if "'broker' (127.0.0.1" in line and ("unreachable" in line
                                                                                      or "connected -" in line)]
        assert len(churn) <= 6, churn
    assert sum(log.count("another client connected with the same MQTT client id 'same-id'") for log in logs) >= 1


def _health_offsets(influx: InfluxD) -> list[float]:
    rows = influx.rows("SELECT clock_offset_s FROM gateway_health", "calibration")
    return [r["clock_offset_s"] for r in rows if r["clock_offset_s"] is not None]


def test_a_gateway_clock_far_off_is_named_and_its_offset_is_in_the_health_point(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    """The machine clock cannot be set back in a test; as the gateway sees it, its clock 400
    days behind is every sensor 400 days ahead.  Those readings are refused as too new: the
    reason names the gateway clock, and gateway_health has clock_offset_s (+400 days: the
    sensors' clocks minus the gateway's)."""
    import time
    data = tmp_path / "gw" / "data"
    ahead_ms = int(time.time() * 1000) + 400 * 86_400_000
    with GatewayProcess(tmp_path / "gw", site_config(data, mosquitto.port, v1_sink(influxd))) as gw:
        pub = Publisher(mosquitto.port)
        mosquitto.wait_subscribed("lab/+/state")
        pub.publish_all(state_message(f"s{k}", i, ahead_ms + i) for i in range(5) for k in range(3))
        pub.close()
        wait_until(lambda: Journal.read_quarantine(data / "journal.db", 1)[0] >= 15, 30, "the quarantine", gw)
        wait_until(lambda: _health_offsets(influxd), 30, "a health point with clock_offset_s", gw)
        assert gw.terminate() == 0
    assert count_readings(influxd) == 0
    _, rows = Journal.read_quarantine(data / "journal.db", 1)
    assert "ahead of the gateway clock" in rows[0].reason
    assert "the gateway clock is likely wrong" in rows[0].reason, rows[0].reason
    offsets = _health_offsets(influxd)
    assert all(abs(o - 400 * 86_400) < 60 for o in offsets), offsets
    assert "the gateway clock is likely wrong" in gw.log()
    assert gw.log().count("(400.0 days) behind the sensors' clocks") == 1  # said once, not at each health point
