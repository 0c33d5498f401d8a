"""Issue 11 item 11: channel names are bounded (length, characters) and an empty topic level is
refused with a reason, never a reading without a channel; the MQTT route cache is bounded by
size, not by count (distinct 60 KB topic levels kept ~121 KB each, up to 100k topics)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from pydantic import ValidationError

from gateway.quantities import MAX_CHANNEL
from gateway.sources.mqtt.config import TopicMapping
from gateway.sources.mqtt.parse import MessageParser

NOW = 1_795_000_000_000_000_000
CH = {"quantity": "temperature", "unit": "degC", "role": "dut"}


def _parser(topic: str = "lab/+/state", channel: str = "{1}") -> MessageParser:
    return MessageParser([TopicMapping.model_validate({"topic": topic, "fields": [
        {"path": "t", "channel": channel, **CH}, {"path": "rh", "channel": "fixed-rh", **CH}]})],
        site="s", gateway="g", run="r", max_payload=1 << 20)


@pytest.mark.parametrize(("topic_filter", "topic"), [
    ("lab/+/state", "lab//state"),
    ("lab/#", "lab/a//b"),
    ("lab/#", "lab/a/"),
])
def test_an_empty_topic_level_is_refused_with_a_reason(topic_filter: str, topic: str) -> None:
    out = _parser(topic_filter).parse(topic, b'{"t": 1.0, "rh": 2.0}', NOW)
    assert out.readings == []
    assert out.errors == [f"topic {topic!r} has an empty level where a channel name is made of it"]


def test_a_level_no_channel_name_is_made_of_may_be_empty() -> None:
    out = _parser("lab/+/+", "{2}-t").parse("lab//state", b'{"t": 1.0, "rh": 2.0}', NOW)
    assert [r.channel for r in out.readings] == ["state-t", "fixed-rh"] and out.errors == []


def test_a_channel_name_too_long_or_with_a_control_character_is_refused() -> None:
    p = _parser(channel="{1}-t")
    assert [r.channel for r in p.parse("lab/" + "x" * (MAX_CHANNEL - 2) + "/state", b'{"t": 1, "rh": 2}',
                                       NOW).readings] == ["x" * (MAX_CHANNEL - 2) + "-t", "fixed-rh"]
    long = "lab/" + "x" * 60_000 + "/state"
    out = p.parse(long, b'{"t": 1, "rh": 2}', NOW)
    assert out.readings == []
    assert out.errors == [f"channel name is 60002 characters long (at most {MAX_CHANNEL}) (made from topic "
                          f"{'lab/' + 'x' * 76!r}... (60010 characters) by '{{1}}-t')"]
    out = p.parse("lab/a\x00b/state", b'{"t": 1, "rh": 2}', NOW)
    assert out.errors == ["channel name 'a\\x00b-t' has a control or format character ('\\x00') (made from topic "
                          "'lab/a\\x00b/state' by '{1}-t')"]


@pytest.mark.parametrize(("channel", "message"), [
    ("x" * (MAX_CHANNEL + 1), f"at most {MAX_CHANNEL}"),
    ("a\tb", "control or format character"),
    ("a\u200bb", "control or format character"),
])
def test_the_config_bounds_channel_names_too(channel: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TopicMapping.model_validate({"topic": "a", "fields": [{"path": "t", "channel": channel, **CH}]})


def test_the_route_cache_is_bounded_by_size_not_by_count() -> None:
    """300 distinct topics with a 60 KB level kept 36 MB (and 100k such topics 12 GB)."""
    p = _parser(channel="{1}-t")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300):
            p.parse("lab/" + str(i).rjust(60_000, "x") + "/state", b'{"t": 1, "rh": 2}', NOW)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 6 * 1024 * 1024, kept
    # the cache still serves: a topic seen again gives the same readings
    for _ in range(2):
        assert [r.channel for r in p.parse("lab/d1/state", b'{"t": 1, "rh": 2}', NOW).readings] == ["d1-t", "fixed-rh"]
