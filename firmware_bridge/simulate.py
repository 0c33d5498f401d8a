"""`remotecal simulate -c SIM.toml`: a virtual chamber and instruments served until stopped.

    [chamber]
    seed = 1
    speed = 60                       # simulated seconds per wall-clock second
    tau_s = 300
    [[chamber.steps]]
    temperature = 20.0
    humidity = 50.0
    duration = "30m"                 # simulated time

    [[devices]]                      # the chamber's own controller: writable setpoints (issue 15)
    name = "chamber"
    profile = "generic-chamber"
    listen = "tcp://127.0.0.1:5030"

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

A device that cannot be served (its port is taken, its serial port is not there) stops the
whole simulation: every device already started is stopped again and `run_simulation` raises
SimulationError, which `remotecal simulate` prints as one line naming the device, its address
and the reason (exit 1).  An MQTT sensor node is the exception: like a real node it keeps
retrying a broker that is not (or no longer) there, with one log line per change of state
(see firmware_bridge.mqtt_node), while the other devices go on serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from firmware_bridge.chamber import Chamber, Sensor, Step
from firmware_bridge.instrument import VirtualInstrument
from firmware_bridge.modbus import ModbusServer
from firmware_bridge.mqtt_node import MqttSensorNode
from firmware_bridge.profile import load_profile
from firmware_bridge.scpi import ScpiChamber, ScpiThermometer
from gateway.config_types import Duration
from gateway.configfile import format_validation_error, read_toml
from gateway.errors import ConfigError, RemotecalError, os_error_text

__all__ = ["SimConfig", "SimulationError", "load_sim_config", "run_simulation"]

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
    steps: list[_Step] = []
    """The fixed program; none: the chamber holds its start values until a controller
    (a device with a controller profile, or a SCPI device with control = true) commands it."""


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
    control: bool = False
    """scpi:// only: also the chamber's controller (SOUR:TEMP, SOUR:HUM, OUTP; firmware_bridge.scpi)."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme in ("tcp", "scpi") and parts.hostname and parts.port is not None:
            return v
        if parts.scheme == "rtu" and parts.path:
            _rtu_options(parts.query)
            return v
        if parts.scheme == "mqtt" and parts.hostname and parts.path.strip("/"):
            return v
        raise ValueError("expected tcp://host:port or rtu:///path/to/tty?baudrate=... (Modbus), "
                         "mqtt://host:port/topic (an MQTT sensor node) "
                         "or scpi://host:port (a SCPI thermometer)")

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        if v is not None:
            _check_profile(v)
        return v

    @model_validator(mode="after")
    def _modbus_needs_profile(self) -> _Device:
        if urlsplit(self.listen).scheme in ("tcp", "rtu") and self.profile is None:
            raise ValueError("a Modbus device (tcp:// or rtu://) needs a profile")
        if self.control and urlsplit(self.listen).scheme != "scpi":
            raise ValueError("control = true is for a scpi:// device; a Modbus device is controllable "
                             "through its profile's [[setpoints]] (e.g. profile = \"generic-chamber\")")
        return self

    @property
    def kind(self) -> str:
        scheme = urlsplit(self.listen).scheme
        return "modbus" if scheme in ("tcp", "rtu") else scheme


_PARITIES = ("N", "E", "O", "M", "S")


def _rtu_options(query: str) -> dict[str, str]:
    """The options of an rtu:// address (baudrate, parity, stopbits), checked."""
    q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(q) - {"baudrate", "parity", "stopbits"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} of an rtu:// address "
                         "(known: baudrate, parity, stopbits)")
    if "baudrate" in q and not (q["baudrate"].isdigit() and int(q["baudrate"]) > 0):
        raise ValueError(f"baudrate must be a positive whole number, not {q['baudrate']!r}")
    if "parity" in q and q["parity"] not in _PARITIES:
        raise ValueError(f"parity must be one of {', '.join(_PARITIES)}, not {q['parity']!r}")
    if "stopbits" in q and q["stopbits"] not in ("1", "2"):
        raise ValueError(f"stopbits must be 1 or 2, not {q['stopbits']!r}")
    return q


def _check_profile(name_or_path: str) -> None:
    """load_profile's problems as one ValueError line (pydantic reports it at the key)."""
    try:
        load_profile(name_or_path)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    except OSError as exc:
        raise ValueError(f"cannot read the profile: {os_error_text(exc)}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{name_or_path}: the profile is not UTF-8 text") from None
    except ValidationError as exc:
        problems = "; ".join(format_validation_error(exc))
        raise ValueError(f"{name_or_path}: not a valid profile: {problems}") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ValueError(f"{name_or_path}: not valid TOML: {exc}") from None


class SimConfig(_Strict):
    chamber: _Chamber
    devices: list[_Device] = Field(min_length=1)


