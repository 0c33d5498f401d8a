"""Schema of `[[sources.mqtt]]`: broker connection and topic mappings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config_types import Size
from gateway.mqtt_broker import BrokerConnection, TlsConfig
from gateway.quantities import ChannelSchema

__all__ = ["FieldMapping", "MqttSourceConfig", "TlsConfig", "TopicMapping", "wildcard_count"]

_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def wildcard_count(topic_filter: str) -> int:
    """How many `+`/`#` levels a filter has: the highest `{n}` a template may use."""
    return sum(1 for level in topic_filter.split("/") if level in ("+", "#"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMapping(ChannelSchema):
    path: str | None = None


class TopicMapping(_Strict):
    topic: str
    format: Literal["json", "value"] = "json"
    time_path: str | None = None
    time_unit: Literal["s", "ms", "us", "ns"] = Field(
        "ms", description="unit of numeric epoch times at time_path; strings are ISO 8601"
    )
    fields: list[FieldMapping] = Field(min_length=1)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not v:
            raise ValueError("topic filter must not be empty")
        levels = v.split("/")
        for i, level in enumerate(levels):
            if "#" in level and (level != "#" or i != len(levels) - 1):
                raise ValueError("'#' must be a whole level and the last one")
            if "+" in level and level != "+":
                raise ValueError("'+' must be a whole level")
        return v

    @model_validator(mode="after")
    def _fields(self) -> TopicMapping:
        n = wildcard_count(self.topic)
        seen: set[str] = set()
        for i, f in enumerate(self.fields):
            if f.channel in seen:
                # One message would give two readings of one channel at one instant: the
                # second would overwrite the first in InfluxDB.
                raise ValueError(f"fields[{i}].channel {f.channel!r} is used twice")
            seen.add(f.channel)
            for m in _PLACEHOLDER.finditer(f.channel):
                k = int(m.group(1))
                if not 1 <= k <= n:
                    raise ValueError(
                        f"fields[{i}].channel uses {{{k}}} but topic {self.topic!r} has "
                        f"{n} wildcard level(s)"
                    )
            if self.format == "json" and not f.path:
                raise ValueError(f"fields[{i}].path is required when format = 'json'")
        if self.format == "value":
            if len(self.fields) != 1:
                raise ValueError("format = 'value' takes exactly one field")
            if self.fields[0].path or self.time_path:
                raise ValueError("format = 'value' has no path or time_path (the payload is one number)")
        return self


class MqttSourceConfig(BrokerConnection):
    name: str
    qos: Literal[0, 1] = Field(
        1, description="1: at least once, acked after the journal commit; 0: no guarantee. QoS 2 is "
        "refused: its PUBREC hands the message over before the journal has it"
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT version spoken to the broker (the sensors may publish with either): 5 is "
        "the fast path; 3.1.1 for brokers that know no MQTT 5 (it uses paho-mqtt, ~40x the CPU a message)"
    )
    max_payload: Size = 256 * 1024
    retained: Literal["ignore", "sensor_time"] = Field(
        "ignore", description="retained messages the broker sends at each (re)subscribe: 'ignore' them "
        "(acknowledged, not read), or take those of topics with a time_path ('sensor_time': the same points "
        "each time); a receive time would stamp an old value anew at every reconnect"
    )
    topics: list[TopicMapping] = Field(min_length=1)
