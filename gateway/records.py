"""Records as the journal holds them: rows that point into a table of series.

The journal stores a reading as `(seq, series id, ts, value, fields)`; everything a series'
readings share (site, gateway, run, channel, quantity, unit, role, extra tags) is one row of
its series table.  A batch read back for delivery is a `RecordRows`: a `Sequence[Record]`
that makes each `Reading` or `HealthSample` only when it is asked for, so a sink that
understands rows (the line-protocol encoder: one cached prefix per series id) never builds
the objects at all, and every other sink sees plain records.

A series id means the same series for as long as its table lives (the journal frees series
that have no records left, but never gives their ids to other series), so a sink may cache
what it derives from a series by `(table, id)`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

from gateway.reading import HealthSample, Point, Reading, Record

__all__ = ["HEALTH", "READING", "RecordRows", "Row", "Series"]

READING = "reading"
"""The measurement of reading series."""
HEALTH = "gateway_health"
"""The measurement of health samples; any other is a `Point`'s (its fields in the row's JSON)."""

Row = tuple[int, int, int, float | None, str | None]
"""(seq, series id, time_ns, value, fields as JSON) - a journal `records` row."""


@dataclass(frozen=True, slots=True)
class Series:
    """One entry of the series table: what all records of the series share."""

    measurement: str
    site: str
    gateway: str
    run: str
    channel: str
    quantity: str
    unit: str
    role: str
    tags: tuple[tuple[str, str], ...]

    @classmethod
    def from_key(cls, key: Sequence[str]) -> Series:
        """From the journal's key: the nine columns, extra tags as JSON ("" for none)."""
        m, site, gw, run, channel, quantity, unit, role, tags = key
        extra = tuple((str(k), str(v)) for k, v in json.loads(tags)) if tags else ()
        return cls(m, site, gw, run, channel, quantity, unit, role, extra)


class RecordRows(Sequence[Record]):
    """Journal rows, read as records on demand; slices are `RecordRows` too.

    `rows` are in journal order; `series` maps each row's series id to its `Series` and is
    the journal's own table (shared; a series leaves it only once no record refers to it).
    """

    __slots__ = ("rows", "series")

    def __init__(self, rows: list[Row], series: Mapping[int, Series]) -> None:
        self.rows = rows
        self.series = series

    def record(self, row: Row) -> Record:
        _, sid, ts, value, fields = row
        s = self.series[sid]
        if s.measurement == READING:
            return Reading(s.site, s.gateway, s.run, s.channel, s.quantity, s.unit, s.role,
                           value, ts, s.tags)  # type: ignore[arg-type]  # NaN is stored as NULL
        if s.measurement == HEALTH:
            return HealthSample(s.site, s.gateway, ts, json.loads(fields or "{}"))
        return Point(s.measurement, s.site, s.gateway, s.run, ts, json.loads(fields or "{}"), s.tags)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> RecordRows: ...
    def __getitem__(self, index: int | slice) -> Record | RecordRows:
        if isinstance(index, slice):
            return RecordRows(self.rows[index], self.series)
        return self.record(self.rows[index])

    def __iter__(self) -> Iterator[Record]:
        return map(self.record, self.rows)

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same records (a list of them, say)."""
        if isinstance(other, RecordRows) and other.series is self.series:
            return other.rows == self.rows
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"RecordRows({len(self.rows)} rows)"

    @property
    def seqs(self) -> list[int]:
        return [row[0] for row in self.rows]
