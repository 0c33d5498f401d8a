"""`remotecal demo` in a terminal: a live display (rich) of the chamber, every channel's
latest reading and the plateaus found so far, then the paths of the results on stdout."""

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
    DEMO_PROGRAM,
    MAX_SLOPE_T,
    MAX_STD_T,
    MIN_DURATION_S,
    RUN_ID,
    WINDOW_S,
    DemoPlan,
    check_influx,
    prepare_out,
)
from remotecal.logs import setup_logging

__all__ = ["run_with_display"]


class _LiveView:
    """A rich live display: the chamber, every channel's latest reading, the plateaus so far."""

    def __init__(self, plan: DemoPlan, live: Any):
        self.plan = plan
        self.live = live

    async def __call__(self, chamber: Chamber, store: Path) -> None:
        from rich.table import Table

        from gateway.sinks.local.store import read_run
        from pipelines.plateaus import find_plateaus

        sim_t = chamber.sim_time()
        t, rh = chamber.state()
        sp_t, sp_rh = chamber.setpoint(sim_t)
        head = Table.grid(padding=(0, 2))
        head.add_row("[b]chamber[/b]", f"setpoint {sp_t:.1f} degC / {sp_rh:.0f} %rh",
                     f"now {t:.2f} degC / {rh:.1f} %rh",
                     f"time {sim_t / 60:5.1f} of {chamber.duration_s / 60:.0f} min (x{self.plan.speed:g})")
        table = Table(title=None, expand=False)
        for col in ("channel", "role", "latest", "readings"):
            table.add_column(col)
        plateaus = "-"
        with contextlib.suppress(Exception):
            data = await asyncio.to_thread(read_run, store, RUN_ID)
            for name in sorted(data):
                d = data[name]
                table.add_row(name, d.role, f"{d.values[-1]:.3f} {d.unit}", str(len(d.values)))
            if "ref-t" in data:
                ref = data["ref-t"]
                k = self.plan.speed
                found = find_plateaus(ref.t_s, ref.values, window_s=WINDOW_S / k, max_std=MAX_STD_T,
                                      max_slope_per_min=MAX_SLOPE_T * k, min_duration_s=MIN_DURATION_S / k)
                plateaus = ", ".join(f"{ref.values[a:b].mean():.2f} degC" for a, b in found) or "none yet"
        foot = Table.grid()
        foot.add_row(f"[b]plateaus on ref-t[/b]: {plateaus}")
        from rich.console import Group

        self.live.update(Group(head, table, foot))


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
    console.print(f"remotecal demo: a {sum(s.duration_s for s in DEMO_PROGRAM) / 3600:.0f} h chamber program "
                  f"at x{plan.speed:g} ({plan.wall_duration_s:.0f} s), results in {plan.out}")
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
