"""Shared fixtures: real servers on loopback (see tests/servers/); and the two tiers.

`make unit` runs `-m "not integration"`: no server, well under a minute.  A test is in the
integration tier when it is marked so, and automatically when it uses a server fixture
(`mosquitto`, `influxd`, `victoria`, the socat `pty_pair`).  So that a test cannot forget its
mark, a test of the unit tier that starts a server program (mosquitto, influxd,
victoria-metrics, socat, mbpoll) fails with a line that says to mark it.

A pytest run ended by SIGTERM (`timeout`, CI's time limit, a closed terminal's session) ends
like one ended by Ctrl-C: the fixtures' finalizers run, so the servers and the gateway
processes the tests started are stopped, not left running (before: eleven gateways of one
killed run were still up an hour later).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["tests.servers.influx", "tests.servers.mosquitto", "tests.servers.tmpfs"]

SERVER_FIXTURES = frozenset({"mosquitto", "influxd", "victoria", "pty_pair"})
SERVER_PROGRAMS = frozenset({"mosquitto", "influxd", "victoria-metrics", "socat", "mbpoll"})


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    # Only where the test run owns SIGTERM (not under a runner that set its own handler).
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


class _UnitTierPopen(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
        program = args if isinstance(args, str | bytes | os.PathLike) else args[0]
        if os.path.basename(os.fsdecode(program)).split()[0] in SERVER_PROGRAMS:
            raise RuntimeError(f"{os.fsdecode(program)}: a test that starts a server belongs to the integration "
                               "tier: mark it @pytest.mark.integration (or use a fixture of tests/servers/)")
        super().__init__(args, *rest, **kwargs)


@pytest.fixture(autouse=True)
def _unit_tier_starts_no_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setattr(subprocess, "Popen", _UnitTierPopen)
    yield
