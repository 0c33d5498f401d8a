"""A URL with another service's port: the log names what answers there, not a wrong guess.

Before: an MQTT source on InfluxDB's port said "no CONNACK within 10 s (a broker that does not
speak MQTT 5 may not answer at all: protocol = "3.1.1" for it)", the uplink sink "disconnected:
Keep alive timeout", and an InfluxDB sink on the broker's port "cannot reach ...: Server
disconnected without sending a response" - or, from Mosquitto, nothing: "cannot reach ...: "."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.keys import new_key_file
from tests.gateway.harness import GatewayProcess, config_text
from tests.gateway.test_end_to_end import wait_until
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

HINT = "is the port right? (MQTT brokers listen on 1883, or 8883 with TLS)"


class _AnswersAtOnce(socketserver.BaseRequestHandler):
    """An HTTP server that answers bytes it cannot parse with 400 at once (nginx, say)."""

    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def http_400() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _AnswersAtOnce)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _config(tmp_path: Path, mqtt_port: int, sinks: dict[str, object]) -> str:
    return config_text({
        "gateway": {"site": "s", "id": "g", "run": "R", "data_dir": str(tmp_path / "data"),
                    "shutdown_grace": "1s", "summary_interval": "0s"},
        "sources": {"mqtt": [{"name": "b", "url": f"mqtt://127.0.0.1:{mqtt_port}", "topics": [
            {"topic": "t/#", "format": "value", "fields": [
                {"channel": "c", "quantity": "temperature", "unit": "degC", "role": "dut"}]}]}]},
        "sinks": sinks,
    })


def test_an_http_server_on_mqtt_urls_is_named(tmp_path: Path, http_400: int, influxd: InfluxD) -> None:
    key = new_key_file("s", "g", tmp_path / "keys")
    influx_port = int(influxd.url.rsplit(":", 1)[1])
    # the source on an HTTP server that answers at once, the uplink on influxd (which waits for a line)
    cfg = _config(tmp_path, http_400, {"mqtt": [{"url": f"mqtt://127.0.0.1:{influx_port}", "key_file": str(key),
                                                 "keepalive": "2s"}]})
    with GatewayProcess(tmp_path / "gw", cfg) as gw:
        source = f"mqtt source 'b' (127.0.0.1:{http_400}): not an MQTT broker - an HTTP server answers there " \
                 f"(HTTP/1.1 400 Bad Request): {HINT}"
        sink = f"(127.0.0.1:{influx_port}): not an MQTT broker - an HTTP server answers there (HTTP/1."
        wait_until(lambda: source in gw.log() and sink in gw.log(), 60, "both named", gw)
        assert gw.terminate() == 0
    log = gw.log()
    assert "MQTT 5" not in log and "Keep alive" not in log
    assert log.count("not an MQTT broker") == 2, "once per change of state, not per retry"


def test_influxd_on_an_mqtt_source_url_is_named_after_the_connack_wait(tmp_path: Path, influxd: InfluxD) -> None:
    influx_port = int(influxd.url.rsplit(":", 1)[1])
    cfg = _config(tmp_path, influx_port, {"local": [{"path": str(tmp_path / "store.db")}]})
    with GatewayProcess(tmp_path / "gw", cfg) as gw:
        line = f"mqtt source 'b' (127.0.0.1:{influx_port}): not an MQTT broker - an HTTP server answers there (HTTP/1."
        wait_until(lambda: line in gw.log(), 60, "the source's line", gw)
        assert gw.terminate() == 0
    assert HINT in gw.log() and "protocol = " not in gw.log()


def test_an_mqtt_broker_on_an_influxdb_url_is_named(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = _config(tmp_path, mosquitto.port, {"influxdb": [{"url": f"http://127.0.0.1:{mosquitto.port}",
                                                           "database": "calibration", "flush_interval": "100ms"}]})
    with GatewayProcess(tmp_path / "gw", cfg) as gw:
        wait_until(lambda: "without an HTTP answer" in gw.log(), 60, "the sink's line", gw)
        assert gw.terminate() == 0
    line = next(x for x in gw.log().splitlines() if "without an HTTP answer" in x)
    assert f"http://127.0.0.1:{mosquitto.port} ended the connection without an HTTP answer (" in line
    assert "answer (): " not in line, "the reason in words, never empty"
    assert line.endswith("is the port right? InfluxDB listens on 8086; an MQTT broker (1883) does this; "
                         "records stay in the journal")
