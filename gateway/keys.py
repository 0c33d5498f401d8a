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

import logging
import os
import secrets
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from gateway.configfile import dumps
from gateway.errors import ConfigError

__all__ = ["KEY_BYTES", "KeyFolder", "UplinkKey", "key_file_name", "keys_fingerprint", "load_key_file",
           "load_keys", "new_key_file", "read_keys", "write_new_key_file"]

log = logging.getLogger("remotecal.keys")

KEY_BYTES = 32
LISTING_S = 1.0
"""`KeyFolder` lists the key files (names, times, sizes) at least this often while in use."""
LISTING_MIN_S = 0.05
"""... and at most this often when nothing but a frame's failed signature or a folder time of
the last second asks for it (a listing of 100 key files costs about 3 ms here)."""


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
    write_new_key_file(path, text, 0o600)
    return path


def write_new_key_file(path: Path, text: str, mode: int) -> None:
    """Write a key file that must not exist yet (never overwrite a key), with `mode` from the
    start, synced to disk; a file already there or an unwritable one is a ConfigError."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path}: a key file is already there; remove it first to replace it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the key file: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


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


Gateway = tuple[str, str]


def read_keys(path: str | Path) -> tuple[dict[Gateway, UplinkKey], list[str]]:
    """Every usable key of a folder (or one file), by (site, gateway), and the problems, one line
    each.  Each file stands on its own: a file that is not a key costs that file only, and
    two keys of one gateway cost that gateway only (neither is used: which one is meant is
    not ours to guess).  ConfigError if the folder cannot be listed."""
    p = Path(path)
    try:
        files = _key_files(p)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the keys folder: {exc.strerror or exc}") from None
    keys: dict[Gateway, UplinkKey] = {}
    twice: dict[Gateway, list[Path]] = {}
    problems: list[str] = []
    for f in files:
        try:
            k = load_key_file(f)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        g = (k.site, k.gateway)
        if g in keys or g in twice:
            first = keys.pop(g, None)
            twice.setdefault(g, [first.path] if first is not None and first.path else []).append(f)
        else:
            keys[g] = k
    for (site, gw), paths in twice.items():
        problems.append(f"{', '.join(map(str, paths))}: {len(paths)} keys for {site}/{gw}; none of them is "
                        "used until one is left")
    return keys, problems


class KeyFolder:
    """The keys of a folder (or of one key file) as they are now, read again when it changes.

    `refresh()` is meant for every frame: it costs one `stat` of the folder, whose time changes
    when a key file is added, removed or renamed in or out, so a revocation (removing the
    file) takes effect at the next frame.  A key file rewritten in place, or whose mode or
    owner changed, is found by a listing of every key file's name, times and size, made at
    least every `LISTING_S`, and every `LISTING_MIN_S` while the folder changed less than a
    second ago (a change within the file system's clock tick of our last look shows no new
    time) or a frame fails its key's signature (a key rewritten in place a moment ago).
    What it finds is always the folder's content (`read_keys`): a key whose file is gone is
    gone, whatever else the folder holds - a malformed file costs that file only, an empty
    folder has no key, a folder that cannot be listed has none either until it can be: a
    gateway without a key has its frames wait (the ingest keeps them), never verify.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self.keys: dict[Gateway, UplinkKey] = {}
        self.problems: list[str] = []
        self._stat: tuple[int, int, int] | None = None
        self._listing: object = None
        self._listed_at = -LISTING_S
        self._logged: set[str] = set()

    def load(self) -> dict[Gateway, UplinkKey]:
        """The first read: ConfigError if the folder cannot be listed (a wrong path at start);
        each file that is not a usable key is logged and left out."""
        self._stat = self._stat_now()
        self._listing = keys_fingerprint(self.path)
        self._listed_at = self._clock()
        self.keys, self.problems = read_keys(self.path)
        self._log_problems()
        return self.keys

    def refresh(self, *, list_files: bool = False) -> bool:
        """Read the keys again if the folder changed since the last look; True if they did.
        `list_files`: make the listing now (a frame that failed its key's signature: a key
        rewritten in place a moment ago)."""
        st = self._stat_now()
        now = self._clock()
        since = now - self._listed_at
        recent = st is not None and abs(time.time_ns() - st[0]) < 1_000_000_000
        due = st != self._stat or since >= LISTING_S or ((recent or list_files) and since >= LISTING_MIN_S)
        if not due:
            return False
        self._stat = st
        listing = keys_fingerprint(self.path)
        self._listed_at = now
        if listing == self._listing and st is not None:
            return False
        self._listing = listing
        try:
            keys, problems = read_keys(self.path)
        except ConfigError as exc:
            keys, problems = {}, [f"{exc}; no key is used until it can be listed again"]
        self.problems = problems
        self._log_problems()
        if {g: k.secret for g, k in keys.items()} == {g: k.secret for g, k in self.keys.items()}:
            self.keys = keys
            return False
        self.keys = keys
        return True

    def _stat_now(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    def _log_problems(self) -> None:
        for line in self.problems:
            if line not in self._logged:
                log.error("keys: %s", line)
        if self._logged and not self.problems:
            log.info("keys: every key file of %s can be read again", self.path)
        self._logged = set(self.problems)


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
