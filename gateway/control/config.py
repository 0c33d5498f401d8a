"""`[control]` of the site config: remote run commands from the institute.

    [control]
    allow_remote = true                      # false: remote commands are refused (local ones work)
    keys = "/etc/remotecal/institute"        # institute public key(s): a .pub file or a folder of them
    answer_key = "DATA_DIR/control-answer.key"   # this gateway's answer key (made at first start)
    max_ttl = "1h"                           # a command expiring further ahead is refused
    procedures = "/etc/remotecal/procedures" # optional: procedure files a start may name by SHA-256
    [control.broker]                         # optional: default the first [[sinks.mqtt]]'s broker
    url = "mqtts://central.example.org:8883" # (url, credentials, TLS, topic_prefix)
    ...

The institute's side (`remotecal run ... --site S --gateway G -c CONTROL.toml`) has its own file,
`InstituteConfig` below.
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.config_types import Duration
from gateway.configfile import format_validation_error, read_toml
from gateway.errors import ConfigError
from gateway.mqtt_broker import BrokerConnection
from gateway.sinks.mqtt.config import check_topic_prefix

__all__ = [
    "ANSWER_KEY_NAME",
    "ControlBroker",
    "ControlConfig",
    "InstituteConfig",
    "default_actor",
    "load_institute_config",
]

ANSWER_KEY_NAME = "control-answer.key"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControlBroker(BrokerConnection):
    """The central broker the commands come through (and their answers go back)."""

    topic_prefix: str = "remotecal/v1"

    _prefix = field_validator("topic_prefix")(check_topic_prefix)


class ControlConfig(_Strict):
    allow_remote: bool = Field(default=True, description="false: every remote command is refused")
    keys: Path | None = Field(
        default=None,
        description="the institute's public key(s): a .pub file or a "
        "folder of them (remotecal keys new --institute)",
    )
    answer_key: Path | None = Field(
        default=None,
        description="this gateway's answer key (default: DATA_DIR/control-answer.key, made at first start)",
    )
    broker: ControlBroker | None = None
    max_ttl: Duration = Field(default=3600.0, gt=0, description="a command expiring further ahead is refused")
    procedures: Path | None = Field(default=None, description="procedure files a start may name by SHA-256")


class InstituteSection(_Strict):
    key_file: Path = Field(description="the institute's private command key (remotecal keys new --institute)")
    gateway_keys: Path | None = Field(
        default=None,
        description="the gateways' answer keys (*.pub): a folder or one file; without it "
        "answers cannot be verified",
    )
    actor: str | None = Field(default=None, min_length=1, description="who sends (default: user@host)")
    ttl: Duration = Field(default=120.0, gt=0, description="a command expires this long after it is sent")
    timeout: Duration = Field(default=15.0, gt=0, description="how long to wait for the gateway's answer")
    state_dir: Path | None = Field(
        default=None, description="where the sequence number is kept (default ~/.local/state/remotecal)"
    )


class InstituteConfig(_Strict):
    """CONTROL.toml: the institute's side of remote run control."""

    institute: InstituteSection
    broker: ControlBroker


def load_institute_config(path: str | Path) -> InstituteConfig:
    p = Path(path)
    data: dict[str, Any] = read_toml(p)
    try:
        cfg = InstituteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    base = p.parent

    def anchored(x: Path | None) -> Path | None:
        """~ is the user's home (CONTROL.toml is a person's file); relative is to the file."""
        if x is None:
            return None
        x = x.expanduser()
        return x if x.is_absolute() else (base / x).resolve()

    i = cfg.institute
    section = i.model_copy(
        update={
            "key_file": anchored(i.key_file),
            "gateway_keys": anchored(i.gateway_keys),
            "state_dir": anchored(i.state_dir),
        }
    )
    return cfg.model_copy(update={"institute": section})


def default_actor() -> str:
    """Who runs this command: `$REMOTECAL_ACTOR`, else user@host."""
    if actor := os.environ.get("REMOTECAL_ACTOR", "").strip():
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"
