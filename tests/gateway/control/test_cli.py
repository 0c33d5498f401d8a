"""`remotecal keys new --institute|--control` and `remotecal run ...` as a user meets them
(unit tier: the local form against a real control socket, with a stand-in engine)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.configfile import dumps
from gateway.control.keys import load_private_key, load_public_keys
from gateway.control.service import ControlService, ProcedureStore
from gateway.journal import Journal
from gateway.journal.control import read_command_log
from gateway.localcontrol import LocalControl
from remotecal.cli import main
from remotecal.runcmd import format_status
from tests.gateway.control.test_service import FakeEngine, NotAllowed

ROOT = Path(__file__).resolve().parents[3]
PROCEDURE = ROOT / "deploy" / "examples" / "procedure.toml"


def test_keys_new_institute_and_control(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--institute", "nmc", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "nmc.institute.key" in out and "[control] keys" in out
    assert load_private_key(tmp_path / "nmc.institute.key", "institute").public.owner == "nmc"
    assert main(["keys", "new", "--site", "lab1", "--gateway", "gw01", "--control", "--out", str(tmp_path)]) == 0
    assert set(load_public_keys(tmp_path / "lab1+gw01.control.pub", "gateway").values()).pop().owner == "lab1/gw01"
    capsys.readouterr()
    assert main(["keys", "new", "--institute", "nmc", "--site", "x", "--out", str(tmp_path)]) == 2
    assert main(["keys", "new", "--out", str(tmp_path)]) == 2
    assert main(["keys", "new", "--institute", "nmc", "--out", str(tmp_path)]) == 2  # never overwritten
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "--institute" in err[0] and "--site and --gateway" in err[1]
    assert "already there" in err[2]


def _control_toml(tmp_path: Path) -> Path:
    assert main(["keys", "new", "--institute", "nmc", "--out", str(tmp_path / "keys")]) == 0
    p = tmp_path / "control.toml"
    p.write_text(dumps({"institute": {"key_file": "keys/nmc.institute.key", "state_dir": "state"},
                        "broker": {"url": "mqtt://127.0.0.1:1"}}))
    return p


def test_run_usage_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    control = _control_toml(tmp_path)
    capsys.readouterr()
    assert main(["run", "pause", "-c", str(control)]) == 2
    assert "--site and --gateway: required" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[procedure]\nname = 'x'\n[[steps]]\ntemperature = 'hot'\n")
    assert main(["run", "start", "-c", str(control), "--site", "s", "--gateway", "g", "--run", "R",
                 "--procedure", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith(f"{bad}: ") for line in err), err
    assert main(["run", "start", "-c", str(control), "--site", "s", "--gateway", "g", "--run", "R",
                 "--procedure-sha256", "abc"]) == 2
    assert "--procedure-sha256: must be 64" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("[institute]\n")
    assert main(["run", "status", "-c", str(broken), "--site", "s", "--gateway", "g"]) == 2
    err = capsys.readouterr().err
    assert "institute.key_file: required key is missing" in err and "broker: required key is missing" in err


def test_run_remote_without_a_broker_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    control = _control_toml(tmp_path)
    capsys.readouterr()
    assert main(["run", "status", "-c", str(control), "--site", "s", "--gateway", "g", "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the broker 127.0.0.1:1" in err


def _site(tmp_path: Path) -> Path:
    p = tmp_path / "site.toml"
    p.write_text(dumps({
        "gateway": {"site": "lab1", "id": "gw01", "run": "idle", "data_dir": "data"},
        "sources": {"mqtt": [{"name": "m", "url": "mqtt://127.0.0.1:1", "topics": [
            {"topic": "a/+", "format": "value", "fields": [{"path": "", "channel": "{1}", "quantity": "temperature",
                                                              "unit": "degC", "role": "dut"}]}]}]},
        "sinks": {"local": [{"path": "store.db"}]},
    }))
    return p


def test_run_local_without_a_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "abort", "--local", "-c", str(_site(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no gateway is running" in err


async def test_run_local_commands_through_the_control_socket(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.procedure import parse_procedure

    site = _site(tmp_path)
    data = tmp_path / "data"
    engine = FakeEngine()
    async with Journal(data / "journal.db", ["s"]) as journal:
        async def emit(run: str, t: int, f: dict[str, Any]) -> None:
            return None

        service = ControlService(site="lab1", gateway="gw01", default_run="idle", engine=engine, journal=journal,
                                 emit=emit, procedures=ProcedureStore(data / "procedures"),
                                 parse_procedure=parse_procedure, not_allowed=(NotAllowed,))
        control = LocalControl(data)
        for op, handler in service.local_handlers().items():
            control.register(op, handler)
        await control.start()
        try:
            def cli(*argv: str) -> int:
                return main(["run", *argv, "--local", "-c", str(site), "--actor", "ops"])

            assert await asyncio.to_thread(cli, "start", "--run", "RC-5", "--procedure", str(PROCEDURE)) == 0
            assert "lab1/gw01: start accepted - run RC-5 settling" in capsys.readouterr().out
            assert engine.calls[0][2:] == ("RC-5", "ops (local)")
            assert await asyncio.to_thread(cli, "resume") == 1
            assert "resume REFUSED - not allowed: cannot resume" in capsys.readouterr().err
            assert await asyncio.to_thread(cli, "abort", "--reason", "door open") == 0
            assert engine.state == "aborted" and engine.calls[-1] == ("abort", "ops (local)", "door open", True)
            assert await asyncio.to_thread(cli, "status") == 0
            assert "ABORTED" in capsys.readouterr().out
        finally:
            await control.close()
    assert [(r.command, r.accepted) for r in read_command_log(data / "journal.db")] == [
        ("abort", True), ("resume", False), ("start", True)]


def test_format_status() -> None:
    lines = format_status("lab1/gw01", {
        "state": "recording", "run": "RC-1", "step": 2, "steps": 6, "step_name": "RH 70 %rh up",
        "time_in_state_s": 75.2, "step_elapsed_s": 1260, "settle_min_s": 600, "record_s": 600, "max_s": 5400,
        "setpoints": {"temperature": 23.0, "humidity": 70.0},
        "references": [{"channel": "ref-t", "unit": "degC", "stable": True, "std": 0.012, "max_std": 0.05,
                        "slope_per_min": 0.003, "max_slope_per_min": 0.02, "window_s": 300, "n": 300,
                        "stable_for_s": 80},
                       {"channel": "dut1-rh", "unit": "%rh", "stable": False, "std": None, "max_std": 0.5,
                        "slope_per_min": None, "max_slope_per_min": 0.2, "window_s": 300, "n": 2}],
        "reason": "stable on ref-t", "actor": "gateway",
        "last_command": {"command": "resume", "actor": "alice@nmc", "accepted": True, "time_ns": 1_800_000_000 * 10**9},
    })
    text = "\n".join(lines)
    assert lines[0] == "lab1/gw01  run RC-1  RECORDING  step 2 (3 of 6) 'RH 70 %rh up'  for 1m15s"
    assert "in step 21m00s, settle min 10m00s, record 10m00s, max 1h30m00s" in text
    assert "humidity 70 %rh, temperature 23 degC" in text
    assert "ref-t       std 0.012 (max 0.05) degC, slope 0.003 (max 0.02) degC/min over 5m00s, n 300: stable " \
           "for 1m20s" in text
    assert "dut1-rh     std - (max 0.5) %rh" in text and "NOT stable" in text
    assert "last command resume by alice@nmc at 2027-01-15 08:00:00 UTC, accepted" in text


def test_control_section_of_the_site_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    from gateway.config import load_config
    from gateway.control import broker_of

    site = _site(tmp_path)
    base = tomllib.loads(site.read_text())

    def check(control: dict[str, Any], sinks: dict[str, Any] | None = None) -> int:
        site.write_text(dumps({**base, "control": control, **({"sinks": sinks} if sinks else {})}))
        return main(["gateway", "check", "-c", str(site)])

    assert check({"allow_remote": True, "broker": {"url": "mqtt://h"}}) == 2
    assert "control.keys: required while allow_remote = true" in capsys.readouterr().err
    assert check({"allow_remote": False}) == 2
    assert "control.broker: required without a [[sinks.mqtt]]" in capsys.readouterr().err
    assert check({"allow_remote": False, "alow_remote": 1}) == 2
    assert "control.alow_remote: unknown key" in capsys.readouterr().err
    uplink = {"mqtt": [{"url": "mqtts://central:8883", "username": "gw01", "key_file": "lab1+gw01.key",
                        "topic_prefix": "x/v1"}]}
    assert main(["keys", "new", "--site", "lab1", "--gateway", "gw01", "--out", str(tmp_path)]) == 0  # check reads it
    assert main(["keys", "new", "--institute", "nmc", "--out", str(tmp_path / "keys")]) == 0
    assert check({"keys": "keys/nmc.institute.pub"}, uplink) == 0
    cfg = load_config(site)
    assert cfg.control is not None and cfg.control.keys == tmp_path / "keys" / "nmc.institute.pub"
    broker = broker_of(cfg)
    assert broker is not None and (broker.url, broker.username, broker.topic_prefix) == (
        "mqtts://central:8883", "gw01", "x/v1")


def test_status_watch_refreshes_until_ctrl_c(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--watch asks again every interval, says when an answer did not come, ends at Ctrl-C with 0."""
    from gateway.errors import RemotecalError
    from remotecal import runcmd

    calls = []

    def once() -> int:
        calls.append(1)
        if len(calls) == 2:
            raise RemotecalError("no answer from gateway lab1/gw01 within 1 s")
        if len(calls) == 4:
            raise KeyboardInterrupt
        print(f"status {len(calls)}")
        return 0

    monkeypatch.setattr(runcmd.time, "sleep", lambda s: None)
    assert runcmd._watch(once, 0.5) == 0
    out, err = capsys.readouterr()
    assert "status 1" in out and "status 3" in out and out.count("every 0.5 s; Ctrl-C ends") == 3
    assert "no answer from gateway lab1/gw01" in err


