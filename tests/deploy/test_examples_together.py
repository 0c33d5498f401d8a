"""deploy/examples: the three example configs give a certificate together, unchanged.

deploy/README.md section 3 tells a person to start the local services, then run
`remotecal simulate -c deploy/examples/sim.toml`, `remotecal gateway run -c
deploy/examples/site.toml` (Ctrl-C after 2 minutes) and `remotecal pipeline run -c
deploy/examples/pipeline.toml --out ...`.  This test runs those very command lines, taken from
the README, on copies of the example files that differ only in their loopback ports (free ones
here, into a real Mosquitto and influxd), in a folder laid out like the checkout.  It fails
when one example drifts from the others: a device the site does not read, a channel the
pipeline compares that nobody serves, criteria that find no plateau at the simulator's speed,
an item no comparison covers, a reference certificate expired, any warning of the pipeline.
"""

from __future__ import annotations

import csv
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers.influx import InfluxD, free_port
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "deploy" / "examples"
CHANNELS = {"ref-t", "ref-rh", "dut1-t", "dut1-rh", "dut2-t", "dut2-rh", "ref-readout-t"}


def _readme_commands() -> list[list[str]]:
    """The remotecal command lines of deploy/README.md's development section, as written."""
    text = (ROOT / "deploy" / "README.md").read_text()
    section = text[text.index("## 3. Development"):]
    block = section[section.index("```sh"):section.index("```", section.index("```sh") + 5)]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines()
            if line.startswith(".venv/bin/remotecal ")]


def _ported(text: str, ports: dict[str, int]) -> str:
    for old, new in ports.items():
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    return text


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "remotecal", *args[1:]], cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> int:
    """Ctrl-C, as the README says; the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode


def test_the_readme_runs_the_examples_in_the_order_of_the_chain() -> None:
    commands = _readme_commands()
    assert [c[1:3] for c in commands] == [["simulate", "-c"], ["gateway", "run"], ["pipeline", "run"]]
    assert [c[c.index("-c") + 1] for c in commands] == [
        "deploy/examples/sim.toml", "deploy/examples/site.toml", "deploy/examples/pipeline.toml"]


def test_the_examples_give_a_certificate_together_unchanged(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    ports = {"5020": free_port(), "5021": free_port(), "5022": free_port(), "5025": free_port(),
             "5026": free_port(), "5030": free_port(),
             "1883": mosquitto.port, "8086": influxd.port}
    checkout = tmp_path / "checkout"
    (checkout / "deploy" / "examples").mkdir(parents=True)
    for name in ("sim.toml", "site.toml", "pipeline.toml"):
        text = (EXAMPLES / name).read_text()
        ported = _ported(text, ports)
        assert [ln for ln in ported.splitlines() if "127.0.0.1:" in ln and not re.search(
            r"127\.0\.0\.1:(" + "|".join(str(p) for p in ports.values()) + r")\b", ln)] == [], name
        (checkout / "deploy" / "examples" / name).write_text(ported)
    simulate, gateway_run, pipeline_run = _readme_commands()

    sim = _start(simulate, checkout, tmp_path / "simulate.log")
    gateway = _start(gateway_run, checkout, tmp_path / "gateway.log")
    try:
        # The chamber's program is 80 min at x60: 80 s; then its last setpoint holds.  The
        # gateway records until ref-t has 120 s of readings (one a second): the README's 2 minutes.
        deadline = time.monotonic() + 240
        counts: dict[str, int] = {}
        while time.monotonic() < deadline and not (set(counts) == CHANNELS and counts["ref-t"] >= 120):
            assert gateway.poll() is None and sim.poll() is None, (
                (tmp_path / "gateway.log").read_text()[-3000:], (tmp_path / "simulate.log").read_text()[-3000:])
            time.sleep(1)
            rows = influxd.query('SELECT count("value") FROM "reading" GROUP BY "channel"', db="calibration")
            counts = {s["tags"]["channel"]: s["values"][0][1] for s in rows[0].get("series", [])}
        assert _stop(gateway) == 0
    finally:
        _stop(gateway, signal.SIGKILL)
        _stop(sim, signal.SIGKILL)
    gateway_log = (tmp_path / "gateway.log").read_text()
    assert set(counts) == CHANNELS, (counts, gateway_log[-3000:])
    assert "Traceback" not in gateway_log and "Traceback" not in (tmp_path / "simulate.log").read_text()
    assert not (checkout / "deploy" / "examples" / "var").exists() or _ignored(checkout)

    # The run is over once its newest reading is older than pipeline.toml's quiet_s: the
    # person's command, repeated while the pipeline says the run is still recording.
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run([sys.executable, "-m", "remotecal", *pipeline_run[1:]], cwd=checkout,
                              capture_output=True, text=True, timeout=300)
        if "still recording" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    warnings = [ln for ln in done.stderr.splitlines() if " WARNING " in ln or " ERROR " in ln]
    assert warnings == [], done.stderr

    out = checkout / pipeline_run[pipeline_run.index("--out") + 1]
    rows = list(csv.DictReader((out / "corrections.csv").open()))
    points = {(r["channel"], r["setpoint"]) for r in rows}
    assert points == {(c, sp) for c in ("dut1-t", "dut2-t") for sp in ("20", "30")} | {
        (c, sp) for c in ("dut1-rh", "dut2-rh") for sp in ("50", "70")}, sorted(points)
    from pipelines.dcc import validate_dcc

    xml = (out / "certificate.xml").read_bytes()
    validate_dcc(xml)
    for text in (b"KL-2026-0042", b"D-K-15070-01-00-2026-03", b"DKD-K-41201-2026-0117", b"S1234567",
                 b"0061234567"):
        assert text in xml, text
    assert b"not stated" not in xml
    # What the examples write stays in deploy/examples/var/, which git ignores.
    written = {p.relative_to(checkout).parts[:3] for p in (checkout / "deploy").rglob("*") if p.is_file()}
    assert written - {("deploy", "examples", n) for n in ("sim.toml", "site.toml", "pipeline.toml")} == {
        ("deploy", "examples", "var")}
    assert _ignored(checkout)


def _ignored(checkout: Path) -> bool:
    """deploy/examples/var/ is ignored by the repository's .gitignore."""
    done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "deploy/examples/var/gw01/journal.db"],
                          check=False)
    return done.returncode == 0
