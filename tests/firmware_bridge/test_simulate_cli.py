"""`remotecal simulate` as a user runs it: what a user can get wrong is one line and an exit
code, never a traceback; a broker that is not there is retried, not a dead thread."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from firmware_bridge.simulate import SimulationError, load_sim_config, run_simulation
from tests.servers.influx import free_port
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not

CHAMBER = """
[chamber]
speed = 10
[[chamber.steps]]
temperature = 25.0
humidity = 40.0
duration = "1h"
"""


def _modbus(name: str, port: int, profile: str = "generic-thr") -> str:
    return f'\n[[devices]]\nname = "{name}"\nprofile = "{profile}"\nlisten = "tcp://127.0.0.1:{port}"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sim.toml"
    path.write_text(CHAMBER + text)
    return path


def _simulate(config: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remotecal", "simulate", "-c", str(config)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def occupied() -> Iterator[int]:
    """A 127.0.0.1 port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


class Running:
    """`remotecal simulate -c PATH` in the background, its stderr going to a file."""

    def __init__(self, config: Path, stderr: Path):
        self.stderr_path = stderr
        with stderr.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "remotecal", "simulate", "-c", str(config)],
                                         stdout=subprocess.DEVNULL, stderr=err)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def running(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[[Path], Running]]:
    """Starts simulators; every one still running is killed after the test."""
    started: list[Running] = []

    def start(config: Path) -> Running:
        started.append(Running(config, tmp_path / f"stderr{len(started)}.txt"))
        return started[-1]

    yield start
    for sim in started:
        if sim.running():
            sim.proc.kill()
            sim.proc.wait(10)


