"""The demo's config files, written into DIR as a user would write them: the gateway's
site.toml (its Modbus and MQTT sources, the chamber's controller, remote run control with the
institute's public key, the local store and, with --influx, InfluxDB), the procedure.toml
the institute sends, and the pipeline.toml with the demo's stability criteria - both scaled
to its compressed time."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from firmware_bridge.profile import Profile, gateway_registers, load_profile
from gateway.configfile import dumps
from remotecal.demo.devices import CHAMBER_UNIT, DEVICE_IDENTITIES
from remotecal.demo.plan import (
    DEMO_FINAL,
    DEMO_HUMIDITY,
    DEMO_TEMPERATURE,
    FINAL_MAX_S,
    GATEWAY,
    IDLE_RUN,
    MAX_S,
    MAX_SLOPE_RH,
    MAX_SLOPE_T,
    MAX_STD_RH,
    MAX_STD_T,
    MIN_DURATION_S,
    RECORD_S,
    RUN_ID,
    SETTLE_MIN_S,
    SITE,
    WINDOW_S,
    DemoPlan,
)

__all__ = ["Control", "gateway_config", "gateway_config_text", "pipeline_config",
           "pipeline_config_text", "procedure_text"]


@dataclass(frozen=True)
class Control:
    """Remote run control of the demo gateway: the institute's public key it trusts, its own
    answer key, and the broker the commands come through (the demo's, standing in for the
    central one)."""

    keys: Path
    answer_key: Path
    broker_port: int


def _g(x: float) -> float:
    """Six significant digits, as a person would write the number."""
    return float(f"{x:.6g}")


def _controller(profile: Profile, port: int) -> dict[str, Any]:
    """[[controllers.modbus]] for the chamber's controller, from its profile's registers."""
    setpoints = [{"quantity": s.quantity, "address": s.address, "type": s.type, "byte_order": s.byte_order,
                  "scale": s.scale, "offset": s.offset,
                  **({"min": s.min} if s.min is not None else {}),
                  **({"max": s.max} if s.max is not None else {})}
                 for s in profile.setpoints]
    block: dict[str, Any] = {"name": "chamber", "url": f"tcp://127.0.0.1:{port}", "unit_id": CHAMBER_UNIT,
                             "timeout": "1s", "setpoints": setpoints}
    if profile.run is not None:
        block["run"] = {"kind": profile.run.kind, "address": profile.run.address}
    return block


def gateway_config(plan: DemoPlan, modbus_port: int, mqtt_port: int, store: Path,
                   mqtt_protocol: str = "5", control: Control | None = None) -> dict[str, Any]:
    """The demo gateway's site config: every source and sink as a user would write them; with
    `control`, the chamber's controller and remote run control."""
    modbus = [("ref", 1, "generic-pt100", "reference", ["t"]),
              ("refh", 2, "generic-thr", "reference", ["rh"]),
              ("dut1", 3, "generic-thr", "dut", ["t", "rh"]),
              ("amb", 4, "generic-thr", "chamber", ["t", "rh"])]  # the room (no role "ambient")
    fields = [{"path": q, "channel": f"{{1}}-{q}", "quantity": quantity, "unit": unit, "role": "dut"}
              for q, quantity, unit in (("t", "temperature", "degC"), ("rh", "relative_humidity", "%rh"))]
    sinks: dict[str, Any] = {"local": [{"name": "local", "path": store, "flush_interval": "250ms"}]}
    if plan.influx_url:
        sinks["influxdb"] = [{"name": "influx", "url": plan.influx_url, "database": "calibration",
                              "flush_interval": "250ms"}]
    cfg: dict[str, Any] = {
        "gateway": {"site": SITE, "id": GATEWAY, "run": IDLE_RUN,
                    "data_dir": plan.out / "work" / "journal",
                    "health_interval": "1s", "shutdown_grace": "10s"},
        "sources": {
            "modbus": [{"name": prefix, "url": f"tcp://127.0.0.1:{modbus_port}", "unit_id": unit,
                        "interval": f"{int(plan.poll_s * 1000)}ms", "timeout": "1s",
                        "registers": gateway_registers(load_profile(profile), prefix=prefix, role=role,
                                                       names=names)}
                       for prefix, unit, profile, role, names in modbus],
            "mqtt": [{"name": "nodes", "url": f"mqtt://127.0.0.1:{mqtt_port}", "protocol": mqtt_protocol,
                      "topics": [{"topic": "lab/+/state", "time_path": "ts", "fields": fields}]}],
        },
        "sinks": sinks,
    }
    if control is not None:
        cfg["controllers"] = {"modbus": [_controller(load_profile("generic-chamber"), modbus_port)]}
        cfg["control"] = {"allow_remote": True, "keys": control.keys, "answer_key": control.answer_key,
                          "max_ttl": "10m"}  # the demo's broker stands in for the central one
        cfg["control"]["broker"] = {"url": f"mqtt://127.0.0.1:{control.broker_port}"}
    return cfg


