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

Keys come from a `KeyFolder` (gateway.keys), looked at before each frame (one `stat` of the
folder; a listing of its key files at most each second): a key added, replaced or removed
counts from the next frame on - a removed key (revoked) verifies nothing more, whatever the
other files of the folder hold, and so does the last key removed.  A frame that names a
gateway without a key, or fails its key's signature, also has the folder listed at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from gateway.errors import PayloadError
from gateway.keys import KeyFolder, UplinkKey
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
    """Checks frames against the keys: a fixed set, or those of a `KeyFolder` as they are now."""

    def __init__(self, prefix: str, keys: Mapping[tuple[str, str], UplinkKey] | KeyFolder, *,
                 on_change: Callable[[], None] | None = None) -> None:
        self.prefix = prefix
        self.on_change = on_change
        self._folder = keys if isinstance(keys, KeyFolder) else None
        self._keys = {} if isinstance(keys, KeyFolder) else dict(keys)

    @property
    def keys(self) -> Mapping[tuple[str, str], UplinkKey]:
        return self._folder.keys if self._folder is not None else self._keys

    def refresh(self, *, list_files: bool = False) -> bool:
        """Take the keys folder as it is now; True (and `on_change`) if the keys changed."""
        if self._folder is None:
            return False
        old = {g: k.secret for g, k in self._folder.keys.items()}
        if not self._folder.refresh(list_files=list_files):
            return False
        new = {g: k.secret for g, k in self._folder.keys.items()}
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        changed = sorted(g for g in set(new) & set(old) if new[g] != old[g])
        log.info("ingest: keys read again: %d in all; new %s, removed %s, replaced %s", len(new),
                 _names(added), _names(removed), _names(changed))
        if not new:
            log.warning("ingest: no gateway key is in %s now: every frame waits for its key",
                        self._folder.path)
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
        self.refresh()
        key = self.keys.get((site, gateway))
        if key is None and self.refresh(list_files=True):
            key = self.keys.get((site, gateway))
        if key is None:
            raise Rejection("unknown gateway", f"no key is registered for {site}/{gateway}")
        try:
            body = verify(key.secret, payload)
        except PayloadError as exc:
            fresh = self.keys.get((site, gateway)) if self.refresh(list_files=True) else None
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