def _wait_for(what: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(step)
    return what()


def test_a_modbus_port_in_use_is_one_line_naming_the_device_and_address(tmp_path: Path, occupied: int) -> None:
    config = _write(tmp_path, _modbus("ref", free_port(), "generic-pt100") + _modbus("dut1", occupied))
    proc = _simulate(config)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == f"{config}: cannot serve device dut1 on tcp://127.0.0.1:{occupied}: Address already in use"


async def test_a_device_that_cannot_be_served_stops_those_already_started(
        tmp_path: Path, occupied: int) -> None:
    first, broker = free_port(), free_port()
    config = _write(tmp_path, _modbus("dut1", first) + f"""
[[devices]]
name = "node1"
listen = "mqtt://127.0.0.1:{broker}/lab/node1/state"
[[devices]]
name = "ref"
listen = "scpi://127.0.0.1:{occupied}"
""")
    with pytest.raises(SimulationError, match=f"cannot serve device ref on scpi://127.0.0.1:{occupied}: "
                                              "Address already in use"):
        async with asyncio.timeout(15):
            await run_simulation(load_sim_config(config), asyncio.Event())
    # The Modbus server that had started listens no more, and the sensor node's thread is gone.
    with socket.socket() as s:
        s.bind(("127.0.0.1", first))
    assert not [t for t in threading.enumerate() if t.name == "node-lab/node1/state"]


@pytest.mark.parametrize("device, rc, expected", [
    # a serial port that is not there
    ('name = "a"\nprofile = "generic-thr"\nlisten = "rtu:///nonexistent/ttyX?baudrate=9600"', 1,
     "cannot serve device a on rtu:///nonexistent/ttyX?baudrate=9600: No such file or directory"),
    # options of a serial line that cannot be
    ('name = "a"\nprofile = "generic-thr"\nlisten = "rtu:///tmp/ttyX?baudrate=fast"', 2,
     "devices[0].listen: baudrate must be a positive whole number, not 'fast'"),
    ('name = "a"\nprofile = "generic-thr"\nlisten = "rtu:///tmp/ttyX?parity=Q"', 2,
     "devices[0].listen: parity must be one of N, E, O, M, S, not 'Q'"),
    # a host name that does not resolve
    ('name = "a"\nlisten = "scpi://no-such-host.invalid:5025"', 1,
     "cannot serve device a on scpi://no-such-host.invalid:5025: cannot resolve the host name"),
])
def test_a_device_that_cannot_be_had_is_one_line(tmp_path: Path, device: str, rc: int, expected: str) -> None:
    config = _write(tmp_path, "\n[[devices]]\n" + device + "\n")
    proc = _simulate(config)
    assert proc.returncode == rc, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{config}: {expected}"), proc.stderr


def test_bad_sim_files_are_one_line_each(tmp_path: Path) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[chamber]\n")
    bad_profile = tmp_path / "profile.toml"
    bad_profile.write_text("[profile\n")
    twice = _write(tmp_path, _modbus("a", 5020) + _modbus("a", 5020))
    cases = {
        binary: [f"{binary}: the config file is not UTF-8 text"],
        tmp_path / "missing.toml": [f"{tmp_path / 'missing.toml'}: cannot read the config file: No such file or directory"],
        twice: [f"{twice}: devices[1].name: 'a' is the name of devices[0] already",
                f"{twice}: devices[1].unit_id: unit 1 on tcp://127.0.0.1:5020 is a already"],
    }
    profile_user = tmp_path / "uses-profile.toml"
    profile_user.write_text(CHAMBER + _modbus("a", 5020, str(bad_profile)))
    for path, expected in cases.items():
        proc = _simulate(path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines() == expected
    proc = _simulate(profile_user)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert re.fullmatch(rf"{re.escape(str(profile_user))}: devices\[0\]\.profile: {re.escape(str(bad_profile))}: "
                        r"not valid TOML: .*", proc.stderr.strip()), proc.stderr


@pytest.mark.integration
def test_a_sensor_node_retries_a_missing_broker_then_publishes(
        tmp_path: Path, simulator: Callable[[Path], Running]) -> None:
    port = free_port()
    config = _write(tmp_path, f"""
[[devices]]
name = "node1"
listen = "mqtt://127.0.0.1:{port}/lab/node1/state"
interval = "100ms"
""")
    sim = simulator(config)
    unreachable = f"sensor node node1: broker 127.0.0.1:{port} unreachable (Connection refused); retrying"
    assert _wait_for(lambda: unreachable in sim.stderr() or not sim.running(), 15), sim.stderr()
    assert sim.running(), sim.stderr()
    # Retries (after about 0.5 s, then 1 s, 2 s...) say nothing more while nothing changes.
    time.sleep(1.6)
    assert sim.running()
    err = sim.stderr()
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert err.count("unreachable") == 1, err

    broker = Mosquitto(tmp_path / "mosquitto", port=port)
    got: list[dict[str, float]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-cli-check")
    try:
        broker.start()
        sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
        sub.connect("127.0.0.1", port)
        sub.subscribe("lab/node1/state", qos=1)
        sub.loop_start()
        assert _wait_for(lambda: len(got) >= 3, 20), sim.stderr()
        assert f"sensor node node1: connected to broker 127.0.0.1:{port}" in sim.stderr()
        sim.proc.send_signal(signal.SIGTERM)
        assert sim.proc.wait(15) == 0
    finally:
        sub.loop_stop()
        broker.stop()
    assert "Traceback" not in sim.stderr()


async def test_a_sensor_node_that_dies_of_a_bug_stops_the_simulation(
        tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    from firmware_bridge.mqtt_node import MqttSensorNode

    def broken(self: MqttSensorNode, now: float) -> dict[str, float | int]:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(MqttSensorNode, "message", broken)
    hooked: list[object] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)
    config = _write(tmp_path, f"""
[[devices]]
name = "node1"
listen = "mqtt://127.0.0.1:{mosquitto.port}/lab/node1/state"
interval = "100ms"
""")
    with pytest.raises(RuntimeError, match="sensor node node1 stopped") as err:
        async with asyncio.timeout(15):
            await run_simulation(load_sim_config(config), asyncio.Event())
    assert isinstance(err.value.__cause__, ZeroDivisionError)
    assert hooked == []  # the thread did not die with an unhandled exception


def test_the_shipped_example_serves_without_a_broker(
        tmp_path: Path, simulator: Callable[[Path], Running]) -> None:
    """deploy/examples/sim.toml on free ports, with no broker: it serves, and says so once."""
    text = (Path(__file__).parents[2] / "deploy" / "examples" / "sim.toml").read_text()
    for port in ("5020", "5021", "5025", "1883"):
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}")
    config = tmp_path / "sim.toml"
    config.write_text(text)
    sim = simulator(config)
    assert _wait_for(lambda: "unreachable" in sim.stderr() or not sim.running(), 15), sim.stderr()
    assert sim.running(), sim.stderr()
    sim.proc.send_signal(signal.SIGINT)
    assert sim.proc.wait(15) == 0
    err = sim.stderr()
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert "serving ref-readout" in err and err.count("sensor node dut2: broker") == 1, err
