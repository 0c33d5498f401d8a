"""Why a run gave no calibration point: per reference, how near it came to a plateau.

What the engineer needs to see which criterion failed and by how much (the report's "No
calibration point" page and the CLI's one line), computed with the same stability code
(`gateway.stability`) that finds the plateaus.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from pipelines.config import PipelineConfig, StabilityConfig
from pipelines.plateaus import MIN_SAMPLES as MIN_WINDOW_SAMPLES
from pipelines.plateaus import RollingStats, find_plateaus, rolling_stats
from pipelines.reference import ReferenceSeries, reference_series
from pipelines.source import ChannelData

__all__ = ["MIN_SAMPLES", "StabilityDiagnosis", "diagnose_stability"]

FloatArray = npt.NDArray[np.float64]

MIN_SAMPLES = 2
"""Fewest kept samples for a point: a Type A evaluation needs two."""


@dataclass(frozen=True)
class StabilityDiagnosis:
    """How near one reference came to a plateau, for a run without calibration points:
    what the engineer needs to see which criterion failed and by how much."""

    reference: ReferenceSeries
    stability: StabilityConfig
    section: str
    """Where ``stability`` comes from: ``[stability]`` or ``comparisons[i].stability``."""
    plateaus: list[tuple[int, int]]
    """As `compute` finds them (``min_duration_s`` applied)."""
    stretches: list[tuple[int, int]]
    """Every stretch of stable windows, however short (``min_duration_s`` 0)."""
    stats: RollingStats
    """Standard deviation and slope of the window ending at each sample."""
    steadiest: int | None
    """The sample whose window came nearest both limits: the smallest
    max(std / max_std, |slope| / max_slope_per_min); None when no window is complete."""

    @property
    def label(self) -> str:
        """The reference channel, or the dew-point and temperature channels behind an RH."""
        ref = self.reference
        return f"{ref.name} + {ref.temperature_name} (RH)" if ref.temperature_name else ref.name

    @property
    def criteria(self) -> str:
        """The criteria as the config gives them, e.g. ``[stability] window_s = 600, ...``."""
        st = self.stability
        return (f"{self.section} window_s = {st.window_s:g}, max_std = {st.max_std:g}, "
                f"max_slope_per_min = {st.max_slope_per_min:g}, min_duration_s = {st.min_duration_s:g}")

    @property
    def longest_s(self) -> float:
        """Duration of the longest stretch of stable windows, t[end - 1] - t[start] [s]; 0 without one."""
        t = self.reference.t_s
        return max((float(t[b - 1] - t[a]) for a, b in self.stretches), default=0.0)

    def summary(self) -> str:
        """One clause: why this reference gave no calibration point."""
        st, ref = self.stability, self.reference
        unit = ref.unit
        if self.plateaus:
            return (f"{len(self.plateaus)} plateau(s), but no DUT channel has {MIN_SAMPLES} readings "
                    "in any of them")
        if self.stretches:
            return (f"stable for at most {self.longest_s:.0f} s at a time, under min_duration_s "
                    f"{st.min_duration_s:g} s")
        if self.steadiest is None:
            span = float(ref.t_s[-1] - ref.t_s[0]) if ref.t_s.size else 0.0
            return (f"no complete {st.window_s:g} s window ({ref.t_s.size} readings over {span:.0f} s; "
                    f"a window needs {st.window_s:g} s of data without a longer gap and "
                    f"{MIN_WINDOW_SAMPLES} readings)")
        j = self.steadiest
        end = datetime.fromtimestamp(float(ref.t_s[j]), UTC).isoformat().replace("+00:00", "Z")
        return (f"no {st.window_s:g} s window met both limits; the steadiest, ending {end}, had "
                f"std {self.stats.std[j]:.3g} {unit} and |slope| {abs(self.stats.slope_per_min[j]):.3g} "
                f"{unit}/min")


def _over_limit(x: FloatArray, limit: float) -> FloatArray:
    """x / limit, with 0 / 0 = 0 (a zero limit met exactly) and NaN kept."""
    if limit > 0:
        return x / limit
    return np.where(x > 0, np.inf, np.where(np.isnan(x), np.nan, 0.0))


def diagnose_stability(cfg: PipelineConfig, data: dict[str, ChannelData]) -> list[StabilityDiagnosis]:
    """Per reference and stability criteria, as `compute` finds plateaus: the plateaus, the
    stable stretches however short, the windows' statistics and the steadiest window.

    Raises RemotecalError as `compute` does for a missing or wrong reference channel.
    """
    out: list[StabilityDiagnosis] = []
    seen: set[tuple[object, ...]] = set()
    for i, comparison in enumerate(cfg.comparisons):
        st = comparison.stability or cfg.stability
        key = (comparison.reference_channels, comparison.pressure_pa, st)
        if key in seen:
            continue
        seen.add(key)
        ref = reference_series(cfg, comparison, data, i)
        criteria = {"window_s": st.window_s, "max_std": st.max_std, "max_slope_per_min": st.max_slope_per_min}
        stretches = find_plateaus(ref.t_s, ref.values, **criteria)
        t = ref.t_s
        plateaus = [(a, b) for a, b in stretches if t[b - 1] - t[a] >= st.min_duration_s]
        stats = rolling_stats(ref.t_s, ref.values, st.window_s)
        with np.errstate(divide="ignore", invalid="ignore"):
            nearness = np.fmax(_over_limit(stats.std, st.max_std),
                               _over_limit(np.abs(stats.slope_per_min), st.max_slope_per_min))
        complete = ~np.isnan(nearness)
        steadiest = int(np.nanargmin(nearness)) if complete.any() else None
        section = "[stability]" if comparison.stability is None else f"comparisons[{i}].stability"
        out.append(StabilityDiagnosis(ref, st, section, plateaus, stretches, stats, steadiest))
    return out
