"""Is this message a frame that one of our gateways signed?  The checks, in order:

    topic      {prefix}/{site}/{gateway}/readings, canonically encoded     "malformed"
    header     magic, version, long enough to hold a signature            "malformed"
    key        a key is registered for the topic's site/gateway           "unknown gateway"
    signature  HMAC-SHA256 of the body under that key                     "bad signature"
    body       decodes completely, no stray bytes, finite values          "malformed"
    identity   the frame names the topic's site/gateway, and so does     "foreign"
               every record in it

The signature is checked before the body is decoded, so an attacker's bytes are never
parsed beyond the fixed header.  The replay check (`gateway.ingest.replay`) comes after.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import PayloadError
from gateway.keys import UplinkKey
from gateway.sinks.mqtt.frame import Frame, decode_frame, frame_header, split_topic, verify

__all__ = ["REJECT_KINDS", "FrameVerifier", "Rejection"]

REJECT_KINDS = ("malformed", "unknown gateway", "bad signature", "foreign", "replayed", "too old")


class Rejection(PayloadError):
    """A refused frame; `kind` is one of REJECT_KINDS (the counters' key)."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


class FrameVerifier:
    def __init__(self, prefix: str, keys: Mapping[tuple[str, str], UplinkKey]) -> None:
        self.prefix = prefix
        self.keys = keys

    def check(self, topic: str, payload: bytes) -> Frame:
        """The decoded frame, or Rejection with its kind and reason."""
        try:
            site, gateway = split_topic(self.prefix, topic)
            frame_header(payload)
        except PayloadError as exc:
            raise Rejection("malformed", exc.reason) from None
        key = self.keys.get((site, gateway))
        if key is None:
            raise Rejection("unknown gateway", f"no key is registered for {site}/{gateway}")
        try:
            body = verify(key.secret, payload)
        except PayloadError as exc:
            raise Rejection("bad signature", f"{exc.reason} under the key of {site}/{gateway}") from None
        try:
            frame = decode_frame(body)
        except PayloadError as exc:
            raise Rejection("malformed", exc.reason) from None
        if (frame.site, frame.gateway) != (site, gateway):
            raise Rejection("foreign",
                            f"a frame of {frame.site}/{frame.gateway} on the topic of {site}/{gateway}")
        for r in frame.records:
            if (r.site, r.gateway) != (site, gateway):
                raise Rejection("foreign", f"a record of {r.site}/{r.gateway} in a frame of {site}/{gateway}")
        return frame
