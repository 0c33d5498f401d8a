"""Config of one `[[sinks.mqtt]]` block (see sample.toml): the uplink to a central broker."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.config_types import Duration, Secret, check_host_port
from gateway.sources.mqtt.config import TlsConfig

__all__ = ["MqttSinkConfig", "check_topic_prefix"]

_PREFIX = re.compile(r"^[^/+#\x00]+(?:/[^/+#\x00]+)*$")


def check_topic_prefix(v: str) -> str:
    """One or more '/'-separated topic levels, without wildcards or a leading '$'."""
    if not _PREFIX.match(v) or v.startswith("$"):
        raise ValueError("a topic prefix is one or more '/'-separated levels, without +, # or $")
    return v


class MqttSinkConfig(BaseModel):
    """Where the uplink publishes, with which credentials and signing key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1)
    url: str
    client_id: str | None = None
    username: str | None = None
    password: Secret | None = None
    tls: TlsConfig | None = None
    topic_prefix: str = "remotecal/v1"
    key_file: Path = Field(description="this gateway's key, from `remotecal keys new`")
    state_file: Path | None = Field(
        default=None, description="where the frame sequence number is kept (default: in data_dir)")
    batch_size: int = Field(default=1000, ge=1, le=50_000)
    flush_interval: Duration = 1.0
    timeout: Duration = Field(default=10.0, gt=0, description="how long to wait for a PUBACK")
    keepalive: Duration = 30.0
    reconnect_min: Duration = 0.5
    reconnect_max: Duration = 30.0
    max_retry_interval: Duration = Field(default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if "@" in parts.netloc:
            raise ValueError("credentials do not belong in the URL; use username/password")
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
        check_host_port(parts)
        return v

    _prefix = field_validator("topic_prefix")(check_topic_prefix)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.uses_tls else 1883)

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme in ("mqtts", "ssl") or self.tls is not None
