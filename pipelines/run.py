"""Corrections of a run: plateaus, DUT vs corrected reference, GUM budget (SPEC sections 5, 7).

For each `[[comparisons]]` entry and each DUT channel it names (a name, or a glob over the
run's channels of the comparison's quantity; `pipelines.compare`):

1. Plateaus are found on the reference channel's own readings with
   `pipelines.plateaus.find_plateaus` and ``[stability]``; plateau i (1-based, in time order)
   is calibration point i of every DUT compared with that reference.
2. DUT settling (``dut_settling``, default on): the point's span starts only once the DUT
   itself is stable by the same criteria, on its own readings inside the plateau (its
   last stable stretch there; a DUT slower than the reference otherwise biases the mean,
   +0.33 %rh for a 300 s time constant with the demo's criteria).  A DUT never stable in a
   plateau, or stable for less than ``min_duration_s`` of it, gets no point there (logged).
3. The DUT is interpolated linearly onto the reference's sample times inside the span
   (`pipelines.compare`); a reference sample is dropped where the DUT has no reading on
   either side of it, or where its two neighbours are more than ``window_s`` apart.
4. The reference is corrected with its certificate (`pipelines.reference`: correction and
   U/k between rows, the dof its k implies, an interpolation term, its drift; expired
   certificates refused unless ``[run] allow_expired_references``).
5. correction C = mean(reference corrected) - mean(DUT), over the n kept samples, with the
   budget of `pipelines.budget` (Type A of autocorrelated readings with n_eff at most the
   DUT's own readings, chamber temporal instability, DUT short-term stability, the
   reference's rows, resolution, inhomogeneity, further half-widths).
6. setpoint = the corrected reference mean rounded to the nearest 0.5 of the unit.
7. Direction and hysteresis (DKD-R 5-8): a point is "up" when its setpoint is above the
   comparison's previous point's, "down" below (the same setpoint keeps the previous
   direction; the first is "up").  Where one DUT channel has an up and a down point at one
   setpoint, h = the largest |C_up - C_down| there, and h / 2 is a rectangular
   "hysteresis" row of each of those points' budgets.
8. With ``[conformity]``, each point gets a decision (`pipelines.conformity`) on its error
   DUT - reference = -C with its U.

Relative humidity against a chilled mirror (``reference_dew_point`` and
``reference_temperature`` instead of ``reference``): the reference RH lives on the
dew-point channel's time base (the air temperature interpolated onto it, never across a
gap), RH = `pipelines.humidity.dew_point_to_rh`(T_d, T, pressure_pa, p_mirror_pa =
mirror_pressure_pa); plateaus are found on this RH from the raw indications, with the
comparison's (or the global) ``[stability]`` in %rh: the RH the DUTs see is stable only
when both the dew point and the air temperature are.  Inside a point both channels are
corrected with their own certificates, sample by sample, the reference RH computed from
the corrected values; the point carries the gas temperature, the dew point and the
pressure; the budget propagates the degC rows (`pipelines.budget`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from gateway.errors import RemotecalError
from gateway.stability import Criteria, run_rows
from pipelines.budget import ReferenceEvaluation, evaluate_reference, fixed_rows, point_budget, with_row
from pipelines.compare import dut_channels, interpolate_onto, onto_plateau
from pipelines.config import ComparisonConfig, PipelineConfig
from pipelines.conformity import decide
from pipelines.diagnosis import MIN_SAMPLES, StabilityDiagnosis, diagnose_stability
from pipelines.plateaus import find_plateaus
from pipelines.point import PointResult, round_setpoint
from pipelines.reference import (
    CertificateCorrection,
    Reference,
    ReferenceSeries,
    StretchCorrections,
    apply_certificate,
    reference_series,
    references_of,
)
from pipelines.source import ChannelData
from pipelines.uncertainty import rectangular, sample_mean

__all__ = [
    "MIN_SAMPLES",
    "CertificateCorrection",
    "PointResult",
    "ReferenceSeries",
    "StabilityDiagnosis",
    "apply_certificate",
    "compute",
    "diagnose_stability",
    "dut_channels",
    "interpolate_onto",
    "round_setpoint",
    "window_disagreements",
    "windows_to_plateaus",
]

log = logging.getLogger(__name__)

_onto_plateau = onto_plateau  # the name the tests knew


def _iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).isoformat().replace("+00:00", "Z")


class _PointCache:
    """What every DUT compared with one reference shares at a span of samples: whether the
    reference's times are strictly increasing there, the reference evaluated on it, and
    (for DUT settling) the stability of every DUT of the comparison in a plateau, found
    together for DUTs read at the same times."""

    def __init__(self, cfg: PipelineConfig, comparison: ComparisonConfig, reference: ReferenceSeries,
                 references: dict[str, Reference], duts: Mapping[str, ChannelData]):
        self.cfg, self.comparison, self.reference, self.references = cfg, comparison, reference, references
        self.duts = duts
        self.unc = comparison.uncertainty or cfg.uncertainty
        self._strict: dict[tuple[int, int], bool] = {}
        self._evaluated: dict[tuple[int, int], ReferenceEvaluation] = {}
        self._setpoints: dict[tuple[int, int], float] = {}
        self._stretches: dict[tuple[int, int], dict[str, list[tuple[int, int]]]] = {}
        self._at_reference_times: dict[tuple[int, int], set[str]] = {}
        self._corrections: dict[tuple[int, int], StretchCorrections] = {}

    def dut_stretches(self, a: int, b: int, channel: str) -> list[tuple[int, int]]:
        """The stable stretches (`find_plateaus` without a minimum duration, and not made
        disjoint: `gateway.stability.StabilityTracker`) of a DUT's own
        readings inside the reference's plateau a..b-1 (its readings lo..hi-1, indices
        relative to lo).  Found for every DUT of the comparison at the first request: DUTs
        whose readings there fall at the same times go through `gateway.stability.run_rows`
        together (identical results, the work on the times done once)."""
        key = (a, b)
        if key not in self._stretches:
            st = self.comparison.stability or self.cfg.stability
            criteria = Criteria(st.window_s, st.max_std, st.max_slope_per_min)
            t_first, t_last = self.reference.t_s[a], self.reference.t_s[b - 1]
            groups: list[tuple[np.ndarray, list[tuple[str, np.ndarray]]]] = []
            for name, dut in self.duts.items():
                lo = int(np.searchsorted(dut.t_s, t_first, side="left"))
                hi = int(np.searchsorted(dut.t_s, t_last, side="right"))
                t, v = dut.t_s[lo:hi], dut.values[lo:hi]
                for times, members in groups:
                    if times.size == t.size and np.array_equal(times, t):
                        members.append((name, v))
                        break
                else:
                    groups.append((t, [(name, v)]))
            found: dict[str, list[tuple[int, int]]] = {}
            t_ref = self.reference.t_s[a:b]
            self._at_reference_times[key] = {
                name for times, members in groups if times.size == t_ref.size and np.array_equal(times, t_ref)
                for name, _ in members}
            for times, members in groups:
                # the DUT's stretches as they are (not disjoint): its last one starts at its
                # first stable window, even if an earlier stretch held some of those samples
                updates = run_rows(criteria, times, [v for _, v in members], disjoint=False)
                for (name, _), update in zip(members, updates, strict=True):
                    found[name] = [(p.start, p.end) for p in update.plateaus]
            self._stretches[key] = found
        return self._stretches[key][channel]

    def at_reference_times(self, a: int, b: int, channel: str) -> bool:
        """Whether the DUT's readings in the plateau a..b-1 are at the reference's times
        there, one for one (known once `dut_stretches` grouped the DUTs by their times)."""
        return channel in self._at_reference_times.get((a, b), ())

    def plateau_setpoint(self, a: int, b: int) -> float:
        """The setpoint of the reference's raw readings a..b-1 (for the directions)."""
        key = (a, b)
        if key not in self._setpoints:
            self._setpoints[key] = round_setpoint(float(self.reference.values[a:b].mean()))
        return self._setpoints[key]

    def strictly_increasing(self, a: int, b: int) -> bool:
        key = (a, b)
        if key not in self._strict:
            t = self.reference.t_s[a:b]
            self._strict[key] = bool(np.all(t[1:] > t[:-1]))
        return self._strict[key]

    def evaluate(self, sel: np.ndarray | slice,
                 certificate: tuple[CertificateCorrection, np.ndarray] | None = None) -> ReferenceEvaluation:
        t = self.reference.t_s[sel]
        return evaluate_reference(self.comparison, self.references, self.reference, self.unc, sel,
                                  float(t[0]) if t.size else 0.0, certificate)

    def evaluated(self, a: int, b: int, first: int | None = None) -> ReferenceEvaluation:
        """The reference evaluated on its samples a..b-1; ``first``: the first sample of the
        plateau a..b-1 ends (a DUT's settled span), whose corrections a single reference
        applies once for every DUT's span (`StretchCorrections`: the same numbers)."""
        key = (a, b)
        if key not in self._evaluated:
            certificate = None
            if first is not None and self.reference.dew_point is None:
                stretch = self._corrections.get((first, b))
                if stretch is None:
                    stretch = StretchCorrections(self.reference.name, self.references[self.reference.name],
                                                 self.reference.values[first:b])
                    self._corrections[first, b] = stretch
                certificate = stretch.span(a - first)
            self._evaluated[key] = self.evaluate(slice(a, b), certificate)
        return self._evaluated[key]


