"""Remote run control end to end on real servers: `remotecal run ...` at the institute ->
Mosquitto -> a gateway process with a controllable (simulated) chamber -> influxd.

A signed start runs a procedure to its end; forged, replayed, expired and misaddressed
commands are refused and visible in InfluxDB as run_event points with their reason; a local
abort wins over a remote resume."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gateway.configfile import dumps
from gateway.control.envelope import Command, command_payload, parse_answer
from gateway.control.keys import load_private_key, load_public_keys, new_key_pair
from gateway.control.remote import command_topic
from gateway.localcontrol import GatewayNotRunning, request_sync
from remotecal.cli import main
from tests.gateway.control.test_remote import Raw as RawInstitute
from tests.gateway.run.sim import ChamberSim, procedure_text, site_config
from tests.gateway.run.test_run_end_to_end import SimGateway, wait_until
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

S = 10**9


class Site:
    """The institute's keys and CONTROL.toml, and the gateway process with [control]."""

    def __init__(self, tmp: Path, broker: Mosquitto, influxd: InfluxD) -> None:
        influxd.create_database("calibration")
        self.tmp, self.broker, self.influxd = tmp, broker, influxd
        self.key, self.pub = new_key_pair("institute", tmp / "institute", institute="nmc")
        self.data = tmp / "gw" / "data"
        text = site_config(self.data, broker.port, influxd.url)
        text += "\n" + dumps({"control": {"keys": str(self.pub), "broker": {"url": broker.url}}})
        self.gw = SimGateway(tmp / "gw", text)
        self.control = tmp / "control.toml"
        self.control.write_text(dumps({
            "institute": {"key_file": str(self.key), "gateway_keys": str(self.data / "control-answer.pub"),
                          "state_dir": str(tmp / "state"), "timeout": "20s"},
            "broker": {"url": broker.url}}))
        self.procedure = tmp / "procedure.toml"
        self.procedure.write_text(procedure_text())

    def start(self) -> None:
        self.gw.start()
        wait_until(lambda: self.status(), 30, "the gateway's control socket", self.gw)
        self.broker.wait_subscribed(command_topic("remotecal/v1", "lab1", "gw01"))
        self.broker.wait_subscribed("sim/dut/state")  # its last topic: the site source is in

    def status(self) -> dict[str, Any] | None:
        try:
            return dict(request_sync(self.data, "run.status", timeout=5)["result"])
        except GatewayNotRunning:
            return None

    def cli(self, *argv: str) -> int:
        return main(["run", *argv, "-c", str(self.control), "--site", "lab1", "--gateway", "gw01",
                     "--actor", "alice@nmc"])

    def local(self, *argv: str) -> int:
        return main(["run", *argv, "--local", "-c", str(self.gw.config_path), "--actor", "site-operator"])

    def commands(self) -> list[dict[str, Any]]:
        return self.influxd.rows("SELECT * FROM run_event WHERE command != ''", "calibration")


