"""A sink's journal cursor is keyed on the sink's identity, never on its place in the config.

Before, an unnamed sink was `{kind}-{n}` by its position: removing the first of two unnamed
InfluxDB sinks handed its cursor to the second, which then skipped every record the first
had delivered and it had not - silent loss from an ordinary config edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig, parse_config
from gateway.errors import ConfigError
from gateway.journal import Journal
from gateway.reading import Reading

A = {"url": "http://127.0.0.1:8086", "database": "calibration"}
B = {"url": "http://127.0.0.1:8087", "database": "calibration"}


def _config(influxdb: list[dict[str, Any]], **sinks: list[dict[str, Any]]) -> GatewayConfig:
    return parse_config({
        "gateway": {"site": "s", "id": "g", "run": "R", "data_dir": "/tmp/unused"},
        "sources": {"modbus": [{"name": "m", "url": "tcp://127.0.0.1:5020",
                                "registers": [{"channel": "t", "address": 0, "quantity": "temperature",
                                               "unit": "degC", "role": "dut"}]}]},
        "sinks": {"influxdb": influxdb, **sinks},
    })


def _r(i: int) -> Reading:
    return Reading("s", "g", "R", "t", "temperature", "degC", "dut", float(i), 1_000 + i)


def test_an_unnamed_sink_keeps_its_identity_when_another_is_removed() -> None:
    both, only_b = _config([A, B]), _config([B])
    assert both.sink_names()[1] == only_b.sink_names()[0]
    assert both.sink_names()[0] != only_b.sink_names()[0]


async def test_removing_the_first_unnamed_sink_loses_nothing_for_the_second(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    both = _config([A, B])
    a, b = both.sink_names()
    async with Journal(path, both.sink_names()) as j:
        await j.append([_r(i) for i in range(10)])
        batch = await j.next_batch(a, 100)  # A delivered everything, B nothing yet (its server is down)
        assert batch is not None
        await j.commit_delivery(a, batch.last_seq, len(batch))
        assert j.pending_for(b) == 10
    # The operator removes A from the config: B must still get all ten records.
    only_b = _config([B])
    async with Journal(path, only_b.sink_names()) as j:
        (name,) = only_b.sink_names()
        batch = await j.next_batch(name, 100)
        assert batch is not None and [r.value for r in batch.records] == [float(i) for i in range(10)]


def test_the_identity_is_the_name_when_there_is_one_else_what_the_sink_writes_to(tmp_path: Path) -> None:
    cfg = _config([{**A, "name": "main"}, B, {"url": "http://h:8086", "api": "v2", "org": "o", "bucket": "b",
                                             "token": "t"}],
                  local=[{"path": str(tmp_path / "store.db")}])
    assert cfg.sink_names() == ["main", "influxdb:http://127.0.0.1:8087 db=calibration",
                                "influxdb:http://h:8086 org=o bucket=b", f"local:{tmp_path / 'store.db'}"]


def test_two_sinks_with_one_identity_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        _config([A, A])
    assert err.value.problems == [
        "sinks.influxdb[1]: writes where sinks.influxdb[0] writes (influxdb:http://127.0.0.1:8086 db=calibration): "
        "two sinks would share one delivery cursor; remove one, or give each a name"]
    with pytest.raises(ConfigError) as err:
        _config([{**A, "name": "x"}], local=[{"path": "/tmp/s.db", "name": "x"}])
    assert err.value.problems == ["sinks.local[0].name: 'x' is already the name of sinks.influxdb[0]"]


def test_a_new_uplink_sequence_file_starts_above_the_old_ones(tmp_path: Path) -> None:
    # An unnamed uplink's sequence file was uplink-mqtt-1.seq (by position); it is named after the
    # sink's identity now.  Its numbers must not go back: the ingest would refuse them as replays.
    from gateway.sinks.mqtt.sink import SequenceCounter

    (tmp_path / "uplink-mqtt-1.seq").write_text("5120\n")
    (tmp_path / "uplink-other.seq").write_text("not a number\n")
    counter = SequenceCounter(tmp_path / "uplink-auto-0123456789ab.seq", sorted(tmp_path.glob("uplink-*.seq")))
    assert counter.next() == 5121
    assert SequenceCounter(tmp_path / "uplink-auto-0123456789ab.seq").next() > 5121  # its own file now
    assert SequenceCounter(tmp_path / "fresh.seq").next() == 1
