"""`remotecal run start|pause|resume|skip|abort|status` (parsed in remotecal.cli).

Remote form, at the institute: `-c CONTROL.toml --site S --gateway G` signs the command with
the institute's key, sends it through the central broker to that one gateway, waits for its
signed answer and prints it (gateway.control.client).  Local form, on the gateway's host:
`--local -c SITE.toml` goes through the gateway's control socket (gateway.localcontrol): no
key needed, and it works with `allow_remote = false` - the site keeps control.

Exit status: 0 accepted; 1 refused, no answer, or an answer that cannot be verified; 2 a
config or procedure problem (one line per problem, naming its file and key).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError, RemotecalError

__all__ = ["format_status", "run"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LOCAL_TIMEOUT = 10.0


def run(args: argparse.Namespace) -> int:
    try:
        procedure = _procedure(args)
    except _ProcedureProblems as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 2
    if args.local:
        if args.site is not None or args.gateway is not None:
            raise ConfigError("--site/--gateway: not with --local (the gateway is the one of the SITE.toml)")
        once = _local(args, procedure)
    else:
        once = _remote(args, procedure)
    if args.action == "status" and args.watch:
        return _watch(once, args.interval)
    return once()


class _ProcedureProblems(Exception):
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines


def _procedure(args: argparse.Namespace) -> dict[str, str]:
    """start: the procedure's text (validated here first, so a bad file never leaves the
    institute) or its SHA-256."""
    if args.action != "start":
        return {}
    if args.procedure_sha256 is not None:
        sha = args.procedure_sha256.strip().lower()
        if not _SHA256.match(sha):
            raise ConfigError("--procedure-sha256: must be 64 hexadecimal digits")
        return {"procedure_sha256": sha}
    from gateway.procedure import parse_procedure

    path = Path(args.procedure)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _ProcedureProblems([f"{path}: cannot read the procedure: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise _ProcedureProblems([f"{path}: not a text file (UTF-8)"]) from None
    try:
        parse_procedure(text, str(path))
    except ConfigError as exc:
        raise _ProcedureProblems(
            [ln if ln.startswith(str(path)) else f"{path}: {ln}" for ln in exc.problems]
        ) from None
    return {"procedure": text}


def _fields(args: argparse.Namespace, actor: str, procedure: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "actor": actor,
        "run": args.run,
        "reason": getattr(args, "reason", None),
        **procedure,
    }
    return {k: v for k, v in out.items() if v is not None}


def _remote(args: argparse.Namespace, procedure: dict[str, str]) -> Callable[[], int]:
    from gateway.control.client import send_command
    from gateway.control.config import default_actor, load_institute_config
    from gateway.control.keys import load_private_key, load_public_keys

    if args.site is None or args.gateway is None:
        raise ConfigError(
            "--site and --gateway: required for a remote command (or --local -c SITE.toml on the "
            "gateway's host)"
        )
    cfg = load_institute_config(args.config)
    i = cfg.institute
    key = load_private_key(i.key_file, "institute")
    gateway_keys = load_public_keys(i.gateway_keys, "gateway") if i.gateway_keys is not None else {}
    actor = args.actor or i.actor or default_actor()
    who = f"{args.site}/{args.gateway}"

    def once() -> int:
        reply = send_command(
            cfg,
            site=args.site,
            gateway=args.gateway,
            command=args.action,
            timeout=args.timeout,
            key=key,
            gateway_keys=gateway_keys,
            **_fields(args, actor, procedure),
        )
        a = reply.answer
        rc = _show(args, who, a.accepted, f"{a.refusal}: {a.reason}" if a.refusal else a.reason, a.result)
        if reply.verified_by is None:
            where = i.gateway_keys or "CONTROL.toml: no gateway_keys"
            print(
                f"{who}: this answer is NOT verified: no answer key of {who} in {where} (its "
                "control-answer.pub, from the gateway's data_dir)",
                file=sys.stderr,
            )
            return 1
        return rc

    return once


def _local(args: argparse.Namespace, procedure: dict[str, str]) -> Callable[[], int]:
    from gateway.config import load_gateway_section
    from gateway.control.config import default_actor
    from gateway.localcontrol import ControlRefused, request_sync

    # only [gateway]: where the socket is - the operator's shell needs none of the service's secrets
    g = load_gateway_section(args.config)
    who = f"{g.site}/{g.id}"
    fields = _fields(args, args.actor or default_actor(), procedure)

    def once() -> int:
        try:
            reply = request_sync(
                g.data_dir, f"run.{args.action}", timeout=args.timeout or _LOCAL_TIMEOUT, **fields
            )
        except ControlRefused as exc:
            return _show(args, who, False, exc.reason, {})
        return _show(args, who, True, "", dict(reply.get("result") or {}))

    return once


def _show(args: argparse.Namespace, who: str, accepted: bool, why: str, result: dict[str, Any]) -> int:
    if not accepted:
        print(f"{who}: {args.action} REFUSED - {why}", file=sys.stderr)
        return 1
    if args.action == "status":
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        else:
            print("\n".join(format_status(who, result)))
        return 0
    state = result.get("state")
    step = result.get("step")
    print(
        f"{who}: {args.action} accepted"
        + (f" - run {result.get('run')} {state}" if state else "")
        + (f", step {step}" if step is not None else "")
    )
    return 0


def _watch(once: Callable[[], int], interval: float) -> int:
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            if clear:
                print(clear, end="")
            try:
                once()
            except ConfigError:
                raise
            except RemotecalError as exc:  # no answer this time: say so, try again
                print(f"remotecal: {exc}", file=sys.stderr)
            print(
                f"-- {datetime.now(UTC).strftime('%H:%M:%S')} UTC, every {interval:g} s; Ctrl-C ends",
                flush=True,
            )
            time.sleep(max(0.1, interval))
    except KeyboardInterrupt:
        return 0


def _dur(s: Any) -> str:
    if not isinstance(s, int | float):
        return "?"
    s = round(s)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


def _num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, int | float) else "-"


_UNITS = {"temperature": "degC", "humidity": "%rh"}


def format_status(who: str, s: dict[str, Any]) -> list[str]:
    """A run's status (the engine's `status()`) as lines for a terminal."""
    state = s.get("state", "?")
    run = s.get("run")
    head = f"{who}  " + (f"run {run}  " if run else "no run  ") + str(state).upper()
    step, steps = s.get("step"), s.get("steps")
    if isinstance(step, int):
        head += f"  step {step} ({step + 1} of {steps})" if steps else f"  step {step}"
        if s.get("step_name"):
            head += f" {s['step_name']!r}"
    if s.get("time_in_state_s") is not None:
        head += f"  for {_dur(s['time_in_state_s'])}"
    lines = [head]
    timing = []
    if s.get("step_elapsed_s") is not None:
        timing.append(f"in step {_dur(s['step_elapsed_s'])}")
    if s.get("settle_min_s") is not None:
        timing.append(f"settle min {_dur(s['settle_min_s'])}")
    if s.get("record_s") is not None:
        timing.append(f"record {_dur(s['record_s'])}")
    if s.get("max_s") is not None:
        timing.append(f"max {_dur(s['max_s'])}")
    if timing:
        lines.append("  time        " + ", ".join(timing))
    sp = s.get("setpoints") or {}
    if sp:
        lines.append(
            "  setpoints   "
            + ", ".join(f"{k} {_num(v)} {_UNITS.get(k, '')}".rstrip() for k, v in sorted(sp.items()))
        )
    for ref in s.get("references") or []:
        unit = ref.get("unit") or ""
        verdict = f"stable for {_dur(ref.get('stable_for_s'))}" if ref.get("stable") else "NOT stable"
        lines.append(
            f"  {ref.get('channel', '?'):<11} std {_num(ref.get('std'))} (max {_num(ref.get('max_std'))}) "
            f"{unit}, slope {_num(ref.get('slope_per_min'))} (max {_num(ref.get('max_slope_per_min'))}) "
            f"{unit}/min over {_dur(ref.get('window_s'))}, n {ref.get('n', 0)}: {verdict}"
        )
    if s.get("reason"):
        lines.append(f"  why         {s['reason']}" + (f" (by {s['actor']})" if s.get("actor") else ""))
    last = s.get("last_command") or {}
    if last.get("command"):
        when = ""
        if isinstance(last.get("time_ns"), int):
            when = " at " + datetime.fromtimestamp(last["time_ns"] / 1e9, UTC).strftime(
                "%Y-%m-%d %H:%M:%S UTC"
            )
        verdict = "accepted" if last.get("accepted", True) else f"refused: {last.get('reason', '')}"
        lines.append(f"  last command {last['command']} by {last.get('actor', '?')}{when}, {verdict}")
    outcomes = s.get("outcomes") or []
    if outcomes:
        lines.append(
            f"  steps done  {len(outcomes)}: "
            + ", ".join(str(o.get("outcome", o)) if isinstance(o, dict) else str(o) for o in outcomes[-8:])
        )
    return lines
