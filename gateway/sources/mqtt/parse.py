"""Turn one MQTT message into readings, or into reasons it was refused.

Compiled once at start from the topic mappings: topic filters become level matchers and
channel templates become format strings, so a message costs one match, one `json.loads`
and a few dictionary walks.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.numbers import parse_decimal
from gateway.quantities import channel_problem
from gateway.reading import Reading
from gateway.sources.mqtt.config import FieldMapping, TopicMapping

__all__ = ["ClockWatch", "CompiledTopic", "MessageParser", "Parsed", "match_topic", "retained_refusal"]

_TIME_UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_EARLIEST_NS = 946_684_800 * 10**9  # 2000-01-01: earlier stamps are a wrong time_unit
_FUTURE_SLACK_NS = 86_400 * 10**9
_CLOCK_PLAUSIBLE_NS = 20 * 365 * 86_400 * 10**9  # further off is a wrong time_unit, not a clock
_PLACEHOLDER = re.compile(r"\{(\d+)\}")
_INT_MAX = 2**1023  # larger ints overflow a float
_ROUTES_BYTES = 4 * 1024 * 1024
"""Bound of the route cache (topics remembered with their mapping and channel names), counted
as the characters of topics and names plus _ROUTE_OVERHEAD each: a topic may be 64 KiB."""
_ROUTE_OVERHEAD = 200
_NO_MAPPING = "topic matches no mapping"

Route = tuple["CompiledTopic", tuple[str, ...]] | str
"""A topic's mapping and its fields' channel names, or why its messages are refused."""


def match_topic(levels: Sequence[str], topic: str) -> list[str] | None:
    """Match `topic` against filter `levels`; return the wildcard values, or None."""
    parts = topic.split("/")
    out: list[str] = []
    for i, lv in enumerate(levels):
        if lv == "#":
            out.append("/".join(parts[i:]))
            return out
        if i >= len(parts):
            return None
        if lv == "+":
            out.append(parts[i])
        elif lv != parts[i]:
            return None
    return out if len(parts) == len(levels) else None


def retained_refusal(mode: str, topics: Sequence[TopicMapping], topic: str) -> str | None:
    """Why a retained message on `topic` (one the broker sent because we subscribed) is not
    read, or None to read it: `retained = "ignore"` reads none; "sensor_time" reads those whose
    mapping has a time_path, so the copy sent at each subscribe gives the same points again."""
    if mode == "ignore":
        return 'a retained message (retained = "ignore")'
    for m in topics:
        if match_topic(m.topic.split("/"), topic) is not None:
            if m.time_path is None:
                return "a retained message on a topic without time_path (its time is unknown)"
            return None
    return None  # no mapping: the parser says so


@dataclass(frozen=True, slots=True)
class _Field:
    path: tuple[str, ...]
    channel: str
    templated: bool
    mapping: FieldMapping


@dataclass(frozen=True, slots=True)
class CompiledTopic:
    levels: tuple[str, ...]
    mapping: TopicMapping
    fields: tuple[_Field, ...]
    time_path: tuple[str, ...] | None
    used: tuple[int, ...] = ()
    """The wildcard values (0-based) some channel name is made of."""

    @classmethod
    def compile(cls, m: TopicMapping) -> CompiledTopic:
        fields = tuple(
            _Field(
                tuple((f.path or "").split(".")) if f.path else (),
                _PLACEHOLDER.sub(lambda g: "{" + str(int(g.group(1)) - 1) + "}", f.channel),
                bool(_PLACEHOLDER.search(f.channel)),
                f,
            )
            for f in m.fields
        )
        tp = tuple(m.time_path.split(".")) if m.time_path else None
        used = sorted({int(g) - 1 for f in m.fields for g in _PLACEHOLDER.findall(f.channel)})
        return cls(tuple(m.topic.split("/")), m, fields, tp, tuple(used))

    def route(self, topic: str, groups: list[str]) -> Route:
        """The channel names of `topic` (whose wildcard values are `groups`), or why none can be
        made: an empty level, or a name too long or with a control character."""
        for i in self.used:
            if "" in groups[i].split("/"):
                return f"topic {_short(topic)} has an empty level where a channel name is made of it"
        names = tuple(f.channel.format(*groups) if f.templated else f.channel for f in self.fields)
        for f, name in zip(self.fields, names, strict=True):
            if f.templated and (problem := channel_problem(name)) is not None:
                return f"{problem} (made from topic {_short(topic)} by {f.mapping.channel!r})"
        return self, names


def _short(text: str, n: int = 80) -> str:
    return repr(text) if len(text) <= n else repr(text[:n]) + f"... ({len(text)} characters)"


@dataclass(slots=True)
class Parsed:
    readings: list[Reading]
    errors: list[str]
    sensor_time: bool = False
    """The readings carry the sensor's own time: a second copy would be the same points."""