def _conflicts(cfg: SimConfig) -> list[str]:
    """Devices that would clash at run time: one name twice, one unit id twice on one line,
    one TCP address served by two servers."""
    problems: list[str] = []
    names: dict[str, int] = {}
    units: dict[tuple[str, int], str] = {}
    endpoints: dict[tuple[str, int], tuple[str, str]] = {}  # (host, port) -> (listen, device)
    for i, d in enumerate(cfg.devices):
        if d.name in names:
            problems.append(f"devices[{i}].name: {d.name!r} is the name of devices[{names[d.name]}] already")
        names.setdefault(d.name, i)
        if d.kind == "modbus":
            if (d.listen, d.unit_id) in units:
                problems.append(f"devices[{i}].unit_id: unit {d.unit_id} on {d.listen} is "
                                f"{units[d.listen, d.unit_id]} already")
            units.setdefault((d.listen, d.unit_id), d.name)
        parts = urlsplit(d.listen)
        if parts.scheme in ("tcp", "scpi") and parts.hostname and parts.port is not None:
            key = (parts.hostname, parts.port)
            other = endpoints.get(key)
            if other is not None and not (d.kind == "modbus" and other[0] == d.listen):
                problems.append(f"devices[{i}].listen: {parts.hostname}:{parts.port} is served by "
                                f"{other[1]} already")
            endpoints.setdefault(key, (d.listen, d.name))
    return problems


def load_sim_config(path: str | Path) -> SimConfig:
    """Read and validate SIM.toml; every problem is reported with its key path (ConfigError)."""
    data = read_toml(path)
    try:
        cfg = SimConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    problems = _conflicts(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


class SimulationError(RemotecalError):
    """A device cannot be served: its address is taken, its serial port is not there..."""


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


def _server_groups(cfg: SimConfig, chamber: Chamber) -> list[tuple[str, list[str], ModbusServer]]:
    """(listen, the names of its devices, its server) of each Modbus `listen`."""
    by_listen: dict[str, list[tuple[str, VirtualInstrument]]] = {}
    for i, d in enumerate(cfg.devices):
        if d.kind != "modbus" or d.profile is None:
            continue
        sensors = _sensors(cfg, i, d)
        by_listen.setdefault(d.listen, []).append(
            (d.name, VirtualInstrument(chamber, load_profile(d.profile), unit_id=d.unit_id, sensors=sensors)))
    groups = []
    for listen, devices in by_listen.items():
        server = ModbusServer([v.image() for _, v in devices])
        parts = urlsplit(listen)
        if parts.scheme == "tcp":
            server.tcp(parts.hostname or "127.0.0.1", parts.port or 502)
        else:
            q = _rtu_options(parts.query)
            server.rtu(parts.path, baudrate=int(q.get("baudrate", 19200)), parity=q.get("parity", "N"),
                       stopbits=int(q.get("stopbits", 1)))
        groups.append((listen, [name for name, _ in devices], server))
    return groups


def build_servers(cfg: SimConfig, chamber: Chamber | None = None) -> list[ModbusServer]:
    """The Modbus servers (devices with the same `listen` share one)."""
    return [server for _, _, server in _server_groups(cfg, chamber or build_chamber(cfg))]


def _device_reason(exc: OSError) -> str:
    """Why an address cannot be served, short: the address is in the message already."""
    if exc.errno and exc.errno > 0 and exc.filename is None:
        return os.strerror(exc.errno)
    return os_error_text(exc)


async def _serve(stack: contextlib.AsyncExitStack, server: Any, names: list[str], listen: str) -> None:
    """Start `server` on `stack` (stopped when it unwinds), or raise SimulationError naming the
    devices and their address."""
    try:
        await stack.enter_async_context(server)
    except OSError as exc:
        devices = "device " + names[0] if len(names) == 1 else "devices " + ", ".join(names)
        raise SimulationError(f"cannot serve {devices} on {listen}: {_device_reason(exc)}") from exc


async def run_simulation(cfg: SimConfig, stop: asyncio.Event | None = None) -> None:
    """Serve every device until `stop` is set (or SIGINT/SIGTERM).

    SimulationError when a device cannot be served; the devices started before it are
    stopped first.  A sensor node that died of an unexpected error (a bug) stops the
    simulation too, with that error, rather than leaving the device silently dead."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    chamber = build_chamber(cfg)
    nodes: list[MqttSensorNode] = []
    async with contextlib.AsyncExitStack() as stack:
        for listen, names, server in _server_groups(cfg, chamber):
            await _serve(stack, server, names, listen)
        for i, d in enumerate(cfg.devices):
            parts = urlsplit(d.listen)
            sensors = _sensors(cfg, i, d)
            if d.kind == "scpi":
                kind = ScpiChamber if d.control else ScpiThermometer
                thermometer = kind(chamber, sensors.get("temperature")).tcp(
                    parts.hostname or "127.0.0.1", parts.port or 5025)
                await _serve(stack, thermometer, [d.name], d.listen)
            elif d.kind == "mqtt":
                t_sensor = sensors.get("temperature") or Sensor(f"{d.name}-t")
                rh_sensor = sensors.get("relative_humidity") or Sensor(f"{d.name}-rh")
                node = MqttSensorNode(
                    chamber, parts.hostname or "127.0.0.1", parts.port or 1883, topic=parts.path.strip("/"),
                    interval_s=d.interval, client_id=f"sim-{d.name}", name=d.name,
                    sensors={"t": ("temperature", t_sensor), "rh": ("relative_humidity", rh_sensor)})
                stack.push_async_callback(asyncio.to_thread, node.stop)
                nodes.append(node.start())
        for d in cfg.devices:
            if d.kind == "mqtt":
                log.info("%s (mqtt sensor node) publishes to %s", d.name, d.listen)
            else:
                log.info("serving %s (%s) on %s", d.name, d.profile or d.kind, d.listen)
        while not stop.is_set():
            for node in nodes:
                if node.failure is not None:
                    raise RuntimeError(f"sensor node {node.name} stopped") from node.failure
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
