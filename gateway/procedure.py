"""A remote run's procedure (SPEC section 8; README "Procedures"): a TOML file, validated like
the site config and expanded once into the steps the run engine executes.

    [procedure]     name, optional description, references (the channels whose stability
                    decides a step, by quantity), repeat (the whole list of [[steps]], n times)
    [defaults]      any step key a step leaves out: settle_min_s, record_s, max_s,
                    on_not_stable, stability
    [[steps]]       temperature [degC] and/or humidity [%rh]: a number, or for one of them a
                    list of values; sequence = "as_listed" | "up_down" | "down_up"; repeat;
                    name; and any key of [defaults]
    [final]         optional: the safe setpoint the chamber returns to at the end (a step of
                    its own, `final = true`, nothing recorded there)

`stability` has the keys and meaning of the pipeline's `[stability]` (window_s, max_std,
max_slope_per_min, min_duration_s; `gateway.stability.Criteria`) and may hold a sub-table per
quantity (`[defaults.stability.humidity]`) whose keys override the others for that
quantity's reference (the limits are in its unit: degC, %rh).  A step's keys override
[defaults] key by key.

Expansion (what `Procedure.steps` holds, in order):

- a `[[steps]]` entry with a list of values is one step per value; `up_down` lists the
  values rising and goes back down without the top twice (10, 30, 50 -> 10, 30, 50, 30, 10:
  DKD-R 5-8's sequence, so hysteresis shows), `down_up` the mirror image;
- the entry's `repeat = n` runs its whole expansion n times, `[procedure] repeat = n` the
  whole list of entries;
- a step's setpoints are the chamber's whole state: a quantity a step leaves out keeps the
  previous step's value (a humidity sweep at 23 degC writes 23 degC at every step);
- `direction` follows the pipeline's rule (DKD-R 5-8, `pipelines.run`): per quantity, "up"
  when its setpoint is above the previous step's, "down" below, the same keeps the previous
  direction, the first is "up"; the step's `direction` is that of the quantities it changes
  (None when they disagree, and on the final step);
- `[final]` is the last step, `final = true`, with settle_min_s = record_s = 0 unless given.

Every problem is one line naming its key (`steps[2].humidity[3]: ...`), all at once, like the
site config; `ConfigError` carries them (exit 2 at the CLI).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.configfile import format_validation_error
from gateway.errors import ConfigError
from gateway.stability import Criteria

__all__ = ["MAX_STEPS", "QUANTITIES", "Procedure", "Step", "load_procedure", "parse_procedure",
           "site_problems"]

QUANTITIES: dict[str, tuple[str, float, float]] = {
    "temperature": ("degC", -273.15, 1000.0),
    "humidity": ("%rh", 0.0, 100.0),
}
"""Setpoint keys: unit and the range a value must lie in."""

MAX_STEPS = 10_000
"""Most steps a procedure may expand to (a file from afar cannot make the gateway build millions)."""

_CRITERIA = ("window_s", "max_std", "max_slope_per_min", "min_duration_s")
_STEP_KEYS = ("settle_min_s", "record_s", "max_s", "on_not_stable")

OnNotStable = Literal["continue", "stop"]


@dataclass(frozen=True)
class Step:
    """One expanded step of a procedure (module docstring)."""

    index: int
    """0-based position in `Procedure.steps`."""
    name: str
    setpoints: dict[str, float]
    """"temperature" [degC] and/or "humidity" [%rh]: the chamber's whole state at this step."""
    settle_min_s: float
    """The step is not stable before this long after its setpoints were written [s]."""
    stability: Criteria
    """The criteria of the step's references (those of a quantity without its own)."""
    record_s: float
    """Recording time once stable [s]."""
    max_s: float
    """Longest time in the step before it ends `not_stable` [s]."""
    on_not_stable: OnNotStable
    """After a `not_stable` step: go on with the next step, or stop the procedure."""
    direction: Literal["up", "down"] | None
    final: bool = False
    """The return to a safe setpoint at the end (nothing recorded)."""
    by_quantity: dict[str, Criteria] = field(default_factory=dict)
    """Criteria of the quantities that have their own (`stability.<quantity>`)."""
    directions: dict[str, Literal["up", "down"]] = field(default_factory=dict)
    """The pipeline's direction of each quantity at this step."""
    entry: int = 0
    """Which `[[steps]]` entry it came from (-1: [final])."""

    def criteria(self, quantity: str | None = None) -> Criteria:
        """The criteria for a reference of `quantity` (None: the step's own)."""
        return self.by_quantity.get(quantity, self.stability) if quantity else self.stability

    def describe(self) -> str:
        """One line: what `remotecal procedure check` prints per step."""
        sp = ", ".join(f"{q} {_num(v)} {QUANTITIES[q][0]}" for q, v in self.setpoints.items())
        c = self.stability
        parts = [f"{self.index:3d}  {self.name} -> {sp}"]
        parts.append(f"[{self.direction}]" if self.direction else ("[final]" if self.final else ""))
        parts.append(f"settle >= {_num(self.settle_min_s)} s, record {_num(self.record_s)} s, "
                     f"max {_num(self.max_s)} s, then {self.on_not_stable}; stable: {_num(c.window_s)} s "
                     f"window, std <= {_num(c.max_std)}, |slope| <= {_num(c.max_slope_per_min)}/min")
        for q, qc in self.by_quantity.items():
            parts.append(f"({q}: {_num(qc.window_s)} s, std <= {_num(qc.max_std)}, "
                         f"|slope| <= {_num(qc.max_slope_per_min)}/min)")
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Procedure:
    """A validated, expanded procedure."""

    name: str
    steps: list[Step]
    sha256: str
    """Hex SHA-256 of the file's bytes (a command may carry only this)."""
    text: str
    """The file as read (UTF-8), what a command carries."""
    description: str = ""
    references: dict[str, list[str]] = field(default_factory=dict)
    """Quantity -> the channels whose stability decides a step ({} when the file names none)."""
    source: str = ""

    @property
    def final(self) -> Step | None:
        """The return to a safe setpoint, when the file has one."""
        return self.steps[-1] if self.steps and self.steps[-1].final else None

    @property
    def total_max_s(self) -> float:
        """The longest the procedure can take: the sum of the steps' max_s [s]."""
        return sum(s.max_s for s in self.steps)


