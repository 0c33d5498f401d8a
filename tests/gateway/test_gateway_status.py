"""`remotecal gateway status` reads the running gateway (its control socket), and the gateway's
log says what it is doing: a periodic one-line summary at info, per-batch lines at debug."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.runtime import Gateway
from remotecal.cli import main
from tests.gateway.counter_source import counter_site
from tests.gateway.harness import GatewayProcess, SteadyStream, config_text, site_config, state_message
from tests.gateway.test_end_to_end import wait_until
from tests.servers.mosquitto import Mosquitto


def _status(config: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remotecal", "gateway", "status", "-c", str(config), *more],
                          capture_output=True, text=True, timeout=60)


def test_status_without_a_gateway_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.toml"
    # a sink secret this shell does not have: status reads [gateway] only
    site.write_text(config_text({
        "gateway": {"site": "s", "id": "g", "run": "R", "data_dir": "data"},
        "sinks": {"influxdb": [{"url": "http://127.0.0.1:1", "database": "x", "token": "env:NOT_SET_HERE_1234"}]},
    }))
    assert main(["gateway", "status", "-c", str(site)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [f"remotecal: no gateway is running on {tmp_path / 'data'} (no control socket there)"]
    assert main(["gateway", "status", "-c", str(site), "--watch", "1"]) == 1, "watch: the first must answer"
    assert len(capsys.readouterr().err.splitlines()) == 1

    (tmp_path / "bad.toml").write_text('[gateway]\nsite = "s"\n')
    assert main(["gateway", "status", "-c", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.toml'}: gateway.data_dir: required key is missing" in err.splitlines()


def test_status_of_a_running_gateway_by_the_cli(counter: None, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    site = counter_site(tmp_path, interval="20ms")

    async def run() -> tuple[int, dict[str, Any], int, str]:
        gateway = Gateway(load_config(site))
        task = asyncio.create_task(gateway.run())
        try:
            async with asyncio.timeout(30):
                while not (gateway.journal.stats.delivered.get("store", 0) >= 20
                           and gateway.trackers["tick"].rate() > 0):
                    await asyncio.sleep(0.05)
            code = await asyncio.to_thread(main, ["gateway", "status", "-c", str(site), "--json"])
            as_json = json.loads(capsys.readouterr().out)
            human_code = await asyncio.to_thread(main, ["gateway", "status", "-c", str(site)])
            return code, as_json, human_code, capsys.readouterr().out
        finally:
            gateway.request_stop()
            await task

    code, st, human_code, human = asyncio.run(run())
    assert code == 0 and human_code == 0
    (tick,) = st["sources"]
    assert tick["name"] == "tick" and tick["connected"] is True and tick["readings"] >= 20
    assert 5 < tick["readings_per_s"] < 100, "one reading every 20 ms"
    (sink,) = st["sinks"]
    assert sink["name"] == "store" and sink["delivered"] >= 20 and sink["last_delivery"] is not None
    assert sink["state"] == "ok" and isinstance(sink["pending"], int)
    assert st["journal"]["quarantined"] == 0 and st["health"]["received"] >= 20
    lines = human.splitlines()
    assert lines[0].startswith("gateway s/g, run R: running for ")
    assert lines[1] == "sources (1 of 1 connected):"
    assert lines[2].startswith("  tick   connected    since ") and " readings/s, " in lines[2]
    assert lines[3] == "sinks:"
    assert lines[4].startswith("  store  ") and " delivered, last delivery " in lines[4]
    assert lines[5].startswith("journal: ") and lines[5].endswith("; quarantine: 0 input(s)")


@pytest.mark.integration
def test_status_and_log_of_a_gateway_process_on_a_real_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sink = f'[[sinks.local]]\nname = "local"\npath = "{tmp_path / "store.db"}"\nflush_interval = "100ms"\n'
    config = site_config(tmp_path / "data", mosquitto.port, sink, health="1s")
    config = config.replace("[gateway]\n", '[gateway]\nsummary_interval = "1s"\nlog_level = "debug"\n', 1)
    stream = SteadyStream(mosquitto.port, rate=50, count=100_000,
                          make=lambda i: state_message("s1", i, int(time.time() * 1000)))
    with GatewayProcess(tmp_path / "gw", config) as gw:
        wait_until(lambda: "): connected" in gw.log(), 30, "the gateway's subscription", gw)
        stream.start()
        try:
            def answered() -> dict[str, Any] | None:
                proc = _status(gw.config_path, "--json")
                if proc.returncode != 0:
                    return None
                st: dict[str, Any] = json.loads(proc.stdout)
                ok = st["sources"][0]["readings_per_s"] > 20 and st["sinks"][0]["delivered"] > 100
                return st if ok else None

            st = wait_until(answered, 60, "a status with readings and deliveries", gw)
            (broker,) = st["sources"]
            assert broker["name"] == "broker" and broker["connected"] is True
            assert 40 < broker["readings_per_s"] < 400, "50 messages/s, 2 readings each"
            assert st["sinks"][0]["name"] == "local"
            wait_until(lambda: "status: 1/1 source(s) connected; " in gw.log(), 30, "a summary line", gw)
        finally:
            stream.halt()
            stream.join()
        human = _status(gw.config_path)
        assert human.returncode == 0 and "  broker  connected    since " in human.stdout
        assert gw.terminate() == 0
    log = gw.log()
    summary = next(line for line in log.splitlines() if "status: 1/1 source(s) connected; " in line)
    assert " INFO    remotecal.gateway: status: " in summary
    assert "readings/s; sink 'local': " in summary and " pending; quarantine 0" in summary
    assert "DEBUG   remotecal.gateway: source 'broker': 2 reading(s), 0 rejected" in log
    assert "DEBUG   remotecal.delivery: sink 'local': delivered " in log
    gone = _status(gw.config_path)
    assert gone.returncode == 1 and gone.stdout == ""
    assert gone.stderr.splitlines() == [f"remotecal: no gateway is running on {tmp_path / 'data'} "
                                        "(no control socket there)"]


@pytest.mark.integration
def test_status_after_a_killed_gateway_says_it_stopped(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sink = f'[[sinks.local]]\nname = "local"\npath = "{tmp_path / "store.db"}"\n'
    with GatewayProcess(tmp_path / "gw", site_config(tmp_path / "data", mosquitto.port, sink)) as gw:
        wait_until(lambda: _status(gw.config_path).returncode == 0, 30, "the gateway's status", gw)
        gw.kill()
        proc = _status(gw.config_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"remotecal: no gateway is running on {tmp_path / 'data'} "
                                        "(its control socket is left from a gateway that has stopped)"]


def test_watch_keeps_watching_through_a_restart_and_ends_at_ctrl_c(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import gateway.localcontrol as localcontrol
    from gateway.localcontrol import GatewayNotRunning

    site = tmp_path / "site.toml"
    site.write_text(config_text({"gateway": {"site": "s", "id": "g", "run": "R", "data_dir": "data"}}))
    status = {"site": "s", "gateway": "g", "run": "R", "pid": 7, "uptime_s": 5.0, "now": "2026-12-07T00:00:00Z",
              "sources": [], "sinks": [], "journal": {"pending": 0, "bytes": 0, "full": False, "failing": False,
                                                      "quarantined": 0}}
    answers: list[dict[str, Any] | Exception] = [status, GatewayNotRunning("no gateway is running on X"), status]
    sleeps: list[float] = []

    def request_sync(data_dir: Path, op: str, **_: Any) -> dict[str, Any]:
        assert (data_dir, op) == (tmp_path / "data", "status")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if not answers:
            raise KeyboardInterrupt

    monkeypatch.setattr(localcontrol, "request_sync", request_sync)
    monkeypatch.setattr(time, "sleep", sleep)
    assert main(["gateway", "status", "-c", str(site), "--watch", "0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sleeps == [0.5, 0.5, 0.5]
    assert sum(line.startswith("gateway s/g, run R: running for 5 s (pid 7)") for line in out) == 2
    assert next(line for line in out if "no gateway" in line).endswith(": no gateway is running on X")
