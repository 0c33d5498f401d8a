"""What a source, sink or controller kind declares about itself (Telegraf's `inputs.Add`, in Python).

Each protocol is one folder, `gateway/sources/<kind>/` or `gateway/sinks/<kind>/`, whose
`plugin.py` declares a `SourceKind` or `SinkKind`: its name (the TOML table
`[[sources.<name>]]`), the schema of one block, the builder, and its sample config.
`gateway.registry` lists the folders, one line each; the config's validation, `gateway
check`, the runtime and the README's reference (tests/gateway/test_registry.py) loop over it.

The builder is imported when it runs, so validating a config never loads a protocol's
library (pymodbus, paho, httpx).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from gateway.sinks import Sink
    from gateway.sources import Source

__all__ = ["ControllerKind", "SinkConfig", "SinkContext", "SinkKind", "SourceConfig", "SourceKind", "Tags"]


class SourceConfig(Protocol):
    """What every `[[sources.<kind>]]` block has."""

    name: str


class SinkConfig(Protocol):
    """What every `[[sinks.<kind>]]` block has: an optional name, the delivery settings the
    runner uses, and its target (the sink's identity when it has no name)."""

    @property
    def name(self) -> str | None: ...

    @property
    def max_retry_interval(self) -> float: ...

    def target(self) -> str: ...


@dataclass(frozen=True)
class Tags:
    """The tags every reading of this gateway carries, and where the gateway keeps its state
    (a source with state of its own, the uplink's replay windows, keeps it there)."""

    site: str
    gateway: str
    run: str
    data_dir: Path = Path(".")


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need beyond its block: whose data it carries and where state lives."""

    site: str
    gateway: str
    data_dir: Path


@dataclass(frozen=True)
class SourceKind:
    """A source protocol: `[[sources.<name>]]` blocks, validated by `config`, built by `build`."""

    name: str
    """The TOML table: `[[sources.<name>]]`."""
    title: str
    """How `gateway check` counts it ("2 Modbus source(s)")."""
    config: type[BaseModel]
    """The schema of one block; it has a `name`, unique among all sources."""
    build: Callable[[Sequence[Any], Tags], list[Source]]
    """Every block of this kind (in file order) -> the source objects (one per block, or one
    per shared bus); raises ConfigError for a problem only the blocks together show."""
    sample: Path
    """A sample config showing every key (the README's reference links it)."""
    channels: Callable[[Any], Iterable[tuple[str, str]]] = lambda block: ()
    """One block -> (channel named outright, its key below the block), for the check that
    one channel is read by one place only; a templated channel (MQTT `{1}`) is left out."""
    paths: tuple[str, ...] = ()
    """Keys that are file paths: a relative one is relative to the config file."""
    describe: Callable[[Any], Iterable[str]] = lambda block: ()
    """One block -> lines `gateway check` prints about what it will find there (the uplink: the
    gateway keys it can use); what `gateway run` would refuse is a ConfigError of `build`."""


@dataclass(frozen=True)
class SinkKind:
    """A sink: `[[sinks.<name>]]` blocks, validated by `config`, each built by `build`."""

    name: str
    config: type[BaseModel]
    """The schema of one block (`SinkConfig`)."""
    build: Callable[[Any, str, SinkContext], Sink]
    """(block, the sink's identity, context) -> the sink."""
    sample: Path
    paths: tuple[str, ...] = ()
    """Keys that are file paths: a relative one is relative to the config file."""


@dataclass(frozen=True)
class ControllerKind:
    """A chamber controller: `[[controllers.<name>]]` blocks, validated by `config`, each built
    by `build` (gateway.controllers)."""

    name: str
    title: str
    """How `gateway check` counts it ("1 Modbus controller(s)")."""
    config: type[BaseModel]
    """The schema of one block; it has a `name`, unique among all controllers, and
    `quantities()` (the setpoints it writes)."""
    build: Callable[[Any], Any]
    """One block -> its `gateway.controllers.Controller` (not imported here: that package's
    `build_controllers` loops over gateway.registry, which imports this module)."""
    sample: Path
    paths: tuple[str, ...] = ()
