"""At SIGTERM the sinks drain for up to `shutdown_grace`: that includes what was submitted to
the journal just before (the last readings, the health point written at shutdown), not only
what its group commit had already made durable.  Before: a runner that found nothing committed
yet returned at once, and the shutdown health point (and any reading still in the commit
queue) waited for the next start - in CI, a test found no health point at all."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.runtime import Gateway
from tests.gateway.counter_source import counter_site


@pytest.mark.parametrize("attempt", range(5))
def test_the_sinks_drain_what_was_submitted_before_the_stop(counter: None, tmp_path: Path, attempt: int) -> None:
    gateway = Gateway(load_config(counter_site(tmp_path, interval="1ms", shutdown_grace="10s")))

    async def run() -> None:
        task = asyncio.create_task(gateway.run())
        async with asyncio.timeout(30):
            while gateway.journal.stats.delivered.get("store", 0) < 50:
                await asyncio.sleep(0.01)
        gateway.request_stop()
        await task

    asyncio.run(run())
    assert gateway.journal.stats.delivered["store"] == gateway.journal.stats.records, "left in the journal"
    with sqlite3.connect(tmp_path / "store.db") as db:
        health = [json.loads(f) for (f,) in db.execute("SELECT fields FROM gateway_health")]
        ticks = db.execute("SELECT count(*) FROM reading").fetchone()[0]
    assert len(health) == 1, "the health point written at shutdown was not delivered at shutdown"
    assert health[0]["received"] == ticks
