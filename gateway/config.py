"""The site config (SPEC section 3): loaded from TOML, validated and compiled once at start.

Every problem is reported with its key path, e.g.
`sources.mqtt[0].topics[0].fields[1].quantity: unknown quantity 'temprature'; ...`,
so an operator can fix the file without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.config_types import Duration, Size
from gateway.configfile import format_validation_error, read_toml
from gateway.errors import ConfigError
from gateway.sinks.influxdb.config import InfluxDBSinkConfig
from gateway.sinks.local.store import LocalStoreConfig
from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sources.instrument.config import InstrumentSourceConfig
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.mqtt.config import MqttSourceConfig

__all__ = ["GatewayConfig", "JournalConfig", "format_validation_error", "load_config", "read_toml"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _tag_value(v: str) -> str:
    if not v or not v.strip():
        raise ValueError("must not be empty")
    if "\n" in v:
        raise ValueError("must be one line")
    return v


class GatewaySection(_Strict):
    site: str
    id: str
    run: str
    data_dir: Path
    health_interval: Duration = 10.0
    shutdown_grace: Duration = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    _tags = field_validator("site", "id", "run")(_tag_value)


class JournalConfig(_Strict):
    """Journal durability and bounds; see `gateway.journal` for what each choice costs."""

    fsync: Literal["full", "normal"] = Field(
        default="full", description="full: fsync at every commit (survives power loss); normal: WAL fsync "
        "at checkpoints only (survives a crash of the gateway, not of the machine)"
    )
    max_size: Size = 2 * 1024**3
    on_full: Literal["refuse", "drop_oldest"] = "refuse"
    commit_interval: Duration = 0.0
    quarantine_max: int = Field(default=100_000, ge=0, description="quarantine rows kept (oldest go first)")


_AnySource = MqttSourceConfig | ModbusSourceConfig | InstrumentSourceConfig
_AnySink = InfluxDBSinkConfig | LocalStoreConfig | MqttSinkConfig


class Sources(_Strict):
    mqtt: list[MqttSourceConfig] = []
    modbus: list[ModbusSourceConfig] = []
    instrument: list[InstrumentSourceConfig] = []


class Sinks(_Strict):
    influxdb: list[InfluxDBSinkConfig] = []
    mqtt: list[MqttSinkConfig] = []
    local: list[LocalStoreConfig] = []


class GatewayConfig(_Strict):
    gateway: GatewaySection
    journal: JournalConfig = JournalConfig()
    sources: Sources = Sources()
    sinks: Sinks = Sinks()

    @model_validator(mode="after")
    def _names(self) -> GatewayConfig:
        names: dict[str, str] = {}
        groups: tuple[tuple[str, Sequence[_AnySource]], ...] = (
            ("mqtt", self.sources.mqtt),
            ("modbus", self.sources.modbus),
            ("instrument", self.sources.instrument),
        )
        for kind, items in groups:
            for i, s in enumerate(items):
                if s.name in names:
                    raise ValueError(
                        f"sources.{kind}[{i}].name {s.name!r} is already used by {names[s.name]}"
                    )
                names[s.name] = f"sources.{kind}[{i}]"
        if not names:
            raise ValueError(
                "no source configured: add [[sources.mqtt]], [[sources.modbus]] or [[sources.instrument]]")
        if not self.sink_configs():
            raise ValueError("no sink configured: add [[sinks.influxdb]], [[sinks.mqtt]] or [[sinks.local]]")
        self._one_source_per_channel()
        self._unique_sinks()
        return self

    def _one_source_per_channel(self) -> None:
        """A channel named outright (no `{n}` of a topic) is read by one place only: two devices
        writing one channel would interleave their readings into one series."""
        where: dict[str, str] = {}
        places: list[tuple[str, str]] = []
        for i, m in enumerate(self.sources.modbus):
            places += [(r.channel, f"sources.modbus[{i}].registers[{j}]")
                       for j, r in enumerate(m.registers)]
        for i, d in enumerate(self.sources.instrument):
            places += [(c.channel, f"sources.instrument[{i}].channels[{j}]")
                       for j, c in enumerate(d.channels)]
        for i, q in enumerate(self.sources.mqtt):
            for j, t in enumerate(q.topics):
                places += [(f.channel, f"sources.mqtt[{i}].topics[{j}].fields[{k}]")
                           for k, f in enumerate(t.fields) if "{" not in f.channel]
        for channel, key in places:
            if channel in where:
                raise ValueError(f"{key}.channel {channel!r} is already read by {where[channel]}: "
                                 "two devices would write one channel")
            where[channel] = key

    def _sink_groups(self) -> tuple[tuple[str, Sequence[_AnySink]], ...]:
        return (("influxdb", self.sinks.influxdb), ("local", self.sinks.local), ("mqtt", self.sinks.mqtt))

    def _unique_sinks(self) -> None:
        """Every sink has its own identity, so no two share a delivery cursor."""
        names: dict[str, str] = {}
        targets: dict[str, str] = {}
        for kind, items in self._sink_groups():
            for i, s in enumerate(items):
                key = f"sinks.{kind}[{i}]"
                if s.name is not None:
                    if s.name in names:
                        raise _SinkError(f"{key}.name: {s.name!r} is already the name of {names[s.name]}")
                    names[s.name] = key
                    continue
                identity = f"{kind}:{s.target()}"
                if identity in targets:
                    raise _SinkError(
                        f"{key}: writes where {targets[identity]} writes ({identity}): "
                        "two sinks would share one delivery cursor; remove one, or give each a name")
                targets[identity] = key
        for identity, key in targets.items():
            if identity in names:
                raise _SinkError(f"{names[identity]}.name: {identity!r} is the identity of the unnamed {key}")

    def sink_configs(self) -> list[tuple[str, _AnySink]]:
        """(identity, config) of every sink: the journal keeps one cursor under each identity.

        The identity is the sink's `name`, or else `kind:target` - what it writes to
        (`influxdb:http://host:8086 db=calibration`, `local:/path/store.db`, `mqtt:mqtts://host
        remotecal/v1`) - never its place in the config, so removing one sink never hands its
        cursor to another.  A journal from before (cursors `influxdb-1`, ...) drops those
        cursors at the first start, and each unnamed sink starts at the oldest record still
        in the journal: records another sink had not taken yet are delivered again
        (duplicates, which InfluxDB and the local store keep once), none is skipped."""
        return [(s.name or f"{kind}:{s.target()}", s) for kind, items in self._sink_groups() for s in items]

    def sink_names(self) -> list[str]:
        return [name for name, _ in self.sink_configs()]


class _SinkError(ValueError):
    """A problem with the sinks: reported with its own key path, not the model's."""


def parse_config(data: dict[str, Any]) -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a site config; raise ConfigError with every problem, by key path."""
    p = Path(path)
    cfg = parse_config(read_toml(p))
    # Paths are relative to the config file, so a service's working directory cannot move the
    # journal (and split a gateway's evidence across two folders) or lose a key.
    base = p.parent

    def anchored(x: Path) -> Path:
        return x if x.is_absolute() else (base / x).resolve()

    sinks = cfg.sinks.model_copy(update={
        "mqtt": [s.model_copy(update={"key_file": anchored(s.key_file)}) for s in cfg.sinks.mqtt],
        "local": [s.model_copy(update={"path": anchored(s.path)}) for s in cfg.sinks.local],
    })
    section = cfg.gateway.model_copy(update={"data_dir": anchored(cfg.gateway.data_dir)})
    return cfg.model_copy(update={"gateway": section, "sinks": sinks})