def _settled_start(
    comparison: ComparisonConfig, cfg: PipelineConfig, t_ref: np.ndarray, dut: ChannelData, lo: int, hi: int,
    stretches: list[tuple[int, int]],
) -> float | None:
    """Time from which the DUT is stable inside the plateau t_ref[0]..t_ref[-1] (its own
    readings lo..hi-1, by the comparison's criteria: the start of its last stable stretch
    there, ``stretches`` being its stable stretches relative to lo), or None when it never
    is, or for less than min_duration_s - unless it is stable through the whole plateau: a
    window recorded live is as long as the procedure's record_s, which may well be shorter
    than the pipeline's min_duration_s, and a DUT stable through all of it has settled."""
    st = comparison.stability or cfg.stability
    t = dut.t_s[lo:hi]
    if not stretches:
        return None
    a, b = stretches[-1]
    start, end = max(float(t[a]), float(t_ref[0])), min(float(t[b - 1]), float(t_ref[-1]))
    throughout = float(t[a]) <= float(t_ref[0]) and b == t.size
    if end - start < st.min_duration_s and not throughout:
        return None
    return start


def _find(findings: list[str], text: str) -> None:
    """One finding of the evaluation: logged, and kept for report.html."""
    log.warning("%s", text)
    findings.append(text)


