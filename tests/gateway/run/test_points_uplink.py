"""A remote run's points reach the institute: a gateway journal batch with run_event and
run_window points goes out in a signed uplink frame, and the central ingest takes it whole -
the points in its journal with their tags and typed fields, as line protocol for InfluxDB."""

from __future__ import annotations

from pathlib import Path

from gateway.journal import Journal
from gateway.keys import load_key_file, new_key_file
from gateway.mqtt.message import Message
from gateway.reading import Point, Reading
from gateway.sinks.influxdb.lineprotocol import LineEncoder
from gateway.sinks.mqtt.frame import encode_frame, readings_topic, sign
from tests.gateway.uplink.harness import pumping, until

SITE, GW = "lab 1", "gw,01"


async def test_run_points_go_through_the_uplink_to_the_ingest(tmp_path: Path) -> None:
    records = [
        Reading(SITE, GW, "RC-1", "ref-t", "temperature", "degC", "reference", 25.0, 10**18),
        Point("run_event", SITE, GW, "RC-1", 10**18 + 1,
              {"state": "recording", "step": 1, "setpoint_temperature": 25.0, "reason": "stable on ref-t",
               "actor": "gateway"}),
        Point("run_window", SITE, GW, "RC-1", 10**18 + 2,
              {"step": 1, "start": 10**18 - 10**9, "end": 10**18 + 2, "n": 11, "mean": 25.001},
              (("channel", "ref-t"),)),
        Point("run_event", SITE, GW, "RC-1", 10**18 + 3, {"command": "abort", "accepted": True, "local": True,
                                                          "actor": "carol (local)", "reason": ""}),
    ]
    async with Journal(tmp_path / "gw.db", ["uplink"]) as gw:  # as the gateway's uplink sink sends them
        await gw.append(records)
        batch = await gw.next_batch("uplink", 100)
    assert batch is not None
    secret = load_key_file(new_key_file(SITE, GW, tmp_path / "keys")).secret
    (tmp_path / "central.toml").write_text(
        '[ingest]\nworker = "w"\ndata_dir = "data"\nkeys = "keys"\n[broker]\nurl = "mqtt://127.0.0.1:1"\n'
        '[[sinks.influxdb]]\nname = "influx"\nurl = "http://127.0.0.1:1"\ndatabase = "db"\n')
    frame = sign(secret, encode_frame(1, 0, SITE, GW, batch.records))
    async with pumping(tmp_path / "central.toml") as (central_gw, ingest, acked):
        ingest.on_message(Message(readings_topic("remotecal/v1", SITE, GW), frame, 1, 1, False, 0, 1))
        await until(lambda: acked, "the frame acked")
        central = await central_gw.journal.next_batch("influx", 100)
    assert ingest.accepted_frames == 1 and central is not None
    assert sorted(map(repr, central.records)) == sorted(map(repr, records))
    lines = LineEncoder().encode_batch(central.records).decode().splitlines()
    assert any(line.startswith("run_window,channel=ref-t,gateway=gw\\,01,run=RC-1,site=lab\\ 1 ") for line in lines)
    assert any("accepted=true" in line and "local=true" in line for line in lines)
