"""A chamber simulated over MQTT for the run engine's end-to-end tests, and a gateway process
that knows its controller.

    ChamberSim     (the test's process) a reference thermometer and a DUT (+0.1 degC) in a
                   first-order chamber: it follows the setpoint retained on
                   `<topic>/temperature` and publishes `{"t": value, "ts": ms}` on
                   `sim/ref/state` and `sim/dut/state` at `rate` Hz, QoS 1
    mqttsim        a controller kind (`[[controllers.mqttsim]]`): writes each setpoint as a
                   retained message on `<topic>/<quantity>`; `read_back` makes a written value
                   read back as another (ControllerError, like a real controller's mismatch)
    python -m tests.gateway.run.sim -c site.toml
                   `remotecal gateway run` with the kind registered (the test starts its run
                   with `run.start` on the control socket, as `remotecal run start --local`)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import BaseModel, ConfigDict

from gateway.controllers import ControllerError
from gateway.plugin import ControllerKind


class MqttSimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    port: int
    topic: str = "sim/chamber"
    writes: list[str] = ["temperature"]
    read_back: dict[str, float] = {}
    """Written value (as text, "25.0") -> the value read back."""

    def quantities(self) -> frozenset[str]:
        return frozenset(self.writes)

    @property
    def setpoints(self) -> list[Any]:
        """What gateway.procedure.site_problems reads of a controller block (no range limits)."""
        from types import SimpleNamespace

        return [SimpleNamespace(quantity=q, min=None, max=None) for q in self.writes]


class MqttSimController:
    def __init__(self, cfg: MqttSimConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.quantities = cfg.quantities()

    def _publish(self, items: dict[str, float]) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ctl-{self.name}")
        client.connect("127.0.0.1", self.cfg.port)
        client.loop_start()
        try:
            for q, v in items.items():
                client.publish(f"{self.cfg.topic}/{q}", str(v), qos=1, retain=True).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()

    async def apply(self, setpoints: dict[str, float]) -> None:
        try:
            await asyncio.to_thread(self._publish, setpoints)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ControllerError(f"cannot write the setpoints: {exc}") from None
        for q, v in setpoints.items():
            back = self.cfg.read_back.get(str(float(v)), v)
            if back != v:
                raise ControllerError(f"the {q} setpoint read back {back:g} after writing {v:g}")

    async def set_running(self, on: bool) -> None:
        pass

    async def close(self) -> None:
        pass


KIND = ControllerKind(name="mqttsim", title="simulated", config=MqttSimConfig, build=MqttSimController,
                      sample=Path("/dev/null"))


class ChamberSim(threading.Thread):
    """Publishes the reference's readings until stopped; `sent` counts the acknowledged ones."""

    def __init__(self, port: int, *, rate: float = 20.0, tau_s: float = 0.5, noise: float = 0.002,
                 start: float = 20.0, topic: str = "sim/chamber", wobble: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.port, self.rate, self.tau_s, self.noise, self.topic = port, rate, tau_s, noise, topic
        self.value = self.target = start
        self.wobble = wobble
        self.sent: list[tuple[int, float]] = []
        """(ts [ms], value) of the reference readings acknowledged by the broker."""
        self.dut_sent: list[tuple[int, float]] = []
        self.dut_error = 0.1
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._rng = random.Random(7)

    def run(self) -> None:
        try:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="chamber-sim")
            client.max_inflight_messages_set(100)
            client.on_message = self._on_setpoint
            client.connect("127.0.0.1", self.port)
            client.subscribe(f"{self.topic}/temperature", qos=1)
            client.loop_start()
            period = 1.0 / self.rate
            k = 0
            t0 = time.monotonic()
            while not self._halt.is_set():
                self.value += (self.target - self.value) * (1 - math.exp(-period / self.tau_s))
                ts = time.time_ns() // 10**6
                v = round(self.value + self._rng.gauss(0, self.noise)
                          + self.wobble * math.sin(2 * math.pi * ts / 1000 / 3), 5)
                dut = round(v + self.dut_error + self._rng.gauss(0, self.noise), 5)
                infos = [client.publish("sim/ref/state", json.dumps({"t": v, "ts": ts}), qos=1),
                         client.publish("sim/dut/state", json.dumps({"t": dut, "ts": ts}), qos=1)]
                for info in infos:
                    info.wait_for_publish(30)
                    if not info.is_published():
                        raise TimeoutError("the broker did not acknowledge a reading")
                self.sent.append((ts, v))
                self.dut_sent.append((ts, dut))
                k += 1
                time.sleep(max(0.0, t0 + k * period - time.monotonic()))
            client.disconnect()
            client.loop_stop()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _on_setpoint(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.target = float(msg.payload.decode())

    def halt(self) -> None:
        self._halt.set()


def site_config(data_dir: Path, port: int, influx_url: str, *, read_back: dict[str, float] | None = None) -> str:
    from tests.gateway.harness import config_text

    return config_text({
        "gateway": {"site": "lab1", "id": "gw01", "run": "between-runs", "data_dir": data_dir,
                    "health_interval": "1s", "shutdown_grace": "10s"},
        "sources": {"mqtt": [{"name": "broker", "url": f"mqtt://127.0.0.1:{port}", "reconnect_min": "100ms",
                              "reconnect_max": "1s", "topics": [
                                  {"topic": "sim/ref/state", "format": "json", "time_path": "ts", "fields": [
                                      {"path": "t", "channel": "ref-t", "quantity": "temperature", "unit": "degC",
                                       "role": "reference"}]},
                                  {"topic": "sim/dut/state", "format": "json", "time_path": "ts", "fields": [
                                      {"path": "t", "channel": "dut-t", "quantity": "temperature", "unit": "degC",
                                       "role": "dut"}]}]}]},
        "sinks": {"influxdb": [{"name": "influx", "url": influx_url, "api": "v1", "database": "calibration",
                                "flush_interval": "100ms", "max_retry_interval": "1s"}]},
        "controllers": {"mqttsim": [{"name": "chamber", "port": port, "read_back": read_back or {}}]},
    })


PROCEDURE = """
[procedure]
name = "three temperatures"
references = { temperature = "ref-t" }

[defaults]
settle_min_s = 0.5
record_s = 2
max_s = {max_s}
on_not_stable = "continue"

[defaults.stability]
window_s = 1.0
max_std = 0.01
max_slope_per_min = 0.5

[[steps]]
temperature = [20.0, 25.0, 30.0]
"""


def procedure_text(max_s: float = 30.0) -> str:
    return PROCEDURE.replace("{max_s}", f"{max_s:g}")


def main() -> None:
    from gateway import registry
    from gateway.config import load_config
    from gateway.runtime import Gateway
    from remotecal.logs import setup_logging

    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    args = parser.parse_args()
    registry.register(KIND)
    cfg = load_config(args.config)
    setup_logging("info")
    asyncio.run(Gateway(cfg).run())

if __name__ == "__main__":
    main()