def _compare(
    cfg: PipelineConfig,
    comparison: ComparisonConfig,
    reference: ReferenceSeries,
    plateaus: list[tuple[int, int]],
    channel: str,
    dut: ChannelData,
    shared: _PointCache,
    findings: list[str],
    live: bool = False,
) -> list[PointResult]:
    """The points of one DUT channel against one reference, one per plateau.  ``live``: the
    plateaus are windows a remote run recorded live (`compute`)."""
    window_s = (comparison.stability or cfg.stability).window_s
    fixed = fixed_rows(shared.unc)
    ref_name = reference.name
    equipment: tuple[tuple[str, str], ...] = ()
    if reference.dew_point is not None:
        equipment = ((ref_name, "degC"), (reference.temperature_name, "degC"))
    if not plateaus:
        return []
    # Where each plateau's reference times fall among the DUT's: two searches in all.
    first = reference.t_s[np.array([a for a, _ in plateaus], dtype=np.intp)]
    last = reference.t_s[np.array([b - 1 for _, b in plateaus], dtype=np.intp)]
    los = np.searchsorted(dut.t_s, first, side="left").tolist()
    his = np.searchsorted(dut.t_s, last, side="right").tolist()
    out = []
    for number, ((a, b), lo, hi) in enumerate(zip(plateaus, los, his, strict=True), start=1):
        plateau_start = float(reference.t_s[a])
        a_plateau = a
        if comparison.dut_settling and hi > lo:
            # A window recorded live starts once the run engine has seen the reference stable
            # over the window_s before it: the DUT is judged over that span too (before: a
            # window shorter than window_s + min_duration_s never gave the DUT a point).
            a_from, lo_from = a, lo
            if live:
                a_from = int(np.searchsorted(reference.t_s, plateau_start - window_s, side="left"))
                lo_from = int(np.searchsorted(dut.t_s, reference.t_s[a_from], side="left"))
            settled = _settled_start(comparison, cfg, reference.t_s[a:b], dut, lo_from, hi,
                                     shared.dut_stretches(a_from, b, channel))
            if settled is None:
                _find(findings, f"{channel}: not stable by the criteria in plateau {number} of {ref_name} "
                      f"({_iso(reference.t_s[a])} to {_iso(reference.t_s[b - 1])}); no point")
                continue
            if settled > plateau_start:
                a = int(np.searchsorted(reference.t_s, settled, side="left"))
                lo = int(np.searchsorted(dut.t_s, reference.t_s[a], side="left"))
        t_ref = reference.t_s[a:b]
        # within a span of strictly increasing times, every later start is too
        strict_plateau = shared.strictly_increasing(a_plateau, b)
        v_dut: np.ndarray
        valid: np.ndarray | None
        if strict_plateau and shared.at_reference_times(a_plateau, b, channel):
            # read at the reference's strictly increasing times over the plateau: so over any
            # later start (lo moved as far as a), and onto_plateau takes the readings as they are
            v_dut, valid = dut.values[lo:hi], None
        else:
            strict = strict_plateau or shared.strictly_increasing(a, b)
            v_dut, valid = onto_plateau(t_ref, dut.t_s, dut.values, window_s, lo, hi, strict)
        n = b - a if valid is None else int(valid.sum())
        if n < MIN_SAMPLES:
            _find(findings, f"{channel}: no DUT readings in plateau {number} of {ref_name} "
                  f"({_iso(t_ref[0])} to {_iso(t_ref[-1])}); no point")
            continue
        t_kept = t_ref
        if valid is not None and n < valid.size:
            log.info("%s, point %d: %d of %d reference samples have no DUT value (gap)",
                     channel, number, valid.size - n, valid.size)
            v_dut = v_dut[valid]
            t_kept = t_ref[valid]
            ev = shared.evaluate(a + np.flatnonzero(valid))
        else:
            ev = shared.evaluated(a, b, a_plateau)
        if ev.expired:
            names = ", ".join(f"{i.id} (due {i.due_date.isoformat()})" for i in ev.references) or ref_name
            if not cfg.run.allow_expired_references:
                raise RemotecalError(
                    f"reference {names} is past its certificate's due date at point {number} "
                    f"({_iso(t_ref[0])}); recalibrate it, or set [run] allow_expired_references = true "
                    "to compute anyway (the points are flagged expired_reference)")
            log.warning("%s, point %d: reference %s past its due date (allowed; flagged)",
                        channel, number, names)
        diff = ev.corrected - v_dut
        n_dut = max(hi - lo, 0)
        pb = point_budget(t_kept, ev.corrected, diff, n_dut, ev, fixed)
        if ev.extrapolated:
            log.warning("%s, point %d: certificate of %s extrapolated", channel, number,
                        " or ".join(name for name, _ in equipment) or ref_name)
        dut_mean = sample_mean(v_dut)
        result = PointResult(
            run=cfg.run.id,
            channel=channel,
            quantity=comparison.quantity,
            unit=dut.unit,
            reference=ref_name,
            point=number,
            setpoint=round_setpoint(ev.mean),
            t_start_s=float(t_ref[0]),
            t_end_s=float(t_ref[-1]),
            n=n,
            reference_mean=ev.mean,
            dut_mean=dut_mean,
            correction=ev.mean - dut_mean,
            reference_correction=ev.reference_correction,
            extrapolated=ev.extrapolated,
            budget=pb.budget,
            reference_equipment=equipment,
            n_dut=n_dut,
            n_eff=pb.n_eff,
            plateau_start_s=plateau_start,
            references=ev.references,
            expired_reference=ev.expired,
            gas_temperature=ev.gas_temperature,
            dew_point=ev.dew_point,
            pressure_pa=comparison.pressure_pa if reference.dew_point is not None else None,
            pressure_ratio=(comparison.pressure_pa / comparison.mirror_pressure_pa
                            if comparison.pressure_pa and comparison.mirror_pressure_pa else None),
        )
        out.append(result)
    return _with_hysteresis(_with_directions(out, plateaus, shared))


