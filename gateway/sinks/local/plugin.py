"""`[[sinks.local]]`: readings in a SQLite file (registered in gateway.registry)."""

from __future__ import annotations

from pathlib import Path

from gateway.plugin import SinkContext, SinkKind
from gateway.sinks import Sink
from gateway.sinks.local.store import LocalStoreConfig, LocalStoreSink

__all__ = ["KIND"]


def _build(config: LocalStoreConfig, name: str, context: SinkContext) -> Sink:
    return LocalStoreSink(config, name=name)


KIND = SinkKind(
    name="local", config=LocalStoreConfig, build=_build,
    sample=Path(__file__).with_name("sample.toml"), paths=("path",))
