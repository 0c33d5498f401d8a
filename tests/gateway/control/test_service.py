"""The gateway's run control service with a stand-in engine: commands carried out, refused,
recorded (journal and run_event) and answered; the site's abort wins."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.control.envelope import Command, command_payload, parse_answer
from gateway.control.keys import load_private_key, load_public_keys, new_key_pair
from gateway.control.service import CommandRefused, ControlService, ProcedureStore
from gateway.control.verify import CommandVerifier, MemoryReplayStore
from gateway.errors import ConfigError, RemotecalError
from gateway.journal import Journal
from gateway.journal.control import read_command_log

NOW = 1_800_000_000_000_000_000
S = 10**9
PROCEDURE = "[procedure]\nname = 'x'\n"


class NotAllowed(RemotecalError):
    pass


class FakeEngine:
    """A run engine's state machine in miniature."""

    def __init__(self) -> None:
        self.state = "idle"
        self.run: str | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.gate: asyncio.Event | None = None

    async def start(self, procedure: Any, run_id: str, actor: str) -> dict[str, Any]:
        if self.gate is not None:
            await self.gate.wait()
        if self.state not in ("idle", "finished", "aborted", "failed"):
            raise NotAllowed(f"a run is {self.state}")
        self.calls.append(("start", procedure, run_id, actor))
        self.state, self.run = "settling", run_id
        return {"run": run_id, "state": self.state}

    async def pause(self, actor: str, reason: str) -> None:
        if self.state not in ("settling", "recording"):
            raise NotAllowed(f"cannot pause: the run is {self.state}")
        self.calls.append(("pause", actor, reason))
        self.state = "paused"

    async def resume(self, actor: str) -> None:
        if self.state != "paused":
            raise NotAllowed(f"cannot resume: the run is {self.state}")
        self.calls.append(("resume", actor))
        self.state = "settling"

    async def skip(self, actor: str, reason: str) -> None:
        raise RuntimeError("controller exploded")

    async def abort(self, actor: str, reason: str, local: bool) -> None:
        if self.state in ("idle", "aborted", "finished"):
            raise NotAllowed(f"nothing to abort: the run is {self.state}")
        self.calls.append(("abort", actor, reason, local))
        self.state = "aborted"

    async def status(self) -> dict[str, Any]:
        return {"state": self.state, "run": self.run, "stability": float("nan")}


def parse(text: str, source: str) -> dict[str, str]:
    if "[procedure]" not in text:
        raise ConfigError(["procedure.name: required key is missing"])
    return {"text": text, "source": source}


@pytest.fixture()
async def rig(tmp_path: Path) -> Any:
    key, pub = new_key_pair("institute", tmp_path / "inst", institute="nmc")
    gkey, gpub = new_key_pair("gateway", tmp_path / "gw", site="lab1", gateway="gw01")
    async with Journal(tmp_path / "data" / "journal.db", ["s"]) as journal:
        points: list[tuple[str, int, dict[str, Any]]] = []

        async def emit(run: str, t: int, f: dict[str, Any]) -> None:
            points.append((run, t, f))

        engine = FakeEngine()
        verifier = CommandVerifier("lab1", "gw01", load_public_keys(pub, "institute"), MemoryReplayStore(),
                                   clock=lambda: NOW)
        service = ControlService(
            site="lab1", gateway="gw01", default_run="idle-run", engine=engine, journal=journal,
            emit=emit,
            procedures=ProcedureStore(tmp_path / "data" / "procedures"), parse_procedure=parse,
            verifier=verifier, answer_key=load_private_key(gkey), not_allowed=(NotAllowed,), clock=lambda: NOW)

        class Rig:
            pass

        r = Rig()
        r.service, r.engine, r.points, r.journal = service, engine, points, journal  # type: ignore[attr-defined]
        r.key, r.gpubs, r.path = load_private_key(key), load_public_keys(gpub, "gateway"), tmp_path  # type: ignore[attr-defined]
        seq = iter(range(1, 1000))

        def cmd(command: str, **kw: Any) -> bytes:
            c = Command(site="lab1", gateway="gw01", command=command, actor="alice@nmc", seq=next(seq),
                        issued_ns=NOW, expires_ns=NOW + 60 * S, **kw)
            return command_payload(c, r.key)  # type: ignore[attr-defined]

        r.cmd = cmd  # type: ignore[attr-defined]

        async def send(payload: bytes) -> Any:
            out = await service.remote(payload)
            assert out is not None
            answer, signer = parse_answer(out, r.gpubs)  # type: ignore[attr-defined]
            assert signer is not None and answer.command_sha256 == hashlib.sha256(
                json.loads(payload)["body"].encode()).hexdigest() if payload.startswith(b"{") else True
            return answer

        r.send = send  # type: ignore[attr-defined]
        yield r


