"""Device profiles: the register map of an instrument, as a TOML file under `profiles/`.

A profile names, for each register, the measurand it exposes and how it is encoded (the
same keys as a gateway's `[[sources.modbus.registers]]`).  A device writes
raw = (value - offset) / scale; a gateway configured with the same scale and offset reads
the value back.  `gateway_registers` turns a profile into those gateway entries, so a demo
or a bench test configures both sides from one file.

Profiles here are generic; a map for a named commercial product belongs here only when it
is transcribed from that product's published documentation.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PROFILES_DIR", "Profile", "ProfileRegister", "gateway_registers", "load_profile"]

PROFILES_DIR = Path(__file__).with_name("profiles")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileRegister(_Strict):
    name: str
    measurand: Literal["temperature", "relative_humidity", "resistance"]
    unit: str
    kind: Literal["holding", "input"] = "input"
    address: int = Field(ge=0, le=65535)
    type: Literal["int16", "uint16", "int32", "uint32", "float32", "float64"] = "float32"
    byte_order: Literal["ABCD", "CDAB", "BADC", "DCBA"] = "ABCD"
    scale: float = 1.0
    offset: float = 0.0


class _Meta(_Strict):
    name: str
    description: str = ""


class Profile(_Strict):
    profile: _Meta
    registers: list[ProfileRegister] = Field(min_length=1)

    @property
    def name(self) -> str:
        return self.profile.name


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name ("generic-thr") from `profiles/`, or from a TOML file's path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))
        raise FileNotFoundError(f"no device profile {str(name_or_path)!r}; known profiles: {known}")
    with path.open("rb") as f:
        return Profile.model_validate(tomllib.load(f))


def gateway_registers(profile: Profile, *, prefix: str, role: str,
                      names: list[str] | None = None) -> list[dict[str, Any]]:
    """`[[sources.modbus.registers]]` entries for `profile`: channel `{prefix}-{register name}`."""
    return [
        {
            "channel": f"{prefix}-{r.name}", "quantity": r.measurand, "unit": r.unit, "role": role,
            "kind": r.kind, "address": r.address, "type": r.type, "byte_order": r.byte_order,
            "scale": r.scale, "offset": r.offset,
        }
        for r in profile.registers
        if names is None or r.name in names
    ]
