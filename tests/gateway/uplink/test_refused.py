"""The refused frames' table: kept whole, bounded with garbage going first, requeue requests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.ingest.refused import RefusedFrames


async def test_kept_whole_bounded_garbage_first_and_requeue_requests(tmp_path: Path) -> None:
    store = RefusedFrames(tmp_path / "refused.db", max_bytes=100_000)
    store.open()
    done = asyncio.Event()
    writer = asyncio.create_task(store.run(done))
    committed: list[int] = []
    big = bytes(range(256)) * 40  # 10 KiB, kept whole (the journal's quarantine keeps 1 KiB)
    for i in range(4):
        store.submit("unknown gateway", "t/wait", "unknown gateway: no key", big, i, lambda i=i: committed.append(i))
    for i in range(4, 12):
        store.submit("malformed", "t/junk", "malformed: junk", big, i, lambda i=i: committed.append(i))
    done.set()
    await writer
    assert committed == list(range(12))  # each acknowledged only once on disk
    counts, rows = RefusedFrames.read(tmp_path / "refused.db", 100)
    # over 100 kB: the oldest garbage went first, down to 90 kB; every frame waiting for a key stayed
    assert counts["unknown gateway"] == 4 and counts["malformed"] < 8
    assert all(r.payload == big for r in rows) and store.deleted == 8 - counts["malformed"]
    waiting = await store.waiting(["t/wait"])
    assert [r.time_ns for r in waiting] == [0, 1, 2, 3]
    assert RefusedFrames.request_requeue(tmp_path / "refused.db", ["malformed"]) == counts["malformed"]
    asked = await store.requested()
    assert {r.kind for r in asked} == {"malformed"} and all(r.requeue for r in asked)
    await store.refused_again([(asked[0].id, "bad signature", "bad signature: still")])
    await store.remove([r.id for r in waiting])
    assert RefusedFrames.read(tmp_path / "refused.db")[0] == {"bad signature": 1, "malformed": counts["malformed"] - 1}
    assert len(await store.requested()) == counts["malformed"] - 1
    store.close()
    assert RefusedFrames.read(tmp_path / "none.db") == ({}, [])