def _walk(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if isinstance(obj, dict):
            if key not in obj:
                raise KeyError(key)
            obj = obj[key]
        elif isinstance(obj, list) and key.lstrip("-").isdigit():
            obj = obj[int(key)]
        else:
            raise KeyError(key)
    return obj


def _number(raw: Any, what: str) -> float:
    kind = type(raw)
    if kind is float and raw - raw == 0.0:  # finite (inf - inf and nan - nan are nan)
        return float(raw)
    if kind is int and -_INT_MAX < raw < _INT_MAX:
        return float(raw)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        kind_name = "null" if raw is None else type(raw).__name__
        raise ValueError(f"{what} is not a number (got {kind_name})")
    if isinstance(raw, int):
        raise ValueError(f"{what} is out of range ({str(raw)[:20]}...)")
    value = float(raw)
    if math.isnan(value):
        raise ValueError(f"{what} is NaN")
    raise ValueError(f"{what} is infinite")


class ClockWatch:
    """How far the sensors' clocks are from the gateway's, from sensor-stamped messages: the
    median of (sensor time - receive time) over the last `keep` messages of the last
    `max_age_s` seconds - positive: the sensors are ahead, i.e. the gateway clock is behind;
    a few ms negative is the transport (a backlog drained after an outage reads more negative
    for a while).  Messages refused for their time count too: when the gateway clock is far
    off, those are all there is."""

    def __init__(self, keep: int = 256, max_age_s: float = 600.0):
        self._samples: deque[tuple[int, int]] = deque(maxlen=keep)
        self._max_age_ns = int(max_age_s * 1e9)

    def observe(self, received_ns: int, sensor_ns: int) -> None:
        self._samples.append((received_ns, sensor_ns - received_ns))

    def offset_ns(self, now_ns: int | None = None) -> int | None:
        """The median offset (ns) of the recent samples, or None without any."""
        now = time.time_ns() if now_ns is None else now_ns
        recent = [d for t, d in self._samples if now - t <= self._max_age_ns]
        return int(statistics.median_low(recent)) if recent else None


def _span(ns: int) -> str:
    if abs(ns) > _CLOCK_PLAUSIBLE_NS:
        return "more than 20 years"
    s = abs(ns) / 1e9
    if s < 120:
        return f"{s:.1f} s"
    if s < 2 * 86_400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86_400:.1f} days"


def _timestamp(raw: Any, unit: str) -> int:
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"timestamp {raw[:40]!r} is not ISO 8601") from None
        if dt.tzinfo is None:
            raise ValueError(f"timestamp {raw[:40]!r} has no UTC offset")
        ts = int(dt.timestamp()) * 10**9 + dt.microsecond * 1000
    elif isinstance(raw, int) and not isinstance(raw, bool):
        ts = raw * _TIME_UNIT_NS[unit]  # exact: a float would round ns stamps
    else:
        value = _number(raw, "timestamp")
        ts = int(value) * _TIME_UNIT_NS[unit] + round((value % 1) * _TIME_UNIT_NS[unit])
    return ts


