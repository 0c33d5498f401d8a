"""Under systemd (deploy/systemd: Type=notify, WatchdogSec): the gateway says READY=1 once it
runs, pings the watchdog, says STOPPING=1 at SIGTERM; its log lines carry syslog priorities
and no timestamps of their own when stderr is journald's stream (JOURNAL_STREAM).

No systemd runs here, so the test plays its part: a datagram socket in NOTIFY_SOCKET, as
sd_notify(3) describes, and a file whose device:inode is JOURNAL_STREAM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import sdnotify
from tests.gateway.harness import config_text

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not


def _receive_until(sock: socket.socket, want: str, got: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(want in m.split("\n") for m in got):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {want} in {got}")
        sock.settimeout(remaining)
        got.append(sock.recv(4096).decode())


def test_the_gateway_tells_systemd_ready_watchdog_stopping(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(config_text({
        "gateway": {"site": "s", "id": "g", "run": "R", "data_dir": "data", "shutdown_grace": "1s"},
        # a broker that is not there: the gateway runs (and retries), with a warning
        "sources": {"mqtt": [{"name": "broker", "url": "mqtt://127.0.0.1:1", "reconnect_min": "100ms",
                              "topics": [{"topic": "t/#", "format": "value", "fields": [
                                  {"channel": "c", "quantity": "temperature", "unit": "degC", "role": "dut"}]}]}]},
        "sinks": {"local": [{"name": "store", "path": str(tmp_path / "store.db")}]},
    }))
    notify_path = tmp_path / "notify.sock"
    received: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, open(tmp_path / "stderr", "wb") as err:
        sock.bind(str(notify_path))
        st = os.fstat(err.fileno())
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "300000",
               "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen([sys.executable, "-m", "remotecal", "gateway", "run", "-c", str(site)],
                                env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        try:
            _receive_until(sock, "READY=1", received)
            ready = next(m for m in received if "READY=1" in m.split("\n"))
            assert "STATUS=running: 1 source(s), 1 sink(s)" in ready.split("\n")
            n = len(received)
            _receive_until(sock, "WATCHDOG=1", received)
            del received[n:]
            _receive_until(sock, "WATCHDOG=1", received)  # and again: pinged every 0.15 s
            proc.send_signal(signal.SIGTERM)
            _receive_until(sock, "STOPPING=1", received)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = (tmp_path / "stderr").read_text().splitlines()
    assert log, "the gateway logs"
    assert all(line[:3] in ("<6>", "<4>", "<3>", "<7>") for line in log), log
    assert any(line.startswith("<6>INFO    remotecal.gateway: gateway s/g run R: ") for line in log), log
    assert any(line.startswith("<4>WARNING ") and "(127.0.0.1:1): unreachable" in line for line in log), log
    assert not any(line[3:5] == "20" for line in log), "journald stamps the time, the line does not"


def test_a_start_up_error_under_systemd_has_its_priority(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text('[gateway]\nsite = "s"\n')
    with open(tmp_path / "stderr", "wb") as err:
        st = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        code = subprocess.run([sys.executable, "-m", "remotecal", "gateway", "run", "-c", str(site)],
                              env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=60).returncode
    assert code == 2
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert lines and all(line.startswith(f"<3>{site}: gateway.") for line in lines), lines


def test_notify_speaks_to_an_abstract_socket_and_is_silent_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"remotecal-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("STATUS=two\nlines", "READY=1") is True
        assert sock.recv(4096) == b"STATUS=two lines\nREADY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sdnotify.notify("READY=1") is False


def test_notify_to_a_socket_that_is_gone_is_a_warning_once_not_an_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    monkeypatch.setattr(sdnotify, "_failed_once", False)
    assert sdnotify.notify("WATCHDOG=1") is False
    assert sdnotify.notify("WATCHDOG=1") is False
    assert [r.levelname for r in caplog.records if r.name == "remotecal.systemd"] == ["WARNING"]


def test_watchdog_period_is_half_of_systemds_and_only_for_its_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_period() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_period() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_period() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process (ours is a child)
    assert sdnotify.watchdog_period() is None
