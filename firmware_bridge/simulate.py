"""`remotecal simulate -c SIM.toml`: a virtual chamber and instruments served until stopped.

    [chamber]
    seed = 1
    speed = 60                       # simulated seconds per wall-clock second
    tau_s = 300
    [[chamber.steps]]
    temperature = 20.0
    humidity = 50.0
    duration = "30m"                 # simulated time

    [[devices]]
    name = "dut1"
    profile = "generic-thr"          # a name under firmware_bridge/profiles/, or a .toml path
    listen = "tcp://127.0.0.1:5020"  # or "rtu:///tmp/ttyB?baudrate=19200" (e.g. one end of socat)
    unit_id = 1
    [devices.temperature]            # the sensor: error polynomial of the true value, noise, resolution
    error = [0.1, 0.002]
    noise = 0.01
    resolution = 0.01

Devices with the same `listen` share one server (several units on one line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from firmware_bridge.chamber import Chamber, Sensor, Step
from firmware_bridge.instrument import VirtualInstrument
from firmware_bridge.modbus import ModbusServer
from firmware_bridge.mqtt_node import MqttSensorNode
from firmware_bridge.profile import load_profile
from firmware_bridge.scpi import ScpiThermometer
from gateway.config import format_validation_error
from gateway.config_types import Duration
from gateway.errors import ConfigError

__all__ = ["SimConfig", "load_sim_config", "run_simulation"]

log = logging.getLogger("remotecal.simulate")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Step(_Strict):
    temperature: float
    humidity: float = 50.0
    duration: Duration


class _Chamber(_Strict):
    seed: int = 0
    speed: float = Field(1.0, gt=0)
    tau_s: float = Field(300.0, gt=0)
    start_temperature: float = 20.0
    start_humidity: float = 50.0
    oscillation: float = 0.02
    oscillation_period_s: float = Field(120.0, gt=0)
    noise: float = Field(0.003, ge=0)
    steps: list[_Step] = Field(min_length=1)


class _Sensor(_Strict):
    error: list[float] = []
    noise: float = Field(0.0, ge=0)
    resolution: float = Field(0.0, ge=0)


class _Device(_Strict):
    name: str
    profile: str | None = None
    """Register map of a Modbus device (tcp:// or rtu://); MQTT nodes and SCPI thermometers take none."""
    listen: str
    unit_id: int = Field(1, ge=1, le=247)
    interval: Duration = 1.0
    """How often an MQTT node publishes."""
    temperature: _Sensor | None = None
    relative_humidity: _Sensor | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme in ("tcp", "scpi") and parts.hostname and parts.port is not None:
            return v
        if parts.scheme == "rtu" and parts.path:
            return v
        if parts.scheme == "mqtt" and parts.hostname and parts.path.strip("/"):
            return v
        raise ValueError("expected tcp://host:port or rtu:///path/to/tty?baudrate=... (Modbus), "
                         "mqtt://host:port/topic (an MQTT sensor node) "
                         "or scpi://host:port (a SCPI thermometer)")

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        try:
            if v is not None:
                load_profile(v)
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _modbus_needs_profile(self) -> _Device:
        if urlsplit(self.listen).scheme in ("tcp", "rtu") and self.profile is None:
            raise ValueError("a Modbus device (tcp:// or rtu://) needs a profile")
        return self

    @property
    def kind(self) -> str:
        scheme = urlsplit(self.listen).scheme
        return "modbus" if scheme in ("tcp", "rtu") else scheme


class SimConfig(_Strict):
    chamber: _Chamber
    devices: list[_Device] = Field(min_length=1)


def load_sim_config(path: str | Path) -> SimConfig:
    """Read and validate SIM.toml; every problem is reported with its key path (ConfigError)."""
    try:
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return SimConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def build_chamber(cfg: SimConfig) -> Chamber:
    c = cfg.chamber
    return Chamber([Step(s.temperature, s.humidity, s.duration) for s in c.steps],
                   start_temperature=c.start_temperature, start_humidity=c.start_humidity, tau_s=c.tau_s,
                   oscillation=c.oscillation, oscillation_period_s=c.oscillation_period_s, noise=c.noise,
                   seed=c.seed, speed=c.speed)


def _sensors(cfg: SimConfig, i: int, d: _Device) -> dict[str, Sensor]:
    return {
        m: Sensor(f"{d.name}-{m}", error=s.error, noise=s.noise, resolution=s.resolution,
                  seed=cfg.chamber.seed + i)
        for m, s in (("temperature", d.temperature), ("relative_humidity", d.relative_humidity))
        if s is not None
    }


def build_servers(cfg: SimConfig, chamber: Chamber | None = None) -> list[ModbusServer]:
    """The Modbus servers (devices with the same `listen` share one)."""
    chamber = chamber or build_chamber(cfg)
    by_listen: dict[str, list[VirtualInstrument]] = {}
    for i, d in enumerate(cfg.devices):
        if d.kind != "modbus" or d.profile is None:
            continue
        sensors = _sensors(cfg, i, d)
        by_listen.setdefault(d.listen, []).append(
            VirtualInstrument(chamber, load_profile(d.profile), unit_id=d.unit_id, sensors=sensors))
    servers = []
    for listen, instruments in by_listen.items():
        server = ModbusServer([v.image() for v in instruments])
        parts = urlsplit(listen)
        if parts.scheme == "tcp":
            server.tcp(parts.hostname or "127.0.0.1", parts.port or 502)
        else:
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            server.rtu(parts.path, baudrate=int(q.get("baudrate", 19200)), parity=q.get("parity", "N"),
                       stopbits=int(q.get("stopbits", 1)))
        servers.append(server)
    return servers


async def run_simulation(cfg: SimConfig, stop: asyncio.Event | None = None) -> None:
    """Serve every device until `stop` is set (or SIGINT/SIGTERM)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    chamber = build_chamber(cfg)
    servers = build_servers(cfg, chamber)
    nodes: list[MqttSensorNode] = []
    async with contextlib.AsyncExitStack() as stack:
        for s in servers:
            await stack.enter_async_context(s)
        for i, d in enumerate(cfg.devices):
            parts = urlsplit(d.listen)
            sensors = _sensors(cfg, i, d)
            if d.kind == "scpi":
                await stack.enter_async_context(
                    ScpiThermometer(chamber, sensors.get("temperature")).tcp(parts.hostname or "127.0.0.1",
                                                                             parts.port or 5025))
            elif d.kind == "mqtt":
                t_sensor = sensors.get("temperature") or Sensor(f"{d.name}-t")
                rh_sensor = sensors.get("relative_humidity") or Sensor(f"{d.name}-rh")
                node = MqttSensorNode(
                    chamber, parts.hostname or "127.0.0.1", parts.port or 1883, topic=parts.path.strip("/"),
                    interval_s=d.interval, client_id=f"sim-{d.name}",
                    sensors={"t": ("temperature", t_sensor), "rh": ("relative_humidity", rh_sensor)})
                nodes.append(node.start())
                stack.callback(node.stop)
        for d in cfg.devices:
            log.info("serving %s (%s) on %s", d.name, d.profile or d.kind, d.listen)
        await stop.wait()
