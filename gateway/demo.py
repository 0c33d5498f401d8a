"""`remotecal demo`: the whole chain on one machine, with no outside service.

    virtual chamber (firmware_bridge) ── reference + DUT1 over Modbus TCP (loopback) ─┐
                                     └─ DUT2, DUT3 as MQTT sensor nodes ─► broker ───┤
                                                                                      ▼
                           remotecal gateway (journal) ─► local store (or --influx URL)
                                                                                      ▼
                           pipeline: plateaus, corrections, GUM budgets ─► DIR/corrections.csv,
                                                                           report.html, certificate.xml

The broker is Mosquitto when it is on the PATH, else an embedded amqtt broker.  The chamber
runs `speed` times faster than real time; readings are stamped by the wall clock, so the
demo's stability criteria, set in chamber time (a 600 s window, a 900 s minimum plateau, a
slope of at most 0.01 K/min or 0.05 %rh/min, a standard deviation of at most 0.03 K or
0.3 %rh), are scaled by the same factor - written out in DIR/pipeline.toml.

`--speed` is at most MAX_SPEED (2000): the gateway reads every device each 0.1 s of wall
clock, and at x2000 the 600 s window lasts 0.3 s and holds the 3 readings a window needs
(pipelines.plateaus.MIN_SAMPLES); any faster and no plateau can be found.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from firmware_bridge.chamber import Chamber, Sensor, Step
from firmware_bridge.instrument import VirtualInstrument
from firmware_bridge.modbus import ModbusServer
from firmware_bridge.mqtt_node import MqttSensorNode
from firmware_bridge.profile import gateway_registers, load_profile
from gateway.config import parse_config
from gateway.errors import RemotecalError, os_error_text
from gateway.runtime import Gateway
from pipelines.plateaus import MIN_SAMPLES

__all__ = ["DEMO_PROGRAM", "MAX_SPEED", "DemoPlan", "prepare_out", "run_demo"]

# One hour of chamber time per setpoint: temperature and humidity step together.
DEMO_PROGRAM = [Step(15.0, 30.0, 3600.0), Step(25.0, 50.0, 3600.0), Step(35.0, 70.0, 3600.0)]
RUN_ID = "DEMO-0001"

# The demo's stability criteria in chamber time; pipeline.toml gets them scaled by the speed.
WINDOW_S = 600.0
MIN_DURATION_S = 900.0
MAX_STD_T = 0.03          # K; a standard deviation does not scale with time
MAX_SLOPE_T = 0.01        # K/min
MAX_STD_RH = 0.3          # %rh
MAX_SLOPE_RH = 0.05       # %rh/min

POLL_S = 0.1
"""How often (wall clock) the gateway polls the Modbus devices and the MQTT nodes publish."""
MAX_SPEED = float(round(WINDOW_S / (MIN_SAMPLES * POLL_S)))
"""Above this the stability window, WINDOW_S / speed of wall clock, holds fewer readings than
a window needs (MIN_SAMPLES, one per POLL_S): no plateau could be found."""
DEFAULT_SPEED = 360.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoPlan:
    """What the demo runs: its timing and where everything goes."""

    out: Path
    speed: float = DEFAULT_SPEED
    influx_url: str | None = None
    poll_s: float = POLL_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be a finite number > 0, not {self.speed!r}")

    @property
    def wall_duration_s(self) -> float:
        return sum(s.duration_s for s in DEMO_PROGRAM) / self.speed


@contextlib.asynccontextmanager
async def _broker(workdir: Path) -> AsyncIterator[tuple[int, str]]:
    """A loopback MQTT broker for the demo: Mosquitto if installed, else amqtt in-process;
    (its port, the MQTT version the gateway speaks to it: amqtt knows only 3.1.1)."""
    port = _free_port()
    exe = shutil.which("mosquitto", path="/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin")
    if exe:
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
                        "max_inflight_messages 1000\nmax_queued_messages 100000\n")
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                    break
                await asyncio.sleep(0.05)
            yield port, "5"
        finally:
            proc.terminate()
            proc.wait(10)
        return
    from amqtt.broker import Broker

    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                     "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
                     "topic-check": {"enabled": False}})
    await broker.start()
    try:
        yield port, "3.1.1"
    finally:
        await broker.shutdown()


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _table(name: str, entries: list[dict[str, Any]]) -> str:
    return "\n".join(f"[[{name}]]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in e.items()) for e in entries)


def gateway_config_text(plan: DemoPlan, modbus_port: int, mqtt_port: int, store: Path,
                        mqtt_protocol: str = "5") -> str:
    """The demo gateway's site config: every source and sink as a user would write them."""
    modbus = [("ref", 1, "generic-pt100", "reference", ["t"]),
              ("refh", 2, "generic-thr", "reference", ["rh"]),
              ("dut1", 3, "generic-thr", "dut", ["t", "rh"])]
    parts = [f"""[gateway]
site = "demo-lab"
id = "gw-demo"
run = "{RUN_ID}"
data_dir = {_toml(str(plan.out / "work" / "journal"))}
health_interval = "1s"
shutdown_grace = "10s"
"""]
    for prefix, unit, profile, role, names in modbus:
        regs = gateway_registers(load_profile(profile), prefix=prefix, role=role, names=names)
        parts.append(f"""[[sources.modbus]]
name = "{prefix}"
url = "tcp://127.0.0.1:{modbus_port}"
unit_id = {unit}
interval = "{int(plan.poll_s * 1000)}ms"
timeout = "1s"
{_table("sources.modbus.registers", regs)}
""")
    parts.append(f"""[[sources.mqtt]]
name = "nodes"
url = "mqtt://127.0.0.1:{mqtt_port}"
protocol = "{mqtt_protocol}"
[[sources.mqtt.topics]]
topic = "lab/+/state"
time_path = "ts"
[[sources.mqtt.topics.fields]]
path = "t"
channel = "{{1}}-t"
quantity = "temperature"
unit = "degC"
role = "dut"
[[sources.mqtt.topics.fields]]
path = "rh"
channel = "{{1}}-rh"
quantity = "relative_humidity"
unit = "%rh"
role = "dut"
""")
    if plan.influx_url:
        parts.append(f'[[sinks.influxdb]]\nname = "influx"\nurl = {_toml(plan.influx_url)}\n'
                     'database = "calibration"\nflush_interval = "250ms"\n')
    parts.append(f'[[sinks.local]]\nname = "local"\npath = {_toml(str(store))}\nflush_interval = "250ms"\n')
    return "\n".join(parts)


