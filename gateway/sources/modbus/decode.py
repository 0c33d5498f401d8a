"""Register maps compiled once, at start, into read plans and decoder functions.

A device's register map becomes a list of `ReadBlock`s: contiguous requests of one kind
(at most 125 registers, or 2000 bits), joined across gaps of up to `max_gap` unused
addresses, each holding the `Field`s it feeds.  A `Field` carries a decoder built for its
type and byte order, so a poll only slices words and calls functions: no branching on
config per value.

Byte orders name the bytes of a value, most significant first (A), as they appear on the
wire, register by register:

    ABCD  big-endian words, big-endian bytes        reg0 = AB, reg1 = CD
    CDAB  word swap (little-endian word order)      reg0 = CD, reg1 = AB
    BADC  byte swap inside each word                reg0 = BA, reg1 = DC
    DCBA  full reverse (little-endian)              reg0 = DC, reg1 = BA

The same rule extends to float64 (four words) and to 16-bit types, where only the byte
swap applies (BADC and DCBA read a word as BA).

A float32 is read as the shortest decimal that gives the same float32 back (`29.69`, not the
double `29.690000534057617` that is its exact value): the number the device meant, and no
information lost - `struct.unpack(">f", struct.pack(">f", value))` (or `numpy.float32(value)`)
is the register's value again, bit for bit (before `scale` and `offset`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "BIT_KINDS",
    "MAX_BITS",
    "MAX_REGISTERS",
    "Field",
    "ReadBlock",
    "compile_decoder",
    "decode_block",
    "encode_value",
    "make_field",
    "plan_reads",
    "shortest_float32",
]

RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64"]
"""A register value's type: as the Modbus source reads it, a controller writes it, the chamber serves it."""
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
"""Word and byte order of a multi-register value: ABCD big-endian, CDAB word-swapped,
BADC byte-swapped, DCBA both."""

MAX_REGISTERS = 125
"""Most registers one read (function 3 or 4) may ask for (Modbus Application Protocol 1.1b3, 6.3)."""
MAX_BITS = 2000
"""Most coils or discrete inputs one read (function 1 or 2) may ask for (ibid., 6.1)."""
BIT_KINDS = frozenset({"coil", "discrete"})

_VALUE_FORMAT = {
    "int16": ("h", 1), "uint16": ("H", 1),
    "int32": ("i", 2), "uint32": ("I", 2),
    "float32": ("f", 2), "float64": ("d", 4),
}

Decoder = Callable[[Sequence[int]], float]


def _word_order(byte_order: str) -> tuple[bool, bool]:
    """(word swap, byte swap) of a byte order name."""
    if byte_order not in ("ABCD", "CDAB", "BADC", "DCBA"):
        raise ValueError(f"unknown byte order {byte_order!r}")
    return byte_order in ("CDAB", "DCBA"), byte_order in ("BADC", "DCBA")


def shortest_float32(x: float) -> float:
    """The float with the fewest significant digits whose float32 is `x`'s float32 (numpy's
    shortest round-trip repr of a float32, ~2 us; x itself for NaN, inf and -0.0)."""
    return float(str(np.float32(x)))


def compile_decoder(type_: str, byte_order: str = "ABCD", scale: float = 1.0,
                    offset: float = 0.0) -> Decoder:
    """A function of the value's registers (16-bit unsigned ints, in address order) -> value.

    value = raw * scale + offset, as a float; NaN and inf pass through for the caller to judge.
    """
    code, width = _VALUE_FORMAT[type_]
    word_swap, byte_swap = _word_order(byte_order)
    words = struct.Struct(("<" if byte_swap else ">") + "H" * width)
    value = struct.Struct(">" + code)
    pack, unpack = words.pack, value.unpack

    if word_swap and width > 1:
        def raw(regs: Sequence[int]) -> float:
            return unpack(pack(*reversed(regs)))[0]
    else:
        def raw(regs: Sequence[int]) -> float:
            return unpack(pack(*regs))[0]

    if type_ == "float32":
        f32 = raw

        def raw(regs: Sequence[int]) -> float:
            return shortest_float32(f32(regs))

    if scale == 1.0 and offset == 0.0:
        return lambda regs: float(raw(regs))
    return lambda regs: raw(regs) * scale + offset


def encode_value(value: float, type_: str, byte_order: str = "ABCD") -> list[int]:
    """The registers a device holds for `value` (the inverse of `compile_decoder` without scale).

    Integer types take `value` rounded; used by the virtual devices of `firmware_bridge`.
    """
    code, width = _VALUE_FORMAT[type_]
    word_swap, byte_swap = _word_order(byte_order)
    raw = struct.pack(">" + code, value if code in "fd" else round(value))
    regs = list(struct.unpack(("<" if byte_swap else ">") + "H" * width, raw))
    return regs[::-1] if word_swap else regs


@dataclass(frozen=True, slots=True)
class Field:
    """One configured register: where it lives and how to turn its words into a value.

    `index` is the register's position in the device's config (for its channel and tags).
    """

    index: int
    kind: str
    address: int
    width: int
    decode: Decoder
    is_float: bool = False

    @property
    def end(self) -> int:
        return self.address + self.width


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: `count` registers (or bits) of `kind` from `address`."""

    kind: str
    address: int
    count: int
    fields: tuple[Field, ...]

    def split(self) -> list[ReadBlock]:
        """One block per field: what is left to try when the device refuses the whole block."""
        return [ReadBlock(self.kind, f.address, f.width, (f,)) for f in self.fields]


def make_field(index: int, kind: str, address: int, type_: str, byte_order: str = "ABCD",
               scale: float = 1.0, offset: float = 0.0) -> Field:
    """Compile one register's config; coils and discrete inputs are one bit, read as 0 or 1."""
    if kind in BIT_KINDS:
        if scale == 1.0 and offset == 0.0:
            return Field(index, kind, address, 1, lambda bits: float(bits[0]))
        return Field(index, kind, address, 1, lambda bits: float(bits[0]) * scale + offset)
    width = _VALUE_FORMAT[type_][1]
    return Field(index, kind, address, width, compile_decoder(type_, byte_order, scale, offset),
                 is_float=type_.startswith("float"))


def plan_reads(fields: Iterable[Field], max_gap: int = 0) -> list[ReadBlock]:
    """Group fields of one kind into as few requests as the size limits and `max_gap` allow.

    Two fields share a request when the unused addresses between them number at most
    `max_gap`; overlapping fields (two views of the same registers) always share one.
    """
    by_kind: dict[str, list[Field]] = {}
    for f in fields:
        by_kind.setdefault(f.kind, []).append(f)
    blocks: list[ReadBlock] = []
    for kind in sorted(by_kind):
        limit = MAX_BITS if kind in BIT_KINDS else MAX_REGISTERS
        current: list[Field] = []
        start = end = 0
        for f in sorted(by_kind[kind], key=lambda f: (f.address, f.width)):
            if current and f.address - end <= max_gap and max(end, f.end) - start <= limit:
                current.append(f)
                end = max(end, f.end)
                continue
            if current:
                blocks.append(ReadBlock(kind, start, end - start, tuple(current)))
            current, start, end = [f], f.address, f.end
        if current:
            blocks.append(ReadBlock(kind, start, end - start, tuple(current)))
    return blocks


def decode_block(block: ReadBlock, words: Sequence[int]) -> list[tuple[Field, float]]:
    """Each field of `block` with its value, from the registers (or bits) the read returned."""
    base = block.address
    return [(f, f.decode(words[f.address - base:f.end - base])) for f in block.fields]
