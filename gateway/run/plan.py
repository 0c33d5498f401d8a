"""A procedure's steps as the run engine keeps them: plain data, stored in the journal as JSON
so that a restarted gateway resumes the step without the procedure file.

`plan_of(procedure)` reads the contract's `gateway.procedure.Procedure`: its `steps` (index,
name, setpoints, settle_min_s, stability and by_quantity, record_s, max_s, on_not_stable,
final) and its `references` (setpoint key -> the channels whose stability decides a step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.stability import Criteria

__all__ = ["QUANTITY_OF_SETPOINT", "SETPOINT_OF_QUANTITY", "StepPlan", "plan_from_json", "plan_of",
           "plan_to_json"]

QUANTITY_OF_SETPOINT = {"temperature": "temperature", "humidity": "relative_humidity"}
"""The reading quantity a setpoint key is evaluated on (reference channels of that quantity)."""
SETPOINT_OF_QUANTITY = {v: k for k, v in QUANTITY_OF_SETPOINT.items()}


@dataclass(frozen=True)
class StepPlan:
    index: int
    name: str
    setpoints: dict[str, float]
    """Setpoint key ("temperature", "humidity") -> value."""
    settle_min_s: float
    criteria: dict[str, Criteria]
    """By setpoint key, and "*" for every other reference."""
    record_s: float
    max_s: float
    on_not_stable: str
    final: bool = False
    """The return to a safe setpoint: evaluated like any step, nothing recorded."""
    references: dict[str, str] = field(default_factory=dict)
    """Channel -> setpoint key, of the channels the procedure names for this step's setpoints;
    empty: every `reference` channel of a set quantity."""

    def criteria_for(self, key: str) -> Criteria:
        return self.criteria.get(key) or self.criteria["*"]

    def key_of(self, channel: str, quantity: str, role: str) -> str | None:
        """The setpoint key a reading is evaluated for in this step, or None."""
        if self.references:
            return self.references.get(channel)
        if role != "reference":
            return None
        key = SETPOINT_OF_QUANTITY.get(quantity)
        return key if key in self.setpoints else None


def _criteria(obj: Any) -> Criteria:
    if isinstance(obj, Criteria):
        return obj
    keys = ("window_s", "max_std", "max_slope_per_min", "min_duration_s")
    d: Mapping[str, Any] = (obj if isinstance(obj, Mapping)
                            else {k: getattr(obj, k) for k in keys if hasattr(obj, k)})
    return Criteria(float(d["window_s"]), float(d["max_std"]), float(d["max_slope_per_min"]),
                    float(d.get("min_duration_s", 0.0) or 0.0))


def _references(procedure: Any, setpoints: Mapping[str, float]) -> dict[str, str]:
    named = getattr(procedure, "references", None) or {}
    out: dict[str, str] = {}
    for key, channels in named.items():
        if key in setpoints:
            for ch in [channels] if isinstance(channels, str) else channels:
                out[str(ch)] = str(key)
    return out


def plan_of(procedure: Any) -> list[StepPlan]:
    """The engine's steps of a `gateway.procedure.Procedure` (ValueError naming the step when
    one is unusable)."""
    out = []
    for i, step in enumerate(procedure.steps):
        try:
            setpoints = {str(k): float(v) for k, v in step.setpoints.items()}
            criteria = {"*": _criteria(step.stability)}
            own = getattr(step, "by_quantity", None) or {}
            criteria.update({str(k): _criteria(v) for k, v in own.items()})
            plan = StepPlan(
                index=i, name=str(getattr(step, "name", "") or f"step {i}"), setpoints=setpoints,
                settle_min_s=float(step.settle_min_s), criteria=criteria,
                record_s=float(step.record_s), max_s=float(step.max_s),
                on_not_stable=str(step.on_not_stable), final=bool(getattr(step, "final", False)),
                references=_references(procedure, setpoints),
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
        d["references"] = dict(d.get("references", {}))
        out.append(StepPlan(**d))
    return out
