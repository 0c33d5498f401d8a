"""`[[sources.uplink]]`: signed frames of other gateways from the central broker (registered
in gateway.registry)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.errors import ConfigError
from gateway.keys import read_keys
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


def _describe(cfg: UplinkSourceConfig) -> list[str]:
    """The gateway keys the block's worker can use now, and each key file it cannot: a worker
    starts without them (its frames wait whole in refused.db until the key is there), so
    `gateway check` says so rather than refusing."""
    try:
        keys, problems = read_keys(cfg.keys)
    except ConfigError as exc:
        keys, problems = {}, [str(exc)]
    names = ", ".join(f"{site}/{gw}" for site, gw in sorted(keys))
    found = (f" ({names})" if names
             else ": every frame waits whole in refused.db until its gateway's key is there")
    lines = [f"uplink {cfg.name!r}: {len(keys)} gateway key(s) in {cfg.keys}{found}"]
    return lines + [f"uplink {cfg.name!r}: {line}" for line in problems]


KIND = SourceKind(name="uplink", title="uplink", config=UplinkSourceConfig, build=_build,
                  sample=Path(__file__).with_name("sample.toml"), paths=("keys", "state_dir"),
                  describe=_describe)
