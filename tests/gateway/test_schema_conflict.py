"""A foreign point of another type in InfluxDB 1.6: the series it blocks are held, not quarantined.

Someone writes `reading,... value=1i` into the shard: influxd then refuses every float
`value` of measurement `reading` in that shard ("field type conflict").  Before: the gateway
split each batch down to single points and quarantined every reading of the shard, one request
per point - and the quarantine's cap then deleted them for good.  Now the refused series are
held in the journal (one request per series to find them), the others are delivered, the
health point and the log say so, and once the conflict is resolved (here: the shard dropped)
the held readings are delivered and nothing was lost.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.journal import Journal
from tests.gateway.harness import GatewayProcess, Publisher, site_config, state_message
from tests.gateway.test_end_to_end import T0_MS, count_readings, expected_state_readings, v1_sink, wait_until
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

OTHER_MS = T0_MS - 14 * 86400 * 1000  # two weeks before: another shard (InfluxDB 1.x: one a week)


def _last_health(influx: InfluxD) -> dict[str, Any]:
    rows = influx.rows("SELECT held_series, held_records, sink_rejected FROM gateway_health", "calibration")
    return max(rows, key=lambda r: r["time"]) if rows else {}


def test_a_foreign_integer_point_holds_the_shards_series_and_they_land_once_resolved(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    n = 200
    r = influxd.write_raw(f"reading,channel=foreign,site=elsewhere value=1i {T0_MS * 10**6}".encode(), "calibration")
    assert r.status_code == 204
    data = tmp_path / "gw" / "data"
    cfg = site_config(data, mosquitto.port, v1_sink(influxd), health="500ms")
    with GatewayProcess(tmp_path / "gw", cfg) as gw:
        wait_until(lambda: "): connected" in gw.log(), 20, "the connection", gw)
        mosquitto.wait_subscribed("lab/+/state")  # a new session: "connected" is not yet subscribed
        pub = Publisher(mosquitto.port)
        pub.publish_all(state_message(s, i, T0_MS + i * 100) for i in range(n) for s in ("a", "b"))
        pub.publish_all(state_message("c", i, OTHER_MS + i * 100) for i in range(n))
        pub.close()
        wait_until(lambda: count_readings(influxd) == 2 * n + 1, 30, "sensor c's readings (another shard)", gw)
        wait_until(lambda: _last_health(influxd).get("held_records") == 4 * n, 30, "the held readings", gw)
        assert _last_health(influxd)["held_series"] == 4
        held = re.findall(r"the server refuses (\d+) series as a whole \(partial write: field type conflict", gw.log())
        assert sum(map(int, held)) == 4, "one line per batch that holds series, naming them"
        assert Journal.read_quarantine(data / "journal.db")[0] == 0, "nothing quarantined"
        shard = next(v[0] for v in influxd.query("SHOW SHARDS")[0]["series"][0]["values"]
                     if v[4] <= "2026-11-18T07:00:00Z" < v[5])  # the shard of T0
        influxd.query(f"DROP SHARD {shard}")  # the operator resolves the conflict
        wait_until(lambda: count_readings(influxd) == 6 * n, 30, "the held readings, once resolved", gw)
        wait_until(lambda: _last_health(influxd).get("held_records") == 0, 30, "nothing held", gw)
        assert gw.terminate() == 0
    assert gw.log().count("the server takes series") == 4
    rows = influxd.rows("SELECT value FROM reading GROUP BY *", "calibration")
    got = {(r["channel"], r["time"]): (r["value"], r["quantity"], r["unit"], r["role"]) for r in rows}
    expected = expected_state_readings(["a", "b"], n)
    expected |= {(ch, ts + (OTHER_MS - T0_MS) * 10**6): v
                 for (ch, ts), v in expected_state_readings(["c"], n).items()}
    assert len(rows) == len(got) == 6 * n and got == expected
    assert _last_health(influxd)["sink_rejected"] == 0