def gateway_config_text(plan: DemoPlan, modbus_port: int, mqtt_port: int, store: Path,
                        mqtt_protocol: str = "5", control: Control | None = None) -> str:
    return dumps(gateway_config(plan, modbus_port, mqtt_port, store, mqtt_protocol, control),
                 comment="The demo gateway's site config (remotecal demo wrote it).")


def procedure_text(plan: DemoPlan) -> str:
    """The procedure the institute sends: DEMO_HUMIDITY up and down at DEMO_TEMPERATURE, then
    DEMO_FINAL; its times and slopes scaled to the demo's speed (chamber time in comments)."""
    k = plan.speed

    def stability(max_std: float, max_slope: float) -> dict[str, float]:
        # the engine's stable window starts the recording; a point's minimum length is RECORD_S
        return {"window_s": _g(WINDOW_S / k), "max_std": max_std, "max_slope_per_min": _g(max_slope * k),
                "min_duration_s": 0.0}

    data: dict[str, Any] = {
        "procedure": {"name": f"remotecal demo: {DEMO_TEMPERATURE:g} degC, "
                              f"{'-'.join(f'{h:g}' for h in DEMO_HUMIDITY)} %rh up and down",
                      "description": f"the demo's virtual chamber, time compressed x{k:g}",
                      "references": {"temperature": "ref-t", "humidity": "refh-rh"}},
        "defaults": {"settle_min_s": _g(SETTLE_MIN_S / k), "record_s": _g(RECORD_S / k),
                     "max_s": _g(MAX_S / k), "on_not_stable": "continue",
                     "stability": {**stability(MAX_STD_T, MAX_SLOPE_T),
                                   "humidity": stability(MAX_STD_RH, MAX_SLOPE_RH)}},
        "steps": [{"name": "RH sweep", "temperature": DEMO_TEMPERATURE, "humidity": list(DEMO_HUMIDITY),
                   "sequence": "up_down"}],
        "final": {"temperature": DEMO_FINAL[0], "humidity": DEMO_FINAL[1], "max_s": _g(FINAL_MAX_S / k)},
    }
    comment = "\n".join([
        "The remote run's procedure (remotecal demo wrote it; the institute sends it signed).",
        f"Times in seconds of wall clock: the demo compresses time {k:g}x.  In chamber time: settle at",
        f"least {SETTLE_MIN_S:g} s, record {RECORD_S:g} s once stable, at most {MAX_S:g} s a step; a "
        f"{WINDOW_S:g} s window, slopes of at most",
        f"{MAX_SLOPE_T:g} K/min ({MAX_SLOPE_RH:g} %rh/min) and standard deviations of at most "
        f"{MAX_STD_T:g} K ({MAX_STD_RH:g} %rh).",
    ])
    return dumps(data, comment=comment)


def _criteria_comment(k: float) -> str:
    """What pipeline.toml's [stability] tables are: the demo's criteria, scaled by its speed."""
    slope, std = f"{MAX_SLOPE_T:g} K/min ({MAX_SLOPE_RH:g} %rh/min)", f"{MAX_STD_T:g} K ({MAX_STD_RH:g} %rh)"
    wall = f"{MAX_SLOPE_T * k:.3g} K/min ({MAX_SLOPE_RH * k:.3g} %rh/min)"
    return "\n".join([
        f"The demo compresses time {k:g}x.  Its stability criteria in chamber time - a {WINDOW_S:g} s",
        f"window, a {MIN_DURATION_S:g} s minimum plateau, a slope of at most {slope} and a standard",
        f"deviation of at most {std} - become a {WINDOW_S / k:.3g} s window, a {MIN_DURATION_S / k:.3g} s "
        f"minimum and {wall}",
        "of wall-clock time; a standard deviation does not scale.",
    ])


