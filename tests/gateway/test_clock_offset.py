"""Issue 11 item 12: a gateway clock far off is named as the likely cause when sensor-stamped
readings are refused as too new, and the clock offset (gateway clock minus the sensors' clocks)
is measured from the sensor-stamped messages for the gateway_health point (the sensors' clocks
minus the gateway's, as `gateway status` shows per source)."""

from __future__ import annotations

import json

from gateway.sources.mqtt.config import TopicMapping
from gateway.sources.mqtt.parse import ClockWatch, MessageParser

NOW = 1_795_000_000_000_000_000
DAY_MS = 86_400_000
MAPPING = {"topic": "lab/+/state", "time_path": "ts", "fields": [
    {"path": "t", "channel": "{1}-t", "quantity": "temperature", "unit": "degC", "role": "dut"}]}


def _parser() -> MessageParser:
    return MessageParser([TopicMapping.model_validate(MAPPING)], site="s", gateway="g", run="r", max_payload=4096)


def _msg(ts_ms: int) -> bytes:
    return json.dumps({"t": 1.5, "ts": ts_ms}).encode()


def test_when_every_sensor_is_far_ahead_the_gateway_clock_is_named() -> None:
    """As the gateway sees it, a clock 400 days behind is every sensor 400 days ahead."""
    p = _parser()
    ahead = NOW // 10**6 + 400 * DAY_MS
    reasons = [p.parse(f"lab/s{k}/state", _msg(ahead + k), NOW + k).errors for k in range(5)]
    assert reasons[-1] == [
        f"time_path 'ts': timestamp '{ahead + 4}' is 400.0 days ahead of the gateway clock; the sensor-stamped "
        "messages of the last minutes are a median 400.0 days ahead too: the gateway clock is likely wrong (check "
        "its time synchronisation, NTP) - gateway_health clock_offset_s says by how much"]
    offset = p.clock.offset_ns(NOW)
    assert offset is not None and abs(offset - 400 * DAY_MS * 10**6) < 10**7


def test_one_sensor_ahead_among_good_ones_is_that_sensors_clock() -> None:
    p = _parser()
    now_ms = NOW // 10**6
    for k in range(5):
        assert p.parse(f"lab/s{k}/state", _msg(now_ms - 20), NOW).errors == []
    assert p.parse("lab/bad/state", _msg(now_ms + 3 * DAY_MS), NOW).errors == [
        f"time_path 'ts': timestamp '{now_ms + 3 * DAY_MS}' is 3.0 days ahead of the gateway clock (is the "
        "sensor's clock right, and time_unit = 'ms'?)"]
    assert p.clock.offset_ns(NOW) == -20 * 10**6  # the sensors' median: 20 ms of transport


def test_clock_watch_forgets_old_samples_and_takes_the_median() -> None:
    c = ClockWatch(keep=5, max_age_s=10)
    assert c.offset_ns(NOW) is None
    for d in (5, 1, 1000, 3, 2):
        c.observe(NOW, NOW + d)
    assert c.offset_ns(NOW) == 3
    assert c.offset_ns(NOW + 11 * 10**9) is None
    c.observe(NOW, NOW + 7)  # the oldest of 5 goes
    assert c.offset_ns(NOW) == 3
