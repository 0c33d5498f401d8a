"""The running gateway's local control socket: `<data_dir>/control.sock` (mode 0600).

One JSON object per line in, one JSON object per line out, any number of requests per
connection.  A request names its operation in `op`; its other keys are the handler's:

    {"op": "status"}                              -> {"ok": true, ...the handler's keys}
    {"op": "run.pause", "actor": "ana", ...}      -> {"ok": false, "error": "why not"}

Parts of the gateway register their operations with `LocalControl.register(op, handler)`,
`handler(request: dict) -> Awaitable[dict]`, before or after the server starts.  A handler that
raises refuses that one request (`ok: false` and the reason in words); it never ends the
gateway.  `ops` (built in) lists the registered operations.

Clients: `await request(data_dir, op, **args)` or `request_sync(...)` return the reply (with
`ok: true`); they raise `GatewayNotRunning` when no gateway serves that data_dir, and
`ControlRefused` with the handler's reason when it refused.  Only the data_dir's owner (the
socket's mode 0600) can connect: whoever may read the journal may steer the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.errors import RemotecalError

__all__ = [
    "SOCKET_NAME",
    "ControlRefused",
    "GatewayNotRunning",
    "Handler",
    "LocalControl",
    "request",
    "request_sync",
    "socket_path",
]

log = logging.getLogger("remotecal.gateway.control")

SOCKET_NAME = "control.sock"
MAX_LINE = 4 * 1024 * 1024  # a request carries at most a procedure's text
DEFAULT_TIMEOUT = 10.0
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with its NUL

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class GatewayNotRunning(RemotecalError):
    """No gateway serves this data_dir's control socket."""


class ControlRefused(RemotecalError):
    """The gateway answered, and refused the request; the message is its reason."""

    def __init__(self, op: str, reason: str):
        self.op = op
        self.reason = reason
        super().__init__(reason)


def socket_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / SOCKET_NAME


def _address(path: Path) -> tuple[str, int | None]:
    """An address `bind`/`connect` accept for `path`: the path itself, or, when it is longer than
    sun_path holds (a deep data_dir), the same file through an open descriptor of its folder
    (`/proc/self/fd/N/control.sock`; the caller closes N)."""
    text = os.fspath(path)
    if len(os.fsencode(text)) <= _SUN_PATH_MAX:
        return text, None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{path.name}", fd


class LocalControl:
    """The control socket's server and its operations."""

    def __init__(self, data_dir: Path | str):
        self.path = socket_path(data_dir)
        self._handlers: dict[str, Handler] = {"ops": self._ops}
        self._server: asyncio.AbstractServer | None = None
        self._ino: int | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def register(self, op: str, handler: Handler) -> None:
        """Serve `op` with `handler`; registering an op twice is a bug (two owners)."""
        if op in self._handlers:
            raise ValueError(f"control operation {op!r} is registered already")
        self._handlers[op] = handler

    @property
    def ops(self) -> list[str]:
        return sorted(self._handlers)

    async def _ops(self, _request: dict[str, Any]) -> dict[str, Any]:
        return {"ops": self.ops}

    async def start(self) -> None:
        """Bind the socket (replacing one a dead gateway left: the data_dir lock, taken first, says
        no other gateway lives here) and serve.  The socket is bound under a temporary name, made
        0600 and renamed into place, so it is never reachable with a wider mode."""
        tmp = self.path.with_name(f".{SOCKET_NAME}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            address, fd = _address(tmp)
            try:
                sock.bind(address)
            finally:
                if fd is not None:
                    os.close(fd)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            self._ino = os.stat(self.path).st_ino
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        log.debug("control socket %s: %s", self.path, ", ".join(self.ops))

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._ino:  # ours, not a later gateway's
                self.path.unlink()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: the stream cannot resync
                    writer.write(_encode({"ok": False, "error": f"request longer than {MAX_LINE} bytes"}))
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                writer.write(_encode(await self.handle(line)))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def handle(self, line: bytes | str) -> dict[str, Any]:
        """One request line -> its reply; never raises (a handler's bug is logged with its traceback)."""
        try:
            req = json.loads(line)
        except ValueError as exc:
            return {"ok": False, "error": f"not a JSON object: {exc}"}
        if not isinstance(req, dict):
            return {"ok": False, "error": "not a JSON object"}
        op = req.get("op")
        handler = self._handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown op {op!r}; this gateway serves {', '.join(self.ops)}"}
        try:
            reply = await handler(req)
        except asyncio.CancelledError:
            raise
        except RemotecalError as exc:  # the handler's refusal, in words
            return {"ok": False, "error": str(exc) or type(exc).__name__}
        except Exception as exc:
            log.exception("control op %r failed", op)
            return {"ok": False, "error": f"{op} failed: {type(exc).__name__}: {exc}"}
        out = {"ok": True}
        out.update(reply)
        return out


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":"), default=str).encode() + b"\n"


def _not_running(path: Path, exc: OSError) -> GatewayNotRunning:
    if isinstance(exc, FileNotFoundError) or exc.errno in (errno.ENOENT, errno.ENOTDIR):
        why = "no control socket there"
    elif exc.errno == errno.ECONNREFUSED:
        why = "its control socket is left from a gateway that has stopped"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        return GatewayNotRunning(f"{path}: permission denied - run this as the gateway's user")
    else:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
    return GatewayNotRunning(f"no gateway is running on {path.parent} ({why})")


def _no_answer(path: Path, op: str, timeout: float) -> GatewayNotRunning:
    return GatewayNotRunning(f"the gateway on {path.parent} did not answer {op!r} within {timeout:g} s")


def _reply(op: str, path: Path, raw: bytes) -> dict[str, Any]:
    if not raw:
        raise GatewayNotRunning(f"the gateway on {path.parent} closed the connection (stopping?)")
    reply = json.loads(raw)
    if not reply.get("ok"):
        raise ControlRefused(op, str(reply.get("error") or "refused"))
    return dict(reply)


async def request(data_dir: Path | str, op: str, *, timeout: float = DEFAULT_TIMEOUT,
                  **args: Any) -> dict[str, Any]:
    """Send one request to the gateway on `data_dir` and return its reply."""
    path = socket_path(data_dir)
    try:
        address, fd = _address(path)
    except OSError as exc:
        raise _not_running(path, exc) from None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_unix_connection(address, limit=MAX_LINE)
            except OSError as exc:
                raise _not_running(path, exc) from None
            finally:
                if fd is not None:
                    os.close(fd)
            try:
                writer.write(_encode({**args, "op": op}))
                await writer.drain()
                raw = await reader.readline()
            except ConnectionError:
                raw = b""
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
    except TimeoutError:
        raise _no_answer(path, op, timeout) from None
    return _reply(op, path, raw)


def request_sync(data_dir: Path | str, op: str, *, timeout: float = DEFAULT_TIMEOUT,
                 **args: Any) -> dict[str, Any]:
    """`request` for code without an event loop (the CLI)."""
    path = socket_path(data_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            address, fd = _address(path)
            try:
                sock.connect(address)
            finally:
                if fd is not None:
                    os.close(fd)
        except TimeoutError:
            raise _no_answer(path, op, timeout) from None
        except OSError as exc:
            raise _not_running(path, exc) from None
        try:
            sock.sendall(_encode({**args, "op": op}))
            with sock.makefile("rb") as f:
                raw = f.readline(MAX_LINE + 1)
        except TimeoutError:
            raise _no_answer(path, op, timeout) from None
        except ConnectionError:
            raw = b""
    return _reply(op, path, raw)
