"""CENTRAL.toml (read as the site config it stands for, `load_ingest_config`): the sample is
valid, paths are relative to the file, mistakes name their CENTRAL.toml key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.ingest.config import load_ingest_config

SAMPLE = Path(__file__).parents[3] / "gateway" / "ingest" / "sample.toml"


def test_the_sample_is_valid(tmp_path: Path) -> None:
    # Its broker password is a file the deploy guide writes; here, a stand-in.
    pw = tmp_path / "ingest-broker.pw"
    pw.write_text("x")
    text = SAMPLE.read_text()
    assert "/etc/remotecal/ingest-broker.pw" in text
    copy = tmp_path / "central.toml"
    copy.write_text(text.replace("/etc/remotecal/ingest-broker.pw", str(pw)))
    cfg = load_ingest_config(copy)
    (uplink,) = cfg.sources.blocks("uplink")
    assert uplink.worker == "w1" and cfg.sink_names() == ["influx"]
    assert uplink.password is not None and uplink.password.get() == "x"


def test_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    p = tmp_path / "central.toml"
    p.write_text('[ingest]\nworker = "w1"\ndata_dir = "d"\nkeys = "k"\n[broker]\nurl = "mqtt://h"\n'
                 '[[sinks.influxdb]]\nurl = "http://h:8086"\ndatabase = "db"\n')
    cfg = load_ingest_config(p)
    (uplink,) = cfg.sources.blocks("uplink")
    assert (cfg.gateway.data_dir, uplink.keys) == (tmp_path / "d", tmp_path / "k")
    assert uplink.port == 1883 and uplink.group == "remotecal-ingest"


@pytest.mark.parametrize("text,problem", [
    ('[ingest]\nworker = "a/b"\ndata_dir = "d"\nkeys = "k"\n[broker]\nurl = "mqtt://h"\n'
     '[[sinks.influxdb]]\nurl = "http://h"\ndatabase = "db"\n', "ingest.worker: must be one topic level"),
    ('[ingest]\nworker = "w"\ndata_dir = "d"\nkeys = "k"\n[broker]\nurl = "http://h"\n'
     '[[sinks.influxdb]]\nurl = "http://h"\ndatabase = "db"\n', "broker.url: expected mqtt://"),
    ('[ingest]\nworker = "w"\ndata_dir = "d"\nkeys = "k"\n[broker]\nurl = "mqtt://h"\n',
     "sinks: required key is missing"),
    ('[ingest]\nworker = "w"\ndata_dir = "d"\n[broker]\nurl = "mqtt://h"\nsession = 1\n'
     '[[sinks.influxdb]]\nurl = "http://h"\ndatabase = "db"\n', "broker.session: unknown key"),
])
def test_mistakes_name_their_key(tmp_path: Path, text: str, problem: str) -> None:
    p = tmp_path / "central.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_ingest_config(p)
    assert any(line.startswith(problem) for line in err.value.problems), err.value.problems
