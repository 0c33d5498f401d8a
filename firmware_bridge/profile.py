"""Device profiles: the register map of an instrument, as a TOML file under `profiles/`.

A profile names, for each register, the measurand it exposes and how it is encoded (the
same keys as a gateway's `[[sources.modbus.registers]]`).  A device writes
raw = (value - offset) / scale; a gateway configured with the same scale and offset reads
the value back.  `gateway_registers` turns a profile into those gateway entries, so a demo
or a bench test configures both sides from one file.

A controller profile (a climatic chamber's controller, issue 15) also has `[[setpoints]]`:
holding registers a gateway writes a setpoint to (`quantity` temperature or humidity, with
the same encoding keys, and `min`/`max`: a write beyond is clamped there, as real controllers
do, so the value read back differs), and `[run]`: the coil or holding register that starts
(1) and stops (0) the chamber.  `gateway_controller` turns them into a gateway's
`[[controllers.modbus]]` block.

Profiles here are generic; a map for a named commercial product belongs here only when it
is transcribed from that product's published documentation.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.sources.modbus.decode import ByteOrder, RegisterType

__all__ = ["PROFILES_DIR", "Profile", "ProfileRegister", "ProfileRun", "ProfileSetpoint",
           "gateway_controller", "gateway_registers", "load_profile"]

PROFILES_DIR = Path(__file__).with_name("profiles")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileRegister(_Strict):
    name: str
    measurand: Literal["temperature", "relative_humidity", "resistance"]
    unit: str
    kind: Literal["holding", "input"] = "input"
    address: int = Field(ge=0, le=65535)
    type: RegisterType = "float32"
    byte_order: ByteOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0


class ProfileSetpoint(_Strict):
    quantity: Literal["temperature", "humidity"]
    address: int = Field(ge=0, le=65535)
    type: RegisterType = "float32"
    byte_order: ByteOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    min: float | None = None
    """A write below is held at min (clamped)."""
    max: float | None = None
    """A write above is held at max (clamped)."""


class ProfileRun(_Strict):
    kind: Literal["coil", "holding"] = "coil"
    address: int = Field(ge=0, le=65535)


class _Meta(_Strict):
    name: str
    description: str = ""


class Profile(_Strict):
    profile: _Meta
    registers: list[ProfileRegister] = Field(min_length=1)
    setpoints: list[ProfileSetpoint] = []
    run: ProfileRun | None = None

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


def gateway_controller(profile: Profile, *, name: str, url: str, unit_id: int = 1) -> dict[str, Any]:
    """A `[[controllers.modbus]]` block writing `profile`'s setpoints and run register."""
    block: dict[str, Any] = {
        "name": name, "url": url, "unit_id": unit_id,
        "setpoints": [{"quantity": s.quantity, "address": s.address, "type": s.type,
                       "byte_order": s.byte_order, "scale": s.scale, "offset": s.offset}
                      for s in profile.setpoints],
    }
    if profile.run is not None:
        block["run"] = {"kind": profile.run.kind, "address": profile.run.address}
    return block
