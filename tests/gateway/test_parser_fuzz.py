"""Fuzzing the sources' parsers (issue 11): whatever a message or a line holds, the parser
answers with readings and reasons - it never raises, and every reading it gives is a finite
number (after scale and offset) on a channel whose name is within bounds.

The parsers are called directly, without the sources' safety net (which quarantines a
message whose parser raised): an exception here is a parser bug.  Example counts are fixed
(`derandomize`: the same examples on every run, so a failure reproduces): 1500 messages per
MQTT test, 3000 lines; REMOTECAL_FUZZ_SCALE multiplies them.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.quantities import channel_problem
from gateway.sources.instrument.source import _Channel, parse_line
from gateway.sources.mqtt.config import TopicMapping
from gateway.sources.mqtt.parse import MessageParser, Parsed

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not

NOW = int(datetime(2026, 11, 21, tzinfo=UTC).timestamp()) * 10**9
SCALE = float(os.environ.get("REMOTECAL_FUZZ_SCALE", "1"))
"""More examples for a longer run: REMOTECAL_FUZZ_SCALE=20 pytest tests/gateway/test_parser_fuzz.py"""
MQTT_EXAMPLES = round(1500 * SCALE)
LINE_EXAMPLES = round(3000 * SCALE)


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


_FIELD = {"quantity": "temperature", "unit": "degC", "role": "dut"}
TOPICS = [
    {"topic": "lab/+/state", "time_path": "ts",
     "fields": [{**_FIELD, "path": "t", "channel": "{1}-t"},
                {**_FIELD, "path": "h.rh", "channel": "{1}-rh", "scale": 1e300}]},
    {"topic": "lab/+/list", "time_path": "m.0.ts", "time_unit": "s",
     "fields": [{**_FIELD, "path": "m.0.v", "channel": "{1}"}, {**_FIELD, "path": "m.-1.v", "channel": "x",
                                                                "offset": -1e308}]},
    {"topic": "lab/+/raw", "format": "value", "fields": [{**_FIELD, "channel": "{1}-raw", "scale": 1e300}]},
    {"topic": "deep/#", "time_path": "ts", "time_unit": "ns", "fields": [{**_FIELD, "path": "v", "channel": "{1}"}]},
]
PARSER = MessageParser([TopicMapping.model_validate(t) for t in TOPICS], site="s", gateway="g", run="r",
                       max_payload=64 * 1024)

_text = st.text(st.characters(codec="utf-8"), max_size=20)
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.just(1795000000000), st.just(1795000000), st.booleans(), st.none(),
)
_huge_number = st.integers(min_value=4200, max_value=9000).map(lambda n: "9" * n)
_json_text = st.recursive(
    st.one_of(_numbers, _text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["t", "h", "rh", "ts", "m", "v", "0", "-1"]) | _text,
                                            inner, max_size=5)),
    max_leaves=20,
).map(lambda doc: json.dumps(doc, allow_nan=True))


def _with_huge_number(doc: str, number: str) -> str:
    return re.sub(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", number, doc, count=1) if re.search(r"\d", doc) else number


_payloads = st.one_of(
    st.binary(max_size=200),
    _json_text,
    st.builds(_with_huge_number, _json_text, _huge_number),
    st.builds(lambda t, rh, ts: json.dumps({"t": t, "h": {"rh": rh}, "ts": ts}), _numbers, _numbers, _numbers | _text),
    st.text(st.sampled_from("0123456789+-.eE_ \t\n\u0660\uff11infaINFNa"), max_size=30),
    st.just('{"a":' * 3000 + "1" + "}" * 3000),
).map(lambda p: p.encode("utf-8", "surrogatepass") if isinstance(p, str) else p)
_levels = st.one_of(_text, st.sampled_from(["", "+", "#", "dut1", "x" * 300]))
_topics = st.one_of(
    st.builds(lambda a, kind: f"lab/{a}/{kind}", _levels, st.sampled_from(["state", "list", "raw", "other"])),
    st.builds(lambda parts: "deep/" + "/".join(parts), st.lists(_levels, max_size=5)),
    _text,
)


def _check(out: Parsed) -> None:
    assert isinstance(out, Parsed)
    assert out.readings or out.errors
    for r in out.readings:
        assert isinstance(r.value, float) and math.isfinite(r.value), r
        assert channel_problem(r.channel) is None, r
    for reason in out.errors:
        assert isinstance(reason, str) and reason


@fuzz(MQTT_EXAMPLES)
@given(topic=_topics, payload=_payloads)
def test_mqtt_parser_never_raises(topic: str, payload: bytes) -> None:
    _check(PARSER.parse(topic, payload, NOW))


@fuzz(MQTT_EXAMPLES)
@given(payload=_payloads, sensor=_levels)
def test_mqtt_parser_never_raises_on_mapped_topics(payload: bytes, sensor: str) -> None:
    for kind in ("state", "list", "raw"):
        _check(PARSER.parse(f"lab/{sensor}/{kind}", payload, NOW))


CHANNELS = [
    _Channel(0, re.compile(r"^\s*(?P<value>[-+0-9.eE]+)"), 1.0, 0.0),
    _Channel(1, re.compile(r"T=(?P<value>\S+)"), 1e300, 0.0),
    _Channel(2, re.compile(r",(?P<value>[^,]*)?$"), 1.0, -1e308),
]
_line_chars = st.sampled_from("0123456789+-.eE_ ,=T\t\u0660\uff11infaINFNa9") | st.characters(codec="utf-8")


@fuzz(LINE_EXAMPLES)
@given(line=st.text(_line_chars, max_size=80) | st.builds(lambda n: "T=" + "9" * n, st.integers(0, 5000)))
def test_instrument_line_parser_never_raises(line: str) -> None:
    values, problem = parse_line(CHANNELS, line)
    assert values or problem
    for index, value in values:
        assert index in (0, 1, 2)
        assert isinstance(value, float) and math.isfinite(value), (line, index, value)
