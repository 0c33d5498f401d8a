"""The demo's loopback MQTT broker: Mosquitto when it is installed, else amqtt in-process."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

__all__ = ["broker", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])



@contextlib.asynccontextmanager
async def broker(workdir: Path) -> AsyncIterator[tuple[int, str]]:
    """A loopback MQTT broker for the demo: Mosquitto if installed, else amqtt in-process;
    (its port, the MQTT version the gateway speaks to it: amqtt knows only 3.1.1)."""
    port = free_port()
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
