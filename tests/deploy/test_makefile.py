"""The Makefile's install steps: what a fresh Debian/Ubuntu machine needs before `make test`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize("has_ensurepip", [True, False])
def test_python3_venv_is_installed_only_when_venv_cannot_bootstrap_pip(tmp_path: Path,
                                                                     has_ensurepip: bool) -> None:
    # Debian's python3 without python3-venv: `import ensurepip` fails, `python3 -m venv` too.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    _fake(bin_dir, "apt-get", f'echo "$@" >> {calls}')
    _fake(bin_dir, "sudo", '"$@"')
    python = sys.executable if has_ensurepip else str(bin_dir / "python3")
    if not has_ensurepip:
        _fake(bin_dir, "python3", 'echo "No module named ensurepip" >&2; exit 1')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "python-venv", f"PYTHON={python}"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    if has_ensurepip:
        assert not calls.exists()
    else:
        lines = calls.read_text().splitlines()
        assert lines[0] == "update -qq"
        assert lines[1].split()[:2] == ["install", "-y"] and lines[1].split()[-1] == "python3-venv"
        assert "installing python3-venv" in proc.stdout


def test_the_venv_is_made_after_python3_venv_is_there() -> None:
    proc = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), ".venv/.installed"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.index("import ensurepip") < out.index("-m venv .venv")