def _num(x: float) -> str:
    return f"{x:g}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class _Criteria(_Strict):
    window_s: float | None = Field(default=None, gt=0)
    max_std: float | None = Field(default=None, ge=0)
    max_slope_per_min: float | None = Field(default=None, ge=0)
    min_duration_s: float | None = Field(default=None, ge=0)

    _f = field_validator(*_CRITERIA)(_finite)


class _Stability(_Criteria):
    temperature: _Criteria | None = None
    humidity: _Criteria | None = None


class _Common(_Strict):
    settle_min_s: float | None = Field(default=None, ge=0)
    record_s: float | None = Field(default=None, ge=0)
    max_s: float | None = Field(default=None, gt=0)
    on_not_stable: OnNotStable | None = None
    stability: _Stability | None = None

    _f = field_validator("settle_min_s", "record_s", "max_s")(_finite)


class _StepEntry(_Common):
    name: str | None = Field(default=None, min_length=1)
    temperature: float | list[float] | None = None
    humidity: float | list[float] | None = None
    sequence: Literal["as_listed", "up_down", "down_up"] = "as_listed"
    repeat: int = Field(default=1, ge=1, le=1000)


class _Final(_Common):
    name: str | None = Field(default=None, min_length=1)
    temperature: float | None = None
    humidity: float | None = None


class _Head(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    references: dict[str, str | list[str]] = {}
    repeat: int = Field(default=1, ge=1, le=1000)


class _File(_Strict):
    procedure: _Head
    defaults: _Common = _Common()
    steps: list[_StepEntry] = Field(min_length=1)
    final: _Final | None = None


def load_procedure(path: str | Path) -> Procedure:
    """Read, validate and expand a procedure file; ConfigError with every problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the procedure: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: the procedure is not UTF-8 text") from None
    return parse_procedure(text, str(p))


def parse_procedure(text: str, source: str = "<procedure>") -> Procedure:
    """Validate and expand a procedure's text; `source` names it in messages and the result.
    The SHA-256 is of the text's UTF-8 bytes (a file's bytes, as `load_procedure` read them)."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        model = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    problems: list[str] = []
    steps = _expand(model, problems)
    if problems:
        raise ConfigError(problems)
    refs = {q: [c] if isinstance(c, str) else list(c) for q, c in model.procedure.references.items()}
    return Procedure(name=model.procedure.name, description=model.procedure.description, steps=steps,
                     sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), text=text,
                     references=refs, source=source)