def _with_directions(points: list[PointResult], plateaus: list[tuple[int, int]],
                     shared: _PointCache) -> list[PointResult]:
    """Each point's direction from the plateaus' setpoints in time order (module docstring)."""
    direction: dict[int, str] = {}
    previous = None
    current = "up"
    for number, (a, b) in enumerate(plateaus, start=1):
        setpoint = shared.plateau_setpoint(a, b)
        if previous is not None and setpoint != previous:
            current = "up" if setpoint > previous else "down"
        direction[number] = current
        previous = setpoint
    return [replace(p, direction=direction[p.point]) for p in points]


def _with_hysteresis(points: list[PointResult]) -> list[PointResult]:
    """Half the largest |C_up - C_down| at a setpoint as a rectangular row of those points."""
    by_setpoint: dict[float, list[PointResult]] = defaultdict(list)
    for p in points:
        by_setpoint[p.setpoint].append(p)
    h_of: dict[int, float] = {}
    for group in by_setpoint.values():
        up = [p.correction for p in group if p.direction == "up"]
        down = [p.correction for p in group if p.direction == "down"]
        if up and down:
            h = max(abs(x - y) for x in up for y in down)
            h_of.update({p.point: h for p in group})
    out = []
    for p in points:
        if p.point not in h_of:
            out.append(p)
            continue
        h_p = h_of[p.point]
        budget = with_row(p.budget, rectangular("hysteresis", h_p / 2.0))
        out.append(replace(p, budget=budget, hysteresis=h_p))
    return out