async def test_a_signed_start_runs_and_is_recorded(rig: Any) -> None:
    a = await rig.send(rig.cmd("start", run="RC-1", procedure=PROCEDURE))
    assert a.accepted and a.refusal is None and a.result == {"run": "RC-1", "state": "settling"}
    assert rig.engine.calls[0][1:] == ({"text": PROCEDURE, "source": "procedure"}, "RC-1", "alice@nmc")
    run, t, fields = rig.points[0]
    assert run == "RC-1" and t == NOW
    assert fields == {"command": "start", "accepted": True, "reason": "", "actor": "alice@nmc", "origin": "remote",
                      "seq": 1, "procedure": hashlib.sha256(PROCEDURE.encode()).hexdigest()}
    # the procedure is kept: a later start may name it by its hash
    rig.engine.state = "finished"
    sha = hashlib.sha256(PROCEDURE.encode()).hexdigest()
    a = await rig.send(rig.cmd("start", run="RC-2", procedure_sha256=sha))
    assert a.accepted, a.reason
    assert rig.engine.calls[-1][1]["source"].endswith(f"{sha}.toml")
    a = await rig.send(rig.cmd("start", run="RC-3", procedure_sha256="0" * 64))
    assert a.refusal == "unknown procedure"
    rows = read_command_log(rig.journal.path)
    assert [(r.command, r.run, r.accepted, r.refusal) for r in rows] == [
        ("start", "RC-3", False, "unknown procedure"), ("start", "RC-2", True, ""), ("start", "RC-1", True, "")]


async def test_refusals_are_answered_recorded_and_visible(rig: Any) -> None:
    a = await rig.send(rig.cmd("pause", reason="coffee"))
    assert not a.accepted and a.refusal == "not allowed" and "idle" in a.reason
    a = await rig.send(b"not json at all")
    assert a.refusal == "malformed" and a.seq is None
    forged = new_key_pair("institute", rig.path / "mallory", institute="mallory")[0]
    c = Command(site="lab1", gateway="gw01", command="abort", actor="mallory", seq=5, issued_ns=NOW,
                expires_ns=NOW + S)
    a = await rig.send(command_payload(c, load_private_key(forged)))
    assert a.refusal == "bad signature" and a.key is None
    a = await rig.send(rig.cmd("start", run="R", procedure="nonsense"))
    assert a.refusal == "bad procedure" and "procedure.name" in a.reason
    kinds = [(f["command"], f["refusal"], f["actor"]) for _, _, f in rig.points]
    assert kinds == [("pause", "not allowed", "alice@nmc"), ("unknown", "malformed", ""),
                     ("abort", "bad signature", "mallory (unverified)"), ("start", "bad procedure", "alice@nmc")]
    assert all(f["accepted"] is False for _, _, f in rig.points)
    assert rig.points[0][0] == "idle-run"  # no run yet: the gateway's run tag
    assert "seq" not in rig.points[2][2]  # an unverified sequence number is not recorded as one
    assert len(read_command_log(rig.journal.path)) == 4


async def test_an_engine_failure_is_a_refusal_not_the_end(rig: Any) -> None:
    await rig.send(rig.cmd("start", run="RC-1", procedure=PROCEDURE))
    a = await rig.send(rig.cmd("skip", reason="too slow"))
    assert a.refusal == "failed" and "controller exploded" in a.reason
    a = await rig.send(rig.cmd("pause", reason="x", run="RC-other"))
    assert a.refusal == "not allowed" and "not this gateway's current run" in a.reason


async def test_status_answers_and_is_not_recorded(rig: Any) -> None:
    a = await rig.send(rig.cmd("status"))
    assert a.accepted and a.result == {"state": "idle", "run": None, "stability": None}  # NaN: null
    assert rig.points == [] and read_command_log(rig.journal.path) == []


async def test_local_commands(rig: Any) -> None:
    out = await rig.service.local("start", {"run": "RC-9", "procedure": PROCEDURE, "actor": "bob"})
    assert out["accepted"] and rig.engine.state == "settling"
    assert rig.engine.calls[-1][3] == "bob (local)"
    with pytest.raises(CommandRefused, match="not allowed: cannot resume"):
        await rig.service.local("resume", {"actor": "bob"})
    with pytest.raises(CommandRefused, match="malformed"):
        await rig.service.local("start", {"procedure": PROCEDURE})
    assert [(f["command"], f["origin"], f["accepted"]) for _, _, f in rig.points] == [
        ("start", "local", True), ("resume", "local", False), ("start", "local", False)]
    handlers = rig.service.local_handlers()
    assert sorted(handlers) == ["run.abort", "run.pause", "run.resume", "run.skip", "run.start", "run.status"]
    assert (await handlers["run.status"]({"op": "run.status"}))["result"]["state"] == "settling"


async def test_a_local_abort_wins_over_a_remote_resume(rig: Any) -> None:
    await rig.send(rig.cmd("start", run="RC-1", procedure=PROCEDURE))
    await rig.send(rig.cmd("pause", reason="look"))
    out = await rig.service.local("abort", {"actor": "site-operator", "reason": "door open"})
    assert out["accepted"] and rig.engine.state == "aborted"
    a = await rig.send(rig.cmd("resume"))
    assert not a.accepted and a.refusal == "not allowed" and rig.engine.state == "aborted"


