"""The journal's faults end to end: Mosquitto -> `remotecal gateway run` -> influxd.

- A full disk (the journal on a small tmpfs that a filler file fills to ENOSPC).  Before: the
  commits that failed dropped their messages, which were never acknowledged on the connection;
  the broker's in-flight window filled and nothing arrived until a reconnect.  Now the failed
  commit is retried, and once space is freed the backlog flows on the same connection.
- A flood of garbage in a small journal.  Before: its quarantine rows and redelivery keys
  filled the journal and the next good message was refused for good.
- A damaged page in the journal.  Before: accepted at open, then a traceback at every start.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from tests.gateway.harness import GatewayProcess, Publisher, site_config, state_message
from tests.gateway.test_end_to_end import T0_MS, count_readings, expected_state_readings, v1_sink, wait_until
from tests.gateway.test_journal_recovery import _pages, _smash
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto
from tests.servers.tmpfs import SmallDisk

pytestmark = pytest.mark.integration


def test_disk_full_stalls_nothing_once_space_is_freed(
        tmp_path: Path, small_disk: SmallDisk, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    before, during = 100, 3000
    cfg = site_config(small_disk.path / "data", mosquitto.port, v1_sink(influxd))
    with GatewayProcess(tmp_path / "gw", cfg) as gw:
        wait_until(lambda: "): connected" in gw.log(), 20, "the connection", gw)
        mosquitto.wait_subscribed("lab/+/state")  # a new session: "connected" is not yet subscribed
        pub = Publisher(mosquitto.port)
        pub.publish_all(state_message("d", i, T0_MS + i * 100) for i in range(before))
        wait_until(lambda: count_readings(influxd) == 2 * before, 30, "the readings before", gw)
        small_disk.fill()
        pub.publish_all(state_message("d", i, T0_MS + i * 100) for i in range(before, before + during))
        wait_until(lambda: "commit failed" in gw.log(), 30, "a commit failing on the full disk", gw)
        assert count_readings(influxd) < 2 * (before + during)
        freed = time.monotonic()
        small_disk.free()
        flowing: list[float] = []

        def all_landed() -> bool:
            if not flowing and "commits work again" in gw.log():
                flowing.append(time.monotonic())
            return count_readings(influxd) == 2 * (before + during)

        wait_until(all_landed, 60, "every reading, on the same connection", gw)
        landed = time.monotonic()
        assert flowing, "commits work again: not logged"
        pub.close()
        assert gw.terminate() == 0
    rows = influxd.rows("SELECT value FROM reading GROUP BY *", "calibration")
    got = {(r["channel"], r["time"]): (r["value"], r["quantity"], r["unit"], r["role"]) for r in rows}
    assert len(rows) == len(got) == 2 * (before + during)
    assert got == expected_state_readings(["d"], before + during)
    assert gw.log().count("): connected") == 1, "the backlog came on the same connection"
    print(f"\ndisk full: space freed -> commits work again {flowing[0] - freed:.2f} s (at most), "
          f"-> all {2 * during} held readings in InfluxDB {landed - freed:.2f} s")


def test_a_flood_of_garbage_never_blocks_one_good_reading(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    cfg = site_config(tmp_path / "gw" / "data", mosquitto.port, v1_sink(influxd)) + \
        '\n[journal]\nmax_size = "256KiB"\n'
    garbage = 2000  # ~2.1 MB of quarantine rows and redelivery keys, 8 times max_size
    with GatewayProcess(tmp_path / "gw", cfg) as gw:
        wait_until(lambda: "): connected" in gw.log(), 20, "the connection", gw)
        mosquitto.wait_subscribed("lab/+/state")  # a new session: "connected" is not yet subscribed
        pub = Publisher(mosquitto.port)
        pub.publish_all((f"lab/g{i % 50}/state", b"{" + b"x" * 1000 + str(i).encode()) for i in range(garbage))
        pub.publish_all([state_message("good", 0, T0_MS)])
        wait_until(lambda: count_readings(influxd) == 2, 30, "the good reading after the garbage", gw)
        pub.close()
        assert gw.terminate() == 0
    assert "the quarantine reached its bound" in gw.log()
    assert "FULL" not in gw.log()
    health = influxd.rows("SELECT rejected, quarantine_dropped FROM gateway_health", "calibration")
    last = max(health, key=lambda h: h["time"])
    assert last["rejected"] == garbage and last["quarantine_dropped"] > 0


def test_a_damaged_journal_is_recovered_at_start_not_a_crash_loop(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    # Before: the damaged journal was accepted at open, the readable part delivered, and then
    # the gateway died with a traceback - at every start.
    n = 1500
    gw, data = _offline_gateway(tmp_path, influxd, mosquitto)
    with gw:
        _fill(gw, data, mosquitto, "z", n)
        assert gw.terminate() == 0  # with one health record: 3001 records pending
    leaves = _pages(data / "journal.db", "records")
    _smash(data / "journal.db", leaves[len(leaves) // 2])
    influxd.start()
    with gw:
        found = wait_until(lambda: re.search(r"into a new journal: (\d+) of (\d+) pending record\(s\) recovered, "
                                             r"(\d+) LOST", gw.log()), 30, "the recovery", gw)
        recovered, expected, lost = map(int, found.groups())
        assert expected == 2 * n + 1 and 0 < lost < expected and recovered + lost == expected
        wait_until(lambda: count_readings(influxd) >= recovered - 1, 30, "the recovered readings", gw)
        # The loss is in a health point at once, not only in the one written at shutdown (which a
        # short shutdown_grace may leave undelivered until the next start).
        wait_until(lambda: any(h["journal_lost"] == lost for h in influxd.rows(
            "SELECT journal_lost FROM gateway_health", "calibration")), 30, "the loss in a health point", gw)
        assert gw.terminate() == 0
    assert "Traceback" not in gw.log()
    assert count_readings(influxd) in (recovered - 1, recovered)  # the health record may be among the lost
    rows = influxd.rows("SELECT value FROM reading GROUP BY *", "calibration")
    published = expected_state_readings(["z"], n)
    assert all(published[(r["channel"], r["time"])][0] == r["value"] for r in rows)
    health = influxd.rows("SELECT journal_lost, journal_damaged FROM gateway_health", "calibration")
    assert max(health, key=lambda h: h["time"])["journal_lost"] == lost
    assert list(data.glob("journal.db.damaged-*")), "kept for recovery"


def _offline_gateway(tmp_path: Path, influxd: InfluxD, mosquitto: Mosquitto) -> tuple[GatewayProcess, Path]:
    """A gateway (not started) whose InfluxDB is down, so that what it takes stays pending."""
    data = tmp_path / "gw" / "data"
    cfg = site_config(data, mosquitto.port, v1_sink(influxd), health="1h").replace(
        'shutdown_grace = "20s"', 'shutdown_grace = "2s"')
    influxd.stop()
    return GatewayProcess(tmp_path / "gw", cfg), data


def _fill(gw: GatewayProcess, data: Path, mosquitto: Mosquitto, device: str, n: int) -> None:
    """Publish n state messages of `device` (2 readings each) and wait until all are journalled."""
    wait_until(lambda: "): connected" in gw.log(), 20, "the connection", gw)
    mosquitto.wait_subscribed("lab/+/state")  # a new session: "connected" is not yet subscribed
    pub = Publisher(mosquitto.port)
    pub.publish_all(state_message(device, i, T0_MS + i * 100) for i in range(n))
    pub.close()
    wait_until(lambda: _journal_rows(data) >= 2 * n, 30, "the readings in the journal", gw)


def _journal_rows(data: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{data / 'journal.db'}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_damage_found_while_running_ends_the_gateway_in_one_line_and_the_restart_recovers(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    gw, data = _offline_gateway(tmp_path, influxd, mosquitto)
    with gw:
        _fill(gw, data, mosquitto, "w", 1500)
        # A write of another connection makes the gateway's connection drop its page cache, and an
        # emptied -wal makes it read the pages from the file: the damaged page is read from disk.
        db = sqlite3.connect(data / "journal.db", isolation_level=None, timeout=30)
        db.execute("INSERT INTO meta VALUES('test', 'x')")
        assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        db.close()
        leaves = _pages(data / "journal.db", "records")
        _smash(data / "journal.db", leaves[len(leaves) // 2])
        influxd.start()  # the delivery reads the damaged page
        assert gw.proc is not None
        assert gw.proc.wait(60) == 1
        out = gw.log()
        assert "Traceback" not in out
        assert re.search(r"remotecal: the journal is damaged \(.*malformed.*\); the next start recovers it", out)
    with gw:
        wait_until(lambda: "into a new journal: " in gw.log(), 30, "the recovery", gw)
        wait_until(lambda: count_readings(influxd) > 0, 30, "readings flowing again", gw)
        assert gw.terminate() == 0
    assert "Traceback" not in gw.log()
