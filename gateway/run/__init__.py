"""A remote run at the edge (SPEC section 8, issue 15): `RunEngine` executes a procedure's
steps - setpoints through the controllers, stability evaluated live on the reference
channels (gateway.stability), each stable window recorded - with its state in the journal
(gateway.journal.runs).  See `gateway.run.engine` for the states and README "Remote runs" for
the `run_event` and `run_window` points."""

from gateway.run.engine import ACTIVE, STATES, TERMINAL, Controller, NotAllowed, RunEngine
from gateway.run.plan import StepPlan, plan_of

__all__ = ["ACTIVE", "STATES", "TERMINAL", "Controller", "NotAllowed", "RunEngine", "StepPlan", "plan_of"]
