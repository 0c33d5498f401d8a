"""The site config (SPEC section 3): loaded from TOML, validated and compiled once at start.

Every problem is reported with its key path, e.g.
`sources.mqtt[0].topics[0].fields[1].quantity: unknown quantity 'temprature'; ...`,
so an operator can fix the file without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from gateway import registry
from gateway.config_types import Duration, Size
from gateway.configfile import format_validation_error, read_toml
from gateway.control.config import ControlConfig
from gateway.errors import ConfigError
from gateway.mqtt_broker import TlsConfig
from gateway.plugin import ControllerKind, SinkConfig, SinkKind, SourceKind

__all__ = ["GatewayConfig", "JournalConfig", "anchored_paths", "config_model", "format_validation_error",
           "load_config", "parse_config", "read_toml"]


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
    summary_interval: Duration = 60.0
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


class RunSection(_Strict):
    """`[run]`: how the run engine (gateway.run) behaves; only with [[controllers.*]]."""

    on_restart: Literal["resume", "pause"] = Field(
        default="resume", description="a gateway restarted while a run was settling or recording: "
        "resume that step (its setpoints written again), or hold the run paused until a resume command"
    )


class _Blocks(_Strict):
    """`[sources]`, `[sinks]` or `[controllers]`: one list of blocks per registered kind (gateway.registry).
    The fields are made from the registry when a config is validated (`config_model`)."""

    def blocks(self, kind: str) -> list[Any]:
        """The blocks of one kind, in file order ([] for a kind not in the file)."""
        return list(getattr(self, kind, None) or [])

    if TYPE_CHECKING:
        def __getattr__(self, kind: str) -> list[Any]: ...


class GatewayConfig(_Strict):
    """A validated site config.  `config_model()` is the model that validates one: this class
    with a field per registered source and sink kind under `sources` and `sinks`."""

    gateway: GatewaySection
    journal: JournalConfig = JournalConfig()
    sources: _Blocks = _Blocks()
    sinks: _Blocks = _Blocks()
    controllers: _Blocks = _Blocks()
    """Chamber controllers a remote run writes its setpoints to (gateway.controllers)."""
    control: ControlConfig | None = None
    run: RunSection = RunSection()

    @model_validator(mode="after")
    def _names(self) -> GatewayConfig:
        names: dict[str, str] = {}
        for kind in registry.SOURCES:
            for i, s in enumerate(self.sources.blocks(kind)):
                if s.name in names:
                    raise ValueError(
                        f"sources.{kind}[{i}].name {s.name!r} is already used by {names[s.name]}"
                    )
                names[s.name] = f"sources.{kind}[{i}]"
        if not names:
            raise ValueError(f"no source configured: add {_choices('sources', registry.SOURCES)}")
        if not self.sink_configs():
            raise ValueError(f"no sink configured: add {_choices('sinks', registry.SINKS)}")
        self._one_source_per_channel()
        self._unique_sinks()
        self._controllers()
        self._control()
        return self

    def _controllers(self) -> None:
        """Controller names are unique, each setpoint is written by one controller, and a
        controller's serial port is its own (a source polling it would collide on the line)."""
        names: dict[str, str] = {}
        writes: dict[str, str] = {}
        ports: dict[str, str] = {}
        for kind in registry.SOURCES:
            for i, s in enumerate(self.sources.blocks(kind)):
                if path := _serial_path(getattr(s, "url", None)):
                    ports.setdefault(path, f"sources.{kind}[{i}]")
        for kind in registry.CONTROLLERS:
            for i, c in enumerate(self.controllers.blocks(kind)):
                key = f"controllers.{kind}[{i}]"
                if path := _serial_path(getattr(c, "url", None)):
                    if path in ports:
                        raise _SinkError(f"{key}.url: serial port {path} is used by {ports[path]} already: "
                                         "a controller needs a port of its own")
                    ports[path] = key
                if c.name in names:
                    raise _SinkError(f"{key}.name: {c.name!r} is already the name of {names[c.name]}")
                names[c.name] = key
                for q in c.quantities():
                    if q in writes:
                        raise _SinkError(f"{key}: writes the {q} setpoint, which {writes[q]} writes: "
                                         "one controller per setpoint")
                    writes[q] = key

    def _control(self) -> None:
        c = self.control
        if c is None:
            return
        if c.allow_remote and c.keys is None:
            raise ValueError("control.keys: required while allow_remote = true: the institute's public key "
                             "file(s) (remotecal keys new --institute)")
        if c.broker is None and not self.sinks.blocks("mqtt"):
            raise ValueError("control.broker: required without a [[sinks.mqtt]] uplink (whose broker it "
                             "would use): the central broker the commands come through")

    def _one_source_per_channel(self) -> None:
        """A channel named outright (no `{n}` of a topic) is read by one place only: two devices
        writing one channel would interleave their readings into one series."""
        where: dict[str, str] = {}
        for kind in registry.SOURCES.values():
            for i, block in enumerate(self.sources.blocks(kind.name)):
                for channel, below in kind.channels(block):
                    key = f"sources.{kind.name}[{i}]" + (f".{below}" if below else "")
                    if channel in where:
                        raise ValueError(f"{key}.channel {channel!r} is already read by {where[channel]}: "
                                         "two devices would write one channel")
                    where[channel] = key

    def sink_blocks(self) -> list[tuple[str, str, SinkConfig]]:
        """(kind, identity, block) of every sink, in registry and file order."""
        return [(kind, s.name or f"{kind}:{s.target()}", s)
                for kind in registry.SINKS for s in self.sinks.blocks(kind)]

    def _unique_sinks(self) -> None:
        """Every sink has its own identity, so no two share a delivery cursor."""
        names: dict[str, str] = {}
        targets: dict[str, str] = {}
        for kind in registry.SINKS:
            for i, s in enumerate(self.sinks.blocks(kind)):
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

    def sink_configs(self) -> list[tuple[str, SinkConfig]]:
        """(identity, block) of every sink: the journal keeps one cursor under each identity.

        The identity is the sink's `name`, or else `kind:target` - what it writes to
        (`influxdb:http://host:8086 db=calibration`, `local:/path/store.db`, `mqtt:mqtts://host
        remotecal/v1`) - never its place in the config, so removing one sink never hands its
        cursor to another.  A journal from before (cursors `influxdb-1`, ...) drops those
        cursors at the first start, and each unnamed sink starts at the oldest record still
        in the journal: records another sink had not taken yet are delivered again
        (duplicates, which InfluxDB and the local store keep once), none is skipped."""
        return [(identity, s) for _, identity, s in self.sink_blocks()]

    def sink_names(self) -> list[str]:
        return [name for name, _ in self.sink_configs()]


