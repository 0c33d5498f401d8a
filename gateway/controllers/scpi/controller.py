"""A SCPI/ASCII chamber controller: send the setpoint's command, ask it back, compare.

Each setpoint is `write` with {value} filled in, then `query`, whose answer's `pattern` group
`value` must equal the number the command carried (within `tolerance`): a chamber that
clamped, rounded or ignored the command is caught there.  With `error_query`, the error queue
is asked after every command and an answer numbered other than 0 (`-222,"Data out of range"`)
fails the step with the instrument's own words.  A link that fails (refused, closed, no answer
within `timeout`) is closed - so a late answer is never taken for the next one - and opened
again at the next command; every failure is a `ControllerError` (the run engine
puts the controller's name before its reason).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re

from gateway.controllers.scpi.config import ScpiControllerConfig, ScpiSetpoint, render
from gateway.controllers.setpoints import check_setpoints, confirm
from gateway.errors import ControllerError
from gateway.sources.instrument.source import LineLink, LinkDown

__all__ = ["ScpiController"]

log = logging.getLogger("remotecal.controller.scpi")

_ERROR_NUMBER = re.compile(r"^\s*([-+]?\d+)")


class ScpiController:
    """`[[controllers.scpi]]`: see the module docstring and gateway.controllers.Controller."""

    def __init__(self, cfg: ScpiControllerConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.quantities = cfg.quantities()
        self._setpoints: dict[str, ScpiSetpoint] = {s.quantity: s for s in cfg.setpoints}
        self._patterns: dict[str, re.Pattern[str]] = {
            s.quantity: re.compile(s.pattern) for s in cfg.setpoints}
        self.link = LineLink(cfg)
        self._lock = asyncio.Lock()
        self._term = cfg.terminator.encode(cfg.encoding)

    def _fail(self, what: str, reason: str) -> ControllerError:
        return ControllerError(f"{what}: {reason}")

    async def _send(self, line: str, what: str) -> None:
        try:
            if not self.link.is_open:
                await self.link.open()
            await self.link.write(line.encode(self.cfg.encoding) + self._term)
        except LinkDown as exc:
            self.link.close()
            raise self._fail(what, exc.reason) from None
        except UnicodeEncodeError:
            raise self._fail(what, f"{line!r} is not {self.cfg.encoding} text") from None

    async def _ask(self, line: str, what: str) -> str:
        await self._send(line, what)
        try:
            answer = await self.link.readline(self.cfg.timeout)
        except TimeoutError:
            self.link.close()
            raise self._fail(what, f"no answer to {line!r} within {self.cfg.timeout:g} s") from None
        except LinkDown as exc:
            self.link.close()
            raise self._fail(what, exc.reason) from None
        return answer.decode(self.cfg.encoding, errors="replace").strip()

    async def _command(self, line: str, what: str) -> None:
        """Send a command; with `error_query`, fail on an error the instrument queued for it."""
        await self._send(line, what)
        if self.cfg.error_query is None:
            return
        answer = await self._ask(self.cfg.error_query, what)
        m = _ERROR_NUMBER.match(answer)
        if m is None:
            raise self._fail(what, f"{self.cfg.error_query} answered {answer!r}, not an error number")
        if int(m.group(1)) != 0:
            raise self._fail(what, f"{line!r} refused: {answer}")

    async def apply(self, setpoints: dict[str, float]) -> None:
        check_setpoints(setpoints, self._setpoints)
        lines = {q: render(self._setpoints[q].write, value) for q, value in setpoints.items()}
        async with self._lock:
            for q, (line, sent) in lines.items():
                sp = self._setpoints[q]
                what = f"the {q} setpoint"
                await self._command(line, what)
                back = await confirm(functools.partial(self._read_back, q, what), sent, sp.tolerance,
                                     self.cfg.confirm_timeout)
                if not abs(back - sent) <= sp.tolerance:
                    raise ControllerError(f"{q} setpoint read back {back:g}, "
                                          f"sent {sent:g} ({line!r})")
                log.info("controller %s: %s setpoint %g sent and read back", self.name, q, sent)

    async def _read_back(self, q: str, what: str) -> float:
        sp = self._setpoints[q]
        answer = await self._ask(sp.query, f"reading {what} back")
        m = self._patterns[q].search(answer)
        try:
            back = float(m.group("value")) if m else None
        except ValueError:
            back = None
        if back is None:
            raise self._fail(f"reading {what} back", f"{sp.query!r} answered {answer!r}: no number")
        return back

    async def set_running(self, on: bool) -> None:
        run = self.cfg.run
        if run is None:
            return  # a controller without run commands runs whenever it is powered
        what = f"the run state {'on' if on else 'off'}"
        async with self._lock:
            await self._command(run.on if on else run.off, what)
            if run.query is None:
                return
            answer = await self._ask(run.query, f"reading {what} back")
            if not re.search(run.on_answer if on else run.off_answer, answer, re.I):
                raise ControllerError(f"run state read back {answer!r}, "
                                      f"expected {'on' if on else 'off'}")

    async def close(self) -> None:
        self.link.close()
