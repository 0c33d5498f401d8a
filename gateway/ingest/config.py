"""CENTRAL.toml: the config of one `remotecal ingest` worker (sample.toml shows every key).

Several workers share the load: give each its own `worker` name and `data_dir` (its client
id, persistent session and journal) and the same `group`, `keys` and sinks.  Relative paths
are relative to the config file.

An ingest worker is a gateway whose source is the uplink (gateway.sources.uplink), so
`load_ingest_config` reads either form as a `GatewayConfig`: a site config with
`[[sources.uplink]]` as it is, and a CENTRAL.toml as the site config that does what it did
(`central_site_config`) - same journal, replay state, refused frames, sink cursors, broker
session and health point, so an existing worker goes on where it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.config import (
    GatewayConfig,
    GatewaySection,
    JournalConfig,
    anchored_paths,
    format_validation_error,
    load_gateway_section,
    parse_config,
    read_toml,
)
from gateway.config_types import Duration
from gateway.errors import ConfigError
from gateway.sinks.influxdb.config import InfluxDBSinkConfig
from gateway.sources.uplink.config import CentralBroker, FrameChecks

__all__ = ["CentralConfig", "IngestSection", "central_site_config", "load_ingest_config", "load_site_section"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestSection(FrameChecks):
    site: str = Field(default="central", min_length=1,
                      description="site tag of its gateway_health points (gateway: ingest-WORKER)")
    health_interval: Duration = 10.0
    data_dir: Path
    shutdown_grace: Duration = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class CentralSinks(_Strict):
    influxdb: list[InfluxDBSinkConfig] = Field(min_length=1)


class CentralConfig(_Strict):
    ingest: IngestSection
    broker: CentralBroker
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


def _validated(data: dict[str, Any]) -> CentralConfig:
    try:
        return CentralConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


UPLINK_NAME = "uplink"
"""The uplink source's name in a CENTRAL.toml's site config: with it the journal's redelivery
keys of frames are those the ingest wrote before it was a source."""


def central_site_config(data: dict[str, Any]) -> dict[str, Any]:
    """The site config (`[gateway]`, `[[sources.uplink]]`, `[journal]`, `[[sinks.influxdb]]`) that
    runs as the CENTRAL.toml `data` did (validated first, so a mistake names its CENTRAL.toml key).

    [ingest] data_dir holds the journal, replay.db and refused.db still; its health points keep
    site `[ingest] site` and gateway `ingest-WORKER`; an unnamed sink keeps the cursor name it
    had (`influxdb-N`); the broker session keeps its client id (from `worker`)."""
    cfg = _validated(data)
    ingest = dict(data["ingest"])
    gateway = _gateway_table(ingest)
    uplink = {"name": UPLINK_NAME, **ingest, **data["broker"]}
    sinks = [{"name": name, **s} for name, s in zip(cfg.sink_names(), data["sinks"]["influxdb"], strict=True)]
    return {"gateway": gateway, "journal": data.get("journal", {}), "sources": {"uplink": [uplink]},
            "sinks": {"influxdb": sinks}}


def _gateway_table(ingest: dict[str, Any]) -> dict[str, Any]:
    """The `[gateway]` table of a CENTRAL.toml's site config, its keys taken out of `ingest`."""
    gateway = {"site": ingest.pop("site", "central"), "id": f"ingest-{ingest.get('worker')}", "run": "ingest",
               "data_dir": ingest.pop("data_dir", None)}
    more = ("health_interval", "shutdown_grace", "log_level")
    return gateway | {k: ingest.pop(k) for k in more if k in ingest}


def _gateway_only(data: dict[str, Any]) -> dict[str, Any]:
    if isinstance(data.get("ingest"), dict) and "gateway" not in data:
        return {"gateway": _gateway_table(dict(data["ingest"]))}
    return data


def load_site_section(path: str | Path) -> GatewaySection:
    """The `[gateway]` table of a site config, or of the one a CENTRAL.toml stands for
    (gateway.config.load_gateway_section: no secret is read)."""
    return load_gateway_section(path, _gateway_only)


def load_ingest_config(path: str | Path) -> GatewayConfig:
    """A central site's config, in either form: a site config with `[[sources.uplink]]`, or a
    CENTRAL.toml (`[ingest]`, `[broker]`) as its equivalent site config."""
    p = Path(path)
    data = read_toml(p)
    if "ingest" not in data:
        cfg = anchored_paths(parse_config(data), p.parent)
        if not cfg.sources.blocks("uplink"):
            raise ConfigError("sources.uplink: `remotecal ingest` runs a central site: a CENTRAL.toml "
                              "([ingest], [broker]) or a site config with [[sources.uplink]]")
        return cfg
    if "gateway" in data or "sources" in data:
        raise ConfigError("ingest: a CENTRAL.toml ([ingest], [broker]) has no [gateway] or [sources]: write "
                          "the worker either way, not both (gateway/sources/uplink/sample.toml)")
    return anchored_paths(parse_config(central_site_config(data)), p.parent)