def _criteria_comment(k: float) -> str:
    """What pipeline.toml's [stability] tables are: the demo's criteria, scaled by its speed."""
    slope, std = f"{MAX_SLOPE_T:g} K/min ({MAX_SLOPE_RH:g} %rh/min)", f"{MAX_STD_T:g} K ({MAX_STD_RH:g} %rh)"
    wall = f"{MAX_SLOPE_T * k:.3g} K/min ({MAX_SLOPE_RH * k:.3g} %rh/min)"
    return "\n".join([
        f"# The demo compresses time {k:g}x.  Its stability criteria in chamber time - a {WINDOW_S:g} s",
        f"# window, a {MIN_DURATION_S:g} s minimum plateau, a slope of at most {slope} and a standard",
        f"# deviation of at most {std} - become a {WINDOW_S / k:.3g} s window, a {MIN_DURATION_S / k:.3g} s "
        f"minimum and {wall}",
        "# of wall-clock time; a standard deviation does not scale.",
    ])


def pipeline_config_text(plan: DemoPlan, store: Path) -> str:
    """The demo's pipeline config: its stability criteria, scaled to its compressed time."""
    k = plan.speed
    if plan.influx_url:  # the pipeline reads what the gateway wrote, and writes calibration_point
        source = f'[source]\nkind = "influxdb"\nurl = {_toml(plan.influx_url)}\ndatabase = "calibration"'
    else:
        source = f'[source]\nkind = "local"\npath = {_toml(str(store))}'
    return f"""{_criteria_comment(k)}
[run]
id = "{RUN_ID}"

{source}

[stability]
window_s = {WINDOW_S / k:.6g}
max_std = {MAX_STD_T:g}
max_slope_per_min = {MAX_SLOPE_T * k:.6g}
min_duration_s = {MIN_DURATION_S / k:.6g}

[[comparisons]]
dut = "dut*-t"
reference = "ref-t"
quantity = "temperature"

[[comparisons]]
dut = "dut*-rh"
reference = "refh-rh"
quantity = "relative_humidity"
[comparisons.stability]          # a hygrometer's criteria, in %rh
window_s = {WINDOW_S / k:.6g}
max_std = {MAX_STD_RH:g}
max_slope_per_min = {MAX_SLOPE_RH * k:.6g}
min_duration_s = {MIN_DURATION_S / k:.6g}
[comparisons.uncertainty]        # in %rh
reference_drift = 0.3
dut_resolution = 0.1
chamber_inhomogeneity = 0.5

[reference_certificate.ref-t]
points = [[10.0, 0.05, 0.02, 2.0], [20.0, 0.05, 0.02, 2.0], [30.0, 0.05, 0.02, 2.0], [40.0, 0.05, 0.02, 2.0]]

[reference_certificate.refh-rh]
points = [[10.0, -0.5, 0.8, 2.0], [50.0, -0.5, 0.8, 2.0], [90.0, -0.5, 0.8, 2.0]]

[uncertainty]
reference_drift = 0.01
dut_resolution = 0.01
chamber_inhomogeneity = 0.03

# Who calibrated what for whom: certificate.xml states it (invented names: a demo).
[certificate]
laboratory = "remotecal demo laboratory"
laboratory_city = "Loopback"
laboratory_country = "ZZ"
customer = "remotecal demo customer"
customer_city = "Loopback"
customer_country = "ZZ"
responsible_person = "Demo Engineer"
performance_location = "customer"
{_demo_items()}"""


