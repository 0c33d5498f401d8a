"""`remotecal dashboards push` and `build` from the command line.

No real Grafana can be installed here, so the push goes to a FAKE: a tiny http.server on
127.0.0.1 that answers the three endpoints grafana-client calls (GET /api/folders/UID,
POST /api/folders, POST /api/dashboards/db) the way Grafana documents them, and records
the requests.  It checks what we send - the dashboards, the folder, the token - not that a
real Grafana accepts the dashboard model; test_queries.py checks the queries against a
real influxd.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import remotecal.cli
from dashboards.build import CHECKED_IN, dashboard_models
from tests.servers.influx import free_port


class FakeGrafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.folders: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def posted_dashboards(self) -> list[dict[str, Any]]:
        return [body for method, path, _, body in self.requests if (method, path) == ("POST", "/api/dashboards/db")]


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        return body

    def do_GET(self) -> None:
        self._record()
        uid = self.path.removeprefix("/api/folders/")
        if self.path.startswith("/api/folders/") and uid in self.server.folders:
            self._answer(200, {"uid": uid, "title": uid})
        else:
            self._answer(404, {"message": "folder not found"})

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/api/folders":
            self.server.folders.add(body["uid"])
            self._answer(200, {"uid": body["uid"], "title": body["title"]})
        elif self.path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            self._answer(200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1})
        else:
            self._answer(404, {"message": "not found"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch) -> Any:
    """remotecal.cli.main, with no proxy in the way of the fake Grafana on loopback."""
    for proxy in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    return remotecal.cli.main


def test_push_posts_every_dashboard_with_the_token(
    grafana: FakeGrafana, main: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_test-token")
    assert main(["dashboards", "push", "--url", grafana.url]) == 0
    posted = grafana.posted_dashboards()
    assert [p["dashboard"] for p in posted] == dashboard_models()
    assert all(p["overwrite"] is True and p["folderUid"] == "remotecal" for p in posted)
    assert grafana.folders == {"remotecal"}
    assert {headers["Authorization"] for _, _, headers, _ in grafana.requests} == {"Bearer glsa_test-token"}
    assert capsys.readouterr().out.count("pushed /d/") == len(posted)

    # A second push finds the folder and overwrites the same uids.
    assert main(["dashboards", "push", "--url", grafana.url]) == 0
    assert [p["dashboard"]["uid"] for p in grafana.posted_dashboards()] == 2 * [p["dashboard"]["uid"] for p in posted]
    assert sum(1 for method, path, _, _ in grafana.requests if (method, path) == ("POST", "/api/folders")) == 1


def test_unreachable_grafana_is_one_line_and_exit_1(
    main: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", "t")
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["dashboards", "push", "--url", url, "--timeout", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"remotecal: Grafana at {url} is unreachable")
    assert "\n" not in err and "Traceback" not in err


def test_build_command_writes_what_is_checked_in(main: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "build", "--out", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5  # 2 dashboards, 3 provisioning files
    for path in CHECKED_IN.rglob("*.*"):
        assert (tmp_path / path.relative_to(CHECKED_IN)).read_bytes() == path.read_bytes()


def test_build_into_an_unwritable_place_is_one_line(main: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["dashboards", "build", "--out", str(blocker / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"remotecal: {blocker / 'out'}: cannot write the dashboards")
    assert "\n" not in err
