"""The DUT against its reference: which channels a comparison takes, and the DUT's values
at the reference's times (linear interpolation, never across a gap)."""

from __future__ import annotations

import fnmatch

import numpy as np
import numpy.typing as npt

from gateway.errors import RemotecalError
from pipelines.config import ComparisonConfig
from pipelines.reference import interpolate_onto
from pipelines.source import ChannelData

__all__ = ["dut_channels", "interpolate_onto", "onto_plateau"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def dut_channels(comparison: ComparisonConfig, data: dict[str, ChannelData], index: int) -> list[str]:
    """The channels a comparison's ``dut`` names, sorted; an error when it names none.

    A plain name must exist in the run. A glob picks the run's channels of the comparison's
    quantity (never the reference itself).
    """
    pattern = comparison.dut
    if not any(ch in pattern for ch in "*?["):
        if pattern not in data:
            raise RemotecalError(
                f"comparisons[{index}].dut: channel {pattern!r} has no readings in this run"
            )
        if data[pattern].quantity != comparison.quantity:
            raise RemotecalError(
                f"comparisons[{index}].dut: channel {pattern!r} measures "
                f"{data[pattern].quantity}, not {comparison.quantity}"
            )
        return [pattern]
    names = sorted(
        name
        for name, ch in data.items()
        if fnmatch.fnmatchcase(name, pattern)
        and name not in comparison.reference_channels
        and ch.quantity == comparison.quantity
        and ch.role != "reference"
    )
    if not names:
        raise RemotecalError(
            f"comparisons[{index}].dut: {pattern!r} matches no {comparison.quantity} channel of "
            f"this run (channels: {', '.join(sorted(data)) or 'none'})"
        )
    return names


def onto_plateau(
    t_ref: FloatArray, t_dut: FloatArray, v_dut: FloatArray, max_gap_s: float, lo: int, hi: int,
    strictly_increasing: bool,
) -> tuple[FloatArray, BoolArray | None]:
    """`interpolate_onto` for the sorted reference times of one plateau, on the DUT's
    readings around it only; identical results.

    ``lo`` is ``searchsorted(t_dut, t_ref[0], "left")`` and ``hi`` is
    ``searchsorted(t_dut, t_ref[-1], "right")``.  The DUT's readings from lo - 1 to hi (the
    neighbours on either side included) are all that interpolation, its gap test and the
    end tests look at for reference times in [t_ref[0], t_ref[-1]].  Where the DUT read at
    exactly the reference's (strictly increasing) times, its values are taken as they are,
    which is what interpolation returns at a reading's own time; valid is then None: all.
    """
    m = t_ref.size
    if strictly_increasing and hi - lo == m and bool((t_dut[lo:hi] == t_ref).all()):
        return v_dut[lo:hi], None
    i0, i1 = max(lo - 1, 0), min(hi + 1, t_dut.size)
    return interpolate_onto(t_ref, t_dut[i0:i1], v_dut[i0:i1], max_gap_s)