class MessageParser:
    """Readings of one source's messages; `site`, `gateway` and `run` tag every reading."""

    def __init__(self, topics: Sequence[TopicMapping], *, site: str, gateway: str, run: str,
                 max_payload: int):
        self._topics = [CompiledTopic.compile(t) for t in topics]
        self._site, self._gateway, self._run = site, gateway, run
        self.max_payload = max_payload
        self._routes: dict[str, Route] = {}
        self.clock = ClockWatch()
        self._routes_bytes = 0

    def parse(self, topic: str, payload: bytes, received_ns: int | None = None) -> Parsed:
        """Every reading the message gives, and one reason per part that was refused."""
        now_ns = received_ns if received_ns is not None else time.time_ns()
        if len(payload) > self.max_payload:
            return Parsed([], [f"payload of {len(payload)} bytes exceeds max_payload ({self.max_payload})"])
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        if isinstance(route, str):
            return Parsed([], [route])
        return self._parse_mapped(route[0], route[1], payload, now_ns)

    def _route(self, topic: str) -> Route:
        """The first mapping `topic` matches and its fields' channel names (or why it is
        refused), remembered: sensors publish on the same few topics over and over.  The
        cache is bounded by size (`_ROUTES_BYTES`), not by count: a topic may be 64 KiB."""
        route: Route = _NO_MAPPING
        for ct in self._topics:
            groups = match_topic(ct.levels, topic)
            if groups is not None:
                route = ct.route(topic, groups)
                break
        names = len(route) if isinstance(route, str) else sum(map(len, route[1]))
        cost = _ROUTE_OVERHEAD + len(topic) + names
        if self._routes_bytes + cost > _ROUTES_BYTES:
            self._routes.clear()
            self._routes_bytes = 0
        if cost <= _ROUTES_BYTES // 64:  # a huge topic is matched again each time rather than kept
            self._routes[topic] = route
            self._routes_bytes += cost
        return route

    def _parse_mapped(self, ct: CompiledTopic, channels: tuple[str, ...], payload: bytes,
                      now_ns: int) -> Parsed:
        m = ct.mapping
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return Parsed([], ["payload is not UTF-8"])
        if m.format == "value":
            raw: Any = parse_decimal(text)
            if raw is None:  # JSON numbers and plain ASCII decimals only: not 1_000, ２１, nan
                return Parsed([], [f"payload {text[:40]!r} is not a number"])
            return self._readings(ct, channels, None, raw, now_ns)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            return Parsed([], [f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"])
        except RecursionError:
            return Parsed([], ["malformed JSON: nested too deeply"])
        except ValueError as exc:  # a number past Python's int-string limit (4300 digits)
            return Parsed([], [f"malformed JSON: {str(exc).split(';')[0][:200]}"])
        if not isinstance(doc, dict):
            return Parsed([], [f"JSON payload is a {type(doc).__name__}, not an object"])
        ts = now_ns
        if ct.time_path is not None:
            try:
                raw = _walk(doc, ct.time_path)
                ts = _timestamp(raw, m.time_unit)
            except (KeyError, IndexError):
                return Parsed([], [f"time_path {m.time_path!r} is missing"])
            except ValueError as exc:
                return Parsed([], [f"time_path {m.time_path!r}: {exc}"])
            if ts < _EARLIEST_NS:
                return Parsed([], [f"time_path {m.time_path!r}: timestamp {_short(str(raw), 40)} is before "
                                   f"2000 (is time_unit = {m.time_unit!r} right?)"])
            if abs(ts - now_ns) < _CLOCK_PLAUSIBLE_NS:  # further off is a wrong time_unit, not a clock
                self.clock.observe(now_ns, ts)
            if ts > now_ns + _FUTURE_SLACK_NS:
                why = self._too_new(raw, ts, now_ns, m.time_unit)
                return Parsed([], [f"time_path {m.time_path!r}: {why}"])
        out = self._readings(ct, channels, doc, None, ts)
        out.sensor_time = ct.time_path is not None
        return out

    def _too_new(self, raw: Any, ts: int, now_ns: int, unit: str) -> str:
        """Why a sensor time more than a day ahead of the gateway clock is refused - naming the
        gateway clock when most sensor-stamped messages say the same."""
        what = f"timestamp {_short(str(raw), 40)} is {_span(ts - now_ns)} ahead of the gateway clock"
        offset = self.clock.offset_ns(now_ns)
        if offset is not None and offset > _FUTURE_SLACK_NS:
            return (f"{what}; the sensor-stamped messages of the last minutes are a median "
                    f"{_span(offset)} ahead too: the gateway clock is likely wrong (check its time "
                    "synchronisation, NTP) - gateway_health clock_offset_s says by how much")
        return f"{what} (is the sensor's clock right, and time_unit = {unit!r}?)"

    def _readings(self, ct: CompiledTopic, channels: tuple[str, ...], doc: dict[str, Any] | None, raw: Any,
                  ts: int) -> Parsed:
        """The fields' readings, from the JSON object `doc` or, without one, the number `raw`."""
        out = Parsed([], [])
        site, gateway, run = self._site, self._gateway, self._run
        for f, channel in zip(ct.fields, channels, strict=True):
            fm = f.mapping
            try:
                if doc is None:
                    got = raw
                elif len(f.path) == 1:
                    got = doc[f.path[0]]
                else:
                    got = _walk(doc, f.path)
                value = _number(got, f"path {fm.path!r}" if fm.path else "payload")
            except (KeyError, IndexError):
                out.errors.append(f"path {fm.path!r} is missing")
                continue
            except ValueError as exc:
                out.errors.append(str(exc))
                continue
            if fm.scale != 1.0 or fm.offset != 0.0:
                value = value * fm.scale + fm.offset
                if value - value != 0.0:  # overflowed: inf, or nan (inf - inf)
                    out.errors.append(f"{f'path {fm.path!r}' if fm.path else 'payload'} is {value} after "
                                      f"scale = {fm.scale:g}, offset = {fm.offset:g} (raw {got!r})"[:300])
                    continue
            out.readings.append(Reading(site, gateway, run, channel, fm.quantity, fm.unit, fm.role, value,
                                        ts))
        return out