def _check_head(head: _Head, problems: list[str]) -> None:
    for q, channels in head.references.items():
        key = f"procedure.references.{q}"
        if q not in QUANTITIES:
            problems.append(f"{key}: unknown quantity (one of {', '.join(QUANTITIES)})")
        names = [channels] if isinstance(channels, str) else channels
        if not names:
            problems.append(f"{key}: names no channel")
        for i, c in enumerate(names):
            if not c.strip() or "\n" in c:
                problems.append(f"{key}" + (f"[{i}]" if not isinstance(channels, str) else "")
                                + ": must be a channel name")


def _merged(defaults: _Common, own: _Common, key: str, problems: list[str]
            ) -> tuple[dict[str, Any], Criteria | None, dict[str, Criteria]]:
    """A step's settle/record/max/on_not_stable and its criteria: own keys over [defaults]."""
    out: dict[str, Any] = {}
    for k in _STEP_KEYS:
        v = getattr(own, k)
        out[k] = v if v is not None else getattr(defaults, k)
    ds, os_ = defaults.stability or _Stability(), own.stability or _Stability()
    base = {k: _pick(getattr(os_, k), getattr(ds, k)) for k in _CRITERIA}
    crit = _criteria(base, f"{key}.stability", problems, "[defaults.stability]")
    by_q: dict[str, Criteria] = {}
    for q in QUANTITIES:
        dq, oq = getattr(ds, q), getattr(os_, q)
        if dq is None and oq is None:
            continue
        vals = dict(base)
        for sub in (dq, oq):
            if sub is not None:
                vals.update({k: getattr(sub, k) for k in _CRITERIA if getattr(sub, k) is not None})
        c = _criteria(vals, f"{key}.stability.{q}", problems, f"[defaults.stability.{q}]")
        if c is not None:
            by_q[q] = c
    return out, crit, by_q


def _pick(a: float | None, b: float | None) -> float | None:
    return a if a is not None else b


def _criteria(vals: dict[str, float | None], key: str, problems: list[str], where: str) -> Criteria | None:
    missing = [k for k in ("window_s", "max_std", "max_slope_per_min") if vals.get(k) is None]
    if missing:
        problems.extend(f"{key}.{k}: required (here or in {where})" for k in missing)
        return None
    return Criteria(window_s=float(vals["window_s"] or 0), max_std=float(vals["max_std"] or 0),
                    max_slope_per_min=float(vals["max_slope_per_min"] or 0),
                    min_duration_s=float(vals.get("min_duration_s") or 0.0))


def _check_value(q: str, v: float, key: str, problems: list[str]) -> bool:
    unit, lo, hi = QUANTITIES[q]
    if not math.isfinite(v) or not lo <= v <= hi:
        problems.append(f"{key}: {v!r} is outside {_num(lo)}..{_num(hi)} {unit}")
        return False
    return True


def _timing(vals: dict[str, Any], key: str, problems: list[str], final: bool,
            windows: list[float] | None = None) -> bool:
    """The step's times are given, and max_s leaves room to finish stable: the first stable
    window ends window_s after the step began at the earliest (a window holds the step's own
    readings), and not before settle_min_s; then record_s."""
    ok = True
    if vals["max_s"] is None:
        problems.append(f"{key}.max_s: required (here or in [defaults])")
        ok = False
    if not final:
        for k in ("settle_min_s", "record_s"):
            if vals[k] is None:
                problems.append(f"{key}.{k}: required (here or in [defaults])")
                ok = False
    if ok and vals["max_s"] is not None:
        settle = vals["settle_min_s"] or 0.0
        window = max(windows or [0.0])
        need = max(settle, window) + (vals["record_s"] or 0.0)
        if vals["max_s"] < need:
            first = "settle_min_s" if settle >= window else "stability window_s"
            problems.append(f"{key}.max_s: {_num(vals['max_s'])} s is shorter than {first} + record_s "
                            f"({_num(need)} s): the step could never finish stable")
            ok = False
    return ok


