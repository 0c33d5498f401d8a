"""Statements of conformity to a maximum permissible error, per ILAC-G8:09/2019.

The measured quantity is the DUT's error at a calibration point, e = DUT - reference
= -correction, with the expanded uncertainty U of the correction (95.45 %); the tolerance
limits are +-MPE (``[conformity] mpe``, in the quantity's unit).

``rule = "simple"``: simple acceptance, a binary statement (ILAC-G8 4.2.1; guard band w = 0)

    |e| <= MPE                  pass
    |e| >  MPE                  fail

``rule = "guard_band"``: a non-binary statement with guard band w = U (ILAC-G8 4.2.3,
figure 5): the acceptance limit is AL = MPE - U and the rejection limit MPE + U,

    |e| <= MPE - U              pass
    MPE - U < |e| <= MPE        conditionalPass   (inside the tolerance, but within U of it)
    MPE < |e| <= MPE + U        conditionalFail   (outside the tolerance, but within U of it)
    |e| >  MPE + U              fail

(with U >= MPE no point can pass).  The decision words are the DCC's
(``dcc:stringConformityStatementStatusType``): pass, fail, conditionalPass, conditionalFail.
A value exactly on a limit belongs to the better side, as ILAC-G8's "<=" has it.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DECISIONS", "RULE_TEXT", "Decision", "decide"]

Decision = Literal["pass", "fail", "conditionalPass", "conditionalFail"]

DECISIONS: dict[str, str] = {
    "pass": "pass",
    "fail": "fail",
    "conditionalPass": "conditional pass",
    "conditionalFail": "conditional fail",
}
"""Decision word -> how a person reads it."""

RULE_TEXT = {
    "simple": (
        "Simple acceptance (ILAC-G8:09/2019, 4.2.1, guard band w = 0): a point passes when "
        "|error| <= MPE and fails otherwise; the probability of a false accept can reach 50 % "
        "for an error close to the MPE."
    ),
    "guard_band": (
        "Guard band w = U (ILAC-G8:09/2019, 4.2.3, non-binary statement): pass when "
        "|error| <= MPE - U; conditional pass when MPE - U < |error| <= MPE; conditional fail "
        "when MPE < |error| <= MPE + U; fail when |error| > MPE + U. U is the expanded "
        "uncertainty (95.45 %) of the correction."
    ),
}


def decide(error: float, big_u: float, mpe: float, rule: Literal["simple", "guard_band"]) -> Decision:
    """The decision for one point: ``error`` = DUT - reference, ``big_u`` its expanded
    uncertainty, ``mpe`` the maximum permissible error (all in one unit)."""
    e = abs(error)
    if rule == "simple":
        return "pass" if e <= mpe else "fail"
    if rule != "guard_band":
        raise ValueError(f"unknown decision rule {rule!r}")
    if e <= mpe - big_u:
        return "pass"
    if e <= mpe:
        return "conditionalPass"
    if e <= mpe + big_u:
        return "conditionalFail"
    return "fail"
