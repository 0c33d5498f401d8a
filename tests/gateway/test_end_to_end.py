"""End to end on real servers: Mosquitto -> `remotecal gateway run` -> influxd / VictoriaMetrics.

Every value and tag that was published is checked exactly in the database; bad input beside
it is quarantined with its reason; SIGKILLs of the gateway and of influxd lose nothing and
duplicate nothing; an outage of InfluxDB is absorbed by the journal and shows in the health
points.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.journal import Journal
from tests.gateway.harness import GatewayProcess, Publisher, SteadyStream, site_config, state_message
from tests.servers.influx import InfluxD, VictoriaMetrics
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

T0_MS = 1_795_000_000_000  # 2026-11-18: a fixed epoch so expected timestamps are exact
SITE, GW, RUN = "lab 1", "gw,01", "RUN-1"


def v1_sink(influx: InfluxD) -> str:
    return f"""
[[sinks.influxdb]]
name = "influx"
url = "{influx.url}"
api = "v1"
database = "calibration"
batch_size = 2000
flush_interval = "200ms"
max_retry_interval = "1s"
"""


def wait_until(cond: Callable[[], Any], timeout: float, what: str, gw: GatewayProcess | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{gw.log()[-3000:]}" if gw else ""))


def count_readings(influx: InfluxD) -> int:
    res = influx.query("SELECT COUNT(value) FROM reading", "calibration")[0]
    series = res.get("series")
    return int(series[0]["values"][0][1]) if series else 0


def expected_state_readings(sensors: list[str], n: int) -> dict[tuple[str, int], tuple[float, str, str, str]]:
    out = {}
    for s in sensors:
        for i in range(n):
            ts_ns = (T0_MS + i * 100) * 10**6
            doc = json.loads(state_message(s, i, T0_MS + i * 100)[1])
            out[(f"{s}-t", ts_ns)] = (doc["t"], "temperature", "degC", "dut")
            out[(f"{s}-rh", ts_ns)] = (doc["rh"], "relative_humidity", "%rh", "dut")
    return out


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_mqtt_to_influxd_v1_every_value_and_tag_exact(tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD,
                                                      protocol: str) -> None:
    """Both links of the MQTT source: MQTT 5 (mqtt5 codec) and 3.1.1 (paho)."""
    sensors = [f"dut{k}" for k in range(1, 6)]
    n = 600  # 5 sensors x 600 messages x 2 fields = 6000 readings
    cfg = site_config(tmp_path / "gw" / "data", mosquitto.port, v1_sink(influxd), protocol=protocol)
    with GatewayProcess(tmp_path / "gw", cfg) as gw:
        pub = Publisher(mosquitto.port)
        mosquitto.wait_subscribed("lab/+/state")  # the gateway's session exists: it keeps what follows
        pub.publish_all(state_message(s, i, T0_MS + i * 100) for i in range(n) for s in sensors)
        pub.publish_all([("lab/probe9/raw", "23.456789012345")])
        pub.close()
        wait_until(lambda: count_readings(influxd) >= len(sensors) * n * 2 + 1, 60, "all readings", gw)
        assert gw.terminate() == 0
    rows = influxd.rows("SELECT value FROM reading GROUP BY *", "calibration")
    got = {}
    for r in rows:
        assert (r["site"], r["gateway"], r["run"]) == (SITE, GW, RUN)
        got[(r["channel"], r["time"])] = (r["value"], r["quantity"], r["unit"], r["role"])
    raw = got.pop(("probe9-raw", next(t for c, t in got if c == "probe9-raw")))
    assert raw == (23.456789012345, "temperature", "degC", "reference")
    assert got == expected_state_readings(sensors, n)
    assert "gateway stopped: " in gw.log()


def test_mqtt_to_victoria_metrics_v2_values_exact(tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics) -> None:
    sink = f"""