def _values(entry: _StepEntry, key: str, problems: list[str]) -> list[dict[str, float]] | None:
    """The entry's setpoints, one dict per step of one pass (before repeat)."""
    lists = [q for q in QUANTITIES if isinstance(getattr(entry, q), list)]
    given = [q for q in QUANTITIES if getattr(entry, q) is not None]
    if not given:
        problems.append(f"{key}: sets no setpoint (give {' and/or '.join(QUANTITIES)})")
        return None
    if len(lists) > 1:
        problems.append(f"{key}: lists values for {' and '.join(lists)}; one quantity is swept per "
                        "entry (use one entry per sweep)")
        return None
    ok = True
    fixed: dict[str, float] = {}
    for q in given:
        v = getattr(entry, q)
        if isinstance(v, list):
            if not v:
                problems.append(f"{key}.{q}: an empty list")
                ok = False
            for i, x in enumerate(v):
                ok = _check_value(q, x, f"{key}.{q}[{i}]", problems) and ok
        else:
            ok = _check_value(q, v, f"{key}.{q}", problems) and ok
            fixed[q] = float(v)
    if not ok:
        return None
    if not lists:
        if entry.sequence != "as_listed":
            problems.append(f"{key}.sequence: {entry.sequence!r} needs a list of values to sweep")
            return None
        return [fixed]
    q = lists[0]
    vals = [float(x) for x in getattr(entry, q)]
    if entry.sequence != "as_listed":
        rising = all(b > a for a, b in itertools.pairwise(vals))
        falling = all(b < a for a, b in itertools.pairwise(vals))
        want = rising if entry.sequence == "up_down" else falling
        if not want or len(vals) < 2:
            way = "rising (the way up)" if entry.sequence == "up_down" else "falling (the way down)"
            problems.append(f"{key}.{q}: a {entry.sequence} sequence lists at least two values, "
                            f"strictly {way}; the way back is made from them")
            return None
        vals = vals + vals[-2::-1]
    return [{**fixed, q: v} for v in vals]


def _expand(model: _File, problems: list[str]) -> list[Step]:
    _check_head(model.procedure, problems)
    plan: list[tuple[int, str, dict[str, float], dict[str, Any], Criteria, dict[str, Criteria]]] = []
    for e, entry in enumerate(model.steps):
        key = f"steps[{e}]"
        vals, crit, by_q = _merged(model.defaults, entry, key, problems)
        windows = [c.window_s for c in (crit, *by_q.values()) if c is not None]
        timing_ok = _timing(vals, key, problems, final=False, windows=windows)
        passes = _values(entry, key, problems)
        if passes is None or crit is None or not timing_ok:
            continue
        if (len(plan) + len(passes) * entry.repeat) * model.procedure.repeat > MAX_STEPS:
            problems.append(f"{key}: the procedure would expand to more than {MAX_STEPS} steps")
            return []
        for r in range(entry.repeat):
            for sp in passes:
                plan.append((e, _name(entry, sp, r), sp, vals, crit, by_q))
    if problems:
        return []
    one_pass = list(plan)
    for r in range(1, model.procedure.repeat):
        plan.extend((e, f"{name} (cycle {r + 1})", sp, vals, crit, by_q)
                    for e, name, sp, vals, crit, by_q in one_pass)
    steps: list[Step] = []
    state: dict[str, float] = {}
    dirs: dict[str, Literal["up", "down"]] = {}
    for e, name, sp, vals, crit, by_q in plan:
        previous = dict(state)
        state.update(sp)
        changed: set[str] = set()
        for q, v in state.items():
            if q not in previous:
                dirs[q] = "up"
            elif v != previous[q]:
                dirs[q] = "up" if v > previous[q] else "down"
                changed.add(q)
        moved = {dirs[q] for q in changed}
        if not steps:
            direction: Literal["up", "down"] | None = "up"
        elif len(moved) == 1:
            direction = moved.pop()
        elif not moved:
            direction = steps[-1].direction
        else:
            direction = None
        steps.append(Step(index=len(steps), name=name, setpoints=dict(state),
                          settle_min_s=float(vals["settle_min_s"]), stability=crit,
                          record_s=float(vals["record_s"]), max_s=float(vals["max_s"]),
                          on_not_stable=vals["on_not_stable"] or "continue", direction=direction,
                          by_quantity=dict(by_q), directions=dict(dirs), entry=e))
    if model.final is not None:
        f = model.final
        vals, crit, by_q = _merged(model.defaults, f, "final", problems)
        sp = {}
        for q in QUANTITIES:
            v = getattr(f, q)
            if v is not None and _check_value(q, v, f"final.{q}", problems):
                sp[q] = float(v)
        if f.temperature is None and f.humidity is None:
            problems.append("final: sets no setpoint (give temperature and/or humidity)")
        vals["settle_min_s"] = f.settle_min_s or 0.0
        vals["record_s"] = f.record_s or 0.0
        if _timing(vals, "final", problems, final=True) and crit is not None and sp:
            steps.append(Step(index=len(steps), name=f.name or "final: " + _sp_text(sp),
                              setpoints={**state, **sp}, settle_min_s=vals["settle_min_s"],
                              stability=crit, record_s=vals["record_s"], max_s=float(vals["max_s"]),
                              on_not_stable=vals["on_not_stable"] or "continue", direction=None,
                              final=True, by_quantity=dict(by_q), directions={}, entry=-1))
    return steps


