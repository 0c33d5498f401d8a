"""What a running gateway is doing, as `gateway status` and the periodic summary line show it.

The runtime keeps a `SourceTracker` per source (connected or not and since when, readings and
their rate over the last `RATE_WINDOW_S`), samples it every second, and answers the control
socket's `status` op with `Gateway.status()`, a JSON-able dict:

    {"site", "gateway", "run", "pid", "started", "uptime_s", "now",
     "sources": [{"name", "connected", "since", "readings", "readings_per_s", "last_reading",
                  "clock_offset_s"}],
     "sinks":   [{"name", "pending", "delivered", "last_delivery", "state", "detail"}],
     "journal": {"pending", "bytes", "full", "failing", "quarantined"},
     "health":  the `gateway_health` point's fields,
     "control": {"remote", "allow_remote", "accepted", "refused", "broker"?, "connected"?}}
                (run control, gateway.control.control_status: broker and connected only with
                [control])

Times are ISO 8601 UTC strings (None: not yet).  `format_status` renders it for a person.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

__all__ = ["RATE_WINDOW_S", "SourceTracker", "format_status", "iso", "summary_line"]

RATE_WINDOW_S = 30.0


def iso(time_ns: int | None) -> str | None:
    if time_ns is None:
        return None
    return datetime.fromtimestamp(time_ns / 1e9, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class SourceTracker:
    """One source's connection state and reading counts, sampled by the runtime."""

    def __init__(self, name: str, now_ns: int | None = None):
        self.name = name
        self.connected: bool | None = None
        self.since_ns = now_ns if now_ns is not None else time.time_ns()
        self.readings = 0
        self.last_reading_ns: int | None = None
        self._window: deque[tuple[float, int]] = deque()

    def counted(self, n: int) -> None:
        if n:
            self.readings += n
            self.last_reading_ns = time.time_ns()

    def sample(self, connected: bool, mono: float | None = None) -> None:
        """Record the connection state (a change restarts `since`) and the count for the rate."""
        mono = time.monotonic() if mono is None else mono
        if connected != self.connected:
            self.connected = connected
            self.since_ns = time.time_ns()
        self._window.append((mono, self.readings))
        while len(self._window) > 2 and mono - self._window[0][0] > RATE_WINDOW_S:
            self._window.popleft()

    def rate(self, mono: float | None = None) -> float:
        """Readings per second over the last RATE_WINDOW_S (0 until a second has passed)."""
        if not self._window:
            return 0.0
        mono = time.monotonic() if mono is None else mono
        t0, n0 = self._window[0]
        return (self.readings - n0) / (mono - t0) if mono - t0 >= 1.0 else 0.0

    def state(self, clock_offset_s: float | None) -> dict[str, Any]:
        return {"name": self.name, "connected": bool(self.connected), "since": iso(self.since_ns),
                "readings": self.readings, "readings_per_s": round(self.rate(), 3),
                "last_reading": iso(self.last_reading_ns), "clock_offset_s": clock_offset_s}


def _ago(when: str | None, now: datetime) -> str:
    if when is None:
        return "never"
    t = datetime.fromisoformat(when.replace("Z", "+00:00"))
    return f"{t.strftime('%H:%M:%S')}Z ({_span((now - t).total_seconds())} ago)"


def _span(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_status(st: dict[str, Any]) -> str:
    """A running gateway's status for a person: a few lines, a problem in capitals."""
    now = datetime.fromisoformat(str(st["now"]).replace("Z", "+00:00"))
    lines = [f"gateway {st['site']}/{st['gateway']}, run {st['run']}: running for {_span(st['uptime_s'])} "
             f"(pid {st['pid']}), at {now.strftime('%Y-%m-%d %H:%M:%S')}Z"]
    sources = st.get("sources", [])
    width = max([len(s["name"]) for s in sources] + [len(k["name"]) for k in st.get("sinks", [])] + [4])
    lines.append(f"sources ({sum(1 for s in sources if s['connected'])} of {len(sources)} connected):")
    for s in sources:
        state = "connected   " if s["connected"] else "DISCONNECTED"
        offset = s.get("clock_offset_s")
        lines.append(
            f"  {s['name']:<{width}}  {state} since {_ago(s['since'], now)}, "
            f"{s['readings_per_s']:.1f} readings/s, {s['readings']} in all, "
            f"last {_ago(s['last_reading'], now)}"
            + (f", clock offset {offset:+.3f} s" if offset is not None else ""))
    lines.append("sinks:")
    for k in st.get("sinks", []):
        trouble = "" if k["state"] == "ok" else f" - {k['state'].upper()}: {k['detail']}"
        lines.append(f"  {k['name']:<{width}}  {k['pending']} pending, {k['delivered']} delivered, "
                     f"last delivery {_ago(k['last_delivery'], now)}{trouble}")
    j = st["journal"]
    flags = [w for w, on in (("FULL", j["full"]), ("COMMITS FAILING", j["failing"])) if on]
    lines.append(f"journal: {j['pending']} pending, {j['bytes'] / 1e6:.1f} MB"
                 + (f" - {', '.join(flags)}" if flags else "")
                 + f"; quarantine: {j['quarantined']} input(s)")
    if (c := st.get("control")) is not None:
        counts = f"{c['accepted']} command(s) taken, {c['refused']} refused since start"
        if not c["remote"]:
            lines.append(f"run control: local only (no [control]); {counts}")
        else:
            link = ("" if "broker" not in c else
                    f" via {c['broker']} - {'connected' if c['connected'] else 'DISCONNECTED'}")
            lines.append(f"run control: remote {'on' if c['allow_remote'] else 'OFF (allow_remote = false)'}"
                         f"{link}; {counts}")
    return "\n".join(lines)


def summary_line(st: dict[str, Any], delivered_before: dict[str, int], interval_s: float) -> str:
    """The periodic info line: sources, rates, each sink's pending and deliveries since the last line."""
    sources = st["sources"]
    down = [s["name"] for s in sources if not s["connected"]]
    rate = sum(s["readings_per_s"] for s in sources)
    parts = [f"{len(sources) - len(down)}/{len(sources)} source(s) connected"
             + (f" ({', '.join(down)} not)" if down else ""), f"{rate:.1f} readings/s"]
    for k in st["sinks"]:
        n = k["delivered"] - delivered_before.get(k["name"], 0)
        parts.append(f"sink {k['name']!r}: {n} delivered in {interval_s:.0f} s, {k['pending']} pending"
                     + ("" if k["state"] == "ok" else f" ({k['state']})"))
    j = st["journal"]
    parts.append(f"quarantine {j['quarantined']}")
    if j["full"]:
        parts.append("journal FULL")
    return "; ".join(parts)
