"""`remotecal demo` as a user runs it: a bad --out, --speed or --influx is one line and an
exit code before anything starts, never a traceback; and the CLI's backstop for OSError."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from remotecal.cli import main, parser
from remotecal.demo import MAX_SPEED, DemoPlan
from remotecal.demo.configs import pipeline_config_text
from tests.servers.influx import free_port

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remotecal", "demo", *args],
                          capture_output=True, text=True, timeout=120)


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_out_dir_that_cannot_be_created_is_one_line() -> None:
    proc = _demo("--out", "/proc/remotecal-demo")
    assert proc.returncode == 1
    assert _one_line(proc) == ("remotecal: --out /proc/remotecal-demo: cannot create the output directory: "
                               "No such file or directory")
    assert proc.stdout == ""


def test_an_out_path_through_or_at_a_file_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    proc = _demo("--out", str(file / "demo"))
    assert proc.returncode == 1
    assert _one_line(proc) == f"remotecal: --out {file / 'demo'}: cannot create the output directory: Not a directory"
    proc = _demo("--out", str(file))
    assert proc.returncode == 1
    assert _one_line(proc) == f"remotecal: --out {file}: not a directory"


@pytest.mark.parametrize("speed", ["0", "-5", "nan", "inf", "fast", str(MAX_SPEED * 1.01)])
def test_a_bad_speed_is_refused_with_the_allowed_range(tmp_path: Path, speed: str) -> None:
    proc = _demo("--out", str(tmp_path / "demo"), "--speed", speed)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]  # argparse: the usage line, then the error
    assert error.startswith("remotecal demo: error: argument --speed:"), proc.stderr
    assert "> 0 and at most 2000" in error
    assert not (tmp_path / "demo").exists()


def test_the_allowed_speeds() -> None:
    assert MAX_SPEED == 2000
    for speed in ("0.5", "360", "2000"):
        assert parser().parse_args(["demo", "--speed", speed]).speed == float(speed)
    with pytest.raises(ValueError):
        DemoPlan(out=Path("x"), speed=0)


def test_an_influx_url_that_is_wrong_or_unreachable_is_one_line(tmp_path: Path) -> None:
    proc = _demo("--out", str(tmp_path / "demo"), "--influx", "localhost:8086")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "argument --influx: expected an http:// or https:// URL" in proc.stderr
    url = f"http://127.0.0.1:{free_port()}"
    proc = _demo("--out", str(tmp_path / "demo"), "--influx", url, "--speed", "2000")
    assert proc.returncode == 1
    assert _one_line(proc) == f"remotecal: --influx {url}: cannot connect: Connection refused"


def test_the_pipeline_config_comment_states_the_criteria_it_uses(tmp_path: Path) -> None:
    k = 720.0
    text = pipeline_config_text(DemoPlan(out=tmp_path, speed=k), tmp_path / "store.db")
    comment = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#")
                       and not line.startswith("# Who"))
    cfg = tomllib.loads(text)
    t, rh = cfg["stability"], cfg["comparisons"][1]["stability"]
    for phrase in (f"a {t['window_s'] * k:g} s window", f"a {t['min_duration_s'] * k:g} s minimum",
                   f"{t['max_slope_per_min'] / k:g} K/min ({rh['max_slope_per_min'] / k:g} %rh/min)",
                   f"{t['max_std']:g} K ({rh['max_std']:g} %rh)",
                   f"{t['window_s']:.3g} s window", f"{t['max_slope_per_min']:.3g} K/min"):
        assert phrase in comment, (phrase, comment)
    assert "0.005" not in comment


# The backstop in remotecal.cli.main: an OSError a user can cause is one line; a bug is not hidden.

@pytest.fixture
def failing_demo(monkeypatch: pytest.MonkeyPatch) -> Any:
    import remotecal.demo.chain
    import remotecal.demo.live

    monkeypatch.setattr(remotecal.demo.live, "setup_logging", lambda level="info": None)

    def fail_with(exc: BaseException) -> None:
        async def run_demo(plan: Any, progress: Any = None) -> dict[str, Path]:
            raise exc

        monkeypatch.setattr(remotecal.demo.chain, "run_demo", run_demo)

    return fail_with


def test_a_user_caused_oserror_is_one_line(tmp_path: Path, failing_demo: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    failing_demo(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "demo" / "site.toml")))
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"remotecal: {tmp_path / 'demo' / 'site.toml'}: Permission denied"

    failing_demo(OSError(errno.EADDRINUSE, "error while attempting to bind on address ('127.0.0.1', 1883): "
                                           "address already in use"))
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "remotecal: error while attempting to bind on address ('127.0.0.1', 1883): address already in use")


@pytest.mark.parametrize("bug", [OSError(errno.EBADF, "Bad file descriptor"), OSError("no errno"),
                                 RuntimeError("a bug"), ZeroDivisionError("a bug")])
def test_a_bug_keeps_its_traceback(tmp_path: Path, failing_demo: Any, bug: BaseException) -> None:
    failing_demo(bug)
    with pytest.raises(type(bug)):
        main(["demo", "--out", str(tmp_path / "demo")])


@pytest.mark.parametrize("terminal", [False, True])
def test_the_live_display_keeps_log_lines_and_ends_with_a_newline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        terminal: bool) -> None:
    import io
    import logging

    from rich.console import Console

    import remotecal.demo.live as live

    async def chain(plan: DemoPlan, progress: Any = None) -> dict[str, Path]:
        progress.live.update("ref-t 25.000 degC")
        logging.getLogger("gateway.sources.modbus").warning("dut1: no answer from 127.0.0.1:5020")
        progress.live.update("ref-t 25.001 degC")
        return {"corrections.csv": plan.out / "corrections.csv"}

    monkeypatch.setattr(live.chain, "run_demo", chain)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=terminal, width=100)
    try:
        assert live.run_with_display(tmp_path / "demo", 360.0, None, console=console) == 0
    finally:
        logging.getLogger().handlers.clear()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", screen.getvalue())  # colours, cursor moves
    assert "WARNING gateway.sources.modbus: dut1: no answer from 127.0.0.1:5020\n" in text
    assert text.endswith("25.001 degC\n"), repr(text[-200:])  # stdout's "demo done" starts a line
    assert capsys.readouterr().out.startswith("demo done in ")


def test_the_live_display_shows_the_runs_state_machine() -> None:
    """The run engine's status as the demo shows it: state, step i of n and its name, the
    setpoints, the time in the step (wall and chamber time), the outcomes so far and each
    reference's stability."""
    from remotecal.demo.live import _run_lines

    status = {"state": "recording", "run": "DEMO-0001", "step": 2, "steps": 6, "step_name": "RH sweep 70 %rh",
              "setpoints": {"temperature": 25.0, "humidity": 70.0}, "step_elapsed_s": 2.5,
              "outcomes": ["stable", "stable"],
              "last_command": {"command": "start", "actor": "Demo Engineer", "accepted": True},
              "references": [{"channel": "refh-rh", "stable": True, "std": 0.12, "max_std": 0.3},
                             {"channel": "ref-t", "stable": False, "std": None, "max_std": 0.03}]}
    run, refs = _run_lines(status, 720.0)
    assert run.splitlines() == ["[b]run DEMO-0001[/b]  [b]RECORDING[/b]  step 3 of 6 (RH sweep 70 %rh)",
                                "setpoints 25 degC, 70 %rh",
                                "in step 2.5 s (30 min chamber time)",
                                "steps done 2: stable, stable",
                                "last command start by Demo Engineer, accepted"]
    assert refs.splitlines() == ["refh-rh: [green]stable[/green], std 0.12 (max 0.3)", "ref-t: settling"]
    run, refs = _run_lines({"state": "idle", "run": None, "step": None}, 720.0)
    assert run.splitlines() == ["[b]run -[/b]  [b]IDLE[/b]", "steps done 0"] and refs == ""


