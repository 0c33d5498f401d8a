"""The journal's faults end to end: Mosquitto -> `remotecal gateway run` -> influxd.

- A full disk (the journal on a small tmpfs that a filler file fills to ENOSPC).  Before: the
  commits that failed dropped their messages, which were never acknowledged on the connection;
  the broker's in-flight window filled and nothing arrived until a reconnect.  Now the failed
  commit is retried, and once space is freed the backlog flows on the same connection.
- A flood of garbage in a small journal.  Before: its quarantine rows and redelivery keys
  filled the journal and the next good message was refused for good.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.gateway.harness import GatewayProcess, Publisher, site_config, state_message
from tests.gateway.test_end_to_end import T0_MS, count_readings, expected_state_readings, v1_sink, wait_until
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
