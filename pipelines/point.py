"""A calibration point's result: one DUT channel at one plateau, with its GUM budget.

The object every output reads (corrections.csv and `calibration_point` in
`pipelines.results`, the report, the DCC); `pipelines.run` makes them.  SPEC section 5's
columns are its fields and properties of the same names; the rest are documented below and
in README.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from pipelines.reference import ReferenceInfo
from pipelines.uncertainty import Budget

__all__ = ["PointResult", "round_setpoint"]


@dataclass(frozen=True)
class PointResult:
    """One row of corrections.csv: one DUT channel at one plateau, with its budget."""

    run: str
    channel: str
    quantity: str
    unit: str
    reference: str
    point: int
    """1-based index of the plateau on the reference."""
    setpoint: float
    t_start_s: float
    """First reference sample of the plateau [s since the epoch, UTC]."""
    t_end_s: float
    """Last reference sample of the plateau [s since the epoch, UTC]."""
    n: int
    """Samples compared (reference samples of the plateau with a DUT value)."""
    reference_mean: float
    """Mean of the reference, its certificate correction applied [unit]."""
    dut_mean: float
    correction: float
    """reference_mean - dut_mean: what to add to the DUT's reading [unit]."""
    reference_correction: float
    """Mean certificate correction applied to the reference [unit]."""
    extrapolated: bool
    """The reference's certificate was extrapolated for this point."""
    budget: Budget
    reference_equipment: tuple[tuple[str, str], ...] = ()
    """(channel, unit) of every reference instrument behind reference_mean, when that is
    not just (reference, unit): a dew-point mirror and a thermometer."""
    decision: str = ""
    """Statement of conformity (`pipelines.conformity`): pass, fail, conditionalPass,
    conditionalFail; empty without [conformity] (or without an MPE for the quantity)."""
    mpe: float | None = None
    """The maximum permissible error the decision was made against [unit]."""
    n_dut: int = 0
    """The DUT's own readings in the point's span (n counts reference samples; a DUT read
    every 10 s against a 1 Hz reference has n_dut = n / 10)."""
    n_eff: float = 0.0
    """Effective number of independent samples of the Type A (`pipelines.uncertainty.
    autocorrelated_mean`), at most n_dut; its dof is n_eff - 1."""
    plateau_start_s: float = 0.0
    """First sample of the reference's plateau [s since the epoch]; t_start_s is later when
    the DUT settled later (`pipelines.run`, DUT settling)."""
    references: tuple[ReferenceInfo, ...] = ()
    """Identity and certificate of each reference standard behind reference_mean, for those
    declared as [references.<id>] (empty for the SPEC's [reference_certificate] form)."""
    expired_reference: bool = False
    """A reference was past its due date and the run allowed it (run.allow_expired_references)."""
    gas_temperature: float | None = None
    """Humidity against a dew point: mean air temperature at the point, its certificate
    applied [degC]."""
    dew_point: float | None = None
    """Humidity against a dew point: mean dew (or frost) point, its certificate applied [degC]."""
    pressure_pa: float | None = None
    """Humidity: the chamber's pressure the RH was computed at [Pa] (None: enhancement factor 1)."""
    pressure_ratio: float | None = None
    """Humidity with a mirror at another pressure: pressure_pa / the mirror's pressure."""
    direction: str = ""
    """"up" or "down": whether the reference came to this point from below or above (the
    previous point of the comparison in time); DKD-R 5-8's sequence."""
    hysteresis: float | None = None
    """|correction(up) - correction(down)| at this setpoint [unit], when the channel has both
    an up and a down point there; half of it is a rectangular contribution to both."""

    @property
    def equipment(self) -> tuple[tuple[str, str], ...]:
        """(channel, unit) of each reference instrument."""
        return self.reference_equipment or ((self.reference, self.unit),)

    @property
    def error(self) -> float:
        """The DUT's error, DUT - reference = -correction [unit]."""
        return -self.correction

    @property
    def u_combined(self) -> float:
        return self.budget.u_combined

    @property
    def U(self) -> float:
        return self.budget.U

    @property
    def k(self) -> float:
        return self.budget.k

    @property
    def dof_eff(self) -> float:
        return self.budget.dof_eff

    @property
    def t_start(self) -> datetime:
        return datetime.fromtimestamp(self.t_start_s, UTC)

    @property
    def t_end(self) -> datetime:
        return datetime.fromtimestamp(self.t_end_s, UTC)

    @property
    def t_end_ns(self) -> int:
        return round(self.t_end_s * 1e9)

    @property
    def flags(self) -> tuple[str, ...]:
        """``extrapolated`` (a reference's certificate), ``expired_reference``."""
        out = []
        if self.extrapolated:
            out.append("extrapolated")
        if self.expired_reference:
            out.append("expired_reference")
        return tuple(out)


def round_setpoint(x: float) -> float:
    """Nearest 0.5, halves rounded up (away from -inf): 20.25 -> 20.5, -0.25 -> 0.0."""
    return math.floor(x * 2.0 + 0.5) / 2.0 + 0.0
