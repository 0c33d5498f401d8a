"""A remote run's points (`Point`: run_event, run_window) go through the journal to every sink
kind: the line protocol, the uplink frame (and back), the local store - with their fields'
types intact."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gateway.journal import Journal
from gateway.reading import HealthSample, Point, Reading
from gateway.sinks.influxdb.lineprotocol import LineEncoder
from gateway.sinks.local.store import LocalStoreConfig, LocalStoreSink
from gateway.sinks.mqtt.frame import POINTS_VERSION, VERSION, decode_frame, encode_frame, frame_header

EVENT = Point("run_event", "lab1", "gw01", "RC-7", 1_800_000_000_000_000_000,
              {"state": "settling", "step": 2, "setpoint_temperature": 25.0, "reason": "a b\"c",
               "actor": "alice@nmc", "accepted": True})
WINDOW = Point("run_window", "lab1", "gw01", "RC-7", 1_800_000_000_500_000_000,
               {"step": 2, "start": 1_800_000_000_000_000_000, "end": 1_800_000_000_500_000_000,
                "mean": 25.01}, (("channel", "ref-t"),))
READING = Reading("lab1", "gw01", "RC-7", "ref-t", "temperature", "degC", "reference", 25.0,
                  1_800_000_000_000_000_000)


def test_line_protocol_types() -> None:
    lines = LineEncoder().encode_batch([EVENT, WINDOW]).decode().splitlines()
    assert lines[0] == ('run_event,gateway=gw01,run=RC-7,site=lab1 accepted=true,actor="alice@nmc",'
                        'reason="a b\\"c",setpoint_temperature=25.0,state="settling",step=2i '
                        '1800000000000000000')
    assert lines[1].startswith("run_window,channel=ref-t,gateway=gw01,run=RC-7,site=lab1 end=")


def test_frame_round_trip_and_version() -> None:
    plain = encode_frame(1, 5, "lab1", "gw01", [READING])
    assert frame_header(plain)[0] == 1 and plain[4] == VERSION
    body = encode_frame(2, 5, "lab1", "gw01", [READING, EVENT, WINDOW, HealthSample("lab1", "gw01", 9, {"x": 1})])
    assert body[4] == POINTS_VERSION
    frame = decode_frame(body)
    assert sorted(map(repr, frame.records)) == sorted(map(repr, [READING, EVENT, WINDOW,
                                                                 HealthSample("lab1", "gw01", 9, {"x": 1})]))
    back = next(r for r in frame.records if isinstance(r, Point) and r.measurement == "run_event")
    assert back.fields == EVENT.fields and type(back.fields["step"]) is int
    assert type(back.fields["accepted"]) is bool


async def test_journal_keeps_points(tmp_path: Path) -> None:
    async with Journal(tmp_path / "journal.db", ["s"]) as j:
        await j.append([READING, EVENT, WINDOW])
        batch = await j.next_batch("s", 10)
        assert batch is not None and list(batch.records) == [READING, EVENT, WINDOW]
        sent = decode_frame(encode_frame(1, 1, "lab1", "gw01", batch.records)).records
        assert sorted(map(repr, sent)) == sorted(map(repr, [READING, EVENT, WINDOW]))
        assert LineEncoder().encode_batch(batch.records) == LineEncoder().encode_batch([READING, EVENT, WINDOW])


def test_a_point_cannot_pose_as_a_reading() -> None:
    from gateway.journal.series import SeriesTable

    assert SeriesTable.point_key(EVENT)[0] == "run_event"


async def test_journal_refuses_a_point_named_reading(tmp_path: Path) -> None:
    async with Journal(tmp_path / "journal.db", ["s"]) as j:
        bad = Point("reading", "lab1", "gw01", "RC-7", 1, {"value": 1.0})
        await j.append([bad])
        assert await j.next_batch("s", 10) is None
    total, rows = Journal.read_quarantine(tmp_path / "journal.db")
    assert total == 1 and "cannot be of measurement 'reading'" in rows[0].reason


async def test_local_store_keeps_points(tmp_path: Path) -> None:
    sink = LocalStoreSink(LocalStoreConfig(path=tmp_path / "store.db"))
    await sink.write([EVENT, WINDOW, EVENT])  # a re-sent point replaces itself
    await sink.aclose()
    db = sqlite3.connect(tmp_path / "store.db")
    rows = db.execute("SELECT measurement, tags, fields FROM point ORDER BY measurement").fetchall()
    assert [r[0] for r in rows] == ["run_event", "run_window"]
    assert json.loads(rows[1][1]) == {"channel": "ref-t"} and json.loads(rows[0][2])["step"] == 2


@pytest.mark.parametrize("value", [float("nan")])
def test_a_point_line_protocol_cannot_write_is_refused(value: float) -> None:
    with pytest.raises(ValueError):
        LineEncoder().encode(Point("run_event", "a", "b", "c", 1, {"x": value}))