def _serial_path(url: object) -> str | None:
    """The device path of an rtu:// or serial:// URL (None for any other)."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    return parts.path if parts.scheme in ("rtu", "serial") and parts.path else None


def _choices(table: str, kinds: dict[str, Any]) -> str:
    names = [f"[[{table}.{k}]]" for k in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


_models: dict[tuple[object, ...], type[GatewayConfig]] = {}


def config_model() -> type[GatewayConfig]:
    """GatewayConfig with a list field per registered kind (made once per set of kinds)."""
    key = (*registry.SOURCES.values(), None, *registry.SINKS.values(), None, *registry.CONTROLLERS.values())
    if key not in _models:
        def table(name: str, kinds: dict[str, SourceKind] | dict[str, SinkKind] | dict[str, ControllerKind]
                  ) -> type[_Blocks]:
            fields: dict[str, Any] = {k.name: (list[k.config], []) for k in kinds.values()}  # type: ignore[name-defined]
            return create_model(name, __base__=_Blocks, **fields)

        sources, sinks = table("Sources", registry.SOURCES), table("Sinks", registry.SINKS)
        controllers = table("Controllers", registry.CONTROLLERS)
        _models[key] = create_model("GatewayConfig", __base__=GatewayConfig,
                                    sources=(sources, sources()), sinks=(sinks, sinks()),
                                    controllers=(controllers, controllers()))
    return _models[key]


class _SinkError(ValueError):
    """A problem across blocks (sinks, controllers): reported with its own key path, not the model's."""


