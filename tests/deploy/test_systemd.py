"""The systemd units in deploy/systemd, checked by systemd itself.

`systemd-analyze verify` loads each unit as systemd would (unknown keys, bad values, a
missing executable are errors) and `systemd-analyze security --offline=true` scores its
sandbox.  verify insists that ExecStart's program exists, and /opt/remotecal is not
installed here, so the unit under test is a copy whose program path points at a stand-in
script; nothing else is changed.  Without systemd-analyze the units are still parsed with
configparser and their hardening keys checked.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED_PROGRAM = "/opt/remotecal/bin/remotecal"
MAX_EXPOSURE = 2.0  # systemd's scale: 0 (locked down) .. 10 (unprotected); < 2 is "OK"

CASES = {  # unit: (command, state directory under /var/lib, Restart)
    "remotecal-gateway@.service": ("gateway run -c /etc/remotecal/%i.toml", "remotecal", "on-failure"),
    "remotecal-ingest@.service": ("ingest -c /etc/remotecal/%i.toml", "remotecal-ingest", "always"),
}

HARDENING = {
    "User": "remotecal",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "RestartPreventExitStatus": "2",
}

NOTIFY = {  # the program says READY=1 / STOPPING=1 and pings the watchdog (gateway.sdnotify)
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "30s",
}

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _parse(path: Path) -> configparser.ConfigParser:
    # systemd allows repeated keys (SystemCallFilter=...); configparser's strict mode does not.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def _instance_copy(unit: str, tmp_path: Path) -> Path:
    """The unit as instance `lab1`, its program replaced by an executable stand-in."""
    program = tmp_path / "remotecal"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    text = (UNITS / unit).read_text()
    assert INSTALLED_PROGRAM in text
    copy = tmp_path / unit.replace("@.", "@lab1.")
    copy.write_text(text.replace(INSTALLED_PROGRAM, str(program)))
    return copy


@pytest.mark.parametrize("unit", sorted(CASES))
def test_unit_runs_the_right_command_hardened(unit: str) -> None:
    service = _parse(UNITS / unit)["Service"]
    command, state, restart = CASES[unit]
    assert service["ExecStart"] == f"{INSTALLED_PROGRAM} {command}"
    assert service["StateDirectory"] == state
    assert service["Restart"] == restart
    assert service["ReadWritePaths"] == f"/var/lib/{state}"
    for key, value in {**HARDENING, **NOTIFY}.items():
        assert service.get(key) == value, key
    assert _parse(UNITS / unit)["Install"]["WantedBy"] == "multi-user.target"


@needs_systemd_analyze
@pytest.mark.parametrize("unit", sorted(CASES))
def test_systemd_analyze_verify_accepts_the_unit(unit: str, tmp_path: Path) -> None:
    copy = _instance_copy(unit, tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("unit", sorted(CASES))
def test_sandbox_exposure_is_low(unit: str, tmp_path: Path) -> None:
    copy = _instance_copy(unit, tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True, text=True, timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout


def test_serial_drop_in_of_the_unit_comment_matches_the_deploy_guide() -> None:
    """The gateway unit's comment and deploy/README.md (step 3) give the same drop-in."""
    guide = (UNITS.parent / "README.md").read_text()
    block = re.search(r"\*\*Serial instruments\*\*.*?```ini\n(.*?)```", guide, re.S)
    assert block, "deploy/README.md: no ```ini drop-in under **Serial instruments**"
    settings = [line.strip() for line in block.group(1).splitlines() if "=" in line]
    comment = " ".join(line for line in (UNITS / "remotecal-gateway@.service").read_text().splitlines()
                       if line.startswith("#"))
    assert settings and [s for s in settings if f"`{s}`" not in comment] == []