@pytest.mark.parametrize("speed", [0.5, 720.0, MAX_SPEED])
def test_the_demo_procedure_is_one_the_demo_site_runs(tmp_path: Path, speed: float) -> None:
    """At any allowed speed the procedure the institute sends is valid and the demo gateway can
    run it (references read there, every setpoint written by its controller, within range):
    the gateway would refuse it as a bad procedure otherwise.  Its steps: the humidity up and
    down at one temperature, then the safe setpoint."""
    from gateway.config import parse_config
    from gateway.procedure import parse_procedure, site_problems
    from remotecal.demo.configs import Control, gateway_config_text, procedure_text
    from remotecal.demo.plan import DEMO_FINAL, DEMO_TEMPERATURE

    plan = DemoPlan(out=tmp_path, speed=speed)
    procedure = parse_procedure(procedure_text(plan), "procedure.toml")
    control = Control(tmp_path / "institute.pub", tmp_path / "answer.key", 1883)
    site = parse_config(tomllib.loads(gateway_config_text(plan, 5020, 1883, tmp_path / "store.db", "5", control)))
    assert site_problems(procedure, site) == []
    steps = [(s.setpoints["temperature"], s.setpoints["humidity"], s.direction, s.final) for s in procedure.steps]
    assert steps == [(DEMO_TEMPERATURE, 30.0, "up", False), (DEMO_TEMPERATURE, 50.0, "up", False),
                     (DEMO_TEMPERATURE, 70.0, "up", False), (DEMO_TEMPERATURE, 50.0, "down", False),
                     (DEMO_TEMPERATURE, 30.0, "down", False), (*DEMO_FINAL, None, True)]
