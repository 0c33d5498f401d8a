"""One gateway per data_dir: a second one is refused with one line naming the first, exit 2.

Before: two gateways on one data_dir both ran, each with its own cursors in memory over one
journal (points twice, or both crashing when their run ids differed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import DataDirInUse
from gateway.journal import Journal
from tests.gateway.harness import GatewayProcess, site_config
from tests.gateway.test_end_to_end import wait_until
from tests.servers.mosquitto import Mosquitto


async def test_a_second_journal_on_one_data_dir_is_refused_and_named(tmp_path: Path) -> None:
    async with Journal(tmp_path / "data" / "journal.db", ["a"]):
        with pytest.raises(DataDirInUse, match=rf"{tmp_path / 'data'} is in use by pid {os.getpid()} on "):
            await Journal(tmp_path / "data" / "journal.db", ["a"]).open()
    async with Journal(tmp_path / "data" / "journal.db", ["a"]):  # released at close
        pass


@pytest.mark.integration
def test_a_second_gateway_run_on_one_data_dir_exits_2_naming_the_first(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    sink = f'[[sinks.local]]\nname = "local"\npath = "{tmp_path / "store.db"}"\n'
    with GatewayProcess(tmp_path / "first", site_config(tmp_path / "data", mosquitto.port, sink)) as first:
        wait_until(lambda: "): connected" in first.log(), 20, "the first gateway", first)
        second = tmp_path / "second.toml"
        second.write_text(site_config(tmp_path / "data", mosquitto.port, sink, run="RUN-2"))
        proc = subprocess.run([sys.executable, "-m", "remotecal", "gateway", "run", "-c", str(second)],
                              capture_output=True, text=True, timeout=60)
        assert first.proc is not None and first.proc.poll() is None, "the first one runs on"
        pid = first.proc.pid
        assert first.terminate() == 0
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "in use by" in line]
    assert len(lines) == 1, proc.stderr
    assert f"{tmp_path / 'data'} is in use by pid {pid} on " in lines[0]
    assert "first/site.toml" in lines[0], "names the first one's command line"
