"""Schema of `[[controllers.modbus]]`: a chamber controller's setpoint registers and run flag."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config_types import Duration, PositiveDuration, check_modbus_url
from gateway.sources.modbus.config import REGISTER_WIDTH
from gateway.sources.modbus.decode import ByteOrder, RegisterType

__all__ = ["ModbusControllerConfig", "RunConfig", "SetpointConfig"]

_RANGE = {"int16": (-32768, 32767), "uint16": (0, 65535), "int32": (-2**31, 2**31 - 1),
          "uint32": (0, 2**32 - 1)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SetpointConfig(_Strict):
    """One setpoint: a holding register (or several, for a wide type) the controller writes."""

    quantity: Literal["temperature", "humidity"]
    """temperature [degC] or humidity [%rh]: the procedure's setpoint keys."""
    address: int = Field(ge=0, le=65535)
    type: RegisterType = "float32"
    byte_order: ByteOrder = "ABCD"
    scale: float = 1.0
    """value = raw * scale + offset, as the Modbus source reads; written as raw = (value - offset) / scale."""
    offset: float = 0.0
    tolerance: float = Field(0.0, ge=0)
    """Largest |read back - written| accepted [unit]; 0: the registers hold exactly what was written."""
    min: float | None = None
    """A setpoint below is refused before anything is written (the chamber's safe range)."""
    max: float | None = None

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float) -> float:
        if v == 0 or not math.isfinite(v):
            raise ValueError("must be a finite number other than 0")
        return v

    @model_validator(mode="after")
    def _check(self) -> SetpointConfig:
        if self.address + REGISTER_WIDTH[self.type] - 1 > 65535:
            raise ValueError(f"a {self.type} at address {self.address} runs past register 65535")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    @property
    def width(self) -> int:
        return REGISTER_WIDTH[self.type]

    def raw_range(self) -> tuple[float, float] | None:
        """The integer range of the type (None for floats)."""
        return _RANGE.get(self.type)


class RunConfig(_Strict):
    """The run/stop flag: a coil (on = 1) or a holding register (`on` / `off` values)."""

    kind: Literal["coil", "holding"] = "coil"
    address: int = Field(ge=0, le=65535)
    on: int = Field(1, ge=0, le=65535)
    """Holding register: the value that starts the chamber."""
    off: int = Field(0, ge=0, le=65535)
    """Holding register: the value that stops it."""

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.on == self.off:
            raise ValueError("on and off must differ")
        if self.kind == "coil" and (self.on, self.off) != (1, 0):
            raise ValueError("a coil is on = 1, off = 0")
        return self


class ModbusControllerConfig(_Strict):
    name: str = Field(min_length=1)
    url: str
    unit_id: int = Field(1, ge=0, le=247)
    timeout: PositiveDuration = 1.0
    write_multiple: bool = False
    """Write even a one-register value with function 16 (Write Multiple Registers), for a
    device without function 6; false: 6 for one register, 16 for more."""
    confirm_timeout: Duration = 0.0
    """Read a setpoint back again (every 100 ms) up to this long until it matches, for a
    controller that takes a written value over a moment later; 0: one read."""
    inter_frame_pause: Duration | None = Field(
        None, description="rtu: silence on the bus after each answer; default 3.5 characters, >= 1.75 ms")
    setpoints: list[SetpointConfig] = Field(min_length=1)
    run: RunConfig | None = None

    _url = field_validator("url")(check_modbus_url)

    @model_validator(mode="after")
    def _check(self) -> ModbusControllerConfig:
        seen: dict[str, int] = {}
        spans: list[tuple[int, int, int]] = []
        for i, s in enumerate(self.setpoints):
            if s.quantity in seen:
                raise ValueError(f"setpoints[{i}].quantity: {s.quantity} is "
                                 f"setpoints[{seen[s.quantity]}] already")
            seen[s.quantity] = i
            for a, b, j in spans:
                if s.address < b and a < s.address + s.width:
                    raise ValueError(f"setpoints[{i}].address: registers {s.address}.."
                                     f"{s.address + s.width - 1} overlap setpoints[{j}]")
            spans.append((s.address, s.address + s.width, i))
        if self.run is not None and self.run.kind == "holding":
            for a, b, j in spans:
                if a <= self.run.address < b:
                    raise ValueError(f"run.address: register {self.run.address} is setpoints[{j}]'s")
        return self

    def quantities(self) -> frozenset[str]:
        return frozenset(s.quantity for s in self.setpoints)
