"""Decoders and read plans, against registers encoded independently with `struct`."""

from __future__ import annotations

import contextlib
import math
import random
import struct

import pytest

from gateway.sources.modbus.decode import (
    MAX_BITS,
    MAX_REGISTERS,
    compile_decoder,
    decode_block,
    encode_value,
    make_field,
    plan_reads,
)
from tests.gateway.modbus.wire import ORDERS, VALUES, to_registers


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("type_", list(VALUES))
def test_every_type_and_byte_order_decodes_exactly(type_: str, order: str) -> None:
    value = VALUES[type_]
    assert compile_decoder(type_, order)(to_registers(value, type_, order)) == value


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("type_", list(VALUES))
def test_encode_is_the_inverse_of_decode(type_: str, order: str) -> None:
    assert encode_value(VALUES[type_], type_, order) == to_registers(VALUES[type_], type_, order)


def test_the_byte_orders_are_the_documented_layouts() -> None:
    # 0x11223344 as uint32: A=11 B=22 C=33 D=44
    assert to_registers(0x11223344, "uint32", "ABCD") == [0x1122, 0x3344]
    assert to_registers(0x11223344, "uint32", "CDAB") == [0x3344, 0x1122]
    assert to_registers(0x11223344, "uint32", "BADC") == [0x2211, 0x4433]
    assert to_registers(0x11223344, "uint32", "DCBA") == [0x4433, 0x2211]
    for order, regs in [("ABCD", [0x1122, 0x3344]), ("CDAB", [0x3344, 0x1122]),
                        ("BADC", [0x2211, 0x4433]), ("DCBA", [0x4433, 0x2211])]:
        assert compile_decoder("uint32", order)(regs) == 0x11223344


def test_scale_and_offset() -> None:
    assert compile_decoder("int16", scale=0.01)([2345]) == pytest.approx(23.45, abs=1e-12)
    assert compile_decoder("uint16", scale=0.1, offset=-40.0)([655]) == pytest.approx(25.5, abs=1e-12)
    assert compile_decoder("int16", scale=0.01)([(-500) & 0xFFFF]) == pytest.approx(-5.0)


def test_nan_passes_through_for_the_source_to_reject() -> None:
    assert math.isnan(compile_decoder("float32")([0x7FC0, 0x0000]))
    assert math.isinf(compile_decoder("float32")([0x7F80, 0x0000]))


def _f(index: int, address: int, type_: str = "uint16", kind: str = "holding"):
    return make_field(index, kind, address, type_)


def test_plan_joins_contiguous_registers_of_one_kind() -> None:
    fields = [_f(0, 0, "float32"), _f(1, 2, "float32"), _f(2, 4), _f(3, 0, kind="input")]
    blocks = plan_reads(fields)
    assert [(b.kind, b.address, b.count, len(b.fields)) for b in blocks] == [
        ("holding", 0, 5, 3), ("input", 0, 1, 1)]


def test_plan_joins_across_a_gap_of_at_most_max_gap() -> None:
    fields = [_f(0, 0), _f(1, 4), _f(2, 10)]
    assert [(b.address, b.count) for b in plan_reads(fields, max_gap=0)] == [(0, 1), (4, 1), (10, 1)]
    assert [(b.address, b.count) for b in plan_reads(fields, max_gap=3)] == [(0, 5), (10, 1)]
    assert [(b.address, b.count) for b in plan_reads(fields, max_gap=5)] == [(0, 11)]


def test_plan_respects_the_request_size_limits() -> None:
    regs = [_f(i, 2 * i, "float32") for i in range(100)]  # 200 contiguous registers
    blocks = plan_reads(regs)
    assert [b.count for b in blocks] == [124, 76]  # a float32 is never cut in two
    assert all(b.count <= MAX_REGISTERS for b in blocks)
    bits = [_f(i, i, kind="coil") for i in range(2500)]
    assert [b.count for b in plan_reads(bits)] == [MAX_BITS, 500]


def test_overlapping_views_share_a_read_and_decode_from_it() -> None:
    fields = [_f(0, 0, "float32"), _f(1, 1, "int16")]
    [block] = plan_reads(fields)
    words = to_registers(21.375, "float32", "ABCD")
    values = [v for _, v in decode_block(block, words)]
    assert values == [21.375, float(words[1] - 65536 if words[1] > 32767 else words[1])]


def test_split_gives_one_block_per_field() -> None:
    [block] = plan_reads([_f(0, 0, "float32"), _f(1, 2), _f(2, 3, "float64")])
    assert [(b.address, b.count) for b in block.split()] == [(0, 2), (2, 1), (3, 4)]


def test_coils_decode_to_zero_or_one() -> None:
    [block] = plan_reads([_f(0, 3, kind="coil"), _f(1, 5, kind="coil")], max_gap=1)
    assert [v for _, v in decode_block(block, [1, 0, 0])] == [1.0, 0.0]


def _shortest_by_search(x: float) -> float:
    """The definition, searched: fewest significant digits whose float32 is x's float32."""
    bits = struct.pack(">f", x)
    for digits in range(1, 10):
        y = float(f"{x:.{digits}g}")
        with contextlib.suppress(OverflowError):
            if struct.pack(">f", y) == bits:
                return y
    raise AssertionError(f"no decimal of 9 digits or fewer is {x!r}")


@pytest.mark.parametrize("order", ORDERS)
def test_a_float32_reads_as_the_shortest_decimal_that_round_trips(order: str) -> None:
    decode = compile_decoder("float32", order)
    assert decode(to_registers(29.69, "float32", order)) == 29.69  # not 29.690000534057617
    assert repr(decode(to_registers(0.1, "float32", order))) == "0.1"
    assert repr(decode(to_registers(-0.0, "float32", order))) == "-0.0"
    assert compile_decoder("float32", order, scale=10.0)(to_registers(2.5, "float32", order)) == 25.0


def test_the_raw_float32_stays_recoverable_bit_for_bit() -> None:
    """README: struct.pack('>f', value) (numpy.float32(value)) is the register's float32 again."""
    rng = random.Random(14)
    decode = compile_decoder("float32")
    patterns = [rng.getrandbits(32) for _ in range(20_000)] + [0x00000001, 0x7F7FFFFF, 0x80800000, 0x3F800000]
    for bits in patterns:
        regs = [bits >> 16, bits & 0xFFFF]
        raw = struct.unpack(">f", bits.to_bytes(4, "big"))[0]
        if not math.isfinite(raw):
            continue
        value = decode(regs)
        assert struct.pack(">f", value) == bits.to_bytes(4, "big"), hex(bits)
        assert value == _shortest_by_search(raw), hex(bits)