def _with_decision(cfg: PipelineConfig, r: PointResult) -> PointResult:
    if cfg.conformity is None:
        return r
    mpe = cfg.conformity.mpe_for(r.quantity)
    if mpe is None:
        return r
    return replace(r, decision=decide(r.error, r.U, mpe, cfg.conformity.rule), mpe=mpe)


def windows_to_plateaus(t_s: np.ndarray, windows: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """The samples of each window (t_start_s, t_end_s), both ends included, as (start, end)
    index pairs (end exclusive) of the sorted times ``t_s``; empty windows are dropped."""
    out = []
    for t0, t1 in sorted(windows):
        a = int(np.searchsorted(t_s, t0, side="left"))
        b = int(np.searchsorted(t_s, t1, side="right"))
        if b > a:
            out.append((a, b))
    return out


def window_disagreements(t_s: np.ndarray, own: list[tuple[int, int]], live: list[tuple[int, int]],
                         tolerance_s: float) -> list[str]:
    """Where the pipeline's own plateaus and the windows recorded live differ: a live window
    with no own plateau overlapping it, an own plateau no live window overlaps, and a live
    window overlapping several own plateaus or reaching beyond the one it overlaps by more
    than ``tolerance_s`` at its start or its end; one sentence each.  A live window inside an
    own plateau agrees: the run engine records once stability is proven (a window after the
    plateau's first one) and for ``record_s``, while the chamber stays stable beyond it - and
    a quantity held through several steps is one plateau holding each step's window."""
    def span(p: tuple[int, int]) -> tuple[float, float]:
        return float(t_s[p[0]]), float(t_s[p[1] - 1])

    out = []
    for w in live:
        w0, w1 = span(w)
        overlapping = [p for p in own if span(p)[0] <= w1 and span(p)[1] >= w0]
        if not overlapping:
            out.append(f"the live window {_iso(w0)} to {_iso(w1)} meets the criteria nowhere in the "
                       "pipeline's own detection")
            continue
        p0, p1 = span(overlapping[0])[0], span(overlapping[-1])[1]
        if len(overlapping) > 1 or w0 < p0 - tolerance_s or w1 > p1 + tolerance_s:
            out.append(f"the live window {_iso(w0)} to {_iso(w1)} differs from the pipeline's plateau "
                       f"{_iso(p0)} to {_iso(p1)}")
    for p in own:
        p0, p1 = span(p)
        if not any(span(w)[0] <= p1 and span(w)[1] >= p0 for w in live):
            out.append(f"the pipeline's plateau {_iso(p0)} to {_iso(p1)} was not recorded live")
    return out


def compute(
    cfg: PipelineConfig, data: dict[str, ChannelData], *,
    live_windows: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    findings: list[str] | None = None,
) -> list[PointResult]:
    """Every calibration point of the run: per comparison, per DUT channel, per plateau.

    ``findings``: each thing the evaluation found that costs a point or contradicts the run
    as recorded (a plateau with no DUT readings or an unstable DUT in it, a reference with no
    plateau, a disagreement with the windows recorded live) is appended, one sentence each,
    and logged as a warning: report.html lists them, so none is only in a log.

    ``live_windows``: by reference channel (the dew-point channel for a dew-point
    comparison), the stable windows a remote run recorded live at the edge, as (t_start_s,
    t_end_s) (SPEC section 8): they are the calibration points of that reference instead of
    the pipeline's own plateaus, which are still found, and every disagreement between the
    two (beyond one stability window) is logged as a warning.

    Raises RemotecalError (one line) when a reference has no readings, a comparison names
    no channel, a channel has the wrong unit, a reference leaves its certificate or is past
    its due date (unless allowed).
    """
    if findings is None:
        findings = []
    results: list[PointResult] = []
    plateaus_of: dict[tuple[object, ...], list[tuple[int, int]]] = {}
    live_keys: set[tuple[object, ...]] = set()
    compared_in: dict[str, int] = {}
    references = references_of(cfg)
    for i, comparison in enumerate(cfg.comparisons):
        reference = reference_series(cfg, comparison, data, i)
        ref_name = reference.name
        st = comparison.stability or cfg.stability
        key = (comparison.reference_channels, comparison.pressure_pa, comparison.mirror_pressure_pa, st)
        if key not in plateaus_of:
            plateaus_of[key] = find_plateaus(
                reference.t_s,
                reference.values,
                window_s=st.window_s,
                max_std=st.max_std,
                max_slope_per_min=st.max_slope_per_min,
                min_duration_s=st.min_duration_s,
            )
            if live_windows is not None and ref_name in live_windows:
                live = windows_to_plateaus(reference.t_s, live_windows[ref_name])
                for text in window_disagreements(reference.t_s, plateaus_of[key], live, st.window_s):
                    _find(findings, f"{ref_name}: {text}")
                log.info("%s: %d window(s) recorded live are the calibration points", ref_name, len(live))
                plateaus_of[key] = live
                live_keys.add(key)
            elif plateaus_of[key]:
                log.info("%s: %d plateau(s)", ref_name, len(plateaus_of[key]))
            else:
                _find(findings, f"{ref_name}: no plateau meets the stability criteria in run {cfg.run.id}; "
                      "no calibration point")
        plateaus = plateaus_of[key]
        channels = dut_channels(comparison, data, i)
        shared = _PointCache(cfg, comparison, reference, references, {c: data[c] for c in channels})
        for channel in channels:
            if channel in compared_in:
                # Its points would share run/channel/quantity/point with the other comparison's.
                raise RemotecalError(
                    f"comparisons[{i}].dut: channel {channel!r} is already compared in "
                    f"comparisons[{compared_in[channel]}]; compare each DUT channel with one reference"
                )
            compared_in[channel] = i
            dut = data[channel]
            if dut.unit != reference.unit:
                raise RemotecalError(
                    f"comparisons[{i}]: {channel!r} is in {dut.unit} but {ref_name!r} in "
                    f"{reference.unit}; compare channels of one unit"
                )
            points = _compare(cfg, comparison, reference, plateaus, channel, dut, shared, findings,
                              live=key in live_keys)
            results.extend(_with_decision(cfg, r) for r in points)
    results.sort(key=lambda r: (r.channel, r.reference, r.point))
    return results
