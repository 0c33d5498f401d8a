"""deploy/dev/services.sh: the local services for development start, answer, and all stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.servers.influx import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "dev" / "services.sh"

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_services_start_answer_and_stop_at_sigterm(tmp_path: Path) -> None:
    ports = {"mqtt": free_port(), "influx": free_port(), "victoria": free_port()}
    proc = subprocess.Popen(
        [str(SCRIPT), "--dir", str(tmp_path / "svc"), "--mqtt-port", str(ports["mqtt"]),
         "--influx-port", str(ports["influx"]), "--victoria-port", str(ports["victoria"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
            if line.startswith("ready"):
                break
        assert [ln.split()[0] for ln in lines] == ["mqtt", "influxdb", "victoria", "ready;"]
        assert _listening(ports["mqtt"])
        with httpx.Client(trust_env=False, timeout=10) as client:
            r = client.get(f"http://127.0.0.1:{ports['influx']}/query", params={"q": "SHOW DATABASES"})
            assert ["calibration"] in r.json()["results"][0]["series"][0]["values"]
            assert client.get(f"http://127.0.0.1:{ports['victoria']}/health").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not any(_listening(p) for p in ports.values())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_taken_port_is_one_line_and_nothing_left_running(tmp_path: Path) -> None:
    # Mosquitto and influxd start first; the taken VictoriaMetrics port must stop them again.
    mqtt_port, influx_port = free_port(), free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [str(SCRIPT), "--dir", str(tmp_path / "svc"), "--mqtt-port", str(mqtt_port),
             "--influx-port", str(influx_port), "--victoria-port", str(port), "--for", "5"],
            capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"victoria: 127.0.0.1:{port} is already in use (another server? choose another --victoria-port)"]
    assert proc.stdout.startswith("mqtt ") and "\ninfluxdb " in proc.stdout  # they had started
    assert not _listening(mqtt_port) and not _listening(influx_port)
