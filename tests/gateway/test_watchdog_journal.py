"""The systemd watchdog covers the journal's thread: a gateway whose journal is stuck in one
SQLite call (a storage that hangs) stops pinging, so systemd restarts it; before, the event
loop kept pinging while nothing was committed or delivered."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import runtime
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.gateway.counter_source import counter_site


def test_a_journal_stuck_in_a_call_stops_the_watchdog_pings(
        counter: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    notify_path = tmp_path / "notify.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setattr(runtime, "JOURNAL_STUCK_S", 0.5)
    gateway = Gateway(load_config(counter_site(tmp_path, interval="20ms")))
    hang = threading.Event()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.setblocking(False)

    def pings() -> int:
        n = 0
        while True:
            try:
                n += sock.recv(4096).decode().split("\n").count("WATCHDOG=1")
            except BlockingIOError:
                return n

    async def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.05)

    async def three_pings() -> None:
        seen = 0

        def more() -> bool:
            nonlocal seen
            seen += pings()
            return seen >= 3
        await until(more)

    async def run() -> int:
        task = asyncio.create_task(gateway.run())
        try:
            await three_pings()
            stuck = asyncio.ensure_future(gateway.journal._run(hang.wait))  # the storage hangs
            await until(lambda: "no more watchdog pings" in caplog.text)
            pings()
            await asyncio.sleep(0.5)  # ten ping periods: none may come (an absence cannot be awaited)
            while_stuck = pings()
            hang.set()
            await stuck
            await three_pings()  # and they come again once the call returns
            return while_stuck
        finally:
            hang.set()
            gateway.request_stop()
            await task
            sock.close()

    with caplog.at_level(logging.ERROR, logger="remotecal.gateway"):
        while_stuck = asyncio.run(run())
    assert while_stuck == 0
    assert caplog.text.count("no more watchdog pings") == 1
