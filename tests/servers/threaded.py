"""Serve an async server (any async context manager) on an event loop of its own thread, so a
synchronous test can go on meanwhile - e.g. a virtual device that a child process reads."""

from __future__ import annotations

import asyncio
import threading
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

__all__ = ["ServedInThread"]

S = TypeVar("S", bound=AbstractAsyncContextManager[Any])


class ServedInThread(threading.Thread, Generic[S]):
    """`with ServedInThread(server) as served: served.server.port ...`; ended at exit."""

    def __init__(self, server: S):
        super().__init__(daemon=True)
        self.server = server
        self.ready = threading.Event()
        self._quit: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        async def main() -> None:
            self._loop, self._quit = asyncio.get_running_loop(), asyncio.Event()
            async with self.server:
                self.ready.set()
                await self._quit.wait()
        asyncio.run(main())

    def halt(self) -> None:
        if self._loop is not None and self._quit is not None:
            self._loop.call_soon_threadsafe(self._quit.set)
        self.join(10)

    def __enter__(self) -> ServedInThread[S]:
        self.start()
        if not self.ready.wait(10):
            raise RuntimeError(f"{self.server!r} did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt()
