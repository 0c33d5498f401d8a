"""Config files, for every package's config: read TOML, report validation errors by key path,
write TOML from data.

Ground floor (SPEC section 1): `gateway.config` (the site config), `pipelines.config`,
`firmware_bridge.simulate` and the ingest's config all read their file with `read_toml` and
turn a pydantic `ValidationError` into one line per problem with `format_validation_error`,
so every command reports a bad file the same way:
`site.toml: sources.mqtt[0].topics[0].fields[1].quantity: unknown quantity 'humidity'; ...`.

`dumps` is the one TOML writer (tomli-w): the demo's configs, `keys new`'s key files and the
tests' harnesses build their configs as data and write them with it, so quoting and escaping
are never done by hand.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import tomli_w
from pydantic import ValidationError

from gateway.errors import ConfigError

__all__ = ["dumps", "format_validation_error", "read_toml"]


_KEYED = re.compile(r"^[A-Za-z_][\w.\[\]]*: ")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith(("function-", "literal[")) and "[" not in part:
            out += ("." if out else "") + part
    return out or "(top level)"


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: 'key.path: reason'. Secret values are never echoed."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = err["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        if err["type"] == "extra_forbidden":
            msg = "unknown key (a typo?)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        if not err["loc"] and _KEYED.match(msg):
            lines.append(msg)  # a check across tables that names its own key path
            continue
        lines.append(f"{_loc(tuple(err['loc']))}: {msg}")
    return lines


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; ConfigError (one line naming the file) when it cannot be read."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: the config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


def dumps(data: Mapping[str, Any], comment: str = "") -> str:
    """`data` as TOML (tomli-w): keys whose value is None are left out, paths become strings;
    `comment` (lines without their '# ') goes first."""
    head = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines())
    return head + tomli_w.dumps(_plain(data))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value

