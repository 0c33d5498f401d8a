"""Sources and sinks register themselves (gateway.registry): validation, `gateway check`, the
runtime and the README's reference loop over the registry, so a new protocol is a folder
and one line.  Here a trivial kind from one file (counter_source.py) goes through all of them."""

from __future__ import annotations

import asyncio
import contextlib
import re
import tomllib
from pathlib import Path

import pytest

from gateway import registry
from gateway.config import config_model, load_config, parse_config
from gateway.errors import RemotecalError
from gateway.plugin import ControllerKind, SinkKind, SourceKind
from gateway.runtime import Gateway
from gateway.sinks.local.store import read_run
from remotecal.cli import main
from tests.gateway import counter_source
from tests.gateway.counter_source import counter_site
from tests.gateway.test_config import _example_keys, _model_keys

ROOT = Path(__file__).resolve().parents[2]


def test_a_new_source_kind_goes_through_check_and_the_runtime(
        counter: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = counter_site(tmp_path)
    assert main(["gateway", "check", "-c", str(site)]) == 0
    assert "0 MQTT, 0 Modbus, 0 instrument, 0 uplink and 1 counter source(s)" in capsys.readouterr().out

    (tmp_path / "bad").mkdir()
    bad = counter_site(tmp_path / "bad", interval="soon")
    assert main(["gateway", "check", "-c", str(bad)]) == 2
    assert "sources.counter[0].interval: " in capsys.readouterr().err

    async def run() -> int:
        gateway = Gateway(load_config(site))
        task = asyncio.create_task(gateway.run())
        try:
            async with asyncio.timeout(30):
                while len(_ticks(tmp_path / "store.db")) < 5:
                    await asyncio.sleep(0.05)
        finally:
            gateway.request_stop()
            await task
        return len(_ticks(tmp_path / "store.db"))

    assert asyncio.run(run()) >= 5


def _ticks(store: Path) -> list[float]:
    with contextlib.suppress(RemotecalError):  # not written yet
        data = read_run(store, "R")
        if "ticks" in data:
            return list(data["ticks"].values)
    return []


def test_an_unregistered_kind_is_an_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "check", "-c", str(counter_site(tmp_path))]) == 2
    assert capsys.readouterr().err.splitlines() == [f"{tmp_path / 'site.toml'}: sources.counter: unknown key (a typo?)"]


@pytest.mark.parametrize("kind", [*registry.SOURCES.values(), *registry.SINKS.values(),
                                  *registry.CONTROLLERS.values()],
                         ids=lambda k: f"{type(k).__name__}-{k.name}")
def test_each_kind_has_its_sample_and_its_reference_in_the_readme(
        kind: SourceKind | SinkKind | ControllerKind, monkeypatch: pytest.MonkeyPatch) -> None:
    table = ("sources" if isinstance(kind, SourceKind) else
             "controllers" if isinstance(kind, ControllerKind) else "sinks")
    assert kind.sample.parent.parent.name == table, \
        "a kind is one folder: gateway/{sources,sinks,controllers}/<kind>/"
    text = kind.sample.read_text()
    for variable in re.findall(r'"env:(\w+)"', text):
        monkeypatch.setenv(variable, "secret")
    blocks = tomllib.loads(text)[table][kind.name]
    assert blocks, f"{kind.sample}: no [[{table}.{kind.name}]]"
    for block in blocks:
        kind.config.model_validate(block)
    shown = {(t.removeprefix(f"{table}.{kind.name}").lstrip("."), k) for t, k in _example_keys(text)
             if t == f"{table}.{kind.name}" or t.startswith(f"{table}.{kind.name}.")}
    assert sorted(_model_keys(kind.config) - shown) == [], f"{kind.sample} does not show these keys"
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"^### `\[\[{table}\.{kind.name}\]\]`", readme, re.M), f"README.md has no [[{table}.{kind.name}]]"


def test_the_config_model_follows_the_registry(counter: None) -> None:
    assert "counter" in config_model().model_fields["sources"].annotation.model_fields  # type: ignore[union-attr]
    cfg = parse_config({"gateway": {"site": "s", "id": "g", "run": "R", "data_dir": "/tmp/x"},
                        "sources": {"counter": [{"name": "a", "channel": "c"}]},
                        "sinks": {"local": [{"path": "/tmp/x/s.db"}]}})
    assert cfg.sources.blocks("counter")[0].channel == "c"
    registry.unregister(counter_source.KIND)
    assert "counter" not in config_model().model_fields["sources"].annotation.model_fields  # type: ignore[union-attr]
    registry.register(counter_source.KIND)
