"""A calibration point as the certificate states it: the CMC floor applied, then rounded.

One `Reported` per `pipelines.run.PointResult`, made once by `report_points` and read by
every writer that a person or a customer's software reads (corrections.csv, report.html,
certificate.xml, the printable certificate), so that all of them state the same digits:

1. **CMC floor (ILAC-P14:09/2020 5.4):** the stated expanded uncertainty is
   ``max(U_budget, CMC)``, the CMC of the laboratory's ``[[cmc.<quantity>]]`` range that holds
   the point's reference value.  A point raised to its CMC is flagged ``cmc``; a point of a
   quantity with a CMC table but outside all of its ranges is flagged ``outside_cmc`` (the
   laboratory's accreditation does not cover it).  A quantity without a CMC table is stated
   with its budget's U (the pipeline warns).
2. **Rounding (GUM 7.2.6, `pipelines.certificate.rounding`):** U to two significant digits,
   rounded up; the reference value, the DUT's value, the error and the correction to U's
   decimal place; u_c to two significant digits; k to two decimals.
3. **Conformity (`pipelines.conformity`):** with [conformity], the decision is made again on
   the stated (rounded) error and U, so that a reader of the certificate reaches the same
   decision from its numbers; with it, the probability that the true error lies outside the
   tolerance (`pipelines.conformity.probability_outside`): the specific false-accept risk of
   an accepted point, the false-reject risk of a rejected one.

The unrounded values stay on ``result`` (and in InfluxDB's calibration_point, README
"Rounding").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from pipelines.certificate.config import cmc_for
from pipelines.certificate.rounding import (
    dof_text,
    round_k,
    round_significant,
    round_to,
    round_uncertainty,
    text,
)
from pipelines.config import PipelineConfig
from pipelines.conformity import decide, probability_outside
from pipelines.run import PointResult

__all__ = ["FLAG_TEXT", "Reported", "report_points"]

log = logging.getLogger(__name__)

FLAG_TEXT = {
    "extrapolated": (
        "the reference's indication lay outside the rows of its calibration certificate; its "
        "correction was extrapolated linearly and its uncertainty held at the outermost row's"
    ),
    "expired_reference": (
        "a reference standard was past its certificate's due date during the calibration (allowed by "
        "run.allow_expired_references)"
    ),
    "cmc": (
        "the uncertainty budget gave less than the laboratory's CMC for this quantity and range; "
        "the stated U is the CMC (ILAC-P14)"
    ),
    "outside_cmc": (
        "the point lies outside every range of the laboratory's CMC table for this quantity: "
        "it is not covered by the laboratory's accreditation"
    ),
}
"""Flag -> what it means, for a person."""


@dataclass(frozen=True)
class Reported:
    """One point as stated (module docstring); the ``*_text`` values are what is written."""

    result: PointResult
    cmc: float | None
    """The CMC at this point [unit], or None without a range for it."""
    U: float
    """max(budget U, CMC), unrounded [unit]."""
    U_dec: Decimal
    correction_dec: Decimal
    error_dec: Decimal
    reference_mean_dec: Decimal
    dut_mean_dec: Decimal
    u_combined_dec: Decimal
    k_dec: Decimal
    flags: tuple[str, ...]
    decision: str = ""
    mpe: float | None = None
    probability_outside: float | None = None
    """With a decision: probability that the true error lies outside +-MPE."""

    @property
    def U_text(self) -> str:
        return text(self.U_dec)

    @property
    def correction_text(self) -> str:
        return text(self.correction_dec)

    @property
    def error_text(self) -> str:
        return text(self.error_dec)

    @property
    def reference_mean_text(self) -> str:
        return text(self.reference_mean_dec)

    @property
    def dut_mean_text(self) -> str:
        return text(self.dut_mean_dec)

    @property
    def u_combined_text(self) -> str:
        return text(self.u_combined_dec)

    @property
    def k_text(self) -> str:
        return text(self.k_dec)

    @property
    def dof_text(self) -> str:
        return dof_text(self.result.dof_eff)

    @property
    def setpoint_text(self) -> str:
        return format(self.result.setpoint, "g")

    @property
    def raised_to_cmc(self) -> bool:
        return "cmc" in self.flags


def _reported(cfg: PipelineConfig, r: PointResult) -> Reported:
    cmc = cmc_for(cfg.cmc, r.quantity, r.reference_mean)
    big_u = r.U if cmc is None else max(r.U, cmc)
    flags = list(r.flags)
    if cmc is not None and cmc > r.U:
        flags.append("cmc")
    if cmc is None and r.quantity in cfg.cmc:
        flags.append("outside_cmc")
    u_dec = round_uncertainty(big_u)
    error_dec = round_to(r.error, u_dec)
    rep = Reported(
        result=r, cmc=cmc, U=big_u, U_dec=u_dec,
        correction_dec=round_to(r.correction, u_dec), error_dec=error_dec,
        reference_mean_dec=round_to(r.reference_mean, u_dec), dut_mean_dec=round_to(r.dut_mean, u_dec),
        u_combined_dec=round_significant(r.u_combined), k_dec=round_k(r.k), flags=tuple(flags),
    )
    mpe = cfg.conformity.mpe_for(r.quantity) if cfg.conformity is not None else None
    if cfg.conformity is None or mpe is None:
        return rep
    error, stated_u, k = float(error_dec), float(u_dec), float(rep.k_dec)
    return Reported(**{**rep.__dict__, "decision": decide(error, stated_u, mpe, cfg.conformity.rule),
                       "mpe": mpe, "probability_outside": probability_outside(error, stated_u / k, mpe)})


def report_points(cfg: PipelineConfig, results: Sequence[PointResult]) -> list[Reported]:
    """Every point as stated, in the order given; warns once per quantity without a CMC table
    and once per point outside the CMC's ranges."""
    out = [_reported(cfg, r) for r in results]
    for quantity in sorted({r.quantity for r in results} - set(cfg.cmc)):
        log.warning("no [[cmc.%s]] table: the %s uncertainties are stated as their budgets give them, "
                    "with no floor at the laboratory's CMC (ILAC-P14)", quantity, quantity)
    for p in out:
        if "outside_cmc" in p.flags:
            r = p.result
            log.warning("%s point %d (%s %s) lies outside every cmc.%s range: not covered by the "
                        "accreditation", r.channel, r.point, p.reference_mean_text, r.unit, r.quantity)
    return out
