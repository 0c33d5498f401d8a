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

Risk (ILAC-G8:09/2019 section 4, JCGM 106:2012 section 9): `probability_outside` is the
probability that the true error lies outside +-MPE given the measured error and its standard
uncertainty u = U/k (normal distribution): for an accepted point its specific false-accept
risk, for a rejected one its false-reject risk.  The rule's worst case is stated with it
(`RULE_TEXT`): up to 50 % for simple acceptance at |error| = MPE; with the guard band w = U a
pass has at most 1 - Phi(k), 2.3 % at k = 2.

In the DCC the limits are PTB's good-practice quantities (`LIMIT_REF_TYPES`): the tolerance
limits +-MPE (``basic_toleranceLimitLower/Upper``) and the acceptance limits +-(MPE - w)
(``basic_acceptanceLimitLower/Upper``), w = 0 (simple) or U (guard band).
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["DECISIONS", "LIMIT_REF_TYPES", "RULE_TEXT", "Decision", "acceptance_limit", "decide",
           "probability_outside"]

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
        "|error| <= MPE and fails otherwise. The probability of a false accept can reach 50 % "
        "for an error close to the MPE; each point states its own."
    ),
    "guard_band": (
        "Guard band w = U (ILAC-G8:09/2019, 4.2.3, non-binary statement): pass when "
        "|error| <= MPE - U; conditional pass when MPE - U < |error| <= MPE; conditional fail "
        "when MPE < |error| <= MPE + U; fail when |error| > MPE + U. U is the expanded "
        "uncertainty (95.45 %) of the error. The probability of a false accept of a pass is at "
        "most 2.3 % (k = 2, normal distribution); each point states its own."
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


LIMIT_REF_TYPES = {
    "tolerance": ("basic_toleranceLimitLower", "basic_toleranceLimitUpper"),
    "acceptance": ("basic_acceptanceLimitLower", "basic_acceptanceLimitUpper"),
}
"""PTB's good-practice refTypes of the limits (DCC good-practice examples, humidity v1.0)."""


def acceptance_limit(big_u: float, mpe: float, rule: Literal["simple", "guard_band"]) -> float:
    """The acceptance limit AL = MPE - w: w = 0 (simple) or U (guard band) [unit]."""
    return mpe if rule == "simple" else mpe - big_u


def probability_outside(error: float, u: float, mpe: float) -> float:
    """Probability that the true error lies outside [-MPE, +MPE] when ``error`` was measured
    with standard uncertainty ``u`` (normal distribution; JCGM 106:2012 9.3)."""
    if u <= 0:
        return 0.0 if abs(error) <= mpe else 1.0

    def phi(z: float) -> float:
        return 0.5 * math.erfc(-z / math.sqrt(2.0))

    return phi((-mpe - error) / u) + phi((error - mpe) / u)
