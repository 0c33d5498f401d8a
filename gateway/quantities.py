"""The quantities remotecal knows, with the units each may be given in.

Config validation uses this table so that a typo ("temprature", "%RH ") fails at start
instead of splitting a run's data across two series in InfluxDB.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["MAX_CHANNEL", "QUANTITIES", "ChannelSchema", "channel_problem", "check_quantity", "check_unit"]

MAX_CHANNEL = 256
"""Longest channel name, in characters (an InfluxDB tag value; names made from MQTT topic levels
are bounded by it too)."""

QUANTITIES: dict[str, tuple[str, ...]] = {
    "temperature": ("degC", "K", "degF"),
    "relative_humidity": ("%rh",),
    "dew_point": ("degC", "K"),
    "frost_point": ("degC", "K"),
    "pressure": ("Pa", "hPa", "kPa", "bar", "mbar"),
    "absolute_humidity": ("g/m3",),
    "mixing_ratio": ("g/kg",),
    "resistance": ("ohm",),
    "voltage": ("V", "mV"),
    "current": ("A", "mA"),
    "state": ("1",),
}


def check_quantity(quantity: str) -> str:
    """Return `quantity`, or raise ValueError listing the known ones."""
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; expected one of {', '.join(sorted(QUANTITIES))}")
    return quantity


def check_unit(unit: str, quantity: str | None) -> str:
    """Return `unit`, or raise ValueError naming the units of `quantity` (None: quantity was bad)."""
    if quantity is not None and unit not in QUANTITIES[quantity]:
        raise ValueError(
            f"unit {unit!r} is not a unit of {quantity}; expected one of {', '.join(QUANTITIES[quantity])}"
        )
    return unit


def channel_problem(name: str) -> str | None:
    """Why `name` cannot be a channel name, or None: it must be 1..MAX_CHANNEL printable
    characters (no control, format or line/paragraph separator characters; spaces are fine)."""
    if not name.strip():
        return "channel name is empty"
    if len(name) > MAX_CHANNEL:
        return f"channel name is {len(name)} characters long (at most {MAX_CHANNEL})"
    if not name.isprintable():  # the ASCII space is printable
        bad = next(c for c in name if not c.isprintable())
        return f"channel name {name[:60]!r} has a control or format character ({bad!r})"
    return None


class ChannelSchema(BaseModel):
    """The part of a channel's config every source shares: what it measures and how to scale it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str
    quantity: str
    unit: str
    role: Literal["reference", "dut", "chamber"]
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("channel must not be empty")
        if "\n" in v:
            raise ValueError("channel must be one line")
        if (problem := channel_problem(v)) is not None:
            raise ValueError(problem.replace("channel name", "channel", 1))
        return v

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, v: str) -> str:
        return check_quantity(v)

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str, info: ValidationInfo) -> str:
        return check_unit(v, info.data.get("quantity"))
