"""Schema of a line-oriented instrument source: one instrument, its link and how to read its lines.

    name = "ref"
    url = "tcp://192.0.2.10:5025"            # or "serial:///dev/ttyUSB0?baudrate=9600&parity=N"
    mode = "query"                           # send `query` every `interval`, read one line;
                                             # "stream": read the lines the instrument sends
    query = "FETC?\\n"
    interval = "1s"
    timeout = "2s"
    [[...channels]]
    channel = "ref-t"
    quantity = "temperature"
    unit = "degC"
    role = "reference"
    pattern = '^\\s*(?P<value>[-+0-9.eE]+)'  # searched in each line; the named group `value`
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config_types import (
    Duration,
    PositiveDuration,
    check_encoding,
    check_line_url,
    check_value_pattern,
)
from gateway.config_types import serial_settings as _serial_settings
from gateway.quantities import ChannelSchema

__all__ = ["InstrumentChannelConfig", "InstrumentSourceConfig", "serial_settings"]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstrumentChannelConfig(ChannelSchema):
    pattern: str = Field(description="regular expression searched in each line, with a group (?P<value>...)")

    _pattern = field_validator("pattern")(check_value_pattern)


def serial_settings(url: str) -> tuple[str, dict[str, int | str]]:
    """(device path, pyserial settings) of a serial:// URL (default 9600 8N1)."""
    return _serial_settings(url, 9600)


class InstrumentSourceConfig(_Strict):
    name: str
    url: str
    mode: Literal["query", "stream"] = "query"
    query: str = Field("FETC?\n", description="query mode: what is sent every interval (with its terminator)")
    interval: PositiveDuration = 1.0
    timeout: PositiveDuration = Field(2.0, description="connecting, and (query mode) waiting for the answer")
    idle_timeout: Duration | None = Field(
        None, description="stream mode: reconnect after this long without a line (default: wait forever)")
    terminator: Literal["\n", "\r", "\r\n"] = Field("\n", description="end of an incoming line")
    encoding: str = "ascii"
    channels: list[InstrumentChannelConfig] = Field(min_length=1)

    _url = field_validator("url")(check_line_url)
    _encoding = field_validator("encoding")(check_encoding)

    @model_validator(mode="after")
    def _check(self) -> InstrumentSourceConfig:
        if self.mode == "query" and not self.query:
            raise ValueError("query mode needs a query to send")
        seen: set[str] = set()
        for i, c in enumerate(self.channels):
            if c.channel in seen:
                raise ValueError(f"channels[{i}].channel {c.channel!r} is used twice")
            seen.add(c.channel)
        return self
