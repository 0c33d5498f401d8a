"""Schema of `[[sources.modbus]]`: one Modbus device and its register map."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config_types import Duration, PositiveDuration, check_modbus_url
from gateway.quantities import ChannelSchema
from gateway.sources.modbus.decode import ByteOrder, RegisterType

__all__ = ["REGISTER_WIDTH", "ByteOrder", "ModbusSourceConfig", "RegisterConfig", "RegisterType"]

REGISTER_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterConfig(ChannelSchema):
    address: int = Field(ge=0, le=65535)
    kind: Literal["holding", "input", "coil", "discrete"] = "holding"
    type: RegisterType = "uint16"
    byte_order: ByteOrder = "ABCD"

    @model_validator(mode="after")
    def _check(self) -> RegisterConfig:
        if self.kind in ("coil", "discrete") and REGISTER_WIDTH[self.type] != 1:
            raise ValueError(f"a {self.kind} is one bit; type {self.type!r} does not apply")
        if self.address + REGISTER_WIDTH[self.type] - 1 > 65535:
            raise ValueError(f"a {self.type} at address {self.address} runs past register 65535")
        return self


class ModbusSourceConfig(_Strict):
    name: str
    url: str
    unit_id: int = Field(1, ge=0, le=247)
    interval: PositiveDuration = 1.0
    timeout: PositiveDuration = 1.0
    max_gap: int = Field(0, ge=0, le=124, description="unused registers read to join two reads")
    inter_frame_pause: Duration | None = Field(
        None, description="rtu: silence on the bus after each answer; default 3.5 characters, >= 1.75 ms"
    )
    registers: list[RegisterConfig] = Field(min_length=1)

    _url = field_validator("url")(check_modbus_url)

    @model_validator(mode="after")
    def _unique_channels(self) -> ModbusSourceConfig:
        seen: set[str] = set()
        for i, r in enumerate(self.registers):
            if r.channel in seen:
                raise ValueError(f"registers[{i}].channel {r.channel!r} is used twice")
            seen.add(r.channel)
        return self
