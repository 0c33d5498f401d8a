"""Numbers in text: what a source accepts as a number, and nothing more.

`float()` accepts far more than a number written by an instrument or a sensor: `1_000`,
full-width and other Unicode digits (`１２`), `nan`, `infinity`, surrounding Unicode spaces.
A payload like that is more likely garbage than a reading, so the text sources take JSON
numbers and plain ASCII decimals only: an optional sign, ASCII digits with an optional
decimal point, an optional exponent (`21.5`, `-0.25`, `+1.`, `.5`, `2.345E+01`).
"""

from __future__ import annotations

import re

__all__ = ["parse_decimal"]

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPACE = " \t\r\n"


def parse_decimal(text: str) -> float | None:
    """The value of a plain ASCII decimal (surrounding ASCII spaces allowed), else None."""
    text = text.strip(_SPACE)
    if _DECIMAL.fullmatch(text) is None:
        return None
    return float(text)
