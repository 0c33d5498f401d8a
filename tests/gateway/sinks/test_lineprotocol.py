"""Line protocol: exact text for the common cases, and round trips through a real influxd
for everything that needs escaping or must keep every bit of a float."""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import pytest

from gateway.journal import Journal
from gateway.reading import HealthSample, Reading, Record
from gateway.records import RecordRows
from gateway.sinks.influxdb.lineprotocol import (
    LineEncoder,
    encode_batch,
    escape_key,
    escape_measurement,
    escape_string,
)
from tests.servers.influx import InfluxD

T0 = 1_795_433_084_624_000_123  # ns; not a whole ms, so ns precision shows


def reading(value: float = 23.45, time_ns: int = T0, **kw: object) -> Reading:
    fields: dict[str, object] = {
        "site": "nmc-lab1", "gateway": "gw01", "run": "RC-2026-0042", "channel": "ref-t",
        "quantity": "temperature", "unit": "degC", "role": "reference",
    }
    fields.update(kw)
    return Reading(value=value, time_ns=time_ns, **fields)  # type: ignore[arg-type]


def line(r: Reading | HealthSample) -> str:
    return LineEncoder().encode(r)


# --- exact text -------------------------------------------------------------------------


def test_reading_line_has_sorted_tags_float_value_and_ns_time() -> None:
    assert line(reading()) == (
        "reading,channel=ref-t,gateway=gw01,quantity=temperature,role=reference,"
        "run=RC-2026-0042,site=nmc-lab1,unit=degC value=23.45 1795433084624000123"
    )


def test_extra_tags_are_sorted_in_among_the_schema_tags() -> None:
    r = reading(tags=(("zone", "top"), ("a_probe", "P1"), ("position", "centre")))
    tags = line(r).split(" ")[0].split(",")[1:]
    assert [t.split("=")[0] for t in tags] == [
        "a_probe", "channel", "gateway", "position", "quantity", "role", "run", "site",
        "unit", "zone",
    ]


def test_empty_tag_values_are_left_out() -> None:
    r = reading(run="", tags=(("zone", ""),))
    assert line(r).startswith(
        "reading,channel=ref-t,gateway=gw01,quantity=temperature,role=reference,"
        "site=nmc-lab1,unit=degC value="
    )


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("two words", r"two\ words"),
        ("a,b", r"a\,b"),
        ("k=v", r"k\=v"),
        ('"quoted"', '"quoted"'),
        (r"C:\probe", r"C:\probe"),
        ("Prüfling 温度", r"Prüfling\ 温度"),
        ("tab\there", "tab\there"),
    ],
)
def test_tag_escaping(raw: str, escaped: str) -> None:
    assert escape_key(raw) == escaped
    assert f",channel={escaped}," in line(reading(channel=raw))


def test_measurement_and_string_escaping() -> None:
    assert escape_measurement("a b,c=d") == r"a\ b\,c=d"
    assert escape_string('say "hi" \\o/') == r'"say \"hi\" \\o/"'


@pytest.mark.parametrize(
    "bad",
    ["two\nlines", "ends in \\", "C:\\,x", "a\\ b", "a\\=b"],
)
def test_tags_that_line_protocol_cannot_carry_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        line(reading(channel=bad))
    with pytest.raises(ValueError, match="cannot be written"):
        line(reading(tags=((bad, "v"),)))


def test_an_extra_tag_may_not_repeat_a_schema_tag() -> None:
    with pytest.raises(ValueError, match="'site'"):
        line(reading(tags=(("site", "elsewhere"),)))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (20, "20.0"),
        (20.0, "20.0"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (1e16, "1e+16"),
        (1e-300, "1e-300"),
        (123456789.123456789, "123456789.12345679"),
        (True, "1.0"),
    ],
)
def test_values_are_always_written_as_floats(value: float, text: str) -> None:
    assert line(reading(value=value)).split(" ")[1] == f"value={text}"