def parse_config(data: dict[str, Any]) -> GatewayConfig:
    try:
        return config_model().model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a site config; raise ConfigError with every problem, by key path."""
    p = Path(path)
    data = read_toml(p)
    if "ingest" in data and "gateway" not in data:
        raise ConfigError(f"ingest: this is a CENTRAL.toml of `remotecal ingest`: run it with `remotecal "
                          f"ingest -c {p}`, or write it as [gateway] and [[sources.uplink]] "
                          "(gateway/sources/uplink/sample.toml)")
    return anchored_paths(parse_config(data), p.parent)


def anchored_paths(cfg: GatewayConfig, base: Path) -> GatewayConfig:
    """`cfg` with its relative paths made relative to `base`, the config file's folder."""
    # Paths are relative to the config file, so a service's working directory cannot move the
    # journal (and split a gateway's evidence across two folders) or lose a key.

    def anchored(x: Path) -> Path:
        return x if x.is_absolute() else (base / x).resolve()

    def tls(b: Any) -> Any:
        """A block's `tls` files (ca_file, cert_file, key_file) anchored too."""
        t = getattr(b, "tls", None)
        if not isinstance(t, TlsConfig):
            return b
        files = {f: str(anchored(Path(v))) for f in ("ca_file", "cert_file", "key_file")
                 if (v := getattr(t, f))}
        return b.model_copy(update={"tls": t.model_copy(update=files)})

    def blocks(table: _Blocks, kinds: dict[str, SourceKind] | dict[str, SinkKind] | dict[str, ControllerKind]
               ) -> _Blocks:
        return table.model_copy(update={
            kind.name: [tls(b.model_copy(update={f: anchored(getattr(b, f)) for f in kind.paths
                                                 if getattr(b, f) is not None}))
                        for b in table.blocks(kind.name)]
            for kind in kinds.values()})

    section = cfg.gateway.model_copy(update={"data_dir": anchored(cfg.gateway.data_dir)})
    control = cfg.control
    if control is not None:
        control = control.model_copy(update={f: anchored(getattr(control, f))
                                             for f in ("keys", "answer_key", "procedures")
                                             if getattr(control, f) is not None})
        if control.broker is not None:
            control = control.model_copy(update={"broker": tls(control.broker)})
    return cfg.model_copy(update={"gateway": section, "sources": blocks(cfg.sources, registry.SOURCES),
                                  "sinks": blocks(cfg.sinks, registry.SINKS),
                                  "controllers": blocks(cfg.controllers, registry.CONTROLLERS),
                                  "control": control})


def load_gateway_section(path: str | Path,
                         convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> GatewaySection:
    """Only the `[gateway]` table of a site config, data_dir anchored like `load_config`'s: what
    `gateway status` needs, without the sources' and sinks' secrets (an operator's shell may
    not hold the service's environment).  `convert`: the file's tables -> a site config's
    (a CENTRAL.toml's, gateway.ingest.config)."""
    p = Path(path)
    data = read_toml(p)
    if convert is not None:
        data = convert(data)
    if not isinstance(data.get("gateway"), dict):
        raise ConfigError("gateway: required table is missing")
    try:
        section = GatewaySection.model_validate(data["gateway"])
    except ValidationError as exc:
        raise ConfigError([f"gateway.{line}" if not line.startswith(("gateway", "[gateway]")) else line
                           for line in format_validation_error(exc)]) from None
    data_dir = section.data_dir if section.data_dir.is_absolute() else (p.parent / section.data_dir).resolve()
    return section.model_copy(update={"data_dir": data_dir})

