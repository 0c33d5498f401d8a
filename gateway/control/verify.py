"""Is this command one the institute signed, for this gateway, now, and the first time?

The checks, in order (the first that fails is the refusal's kind):

    envelope     JSON envelope, version 1, key/body/sig                    "malformed"
    signature    an installed institute key signed the exact body bytes    "bad signature"
    body         every field present and of its type                        "malformed"
    address      the body names this site and gateway                       "wrong gateway"
    expiry       not past `expires_ns`; not further ahead than max_ttl      "expired"
    replay       (key, seq) not seen before (kept in the journal)          "replayed"
    allowed      [control] allow_remote = true                              "remote control disabled"

The signature is checked before the body is parsed, so a forger's bytes are never read beyond
the envelope.  A command passing the first five checks is *claimed*: its key and sequence
number are stored (`ReplayStore.claim`, the journal's `control_seen` table) before anything is
done, and kept until its expiry has passed (then it is refused as expired anyway), so neither
a restart nor a refusal for another reason reopens it.  A gateway with remote control disabled
still checks what it can, so a forged command is reported as forged.

The keys folder is looked at (names, times, sizes) before each command and read again when it
changed: a key installed is taken, a key removed no longer verifies, without a restart.  A
folder that cannot be read keeps the keys in force (logged); an empty one refuses everything.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.control.envelope import Command, Envelope, Refusal, open_envelope, parse_command, verify_command
from gateway.control.keys import PublicKey
from gateway.errors import ConfigError

__all__ = ["Checked", "CommandVerifier", "MemoryReplayStore", "ReplayStore"]

log = logging.getLogger("remotecal.control")


class ReplayStore(Protocol):
    async def claim(self, key: str, seq: int, expires_ns: int) -> bool:
        """Remember (key, seq) until `expires_ns`; False if it was remembered already."""
        ...


class MemoryReplayStore:
    """A ReplayStore in memory (tests; the gateway uses its journal)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], int] = {}

    async def claim(self, key: str, seq: int, expires_ns: int) -> bool:
        if (key, seq) in self.seen:
            return False
        self.seen[(key, seq)] = expires_ns
        return True


@dataclass(frozen=True, slots=True)
class Checked:
    """What a check found: the command (as far as it could be read), who signed it, and the
    refusal (None: the command may be carried out)."""

    envelope: Envelope | None
    command: Command | None
    key: PublicKey | None
    refusal: Refusal | None


class CommandVerifier:
    """Checks commands for one gateway against the installed institute keys."""

    def __init__(
        self,
        site: str,
        gateway: str,
        keys: dict[str, PublicKey],
        replay: ReplayStore,
        *,
        allow_remote: bool = True,
        max_ttl_s: float = 3600.0,
        clock: Callable[[], int] = time.time_ns,
        reload: Callable[[], dict[str, PublicKey]] | None = None,
        fingerprint: Callable[[], object] | None = None,
    ) -> None:
        self.site = site
        self.gateway = gateway
        self.keys = keys
        self.replay = replay
        self.allow_remote = allow_remote
        self.max_ttl_ns = int(max_ttl_s * 1e9)
        self.clock = clock
        self._reload = reload
        self._fingerprint = fingerprint
        self._seen = fingerprint() if fingerprint is not None else None

    def _keys_again(self) -> bool:
        """Read the keys again if their files changed (a key just installed); True if they did."""
        if self._reload is None or self._fingerprint is None:
            return False
        now = self._fingerprint()
        if now == self._seen:
            return False
        self._seen = now
        try:
            keys = self._reload()
        except ConfigError as exc:
            log.error(
                "control: cannot read the institute keys again (%s); the %d loaded stay in force",
                exc,
                len(self.keys),
            )
            return False
        if self.keys and not keys:
            log.error("control: the institute keys folder holds no key now; every remote command is refused "
                      "until one is installed")
        changed = keys != self.keys
        if changed:
            log.info(
                "control: institute keys read again: %s",
                ", ".join(f"{k.owner} ({kid})" for kid, k in sorted(keys.items())) or "none",
            )
            self.keys = keys
        return changed

    async def check(self, payload: bytes) -> Checked:
        env: Envelope | None = None
        cmd: Command | None = None
        key: PublicKey | None = None
        try:
            env = open_envelope(payload)
            if not self.allow_remote and not self.keys:
                raise Refusal(
                    "remote control disabled",
                    "[control] allow_remote = false on this gateway: only local commands are taken",
                )
            # The keys as they are now (a folder listing per command): a key just installed is
            # taken, and a key removed (revoked) no longer verifies - without a restart.
            self._keys_again()
            key = verify_command(env, self.keys)
            cmd = parse_command(env.body)
            if (cmd.site, cmd.gateway) != (self.site, self.gateway):
                raise Refusal(
                    "wrong gateway",
                    f"addressed to {cmd.site}/{cmd.gateway}, this is {self.site}/{self.gateway}",
                )
            now = self.clock()
            if cmd.expires_ns <= now:
                raise Refusal("expired", f"expired {(now - cmd.expires_ns) / 1e9:.1f} s ago")
            if cmd.expires_ns - now > self.max_ttl_ns:
                raise Refusal(
                    "expired",
                    f"expires in {(cmd.expires_ns - now) / 1e9:.0f} s, further ahead "
                    f"than [control] max_ttl ({self.max_ttl_ns / 1e9:.0f} s) allows",
                )
            if not await self.replay.claim(key.key_id, cmd.seq, cmd.expires_ns):
                raise Refusal(
                    "replayed", f"sequence number {cmd.seq} of key {key.key_id} was received before"
                )
            if not self.allow_remote:
                raise Refusal(
                    "remote control disabled",
                    "[control] allow_remote = false on this gateway: only local commands are taken",
                )
        except Refusal as refusal:
            if cmd is None and env is not None:
                cmd = _partial(env)  # what it claims, for the journal and the answer (`key` says if signed)
            return Checked(env, cmd, key, refusal)
        return Checked(env, cmd, key, None)


def _partial(env: Envelope) -> Command | None:
    """What a body that is not a good command claims (for the journal; not to be trusted)."""
    try:
        d = json.loads(env.body)
        seq = d.get("seq")
        return Command(
            site=_clip(d.get("site")),
            gateway=_clip(d.get("gateway")),
            command=_clip(d.get("command")),
            actor=_clip(d.get("actor")),
            seq=seq if type(seq) is int and 0 <= seq < 2**63 else 0,
            issued_ns=0,
            expires_ns=0,
        )
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None


def _clip(v: object) -> str:
    """Untrusted text for a log line, a journal row and a field: one line, at most 100 characters."""
    text = v if isinstance(v, str) else ""
    return "".join(c if c.isprintable() else "?" for c in text[:100])