def _demo_items() -> str:
    """An [items.<channel>] per DUT channel of the demo: the virtual devices' identities."""
    devices = {"dut1": ("virtual thermo-hygrometer (profile generic-thr) on Modbus TCP", "DEMO-THR-0001"),
               "dut2": ("virtual MQTT sensor node", "DEMO-MQTT-0002"),
               "dut3": ("virtual MQTT sensor node", "DEMO-MQTT-0003")}
    parts = []
    for dut, (model, serial) in devices.items():
        for suffix in ("t", "rh"):
            parts.append(f'\n[items.{dut}-{suffix}]\nmanufacturer = "remotecal firmware_bridge"\n'
                         f'model = {_toml(model)}\nserial = "{serial}"\n')
    return "".join(parts)


def _instruments(chamber: Chamber) -> list[VirtualInstrument]:
    """Reference thermometer (reads 0.05 K low, as its certificate says), reference hygrometer
    (reads 0.5 %rh high) and DUT1 (+0.3 K + 0.4 % of reading, -1.5 %rh) on one Modbus server."""
    return [
        VirtualInstrument(chamber, load_profile("generic-pt100"), unit_id=1,
                          sensors={"temperature": Sensor("ref-t", error=[-0.05], noise=0.003, seed=1)}),
        VirtualInstrument(chamber, load_profile("generic-thr"), unit_id=2,
                          sensors={"relative_humidity": Sensor("refh-rh", error=[0.5], noise=0.05, seed=2)}),
        VirtualInstrument(chamber, load_profile("generic-thr"), unit_id=3,
                          sensors={"temperature": _dut_sensor("dut1-t", [0.3, 0.004], 3),
                                   "relative_humidity": _dut_sensor("dut1-rh", [-1.5], 4)}),
    ]


def _dut_sensor(name: str, error: list[float], seed: int) -> Sensor:
    """A DUT: its error curve, noise and display resolution (0.01 degC, 0.1 %rh)."""
    rh = name.endswith("-rh")
    return Sensor(name, error=error, noise=0.1 if rh else 0.01, resolution=0.1 if rh else 0.01, seed=seed)


def _nodes(chamber: Chamber, port: int, interval_s: float) -> list[MqttSensorNode]:
    spec = {"dut2": ([-0.2], [2.0]), "dut3": ([0.1, -0.003], [-0.8])}
    return [
        MqttSensorNode(chamber, "127.0.0.1", port, topic=f"lab/{name}/state", interval_s=interval_s,
                       name=name,
                       sensors={"t": ("temperature", _dut_sensor(f"{name}-t", et, 10 + i)),
                                "rh": ("relative_humidity", _dut_sensor(f"{name}-rh", er, 20 + i))})
        for i, (name, (et, er)) in enumerate(spec.items())
    ]