def _sp_text(sp: dict[str, float]) -> str:
    return ", ".join(f"{_num(v)} {QUANTITIES[q][0]}" for q, v in sp.items())


def _name(entry: _StepEntry, sp: dict[str, float], r: int) -> str:
    """The entry's name with the swept value ("RH sweep 30 %rh"), or its setpoints."""
    swept = {q: v for q, v in sp.items() if isinstance(getattr(entry, q), list)}
    base = (f"{entry.name} {_sp_text(swept)}" if swept else entry.name) if entry.name else _sp_text(sp)
    return f"{base} (repeat {r + 1})" if entry.repeat > 1 else base


def site_problems(procedure: Procedure, config: Any) -> list[str]:
    """What keeps `procedure` from running on a site (a validated `gateway.config.GatewayConfig`),
    one line per problem naming the procedure's key: a reference channel no source reads, a
    setpoint no controller writes, a setpoint outside its controller's min/max."""
    import re

    from gateway import registry

    problems: list[str] = []
    named: set[str] = set()
    templates: list[re.Pattern[str]] = []
    for kind in registry.SOURCES.values():
        for block in config.sources.blocks(kind.name):
            named.update(channel for channel, _ in kind.channels(block))
            for channel in _channel_values(block.model_dump()):
                if "{" in channel:  # one channel per topic level: {1}-t matches lab-1-t
                    parts = re.split(r"\{\d+\}", channel)
                    templates.append(re.compile("^" + "[^/]+".join(map(re.escape, parts)) + "$"))
    for q, channels in procedure.references.items():
        for c in channels:
            if c not in named and not any(t.match(c) for t in templates):
                problems.append(f"procedure.references.{q}: no source of the site reads channel {c!r}")
    writers: dict[str, tuple[str, Any]] = {}
    for name in registry.CONTROLLERS:
        for j, block in enumerate(config.controllers.blocks(name)):
            for sp in getattr(block, "setpoints", []):
                writers[sp.quantity] = (f"controllers.{name}[{j}] ({block.name})", sp)
    if not writers:
        problems.append("the site has no [[controllers.*]]: nothing would write the setpoints")
        return problems
    told: set[tuple[str, float | None]] = set()  # each problem once, at the first step it shows in
    for step in procedure.steps:
        key = "final" if step.final else f"steps[{step.entry}]"
        for q, v in step.setpoints.items():
            if q not in writers:
                if (q, None) not in told:
                    problems.append(f"{key}.{q}: no controller of the site writes the {q} setpoint")
                told.add((q, None))
                continue
            if (q, v) in told:
                continue
            told.add((q, v))
            where, sp = writers[q]
            lo, hi = getattr(sp, "min", None), getattr(sp, "max", None)
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                problems.append(f"{key}.{q}: {_num(v)} (step {step.index}) is outside the range of {where}: "
                                f"{'' if lo is None else _num(lo)}..{'' if hi is None else _num(hi)}")
    return problems


def _channel_values(data: Any) -> list[str]:
    """Every string under a `channel` key of a source block's data."""
    if isinstance(data, dict):
        return [v for k, v in data.items() if k == "channel" and isinstance(v, str)] + \
            [c for v in data.values() for c in _channel_values(v)]
    if isinstance(data, list):
        return [c for v in data for c in _channel_values(v)]
    return []
