"""Config of one `[[sinks.mqtt]]` block (see sample.toml): the uplink to a central broker."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ConfigDict, Field, field_validator

from gateway.config_types import Duration
from gateway.mqtt_broker import BrokerConnection

__all__ = ["MqttSinkConfig", "check_topic_prefix"]

_PREFIX = re.compile(r"^[^/+#\x00]+(?:/[^/+#\x00]+)*$")


def check_topic_prefix(v: str) -> str:
    """One or more '/'-separated topic levels, without wildcards or a leading '$'."""
    if not _PREFIX.match(v) or v.startswith("$"):
        raise ValueError("a topic prefix is one or more '/'-separated levels, without +, # or $")
    return v


class MqttSinkConfig(BrokerConnection):
    """Where the uplink publishes, with which credentials and signing key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1)
    topic_prefix: str = "remotecal/v1"
    key_file: Path = Field(description="this gateway's key, from `remotecal keys new`")
    state_file: Path | None = Field(
        default=None, description="where the frame sequence number is kept (default: in data_dir)")
    batch_size: int = Field(default=1000, ge=1, le=50_000)
    flush_interval: Duration = 1.0
    timeout: Duration = Field(default=10.0, gt=0, description="how long to wait for a PUBACK")
    max_retry_interval: Duration = Field(default=30.0, gt=0)

    _prefix = field_validator("topic_prefix")(check_topic_prefix)

    def target(self) -> str:
        """The broker and topic prefix: the sink's identity when it has no name."""
        return f"{self.url} {self.topic_prefix}"