async def run_demo(plan: DemoPlan, progress: Any = None) -> dict[str, Path]:
    """Run the chain; return the paths of the results.  `progress(chamber, store)` is awaited
    every half second while the chamber runs (the CLI shows a live display with it)."""
    work = prepare_out(plan.out)
    store = work / "store.db"
    start = DEMO_PROGRAM[0]
    chamber = Chamber(DEMO_PROGRAM, start_temperature=start.temperature, start_humidity=start.humidity,
                      speed=plan.speed, seed=7)
    with tempfile.TemporaryDirectory(prefix="remotecal-demo-") as tmp:
        async with _broker(Path(tmp)) as (mqtt_port, mqtt_protocol):
            server = ModbusServer([i.image() for i in _instruments(chamber)]).tcp(port=0)
            async with server:
                text = gateway_config_text(plan, server.port, mqtt_port, store, mqtt_protocol)
                cfg = parse_config_text(text)
                (plan.out / "site.toml").write_text(text)
                gateway = Gateway(cfg)
                task = asyncio.create_task(gateway.run(), name="demo-gateway")
                nodes = [n.start() for n in _nodes(chamber, mqtt_port, plan.poll_s)]
                chamber.t0 = time.time()
                try:
                    end = chamber.t0 + plan.wall_duration_s
                    while time.time() < end:
                        if task.done():
                            task.result()
                            raise RemotecalError("the demo gateway stopped early")
                        for n in nodes:
                            if n.failure is not None:
                                raise RuntimeError(f"demo sensor node {n.name} stopped") from n.failure
                        if progress is not None:
                            await progress(chamber, store)
                        await asyncio.sleep(0.5)
                finally:
                    for n in nodes:
                        await asyncio.to_thread(n.stop)
                    await asyncio.sleep(4 * plan.poll_s)
                    gateway.request_stop()
                    await task
    pipeline_text = pipeline_config_text(plan, store)
    (plan.out / "pipeline.toml").write_text(pipeline_text)
    return await asyncio.to_thread(_run_pipeline, plan.out / "pipeline.toml", plan.out)


