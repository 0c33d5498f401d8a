"""`remotecal keys new` and key loading."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.keys import load_key_file, load_keys, new_key_file


def test_new_key_is_random_private_and_loads(tmp_path: Path) -> None:
    a = new_key_file("lab 1", 'gw,"01"', tmp_path)
    b = new_key_file("lab 1", "gw02", tmp_path)
    assert stat.S_IMODE(a.stat().st_mode) == 0o600
    ka, kb = load_key_file(a), load_key_file(b)
    assert (ka.site, ka.gateway, len(ka.secret)) == ("lab 1", 'gw,"01"', 32)
    assert ka.secret != kb.secret
    assert ka.secret.hex() not in repr(ka)
    assert set(load_keys(tmp_path)) == {("lab 1", 'gw,"01"'), ("lab 1", "gw02")}


def test_never_overwrites_a_key(tmp_path: Path) -> None:
    p = new_key_file("s", "g", tmp_path)
    before = p.read_bytes()
    with pytest.raises(ConfigError, match="already there"):
        new_key_file("s", "g", tmp_path)
    assert p.read_bytes() == before


@pytest.mark.parametrize("text,msg", [
    ('site = "s"\ngateway = "g"\nkey = "abcd"\n', "2 bytes, expected 32"),
    ('site = "s"\ngateway = "g"\nkey = "zz"\n', "not hexadecimal"),
    ('site = "s"\nkey = "00"\n', "needs site, gateway and key"),
    ("site = ", "not a key file"),
])
def test_bad_key_files_name_the_file(tmp_path: Path, text: str, msg: str) -> None:
    p = tmp_path / "x.key"
    p.write_text(text)
    with pytest.raises(ConfigError, match=msg) as err:
        load_key_file(p)
    assert str(p) in str(err.value)


def test_two_keys_for_one_gateway_are_refused(tmp_path: Path) -> None:
    p = new_key_file("s", "g", tmp_path / "a")
    (tmp_path / "a" / "copy.key").write_bytes(p.read_bytes())
    with pytest.raises(ConfigError, match="a second key for s/g"):
        load_keys(tmp_path / "a")


def test_cli_keys_new(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "remotecal", "keys", "new", "--site", "lab 1", "--gateway", "gw,01",
                           "--out", str(tmp_path / "keys")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "keys").glob("*.key")
    assert path.name == "lab%201+gw%2C01.key"
    assert load_key_file(path).gateway == "gw,01"


def test_cli_keys_new_over_an_existing_key_is_one_line_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from remotecal.cli import main

    argv = ["keys", "new", "--site", "s", "--gateway", "g", "--out", str(tmp_path)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    path = tmp_path / "s+g.key"
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: a key file is already there; remove it first to replace it"]
