"""`[[sources.instrument]]`: line-oriented instruments, SCPI queries or streamed lines, over
TCP or a serial port (registered in gateway.registry)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from gateway.plugin import SourceKind, Tags
from gateway.sources import Source
from gateway.sources.instrument.config import InstrumentSourceConfig

__all__ = ["KIND"]


def _build(configs: Sequence[InstrumentSourceConfig], tags: Tags) -> list[Source]:
    from gateway.sources.instrument.source import InstrumentSource

    return list(InstrumentSource.for_configs(configs, site=tags.site, gateway=tags.gateway, run=tags.run))


def _channels(cfg: InstrumentSourceConfig) -> Iterator[tuple[str, str]]:
    for j, c in enumerate(cfg.channels):
        yield c.channel, f"channels[{j}]"


KIND = SourceKind(name="instrument", title="instrument", config=InstrumentSourceConfig, build=_build,
                  sample=Path(__file__).with_name("sample.toml"), channels=_channels)
