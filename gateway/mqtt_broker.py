"""What every MQTT client of remotecal needs to reach a broker: the MQTT source, the uplink
sink and the central ingest share this schema, so a URL or TLS option means the same in all
three config sections."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.config_types import Duration, Secret, check_host_port

__all__ = ["BrokerConnection", "TlsConfig"]


class TlsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = Field(default=False, description="skip the server hostname check (tests only)")


class BrokerConnection(BaseModel):
    """`url` (mqtt:// or mqtts://), credentials, TLS, keepalive and the reconnect backoff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    client_id: str | None = None
    username: str | None = None
    password: Secret | None = None
    tls: TlsConfig | None = None
    keepalive: Duration = 30.0
    reconnect_min: Duration = 0.5
    reconnect_max: Duration = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if "@" in parts.netloc:
            raise ValueError("credentials do not belong in the URL; use username/password")
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
        check_host_port(parts)
        return v

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.uses_tls else 1883)

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme in ("mqtts", "ssl") or self.tls is not None
