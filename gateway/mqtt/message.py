"""One received MQTT message, as a link hands it over (the MQTT 5 link of `gateway.mqtt`, or
the MQTT source's 3.1.1 fallback)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Message"]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    generation: int
    """Which connection brought it: a PUBACK goes only to that one."""
    received_ns: int
    error: str | None = None
    """Set when the packet itself was malformed: the message is quarantined with this reason."""
    retain: bool = False
    """A retained message the broker sent because we subscribed (not a live one): an old copy,
    sent again at every subscribe."""
