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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from firmware_bridge.chamber import Chamber, Sensor, Step
from firmware_bridge.instrument import VirtualInstrument
from firmware_bridge.modbus import ModbusServer
from firmware_bridge.profile import load_profile
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
    profile: str
    listen: str
    unit_id: int = Field(1, ge=1, le=247)
    temperature: _Sensor | None = None
    relative_humidity: _Sensor | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme == "tcp" and parts.hostname and parts.port is not None:
            return v
        if parts.scheme == "rtu" and parts.path:
            return v
        raise ValueError("expected tcp://host:port or rtu:///path/to/tty?baudrate=...")

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        try:
            load_profile(v)
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from None
        return v


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
        raise ConfigError([
            ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in e["loc"]).replace(".[", "[")
            + f": {e['msg']}" for e in exc.errors()
        ]) from None


def build_servers(cfg: SimConfig) -> list[ModbusServer]:
    c = cfg.chamber
    chamber = Chamber([Step(s.temperature, s.humidity, s.duration) for s in c.steps],
                      start_temperature=c.start_temperature, start_humidity=c.start_humidity, tau_s=c.tau_s,
                      oscillation=c.oscillation, oscillation_period_s=c.oscillation_period_s, noise=c.noise,
                      seed=c.seed, speed=c.speed)
    by_listen: dict[str, list[VirtualInstrument]] = {}
    for i, d in enumerate(cfg.devices):
        sensors = {
            m: Sensor(f"{d.name}-{m}", error=s.error, noise=s.noise, resolution=s.resolution, seed=c.seed + i)
            for m, s in (("temperature", d.temperature), ("relative_humidity", d.relative_humidity))
            if s is not None
        }
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
    servers = build_servers(cfg)
    async with contextlib.AsyncExitStack() as stack:
        for s in servers:
            await stack.enter_async_context(s)
        for d in cfg.devices:
            log.info("serving %s (%s, unit %d) on %s", d.name, d.profile, d.unit_id, d.listen)
        await stop.wait()
