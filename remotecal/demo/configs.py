"""The demo's two config files, written into DIR as a user would write them: the gateway's
site.toml (its Modbus and MQTT sources, the local store and, with --influx, InfluxDB) and
the pipeline.toml with the demo's stability criteria scaled to its compressed time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firmware_bridge.profile import gateway_registers, load_profile
from remotecal.demo.devices import DEVICE_IDENTITIES
from remotecal.demo.plan import (
    MAX_SLOPE_RH,
    MAX_SLOPE_T,
    MAX_STD_RH,
    MAX_STD_T,
    MIN_DURATION_S,
    RUN_ID,
    WINDOW_S,
    DemoPlan,
)

__all__ = ["gateway_config_text", "pipeline_config_text"]


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
    parts = []
    for dut, (model, serial) in DEVICE_IDENTITIES.items():
        for suffix in ("t", "rh"):
            parts.append(f'\n[items.{dut}-{suffix}]\nmanufacturer = "remotecal firmware_bridge"\n'
                         f'model = {_toml(model)}\nserial = "{serial}"\n')
    return "".join(parts)
