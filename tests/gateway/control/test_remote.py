"""Signed commands through a real Mosquitto: `remotecal run ...` at the institute, the
gateway's run control (with a stand-in engine) answering; forged, replayed, expired and
misaddressed commands refused with their reason."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.configfile import dumps
from gateway.control.config import ControlBroker
from gateway.control.envelope import Command, command_payload, parse_answer
from gateway.control.keys import load_private_key, load_public_keys, new_key_pair
from gateway.control.remote import RemoteControl, answer_topic, command_topic
from gateway.control.service import ControlService, ProcedureStore
from gateway.control.verify import CommandVerifier
from gateway.journal import Journal
from gateway.journal.control import read_command_log
from remotecal.cli import main
from tests.gateway.control.test_service import FakeEngine, NotAllowed
from tests.servers.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[3]
PROCEDURE = ROOT / "deploy" / "examples" / "procedure.toml"
S = 10**9


class Gw:
    def __init__(self, tmp: Path, broker: Mosquitto) -> None:
        self.tmp, self.broker = tmp, broker
        self.key, self.pub = new_key_pair("institute", tmp / "inst", institute="nmc")
        self.gkey, self.gpub = new_key_pair("gateway", tmp / "gateways", site="lab1", gateway="gw01")
        self.control = tmp / "control.toml"
        self.control.write_text(dumps({
            "institute": {"key_file": str(self.key), "gateway_keys": str(self.gpub.parent), "state_dir": "state",
                          "timeout": "10s"},
            "broker": {"url": broker.url}}))
        self.engine = FakeEngine()
        self.points: list[dict[str, Any]] = []

    def cli(self, *argv: str) -> int:
        return main(["run", *argv, "-c", str(self.control), "--site", "lab1", "--gateway", "gw01",
                     "--actor", "alice@nmc"])


@pytest.fixture()
async def gw(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Gw]:
    from gateway.procedure import parse_procedure

    g = Gw(tmp_path, mosquitto)
    async with Journal(tmp_path / "data" / "journal.db", ["s"]) as journal:
        from gateway.control import _JournalReplay

        async def emit(run: str, t: int, f: dict[str, Any]) -> None:
            g.points.append({"run": run, **f})

        verifier = CommandVerifier("lab1", "gw01", load_public_keys(g.pub, "institute"), _JournalReplay(journal))
        service = ControlService(site="lab1", gateway="gw01", default_run="idle", engine=g.engine, journal=journal,
                                 emit=emit, procedures=ProcedureStore(tmp_path / "data" / "procedures"),
                                 parse_procedure=parse_procedure, verifier=verifier,
                                 answer_key=load_private_key(g.gkey), not_allowed=(NotAllowed,))
        remote = RemoteControl(service, ControlBroker(url=mosquitto.url), "lab1", "gw01")
        stop = asyncio.Event()
        task = asyncio.create_task(remote.run(stop))
        await asyncio.wait_for(remote.subscribed.wait(), 20)
        await asyncio.to_thread(mosquitto.wait_subscribed, command_topic("remotecal/v1", "lab1", "gw01"))
        g.journal = journal  # type: ignore[attr-defined]
        try:
            yield g
        finally:
            stop.set()
            await task


class Raw:
    """A bare MQTT client at the institute: publishes what it is given, collects answers."""

    def __init__(self, broker: Mosquitto) -> None:
        self.answers: list[bytes] = []
        self.got = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw", protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        self.c.subscribe(answer_topic("remotecal/v1", "lab1", "gw01"), qos=1)
        assert subscribed.wait(10)

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.got:
            self.answers.append(bytes(msg.payload))
            self.got.notify_all()

    def send(self, payload: bytes) -> bytes:
        with self.got:
            n = len(self.answers)
            self.c.publish(command_topic("remotecal/v1", "lab1", "gw01"), payload, qos=1)
            assert self.got.wait_for(lambda: len(self.answers) > n, 20), "no answer"
            return self.answers[n]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _cmd(g: Gw, seq: int, **kw: Any) -> bytes:
    now = time.time_ns()
    base: dict[str, Any] = dict(site="lab1", gateway="gw01", command="pause", actor="alice@nmc", seq=seq,
                                issued_ns=now, expires_ns=now + 60 * S, reason="look")
    base.update(kw)
    return command_payload(Command(**base), load_private_key(g.key))


async def test_signed_commands_from_the_cli(gw: Gw, capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(gw.cli, "start", "--run", "RC-1", "--procedure", str(PROCEDURE)) == 0
    assert "lab1/gw01: start accepted - run RC-1 settling" in capsys.readouterr().out
    assert gw.engine.calls[0][2:] == ("RC-1", "alice@nmc")
    assert await asyncio.to_thread(gw.cli, "status") == 0
    assert "lab1/gw01  run RC-1  SETTLING" in capsys.readouterr().out
    assert await asyncio.to_thread(gw.cli, "resume") == 1
    assert "lab1/gw01: resume REFUSED - not allowed: cannot resume: the run is settling" in capsys.readouterr().err
    assert await asyncio.to_thread(gw.cli, "pause", "--reason", "coffee") == 0
    assert gw.engine.state == "paused"
    # the procedure went over once; now its hash is enough
    gw.engine.state = "finished"
    sha = hashlib.sha256(PROCEDURE.read_bytes()).hexdigest()
    assert await asyncio.to_thread(gw.cli, "start", "--run", "RC-2", "--procedure-sha256", sha) == 0
    rows = read_command_log(gw.journal.path)  # type: ignore[attr-defined]
    assert [(r.command, r.accepted) for r in rows] == [("start", True), ("pause", True), ("resume", False),
                                                       ("start", True)]


async def test_a_forged_command_is_refused(gw: Gw, capsys: pytest.CaptureFixture[str]) -> None:
    mallory, _ = new_key_pair("institute", gw.tmp / "mallory", institute="nmc")  # same name, another key
    text = gw.control.read_text().replace(str(gw.key), str(mallory))
    gw.control.write_text(text)
    assert await asyncio.to_thread(gw.cli, "abort", "--reason", "x") == 1
    err = capsys.readouterr().err
    assert "abort REFUSED - bad signature: signed with key" in err and "not installed" in err
    assert gw.engine.calls == []
    assert gw.points[-1]["refusal"] == "bad signature" and gw.points[-1]["actor"] == "alice@nmc (unverified)"


async def test_replayed_expired_misaddressed(gw: Gw) -> None:
    raw = await asyncio.to_thread(Raw, gw.broker)
    try:
        gw.engine.state, gw.engine.run = "settling", "RC-1"
        payload = _cmd(gw, 10)
        first, _ = parse_answer(await asyncio.to_thread(raw.send, payload), load_public_keys(gw.gpub, "gateway"))
        assert first.accepted and gw.engine.state == "paused"
        gw.engine.state = "settling"  # as if resumed: a replay would pause it again
        again, signer = parse_answer(await asyncio.to_thread(raw.send, payload), load_public_keys(gw.gpub, "gateway"))
        assert signer is not None and again.refusal == "replayed" and gw.engine.state == "settling"
        now = time.time_ns()
        old, _ = parse_answer(await asyncio.to_thread(raw.send, _cmd(gw, 11, issued_ns=now - 120 * S,
                                                                     expires_ns=now - 60 * S)), {})
        assert old.refusal == "expired"
        other, _ = parse_answer(await asyncio.to_thread(raw.send, _cmd(gw, 12, gateway="gw02")), {})
        assert other.refusal == "wrong gateway" and "addressed to lab1/gw02" in other.reason
        assert gw.engine.state == "settling"
    finally:
        await asyncio.to_thread(raw.close)
    assert [p.get("refusal") for p in gw.points] == [None, "replayed", "expired", "wrong gateway"]
    assert all(p["run"] == "RC-1" for p in gw.points)


async def test_no_gateway_is_said_at_once(tmp_path: Path, mosquitto: Mosquitto,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    g = Gw(tmp_path, mosquitto)
    started = time.monotonic()
    assert await asyncio.to_thread(g.cli, "status") == 1
    assert time.monotonic() - started < 9  # not the 10 s answer timeout: the broker said so
    err = capsys.readouterr().err
    assert "gateway lab1/gw01 is not connected to the broker" in err and err.count("\n") == 1


async def test_an_unverifiable_answer_is_not_trusted(gw: Gw, capsys: pytest.CaptureFixture[str]) -> None:
    for p in gw.gpub.parent.iterdir():
        if p.suffix == ".pub":
            p.rename(p.with_suffix(".off"))
    assert await asyncio.to_thread(gw.cli, "status") == 1
    captured = capsys.readouterr()
    assert "SETTLING" not in captured.out and "IDLE" in captured.out
    assert "this answer is NOT verified: no answer key of lab1/gw01" in captured.err
