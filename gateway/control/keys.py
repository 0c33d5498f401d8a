"""Ed25519 key pairs of remote run control: the institute's command key, and each gateway's
answer key.

    remotecal keys new --institute NAME --out DIR
        DIR/NAME.institute.key   private (mode 0600): signs commands; stays at the institute
        DIR/NAME.institute.pub   public: install on every gateway it may steer ([control] keys)

    a gateway's answer key (made at its first start, or `keys new --site S --gateway G --control`)
        S+G.control.key          private (mode 0600): signs the gateway's acknowledgements
        S+G.control.pub          public: give it to the institute (CONTROL.toml gateway_keys)

Key files are small TOML documents naming whose key they are, like the uplink's
(`gateway.keys`), so a folder of public keys needs no index:

    # remotecal institute command key (public half): install on each gateway ([control] keys)
    kind = "institute"
    institute = "nmc"
    public_key = "<64 hex digits>"   # raw Ed25519 public key
    key_id = "<16 hex digits>"       # SHA-256 of the public key, its first 8 bytes

A private key file also holds `private_key` (the raw 32-byte seed, hex).  Why Ed25519 and not
the uplink's HMAC: a gateway must be able to check a command without holding anything that
could forge one, and the institute must be able to check an answer with nothing secret.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.configfile import dumps
from gateway.errors import ConfigError
from gateway.keys import write_new_key_file

__all__ = [
    "KINDS",
    "PrivateKey",
    "PublicKey",
    "key_id",
    "keys_fingerprint",
    "load_private_key",
    "load_public_keys",
    "new_key_pair",
    "pair_names",
]

KINDS = ("institute", "gateway")


def key_id(raw_public: bytes) -> str:
    """The short name of a public key: the first 8 bytes of its SHA-256, hex."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key and whose it is: `owner` is the institute's name, or "site/gateway"."""

    kind: str
    owner: str
    raw: bytes
    path: Path | None = None
    site: str = ""
    gateway: str = ""

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A private key (never in a repr) with its public half."""

    public: PublicKey
    seed: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, data: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(data)


def _one_line(what: str, v: str) -> None:
    if not v.strip() or any(ord(c) < 0x20 for c in v):
        raise ConfigError(f"--{what}: must be one line of text, not empty")


def pair_names(kind: str, owner: str, gateway: str = "") -> tuple[str, str]:
    """File names of a key pair: 'nmc.institute.key'/'.pub', or 'lab%201+gw01.control.key'/'.pub'."""
    stem = (
        f"{quote(owner, safe='')}.institute"
        if kind == "institute"
        else f"{quote(owner, safe='')}+{quote(gateway, safe='')}.control"
    )
    return f"{stem}.key", f"{stem}.pub"


def new_key_pair(
    kind: str,
    out_dir: str | Path,
    *,
    institute: str = "",
    site: str = "",
    gateway: str = "",
    names: tuple[str, str] | None = None,
) -> tuple[Path, Path]:
    """Write a fresh key pair into `out_dir` (private 0600, public 0644); never overwrite one.
    `kind` "institute" needs `institute`; "gateway" needs `site` and `gateway`; `names`: the
    files' names instead of `pair_names`."""
    if kind == "institute":
        _one_line("institute", institute)
        owner = {"institute": institute}
        key_name, pub_name = pair_names(kind, institute)
        comments = (
            "remotecal institute command key: SECRET - signs remote run commands; keep it at "
            "the institute, readable only by those who may steer runs",
            "remotecal institute command key (public half): install on each gateway it may "
            "steer ([control] keys)",
        )
    elif kind == "gateway":
        _one_line("site", site)
        _one_line("gateway", gateway)
        owner = {"site": site, "gateway": gateway}
        key_name, pub_name = pair_names(kind, site, gateway)
        comments = (
            "remotecal gateway answer key: SECRET - signs this gateway's answers to remote "
            "commands; readable only by the gateway's service",
            "remotecal gateway answer key (public half): give it to the institute "
            "(CONTROL.toml gateway_keys) so it can check this gateway's answers",
        )
    else:
        raise ValueError(f"unknown key kind {kind!r}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the folder: {exc.strerror}") from None
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    raw = private.public_key().public_bytes_raw()
    public = {"kind": kind, **owner, "public_key": raw.hex(), "key_id": key_id(raw)}
    if names is not None:
        key_name, pub_name = names
    key_path, pub_path = out / key_name, out / pub_name
    for p in (key_path, pub_path):
        if p.exists():
            raise ConfigError(f"{p}: a key file is already there; remove it first to replace it")
    write_new_key_file(key_path, dumps({**public, "private_key": seed.hex()}, comment=comments[0]), 0o600)
    write_new_key_file(pub_path, dumps(public, comment=comments[1]), 0o644)
    return key_path, pub_path