@pytest.fixture()
def site(tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> Any:
    s = Site(tmp_path, mosquitto, influxd)
    chamber = ChamberSim(mosquitto.port)
    s.start()
    chamber.start()
    try:
        yield s
    finally:
        chamber.halt()
        chamber.join(30)
        s.gw.kill()


def test_a_signed_start_runs_the_procedure_to_its_end(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert site.cli("start", "--run", "RC-CMD", "--procedure", str(site.procedure)) == 0, site.gw.log()[-3000:]
    assert "lab1/gw01: start accepted - run RC-CMD settling, step 0" in capsys.readouterr().out
    wait_until(lambda: (s := site.status()) and s["state"] == "finished", 120, "the end of the run", site.gw)
    assert site.cli("status") == 0
    out = capsys.readouterr().out
    assert "lab1/gw01  run RC-CMD  FINISHED" in out and "last command start by alice@nmc" in out
    rows = wait_until(lambda: [r for r in site.commands() if r["run"] == "RC-CMD"], 30, "the start's point")
    assert [(r["command"], r["accepted"], r["actor"], r["origin"]) for r in rows] == [
        ("start", True, "alice@nmc", "remote")]
    windows = site.influxd.rows("SELECT * FROM run_window WHERE run = 'RC-CMD'", "calibration")
    assert len({w["step"] for w in windows}) == 3  # 20, 25, 30 degC, each recorded
    assert site.gw.terminate() == 0  # the remote side stops with the gateway


class Raw(RawInstitute):
    """The bare institute client, each answer parsed."""

    def send(self, payload: bytes) -> Any:  # type: ignore[override]
        return parse_answer(super().send(payload), {})[0]


def test_forged_replayed_expired_misaddressed_are_refused_and_in_influxdb(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    key = load_private_key(site.key)
    now = time.time_ns()

    def cmd(seq: int, **kw: Any) -> bytes:
        base: dict[str, Any] = dict(site="lab1", gateway="gw01", command="status", actor="alice@nmc", seq=seq,
                                    issued_ns=now, expires_ns=now + 60 * S)
        base.update(kw)
        return command_payload(Command(**base), key)

    mallory, _ = new_key_pair("institute", site.tmp / "mallory", institute="nmc")
    forged = command_payload(Command(site="lab1", gateway="gw01", command="abort", actor="mallory@evil",
                                     seq=1, issued_ns=now, expires_ns=now + 60 * S), load_private_key(mallory))
    raw = Raw(site.broker)
    try:
        assert raw.send(forged).refusal == "bad signature"
        pause = cmd(100, command="pause", reason="replay me")
        assert raw.send(pause).refusal == "not allowed"  # idle: nothing to pause
        assert raw.send(pause).refusal == "replayed"
        assert raw.send(cmd(101, command="abort", issued_ns=now - 120 * S, expires_ns=now - 60 * S)).refusal \
            == "expired"
        assert raw.send(cmd(102, command="abort", gateway="gw02")).refusal == "wrong gateway"
    finally:
        raw.close()
    want = {("abort", "bad signature", "mallory@evil (unverified)"), ("pause", "not allowed", "alice@nmc"),
            ("pause", "replayed", "alice@nmc"), ("abort", "expired", "alice@nmc"),
            ("abort", "wrong gateway", "alice@nmc")}
    rows = wait_until(lambda: (r := site.commands()) and len(r) >= 5 and r, 30, "the refusals' points")
    assert {(r["command"], r["refusal"], r["actor"]) for r in rows} == want
    assert all(r["accepted"] is False and r["run"] == "between-runs" and r["reason"] for r in rows)
    assert (site.status() or {}).get("state") == "idle"  # none of them did anything


def test_a_local_abort_wins_over_a_remote_resume(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert site.cli("start", "--run", "RC-ABORT", "--procedure", str(site.procedure)) == 0
    assert site.cli("pause", "--reason", "let me look") == 0
    assert site.local("abort", "--reason", "door open") == 0
    assert site.cli("resume") == 1
    err = capsys.readouterr().err
    assert "resume REFUSED - not allowed" in err
    st = site.status()
    assert st is not None and st["state"] == "aborted"
    rows = wait_until(lambda: (r := [x for x in site.commands() if x["run"] == "RC-ABORT"]) and len(r) == 4 and r,
                      30, "the four commands' points")
    assert [(r["command"], r["accepted"], r["origin"], r["actor"]) for r in rows] == [
        ("start", True, "remote", "alice@nmc"), ("pause", True, "remote", "alice@nmc"),
        ("abort", True, "local", "site-operator (local)"), ("resume", False, "remote", "alice@nmc")]
    assert load_public_keys(site.data / "control-answer.pub", "gateway")  # made at the first start
    control = request_sync(site.data, "status")["control"]
    assert control["remote"] and control["allow_remote"] and control["connected"]
    assert (control["accepted"], control["refused"]) == (3, 1)
    assert main(["gateway", "status", "-c", str(site.gw.config_path)]) == 0
    assert "run control: remote on via 127.0.0.1:" in capsys.readouterr().out


def test_a_procedure_this_site_cannot_run_is_refused_before_anything_moves(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = site.tmp / "wrong.toml"
    wrong.write_text(procedure_text().replace('temperature = "ref-t"', 'temperature = "ref-x"')
                     .replace("[[steps]]", "[[steps]]\nhumidity = 50.0\n"))
    assert site.cli("start", "--run", "RC-WRONG", "--procedure", str(wrong)) == 1
    err = capsys.readouterr().err
    assert "start REFUSED - bad procedure: procedure.references.temperature: no source of the site reads " \
           "channel 'ref-x'" in err
    assert "no controller of the site writes the humidity setpoint" in err
    assert (site.status() or {}).get("state") == "idle"
