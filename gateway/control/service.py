"""The gateway's side of run control: checks a command, carries it out on the run engine,
records it, answers it.

    remote   a signed envelope from the central broker -> `CommandVerifier` -> engine ->
             a signed answer (acknowledgement or refusal with its reason)
    local    a request on the control socket (`run.start`, `run.pause`, ... `run.status`) ->
             engine -> the reply (a refusal raises `CommandRefused`: the socket's `ok: false`)

Every command but `status`, accepted or refused, local or remote, is one row of the journal's
command log (`gateway.journal.control`) and one `run_event` point (fields `command`,
`accepted`, `refusal`, `reason`, `actor`, `origin`, and `seq` for a remote one); a refused
`status` is recorded too (a forged one is worth knowing about), an accepted one is not.

The customer keeps control: a local `abort` does not queue behind remote commands waiting their
turn (the engine still finishes a setpoint write in progress first), and an aborted run takes
no remote `resume` (the engine refuses it: aborted is final).  Commands are carried out one
at a time otherwise, in arrival order.
No command, however malformed, and no failure of the engine ends the gateway: it is refused
as `failed` with the error, and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from gateway.control.envelope import COMMANDS, Answer, Refusal, answer_payload
from gateway.control.keys import PrivateKey
from gateway.control.verify import Checked, CommandVerifier
from gateway.errors import ConfigError, RemotecalError
from gateway.journal.control import CommandRow
from gateway.ratelimit import RateLimitedLog

__all__ = ["LOCAL_OPS", "CommandJournal", "CommandRefused", "ControlService", "Engine", "NoEngine",
           "ProcedureStore"]

log = logging.getLogger("remotecal.control")

LOCAL_OPS = tuple(f"run.{c}" for c in COMMANDS)
_FLOODABLE = frozenset({"malformed", "bad signature", "replayed", "wrong gateway", "expired"})
_UNSIGNED = frozenset({"malformed", "bad signature"})
UNSIGNED_BURST = 100
"""Refusals of unsigned input (malformed, bad signature) recorded one by one in a burst; then
`UNSIGNED_PER_S` a second, the rest counted and recorded as one summary (`flush_unsigned`) - a
flood from whoever can publish on the command topic must not fill the journal that holds the
readings."""
UNSIGNED_PER_S = 1.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CommandRefused(RemotecalError):
    """A local command refused; the message is '<kind>: <reason>'."""

    def __init__(self, refusal: Refusal) -> None:
        self.kind = refusal.kind
        self.reason = refusal.reason
        super().__init__(f"{refusal.kind}: {refusal.reason}")


class Engine(Protocol):
    """The run engine (gateway.run.RunEngine) as run control uses it."""

    async def start(self, procedure: Any, run_id: str, actor: str) -> dict[str, Any]: ...
    async def pause(self, actor: str, reason: str) -> Any: ...
    async def resume(self, actor: str) -> Any: ...
    async def skip(self, actor: str, reason: str) -> Any: ...
    async def abort(self, actor: str, reason: str, local: bool) -> Any: ...
    async def status(self) -> dict[str, Any]: ...


class NoEngine:
    """The engine of a gateway without `[[controllers.*]]`: it runs no procedure, so every run
    command is not allowed (and says why); status says so too."""

    WHY = "this gateway has no [[controllers.*]]: it runs no procedures"

    def _refuse(self) -> Any:
        raise Refusal("not allowed", self.WHY)

    async def start(self, procedure: Any, run_id: str, actor: str) -> dict[str, Any]:
        return dict(self._refuse())

    async def pause(self, actor: str, reason: str) -> Any:
        return self._refuse()

    async def resume(self, actor: str) -> Any:
        return self._refuse()

    async def skip(self, actor: str, reason: str) -> Any:
        return self._refuse()

    async def abort(self, actor: str, reason: str, local: bool) -> Any:
        return self._refuse()

    async def status(self) -> dict[str, Any]:
        return {"state": "idle", "run": None, "reason": self.WHY}


class CommandJournal(Protocol):
    """What run control keeps in the journal (gateway.journal.Journal has these)."""

    async def claim_command(self, key: str, seq: int, expires_ns: int) -> bool: ...
    async def log_command(self, row: CommandRow) -> int: ...


class ProcedureStore:
    """Procedures a start may name by SHA-256: those received with a start before (kept in
    `folder`, named by their hash), and the files of `extra` ([control] procedures)."""

    def __init__(self, folder: Path, extra: Path | None = None) -> None:
        self.folder = folder
        self.extra = extra

    def save(self, text: str) -> str:
        """Keep `text` (if not kept yet); its SHA-256."""
        data = text.encode()
        sha = hashlib.sha256(data).hexdigest()
        path = self.folder / f"{sha}.toml"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return sha

    def text(self, sha: str) -> tuple[str, str] | None:
        """(text, where it was found) of the procedure with this SHA-256, or None."""
        if not _SHA256.match(sha):
            return None
        candidates = [self.folder / f"{sha}.toml"]
        if self.extra is not None:
            try:
                candidates += (
                    sorted(p for p in self.extra.iterdir() if p.is_file())
                    if self.extra.is_dir()
                    else [self.extra]
                )
            except OSError as exc:
                log.warning("control: cannot list [control] procedures %s: %s", self.extra, exc)
        for p in candidates:
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == sha:
                try:
                    return data.decode(), str(p)
                except UnicodeDecodeError:
                    return None
        return None


Emit = Callable[[str, int, dict[str, Any]], Awaitable[None]]
"""emit(run, time_ns, fields): one `run_event` point of a command."""


class ControlService:
    def __init__(
        self,
        *,
        site: str,
        gateway: str,
        default_run: str,
        engine: Engine,
        journal: CommandJournal,
        emit: Emit,
        procedures: ProcedureStore,
        parse_procedure: Callable[[str, str], Any],
        verifier: CommandVerifier | None = None,
        answer_key: PrivateKey | None = None,
        not_allowed: tuple[type[BaseException], ...] = (),
        engine_records: bool = False,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """`engine_records`: the engine writes the run_event point of every command it is given
        (accepted, or refused as not allowed); only the others' points are emitted here."""
        self.site = site
        self.gateway = gateway
        self.default_run = default_run
        self.engine = engine
        self.journal = journal
        self.emit = emit
        self.procedures = procedures
        self.parse_procedure = parse_procedure
        self.verifier = verifier
        self.answer_key = answer_key
        self.not_allowed = not_allowed
        self.engine_records = engine_records
        self.clock = clock
        self._one_at_a_time = asyncio.Lock()
        self._flood_log = RateLimitedLog(log)
        self._tokens = float(UNSIGNED_BURST)
        self._refilled = time.monotonic()
        self.unrecorded: dict[str, int] = {}
        """Unsigned refusals counted but not recorded one by one, by kind, since the last summary."""
        self.counts: dict[str, int] = {"accepted": 0, "refused": 0}

    # -- remote ----------------------------------------------------------------------------

    async def remote(self, payload: bytes) -> bytes | None:
        """Handle one message from the command topic; the signed answer to publish (None when
        this gateway has no answer key, which `build` never leaves it without)."""
        now = self.clock()
        if self.verifier is None:
            checked = Checked(
                None, None, None, Refusal("remote control disabled", "no [control] on this gateway")
            )
        else:
            try:
                checked = await self.verifier.check(payload)
            except Exception as exc:  # a bug (or the journal failing), never the gateway's end
                log.exception("control: checking a command failed")
                checked = Checked(None, None, None, Refusal("failed", f"{type(exc).__name__}: {exc}"))
        cmd, refusal = checked.command, checked.refusal
        result: dict[str, Any] = {}
        if refusal is None:
            assert cmd is not None
            try:
                result = await self._carry_out(
                    cmd.command,
                    actor=cmd.actor,
                    run=cmd.run,
                    reason=cmd.reason,
                    procedure=cmd.procedure,
                    procedure_sha256=cmd.procedure_sha256,
                    local=False,
                )
            except Refusal as exc:
                refusal = exc
        signer = checked.key.key_id if checked.key is not None else None
        actor = (cmd.actor if cmd is not None else "") + (
            "" if checked.key is not None or cmd is None else " (unverified)"
        )
        await self._record(
            cmd.command if cmd is not None and cmd.command in COMMANDS else "unknown",
            origin="remote",
            actor=actor,
            run=cmd.run if cmd is not None else None,
            reason=cmd.reason if cmd is not None else None,
            refusal=refusal,
            time_ns=now,
            seq=cmd.seq if cmd is not None and checked.key is not None else None,
            key=signer,
            procedure=_sha(cmd.procedure, cmd.procedure_sha256) if cmd is not None else None,
        )
        if self.answer_key is None:
            return None
        sha = checked.envelope.sha256 if checked.envelope is not None else hashlib.sha256(payload).hexdigest()
        answer = Answer(
            site=self.site,
            gateway=self.gateway,
            command=cmd.command if cmd is not None else "",
            seq=cmd.seq if cmd is not None else None,
            key=signer,
            command_sha256=sha,
            accepted=refusal is None,
            refusal=refusal.kind if refusal else None,
            reason=refusal.reason if refusal else "",
            time_ns=self.clock(),
            result=_jsonable(result),
        )
        return answer_payload(answer, self.answer_key)

    # -- local -----------------------------------------------------------------------------

    def local_handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        """The control socket's operations: run.start ... run.status."""

        def handler(command: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
            async def handle(request: dict[str, Any]) -> dict[str, Any]:
                return await self.local(command, request)

            return handle

        return {f"run.{c}": handler(c) for c in COMMANDS}

    async def local(self, command: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """A command from the control socket: the engine's answer, or CommandRefused."""
        now = self.clock()
        actor = f"{_field(request, 'actor') or 'someone'} (local)"  # who, and that it was at the site
        run, reason = _field(request, "run"), _field(request, "reason")
        procedure, sha = _field(request, "procedure", limit=None), _field(request, "procedure_sha256")
        refusal: Refusal | None = None
        result: dict[str, Any] = {}
        try:
            if command == "start" and run is None:
                raise Refusal("malformed", "start needs the run id (run)")
            if command == "start" and (procedure is None) == (sha is None):
                raise Refusal("malformed", "start needs the procedure's text or its procedure_sha256")
            result = await self._carry_out(
                command,
                actor=actor,
                run=run,
                reason=reason,
                procedure=procedure,
                procedure_sha256=sha,
                local=True,
            )
        except Refusal as exc:
            refusal = exc
        await self._record(
            command, origin="local", actor=actor, run=run, reason=reason, refusal=refusal, time_ns=now,
            procedure=_sha(procedure, sha),
        )
        if refusal is not None:
            raise CommandRefused(refusal)
        return {"command": command, "accepted": True, "result": _jsonable(result)}

    # -- both ------------------------------------------------------------------------------

    async def _carry_out(
        self,
        command: str,
        *,
        actor: str,
        run: str | None,
        reason: str | None,
        procedure: str | None,
        procedure_sha256: str | None,
        local: bool,
    ) -> dict[str, Any]:
        # one command at a time - but the site's abort queues behind no remote command
        queue: contextlib.AbstractAsyncContextManager[Any] = (
            contextlib.nullcontext() if command == "abort" and local else self._one_at_a_time
        )
        async with queue:
            e = self.engine
            try:
                if command == "status":
                    return dict(await e.status())
                if command == "start":
                    assert run is not None
                    parsed, text = self._procedure(procedure, procedure_sha256)
                    out = await e.start(parsed, run, actor)
                    if procedure is not None:
                        self.procedures.save(text)
                    return dict(out or {})
                if run is not None:
                    current = (await e.status()).get("run")
                    if current != run:
                        raise Refusal(
                            "not allowed", f"run {run!r} is not this gateway's current run ({current!r})"
                        )
                why = reason or ""
                if command == "pause":
                    out = await e.pause(actor, why)
                elif command == "resume":
                    out = await e.resume(actor)
                elif command == "skip":
                    out = await e.skip(actor, why)
                elif command == "abort":
                    out = await e.abort(actor, why, local)
                else:
                    raise Refusal("malformed", f"unknown command {command!r}")
                return dict(out) if isinstance(out, Mapping) else {}
            except Refusal:
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.not_allowed and isinstance(exc, self.not_allowed):
                    refused = Refusal("not allowed", str(exc) or type(exc).__name__)
                    refused.by_engine = True
                    raise refused from None
                if isinstance(exc, RemotecalError):
                    log.error("control: %s by %s failed: %s", command, actor, exc)
                else:
                    log.exception("control: %s by %s failed (a bug)", command, actor)
                failure = str(exc) if isinstance(exc, RemotecalError) else f"{type(exc).__name__}: {exc}"
                raise Refusal("failed", failure) from None

    def _procedure(self, text: str | None, sha: str | None) -> tuple[Any, str]:
        source = "procedure"
        if text is None:
            assert sha is not None
            found = self.procedures.text(sha)
            if found is None:
                raise Refusal(
                    "unknown procedure",
                    f"no procedure with SHA-256 {sha} on this gateway: send its text instead",
                )
            text, source = found
        try:
            return self.parse_procedure(text, source), text
        except ConfigError as exc:
            raise Refusal("bad procedure", "; ".join(exc.problems)) from None

    async def _record(
        self,
        command: str,
        *,
        origin: str,
        actor: str,
        run: str | None,
        reason: str | None,
        refusal: Refusal | None,
        time_ns: int,
        seq: int | None = None,
        key: str | None = None,
        procedure: str | None = None,
    ) -> None:
        """The journal's row and the run_event point of a command (an accepted status: neither)."""
        accepted = refusal is None
        if accepted and command == "status":
            return  # a --watch asks every few seconds: no log line, count, row or point
        self.counts["accepted" if accepted else "refused"] += 1
        if accepted:
            log.info("control: %s %s by %s accepted", origin, command, actor)
        else:
            assert refusal is not None
            if refusal.kind in _FLOODABLE:  # anyone who can publish can send these: one line per 10 s
                self._flood_log.warning(refusal.kind, "control: %s %s by %s refused: %s", origin, command,
                                        actor or "?", refusal)
            else:
                log.warning("control: %s %s by %s refused: %s", origin, command, actor or "?", refusal)
            if command == "status" and origin == "local":
                return
            if refusal.kind in _UNSIGNED and not self._take_token():
                self.unrecorded[refusal.kind] = self.unrecorded.get(refusal.kind, 0) + 1
                return
        run_tag = run or await self._current_run()
        words = refusal.reason if refusal is not None else (reason or "")
        row = CommandRow(
            time_ns=time_ns,
            origin=origin,
            command=command,
            run=run_tag,
            actor=actor,
            accepted=accepted,
            refusal=refusal.kind if refusal else "",
            reason=words,
            seq=seq,
            key=key,
        )
        try:
            await self.journal.log_command(row)
        except Exception as exc:  # the journal failing is the journal's alarm; the point still goes
            log.error("control: cannot keep the command in the journal's log: %s", exc)
        fields: dict[str, Any] = {
            "command": command,
            "accepted": accepted,
            "reason": words,
            "actor": actor,
            "origin": origin,
        }
        if refusal is not None:
            fields["refusal"] = refusal.kind
        if seq is not None:
            fields["seq"] = seq
        if procedure is not None:
            fields["procedure"] = procedure
        if self.engine_records and (refusal is None or refusal.by_engine):
            return  # the engine wrote this command's point
        try:
            await self.emit(run_tag, time_ns, fields)
        except Exception as exc:
            log.error("control: cannot write the command's run_event point: %s", exc)

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(float(UNSIGNED_BURST), self._tokens + (now - self._refilled) * UNSIGNED_PER_S)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def flush_unsigned(self) -> None:
        """One row and one point per kind for the unsigned refusals not recorded one by one
        (the remote side calls it every minute)."""
        pending, self.unrecorded = self.unrecorded, {}
        for kind, n in sorted(pending.items()):
            log.warning("control: %d more remote message(s) refused as %s, not recorded one by one", n, kind)
            run = await self._current_run()
            t = self.clock()
            words = f"{n} more refused as {kind} (a flood: not recorded one by one)"
            try:
                await self.journal.log_command(
                    CommandRow(t, "remote", "unknown", run, "", False, kind, words))
                await self.emit(run, t, {"command": "unknown", "accepted": False, "reason": words,
                                         "actor": "", "origin": "remote", "refusal": kind, "count": n})
            except Exception as exc:
                log.error("control: cannot record the summary of refused messages: %s", exc)

    async def _current_run(self) -> str:
        try:
            run = (await self.engine.status()).get("run")
        except Exception:
            run = None
        return run if isinstance(run, str) and run else self.default_run


def _sha(text: str | None, sha: str | None) -> str | None:
    """The SHA-256 a start names: of its procedure's text, or the one it gave."""
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else sha


def _field(request: Mapping[str, Any], name: str, limit: int | None = 1000) -> str | None:
    v = request.get(name)
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip() or (limit is not None and len(v) > limit):
        raise CommandRefused(Refusal("malformed", f"{name} must be a non-empty string"))
    return v


def _jsonable(obj: Any) -> Any:
    """`obj` with non-finite floats as None and anything JSON cannot hold as text."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)
