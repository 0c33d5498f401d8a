"""`[[sources.mqtt]]`: JSON or single-value messages from a broker (registered in gateway.registry)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from gateway.plugin import SourceKind, Tags
from gateway.sources import Source
from gateway.sources.mqtt.config import MqttSourceConfig

__all__ = ["KIND"]


def _build(configs: Sequence[MqttSourceConfig], tags: Tags) -> list[Source]:
    from gateway.sources.mqtt.source import MqttSource

    return [MqttSource(c, site=tags.site, gateway=tags.gateway, run=tags.run) for c in configs]


def _channels(cfg: MqttSourceConfig) -> Iterator[tuple[str, str]]:
    for j, t in enumerate(cfg.topics):
        for k, f in enumerate(t.fields):
            if "{" not in f.channel:  # a template names one channel per topic level, not one outright
                yield f.channel, f"topics[{j}].fields[{k}]"


KIND = SourceKind(name="mqtt", title="MQTT", config=MqttSourceConfig, build=_build,
                  sample=Path(__file__).with_name("sample.toml"), channels=_channels)