[[sinks.influxdb]]
name = "vm"
url = "{victoria.url}"
api = "v2"
org = "nmc"
bucket = "calibration"
token = "not-checked-by-vm"
flush_interval = "200ms"
"""
    sensors = ["a", "b", "c"]
    n = 400
    with GatewayProcess(tmp_path / "gw", site_config(tmp_path / "gw" / "data", mosquitto.port, sink)) as gw:
        pub = Publisher(mosquitto.port)
        mosquitto.wait_subscribed("lab/+/state")
        pub.publish_all(state_message(s, i, T0_MS + i * 100) for i in range(n) for s in sensors)
        pub.close()
        series = victoria.export('{__name__="reading_value"}', min_samples=len(sensors) * n * 2, timeout=60)
        assert gw.terminate() == 0
    got = {}
    for s in series:
        m = s["metric"]
        assert (m["site"], m["gateway"], m["run"]) == (SITE, GW, RUN)
        for v, ts in zip(s["values"], s["timestamps"], strict=True):
            got[(m["channel"], ts * 10**6)] = (v, m["quantity"], m["unit"], m["role"])
    assert got == expected_state_readings(sensors, n)


BAD = [
    ("lab/x1/state", b'{"t": 21.0, "rh": ', "malformed JSON"),
    ("lab/x2/state", b'{"t": "warm", "rh": 40.0, "ts": 1795000000000}', "path 't' is not a number (got str)"),
    ("lab/x3/state", b'{"t": NaN, "rh": 40.0, "ts": 1795000000000}', "path 't' is NaN"),
    ("lab/x4/state", b'{"t": Infinity, "rh": 40.0, "ts": 1795000000000}', "path 't' is infinite"),
    ("lab/x5/state", b'{"rh": 40.0, "ts": 1795000000000}', "path 't' is missing"),
    ("lab/x6/state", b'{"t": 1.0, "rh": 40.0}', "time_path 'ts' is missing"),
    ("lab/x7/raw", b"cold", "payload 'cold' is not a number"),
    ("lab/x8/state", b"{" + b" " * 300_000 + b"}", "exceeds max_payload"),
    ("lab/x9/unmapped", b"1.0", "topic matches no mapping"),
]


def test_bad_input_is_quarantined_with_its_reason_and_the_good_stream_lands(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    n = 300
    data = tmp_path / "gw" / "data"
    cfg = site_config(data, mosquitto.port, v1_sink(influxd))
    # A first run also maps lab/+/unmapped; its persistent session keeps that subscription,
    # so after the mapping is removed the broker still sends such messages: no mapping matches.
    old = cfg.replace('reconnect_max = "1s"', 'reconnect_max = "1s"\n[[sources.mqtt.topics]]\n'
                      'topic = "lab/+/unmapped"\nformat = "value"\n[[sources.mqtt.topics.fields]]\n'
                      'channel = "x"\nquantity = "temperature"\nunit = "degC"\nrole = "dut"', 1)
    with GatewayProcess(tmp_path / "gw", old) as gw:
        mosquitto.wait_subscribed("lab/+/unmapped")
        assert gw.terminate() == 0
    gw = GatewayProcess(tmp_path / "gw", cfg)
    with gw:
        pub = Publisher(mosquitto.port)  # the gateway's persistent session queues what it sends
        msgs: list[tuple[str, bytes | str]] = []
        for i in range(n):
            msgs.append(state_message("good", i, T0_MS + i * 100))
            if i % 30 == 0:
                topic, payload, _ = BAD[(i // 30) % len(BAD)]
                msgs.append((topic, payload))
        pub.publish_all(msgs)
        pub.close()
        # x2..x5 carry a good rh beside the bad or missing t: those rh readings land too
        beside = ("lab/x2/state", "lab/x3/state", "lab/x4/state", "lab/x5/state")
        good_beside_bad = sum(1 for i in range(0, n, 30) if BAD[(i // 30) % len(BAD)][0] in beside)
        wait_until(lambda: count_readings(influxd) >= 2 * n + good_beside_bad, 60, "good readings", gw)
        time.sleep(0.5)
        assert gw.terminate() == 0
    assert count_readings(influxd) == 2 * n + good_beside_bad
    total, rows = Journal.read_quarantine(data / "journal.db", 1000)
    expected = [BAD[(i // 30) % len(BAD)] for i in range(0, n, 30)]
    assert [(r.topic, r.reason) for r in rows] == [(e[0], _reason_like(r.reason, e[2])) for r, e in zip(rows, expected, strict=True)]
    assert total == len(expected)
    assert rows[0].payload == expected[0][1][:1024]
    out = _cli_quarantine(tmp_path / "gw" / "site.toml")
    assert f"{total} quarantined input(s)" in out and "malformed JSON" in out
    assert re.search(r"rejected a message on 'lab/x1/state': malformed JSON", gw.log())


def _reason_like(actual: str, expected_part: str) -> str:
    """`actual` when it contains the expected words, else the expected words (the assert shows both)."""
    return actual if expected_part in actual else expected_part


def _cli_quarantine(config: Path) -> str:
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "remotecal", "gateway", "quarantine", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _values(influx: InfluxD) -> list[float]:
    return [r["value"] for r in influx.rows("SELECT value FROM reading WHERE channel = 'steady-raw'", "calibration")]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_crash_safety_sigkill_gateway_and_influxd_nothing_lost_nothing_twice(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD, protocol: str) -> None:
    """Receive-time stamps (no ts in the payload): a redelivery would be a *different* point,
    and two readings of one receive stamp would be one point."""
    rate, count = 1000.0, 15000
    stream = SteadyStream(mosquitto.port, rate, count, lambda i: ("lab/steady/raw", f"{i}.5"))
    gw = GatewayProcess(tmp_path / "gw", site_config(tmp_path / "gw" / "data", mosquitto.port, v1_sink(influxd),
                                                     protocol=protocol))
    gw.start()
    try:
        mosquitto.wait_subscribed("lab/+/raw")
        t0 = time.monotonic()
        stream.start()
        for k in range(4):
            time.sleep(2.5)
            gw.kill()
            time.sleep(0.3)
            gw.start()
            if k == 1:
                influxd.kill()
                time.sleep(2.0)
                influxd.start()
        stream.join(120)
        assert stream.error is None, stream.error
        elapsed = time.monotonic() - t0
        published = len(stream.sent)
        wait_until(lambda: len(_values(influxd)) >= published, 90, f"{published} readings", gw)
        time.sleep(1.0)
        assert gw.terminate() == 0
    finally:
        gw.kill()
    values = _values(influxd)
    assert sorted(values) == [i + 0.5 for i in range(published)], "lost or duplicated readings"
    print(f"\ncrash test: {published} readings in {elapsed:.1f} s = {published / elapsed:.0f} readings/s "
          f"sustained through {gw.starts - 1} SIGKILLs of the gateway and 1 of influxd")


def _health(influx: InfluxD) -> list[dict[str, Any]]:
    return influx.rows("SELECT journal_pending, received, delivered FROM gateway_health", "calibration")


def test_outage_backlog_is_delivered_and_health_shows_pending_rise_and_fall(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    n = 1500
    with GatewayProcess(tmp_path / "gw", site_config(tmp_path / "gw" / "data", mosquitto.port, v1_sink(influxd),
                                                     health="500ms")) as gw:
        pub = Publisher(mosquitto.port)
        mosquitto.wait_subscribed("lab/+/state")
        influxd.stop()
        for chunk in range(5):
            pub.publish_all(state_message("o", i, T0_MS + i * 100) for i in range(chunk * 300, chunk * 300 + 300))
            time.sleep(0.6)
        pub.close()
        influxd.start()
        wait_until(lambda: count_readings(influxd) >= 2 * n, 90, "backlog", gw)
        time.sleep(2.0)  # a few health points after the backlog is gone
        assert gw.terminate() == 0
    assert count_readings(influxd) == 2 * n
    pending = [h["journal_pending"] for h in sorted(_health(influxd), key=lambda h: h["time"])]
    peak = max(pending)
    i_peak = pending.index(peak)
    assert peak >= 2 * n, pending
    assert any(b > a for a, b in itertools.pairwise(pending[:i_peak + 1])), "never rose"
    assert pending[-1] < 10, f"never fell: {pending}"
    assert "sink 'influx': unreachable" in gw.log() and "sink 'influx': delivering again" in gw.log()


def test_broker_restart_and_gateway_downtime_lose_nothing(tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    """The broker restarts under a running gateway; then the gateway is down while sensors publish."""
    with GatewayProcess(tmp_path / "gw", site_config(tmp_path / "gw" / "data", mosquitto.port, v1_sink(influxd))) as gw:
        wait_until(lambda: "): connected" in gw.log(), 20, "connection", gw)
        pub = Publisher(mosquitto.port, "p1")
        pub.publish_all(("lab/r/raw", f"{i}.25") for i in range(100))
        pub.close()
        wait_until(lambda: count_readings(influxd) == 100, 30, "first 100", gw)
        mosquitto.stop()
        mosquitto.start()
        wait_until(lambda: gw.log().count("): connected") >= 2, 30, "reconnection", gw)
        assert "unreachable" in gw.log()
        pub = Publisher(mosquitto.port, "p2")
        pub.publish_all(("lab/r/raw", f"{i}.25") for i in range(100, 200))
        pub.close()
        wait_until(lambda: count_readings(influxd) == 200, 30, "200 after the broker restart", gw)
        assert gw.terminate() == 0
        # the gateway is down: its persistent session makes the broker queue for it
        pub = Publisher(mosquitto.port, "p3")
        pub.publish_all(("lab/r/raw", f"{i}.25") for i in range(200, 500))
        pub.close()
        gw.start()
        wait_until(lambda: count_readings(influxd) == 500, 30, "the messages queued while it was down", gw)
        assert gw.terminate() == 0
    values = sorted(r["value"] for r in influxd.rows("SELECT value FROM reading", "calibration"))
    assert values == [i + 0.25 for i in range(500)]


def test_sigterm_while_influxdb_is_down_exits_0_and_keeps_the_backlog(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    cfg = site_config(tmp_path / "gw" / "data", mosquitto.port, v1_sink(influxd)).replace(
        'shutdown_grace = "20s"', 'shutdown_grace = "2s"')
    gw = GatewayProcess(tmp_path / "gw", cfg)
    with gw:
        wait_until(lambda: "): connected" in gw.log(), 20, "connection", gw)
        influxd.stop()
        pub = Publisher(mosquitto.port)
        pub.publish_all(("lab/k/raw", f"{i}.75") for i in range(250))
        pub.close()
        time.sleep(1.0)
        t0 = time.monotonic()
        assert gw.terminate() == 0
        assert time.monotonic() - t0 < 15, "the grace period bounds the shutdown"
    assert "journal_pending=" in gw.log() and "journal_pending=0," not in gw.log()
    influxd.start()
    with gw:  # the next start delivers what the last one could not
        wait_until(lambda: count_readings(influxd) == 250, 30, "the backlog of the previous run", gw)
        assert gw.terminate() == 0
    assert sorted(r["value"] for r in influxd.rows("SELECT value FROM reading", "calibration")) == [
        i + 0.75 for i in range(250)]


def test_a_data_dir_that_cannot_be_made_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # A user's error found before start (issue 14): exit 2, which the systemd unit does not
    # restart, with the key and the reason in one line.
    import subprocess
    import sys
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cfg = tmp_path / "site.toml"
    cfg.write_text(site_config(blocker / "data", 1, '[[sinks.influxdb]]\nurl = "http://127.0.0.1:9"\ndatabase = "x"'))
    proc = subprocess.run([sys.executable, "-m", "remotecal", "gateway", "run", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "gateway.data_dir" in errors[0] and "is a file" in errors[0], proc.stderr
