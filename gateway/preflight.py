"""What `gateway run` would refuse at start, found before it starts: `gateway check` runs all of
it, and `gateway run` runs it first, so such a problem is one line per cause and exit 2 (the
systemd unit does not restart on 2), never a traceback or a bare "Permission denied".

    data_dir       exists as a folder this user can write in, or can be created (the nearest
                   existing folder above it is writable); the files the gateway keeps there
                   (journal.db, lock, ...) are readable and writable by this user - a gateway
                   run once as root leaves them to root
    *_file keys    (TLS ca_file/cert_file/key_file, the uplink key_file) readable files
    sources/sinks  built as `gateway run` builds them: an uplink key of another gateway, a PEM
                   that is not one, ... (`build=True`)

The checks leave nothing behind: a probe file or folder is removed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import ssl
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway.config import GatewayConfig
from gateway.errors import ConfigError, os_error_text

__all__ = ["check_data_dir", "check_files", "preflight"]

_FILE_KEYS = frozenset({"ca_file", "cert_file", "key_file"})
_KEPT = ("journal.db", "journal.db-wal", "journal.db-shm", "journal.state", "lock")
"""Files of a data_dir that the gateway opens for writing, when they exist."""


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _owner(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return ""
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = f"uid {st.st_uid}"
    return f"; {path.name} belongs to {owner}, mode {stat.S_IMODE(st.st_mode):04o}"


def _why(exc: OSError, path: Path) -> str:
    """An OSError in words, with who we are when permissions are the cause."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
    if exc.errno in (13, 1):  # EACCES, EPERM
        return f"{reason.lower()} for user {_user()}{_owner(path)}"
    return reason.lower()


def check_data_dir(data_dir: Path) -> list[str]:
    """Problems with `data_dir` for this user (empty: the gateway can keep its journal there)."""
    key = "gateway.data_dir"
    if data_dir.exists():
        if not data_dir.is_dir():
            return [f"{key}: {data_dir} is a file, not a folder"]
        problems = []
        try:
            fd, probe = tempfile.mkstemp(prefix=".remotecal-check-", dir=data_dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            problems.append(f"{key}: cannot write in {data_dir}: {_why(exc, data_dir)}")
        bad = [name for name in _KEPT
               if (data_dir / name).exists() and not os.access(data_dir / name, os.R_OK | os.W_OK)]
        if bad:
            problems.append(f"{key}: {', '.join(bad)} in {data_dir} cannot be read and written by user "
                            f"{_user()}{_owner(data_dir / bad[0])} - was the gateway run as another user? "
                            f"Give the data_dir to this one: chown -R {_user()} {data_dir}")
        return problems
    above = data_dir.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        return [f"{key}: {data_dir} cannot be created: {above} is a file, not a folder"]
    try:
        Path(tempfile.mkdtemp(prefix=".remotecal-check-", dir=above)).rmdir()
    except OSError as exc:
        return [f"{key}: {data_dir} cannot be created in {above}: {_why(exc, above)}"]
    return []


def _file_fields(model: Any, where: str) -> Iterator[tuple[str, Path]]:
    if isinstance(model, BaseModel):
        for name in type(model).model_fields:
            value = getattr(model, name)
            at = f"{where}.{name}" if where else name
            if name in _FILE_KEYS and isinstance(value, str | Path):
                yield at, Path(value)
            else:
                yield from _file_fields(value, at)
    elif isinstance(model, list | tuple):
        for i, item in enumerate(model):
            yield from _file_fields(item, f"{where}[{i}]")


def check_files(cfg: GatewayConfig) -> list[str]:
    """Every TLS and key file the sources, sinks and controllers name: a file this user can read."""
    problems = []
    for section in ("sources", "sinks", "controllers"):
        for key, path in _file_fields(getattr(cfg, section, None), section):
            try:
                with open(path, "rb") as f:
                    f.read(1)
            except OSError as exc:
                problems.append(f"{key}: cannot read {path}: {_why(exc, path)}")
    return problems


def _build(cfg: GatewayConfig) -> list[str]:
    """Build the sources, sinks and controllers as `gateway run` does (nothing connects)."""
    from gateway.controllers import build_controllers
    from gateway.runtime import build_sinks, build_sources

    try:
        build_sources(cfg)
        build_controllers(cfg)
        sinks = build_sinks(cfg)
    except ConfigError as exc:
        return exc.problems
    except ssl.SSLError as exc:
        return [f"TLS: {exc.reason or exc}: a ca_file, cert_file or key_file is not what it should be"]
    except OSError as exc:
        return [os_error_text(exc)]

    async def close() -> None:
        for s in sinks:
            with contextlib.suppress(Exception):
                await s.aclose()

    asyncio.run(close())
    return []


def preflight(cfg: GatewayConfig, *, build: bool = True) -> None:
    """Raise ConfigError with every problem `gateway run` would meet at its start."""
    problems = check_data_dir(cfg.gateway.data_dir) + check_files(cfg)
    if not problems and build:
        problems = _build(cfg)
    if problems:
        raise ConfigError(problems)
