"""A real Mosquitto broker for integration tests, on a free 127.0.0.1 port.

`Mosquitto(tmp)` writes its own config (loopback listener, persistence in `tmp`, inflight
and queue limits large enough for a test's bursts), starts it, and ends it in `stop()`.
`kill()` + `start()` restart it on the same port and persistence file.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.influx import ServerError, free_port

__all__ = ["Mosquitto", "mosquitto_fixture"]


class Mosquitto:
    executable = "mosquitto"

    def __init__(self, workdir: Path, *, extra_conf: str = "", port: int | None = None) -> None:
        exe = shutil.which(self.executable) or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise ServerError("mosquitto is not installed (make test installs it)")
        self.exe = exe
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self.conf_path.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # Started as root, Mosquitto would switch to the `mosquitto` user, who cannot
            # read or write a test's private temporary folder.
            f"user {getpass.getuser()}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_inflight_messages 1000\n"
            "max_queued_messages 1000000\n"
            "max_queued_bytes 0\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n"
            + extra_conf
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf_path)], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(f"mosquitto exited at start:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise ServerError(f"mosquitto did not listen within 20 s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its connections but answers nothing (a PUBACK that never
        comes); `kill()` ends it from there."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGSTOP)

    def wait_subscribed(self, topic_filter: str, timeout: float = 30.0) -> None:
        """Return once a client has subscribed to `topic_filter` (the broker's log says so):
        what a test publishes from then on reaches it.  A client that resumes a session it
        subscribed in before is not logged again: wait before its first start only."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.endswith(f" {topic_filter}") for line in self.log_tail(1_000_000).splitlines()):
                return
            time.sleep(0.05)
        raise ServerError(f"nobody subscribed to {topic_filter} within {timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


mosquitto_fixture = mosquitto