async def test_a_local_abort_does_not_wait_for_a_remote_command(rig: Any) -> None:
    rig.engine.state, rig.engine.run = "settling", "RC-1"
    rig.engine.gate = asyncio.Event()  # a start that hangs (a controller not answering)
    slow = asyncio.create_task(rig.send(rig.cmd("start", run="RC-2", procedure=PROCEDURE)))
    while not rig.service._one_at_a_time.locked():
        await asyncio.sleep(0)
    out = await rig.service.local("abort", {"actor": "site", "reason": "now"})
    assert out["accepted"] and rig.engine.state == "aborted"
    rig.engine.gate.set()
    await slow


async def test_the_command_log_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.journal import control

    monkeypatch.setattr(control, "LOG_KEEP", 50)
    monkeypatch.setattr(control, "TRIM_EVERY", 10)
    async with Journal(tmp_path / "journal.db", ["s"], fsync="normal") as j:
        for i in range(200):
            await j.log_command(control.CommandRow(i, "local", "pause", "r", "a", False, "not allowed", "x"))
    rows = read_command_log(tmp_path / "journal.db", 10_000)
    assert 50 <= len(rows) <= 60 and rows[0].time_ns == 199


async def test_with_an_engine_that_records_commands_only_the_others_are_emitted(rig: Any) -> None:
    rig.service.engine_records = True
    await rig.send(rig.cmd("start", run="RC-1", procedure=PROCEDURE))  # accepted: the engine's point
    await rig.send(rig.cmd("resume"))  # refused by the engine: its point
    await rig.send(b"junk")  # refused before it: ours
    await rig.send(rig.cmd("pause", run="RC-0"))  # not the current run: refused before the engine, ours
    assert [(f["command"], f.get("refusal")) for _, _, f in rig.points] == [("unknown", "malformed"),
                                                                            ("pause", "not allowed")]
    assert len(read_command_log(rig.journal.path)) == 4  # the log has them all


async def test_a_gateway_without_controllers_says_why(rig: Any) -> None:
    from gateway.control.service import NoEngine

    rig.service.engine = NoEngine()
    a = await rig.send(rig.cmd("start", run="RC-1", procedure=PROCEDURE))
    assert a.refusal == "not allowed" and "no [[controllers.*]]" in a.reason
    a = await rig.send(rig.cmd("status"))
    assert a.accepted and "no [[controllers.*]]" in a.result["reason"]


async def test_status_polls_leave_no_trace(rig: Any, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, "remotecal.control")
    for _ in range(3):
        await rig.send(rig.cmd("status"))
        await rig.service.local("status", {})
    assert rig.service.counts == {"accepted": 0, "refused": 0}
    assert not [r for r in caplog.records if "status" in r.getMessage()]


async def test_with_remote_control_off_the_site_still_commands(rig: Any) -> None:
    """[control] allow_remote = false: every remote command is refused, a local abort works."""
    await rig.send(rig.cmd("start", run="RC-1", procedure=PROCEDURE))
    rig.service.verifier.allow_remote = False
    a = await rig.send(rig.cmd("pause", reason="from afar"))
    assert a.refusal == "remote control disabled" and rig.engine.state == "settling"
    out = await rig.service.local("abort", {"actor": "operator", "reason": "our chamber"})
    assert out["accepted"] and rig.engine.state == "aborted"


async def test_a_flood_of_unsigned_input_cannot_fill_the_journal(rig: Any) -> None:
    """Beyond a burst of UNSIGNED_BURST, refusals of unsigned input are counted and recorded as one
    summary; signed commands are recorded one by one whatever happens."""
    from gateway.control import service as svc

    for i in range(svc.UNSIGNED_BURST + 50):
        a = await rig.send(b"junk %d" % i)
        assert a.refusal == "malformed"  # every one is still answered
    assert len(rig.points) <= svc.UNSIGNED_BURST + 1  # + what the refill allowed meanwhile
    assert sum(rig.service.unrecorded.values()) >= 49
    a = await rig.send(rig.cmd("pause", reason="signed"))  # not allowed (idle), and recorded
    assert a.refusal == "not allowed" and rig.points[-1][2]["refusal"] == "not allowed"
    before = len(rig.points)
    n = rig.service.unrecorded["malformed"]
    await rig.service.flush_unsigned()
    assert len(rig.points) == before + 1 and rig.service.unrecorded == {}
    summary = rig.points[-1][2]
    assert summary["count"] == n and summary["refusal"] == "malformed" and "not recorded one by one" in \
        summary["reason"]
    rows = read_command_log(rig.journal.path, 1000)
    assert rows[0].reason == summary["reason"] and len(rows) == len(rig.points)
