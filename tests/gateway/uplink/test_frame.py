"""The uplink frame: round trip bit-exact, signature, topic encoding, malformed input."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from gateway.errors import PayloadError
from gateway.journal import Journal
from gateway.reading import HealthSample, Reading
from gateway.records import RecordRows
from gateway.sinks.mqtt.frame import (
    SIGNATURE_BYTES,
    decode_frame,
    encode_frame,
    frame_header,
    readings_topic,
    sign,
    split_topic,
    verify,
)

KEY = bytes(range(32))
SITE, GW = "lab 1", "gw,01"


def readings(n: int = 50) -> list[Reading | HealthSample]:
    out: list[Reading | HealthSample] = []
    for i in range(n):
        out.append(Reading(SITE, GW, "RUN-1", f"dut{i % 3}-t", "temperature", "degC", "dut",
                           20.0 + i / 7, 1_795_000_000_000_000_000 + i, ()))
    out.append(Reading(SITE, GW, "RUN-1", "ref", "temperature", "degC", "reference", -0.0, 5,
                       (("probe", "PT100 #3"), ("ü", "ä=1"))))
    out.append(Reading(SITE, GW, "RUN-1", "ref", "temperature", "degC", "reference", 5e-324, -5))
    out.append(HealthSample(SITE, GW, 123, {"journal_pending": 7, "uptime_s": 1.5, "big": 2**62}))
    return out


def test_round_trip_is_exact_and_order_kept_per_kind() -> None:
    recs = readings()
    body = encode_frame(42, 99, SITE, GW, recs)
    frame = decode_frame(verify(KEY, sign(KEY, body)))
    assert (frame.seq, frame.sent_ns, frame.site, frame.gateway) == (42, 99, SITE, GW)
    assert frame.records == recs
    assert math.copysign(1.0, frame.records[50].value) == -1.0  # type: ignore[union-attr]


def test_frame_is_much_smaller_than_json() -> None:
    import json
    recs = [r for r in readings(1000) if isinstance(r, Reading)]
    as_json = json.dumps([{"site": r.site, "gateway": r.gateway, "run": r.run, "channel": r.channel,
                           "quantity": r.quantity, "unit": r.unit, "role": r.role, "value": r.value,
                           "time": r.time_ns} for r in recs]).encode()
    frame = encode_frame(1, 0, SITE, GW, recs)
    assert len(frame) * 7 < len(as_json)


@pytest.mark.parametrize("flip", [0, 5, 30, -1, -SIGNATURE_BYTES - 1])
def test_any_flipped_bit_breaks_the_signature(flip: int) -> None:
    frame = bytearray(sign(KEY, encode_frame(1, 0, SITE, GW, readings(5))))
    frame[flip] ^= 0x01
    with pytest.raises(PayloadError, match="bad signature"):
        verify(KEY, bytes(frame))


def test_another_key_does_not_verify() -> None:
    with pytest.raises(PayloadError, match="bad signature"):
        verify(b"\x01" * 32, sign(KEY, encode_frame(1, 0, SITE, GW, readings(5))))


@pytest.mark.parametrize("payload", [b"", b"{}", b"RCU1", b"XXXX" + b"\0" * 60, b'{"t": 21.5}' * 10])
def test_not_a_frame(payload: bytes) -> None:
    with pytest.raises(PayloadError, match="not a frame"):
        frame_header(payload)


def test_truncated_or_padded_bodies_are_malformed() -> None:
    body = encode_frame(1, 0, SITE, GW, readings(5))
    for bad in (body[:-1], body[:30], body + b"\0"):
        with pytest.raises(PayloadError, match="malformed frame"):
            decode_frame(bad)


def test_a_record_that_cannot_be_written_is_set_apart_not_its_frame() -> None:
    # Issue 11, item 4: one inf among 50 readings made the whole frame malformed.
    good = [r for r in readings(6) if isinstance(r, Reading)]
    bad = [Reading(SITE, GW, "RUN-1", "c", "temperature", "degC", "dut", math.inf, 1),
           Reading(SITE, GW, "RUN-1", "c", "temperature", "degC", "dut", math.nan, 2),
           Reading(SITE, GW, "RUN-1", " ", "temperature", "degC", "dut", 1.0, 3),
           Reading(SITE, GW, "RUN-1", "c", "temperature", "degC", "dut", 1.0, 4, (("k", "a\nb"),)),
           HealthSample(SITE, GW, 5, {"uptime_s": math.inf})]
    frame = decode_frame(encode_frame(1, 0, SITE, GW, [*good[:3], *bad, *good[3:]]))
    assert frame.records == good
    assert [why for _, why in frame.invalid] == [
        "value is inf", "value is nan", "channel is empty", "tag 'a\\nb' has a line break",
        "health field 'uptime_s' value is inf"]
    kept = [r for r, _ in frame.invalid]
    assert kept[:1] + kept[2:] == bad[:1] + bad[2:] and repr(kept[1]) == repr(bad[1])  # nan != nan


def test_topic_levels_are_percent_encoded_and_checked() -> None:
    t = readings_topic("remotecal/v1", "site/+#", "gw 1")
    assert t == "remotecal/v1/site%2F%2B%23/gw%201/readings"
    assert split_topic("remotecal/v1", t) == ("site/+#", "gw 1")
    for bad in ("remotecal/v1/a/b", "remotecal/v1/a/b/c/readings", "other/a/b/readings",
                "remotecal/v1/a%2f/b/readings"):
        with pytest.raises(PayloadError):
            split_topic("remotecal/v1", bad)


def test_a_record_that_does_not_fit_raises_struct_error() -> None:
    r = Reading(SITE, GW, "R", "c" * 70_000, "temperature", "degC", "dut", 1.0, 1)
    with pytest.raises(struct.error):
        encode_frame(1, 0, SITE, GW, [r])


def test_series_whose_tags_join_alike_stay_apart() -> None:
    # Joined as 'k=v' text both are 'a=b=c' (as series_key() once did): two series, not one.
    recs = [Reading(SITE, GW, "RUN-1", "c", "temperature", "degC", "dut", 1.0, 1, (("a", "b=c"),)),
            Reading(SITE, GW, "RUN-1", "c", "temperature", "degC", "dut", 2.0, 2, (("a=b", "c"),))]
    assert decode_frame(encode_frame(1, 0, SITE, GW, recs)).records == recs


async def test_a_journal_batch_packs_exactly_as_its_records_do(tmp_path: Path) -> None:
    recs = readings(300)
    async with Journal(tmp_path / "j.db", ["up"]) as journal:
        await journal.append(recs)
        batch = await journal.next_batch("up", 1000)
    assert batch is not None and isinstance(batch.records, RecordRows)
    body = encode_frame(7, 8, SITE, GW, batch.records)
    assert body == encode_frame(7, 8, SITE, GW, list(batch.records))
    assert decode_frame(body).records == recs
    # The halves the delivery runner splits a refused batch into are rows too.
    half = batch.records[:100]
    assert isinstance(half, RecordRows)
    assert decode_frame(encode_frame(7, 8, SITE, GW, half)).records == recs[:100]


def test_a_percent_encoded_level_that_is_not_utf8_is_a_payload_error() -> None:
    # unquote(errors="strict") raised UnicodeDecodeError, which ended the ingest (issue 11, 9)
    with pytest.raises(PayloadError, match="not UTF-8"):
        split_topic("remotecal/v1", "remotecal/v1/%FF%FE/gw/readings")


def test_sequence_numbers_beyond_a_signed_64_bit_integer_are_malformed() -> None:
    # The ingest keeps them as SQLite integers: 2**63 raised OverflowError there (issue 11, 9).
    body = bytearray(encode_frame(1, 0, SITE, GW, readings(2)))
    struct.pack_into("<Q", body, 5, 2**63)
    with pytest.raises(PayloadError, match="sequence number"):
        frame_header(bytes(sign(KEY, bytes(body))))
    with pytest.raises(PayloadError, match="sequence number"):
        decode_frame(bytes(body))
    with pytest.raises(ValueError, match="sequence number"):
        encode_frame(2**63, 0, SITE, GW, readings(2))