def test_gateway_check_reads_the_control_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    site = _site(tmp_path)
    base = tomllib.loads(site.read_text())
    broker = {"url": "mqtt://central:1883"}
    site.write_text(dumps({**base, "control": {"keys": "nokeys", "broker": broker}}))
    assert main(["gateway", "check", "-c", str(site)]) == 2
    assert "control.keys: " in capsys.readouterr().err
    assert main(["keys", "new", "--institute", "nmc", "--out", str(tmp_path / "inst")]) == 0
    site.write_text(dumps({**base, "control": {"keys": "inst/nmc.institute.key", "broker": broker}}))
    capsys.readouterr()
    assert main(["gateway", "check", "-c", str(site)]) == 0  # a private key file holds the public half too
    site.write_text(dumps({**base, "control": {"keys": "inst", "broker": broker}}))
    assert main(["gateway", "check", "-c", str(site)]) == 0
    out = capsys.readouterr().out
    assert "remote control: on, commands signed by nmc (" in out and "central:1883 (remotecal/v1)" in out
    site.write_text(dumps({**base, "control": {"allow_remote": False, "broker": broker}}))
    assert main(["gateway", "check", "-c", str(site)]) == 0
    assert "remote control: OFF" in capsys.readouterr().out


async def test_run_log_lists_the_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gateway.journal.control import CommandRow

    site = _site(tmp_path)
    assert await asyncio.to_thread(main, ["run", "log", "-c", str(site)]) == 1
    assert "no journal there" in capsys.readouterr().err
    async with Journal(tmp_path / "data" / "journal.db", ["s"]) as j:
        await j.log_command(CommandRow(1_800_000_000 * 10**9, "remote", "start", "RC-1", "alice@nmc", True, "", "",
                                       5, "abcd"))
        await j.log_command(CommandRow(1_800_000_001 * 10**9, "remote", "abort", "RC-1", "mallory (unverified)",
                                       False, "bad signature", "signed with key 'x'"))
    assert await asyncio.to_thread(main, ["run", "log", "-c", str(site)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("remote  abort   run RC-1  by mallory (unverified)  REFUSED bad signature: signed "
                           "with key 'x'")
    assert out[1].startswith("2027-01-15T08:00:00.000+00:00  remote  start") and out[1].endswith("accepted")
    assert await asyncio.to_thread(main, ["run", "log", "-c", str(site), "--json", "--limit", "1"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["command"] == "abort" and row["refusal"] == "bad signature" and row["accepted"] is False


def test_gateway_status_shows_run_control() -> None:
    from gateway.status import format_status

    base = {"site": "lab1", "gateway": "gw01", "run": "idle", "pid": 1, "uptime_s": 5, "now": "2027-01-15T08:00:00Z",
            "sources": [], "sinks": [], "journal": {"pending": 0, "bytes": 0, "full": False, "failing": False,
                                                     "quarantined": 0}}
    local = {"remote": False, "allow_remote": False, "accepted": 2, "refused": 0}
    assert format_status({**base, "control": local}).splitlines()[-1] == \
        "run control: local only (no [control]); 2 command(s) taken, 0 refused since start"
    down = {"remote": True, "allow_remote": True, "accepted": 0, "refused": 1, "broker": "central:8883",
            "connected": False}
    assert format_status({**base, "control": down}).splitlines()[-1] == \
        "run control: remote on via central:8883 - DISCONNECTED; 0 command(s) taken, 1 refused since start"
    off = {**down, "allow_remote": False, "connected": True}
    assert "run control: remote OFF (allow_remote = false) via central:8883 - connected" in format_status(
        {**base, "control": off})


def test_control_toml_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.control.config import load_institute_config

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    p = tmp_path / "cfg" / "control.toml"
    p.parent.mkdir()
    p.write_text(dumps({"institute": {"key_file": "keys/nmc.institute.key", "state_dir": "~/.local/state/rc"},
                        "broker": {"url": "mqtt://h"}}))
    i = load_institute_config(p).institute
    assert i.key_file == tmp_path / "cfg" / "keys" / "nmc.institute.key"
    assert i.state_dir == tmp_path / "home" / ".local" / "state" / "rc"
