"""Value types shared by every config schema: durations, sizes and secrets.

Durations are written as "500ms", "1s", "2m", "1h" (or a bare number of seconds); sizes as
"256KiB", "2GiB" (or a bare number of bytes).  Secrets may be given inline, or as
"env:NAME" (read from the environment) or "file:/path" (first line of a file), so a config
file can be committed without credentials; a `Secret` never shows its value in a repr, a
log line or an error message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from pydantic import AfterValidator, BeforeValidator, GetCoreSchemaHandler, ValidationInfo
from pydantic_core import core_schema

__all__ = [
    "SERIAL_OPTIONS", "Duration", "PositiveDuration", "Secret", "Size", "check_encoding", "check_host_port",
    "check_influx_url", "check_line_url", "check_modbus_url", "check_password", "check_serial_url",
    "check_token", "check_value_pattern", "parse_duration", "parse_size", "serial_settings",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
    "gb": 1000**3, "gib": 1024**3, "tb": 1000**4, "tib": 1024**4, None: 1,
}


def parse_duration(value: Any) -> float:
    """'500ms' | '1s' | '2m' | '1h' | '1d' | number -> seconds (float, >= 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '500ms', '1s' or '2m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a duration such as '500ms', '1s' or '2m', got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: Any) -> int:
    """'256KiB' | '2GiB' | number -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as '256KiB' or '2GiB'")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        unit = m.group(2).lower() if m.group(2) else None
        size = int(float(m.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError(f"expected a size such as '256KiB' or '2GiB', got {value!r}")
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


def check_host_port(parts: SplitResult) -> None:
    """Raise ValueError unless a split URL has a host and, if any, a port in 1..65535."""
    if not parts.hostname:
        raise ValueError("the URL has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("the URL's port is not a number in 1..65535")


SERIAL_OPTIONS = frozenset({"baudrate", "parity", "stopbits", "bytesize"})


def check_serial_url(parts: SplitResult) -> None:
    """Raise ValueError unless a split serial URL (`rtu:///dev/ttyUSB0?baudrate=19200&parity=E`,
    `serial:///dev/ttyS0?...`) has a device path and only known, well-formed options."""
    if not parts.path:
        raise ValueError(f"a {parts.scheme}:// URL needs a serial device path, e.g. {parts.scheme}:///dev/ttyUSB0")
    query = parse_qs(parts.query)
    unknown = set(query) - SERIAL_OPTIONS
    if unknown:
        raise ValueError(f"unknown {parts.scheme}:// option(s): {', '.join(sorted(unknown))}")
    if "parity" in query and query["parity"][0] not in ("N", "E", "O"):
        raise ValueError("parity must be N, E or O")
    for key in ("baudrate", "stopbits", "bytesize"):
        if key in query and not query[key][0].isdigit():
            raise ValueError(f"{key} must be a whole number")


def check_modbus_url(v: str) -> str:
    """A Modbus device's address: tcp://host:port or rtu:///dev/ttyX?baudrate=... (sources and
    controllers)."""
    parts = urlsplit(v)
    if parts.scheme == "tcp":
        check_host_port(parts)
    elif parts.scheme == "rtu":
        check_serial_url(parts)
    else:
        raise ValueError("expected tcp://host:port or rtu:///dev/ttyX?baudrate=...")
    return v


def check_line_url(v: str) -> str:
    """A line-oriented instrument's address: tcp://host:port (a port required) or
    serial:///dev/ttyX?baudrate=... (the instrument source, the SCPI controller)."""
    parts = urlsplit(v)
    if parts.scheme == "tcp":
        check_host_port(parts)
        if parts.port is None:
            raise ValueError("a tcp:// URL needs a port, e.g. tcp://192.0.2.10:5025")
    elif parts.scheme == "serial":
        check_serial_url(parts)
    else:
        raise ValueError("expected tcp://host:port or serial:///dev/ttyX?baudrate=9600")
    return v


def check_encoding(v: str) -> str:
    """A text encoding Python knows."""
    try:
        "".encode(v)
    except LookupError:
        raise ValueError(f"unknown encoding {v!r}") from None
    return v


def check_value_pattern(v: str) -> str:
    """A regular expression with a named group (?P<value>...) for the number a line carries:
    an instrument source's channel pattern, a SCPI controller's read-back pattern."""
    try:
        rx = re.compile(v)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    if "value" not in rx.groupindex:
        raise ValueError("the pattern needs a named group (?P<value>...) for the number")
    return v


def serial_settings(url: str, baudrate: int) -> tuple[str, dict[str, int | str]]:
    """(device path, pyserial settings) of a checked serial URL; `baudrate` is the default."""
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return parts.path, {
        "baudrate": int(q.get("baudrate", baudrate)),
        "parity": q.get("parity", "N"),
        "stopbits": int(q.get("stopbits", 1)),
        "bytesize": int(q.get("bytesize", 8)),
    }


def check_influx_url(url: str, names: str = "database/org/bucket") -> str:
    """An InfluxDB base URL (a sink's, the pipeline's source's): http(s), a host, a valid port,
    no credentials (checked first: the other messages echo the URL), no query; without its
    trailing '/'.  `names`: the keys that say what the query would.  Raise ValueError."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError("credentials do not belong in the URL; use username/password or token")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"the URL takes no query or fragment; use {names}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from None
    return url.rstrip("/")


def check_password(password: Secret | None, username: str | None, username_valid: bool) -> None:
    """InfluxDB basic auth, wherever a config takes it (a sink, the pipeline's source): a
    username needs a password and the reverse.  `username_valid`: the username key passed its
    own check (else its error is reported on its own).  Raise ValueError."""
    if password is None and username:
        raise ValueError("password is required with username")
    if password is not None and not username and username_valid:
        raise ValueError("password is given without username")


def check_token(token: Secret | None, username: str | None) -> None:
    """An InfluxDB token stands alone and is not empty.  Raise ValueError."""
    if token is not None and not token.get():
        raise ValueError("token is empty")
    if token is not None and username:
        raise ValueError("token and username/password exclude each other; give one")


def _positive(seconds: float, info: ValidationInfo) -> float:
    if seconds <= 0:
        raise ValueError(f"{info.field_name or 'the duration'} must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
Size = Annotated[int, BeforeValidator(parse_size)]


class Secret:
    """A credential: resolved from 'env:NAME' / 'file:PATH' at validation, never printed."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "inline"):
        self._value = value
        self.origin = origin

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden, {self.origin}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def resolve(cls, raw: Any) -> Secret:
        if isinstance(raw, Secret):
            return raw
        if not isinstance(raw, str):
            raise ValueError("expected a string, 'env:NAME' or 'file:/path'")
        if raw.startswith("env:"):
            name = raw[4:]
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set")
            return cls(os.environ[name], f"env:{name}")
        if raw.startswith("file:"):
            path = Path(raw[5:]).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
            lines = text.splitlines()
            return cls(lines[0].strip() if lines else "", f"file:{path}")
        return cls(raw)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.resolve,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda s: f"<hidden, {s.origin}>"
            ),
        )


