"""`gateway check` proves what `gateway run` would refuse at its start - a data_dir that cannot be
created or written, key and TLS files that cannot be read, an uplink key of another gateway,
a PEM that is not one - and `gateway run` refuses each with the same line and exit 2 (the
systemd unit does not restart on 2), never a bare errno text or a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.keys import new_key_file
from remotecal.cli import main
from tests.gateway.harness import config_text

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not


def _site(tmp: Path, data_dir: Path | str, *, key: Path | None = None, tls: dict[str, str] | None = None) -> Path:
    sink: dict[str, Any] = {"url": "mqtt://127.0.0.1:1", "key_file": str(key or tmp / "keys" / "s+g.key")}
    if tls is not None:
        sink["tls"] = tls
    path = tmp / "site.toml"
    path.write_text(config_text({
        "gateway": {"site": "s", "id": "g", "run": "R", "data_dir": str(data_dir)},
        "sources": {"mqtt": [{"name": "b", "url": "mqtt://127.0.0.1:1", "topics": [
            {"topic": "t/#", "format": "value", "fields": [
                {"channel": "c", "quantity": "temperature", "unit": "degC", "role": "dut"}]}]}]},
        "sinks": {"mqtt": [sink]},
    }))
    return path


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    new_key_file("s", "g", tmp_path / "keys")
    new_key_file("s", "other", tmp_path / "other-keys")
    return tmp_path


def _run(site: Path, *prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "remotecal", "gateway", "run", "-c", str(site)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def _check(site: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["gateway", "check", "-c", str(site)])
    return code, capsys.readouterr().err.splitlines()


def test_a_good_config_checks_and_leaves_nothing_behind(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = _site(keys, keys / "var" / "data")
    before = sorted(p.relative_to(keys) for p in keys.rglob("*"))
    assert _check(site, capsys)[0] == 0
    assert sorted(p.relative_to(keys) for p in keys.rglob("*")) == before, "no probe, no data_dir made"


@pytest.mark.parametrize("case", ["data_dir under a file", "missing key file", "key of another gateway",
                                  "missing TLS file", "a CA file that is no PEM"])
def test_check_and_run_refuse_the_same_with_exit_2(case: str, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (keys / "afile").write_text("x")
    (keys / "bad.pem").write_text("not a certificate\n")
    site, expected = {
        "data_dir under a file": lambda: (
            _site(keys, keys / "afile" / "data"),
            f"gateway.data_dir: {keys / 'afile' / 'data'} cannot be created: {keys / 'afile'} is a file, not a folder"),
        "missing key file": lambda: (
            _site(keys, keys / "data", key=keys / "keys" / "nope.key"),
            f"sinks.mqtt[0].key_file: cannot read {keys / 'keys' / 'nope.key'}: no such file or directory"),
        "key of another gateway": lambda: (
            _site(keys, keys / "data", key=keys / "other-keys" / "s+other.key"),
            f"sinks.mqtt.key_file: {keys / 'other-keys' / 's+other.key'} is the key of s/other, "
            "not of this gateway s/g"),
        "missing TLS file": lambda: (
            _site(keys, keys / "data", tls={"ca_file": str(keys / "ca.pem")}),
            f"sinks.mqtt[0].tls.ca_file: cannot read {keys / 'ca.pem'}: no such file or directory"),
        "a CA file that is no PEM": lambda: (
            _site(keys, keys / "data", tls={"ca_file": str(keys / "bad.pem")}),
            "TLS: "),
    }[case]()
    code, lines = _check(site, capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(f"{site}: {expected}"), lines
    run = _run(site)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if " INFO " not in line] == lines


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is its owner's only)."""
    path = Path(tempfile.mkdtemp(prefix="remotecal-preflight-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_data_dir_of_another_user_is_named_with_the_fix(shared_tmp: Path) -> None:
    """The classic: the gateway was run once by hand as root, then the service (its own user)
    cannot open the journal.  Run as `nobody` here (as root), or as this user on root's files."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to make files another user cannot write")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    new_key_file("s", "g", shared_tmp / "keys")
    (shared_tmp / "keys" / "s+g.key").chmod(0o644)
    data = shared_tmp / "data"
    data.mkdir()
    data.chmod(0o755)
    (data / "journal.db").write_bytes(b"")
    (data / "journal.db").chmod(0o600)
    site = _site(shared_tmp, data)
    site.chmod(0o644)
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    probe = subprocess.run([*nobody, sys.executable, "-c", "import remotecal"], capture_output=True, text=True)
    if probe.returncode != 0:  # e.g. a checkout in a mktemp -d folder (mode 0700)
        pytest.skip(f"user 65534 cannot import remotecal from this checkout: {probe.stderr.strip()[-200:]}")
    user = subprocess.run([*nobody, "id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    check = subprocess.run([*nobody, sys.executable, "-m", "remotecal", "gateway", "check", "-c", str(site)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 2, check.stderr
    assert check.stderr.splitlines() == [
        f"{site}: gateway.data_dir: cannot write in {data}: permission denied for user {user}; "
        "data belongs to root, mode 0755",
        f"{site}: gateway.data_dir: journal.db in {data} cannot be read and written by user {user}; "
        f"journal.db belongs to root, mode 0600 - was the gateway run as another user? Give the data_dir "
        f"to this one: chown -R {user} {data}"]
    run = _run(site, *nobody)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if " INFO " not in line] == check.stderr.splitlines()


def test_tls_files_are_relative_to_the_config_file_like_every_other_path(
        keys: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Under systemd the working directory is /var/lib/remotecal: `ca_file = "ca.pem"` beside the
    config was looked for there (and `gateway check` from the config's folder said ok)."""
    from gateway.config import load_config

    site = _site(keys, keys / "data", tls={"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "/abs/c.key"})
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    tls = load_config(site).sinks.blocks("mqtt")[0].tls
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (str(keys / "ca.pem"), str(keys / "client.pem"), "/abs/c.key")
    assert _check(site, capsys)[1][0] == (
        f"{site}: sinks.mqtt[0].tls.ca_file: cannot read {keys / 'ca.pem'}: no such file or directory")
