"""The demo's chain: chamber and devices, broker, gateway, the institute's signed start of the
remote run, the run to its end, then the pipeline on the run's live windows (remotecal.demo)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
import tomllib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from firmware_bridge.chamber import Chamber
from firmware_bridge.modbus import ModbusServer
from gateway.config import parse_config
from gateway.control.client import next_seq, send_command
from gateway.control.config import InstituteConfig
from gateway.control.envelope import Answer, Command, command_payload, parse_answer
from gateway.control.keys import load_private_key, load_public_keys, new_key_pair
from gateway.errors import RemotecalError
from gateway.run import TERMINAL
from gateway.runtime import Gateway
from remotecal.demo.broker import broker
from remotecal.demo.configs import Control, gateway_config_text, pipeline_config_text, procedure_text
from remotecal.demo.devices import instruments, nodes
from remotecal.demo.plan import (
    ACTOR,
    CHAMBER_TAU_S,
    DEMO_HUMIDITY,
    DEMO_TEMPERATURE,
    GATEWAY,
    INSTITUTE,
    RUN_ID,
    SITE,
    DemoPlan,
    prepare_out,
)

__all__ = ["run_demo"]

log = logging.getLogger("remotecal.demo")


async def run_demo(plan: DemoPlan, progress: Any = None) -> dict[str, Path]:
    """Run the chain; return the paths of the results.  `progress(chamber, store, status)` is
    awaited every half second while the run goes on (`status`: the run engine's, the CLI's
    live display shows it)."""
    work = prepare_out(plan.out)
    store = work / "store.db"
    chamber = Chamber([], start_temperature=DEMO_TEMPERATURE, start_humidity=DEMO_HUMIDITY[0],
                      tau_s=CHAMBER_TAU_S, speed=plan.speed, seed=7)
    institute_key, institute_pub = new_key_pair("institute", work / "institute", institute=INSTITUTE)
    answer_key, answer_pub = new_key_pair("gateway", work / "gateway-keys", site=SITE, gateway=GATEWAY)
    procedure = procedure_text(plan)
    (plan.out / "procedure.toml").write_text(procedure)
    with tempfile.TemporaryDirectory(prefix="remotecal-demo-") as tmp:
        async with broker(Path(tmp)) as (mqtt_port, mqtt_protocol):
            server = ModbusServer([i.image() for i in instruments(chamber)]).tcp(port=0)
            async with server:
                control = Control(institute_pub, answer_key, mqtt_port)
                text = gateway_config_text(plan, server.port, mqtt_port, store, mqtt_protocol, control)
                cfg = parse_config(tomllib.loads(text))
                (plan.out / "site.toml").write_text(text)
                gateway = Gateway(cfg)
                if mqtt_protocol != "5":
                    # Run control speaks MQTT 5 (both sides), amqtt 3.1.1 only: the gateway does
                    # not subscribe there, and the same signed start goes to its control service
                    # in-process - verified, carried out, recorded and answered alike.
                    gateway.remote_control = None
                    log.warning("the embedded broker (amqtt, MQTT 3.1.1) cannot carry run control (MQTT 5): "
                                "the institute's signed start is handed to the gateway in-process; "
                                "install Mosquitto for the broker path")
                engine = gateway.run_engine
                assert engine is not None  # the demo's site has the chamber's controller
                task = asyncio.create_task(gateway.run(), name="demo-gateway")
                await asyncio.sleep(0)  # the gateway installs its SIGINT/SIGTERM handlers first
                interrupted = _on_interrupt(gateway)
                started = [n.start() for n in nodes(chamber, mqtt_port, plan.poll_s)]
                chamber.t0 = time.time()

                def check() -> None:
                    if interrupted.is_set():
                        raise KeyboardInterrupt
                    if task.done():
                        task.result()
                        raise RemotecalError("the demo gateway stopped early")
                    for n in started:
                        if n.failure is not None:
                            raise RuntimeError(f"demo sensor node {n.name} stopped") from n.failure

                try:
                    institute = _Institute(institute_key, answer_pub, work / "institute", mqtt_port)
                    if gateway.remote_control is not None:
                        await _until(lambda: gateway.remote_control is not None
                                     and gateway.remote_control.subscribed.is_set(), check, 30.0,
                                     "the demo gateway did not subscribe to its commands within 30 s")
                        send = institute.over_broker
                    else:
                        send = partial(institute.in_process, gateway.run_control)
                    await send(procedure)
                    deadline = time.monotonic() + plan.max_wall_s + 30.0
                    while True:
                        check()
                        status = await engine.status()
                        if progress is not None:
                            await progress(chamber, store, status)
                        if status["state"] in TERMINAL:
                            break
                        if time.monotonic() > deadline:
                            raise RemotecalError(f"the demo run did not end within {plan.max_wall_s:.0f} s "
                                                 f"(state {status['state']}, step {status['step']})")
                        await asyncio.sleep(0.5)
                    if status["state"] != "finished":
                        raise RemotecalError(f"the demo run {status['state']}: {status['reason']}")
                finally:
                    for n in started:
                        await asyncio.to_thread(n.stop)
                    await asyncio.sleep(4 * plan.poll_s)
                    gateway.request_stop()
                    await task
                    _restore_interrupt()
    pipeline_text = pipeline_config_text(plan, store)
    (plan.out / "pipeline.toml").write_text(pipeline_text)
    paths = await asyncio.to_thread(_run_pipeline, plan.out / "pipeline.toml", plan.out)
    events = await asyncio.to_thread(write_run_events, store, plan.out / "run_events.csv")
    return paths | {"procedure": plan.out / "procedure.toml", "run events": events}


RUN_EVENT_COLUMNS = ("time", "state", "step", "step_name", "setpoint_temperature", "setpoint_humidity",
                     "outcome", "command", "accepted", "origin", "actor", "reason")


def write_run_events(store: Path, path: Path) -> Path:
    """The run's `run_event` points from the demo's store (every transition and command, in
    time order) as a CSV file: the run's state machine as it went."""
    import csv
    import json
    import sqlite3
    from datetime import UTC, datetime

    with contextlib.closing(sqlite3.connect(store)) as db:
        rows = db.execute("SELECT time_ns, fields FROM point WHERE measurement = 'run_event' AND run = ? "
                          "ORDER BY time_ns", (RUN_ID,)).fetchall()
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(RUN_EVENT_COLUMNS)
        for time_ns, text in rows:
            fields = json.loads(text)
            when = datetime.fromtimestamp(time_ns / 1e9, UTC).isoformat(timespec="milliseconds")
            values = (fields.get(c, "") for c in RUN_EVENT_COLUMNS[1:])
            out.writerow([when.replace("+00:00", "Z"),
                          *(str(v).lower() if isinstance(v, bool) else v for v in values)])
    return path


