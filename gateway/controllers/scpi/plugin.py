"""`[[controllers.scpi]]`: a chamber driven by SCPI/ASCII command lines over TCP or a serial
port (registered in gateway.registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.controllers.scpi.config import ScpiControllerConfig
from gateway.plugin import ControllerKind

__all__ = ["KIND"]


def _build(cfg: ScpiControllerConfig) -> Any:
    from gateway.controllers.scpi.controller import ScpiController

    return ScpiController(cfg)


KIND = ControllerKind(name="scpi", title="SCPI", config=ScpiControllerConfig, build=_build,
                      sample=Path(__file__).with_name("sample.toml"))