def _read(p: Path) -> dict[str, object]:
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the key file: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: not a key file ({exc})") from None


def _hex32(p: Path, data: dict[str, object], name: str) -> bytes:
    v = data.get(name)
    if not isinstance(v, str):
        raise ConfigError(f"{p}: {name} is missing (not a remotecal control key file?)")
    try:
        raw = bytes.fromhex(v)
    except ValueError:
        raise ConfigError(f"{p}: {name} is not hexadecimal") from None
    if len(raw) != 32:
        raise ConfigError(f"{p}: {name} has {len(raw)} bytes, expected 32")
    return raw


def _public(p: Path, data: dict[str, object]) -> PublicKey:
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{p}: kind must be one of {', '.join(KINDS)} (not a control key file?)")
    raw = _hex32(p, data, "public_key")
    if kind == "institute":
        owner = data.get("institute")
        if not isinstance(owner, str) or not owner:
            raise ConfigError(f"{p}: an institute key names its institute")
        return PublicKey("institute", owner, raw, p)
    site, gw = data.get("site"), data.get("gateway")
    if not isinstance(site, str) or not isinstance(gw, str) or not site or not gw:
        raise ConfigError(f"{p}: a gateway key names its site and gateway")
    return PublicKey("gateway", f"{site}/{gw}", raw, p, site, gw)


def load_private_key(path: str | Path, kind: str | None = None) -> PrivateKey:
    """A private key file; ConfigError naming the file if it is not one (of `kind`)."""
    p = Path(path)
    data = _read(p)
    if "private_key" not in data:
        raise ConfigError(f"{p}: holds no private_key (a .pub file? the private half is the .key file)")
    public = _public(p, data)
    if kind is not None and public.kind != kind:
        raise ConfigError(f"{p}: a {public.kind} key, expected a {kind} key")
    seed = _hex32(p, data, "private_key")
    if Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw() != public.raw:
        raise ConfigError(f"{p}: private_key and public_key are not one pair")
    return PrivateKey(public, seed)


def load_public_keys(path: str | Path, kind: str) -> dict[str, PublicKey]:
    """Every `*.pub` of a folder (or one file: a .pub, or a private .key whose public half is
    used), of `kind`, by key id."""
    p = Path(path)
    try:
        files = sorted(f for f in p.iterdir() if f.name.endswith(".pub")) if p.is_dir() else [p]
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the keys folder: {exc.strerror or exc}") from None
    keys: dict[str, PublicKey] = {}
    for f in files:
        k = _public(f, _read(f))
        if k.kind != kind:
            raise ConfigError(f"{f}: a {k.kind} key, expected {kind} keys here")
        keys.setdefault(k.key_id, k)
    return keys


def keys_fingerprint(path: str | Path) -> Callable[[], object]:
    """A function telling whether the key files changed: (name, mtime_ns, size) of each."""
    p = Path(path)

    def fingerprint() -> object:
        try:
            files = sorted(p.iterdir()) if p.is_dir() else [p]
            return tuple((f.name, (st := f.stat()).st_mtime_ns, st.st_size) for f in files)
        except OSError:
            return ()

    return fingerprint
