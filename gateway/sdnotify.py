"""systemd's service notification protocol (sd_notify(3)), for `Type=notify` units.

systemd passes a datagram socket in `NOTIFY_SOCKET` (a path, or `@name` in the abstract
namespace) and, with `WatchdogSec=`, the period in `WATCHDOG_USEC` (for the process named by
`WATCHDOG_PID`, when set).  A message is newline-separated `KEY=VALUE` assignments:

    READY=1          start-up is done (the journal is open, the sources and sinks run)
    STOPPING=1       a SIGTERM's flush has begun
    WATCHDOG=1       still alive; a unit with WatchdogSec= is killed and restarted without it
    STATUS=...       one line `systemctl status` shows

Outside systemd (no NOTIFY_SOCKET) every call does nothing.  The protocol is a few lines of
the standard library; the PyPI packages for it are unmaintained (sdnotify, last release 2017)
or bind libsystemd in C (systemd-python, cysystemd), which a gateway's install should not need.
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["notify", "watchdog_period"]

log = logging.getLogger("remotecal.systemd")

_failed_once = False


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        return "\0" + addr[1:]
    if addr.startswith("/"):
        return addr
    return None  # unset, or a kind this does not speak (vsock: a VM's systemd)


def notify(*assignments: str) -> bool:
    """Send `KEY=VALUE` assignments in one datagram; True if systemd was told.  A failure is
    logged once and never raised: the gateway's work matters more than its notifications."""
    global _failed_once
    addr = _address()
    if addr is None:
        return False
    message = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(message)
    except OSError as exc:
        if not _failed_once:
            _failed_once = True
            log.warning("cannot notify systemd at NOTIFY_SOCKET=%s: %s", os.environ.get("NOTIFY_SOCKET"),
                        exc.strerror or exc)
        return False
    return True


def watchdog_period() -> float | None:
    """How often to send WATCHDOG=1 [s]: half of systemd's WATCHDOG_USEC, or None when no
    watchdog is asked of this process."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return usec / 2e6
