"""Real time-series servers for integration tests: influxd 1.x and VictoriaMetrics.

Each server runs as a child process on free 127.0.0.1 ports, in a temporary folder of its
own, with its log in that folder.  Whatever a test starts it ends: `stop()` (SIGTERM, then
SIGKILL) or `kill()` (SIGKILL, an outage); `start()` brings the same server back on the same
data folder and ports, so a test can cut the power and see what survived.

    with InfluxD(tmp_path) as influx:
        influx.create_database("calibration")
        influx.query("SELECT * FROM reading", db="calibration")

Fixtures `influxd` (with a database `calibration`) and `victoria` wrap these; tests/conftest.py
loads this module as a plugin.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

__all__ = [
    "InfluxD",
    "ServerError",
    "VictoriaMetrics",
    "free_port",
    "influxd_fixture",
    "victoria_fixture",
]

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


class ServerError(RuntimeError):
    """A test server would not start or answer; the message carries its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _client(timeout: float = 30.0, auth: tuple[str, str] | None = None) -> httpx.Client:
    # Loopback servers: a proxy from the environment must not stand in between.
    return httpx.Client(timeout=timeout, auth=auth, trust_env=False)


class _Process:
    """One server process: start, wait until it answers, stop or kill it."""

    executable = ""

    def __init__(self, workdir: Path) -> None:
        if shutil.which(self.executable) is None:
            raise ServerError(f"{self.executable} is not installed (make test installs it)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self, client: httpx.Client) -> bool:
        raise NotImplementedError

    def _choose_ports(self) -> None:
        self.port = free_port()

    def start(self, *, keep_port: bool = False) -> None:
        """Start (or restart) the server and return once it answers.

        The first start retries with other ports when one was taken between choosing it
        and binding it (unless `keep_port`: the port was asked for); a restart keeps its
        ports, as a test that kills and revives a server expects its clients to find it
        where it was.
        """
        first = not self.log_path.exists() and not keep_port
        for attempt in range(3):
            try:
                self._start_once()
                return
            except ServerError as e:
                if not (first and "address already in use" in str(e) and attempt < 2):
                    raise
                self._choose_ports()

    def _start_once(self) -> None:
        if self.running:
            raise ServerError(f"{self.executable} is already running")
        with open(self.log_path, "ab") as log:
            log.write(f"--- start: {' '.join(self._command())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        with _client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    self._proc = None
                    raise ServerError(
                        f"{self.executable} exited during start-up:\n{self.log_tail()}"
                    )
                try:
                    # Still ours? Another process may have taken the port meanwhile.
                    if self._ready(client) and self._proc.poll() is None:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise ServerError(
            f"{self.executable} did not answer within {_START_TIMEOUT_S:.0f} s:\n"
            f"{self.log_tail()}"
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not exited after a while."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: the server dies as in a power cut."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return text[-max_chars:]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _int_keeping_negative_zero(text: str) -> int | float:
    # influxd writes the float -0.0 as "-0"; as an int it would lose its sign.
    return -0.0 if text == "-0" else int(text)


class InfluxD(_Process):
    """influxd 1.x with only its HTTP API on loopback, nothing reported or monitored.

    With `auth=True` the HTTP API requires credentials; an admin user
    (`admin_user`/`admin_password`) is created at the first start and used by `query`.
    """

    executable = "influxd"
    admin_user = "admin"
    admin_password = "admin-secret"

    def __init__(self, workdir: Path, *, auth: bool = False) -> None:
        super().__init__(workdir)
        self.auth = auth
        self.rpc_port = free_port()
        self.config_path = self.workdir / "influxdb.conf"
        self._admin_created = False

    def _choose_ports(self) -> None:
        super()._choose_ports()
        self.rpc_port = free_port()

    def _write_config(self) -> None:
        # Debian's influxd names the switch `reporting-enabled`, upstream 1.6 names it
        # `reporting-disabled`; unknown keys are ignored, so both are set.
        data = self.workdir / "data"
        self.config_path.write_text(
            f"""\
reporting-disabled = true
reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{data / "meta"}"
  logging-enabled = false

[data]
  dir = "{data / "data"}"
  wal-dir = "{data / "wal"}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""
        )

    def _command(self) -> list[str]:
        return ["influxd", "run", "-config", str(self.config_path)]

    def _start_once(self) -> None:
        self._write_config()
        super()._start_once()
        if self.auth and not self._admin_created:
            # The first user may be created without credentials, and must be an admin.
            self._raw_query(
                f"CREATE USER {self.admin_user} WITH PASSWORD '{self.admin_password}' "
                "WITH ALL PRIVILEGES",
                auth=None,
            )
            self._admin_created = True

    def _ready(self, client: httpx.Client) -> bool:
        return client.get(f"{self.url}/ping").status_code == 204

    @property
    def admin_auth(self) -> tuple[str, str] | None:
        return (self.admin_user, self.admin_password) if self.auth else None

    def _raw_query(
        self, q: str, db: str | None = None, *, auth: tuple[str, str] | None
    ) -> dict[str, Any]:
        params = {"q": q, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        with _client(auth=auth) as client:
            r = client.post(f"{self.url}/query", data=params)
        body: dict[str, Any] = json.loads(r.text, parse_int=_int_keeping_negative_zero)
        if r.status_code != 200 or "error" in body:
            raise ServerError(f"influxd query {q!r} failed: {r.status_code} {r.text}")
        for result in body.get("results", []):
            if "error" in result:
                raise ServerError(f"influxd query {q!r} failed: {result['error']}")
        return body

    def query(self, q: str, db: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL; return the `results` list (one dict per statement)."""
        results: list[dict[str, Any]] = self._raw_query(q, db, auth=self.admin_auth)["results"]
        return results

    def rows(self, q: str, db: str) -> list[dict[str, Any]]:
        """Run one SELECT; return every row of every series as a dict (tags included)."""
        out: list[dict[str, Any]] = []
        for series in self.query(q, db)[0].get("series", []):
            tags = series.get("tags", {})
            for values in series["values"]:
                out.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return out

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def create_user(self, user: str, password: str, *, admin: bool = False) -> None:
        suffix = " WITH ALL PRIVILEGES" if admin else ""
        self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}'{suffix}")

    def grant(self, privilege: str, db: str, user: str) -> None:
        self.query(f'GRANT {privilege} ON "{db}" TO "{user}"')

    def write_raw(
        self, body: bytes, db: str, *, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST line protocol as is, for tests that need points we would never encode."""
        with _client(auth=self.admin_auth) as client:
            return client.post(
                f"{self.url}/write", params={"db": db, **(params or {})}, content=body
            )


class VictoriaMetrics(_Process):
    """Single-node VictoriaMetrics: accepts InfluxDB line protocol on /write, /api/v2/write.

    VictoriaMetrics stores a line-protocol field `value` of measurement `reading` as the
    series `reading_value`, the tags as labels, and timestamps in milliseconds.
    """

    executable = "victoria-metrics"

    def _command(self) -> list[str]:
        return [
            "victoria-metrics",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=100y",
            "-loggerLevel=WARN",
        ]

    def _ready(self, client: httpx.Client) -> bool:
        return client.get(f"{self.url}/health").status_code == 200

    def flush(self) -> None:
        """Make freshly written samples searchable."""
        with _client() as client:
            client.get(f"{self.url}/internal/force_flush").raise_for_status()

    def export(
        self, match: str = '{__name__!=""}', *, min_samples: int = 0, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The series `match` selects: {"metric": {labels}, "values", "timestamps" [ms]}.

        VictoriaMetrics keeps fresh samples in memory for about a second before even
        /internal/force_flush makes them searchable, so this polls until at least
        `min_samples` samples are visible or `timeout` s have passed.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            with _client() as client:
                r = client.post(f"{self.url}/api/v1/export", data={"match[]": match, "start": "0"})
            r.raise_for_status()
            series = [json.loads(line) for line in r.text.splitlines() if line.strip()]
            if sum(len(s["values"]) for s in series) >= min_samples:
                return series
            if time.monotonic() > deadline:
                raise ServerError(
                    f"victoria-metrics shows {sum(len(s['values']) for s in series)} samples "
                    f"for {match}, expected {min_samples}"
                )
            time.sleep(0.1)


@pytest.fixture(name="influxd")
def influxd_fixture(tmp_path: Path) -> Iterator[InfluxD]:
    """A fresh influxd with an empty database `calibration`."""
    server = InfluxD(tmp_path / "influxd")
    server.start()
    try:
        server.create_database("calibration")
        yield server
    finally:
        server.stop()


@pytest.fixture(name="victoria")
def victoria_fixture(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A fresh, empty VictoriaMetrics."""
    server = VictoriaMetrics(tmp_path / "victoria")
    server.start()
    try:
        yield server
    finally:
        server.stop()
