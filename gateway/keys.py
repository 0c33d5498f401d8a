"""Uplink signing keys: one random 32-byte HMAC-SHA256 key per (site, gateway).

`remotecal keys new --site S --gateway G --out DIR` writes one key file (mode 0600, owned by
whoever runs it).  The same file goes to two places: the gateway's `[[sinks.mqtt]] key_file`,
and the central ingest's keys folder (`[ingest] keys` in CENTRAL.toml), which holds one file
per gateway.  Each copy must be readable by the service's user and nobody else: written by
root, give it to that user's group (`chown root:remotecal`, `chmod 0640`).
A key file is a small TOML document that names whom the key belongs to, so a folder of keys
needs no index and a key copied to the wrong gateway is refused at start:

    # remotecal uplink key: secret; readable only by the service that uses it
    site = "lab 1"
    gateway = "gw,01"
    key = "<64 hex digits>"

Why a shared secret (HMAC) rather than signatures with key pairs: the ingest must hold a
secret per gateway either way to tell them apart, HMAC-SHA256 costs a microsecond per frame
where Ed25519 would need a dependency, and a leaked central keys folder is already a
compromised central site.  Rotating a key is `keys new` again (to a fresh folder), then
swapping both copies.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from gateway.configfile import dumps
from gateway.errors import ConfigError

__all__ = ["KEY_BYTES", "UplinkKey", "key_file_name", "keys_fingerprint", "load_key_file", "load_keys",
           "new_key_file"]

KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class UplinkKey:
    """The secret of one gateway; `secret` never shows in a repr."""

    site: str
    gateway: str
    secret: bytes = field(repr=False)
    path: Path | None = None


def key_file_name(site: str, gateway: str) -> str:
    """'lab 1', 'gw,01' -> 'lab%201+gw%2C01.key': every odd character quoted, so names never clash."""
    return f"{quote(site, safe='')}+{quote(gateway, safe='')}.key"


def new_key_file(site: str, gateway: str, out_dir: str | Path) -> Path:
    """Write a fresh random key for `site`/`gateway` into `out_dir`; never overwrite one."""
    for what, v in (("site", site), ("gateway", gateway)):
        if not v.strip() or any(ord(c) < 0x20 for c in v):
            raise ConfigError(f"--{what}: must be one line of text, not empty")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the folder: {exc.strerror}") from None
    path = out / key_file_name(site, gateway)
    text = dumps({"site": site, "gateway": gateway, "key": secrets.token_hex(KEY_BYTES)},
                 comment="remotecal uplink key: secret; readable only by the service that uses it")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path}: a key file is already there; remove it first to replace it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the key file: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return path


def load_key_file(path: str | Path) -> UplinkKey:
    """Read and check one key file; raise ConfigError naming the file and what is wrong."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the key file: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: not a key file ({exc})") from None
    site, gateway, key = data.get("site"), data.get("gateway"), data.get("key")
    if not isinstance(site, str) or not isinstance(gateway, str) or not isinstance(key, str):
        raise ConfigError(f"{p}: a key file needs site, gateway and key (strings)")
    try:
        secret = bytes.fromhex(key)
    except ValueError:
        raise ConfigError(f"{p}: key is not hexadecimal") from None
    if len(secret) != KEY_BYTES:
        raise ConfigError(f"{p}: key has {len(secret)} bytes, expected {KEY_BYTES}")
    return UplinkKey(site, gateway, secret, p)


def load_keys(path: str | Path) -> dict[tuple[str, str], UplinkKey]:
    """Every `*.key` file of a folder (or one file), by (site, gateway)."""
    p = Path(path)
    try:
        files = _key_files(p)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the keys folder: {exc.strerror or exc}") from None
    keys: dict[tuple[str, str], UplinkKey] = {}
    for f in files:
        k = load_key_file(f)
        if (k.site, k.gateway) in keys:
            other = keys[(k.site, k.gateway)].path
            raise ConfigError(f"{f}: a second key for {k.site}/{k.gateway} (the first is {other})")
        keys[(k.site, k.gateway)] = k
    return keys


def keys_fingerprint(path: str | Path) -> tuple[tuple[str, int, int, int], ...]:
    """(name, ctime_ns, mtime_ns, size) of every `*.key` file of a folder (or of the one file):
    changes when a key is added, removed, rewritten, or its owner or mode change (a key that
    could not be read is tried again once its permissions are fixed), for the price of one
    folder listing."""
    try:
        return tuple((f.name, (st := f.stat()).st_ctime_ns, st.st_mtime_ns, st.st_size)
                     for f in _key_files(Path(path)))
    except OSError:
        return ()


def _key_files(p: Path) -> list[Path]:
    """The `*.key` files of folder `p`, sorted, or `p` itself if it is a file; OSError if the
    folder cannot be listed (not Path.glob: it takes such a folder for an empty one)."""
    if not p.is_dir():
        return [p]
    with os.scandir(p) as entries:
        return sorted(Path(e.path) for e in entries if e.name.endswith(".key"))
