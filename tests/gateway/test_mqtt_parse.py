"""MQTT message -> readings: topic matching, templates, paths, times, and every kind of bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from gateway.sources.mqtt.config import TopicMapping
from gateway.sources.mqtt.parse import MessageParser, match_topic

NOW = int(datetime(2026, 11, 21, tzinfo=UTC).timestamp()) * 10**9


def _parser(*topics: dict, max_payload: int = 256 * 1024) -> MessageParser:
    return MessageParser([TopicMapping.model_validate(t) for t in topics], site="s", gateway="g",
                         run="r", max_payload=max_payload)


STATE = {
    "topic": "lab/+/state", "format": "json", "time_path": "ts",
    "fields": [
        {"path": "t", "channel": "{1}-t", "quantity": "temperature", "unit": "degC", "role": "dut"},
        {"path": "h.rh", "channel": "{1}-rh", "quantity": "relative_humidity", "unit": "%rh", "role": "dut"},
    ],
}


@pytest.mark.parametrize(("levels", "topic", "expected"), [
    ("lab/+/state", "lab/dut1/state", ["dut1"]),
    ("lab/+/state", "lab/dut1/other", None),
    ("lab/+/state", "lab/dut1/state/x", None),
    ("lab/#", "lab/a/b/c", ["a/b/c"]),
    ("lab/+/+", "lab/a/b", ["a", "b"]),
    ("a/b", "a/b", []),
])
def test_match_topic(levels: str, topic: str, expected: list[str] | None) -> None:
    assert match_topic(levels.split("/"), topic) == expected


def test_json_fields_templates_and_epoch_ms() -> None:
    p = _parser(STATE)
    out = p.parse("lab/dut7/state", json.dumps({"t": 21.25, "h": {"rh": 45}, "ts": 1795000000123}).encode(), NOW)
    assert out.errors == []
    assert [(r.channel, r.value, r.time_ns, r.quantity, r.unit, r.role) for r in out.readings] == [
        ("dut7-t", 21.25, 1795000000123_000_000, "temperature", "degC", "dut"),
        ("dut7-rh", 45.0, 1795000000123_000_000, "relative_humidity", "%rh", "dut"),
    ]
    assert {(r.site, r.gateway, r.run) for r in out.readings} == {("s", "g", "r")}


@pytest.mark.parametrize(("unit", "raw", "ns"), [
    ("s", 1795000000.5, 1795000000_500_000_000),
    ("us", 1795000000000001, 1795000000000001_000),
    ("ns", 1795000000000000001, 1795000000000000001),
])
def test_time_units(unit: str, raw: float, ns: int) -> None:
    p = _parser({**STATE, "time_unit": unit})
    out = p.parse("lab/a/state", json.dumps({"t": 1, "h": {"rh": 2}, "ts": raw}).encode(), NOW)
    assert out.errors == [] and out.readings[0].time_ns == ns


def test_iso8601_time_and_receive_time() -> None:
    p = _parser(STATE)
    out = p.parse("lab/a/state", b'{"t": 1, "h": {"rh": 2}, "ts": "2026-11-20T08:00:00.250+01:00"}', NOW)
    expected = datetime(2026, 11, 20, 7, 0, 0, 250000, tzinfo=UTC)
    assert out.readings[0].time_ns == int(expected.timestamp()) * 10**9 + 250_000_000
    no_time = _parser({**STATE, "time_path": None})
    assert no_time.parse("lab/a/state", b'{"t": 1, "h": {"rh": 2}}', NOW).readings[0].time_ns == NOW


def test_value_format_with_scale_and_offset() -> None:
    p = _parser({"topic": "lab/chamber/t", "format": "value", "fields": [
        {"channel": "chamber", "quantity": "temperature", "unit": "degC", "role": "chamber",
         "scale": 0.1, "offset": -1.0}]})
    out = p.parse("lab/chamber/t", b" 235 \n", NOW)
    assert out.errors == [] and out.readings[0].value == pytest.approx(22.5) and out.readings[0].time_ns == NOW


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("lab/a/state", b'{"t": 1, "h": {"rh": ', "malformed JSON"),
    ("lab/a/state", b"[1, 2]", "JSON payload is a list, not an object"),
    ("lab/a/state", b'{"t": 1, "h": {"rh": 2}}', "time_path 'ts' is missing"),
    ("lab/a/state", b'{"t": 1, "h": {"rh": 2}, "ts": "yesterday"}', "is not ISO 8601"),
    ("lab/a/state", b'{"t": 1, "h": {"rh": 2}, "ts": "2026-11-20T08:00:00"}', "has no UTC offset"),
    ("lab/a/state", b'{"t": 1, "h": {"rh": 2}, "ts": 1795000000}', "is before 2000"),
    ("lab/a/state", b"\xff\xfe{}", "not UTF-8"),
    ("other/topic", b"{}", "topic matches no mapping"),
    ("lab/a/state", b"x" * 300, "exceeds max_payload"),
])
def test_bad_messages_are_refused_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    out = _parser(STATE, max_payload=256).parse(topic, payload, NOW)
    assert out.readings == []
    assert len(out.errors) == 1 and reason in out.errors[0], out.errors


@pytest.mark.parametrize(("t", "reason"), [
    ("NaN", "path 't' is NaN"),
    ("Infinity", "path 't' is infinite"),
    ("1e400", "path 't' is infinite"),
    ('"21.5"', "path 't' is not a number (got str)"),
    ("true", "path 't' is not a number (got bool)"),
    ("null", "path 't' is not a number (got null)"),
])
def test_one_bad_field_does_not_stop_the_good_one_beside_it(t: str, reason: str) -> None:
    payload = ('{"t": ' + t + ', "h": {"rh": 50.5}, "ts": 1795000000000}').encode()
    out = _parser(STATE).parse("lab/a/state", payload, NOW)
    assert [(r.channel, r.value) for r in out.readings] == [("a-rh", 50.5)]
    assert out.errors == [reason]


def test_missing_path_is_named() -> None:
    out = _parser(STATE).parse("lab/a/state", b'{"t": 1, "ts": 1795000000000}', NOW)
    assert out.errors == ["path 'h.rh' is missing"] and len(out.readings) == 1


def test_an_integer_too_large_for_a_float_is_refused_with_its_reason_and_the_other_field_kept() -> None:
    """json.loads gives a Python int of any size; float() of it raised OverflowError, which is
    no ValueError: the message took the source down instead of being quarantined."""
    p = _parser(STATE)
    out = p.parse("lab/a/state", b'{"t": 1' + b"0" * 400 + b', "h": {"rh": 45}, "ts": 1795000000000}', NOW)
    assert [r.value for r in out.readings] == [45.0]
    assert out.errors == ["path 't' is out of range (10000000000000000000...)"]
    assert p.parse("lab/a/state", b'{"t": 1e400, "h": {"rh": 45}, "ts": 1795000000000}', NOW).errors == [
        "path 't' is infinite"]
    assert p.parse("lab/a/state", b'{"t": -7, "h": {"rh": 45.5}, "ts": 1795000000000}', NOW).readings[0].value == -7.0


def test_the_same_topic_maps_to_the_same_channels_every_time_and_each_topic_to_its_own() -> None:
    p = _parser(STATE)
    msg = b'{"t": 1, "h": {"rh": 2}, "ts": 1795000000000}'
    for _ in range(3):
        assert [r.channel for r in p.parse("lab/a/state", msg, NOW).readings] == ["a-t", "a-rh"]
        assert [r.channel for r in p.parse("lab/b/state", msg, NOW).readings] == ["b-t", "b-rh"]
        assert p.parse("lab/b/other", msg, NOW).errors == ["topic matches no mapping"]


def test_value_payload_not_a_number() -> None:
    p = _parser({"topic": "x", "format": "value", "fields": [
        {"channel": "c", "quantity": "temperature", "unit": "degC", "role": "dut"}]})
    assert "is not a number" in p.parse("x", b"warm", NOW).errors[0]
    assert p.parse("x", b"nan", NOW).errors == ["payload 'nan' is not a number"]


@pytest.mark.parametrize("payload", ["1_000", "\uff12\uff11.5", "\u0662\u0661", "infinity", "-inf", "NaN", "0x10",
                                     "\u200321.5", "1e", ".", "+-1", "21.5 22"])
def test_value_payload_is_a_json_number_or_a_plain_ascii_decimal_only(payload: str) -> None:
    """float() accepts 1_000, full-width and Arabic-Indic digits and Unicode spaces (issue 11 item 12)."""
    p = _parser({"topic": "x", "format": "value", "fields": [
        {"channel": "c", "quantity": "temperature", "unit": "degC", "role": "dut"}]})
    out = p.parse("x", payload.encode(), NOW)
    assert out.readings == [] and out.errors == [f"payload {payload!r} is not a number"]


@pytest.mark.parametrize(("payload", "value"), [("21.5", 21.5), (" -0.25\r\n", -0.25), ("+1.", 1.0), (".5", 0.5),
                                                ("2.345E+01", 23.45), ("1e-3", 0.001), ("007", 7.0)])
def test_value_payload_plain_decimals(payload: str, value: float) -> None:
    p = _parser({"topic": "x", "format": "value", "fields": [
        {"channel": "c", "quantity": "temperature", "unit": "degC", "role": "dut"}]})
    assert [r.value for r in p.parse("x", payload.encode(), NOW).readings] == [value]


def test_only_messages_whose_copies_would_differ_are_remembered_for_redelivery() -> None:
    """A broker redelivery of sensor-stamped readings rewrites the same points; one stamped
    with the receive time (or one with rejects) would not, so only those get a dedupe key."""
    from gateway.mqtt.message import Message
    from gateway.sources.mqtt.source import MqttSource

    p = _parser(STATE, {"topic": "lab/+/raw", "format": "value", "fields": [
        {"channel": "{1}-raw", "quantity": "temperature", "unit": "degC", "role": "dut"}]})
    stamped = p.parse("lab/a/state", b'{"t": 1, "h": {"rh": 2}, "ts": 1795000000000}', NOW)
    half_bad = p.parse("lab/a/state", b'{"t": "x", "h": {"rh": 2}, "ts": 1795000000000}', NOW)
    received = p.parse("lab/a/raw", b"21.5", NOW)

    def msg(qos: int) -> Message:
        return Message("t", b"p", 1, qos, False, 1, NOW)

    assert stamped.sensor_time and not received.sensor_time
    assert not MqttSource._dedupe(msg(1), stamped)
    assert MqttSource._dedupe(msg(1), half_bad)
    assert MqttSource._dedupe(msg(1), received)
    assert not MqttSource._dedupe(msg(0), received)
