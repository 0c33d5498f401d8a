"""The demo's virtual devices in one chamber (firmware_bridge): a reference thermometer, a
reference hygrometer, DUT1, the room's thermo-hygrometer and the chamber's own controller
(profile generic-chamber: the gateway writes its setpoints) on one Modbus TCP server; DUT2 and
DUT3 as MQTT sensor nodes.  Each DUT's error is known, so the demo's corrections can be checked
against the truth."""

from __future__ import annotations

from firmware_bridge.chamber import Chamber, Sensor
from firmware_bridge.instrument import VirtualInstrument
from firmware_bridge.mqtt_node import MqttSensorNode
from firmware_bridge.profile import load_profile

__all__ = ["AMBIENT", "CHAMBER_UNIT", "DEVICE_IDENTITIES", "instruments", "nodes"]

CHAMBER_UNIT = 5
"""The chamber's own controller (profile generic-chamber) on the demo's Modbus server."""

DEVICE_IDENTITIES = {
    "dut1": ("virtual thermo-hygrometer (profile generic-thr) on Modbus TCP", "DEMO-THR-0001"),
    "dut2": ("virtual MQTT sensor node", "DEMO-MQTT-0002"),
    "dut3": ("virtual MQTT sensor node", "DEMO-MQTT-0003"),
}
"""Each DUT's model and serial number, as its certificate states them ([items.<channel>])."""

AMBIENT = (22.5, 41.0)
"""The room's temperature [degC] and relative humidity [%rh] (unit 4 on the Modbus server)."""


def instruments(chamber: Chamber) -> list[VirtualInstrument]:
    """Reference thermometer (reads 0.05 K low, as its certificate says), reference hygrometer
    (reads 0.5 %rh high), DUT1 (+0.3 K + 0.4 % of reading, -1.5 %rh), the room's
    thermo-hygrometer (the ambient conditions) and the chamber's controller (unit 5: setpoint
    holding registers and a run coil; a write starts the chamber's approach) on one Modbus
    server."""
    return [
        VirtualInstrument(chamber, load_profile("generic-pt100"), unit_id=1,
                          sensors={"temperature": Sensor("ref-t", error=[-0.05], noise=0.003, seed=1)}),
        VirtualInstrument(chamber, load_profile("generic-thr"), unit_id=2,
                          sensors={"relative_humidity": Sensor("refh-rh", error=[0.5], noise=0.05, seed=2)}),
        VirtualInstrument(chamber, load_profile("generic-thr"), unit_id=3,
                          sensors={"temperature": _dut_sensor("dut1-t", [0.3, 0.004], 3),
                                   "relative_humidity": _dut_sensor("dut1-rh", [-1.5], 4)}),
        # The laboratory's room around the chamber: the ambient conditions the certificate states.
        VirtualInstrument(Chamber([], start_temperature=AMBIENT[0], start_humidity=AMBIENT[1], tau_s=1.0,
                                  oscillation=0.05, oscillation_period_s=1800.0, noise=0.01,
                                  speed=chamber.speed, seed=5),
                          load_profile("generic-thr"), unit_id=4,
                          sensors={"temperature": Sensor("amb-t", noise=0.01, resolution=0.01, seed=5),
                                   "relative_humidity": Sensor("amb-rh", noise=0.1, resolution=0.1, seed=6)}),
        VirtualInstrument(chamber, load_profile("generic-chamber"), unit_id=CHAMBER_UNIT, sensors={}),
    ]


def _dut_sensor(name: str, error: list[float], seed: int) -> Sensor:
    """A DUT: its error curve, noise and display resolution (0.01 degC, 0.1 %rh)."""
    rh = name.endswith("-rh")
    return Sensor(name, error=error, noise=0.1 if rh else 0.01, resolution=0.1 if rh else 0.01, seed=seed)


def nodes(chamber: Chamber, port: int, interval_s: float) -> list[MqttSensorNode]:
    spec = {"dut2": ([-0.2], [2.0]), "dut3": ([0.1, -0.003], [-0.8])}
    return [
        MqttSensorNode(chamber, "127.0.0.1", port, topic=f"lab/{name}/state", interval_s=interval_s,
                       name=name,
                       sensors={"t": ("temperature", _dut_sensor(f"{name}-t", et, 10 + i)),
                                "rh": ("relative_humidity", _dut_sensor(f"{name}-rh", er, 20 + i))})
        for i, (name, (et, er)) in enumerate(spec.items())
    ]
