"""The demo's chain: chamber and devices, broker, gateway, pipeline (remotecal.demo)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from firmware_bridge.chamber import Chamber
from firmware_bridge.modbus import ModbusServer
from gateway.config import parse_config
from gateway.errors import RemotecalError
from gateway.runtime import Gateway
from remotecal.demo.broker import broker
from remotecal.demo.configs import gateway_config_text, pipeline_config_text
from remotecal.demo.devices import instruments, nodes
from remotecal.demo.plan import DEMO_PROGRAM, DemoPlan, prepare_out

__all__ = ["run_demo"]


async def run_demo(plan: DemoPlan, progress: Any = None) -> dict[str, Path]:
    """Run the chain; return the paths of the results.  `progress(chamber, store)` is awaited
    every half second while the chamber runs (the CLI shows a live display with it)."""
    work = prepare_out(plan.out)
    store = work / "store.db"
    start = DEMO_PROGRAM[0]
    chamber = Chamber(DEMO_PROGRAM, start_temperature=start.temperature, start_humidity=start.humidity,
                      speed=plan.speed, seed=7)
    with tempfile.TemporaryDirectory(prefix="remotecal-demo-") as tmp:
        async with broker(Path(tmp)) as (mqtt_port, mqtt_protocol):
            server = ModbusServer([i.image() for i in instruments(chamber)]).tcp(port=0)
            async with server:
                text = gateway_config_text(plan, server.port, mqtt_port, store, mqtt_protocol)
                cfg = parse_config(tomllib.loads(text))
                (plan.out / "site.toml").write_text(text)
                gateway = Gateway(cfg)
                task = asyncio.create_task(gateway.run(), name="demo-gateway")
                await asyncio.sleep(0)  # the gateway installs its SIGINT/SIGTERM handlers first
                interrupted = _on_interrupt(gateway)
                started = [n.start() for n in nodes(chamber, mqtt_port, plan.poll_s)]
                chamber.t0 = time.time()
                try:
                    end = chamber.t0 + plan.wall_duration_s
                    while time.time() < end:
                        if interrupted.is_set():
                            raise KeyboardInterrupt
                        if task.done():
                            task.result()
                            raise RemotecalError("the demo gateway stopped early")
                        for n in started:
                            if n.failure is not None:
                                raise RuntimeError(f"demo sensor node {n.name} stopped") from n.failure
                        if progress is not None:
                            await progress(chamber, store)
                        await asyncio.sleep(0.5)
                finally:
                    for n in started:
                        await asyncio.to_thread(n.stop)
                    await asyncio.sleep(4 * plan.poll_s)
                    gateway.request_stop()
                    await task
                    _restore_interrupt()
    pipeline_text = pipeline_config_text(plan, store)
    (plan.out / "pipeline.toml").write_text(pipeline_text)
    return await asyncio.to_thread(_run_pipeline, plan.out / "pipeline.toml", plan.out)


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
