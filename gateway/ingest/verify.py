"""Is this message a frame that one of our gateways signed?  The checks, in order:

    topic      {prefix}/{site}/{gateway}/readings, canonically encoded     "malformed"
    header     magic, version, long enough to hold a signature            "malformed"
    key        a key is registered for the topic's site/gateway           "unknown gateway"
    signature  HMAC-SHA256 of the body under that key                     "bad signature"
    body       decodes completely, no stray bytes                         "malformed"
    identity   the frame names the topic's site/gateway, and so does     "foreign"
               every record in it

A record of a good frame that cannot be written (a value that is not finite, a reading
without a channel: `Frame.invalid`) does not refuse its frame: the ingest quarantines that
record alone, with its reason, and journals the others.

The signature is checked before the body is decoded, so an attacker's bytes are never
parsed beyond the fixed header.  The replay check (`gateway.ingest.replay`) comes after.

Keys are read again, without a restart, when a frame names a gateway with no key or fails
its key's signature (a gateway just provisioned, a key just replaced) and the keys folder
changed since it was read (a listing of names, times and sizes: a flood of forged frames
costs one listing each, never a re-read), and by `reload()` (the ingest calls it every
minute, so a removed key stops verifying within one).  A folder that cannot be read again
(a key file unreadable, two keys of one gateway) is logged once, and the keys already
loaded stay in force.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from gateway.errors import ConfigError, PayloadError
from gateway.keys import UplinkKey
from gateway.sinks.mqtt.frame import Frame, decode_frame, frame_header, split_topic, verify

__all__ = ["REJECT_KINDS", "FrameVerifier", "Rejection"]

log = logging.getLogger("remotecal.ingest")

REJECT_KINDS = ("malformed", "unknown gateway", "bad signature", "foreign", "replayed", "too old")


class Rejection(PayloadError):
    """A refused frame; `kind` is one of REJECT_KINDS (the counters' key)."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


class FrameVerifier:
    """Checks frames against the keys; `load`, if given, reads the keys again on demand."""

    def __init__(self, prefix: str, keys: Mapping[tuple[str, str], UplinkKey], *,
                 load: Callable[[], Mapping[tuple[str, str], UplinkKey]] | None = None,
                 fingerprint: Callable[[], object] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.prefix = prefix
        self.on_change = on_change
        self.keys = keys
        self._load = load
        self._fingerprint = fingerprint
        self._seen: object = None  # the first reload reads: `keys` may be older than any listing
        self._failure: str | None = None

    def reload(self) -> bool:
        """Read the keys again if the folder changed since the last read; True if they did."""
        if self._load is None:
            return False
        if self._fingerprint is not None:
            now = self._fingerprint()
            if now == self._seen:
                return False
            self._seen = now
        try:
            keys = self._load()
            if self.keys and not keys:
                raise ConfigError("the keys folder holds no key now; taken for a mistake "
                                  "(restart the ingest to run without keys)")
        except (ConfigError, OSError) as exc:
            if str(exc) != self._failure:
                log.error("ingest: cannot read the keys again (%s); the %d loaded stay in force",
                          exc, len(self.keys))
                self._failure = str(exc)
            return False
        if self._failure is not None:
            log.info("ingest: the keys can be read again")
            self._failure = None
        old = {g: k.secret for g, k in self.keys.items()}
        new = {g: k.secret for g, k in keys.items()}
        if new == old:
            return False
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        changed = sorted(g for g in set(new) & set(old) if new[g] != old[g])
        log.info("ingest: keys read again: %d in all; new %s, removed %s, replaced %s", len(keys),
                 _names(added), _names(removed), _names(changed))
        self.keys = keys
        if self.on_change is not None:
            self.on_change()
        return True

    def check(self, topic: str, payload: bytes) -> Frame:
        """The decoded frame, or Rejection with its kind and reason."""
        try:
            site, gateway = split_topic(self.prefix, topic)
            frame_header(payload)
        except PayloadError as exc:
            raise Rejection("malformed", exc.reason) from None
        key = self.keys.get((site, gateway))
        if key is None and self.reload():
            key = self.keys.get((site, gateway))
        if key is None:
            raise Rejection("unknown gateway", f"no key is registered for {site}/{gateway}")
        try:
            body = verify(key.secret, payload)
        except PayloadError as exc:
            fresh = self.keys.get((site, gateway)) if self.reload() else None
            if fresh is None or fresh.secret == key.secret:
                raise Rejection("bad signature", f"{exc.reason} under the key of {site}/{gateway}") from None
            try:
                body = verify(fresh.secret, payload)
            except PayloadError as exc2:
                raise Rejection("bad signature",
                                f"{exc2.reason} under the key of {site}/{gateway}") from None
        try:
            frame = decode_frame(body)
        except PayloadError as exc:
            raise Rejection("malformed", exc.reason) from None
        if (frame.site, frame.gateway) != (site, gateway):
            raise Rejection("foreign",
                            f"a frame of {frame.site}/{frame.gateway} on the topic of {site}/{gateway}")
        for r in (*frame.records, *(r for r, _ in frame.invalid)):
            if (r.site, r.gateway) != (site, gateway):
                raise Rejection("foreign", f"a record of {r.site}/{r.gateway} in a frame of {site}/{gateway}")
        return frame


def _names(gateways: list[tuple[str, str]]) -> str:
    return ", ".join(f"{s}/{g}" for s, g in gateways) or "none"
