"""The one type that flows through the gateway: a `Reading`.

Sources produce readings, the journal stores them, sinks write them and the pipeline
reads them back.  A reading carries its own origin (site, gateway, run) so that a journal
that outlives a change of run id, or a central ingest that holds many gateways' readings,
still writes every point with the tags it was taken under.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ROLES", "FieldValue", "HealthSample", "Point", "Reading", "Record"]

ROLES = ("reference", "dut", "chamber")


@dataclass(slots=True, unsafe_hash=True)
class Reading:
    """One measured value of one channel at one instant; treat it as immutable.

    Not `frozen=True`: a frozen dataclass's `__init__` sets each field through
    `object.__setattr__`, 2.0 us a reading against 0.3 us here - on a gateway's hot path,
    where every MQTT message makes one or more.  Equality and hashing are by value, as before.

    time_ns : int [ns since the Unix epoch, UTC]
    value : float [unit]
    tags : extra tags (sorted key/value pairs) beyond the schema's fixed ones.
    """

    site: str
    gateway: str
    run: str
    channel: str
    quantity: str
    unit: str
    role: str
    value: float
    time_ns: int
    tags: tuple[tuple[str, str], ...] = ()

    def series_key(self) -> tuple[object, ...]:
        """Everything but value and time: the identity of the InfluxDB series.

        The extra tags stay a tuple of pairs: joined as 'k=v' text, ('a', 'b=c') and
        ('a=b', 'c') would be one series.
        """
        return (self.site, self.gateway, self.run, self.channel,
                self.quantity, self.unit, self.role, self.tags)


@dataclass(frozen=True, slots=True)
class HealthSample:
    """A `gateway_health` point: counters of one gateway at one instant."""

    site: str
    gateway: str
    time_ns: int
    fields: dict[str, float | int] = field(default_factory=dict)


FieldValue = float | int | str | bool
"""A field of a `Point`: InfluxDB's field types."""


@dataclass(frozen=True, slots=True)
class Point:
    """Any other point the gateway writes itself through its journal - a remote run's
    `run_event` and `run_window` (README, "Remote runs") - with the tags `site`, `gateway`,
    `run`, the extra `tags` (sorted key/value pairs) and typed `fields`.

    time_ns : int [ns since the Unix epoch, UTC]
    """

    measurement: str
    site: str
    gateway: str
    run: str
    time_ns: int
    fields: dict[str, FieldValue] = field(default_factory=dict)
    tags: tuple[tuple[str, str], ...] = ()


Record = Reading | HealthSample | Point
