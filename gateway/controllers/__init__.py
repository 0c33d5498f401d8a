"""Chamber controllers: what a remote run writes its setpoints to (SPEC section 8, issue 15).

Each kind is one folder, `gateway/controllers/<kind>/`, whose `plugin.py` declares a
`gateway.plugin.ControllerKind` (the TOML table `[[controllers.<kind>]]`, the schema of one
block, the builder); `gateway.registry.CONTROLLERS` lists them, like the sources and sinks.

A controller writes every setpoint it is given and reads each one back: a value read back
different from the one written (beyond the block's tolerance), a refused write or a lost
connection is a `ControllerError`, never ignored - the run engine fails the step with its
reason, after the controller's name (so a reason does not repeat the name: "humidity setpoint
read back 98, written 99.5 (holding 102)").  `quantities` says which setpoints a controller
writes ("temperature", "humidity"); `route` splits a step's setpoints between the controllers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from gateway.errors import ControllerError

__all__ = ["Controller", "ControllerError", "build_controllers", "route"]


class Controller(Protocol):
    name: str
    quantities: frozenset[str]
    """The setpoints this controller writes."""

    async def apply(self, setpoints: dict[str, float]) -> None:
        """Write every setpoint (all of them of `quantities`), read each back; ControllerError
        on a mismatch, a refused write or an I/O failure (and for a quantity it does not write)."""
        ...

    async def set_running(self, on: bool) -> None:
        """Start (True) or stop (False) the chamber's program; read back like a setpoint."""
        ...

    async def close(self) -> None:
        """Release the connection; the chamber keeps its last setpoints."""
        ...


def build_controllers(config: Any) -> dict[str, Controller]:
    """Every `[[controllers.<kind>]]` block of the site config (a `gateway.config.GatewayConfig`,
    not imported here: gateway.config imports the kinds) -> its controller, by name
    (connections open at their first use, so building never touches the network)."""
    from gateway import registry

    out: dict[str, Controller] = {}
    for kind in registry.CONTROLLERS.values():
        for block in config.controllers.blocks(kind.name):
            out[block.name] = kind.build(block)
    return out


def route(controllers: Mapping[str, Controller], setpoints: Mapping[str, float]
          ) -> dict[str, dict[str, float]]:
    """Split setpoints between controllers: name -> the setpoints it writes.  ControllerError
    when a setpoint has no controller or more than one (a step's setpoint is written once)."""
    out: dict[str, dict[str, float]] = {}
    for q, v in setpoints.items():
        owners = [name for name, c in controllers.items() if q in c.quantities]
        if not owners:
            raise ControllerError(f"no controller writes the {q} setpoint")
        if len(owners) > 1:
            raise ControllerError(f"the {q} setpoint is written by {' and '.join(owners)}: give it to one")
        out.setdefault(owners[0], {})[q] = v
    return out
