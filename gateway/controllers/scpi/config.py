"""Schema of `[[controllers.scpi]]`: a chamber driven by SCPI / ASCII command lines."""

from __future__ import annotations

import math
import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config_types import (
    Duration,
    PositiveDuration,
    check_encoding,
    check_line_url,
    check_value_pattern,
)

__all__ = ["NUMBER", "RunCommands", "ScpiControllerConfig", "ScpiSetpoint", "render"]

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
"""The default read-back pattern: the first number in the answer."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def render(template: str, value: float) -> tuple[str, float]:
    """(the command line, the number it carries): `template` with `{value...}` filled in; the
    number is the text put there read back as a float (what the instrument is told)."""
    text, number = [], math.nan
    for literal, field, spec, conversion in string.Formatter().parse(template):
        text.append(literal)
        if field is None:
            continue
        piece = format(value, spec or "")
        if conversion:
            piece = format(repr(value) if conversion == "r" else str(value), spec or "")
        text.append(piece)
        number = float(piece)
    return "".join(text), number


def _check_template(v: str) -> str:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
    except ValueError as exc:
        raise ValueError(f"not a command template: {exc}") from None
    if fields != ["value"]:
        raise ValueError("a write template holds {value} (with a format, e.g. {value:.2f}) once, "
                         "and no other {field}; write {{ }} for literal braces")
    try:
        render(v, 23.5)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot format a number with it: {exc}") from None
    if "\n" in v or "\r" in v:
        raise ValueError("one line, without its terminator (that is `terminator`)")
    return v


def _check_line(v: str) -> str:
    if not v.strip() or "\n" in v or "\r" in v:
        raise ValueError("one non-empty line, without its terminator (that is `terminator`)")
    return v


class ScpiSetpoint(_Strict):
    quantity: Literal["temperature", "humidity"]
    write: str
    """The command that sets it: a template with {value}, e.g. "SOUR:TEMP {value:.2f}"."""
    query: str
    """The query whose answer holds the setpoint now, e.g. "SOUR:TEMP?"."""
    pattern: str = f"(?P<value>{NUMBER})"
    """Searched in the answer; the group `value` is the setpoint (default: the first number)."""
    tolerance: float = Field(0.0, ge=0)
    """Largest |read back - written| accepted; 0: the number the command carried, exactly."""
    min: float | None = None
    """A setpoint outside [min, max] is refused before anything is sent."""
    max: float | None = None

    _w = field_validator("write")(_check_template)
    _q = field_validator("query")(_check_line)
    _p = field_validator("pattern")(check_value_pattern)

    @model_validator(mode="after")
    def _range(self) -> ScpiSetpoint:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class RunCommands(_Strict):
    on: str
    """e.g. "OUTP ON"."""
    off: str
    """e.g. "OUTP OFF"."""
    query: str | None = None
    """e.g. "OUTP?": asked after on/off; its answer must match on_answer / off_answer."""
    on_answer: str = r"^\s*(1|ON)\s*$"
    off_answer: str = r"^\s*(0|OFF)\s*$"

    _l = field_validator("on", "off", "query")(lambda v: v if v is None else _check_line(v))

    @field_validator("on_answer", "off_answer")
    @classmethod
    def _rx(cls, v: str) -> str:
        try:
            re.compile(v, re.I)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v


class ScpiControllerConfig(_Strict):
    name: str = Field(min_length=1)
    url: str
    timeout: PositiveDuration = 2.0
    """Connecting, and waiting for each answer."""
    confirm_timeout: Duration = 0.0
    """Ask a setpoint back again (every 100 ms) up to this long until it matches; 0: once."""
    terminator: Literal["\n", "\r", "\r\n"] = "\n"
    """Ends every command sent and every answer read."""
    encoding: str = "ascii"
    error_query: str | None = None
    """e.g. "SYST:ERR?": asked after every command; an answer whose number is not 0 fails it."""
    setpoints: list[ScpiSetpoint] = Field(min_length=1)
    run: RunCommands | None = None

    _e = field_validator("error_query")(lambda v: v if v is None else _check_line(v))

    _url = field_validator("url")(check_line_url)
    _encoding = field_validator("encoding")(check_encoding)

    @model_validator(mode="after")
    def _unique(self) -> ScpiControllerConfig:
        seen: dict[str, int] = {}
        for i, s in enumerate(self.setpoints):
            if s.quantity in seen:
                raise ValueError(f"setpoints[{i}].quantity: {s.quantity} is "
                                 f"setpoints[{seen[s.quantity]}] already")
            seen[s.quantity] = i
        return self

    def quantities(self) -> frozenset[str]:
        return frozenset(s.quantity for s in self.setpoints)
