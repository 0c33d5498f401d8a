"""A procedure's steps as the run engine keeps them: plain data, stored in the journal as JSON
so that a restarted gateway resumes the step without the procedure file.

`plan_of(procedure)` reads the contract's `gateway.procedure.Procedure` (duck-typed: its
`steps`, each with index, name, setpoints, settle_min_s, stability, record_s, max_s,
on_not_stable, final and optionally `references`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gateway.stability import Criteria

__all__ = ["QUANTITY_OF_SETPOINT", "StepPlan", "plan_from_json", "plan_of", "plan_to_json"]

QUANTITY_OF_SETPOINT = {"temperature": "temperature", "humidity": "relative_humidity"}
"""The reading quantity a setpoint key is evaluated on (reference channels of that quantity)."""


@dataclass(frozen=True)
class StepPlan:
    index: int
    name: str
    setpoints: dict[str, float]
    settle_min_s: float
    criteria: dict[str, Criteria]
    """By quantity ("temperature", "relative_humidity") or "*" for every reference."""
    record_s: float
    max_s: float
    on_not_stable: str
    final: bool = False
    references: tuple[str, ...] = ()
    """Channels named by the procedure; empty: every reference channel of a set quantity."""

    def criteria_for(self, quantity: str) -> Criteria | None:
        return self.criteria.get(quantity) or self.criteria.get("*")

    @property
    def quantities(self) -> frozenset[str]:
        return frozenset(QUANTITY_OF_SETPOINT.get(k, k) for k in self.setpoints)


def _criteria(obj: Any) -> Criteria:
    if isinstance(obj, Criteria):
        return obj
    keys = ("window_s", "max_std", "max_slope_per_min", "min_duration_s")
    d: Mapping[str, Any] = (obj if isinstance(obj, Mapping)
                            else {k: getattr(obj, k) for k in keys if hasattr(obj, k)})
    return Criteria(float(d["window_s"]), float(d["max_std"]), float(d["max_slope_per_min"]),
                    float(d.get("min_duration_s", 0.0) or 0.0))


def _criteria_map(stability: Any) -> dict[str, Criteria]:
    """One criteria for every reference, or (a mapping by setpoint key or quantity) one each."""
    if isinstance(stability, Mapping) and stability and all(
            isinstance(v, Mapping) or hasattr(v, "window_s") for v in stability.values()):
        return {QUANTITY_OF_SETPOINT.get(str(k), str(k)): _criteria(v) for k, v in stability.items()}
    return {"*": _criteria(stability)}


def plan_of(procedure: Any) -> list[StepPlan]:
    """The engine's steps of a `Procedure` (ValueError naming the step when one is unusable)."""
    out = []
    for i, step in enumerate(procedure.steps):
        try:
            plan = StepPlan(
                index=i, name=str(getattr(step, "name", "") or f"step {i}"),
                setpoints={str(k): float(v) for k, v in step.setpoints.items()},
                settle_min_s=float(step.settle_min_s), criteria=_criteria_map(step.stability),
                record_s=float(step.record_s), max_s=float(step.max_s),
                on_not_stable=str(step.on_not_stable), final=bool(getattr(step, "final", False)),
                references=tuple(getattr(step, "references", None) or ()),
            )
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise ValueError(f"step {i}: {exc}") from None
        if not (plan.max_s > 0 and math.isfinite(plan.max_s)) or plan.record_s < 0 or plan.settle_min_s < 0:
            raise ValueError(f"step {i}: max_s must be > 0, record_s and settle_min_s >= 0")
        if plan.on_not_stable not in ("continue", "stop"):
            raise ValueError(f"step {i}: on_not_stable must be 'continue' or 'stop'")
        out.append(plan)
    if not out:
        raise ValueError("the procedure has no step")
    return out


def plan_to_json(plan: list[StepPlan]) -> list[dict[str, Any]]:
    return [asdict(s) for s in plan]


def plan_from_json(data: list[dict[str, Any]]) -> list[StepPlan]:
    out = []
    for d in data:
        d = dict(d)
        d["criteria"] = {k: Criteria(**v) for k, v in d["criteria"].items()}
        d["references"] = tuple(d.get("references", ()))
        out.append(StepPlan(**d))
    return out