async def _until(ready: Callable[[], bool], check: Callable[[], None], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        check()
        if time.monotonic() > deadline:
            raise RemotecalError(why)
        await asyncio.sleep(0.05)


class _Institute:
    """The institute's side of the demo: its throwaway command key signs the start; the
    gateway's answer is verified with the gateway's answer key."""

    def __init__(self, key_file: Path, gateway_pub: Path, state_dir: Path, broker_port: int) -> None:
        self.key = load_private_key(key_file, "institute")
        self.gateway_keys = load_public_keys(gateway_pub, "gateway")
        self.config = InstituteConfig.model_validate({
            "institute": {"key_file": key_file, "gateway_keys": gateway_pub, "actor": ACTOR,
                          "state_dir": state_dir, "timeout": 15.0},
            "broker": {"url": f"mqtt://127.0.0.1:{broker_port}"}})

    async def over_broker(self, procedure: str) -> None:
        """`remotecal run start` as the institute sends it: through the broker, MQTT 5."""
        reply = await asyncio.to_thread(
            send_command, self.config, site=SITE, gateway=GATEWAY, command="start", actor=ACTOR,
            run=RUN_ID, procedure=procedure, key=self.key, gateway_keys=self.gateway_keys)
        self._accepted(reply.answer, reply.verified_by)

    async def in_process(self, service: Any, procedure: str) -> None:
        """The same signed start, handed to the gateway's control service directly."""
        now = time.time_ns()
        i = self.config.institute
        cmd = Command(site=SITE, gateway=GATEWAY, command="start", actor=ACTOR,
                      seq=next_seq(i.state_dir or Path("."), self.key.key_id), issued_ns=now,
                      expires_ns=now + int(i.ttl * 1e9), run=RUN_ID, procedure=procedure)
        payload = await service.remote(command_payload(cmd, self.key))
        if payload is None:
            raise RemotecalError("the demo gateway did not answer its start")
        answer, signer = parse_answer(payload, self.gateway_keys)
        self._accepted(answer, signer)

    @staticmethod
    def _accepted(answer: Answer, signer: Any) -> None:
        if signer is None:
            raise RemotecalError("the demo gateway's answer to its start is not signed by its answer key")
        if not answer.accepted:
            raise RemotecalError(f"the demo gateway refused its start: {answer.refusal}: {answer.reason}")


def _on_interrupt(gateway: Gateway) -> asyncio.Event:
    """Ctrl-C (SIGINT) while the chain runs: the gateway stops (flushing, as for SIGTERM) and
    the demo ends as interrupted, not as a gateway that "stopped early"."""
    interrupted = asyncio.Event()

    def interrupt() -> None:
        interrupted.set()
        gateway.request_stop()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupt)
    return interrupted


def _restore_interrupt() -> None:
    """Ctrl-C in the pipeline's step is a KeyboardInterrupt again."""
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)


def _run_pipeline(config: Path, out: Path) -> dict[str, Path]:
    from pipelines.pipeline import run_pipeline

    result = run_pipeline(config, out)
    paths = {"corrections.csv": result.csv_path}
    if result.report_path and result.certificate_path:
        paths |= {"report.html": result.report_path, "certificate.xml": result.certificate_path}
    if result.pdf_path:
        paths["certificate.pdf"] = result.pdf_path
    return paths | {"site config": out / "site.toml", "pipeline config": config}
