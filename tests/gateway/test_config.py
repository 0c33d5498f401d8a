"""Config validation: the SPEC's example is accepted, and each mistake is named by key path."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from gateway.config import config_model, load_config, parse_config
from gateway.errors import ConfigError
from remotecal.cli import main

HERE = Path(__file__).parent
SPEC_EXAMPLE = (HERE / "spec_example.toml").read_text()


def _spec() -> dict[str, Any]:
    return tomllib.loads(SPEC_EXAMPLE)


def test_spec_example_is_accepted_as_is(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SPEC_EXAMPLE)
    cfg = load_config(path)
    assert cfg.gateway.site == "nmc-lab1" and cfg.gateway.id == "gw01"
    assert cfg.gateway.data_dir == (tmp_path / "var/gw01").resolve()
    t = cfg.sources.mqtt[0].topics[0]
    assert [f.channel for f in t.fields] == ["{1}-t", "{1}-rh"]
    assert cfg.sources.modbus[0].registers[0].type == "float32"
    assert cfg.sinks.influxdb[0].api == "v1"


def test_shipped_example_configs_are_valid() -> None:
    examples = sorted((HERE.parent.parent / "deploy" / "examples").glob("site*.toml"))
    assert examples, "deploy/examples/site*.toml is missing"
    for p in examples:
        load_config(p)


def _model_keys(model: type[BaseModel], table: str = "") -> set[tuple[str, str]]:
    """(table, key) of every key a config model takes; nested models are tables of their own."""
    keys: set[tuple[str, str]] = set()
    for name, info in model.model_fields.items():
        todo, nested = [info.annotation], None
        while todo:
            t = todo.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                nested = t
            todo += get_args(t)
        if nested is None:
            keys.add((table, name))
        else:
            keys |= _model_keys(nested, f"{table}.{name}".lstrip("."))
    return keys


def _example_keys(text: str) -> set[tuple[str, str]]:
    """(table, key) of every key written in a TOML file, commented out or not."""
    keys, table = set(), ""
    for raw in text.splitlines():
        line = raw.strip().lstrip("#").strip()
        if header := re.match(r"^\[\[?([\w.]+)\]\]?(\s|$)", line):
            table = header.group(1)
            continue
        for part in line.split(";"):
            if key := re.match(r"^\s*(\w+)\s*=", part):
                keys.add((table, key.group(1)))
    return keys


def test_site_example_shows_every_key_and_only_real_ones() -> None:
    """deploy/examples/site.toml says it has every key: the models' keys, each section's
    (commented out where optional), and no key the models would refuse."""
    shown = _example_keys((HERE.parent.parent / "deploy" / "examples" / "site.toml").read_text())
    known = _model_keys(config_model())
    assert sorted(known - shown) == [], "keys missing from the example"
    assert sorted(shown - known) == [], "keys in the example that no model takes"


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    parts = path.replace("]", "").replace("[", ".").split(".")
    node: Any = doc
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    last = parts[-1]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()

# (what is wrong, key to change, new value, the key path the error must name, words of the reason)
BROKEN = [
    ("unknown quantity", "sources.mqtt[0].topics[0].fields[1].quantity", "humidity",
     "sources.mqtt[0].topics[0].fields[1].quantity", "unknown quantity"),
    ("unit of another quantity", "sources.mqtt[0].topics[0].fields[0].unit", "%rh",
     "sources.mqtt[0].topics[0].fields[0].unit", "not a unit of temperature"),
    ("bad role", "sources.modbus[0].registers[0].role", "standard",
     "sources.modbus[0].registers[0].role", "'reference', 'dut' or 'chamber'"),
    ("typo in a key", "gateway.dat_dir", "x", "gateway.dat_dir", "unknown key"),
    ("missing site", "gateway.site", _DELETE, "gateway.site", "required key is missing"),
    ("bad duration", "sources.modbus[0].interval", "fast", "sources.modbus[0].interval",
     "expected a duration"),
    ("bad register type", "sources.modbus[0].registers[0].type", "float16",
     "sources.modbus[0].registers[0].type", "float32"),
    ("bad byte order", "sources.modbus[0].registers[0].byte_order", "ABDC",
     "sources.modbus[0].registers[0].byte_order", "CDAB"),
    ("placeholder beyond the wildcards", "sources.mqtt[0].topics[0].fields[0].channel", "{2}-t",
     "sources.mqtt[0].topics[0]", "uses {2}"),
    ("bad topic filter", "sources.mqtt[0].topics[0].topic", "lab/#/state",
     "sources.mqtt[0].topics[0].topic", "'#' must be a whole level and the last one"),
    ("bad broker URL", "sources.mqtt[0].url", "http://127.0.0.1:1883", "sources.mqtt[0].url",
     "mqtt://"),
    ("qos 2", "sources.mqtt[0].qos", 2, "sources.mqtt[0].qos", "1"),
    ("bad influx api", "sinks.influxdb[0].api", "v3", "sinks.influxdb[0].api", "v1"),
    ("address out of range", "sources.modbus[0].registers[0].address", 70000,
     "sources.modbus[0].registers[0].address", "65535"),
    ("rtu without a device", "sources.modbus[0].url", "rtu://", "sources.modbus[0].url",
     "serial device"),
    ("secret from an unset variable", "sources.mqtt[0].password", "env:REMOTECAL_TEST_UNSET",
     "sources.mqtt[0].password", "REMOTECAL_TEST_UNSET is not set"),
    ("no sink", "sinks.influxdb", [], "(top level)",
     "no sink configured: add [[sinks.influxdb]], [[sinks.mqtt]] or [[sinks.local]]"),
    ("a field's channel twice in one topic", "sources.mqtt[0].topics[0].fields[1].channel", "{1}-t",
     "sources.mqtt[0].topics[0]", "fields[1].channel '{1}-t' is used twice"),
    ("a channel read by two sources", "sources.mqtt[0].topics[0].fields[1].channel", "ref-t",
     "(top level)", "sources.modbus[0].registers[0].channel 'ref-t' is already read by "
     "sources.mqtt[0].topics[0].fields[1]: two devices would write one channel"),
]


@pytest.mark.parametrize(("case", "key", "value", "where", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_problem_names_its_key_and_reason(case: str, key: str, value: Any, where: str,
                                               reason: str) -> None:
    doc = _spec()
    _set(doc, key, value)
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    lines = info.value.problems
    assert any(line.startswith(where + ":") and reason in line for line in lines), lines


def test_every_problem_is_reported_at_once() -> None:
    doc = _spec()
    _set(doc, "sources.mqtt[0].topics[0].fields[1].quantity", "humidity")
    _set(doc, "sources.modbus[0].registers[0].type", "float16")
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert len(info.value.problems) == 2


def test_check_cli_exit_codes_and_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(SPEC_EXAMPLE)
    assert main(["gateway", "check", "-c", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC_EXAMPLE.replace('quantity = "relative_humidity"', 'quantity = "humidity"'))
    assert main(["gateway", "check", "-c", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{bad}: sources.mqtt[0].topics[0].fields[1].quantity: unknown quantity 'humidity'; "
                   "expected one of absolute_humidity, current, dew_point, frost_point, mixing_ratio, "
                   "pressure, relative_humidity, resistance, state, temperature, voltage"]


@pytest.mark.parametrize(("content", "reason"), [
    (None, "cannot read the config file"),
    ("[gateway\nsite=1", "not valid TOML"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_unreadable_files_give_one_line_no_traceback(tmp_path: Path, content: str | bytes | None,
                                                     reason: str) -> None:
    path = tmp_path / "site.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "remotecal", "gateway", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and reason in proc.stderr


def test_secrets_come_from_env_or_file_and_never_print(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTECAL_TEST_PW", "hunter2")
    (tmp_path / "token").write_text("s3cr3t-token\n")
    doc = _spec()
    doc["sources"]["mqtt"][0]["username"] = "gw"
    doc["sources"]["mqtt"][0]["password"] = "env:REMOTECAL_TEST_PW"
    doc["sinks"]["influxdb"][0]["token"] = f"file:{tmp_path / 'token'}"
    cfg = parse_config(doc)
    assert cfg.sources.mqtt[0].password is not None and cfg.sources.mqtt[0].password.get() == "hunter2"
    token = cfg.sinks.influxdb[0].token
    assert token is not None and token.get() == "s3cr3t-token"
    dumped = repr(cfg) + str(cfg.model_dump()) + cfg.model_dump_json()
    assert "hunter2" not in dumped and "s3cr3t-token" not in dumped


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "site.toml"
    path.write_text(SPEC_EXAMPLE + '\n[[sinks.local]]\npath = "store/readings.db"\n')
    cfg = load_config(path)
    assert cfg.gateway.data_dir == (tmp_path / "etc" / "var" / "gw01").resolve()
    assert cfg.sinks.local[0].path == (tmp_path / "etc" / "store" / "readings.db").resolve()
