"""The gateway's local control socket (gateway.localcontrol): what `gateway status` and the run
commands rely on - a registered op answers, a refusal or a handler's bug is one reply (the
gateway serves on), no gateway there is one clear error, only the owner can connect."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.errors import RemotecalError
from gateway.localcontrol import (
    ControlRefused,
    GatewayNotRunning,
    LocalControl,
    request,
    request_sync,
    socket_path,
)
from gateway.runtime import Gateway
from tests.gateway.counter_source import counter_site


async def _echo(req: dict[str, Any]) -> dict[str, Any]:
    return {"echo": req}


async def _refuse(_req: dict[str, Any]) -> dict[str, Any]:
    raise RemotecalError("not while recording")


async def _bug(_req: dict[str, Any]) -> dict[str, Any]:
    return {"x": 1 // 0}


async def test_registered_ops_answer_refusals_and_bugs_are_one_reply(tmp_path: Path) -> None:
    control = LocalControl(tmp_path)
    control.register("echo", _echo)
    control.register("run.pause", _refuse)
    control.register("broken", _bug)
    await control.start()
    try:
        assert stat.S_IMODE(os.stat(socket_path(tmp_path)).st_mode) == 0o600
        reply = await request(tmp_path, "echo", actor="ana", n=3)
        assert reply == {"ok": True, "echo": {"op": "echo", "actor": "ana", "n": 3}}
        with pytest.raises(ControlRefused, match=r"^not while recording$"):
            await request(tmp_path, "run.pause")
        with pytest.raises(ControlRefused, match="broken failed: ZeroDivisionError"):
            await request(tmp_path, "broken")
        with pytest.raises(ControlRefused, match="unknown op 'nope'; this gateway serves broken, echo, ops"):
            await request(tmp_path, "nope")
        # the sync client (the CLI's), while the server lives on this loop
        reply = await asyncio.to_thread(request_sync, tmp_path, "ops")
        assert reply["ops"] == ["broken", "echo", "ops", "run.pause"]
        # one connection, several requests, garbage in between
        reader, writer = await asyncio.open_unix_connection(str(socket_path(tmp_path)))
        writer.write(b'{"op": "echo"}\nnot json\n[1]\n\n{"op": "ops"}\n')
        replies = [await reader.readline() for _ in range(4)]
        writer.close()
        assert b'"ok":true' in replies[0] and b"not a JSON object" in replies[1] + replies[2]
        assert b'"ops":[' in replies[3]
    finally:
        await control.close()
    assert not socket_path(tmp_path).exists(), "closing removes the socket"


def test_registering_an_op_twice_is_a_bug(tmp_path: Path) -> None:
    control = LocalControl(tmp_path)
    control.register("status", _echo)
    with pytest.raises(ValueError, match="'status' is registered already"):
        control.register("status", _echo)


async def test_no_gateway_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GatewayNotRunning, match=rf"^no gateway is running on {tmp_path} \(no control socket there\)$"):
        request_sync(tmp_path, "status")
    with pytest.raises(GatewayNotRunning, match="no control socket there"):
        await request(tmp_path / "missing", "status")
    # a socket a killed gateway left behind
    control = LocalControl(tmp_path)
    await control.start()
    assert control._server is not None
    control._server.close()
    await control._server.wait_closed()
    assert socket_path(tmp_path).exists()
    with pytest.raises(GatewayNotRunning, match="left from a gateway that has stopped"):
        request_sync(tmp_path, "status")
    # and the next gateway replaces it
    again = LocalControl(tmp_path)
    again.register("echo", _echo)
    await again.start()
    try:
        assert (await request(tmp_path, "echo"))["ok"] is True
    finally:
        await again.close()
        control._server = None


async def test_a_data_dir_deeper_than_a_socket_address_holds(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(socket_path(deep))) > 108
    control = LocalControl(deep)
    control.register("echo", _echo)
    await control.start()
    try:
        assert (await request(deep, "echo"))["ok"] is True
        assert (await asyncio.to_thread(request_sync, deep, "echo"))["ok"] is True
    finally:
        await control.close()
    with pytest.raises(GatewayNotRunning):
        request_sync(deep, "echo")


def test_the_running_gateway_serves_status_on_its_data_dir(counter: None, tmp_path: Path) -> None:
    site = counter_site(tmp_path)

    async def run() -> dict[str, Any]:
        gateway = Gateway(load_config(site))
        task = asyncio.create_task(gateway.run())
        try:
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(GatewayNotRunning):
                        reply = await request(tmp_path / "data", "status")
                        if reply["health"]["delivered"] >= 3:
                            return reply
                    await asyncio.sleep(0.05)
        finally:
            gateway.request_stop()
            await task

    reply = asyncio.run(run())
    assert (reply["site"], reply["gateway"], reply["run"]) == ("s", "g", "R")
    assert [s["name"] for s in reply["sources"]] == ["tick"]
    assert not socket_path(tmp_path / "data").exists(), "a stopped gateway leaves no socket"
