"""One process per data_dir: an exclusive `flock` on `DATA_DIR/lock`, held while the journal is open.

Two gateways on one data_dir would write one journal with two sets of cursors in memory
(points twice, or a crash when their run ids differ).  The lock file says who holds it (pid,
host, start time, command line), so the second process is refused with one line naming the
first.  The kernel drops the lock when its holder dies, however it dies: a lock left behind
by a SIGKILLed gateway never blocks the next start.  (`flock` locks a file, not a path:
the file is never deleted or replaced.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from gateway.errors import DataDirInUse, JournalError

__all__ = ["LOCK_NAME", "DataDirLock"]

LOCK_NAME = "lock"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `DataDirInUse` naming its holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot open the data_dir's lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd) or "a process that has not said who it is yet"
            os.close(fd)
            raise DataDirInUse(f"{self.path.parent} is in use by {holder}; stop it first, or give this "
                               "process a data_dir of its own") from None
        except OSError as exc:
            os.close(fd)
            raise JournalError(f"{self.path}: cannot lock the data_dir: {exc.strerror}") from None
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = f"pid {os.getpid()} on {socket.gethostname()}, since {started}: {' '.join(sys.argv)}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(errors="replace"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 4096, 0).decode(errors="replace").strip()
    return ""