def pipeline_config(plan: DemoPlan, store: Path) -> dict[str, Any]:
    """The demo's pipeline config: its stability criteria, scaled to its compressed time."""
    k = plan.speed
    if plan.influx_url:  # the pipeline reads what the gateway wrote, and writes calibration_point
        source: dict[str, Any] = {"kind": "influxdb", "url": plan.influx_url, "database": "calibration"}
    else:
        source = {"kind": "local", "path": store}

    def stability(max_std: float, max_slope: float) -> dict[str, float]:
        return {"window_s": _g(WINDOW_S / k), "max_std": max_std, "max_slope_per_min": _g(max_slope * k),
                "min_duration_s": _g(MIN_DURATION_S / k)}

    return {
        # Written once the chain has stopped: every reading is before this end, so the pipeline
        # knows the run is finished (it refuses a run still recording).
        "run": {"id": RUN_ID, "end": datetime.now(UTC)},
        "source": source,
        "stability": stability(MAX_STD_T, MAX_SLOPE_T),
        "comparisons": [
            {"dut": "dut*-t", "reference": "ref-t", "quantity": "temperature"},
            {"dut": "dut*-rh", "reference": "refh-rh", "quantity": "relative_humidity",
             # a hygrometer's criteria and uncertainties, in %rh
             "stability": stability(MAX_STD_RH, MAX_SLOPE_RH),
             "uncertainty": {"reference_drift": 0.3, "dut_resolution": 0.1, "chamber_inhomogeneity": 0.5}},
        ],
        # The reference standards with their certificates (invented numbers: a demo), so the
        # certificate states each one's identity and traceability.
        "references": {
            "ref-t": _reference("virtual Pt100 transmitter (profile generic-pt100)", "DEMO-PT100-0001",
                                "DEMO-CAL-T-0001", [[t, 0.05, 0.02, 2.0] for t in (10.0, 20.0, 30.0, 40.0)]),
            "refh-rh": _reference("virtual hygrometer (profile generic-thr)", "DEMO-THR-0002",
                                  "DEMO-CAL-RH-0002", [[rh, -0.5, 0.8, 2.0] for rh in (10.0, 50.0, 90.0)]),
        },
        "uncertainty": {"reference_drift": 0.01, "dut_resolution": 0.01, "chamber_inhomogeneity": 0.03},
        # The room around the chamber (unit 4 on the Modbus server): the ambient conditions.
        "conditions": {"ambient_temperature": "amb-t", "ambient_humidity": "amb-rh"},
        # The demo laboratory's calibration and measurement capability: no U is stated below it.
        "cmc": {"temperature": [{"min": -40.0, "max": 90.0, "U": 0.02}],
                "relative_humidity": [{"min": 5.0, "max": 95.0, "U": 0.5}]},
        # Who calibrated what for whom: certificate.xml states it (invented names: a demo).
        "certificate": {
            "laboratory": "remotecal demo laboratory", "laboratory_city": "Loopback",
            "laboratory_country": "ZZ",
            "customer": "remotecal demo customer", "customer_city": "Loopback", "customer_country": "ZZ",
            "responsible_person": "Demo Engineer", "performance_location": "customer",
        },
        # An [items.<channel>] per DUT channel: the virtual devices' identities.
        "items": {f"{dut}-{suffix}": {"manufacturer": "remotecal firmware_bridge", "model": model,
                                      "serial": serial}
                  for dut, (model, serial) in DEVICE_IDENTITIES.items() for suffix in ("t", "rh")},
        # The readings are simulated and time-compressed: report.html and certificate.xml say so.
        "report": {"simulated": True, "time_compression": _g(k)},
    }


def _reference(model: str, serial: str, certificate: str, points: list[list[float]]) -> dict[str, Any]:
    """A demo reference standard: calibrated 100 days ago, due in 265 days (the demo runs now)."""
    today = datetime.now(UTC).date()
    return {"manufacturer": "remotecal firmware_bridge", "model": model, "serial": serial,
            "certificate": certificate, "laboratory": "remotecal demo reference laboratory",
            "calibration_date": today - timedelta(days=100), "due_date": today + timedelta(days=265),
            "certificate_sha256": hashlib.sha256(certificate.encode()).hexdigest(), "points": points}


def pipeline_config_text(plan: DemoPlan, store: Path) -> str:
    return dumps(pipeline_config(plan, store), comment=_criteria_comment(plan.speed))
