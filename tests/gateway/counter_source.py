"""A trivial source kind in one file, as a contributor would add one: `[[sources.counter]]`
gives one reading of 0, 1, 2, ... every `interval` on its channel.

Registering it (`gateway.registry.register(KIND)`, or one line in gateway/registry.py for a
kind that ships) is all it takes: config validation, `gateway check`, the runtime and the
README's reference test then know it (tests/gateway/test_registry.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from gateway.config_types import PositiveDuration
from gateway.plugin import SourceKind, Tags
from gateway.reading import Reading
from gateway.sources import Source, SourceBatch
from tests.gateway.harness import config_text


class CounterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    channel: str
    interval: PositiveDuration = 0.05


class CounterSource:
    def __init__(self, cfg: CounterConfig, tags: Tags) -> None:
        self.cfg, self.tags, self.name = cfg, tags, cfg.name

    async def __aenter__(self) -> CounterSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def batches(self) -> AsyncIterator[SourceBatch]:
        n = 0
        while True:
            t = self.tags
            yield SourceBatch([Reading(t.site, t.gateway, t.run, self.cfg.channel, "state", "1", "chamber",
                                       float(n), time.time_ns())])
            n += 1
            await asyncio.sleep(self.cfg.interval)


def _build(configs: Sequence[CounterConfig], tags: Tags) -> list[Source]:
    return [CounterSource(c, tags) for c in configs]


KIND = SourceKind(name="counter", title="counter", config=CounterConfig, build=_build,
                  sample=Path(__file__), channels=lambda c: [(c.channel, "")])


def counter_site(tmp_path: Path, *, interval: str | None = None, **gateway: str) -> Path:
    """`tmp_path/site.toml`: gateway s/g, run R, data_dir `tmp_path/data`, health hourly; one
    counter source `tick` on channel `ticks`; one local store `store` at `tmp_path/store.db`.
    `gateway` keys override or add to `[gateway]`."""
    source: dict[str, str] = {"name": "tick", "channel": "ticks"} | ({"interval": interval} if interval else {})
    path = tmp_path / "site.toml"
    path.write_text(config_text({
        "gateway": {"site": "s", "id": "g", "run": "R", "data_dir": str(tmp_path / "data"),
                    "health_interval": "1h"} | gateway,
        "sources": {"counter": [source]},
        "sinks": {"local": [{"name": "store", "path": str(tmp_path / "store.db"), "flush_interval": "50ms"}]},
    }))
    return path
