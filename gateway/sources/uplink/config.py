"""One `[[sources.uplink]]` block: which central broker, which frames, where their state is.

Several workers share the load: each its own `worker` (its client id and persistent broker
session) and state, the same `group`, `keys` and sinks.  The broker keys are those of every
MQTT client (gateway.mqtt_broker) plus the persistent session's (`CentralBroker`); the
frames' keys are `FrameChecks`.  A CENTRAL.toml (gateway.ingest.config) has the same two
sets under `[broker]` and `[ingest]`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.config_types import Duration, Size
from gateway.mqtt_broker import BrokerConnection
from gateway.sinks.mqtt.config import check_topic_prefix

__all__ = ["CentralBroker", "FrameChecks", "UplinkSourceConfig", "topic_level"]


def topic_level(v: str) -> str:
    """A value that is one MQTT topic level (a worker or group name)."""
    if not v or any(c in v for c in "/+#\x00"):
        raise ValueError("must be one topic level: not empty, without /, + or #")
    return v


class CentralBroker(BrokerConnection):
    """The central broker, with the worker's persistent session."""

    session_expiry: Duration = Field(
        default=7 * 86400.0, gt=0, description="how long the broker keeps a dead worker's session")
    max_inflight: int = Field(default=100, ge=1, le=65535)


class FrameChecks(BaseModel):
    """Which frames the worker takes, with which keys, and how much it keeps of those it refuses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker: str = Field(description="unique per process: names its MQTT session (client id "
                        "remotecal-ingest-WORKER unless client_id is given)")
    keys: Path = Field(description="a folder of key files (or one file), from `remotecal keys new`")
    group: str = "remotecal-ingest"
    topic_prefix: str = "remotecal/v1"
    replay_window: int = Field(default=10_000, ge=1, le=10_000_000)
    refused_max_size: Size = Field(default=1024**3, ge=1024**2,
                                   description="refused frames kept whole (refused.db) up to this")

    _worker = field_validator("worker", "group")(topic_level)
    _prefix = field_validator("topic_prefix")(check_topic_prefix)


class UplinkSourceConfig(CentralBroker, FrameChecks):
    name: str = Field(description="the source's name; it is part of its frames' redelivery keys in the "
                      "journal: keep it once frames went through")
    state_dir: Path | None = Field(default=None, description="where its replay.db and refused.db are kept "
                                   "(default: [gateway] data_dir)")
