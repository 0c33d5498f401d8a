"""`[[sources.uplink]]`: signed frames of other gateways from the central broker (registered
in gateway.registry)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.errors import ConfigError
from gateway.plugin import SourceKind, Tags
from gateway.sources import Source
from gateway.sources.uplink.config import UplinkSourceConfig

__all__ = ["KIND", "state_dir"]


def state_dir(cfg: UplinkSourceConfig, data_dir: Path) -> Path:
    """Where a block keeps its replay.db and refused.db."""
    return cfg.state_dir if cfg.state_dir is not None else data_dir


def _build(configs: Sequence[UplinkSourceConfig], tags: Tags) -> list[Source]:
    from gateway.sources.uplink.source import UplinkSource

    dirs: dict[Path, str] = {}
    workers: dict[str, str] = {}
    for i, c in enumerate(configs):
        d = state_dir(c, tags.data_dir)
        if d in dirs:
            raise ConfigError(f"sources.uplink[{i}].state_dir: {d} is the state of {dirs[d]} already: give "
                              "each uplink source a state_dir of its own")
        if (c.client_id or c.worker) in workers:
            raise ConfigError(f"sources.uplink[{i}].worker: {c.worker!r} names the broker session of "
                              f"{workers[c.client_id or c.worker]} already")
        dirs[d] = workers[c.client_id or c.worker] = f"sources.uplink[{i}]"
    return [UplinkSource(c, state_dir(c, tags.data_dir)) for c in configs]


KIND = SourceKind(name="uplink", title="uplink", config=UplinkSourceConfig, build=_build,
                  sample=Path(__file__).with_name("sample.toml"), paths=("keys", "state_dir"))
