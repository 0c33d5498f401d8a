"""The source, sink and controller kinds this gateway knows: one line per protocol folder.

A new protocol is a new folder with a `plugin.py` (see gateway.plugin) and one line below.
Config validation (gateway.config), `gateway check`, the runtime's builders
(gateway.runtime) and the README's reference test all loop over these two tables, in this
order.  `register` adds a kind at run time (a test's, or a site's own).
"""

from __future__ import annotations

from typing import Any

from gateway.controllers.modbus.plugin import KIND as _modbus_controller
from gateway.controllers.scpi.plugin import KIND as _scpi_controller
from gateway.plugin import ControllerKind, SinkKind, SourceKind
from gateway.sinks.influxdb.plugin import KIND as _influxdb
from gateway.sinks.local.plugin import KIND as _local
from gateway.sinks.mqtt.plugin import KIND as _mqtt_uplink
from gateway.sources.instrument.plugin import KIND as _instrument
from gateway.sources.modbus.plugin import KIND as _modbus
from gateway.sources.mqtt.plugin import KIND as _mqtt
from gateway.sources.uplink.plugin import KIND as _uplink

__all__ = ["CONTROLLERS", "SINKS", "SOURCES", "register", "unregister"]

SOURCES: dict[str, SourceKind] = {k.name: k for k in (_mqtt, _modbus, _instrument, _uplink)}
SINKS: dict[str, SinkKind] = {k.name: k for k in (_influxdb, _mqtt_uplink, _local)}
CONTROLLERS: dict[str, ControllerKind] = {k.name: k for k in (_modbus_controller, _scpi_controller)}


def register(kind: SourceKind | SinkKind | ControllerKind) -> None:
    """Add a kind; a name already taken is a programming error."""
    if isinstance(kind, SourceKind):
        _add(SOURCES, kind, "source")
    elif isinstance(kind, ControllerKind):
        _add(CONTROLLERS, kind, "controller")
    else:
        _add(SINKS, kind, "sink")


def _add(table: dict[str, Any], kind: SourceKind | SinkKind | ControllerKind, what: str) -> None:
    if kind.name in table:
        raise ValueError(f"a {what} kind {kind.name!r} is already registered")
    table[kind.name] = kind


def unregister(kind: SourceKind | SinkKind | ControllerKind) -> None:
    table: dict[str, Any] = (SOURCES if isinstance(kind, SourceKind)
                             else CONTROLLERS if isinstance(kind, ControllerKind) else SINKS)
    table.pop(kind.name, None)