def prepare_out(out: Path) -> Path:
    """Create `out` and an empty `out/work`; RemotecalError naming the path and the reason
    when that cannot be done (a path under /proc, a file in the way, no permission)."""
    if out.exists() and not out.is_dir():
        raise RemotecalError(f"--out {out}: not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno and exc.filename == str(out) else os_error_text(exc)
        raise RemotecalError(f"--out {out}: cannot create the output directory: {reason}") from None
    work = out / "work"
    try:
        if work.is_dir() and not work.is_symlink():
            shutil.rmtree(work)
        elif work.exists() or work.is_symlink():
            work.unlink()
        work.mkdir()
    except OSError as exc:
        raise RemotecalError(
            f"--out {out}: cannot prepare the work directory: {os_error_text(exc)}") from None
    return work


def parse_config_text(text: str) -> Any:
    import tomllib

    return parse_config(tomllib.loads(text))


def _run_pipeline(config: Path, out: Path) -> dict[str, Path]:
    from pipelines.cli import run_pipeline

    result = run_pipeline(config, out)
    paths = {"corrections.csv": result.csv_path}
    if result.report_path and result.certificate_path:
        paths |= {"report.html": result.report_path, "certificate.xml": result.certificate_path}
    return paths | {"site config": out / "site.toml", "pipeline config": config}


class _LiveView:
    """A rich live display: the chamber, every channel's latest reading, the plateaus so far."""

    def __init__(self, plan: DemoPlan, live: Any):
        self.plan = plan
        self.live = live

    async def __call__(self, chamber: Chamber, store: Path) -> None:
        from rich.table import Table

        from gateway.sinks.local.store import read_run
        from pipelines.plateaus import find_plateaus

        sim_t = chamber.sim_time()
        t, rh = chamber.state()
        sp_t, sp_rh = chamber.setpoint(sim_t)
        head = Table.grid(padding=(0, 2))
        head.add_row("[b]chamber[/b]", f"setpoint {sp_t:.1f} degC / {sp_rh:.0f} %rh",
                     f"now {t:.2f} degC / {rh:.1f} %rh",
                     f"time {sim_t / 60:5.1f} of {chamber.duration_s / 60:.0f} min (x{self.plan.speed:g})")
        table = Table(title=None, expand=False)
        for col in ("channel", "role", "latest", "readings"):
            table.add_column(col)
        plateaus = "-"
        with contextlib.suppress(Exception):
            data = await asyncio.to_thread(read_run, store, RUN_ID)
            for name in sorted(data):
                d = data[name]
                table.add_row(name, d.role, f"{d.values[-1]:.3f} {d.unit}", str(len(d.values)))
            if "ref-t" in data:
                ref = data["ref-t"]
                k = self.plan.speed
                found = find_plateaus(ref.t_s, ref.values, window_s=WINDOW_S / k, max_std=MAX_STD_T,
                                      max_slope_per_min=MAX_SLOPE_T * k, min_duration_s=MIN_DURATION_S / k)
                plateaus = ", ".join(f"{ref.values[a:b].mean():.2f} degC" for a, b in found) or "none yet"
        foot = Table.grid()
        foot.add_row(f"[b]plateaus on ref-t[/b]: {plateaus}")
        from rich.console import Group

        self.live.update(Group(head, table, foot))


def cmd_demo(args: Any) -> int:
    from rich.console import Console
    from rich.live import Live

    from gateway.cli import setup_logging

    plan = DemoPlan(out=Path(args.out).resolve(), speed=args.speed, influx_url=args.influx)
    prepare_out(plan.out)  # before the live display: a bad --out is one line, not a frame and a line
    if plan.influx_url:
        check_influx(plan.influx_url)
    console = Console(stderr=True)
    setup_logging("warning")  # the live display shows the state; warnings still get through
    t0 = time.monotonic()
    console.print(f"remotecal demo: a {sum(s.duration_s for s in DEMO_PROGRAM) / 3600:.0f} h chamber program "
                  f"at x{plan.speed:g} ({plan.wall_duration_s:.0f} s), results in {plan.out}")
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        outputs = asyncio.run(run_demo(plan, _LiveView(plan, live)))
    # Plain lines on stdout (never wrapped), so a script can pick the paths up.
    print(f"demo done in {time.monotonic() - t0:.1f} s; results:")
    for name, path in outputs.items():
        print(f"  {name:16} {path}")
    return 0


def _speed(text: str) -> float:
    """--speed: a number > 0 and at most MAX_SPEED (argparse reports the ArgumentTypeError)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number > 0 and at most {MAX_SPEED:g}, not {text!r}") from None
    if not (math.isfinite(x) and 0 < x <= MAX_SPEED):
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range: the speed must be > 0 and at most {MAX_SPEED:g} "
            f"(at x{MAX_SPEED:g} the {WINDOW_S:g} s stability window lasts {WINDOW_S / MAX_SPEED:g} s "
            f"and holds the {MIN_SAMPLES} readings a window needs at one per {POLL_S:g} s)")
    return x


def _influx_url(text: str) -> str:
    """--influx: an http:// or https:// URL with a host."""
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number or out of range
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL of an InfluxDB, not {text!r}")
    return text


def check_influx(url: str, timeout: float = 3.0) -> None:
    """RemotecalError when nothing answers at `url`: the demo would run for nothing, then fail."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout):
            pass
    except OSError as exc:
        raise RemotecalError(f"--influx {url}: cannot connect: {os_error_text(exc)}") from None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="the whole chain on this machine, no outside service")
    p.add_argument("--out", default="out/demo", help="where the results go (default out/demo)")
    p.add_argument("--speed", type=_speed, default=DEFAULT_SPEED,
                   help=f"chamber time per wall-clock time, > 0 and at most {MAX_SPEED:g} "
                        f"(default {DEFAULT_SPEED:g})")
    p.add_argument("--influx", metavar="URL", type=_influx_url,
                   help="also write to this InfluxDB 1.x (database 'calibration')")
    p.set_defaults(func=cmd_demo)
