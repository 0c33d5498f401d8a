"""The ingest's handling of one message, in process: what is journalled, quarantined, acked."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from gateway.ingest.refused import RefusedFrame, RefusedFrames
from gateway.keys import load_key_file, new_key_file
from gateway.mqtt.message import Message
from gateway.reading import Reading
from gateway.sinks.mqtt.frame import encode_frame, readings_topic, sign
from tests.gateway.uplink.harness import pumping, until

SITE, GW = "lab 1", "gw,01"
CENTRAL = ('[ingest]\nworker = "w"\ndata_dir = "data"\nkeys = "keys"\n[broker]\nurl = "mqtt://127.0.0.1:1"\n'
           '[[sinks.influxdb]]\nname = "influx"\nurl = "http://127.0.0.1:1"\ndatabase = "db"\n')


def refused(tmp_path: Path) -> list[RefusedFrame]:
    return RefusedFrames.read(tmp_path / "data" / "refused.db")[1][::-1]


def _message(payload: bytes, mid: int, *, dup: bool = False) -> Message:
    return Message(readings_topic("remotecal/v1", SITE, GW), payload, mid, 1, dup, 0, 1)


async def test_accept_replay_and_broker_redelivery(tmp_path: Path) -> None:
    secret = load_key_file(new_key_file(SITE, GW, tmp_path / "keys")).secret
    (tmp_path / "central.toml").write_text(CENTRAL)
    readings = [Reading(SITE, GW, "R", "c", "temperature", "degC", "dut", 20.5 + i, 10**18 + i) for i in range(3)]
    frame = sign(secret, encode_frame(7, 0, SITE, GW, readings))
    async with pumping(tmp_path / "central.toml") as (gw, ingest, acked):
        ingest.on_message(_message(frame, 1))
        ingest.on_message(_message(frame, 2, dup=True))  # while the first is being committed
        ingest.on_message(_message(frame[:-1] + b"\0", 3))
        await until(lambda: len(acked) == 3, "the first three acks")
        ingest.on_message(_message(frame, 4))  # a replay, long after
        ingest.on_message(_message(frame, 5, dup=True))  # the broker's redelivery
        await until(lambda: len(acked) == 5, "all five acks")
        batch = await gw.journal.next_batch("influx", 100)
        fields = gw.health_fields()
    assert sorted(acked) == [1, 2, 3, 4, 5]
    assert batch is not None and batch.records == readings
    assert (ingest.accepted_frames, ingest.redelivered) == (1, 2)
    assert (ingest.rejected["bad signature"], ingest.rejected["replayed"]) == (1, 1)
    assert (fields["accepted_frames"], fields["redelivered"], fields["rejected"], fields["received"]) == (1, 2, 2, 3)
    assert (fields["rejected_bad_signature"], fields["rejected_replayed"]) == (1, 1)
    assert [k for k in fields if not re.fullmatch(r"[a-z0-9_]+", k)] == [], "field names a query can use as they are"
    assert [(r.kind, r.reason.split(":")[0]) for r in refused(tmp_path)] == [
        ("bad signature", "bad signature"), ("replayed", "replayed")]


async def test_a_requeue_whose_commit_fails_keeps_the_rows_and_the_ingest_running(tmp_path: Path) -> None:
    # A frame refused for want of its key, then the key: the requeue's commit fails once
    # (a disk error); the journal commits it again, the ingest neither stops nor loses the frame.
    (tmp_path / "keys").mkdir()
    (tmp_path / "central.toml").write_text(CENTRAL)
    secret = load_key_file(new_key_file(SITE, GW, tmp_path / "elsewhere")).secret
    readings = [Reading(SITE, GW, "R", "c", "temperature", "degC", "dut", 20.5 + i, 10**18 + i) for i in range(3)]
    async with pumping(tmp_path / "central.toml") as (gw, ingest, acked):
        ingest.on_message(_message(sign(secret, encode_frame(7, 0, SITE, GW, readings)), 1))
        await until(lambda: acked == [1], "the refused frame kept and acked")
        assert ingest.rejected["unknown gateway"] == 1
        commit = gw.journal._commit_sync
        failures: list[int] = []

        def broken(subs):  # type: ignore[no-untyped-def]
            gw.journal._commit_sync = commit  # type: ignore[method-assign]  # fails once
            failures.append(len(subs))
            raise OSError("disk I/O error")

        gw.journal._commit_sync = broken  # type: ignore[method-assign]
        new_key_file_copy = tmp_path / "keys" / "k.key"
        new_key_file_copy.write_bytes(next((tmp_path / "elsewhere").glob("*.key")).read_bytes())
        assert ingest.verifier.refresh() is True  # the keys changed: the source takes the frame back
        await until(lambda: ingest.requeued == 1, "the requeue")
        assert failures == [1]
        batch = await gw.journal.next_batch("influx", 100)
        await until(lambda: refused(tmp_path) == [], "the refused frame removed")
    assert batch is not None and batch.records == readings
    assert ingest.requeued == 1


async def test_whatever_checking_a_frame_raises_quarantines_it_and_the_ingest_goes_on(tmp_path: Path) -> None:
    # No exception raised by one message may end the worker: a bug in a check is counted,
    # logged with its traceback, and the frame is kept whole with it (issue 11, 1).
    secret = load_key_file(new_key_file(SITE, GW, tmp_path / "keys")).secret
    (tmp_path / "central.toml").write_text(CENTRAL)
    readings = [Reading(SITE, GW, "R", "c", "temperature", "degC", "dut", 20.5, 10**18)]
    frame = sign(secret, encode_frame(7, 0, SITE, GW, readings))

    def buggy(topic: str, payload: bytes) -> object:
        raise ZeroDivisionError("a bug")

    async with pumping(tmp_path / "central.toml") as (gw, ingest, acked):
        real_check = ingest.verifier.check
        ingest.verifier.check = buggy  # type: ignore[method-assign,assignment]
        ingest.on_message(_message(frame, 1))
        ingest.verifier.check = real_check  # type: ignore[method-assign]
        ingest.on_message(Message("remotecal/v1/\ufffd/gw/readings", b"x", 2, 1, False, 0, 1,
                                  error="topic is not UTF-8"))
        ingest.on_message(_message(frame, 3))
        await until(lambda: len(acked) == 3, "three acks")
        batch = await gw.journal.next_batch("influx", 100)
    assert sorted(acked) == [1, 2, 3]
    assert ingest.input_errors == 1 and ingest.rejected["malformed"] == 2 and ingest.accepted_frames == 1
    assert batch is not None and batch.records == readings
    rows = refused(tmp_path)
    assert sorted(r.reason for r in rows) == ["malformed: internal error: ZeroDivisionError: a bug",
                                              "malformed: topic is not UTF-8"]
    assert {r.payload for r in rows} == {frame, b"x"}


# mqtt5 0.8 reports the UnicodeDecodeError as "unraisable" before raising its PanicException:
# the link survives both.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_topic_that_is_not_utf8_reaches_the_loop_as_a_malformed_message(tmp_path: Path) -> None:
    # paho's MQTTMessage.topic raised UnicodeDecodeError on the network thread, ending it; the
    # MQTT 5 link hands such a PUBLISH on as malformed (kept whole), and the next one lands.
    from gateway.sources.uplink.config import UplinkSourceConfig
    from gateway.sources.uplink.subscriber import IngestSubscriber
    from tests.gateway.test_mqtt_link5 import OK, ScriptedBroker, _publish

    topic = readings_topic("remotecal/v1", "s", "g").encode()
    bad_topic = topic.replace(b"/s/", b"/\xff/")
    body = len(bad_topic).to_bytes(2, "big") + bad_topic + (7).to_bytes(2, "big") + b"\x00" + b"frame"
    bad = bytes([0x32, len(body)]) + body
    async with ScriptedBroker(OK, bad + _publish(topic.decode(), b"frame", 8)) as broker:
        sub = IngestSubscriber(UplinkSourceConfig(name="u", worker="w", keys=tmp_path,
                                                  url=f"mqtt://127.0.0.1:{broker.port}"))
        sub.start()
        try:
            first, second = [await asyncio.wait_for(sub.next(), 10) for _ in range(2)]
            assert first.error is not None and first.error.startswith("malformed MQTT PUBLISH")
            assert first.topic == "remotecal/v1/\ufffd/g/readings" and first.payload == bad and first.mid == 7
            assert second.error is None and second.payload == b"frame"
            sub.ack(first)
            sub.ack(second)
            await until(lambda: broker.acked == [7, 8], "both acked")
        finally:
            await sub.stop()


async def test_a_frame_whose_commit_fails_for_good_is_not_acked_and_its_number_is_free_again(tmp_path: Path) -> None:
    # The replay window holds a frame's number while its commit is pending; a commit the
    # journal gives up (closing while the disk fails) must free it, or the broker's
    # redelivery of that unacknowledged frame would be taken for one we hold - acked, lost.
    secret = load_key_file(new_key_file(SITE, GW, tmp_path / "keys")).secret
    (tmp_path / "central.toml").write_text(CENTRAL.replace('keys = "keys"\n', 'keys = "keys"\nshutdown_grace = "1s"\n'))
    frame = sign(secret, encode_frame(7, 0, SITE, GW, [Reading(SITE, GW, "R", "c", "temperature", "degC", "dut",
                                                                20.5, 10**18)]))

    def broken(subs):  # type: ignore[no-untyped-def]
        raise OSError("disk I/O error")

    async with pumping(tmp_path / "central.toml") as (gw, ingest, acked):
        gw.journal._commit_sync = broken  # type: ignore[method-assign]
        ingest.on_message(_message(frame, 1))
        await until(lambda: gw.journal.stats.failing, "the commit failing")
        assert ingest.replay.check(SITE, GW, 7) is not None  # held while it is being committed
    assert acked == [] and ingest.accepted_frames == 0
    assert ingest.replay.check(SITE, GW, 7) is None
