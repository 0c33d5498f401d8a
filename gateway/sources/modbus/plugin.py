"""`[[sources.modbus]]`: Modbus TCP and RTU polling (registered in gateway.registry)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from gateway.errors import ConfigError
from gateway.plugin import SourceKind, Tags
from gateway.sources import Source
from gateway.sources.modbus.config import ModbusSourceConfig

__all__ = ["KIND"]


def _build(configs: Sequence[ModbusSourceConfig], tags: Tags) -> list[Source]:
    try:
        from gateway.sources.modbus.source import ModbusSource
    except ImportError:
        raise ConfigError("sources.modbus: Modbus polling is not available in this build") from None
    return list(ModbusSource.for_configs(configs, site=tags.site, gateway=tags.gateway, run=tags.run))


def _channels(cfg: ModbusSourceConfig) -> Iterator[tuple[str, str]]:
    for j, r in enumerate(cfg.registers):
        yield r.channel, f"registers[{j}]"


KIND = SourceKind(name="modbus", title="Modbus", config=ModbusSourceConfig, build=_build,
                  sample=Path(__file__).with_name("sample.toml"), channels=_channels)
