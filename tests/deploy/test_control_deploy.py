"""deploy/README.md's remote run control as installed: the shipped Mosquitto config with TLS,
passwords and the shipped ACL; the institute's `control` account runs `remotecal run status`
from a CONTROL.toml over TLS, the gateway takes commands with its uplink account."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.configfile import dumps
from gateway.control.config import ControlBroker
from gateway.control.keys import load_private_key, load_public_keys, new_key_pair
from gateway.control.remote import RemoteControl
from gateway.control.service import ControlService, NoEngine, ProcedureStore
from gateway.control.verify import CommandVerifier, MemoryReplayStore
from remotecal.cli import main
from tests.deploy.test_mosquitto import PASSWORDS, Broker, broker  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


class _Journal:
    async def claim_command(self, key: str, seq: int, expires_ns: int) -> bool:
        return True

    async def log_command(self, row: Any) -> int:
        return 0


async def test_remote_status_over_tls_with_the_shipped_acl(broker: tuple[Broker, Path], tmp_path: Path,  # noqa: F811
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    server, ca = broker
    key, pub = new_key_pair("institute", tmp_path / "institute", institute="nmc")
    gkey, gpub = new_key_pair("gateway", tmp_path / "gateways", site="lab1", gateway="gw01")

    async def emit(run: str, t: int, f: dict[str, Any]) -> None:
        return None

    service = ControlService(
        site="lab1", gateway="gw01", default_run="idle", engine=NoEngine(), journal=_Journal(), emit=emit,
        procedures=ProcedureStore(tmp_path / "p"), parse_procedure=lambda t, s: t,
        verifier=CommandVerifier("lab1", "gw01", load_public_keys(pub, "institute"), MemoryReplayStore()),
        answer_key=load_private_key(gkey))
    tls = {"ca_file": str(ca)}
    gateway_side = ControlBroker(url=f"mqtts://127.0.0.1:{server.port}", username="lab1.gw01",
                                 password=PASSWORDS["lab1.gw01"], tls=tls)  # type: ignore[arg-type]
    remote = RemoteControl(service, gateway_side, "lab1", "gw01")
    stop = asyncio.Event()
    task = asyncio.create_task(remote.run(stop))
    try:
        await asyncio.wait_for(remote.subscribed.wait(), 20)  # its SUBACK
        control = tmp_path / "control.toml"
        (tmp_path / "control.pw").write_text(PASSWORDS["control"] + "\n")
        control.write_text(dumps({
            "institute": {"key_file": str(key), "gateway_keys": str(gpub.parent), "state_dir": "state"},
            "broker": {"url": f"mqtts://127.0.0.1:{server.port}", "username": "control",
                       "password": f"file:{tmp_path / 'control.pw'}", "tls": tls}}))
        argv = ["run", "status", "-c", str(control), "--site", "lab1", "--gateway", "gw01", "--timeout", "10"]
        assert await asyncio.to_thread(main, argv) == 0
        assert "lab1/gw01  no run  IDLE" in capsys.readouterr().out
        # a gateway's account cannot send commands to another gateway
        control.write_text(control.read_text().replace('username = "control"', 'username = "lab2.gw01"')
                           .replace(str(tmp_path / "control.pw"), str(tmp_path / "gw2.pw")))
        (tmp_path / "gw2.pw").write_text(PASSWORDS["lab2.gw01"] + "\n")
        assert await asyncio.to_thread(main, argv) == 1
        err = capsys.readouterr().err
        assert "refused the subscription" in err or "refused the command" in err, err
    finally:
        stop.set()
        await task
