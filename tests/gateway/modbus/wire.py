"""Registers encoded independently of the code under test, with `struct` and the byte order's letters."""

from __future__ import annotations

import struct

FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
VALUES = {
    "int16": -12345, "uint16": 54321, "int32": -123456789, "uint32": 3456789012,
    "float32": 21.375, "float64": -1234.5678901234,
}


def to_registers(value: float, type_: str, order: str) -> list[int]:
    """The words on the wire: the value's bytes (A = most significant) laid out as `order` names them."""
    big = struct.pack(">" + FORMATS[type_], value)
    if len(big) == 2:  # a single word: only the byte swap of BADC / DCBA applies
        wire = big[::-1] if order in ("BADC", "DCBA") else big
    else:
        letters = "ABCDEFGH"[: len(big)]
        pattern = {
            "ABCD": letters,
            "DCBA": letters[::-1],
            "BADC": "".join(letters[i + 1] + letters[i] for i in range(0, len(letters), 2)),
            "CDAB": "".join(letters[i:i + 2] for i in reversed(range(0, len(letters), 2))),
        }[order]
        wire = bytes(big[letters.index(c)] for c in pattern)
    return [int.from_bytes(wire[i:i + 2], "big") for i in range(0, len(wire), 2)]