def test_random_doubles_are_written_as_floats_that_read_back_exactly() -> None:
    rng = random.Random(42)
    for _ in range(20_000):
        (x,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if not math.isfinite(x):
            continue
        text = line(reading(value=x)).split(" ")[1].removeprefix("value=")
        assert "." in text or "e" in text
        assert struct.pack("<d", float(text)) == struct.pack("<d", x)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        line(reading(value=value))


def test_time_must_be_integer_nanoseconds() -> None:
    with pytest.raises(ValueError):
        line(reading(time_ns=1.5e18))  # type: ignore[arg-type]


def test_health_sample_ints_floats_and_sorted_fields() -> None:
    h = HealthSample(
        site="nmc lab1", gateway="gw01", time_ns=T0,
        fields={"received": 10, "journal_pending": 0, "delivery_lag_s": 1.5, "rate": 2.0},
    )
    assert line(h) == (
        r"gateway_health,gateway=gw01,site=nmc\ lab1 "
        "delivery_lag_s=1.5,journal_pending=0i,rate=2.0,received=10i 1795433084624000123"
    )


def test_health_sample_needs_fields() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        line(HealthSample(site="s", gateway="g", time_ns=T0))


def test_batch_is_newline_joined_utf8() -> None:
    records = [reading(value=1.0, channel="ä"), reading(value=2.0, time_ns=T0 + 1)]
    body = encode_batch(records)
    assert isinstance(body, bytes)
    assert body.decode().split("\n") == [line(r) for r in records]
    assert not body.endswith(b"\n")
    assert encode_batch([]) == b""


def test_series_cache_is_bounded_and_does_not_change_the_output() -> None:
    records = [reading(value=float(i), channel=f"ch{i % 50}", time_ns=T0 + i) for i in range(500)]
    small = LineEncoder(max_series=8)
    assert small.encode_batch(records) == LineEncoder().encode_batch(records)
    assert len(small._prefixes) <= 8


def test_series_with_tags_that_join_alike_stay_apart() -> None:
    # Joined as 'k=v' text both are 'a=b=c': the cache must not take one for the other.
    enc = LineEncoder()
    one = enc.encode(reading(tags=(("a", "b=c"),)))
    two = enc.encode(reading(tags=(("a=b", "c"),)))
    assert one != two


# --- batches straight from the journal (RecordRows) ---------------------------------------


def _journal_records() -> list[Record]:
    out: list[Record] = []
    for i in range(300):
        tags = (("probe", f"p {i % 3}"), ("slot", "a,b")) if i % 4 == 0 else ()
        out.append(reading(value=20.0 + i / 7, channel=f"ch{i % 12}", time_ns=T0 + i, tags=tags))
        if i % 50 == 0:
            out.append(HealthSample("site a", "gw,1", T0 + i, {"journal_pending": i, "rate": 0.5}))
    out.append(reading(value=math.inf, time_ns=T0 + 999))  # refused, as from objects
    return out


async def _batch(path: Path, records: list[Record]) -> RecordRows:
    async with Journal(path, ["s"]) as j:
        await j.append(records)
        batch = await j.next_batch("s", 10_000)
    assert batch is not None and isinstance(batch.records, RecordRows)
    return batch.records


async def test_a_journal_batch_encodes_exactly_as_its_records_do(tmp_path: Path) -> None:
    records = _journal_records()
    rows = await _batch(tmp_path / "j.db", records)
    assert list(rows) == records
    with pytest.raises(ValueError, match="inf"):
        LineEncoder().encode_batch(rows)
    rows, records = rows[:-1], records[:-1]
    assert isinstance(rows, RecordRows)
    enc = LineEncoder()
    assert enc.encode_batch(rows) == LineEncoder().encode_batch(records)
    assert enc.encode_batch(rows) == LineEncoder().encode_batch(records)  # from the cache
    small = LineEncoder(max_series=3)
    assert small.encode_batch(rows) == enc.encode_batch(rows)
    assert len(small._by_id) <= 3
    # A slice is rows too, and the split the delivery runner makes encodes alike.
    assert enc.encode_batch(rows[:7]) + b"\n" + enc.encode_batch(rows[7:]) == enc.encode_batch(rows)


async def test_series_ids_of_two_journals_are_not_confused(tmp_path: Path) -> None:
    # The same id is a different series in another journal; one encoder sees both.
    a = await _batch(tmp_path / "a.db", [reading(channel="from-a", value=1.0)])
    b = await _batch(tmp_path / "b.db", [reading(channel="from-b", value=2.0)])
    assert a.rows[0][1] == b.rows[0][1]
    enc = LineEncoder()
    assert b"from-a" in enc.encode_batch(a)
    assert b"from-b" in enc.encode_batch(b)
    assert b"from-a" in enc.encode_batch(a)


# --- round trips through influxd --------------------------------------------------------

NASTY = [
    "two words",
    "a,b",
    "k=v",
    "a=b,c d",
    '"quoted"',
    "it's",
    r"C:\probe\1",
    r"back\\slashes",
    "Prüfling 温度 °C ±0,1",
    "emoji 🌡️",
    "tab\there",
    "trailing space ",
    " leading space",
    "  ",
    "=",
    ",",
]


@pytest.mark.integration
def test_nasty_tags_round_trip_through_influxd(influxd: InfluxD) -> None:
    records = [
        reading(value=float(i), time_ns=T0 + i, channel=text, tags=((text, text),))
        for i, text in enumerate(NASTY)
    ]
    r = influxd.write_raw(encode_batch(records), "calibration")
    assert r.status_code == 204, r.text

    rows = influxd.rows('SELECT * FROM "reading"', "calibration")
    assert len(rows) == len(NASTY)
    by_time = {row["time"]: row for row in rows}
    for i, text in enumerate(NASTY):
        row = by_time[T0 + i]
        assert row["channel"] == text
        assert row[text] == text
        assert row["value"] == float(i)
        assert row["site"] == "nmc-lab1"


@pytest.mark.integration
def test_string_fields_round_trip_through_influxd(influxd: InfluxD) -> None:
    texts = ['say "hi"', "back\\slash", "ends in \\", '\\"', "two\nlines", "Grüße ±", ""]
    body = "\n".join(
        f"notes,case={i} text={escape_string(t)} {T0 + i}" for i, t in enumerate(texts)
    )
    r = influxd.write_raw(body.encode(), "calibration")
    assert r.status_code == 204, r.text
    rows = influxd.rows('SELECT "text" FROM "notes"', "calibration")
    assert [row["text"] for row in sorted(rows, key=lambda row: row["time"])] == texts


EXACT = [
    0.1,
    1e-300,
    123456789.123456789,
    -0.0,
    0.0,
    5e-324,
    1.7976931348623157e308,
    -273.15,
    1 / 3,
    0.30000000000000004,
    2.0**53 + 2,
    1e16,
    -1e-7,
    23.45,
]


@pytest.mark.integration
def test_floats_round_trip_exactly_through_influxd(influxd: InfluxD) -> None:
    records = [reading(value=x, time_ns=T0 + i) for i, x in enumerate(EXACT)]
    r = influxd.write_raw(encode_batch(records), "calibration")
    assert r.status_code == 204, r.text
    rows = sorted(influxd.rows('SELECT "value" FROM "reading"', "calibration"),
                  key=lambda row: row["time"])
    got = [float(row["value"]) for row in rows]
    assert [struct.pack("<d", g) for g in got] == [struct.pack("<d", x) for x in EXACT]
    # and the field is a float field: an integer-looking value never made it an integer one
    keys = influxd.query('SHOW FIELD KEYS FROM "reading"', "calibration")[0]["series"][0]
    assert keys["values"] == [["value", "float"]]


@pytest.mark.integration
def test_health_samples_round_trip_through_influxd(influxd: InfluxD) -> None:
    h = HealthSample(
        site="nmc-lab1", gateway="gw01", time_ns=T0,
        fields={"journal_pending": 3, "received": 10, "rejected": 0, "delivered": 7,
                "delivery_lag_s": 0.25},
    )
    r = influxd.write_raw(encode_batch([h]), "calibration")
    assert r.status_code == 204, r.text
    keys = influxd.query('SHOW FIELD KEYS FROM "gateway_health"', "calibration")[0]
    assert dict(keys["series"][0]["values"]) == {
        "delivered": "integer", "delivery_lag_s": "float", "journal_pending": "integer",
        "received": "integer", "rejected": "integer",
    }
    (row,) = influxd.rows('SELECT * FROM "gateway_health"', "calibration")
    assert row == {"time": T0, "site": "nmc-lab1", "gateway": "gw01", **h.fields}
