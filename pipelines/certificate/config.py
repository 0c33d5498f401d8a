"""The pipeline config's certificate sections (PIPELINE.toml), beside `pipelines.config`'s:

    [[cmc.<quantity>]]         the laboratory's calibration and measurement capability (ILAC-P14):
                               min, max (the range, in the quantity's unit, both ends included),
                               U (the smallest expanded uncertainty, ~95 %, the accreditation
                               states there) and optional U_relative (a fraction of the value
                               added to U); a stated U is never below it
    [conditions]               which of the run's channels hold the ambient conditions the
                               certificate states: ambient_temperature, ambient_humidity,
                               ambient_pressure (channel names; each optional)
    [certificate.signing]      key, certificate (PEM files; relative to the config file),
                               password (a secret: "env:NAME", "file:/path" or inline), chain
                               (further PEM certificates): `pipeline run` signs certificate.xml
                               (XAdES) when given
    [report]                   simulated (the readings come from a simulation: every page and the
                               DCC say so), time_compression (how many times faster than real time)
    [certificate] register_file
                               where the certificate numbers issued are kept (SQLite; default
                               certificates.db beside the config file)

Each is validated with its key path, e.g. ``cmc.temperature[1].min: overlaps
cmc.temperature[0] (-40 to 10)``.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, field_validator

from gateway.config_types import Secret
from gateway.quantities import check_quantity

__all__ = ["CmcRange", "ConditionsConfig", "ReportConfig", "SigningConfig", "check_cmc", "cmc_for"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CmcRange(_Strict):
    """One row of the laboratory's CMC table for a quantity."""

    min: float
    """Lower end of the range [quantity's unit], included."""
    max: float
    """Upper end of the range [quantity's unit], included."""
    U: PositiveFloat
    """Smallest expanded uncertainty (coverage probability ~95 %) in the range [unit]."""
    U_relative: NonNegativeFloat = 0.0
    """A part proportional to the value: CMC = U + U_relative * |value|."""

    @field_validator("min", "max", "U", "U_relative")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    def at(self, value: float) -> float:
        return self.U + self.U_relative * abs(value)


def check_cmc(cmc: dict[str, list[CmcRange]]) -> list[str]:
    """Problems of a [cmc] table, each with its key path: unknown quantities, empty or inverted
    ranges, overlapping ranges."""
    problems = []
    for quantity, ranges in cmc.items():
        try:
            check_quantity(quantity)
        except ValueError as exc:
            problems.append(f"cmc.{quantity}: {exc}")
            continue
        if not ranges:
            problems.append(f"cmc.{quantity}: give at least one range (min, max, U)")
        for i, r in enumerate(ranges):
            if r.max <= r.min:
                problems.append(f"cmc.{quantity}[{i}].max: must be above min ({r.max:g} <= {r.min:g})")
        order = sorted(range(len(ranges)), key=lambda i: ranges[i].min)
        for a, b in itertools.pairwise(order):
            if ranges[b].min < ranges[a].max:
                problems.append(f"cmc.{quantity}[{b}].min: overlaps cmc.{quantity}[{a}] "
                                f"({ranges[a].min:g} to {ranges[a].max:g})")
    return problems


def cmc_for(cmc: dict[str, list[CmcRange]], quantity: str, value: float) -> float | None:
    """The CMC (an expanded uncertainty) at ``value`` of ``quantity``; None when the table has
    no range that holds it.  On a boundary shared by two ranges, the larger CMC."""
    found = [r.at(value) for r in cmc.get(quantity, ()) if r.min <= value <= r.max]
    return max(found) if found else None


class ConditionsConfig(_Strict):
    """[conditions]: the channels whose readings over the run are the ambient conditions."""

    ambient_temperature: str | None = Field(default=None, min_length=1)
    ambient_humidity: str | None = Field(default=None, min_length=1)
    ambient_pressure: str | None = Field(default=None, min_length=1)

    def channels(self) -> dict[str, str]:
        """condition name -> channel, for the conditions given."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class SigningConfig(_Strict):
    """[certificate.signing]: the main signer's X.509 key and certificate (PEM)."""

    key: Path
    certificate: Path
    password: Secret | None = None
    chain: list[Path] = []
    """Intermediate CA certificates to put beside the signer's in the signature."""


class ReportConfig(_Strict):
    """[report]: what the report and the certificate say about where the readings come from."""

    simulated: bool = False
    """The readings are a simulation (the demo): a banner on every page, a statement in the DCC."""
    time_compression: PositiveFloat = 1.0
    """How many times faster than real time the simulation ran."""
