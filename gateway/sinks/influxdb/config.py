"""Config of one `[[sinks.influxdb]]` block (see sample.toml).

api = "v1" writes with POST /write?db=&rp= (InfluxDB 1.x, and the 1.x compatibility API of
InfluxDB 2.x/3.x and VictoriaMetrics), with basic auth or a token; api = "v2" writes with
POST /api/v2/write?org=&bucket= and a token.  Keys of the other API are refused rather than
ignored, so a half-edited block fails at start with the key that is wrong.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from gateway.config_types import Duration, Secret, check_influx_url, check_password, check_token

__all__ = ["InfluxDBSinkConfig"]

_V1_ONLY = "applies to api = 'v1' only"
_V2_ONLY = "applies to api = 'v2' only"


def _api(info: ValidationInfo) -> str | None:
    # None when `api` itself was invalid: that error is reported on its own.
    api: str | None = info.data.get("api")
    return api


class InfluxDBSinkConfig(BaseModel):
    """Where and how one InfluxDB sink writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1)
    url: str
    api: Literal["v1", "v2"] = "v1"
    database: str | None = Field(default=None, validate_default=True)
    retention_policy: str | None = Field(default=None, validate_default=True)
    username: str | None = Field(default=None, validate_default=True)
    password: Secret | None = Field(default=None, validate_default=True)
    token: Secret | None = Field(default=None, validate_default=True)
    org: str | None = Field(default=None, validate_default=True)
    bucket: str | None = Field(default=None, validate_default=True)
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval: Duration = 1.0
    timeout: Duration = Field(default=10.0, gt=0)
    gzip: bool = True
    max_retry_interval: Duration = Field(default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_influx_url(v)

    @field_validator("database")
    @classmethod
    def _database(cls, v: str | None, info: ValidationInfo) -> str | None:
        api = _api(info)
        if api == "v1" and not v:
            raise ValueError("database is required with api = 'v1'")
        if api == "v2" and v is not None:
            raise ValueError(f"database {_V1_ONLY}; with api = 'v2' set bucket")
        return v

    @field_validator("retention_policy", "username")
    @classmethod
    def _v1_only(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and _api(info) == "v2":
            raise ValueError(f"{info.field_name} {_V1_ONLY}")
        if v == "":
            raise ValueError(f"{info.field_name} cannot be empty; leave it out instead")
        return v

    @field_validator("password")
    @classmethod
    def _password(cls, v: Secret | None, info: ValidationInfo) -> Secret | None:
        if v is not None and _api(info) == "v2":
            raise ValueError(f"password {_V1_ONLY}; api = 'v2' authenticates with token")
        check_password(v, info.data.get("username"), "username" in info.data)
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: Secret | None, info: ValidationInfo) -> Secret | None:
        api = _api(info)
        if api == "v2" and v is None:
            raise ValueError("token is required with api = 'v2'")
        check_token(v, info.data.get("username"))
        return v

    @field_validator("org", "bucket")
    @classmethod
    def _v2_only(cls, v: str | None, info: ValidationInfo) -> str | None:
        api = _api(info)
        if api == "v2" and not v:
            raise ValueError(f"{info.field_name} is required with api = 'v2'")
        if api == "v1" and v is not None:
            raise ValueError(f"{info.field_name} {_V2_ONLY}; with api = 'v1' set database")
        return v

    def target(self) -> str:
        """Where the points go: the sink's identity when it has no name (a journal cursor is
        kept under it, so it must not depend on the sink's place in the config)."""
        if self.api == "v2":
            return f"{self.url} org={self.org} bucket={self.bucket}"
        rp = f" rp={self.retention_policy}" if self.retention_policy else ""
        return f"{self.url} db={self.database}{rp}"

