"""Debian's `mbpoll` - a Modbus client nobody here wrote - reads the virtual devices right.

The values are encoded with `struct` here, independently of firmware_bridge's encoder, and
what mbpoll prints is compared with them.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

from firmware_bridge.modbus import DeviceImage, ModbusServer
from tests.servers.threaded import ServedInThread

pytestmark = pytest.mark.integration


def _words(fmt: str, value: float) -> list[int]:
    raw = struct.pack(">" + fmt, value)
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def _mbpoll(port: int, *args: str) -> list[str]:
    proc = subprocess.run(["mbpoll", "-m", "tcp", "-p", str(port), "-a", "1", "-0", "-1", *args, "127.0.0.1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return re.findall(r"^\[(\d+)\]:\s+(\S+)", proc.stdout, re.M)


def test_mbpoll_reads_the_virtual_device() -> None:
    if shutil.which("mbpoll") is None:
        pytest.fail("mbpoll is not installed (make test installs Debian's mbpoll)")
    image = DeviceImage(1)
    image.set("input", 0, 23.4567, "float32", "ABCD")
    image.set("input", 10, -40.125, "float32", "CDAB")
    image.set("holding", 0, -1234, "int16")
    image.set("holding", 1, 54321, "uint16")
    image.set("holding", 4, -123456789, "int32", "ABCD")
    with ServedInThread(ModbusServer([image]).tcp()) as served:
        port = served.server.port
        # big-endian words (ABCD): mbpoll -B
        (addr, text), = _mbpoll(port, "-t", "3:float", "-B", "-r", "0", "-c", "1")
        assert addr == "0" and float(text) == pytest.approx(struct.unpack(">f", struct.pack(">f", 23.4567))[0], rel=1e-6)
        # little-endian word order (CDAB) is mbpoll's default
        (_, text), = _mbpoll(port, "-t", "3:float", "-r", "10", "-c", "1")
        assert float(text) == -40.125
        rows = _mbpoll(port, "-t", "4", "-r", "0", "-c", "2")  # mbpoll shows 16-bit registers unsigned
        assert [int(v) for _, v in rows] == [struct.unpack(">H", struct.pack(">h", -1234))[0], 54321]
        (_, text), = _mbpoll(port, "-t", "4:int", "-B", "-r", "4", "-c", "1")
        assert int(text) == -123456789
        # and the raw words are exactly struct's big-endian encoding
        rows = _mbpoll(port, "-t", "3:hex", "-r", "0", "-c", "2")
        assert [int(v, 16) for _, v in rows] == _words("f", 23.4567)
