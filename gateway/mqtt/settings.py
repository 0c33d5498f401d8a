"""What one MQTT connection is: `LinkSettings`, built from a broker config block by
`link_settings` - the one constructor, for the MQTT source, the uplink sink, run control and
the ingest alike (their config sections share `gateway.mqtt_broker.BrokerConnection`, so a
URL, a credential or a TLS option means the same in each)."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gateway.config_types import Secret
from gateway.mqtt_broker import BrokerConnection, TlsConfig

__all__ = ["SESSION_NEVER_EXPIRES", "LinkSettings", "Subscription", "link_settings", "ssl_context"]

SESSION_NEVER_EXPIRES = 0xFFFFFFFF
"""MQTT 5's Session Expiry Interval for "never"."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter (a shared subscription `$share/group/filter` too) and its options."""

    topic_filter: str
    qos: Literal[0, 1] = 1
    retained: Literal["send", "never"] = "send"
    """Retain Handling: the broker sends the retained messages at each subscribe, or never."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: Secret | None = None
    tls: TlsConfig | None = None
    use_tls: bool = False
    keepalive: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    persistent: bool = False
    """Clean Start off: the broker keeps the session (and its unacknowledged messages)."""
    session_expiry_s: int = 0
    """How long the broker keeps the session once we are gone (SESSION_NEVER_EXPIRES: for ever)."""
    receive_maximum: int = 100
    """QoS 1 messages the broker may have in flight to us; also the inbox size at which
    reading the socket pauses."""
    subscriptions: tuple[Subscription, ...] = ()


def link_settings(broker: BrokerConnection, *, client_id: str, subscriptions: Sequence[Subscription] = (),
                  persistent: bool = False, session_expiry_s: int = 0,
                  receive_maximum: int = 100) -> LinkSettings:
    """The connection of a config block: its URL, credentials, TLS, keepalive and backoff;
    `client_id` is the block's own when it has one."""
    return LinkSettings(
        host=broker.host, port=broker.port, client_id=broker.client_id or client_id,
        username=broker.username, password=broker.password, tls=broker.tls, use_tls=broker.uses_tls,
        keepalive=broker.keepalive, reconnect_min=broker.reconnect_min, reconnect_max=broker.reconnect_max,
        persistent=persistent, session_expiry_s=session_expiry_s,
        receive_maximum=max(1, min(receive_maximum, 65535)), subscriptions=tuple(subscriptions),
    )


def ssl_context(s: LinkSettings) -> ssl.SSLContext | None:
    """The TLS context of `s` (None without TLS): server certificate checked against
    `tls.ca_file` (or the system's CAs), client certificate when given."""
    if not s.use_tls:
        return None
    tls = s.tls
    ctx = ssl.create_default_context(cafile=tls.ca_file if tls else None)
    if tls and tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls and tls.insecure:
        ctx.check_hostname = False
    return ctx
