"""A small real file system that a test can fill: a tmpfs mounted on a temporary folder.

    with SmallDisk(tmp_path / "disk", "16m") as disk:
        ... write under disk.path ...
        disk.fill()     # a filler file takes every free byte: writes now fail with ENOSPC
        disk.free()     # the filler goes: there is room again

Mounting needs root (or CAP_SYS_ADMIN); where that is not allowed the fixture skips with
the reason.  The disk is unmounted when the test ends, whatever it left running on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["SmallDisk", "small_disk_fixture"]


class SmallDisk:
    def __init__(self, path: Path, size: str = "16m") -> None:
        self.path = Path(path)
        self.size = size
        self.filler = self.path / ".filler"
        self.mounted = False

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0777", "tmpfs",
                               str(self.path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PermissionError(f"cannot mount a tmpfs on {self.path}: {proc.stderr.strip()}")
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False

    def fill(self) -> int:
        """Write a filler file until the disk is full; the bytes it took."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 12, 1):
                block = b"\0" * chunk
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def __enter__(self) -> SmallDisk:
        self.mount()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()


@pytest.fixture(name="small_disk")
def small_disk_fixture(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 16 MiB tmpfs on `tmp_path / "disk"`; skipped where mounting is not permitted."""
    disk = SmallDisk(tmp_path / "disk", "16m")
    try:
        disk.mount()
    except (PermissionError, FileNotFoundError) as exc:
        pytest.skip(f"a disk-full test needs a small tmpfs: {exc}")
    try:
        yield disk
    finally:
        disk.unmount()
