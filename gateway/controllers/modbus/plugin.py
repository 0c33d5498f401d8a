"""`[[controllers.modbus]]`: a chamber controller's setpoints in holding registers (registered
in gateway.registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.controllers.modbus.config import ModbusControllerConfig
from gateway.errors import ConfigError
from gateway.plugin import ControllerKind

__all__ = ["KIND"]


def _build(cfg: ModbusControllerConfig) -> Any:
    try:
        from gateway.controllers.modbus.controller import ModbusController
    except ImportError:
        raise ConfigError("controllers.modbus: Modbus is not available in this build") from None
    return ModbusController(cfg)


KIND = ControllerKind(name="modbus", title="Modbus", config=ModbusControllerConfig, build=_build,
                      sample=Path(__file__).with_name("sample.toml"))
