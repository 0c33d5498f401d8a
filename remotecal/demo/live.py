"""`remotecal demo` in a terminal: a live display (rich) of the remote run's state machine,
the chamber and every channel's latest reading, then the paths of the results on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from firmware_bridge.chamber import Chamber
from remotecal.demo import chain
from remotecal.demo.plan import (
    DEMO_HUMIDITY,
    DEMO_TEMPERATURE,
    RUN_ID,
    DemoPlan,
    check_influx,
    prepare_out,
)
from remotecal.logs import setup_logging

__all__ = ["run_with_display"]


class _LiveView:
    """A rich live display: the run's state machine (state, step, setpoints, time in step, each
    reference's stability), the chamber, every channel's latest reading beside it."""

    def __init__(self, plan: DemoPlan, live: Any):
        self.plan = plan
        self.live = live

    async def __call__(self, chamber: Chamber, store: Path, status: dict[str, Any]) -> None:
        from rich.console import Group
        from rich.table import Table

        from gateway.sinks.local.store import read_run

        k = self.plan.speed
        t, rh = chamber.state()
        run = Table.grid(padding=(0, 2))
        run.add_row(*_run_lines(status, k))
        head = Table.grid(padding=(0, 2))
        head.add_row("[b]chamber[/b]", f"now {t:.2f} degC / {rh:.1f} %rh",
                     f"time {chamber.sim_time() / 60:5.1f} min (x{k:g})")
        table = Table(title=None, expand=False)
        for col in ("channel", "role", "latest", "readings"):
            table.add_column(col)
        with contextlib.suppress(Exception):
            data = await asyncio.to_thread(read_run, store, RUN_ID)
            for name in sorted(data):
                d = data[name]
                table.add_row(name, d.role, f"{d.values[-1]:.3f} {d.unit}", str(len(d.values)))
        self.live.update(Group(run, head, table))


def _run_lines(s: dict[str, Any], k: float) -> tuple[str, str]:
    """The run engine's status as two columns: the state machine, each reference's stability."""
    state = str(s.get("state", "?"))
    step, steps = s.get("step"), s.get("steps")
    lines = [f"[b]run {s.get('run') or '-'}[/b]  [b]{state.upper()}[/b]"
             + (f"  step {step + 1} of {steps}" if isinstance(step, int) else "")
             + (f" ({s['step_name']})" if s.get("step_name") else "")]
    sp = s.get("setpoints") or {}
    if sp:
        lines.append("setpoints " + ", ".join(f"{v:g} {_UNITS.get(q, '')}".rstrip()
                                              for q, v in sorted(sp.items(), reverse=True)))
    elapsed = s.get("step_elapsed_s")
    if isinstance(elapsed, int | float):
        lines.append(f"in step {elapsed:.1f} s ({elapsed * k / 60:.0f} min chamber time)")
    done = s.get("outcomes") or []
    lines.append(f"steps done {len(done)}" + (": " + ", ".join(map(str, done)) if done else ""))
    last = s.get("last_command") or {}
    if last.get("command"):
        verdict = "accepted" if last.get("accepted", True) else f"refused: {last.get('reason', '')}"
        lines.append(f"last command {last['command']} by {last.get('actor', '?')}, {verdict}")
    refs = []
    for r in s.get("references") or []:
        verdict = "[green]stable[/green]" if r.get("stable") else "settling"
        std = r.get("std")
        refs.append(f"{r.get('channel')}: {verdict}" + (f", std {std:.3g} (max {r.get('max_std'):g})"
                                                           if isinstance(std, int | float) else ""))
    return "\n".join(lines), "\n".join(refs)


_UNITS = {"temperature": "degC", "humidity": "%rh"}


class _ConsoleHandler(logging.Handler):
    """Log lines through the live display's console: printed above the display, which is drawn
    again below them, instead of being written into it (and overwritten at its next refresh)."""

    def __init__(self, console: Any, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(formatter or logging.Formatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # logging never raises into the code that logs
            self.handleError(record)


def run_with_display(out: str | Path, speed: float, influx_url: str | None, console: Any = None) -> int:
    """Run the demo with the live display on stderr (or `console`); the results' paths on stdout."""
    from rich.console import Console
    from rich.live import Live

    plan = DemoPlan(out=Path(out).resolve(), speed=speed, influx_url=influx_url)
    prepare_out(plan.out)  # before the live display: a bad --out is one line, not a frame and a line
    if plan.influx_url:
        check_influx(plan.influx_url)
    console = console or Console(stderr=True)
    setup_logging("warning")  # the live display shows the state; warnings still get through
    root = logging.getLogger()
    root.handlers[:] = [_ConsoleHandler(console, root.handlers[0].formatter if root.handlers else None)]
    t0 = time.monotonic()
    sweep = "-".join(f"{h:g}" for h in (*DEMO_HUMIDITY, *DEMO_HUMIDITY[-2::-1]))
    console.print(f"remotecal demo: a remote run, {sweep} %rh at {DEMO_TEMPERATURE:g} degC, "
                  f"chamber time x{plan.speed:g}, results in {plan.out}")
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            outputs = asyncio.run(chain.run_demo(plan, _LiveView(plan, live)))
    finally:
        if not console.is_terminal:
            console.line()  # rich ends a terminal's display with a newline, not a file's or a pipe's
    # Plain lines on stdout (never wrapped), so a script can pick the paths up.
    print(f"demo done in {time.monotonic() - t0:.1f} s; results:")
    for name, path in outputs.items():
        print(f"  {name:16} {path}")
    return 0
