"""CENTRAL.toml: the config of one `remotecal ingest` worker (sample.toml shows every key).

Several workers share the load: give each its own `worker` name and `data_dir` (its client
id, persistent session and journal) and the same `group`, `keys` and sinks.  Relative paths
are relative to the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.config import JournalConfig, format_validation_error, read_toml
from gateway.config_types import Duration, Size
from gateway.errors import ConfigError
from gateway.mqtt_broker import BrokerConnection
from gateway.sinks.influxdb.config import InfluxDBSinkConfig
from gateway.sinks.mqtt.config import check_topic_prefix

__all__ = ["BrokerConfig", "CentralConfig", "IngestSection", "load_central_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _level(v: str) -> str:
    if not v or any(c in v for c in "/+#\x00"):
        raise ValueError("must be one topic level: not empty, without /, + or #")
    return v


class IngestSection(_Strict):
    worker: str = Field(description="unique per process: names its MQTT session")
    site: str = Field(default="central", min_length=1,
                      description="site tag of its gateway_health points (gateway: ingest-WORKER)")
    health_interval: Duration = 10.0
    data_dir: Path
    keys: Path = Field(description="a folder of key files (or one file), from `remotecal keys new`")
    group: str = "remotecal-ingest"
    topic_prefix: str = "remotecal/v1"
    replay_window: int = Field(default=10_000, ge=1, le=10_000_000)
    refused_max_size: Size = Field(default=1024**3, ge=1024**2,
                                   description="refused frames kept whole (DATA_DIR/refused.db) up to this")
    shutdown_grace: Duration = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    _worker = field_validator("worker", "group")(_level)
    _prefix = field_validator("topic_prefix")(check_topic_prefix)


class BrokerConfig(BrokerConnection):
    session_expiry: Duration = Field(
        default=7 * 86400.0, gt=0, description="how long the broker keeps a dead worker's session")
    max_inflight: int = Field(default=100, ge=1, le=65535)


class CentralSinks(_Strict):
    influxdb: list[InfluxDBSinkConfig] = Field(min_length=1)


class CentralConfig(_Strict):
    ingest: IngestSection
    broker: BrokerConfig
    journal: JournalConfig = JournalConfig()
    sinks: CentralSinks

    @model_validator(mode="after")
    def _names(self) -> CentralConfig:
        names = self.sink_names()
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f"sinks: the name {n!r} is used twice")
        return self

    def sink_names(self) -> list[str]:
        return [s.name or f"influxdb-{i + 1}" for i, s in enumerate(self.sinks.influxdb)]


def load_central_config(path: str | Path) -> CentralConfig:
    """Read and validate CENTRAL.toml; ConfigError with every problem by key path."""
    p = Path(path)
    try:
        cfg = CentralConfig.model_validate(read_toml(p))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    section = cfg.ingest.model_copy(update={
        "data_dir": (p.parent / cfg.ingest.data_dir).resolve(),
        "keys": (p.parent / cfg.ingest.keys).resolve(),
    })
    return cfg.model_copy(update={"ingest": section})
