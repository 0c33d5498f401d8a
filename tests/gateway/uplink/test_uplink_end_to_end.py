"""End to end on real servers: three gateways -> signed frames over Mosquitto -> two ingest workers
-> influxd.  Every reading lands once with its exact value, through a SIGKILL of a worker;
tampered, unsigned, replayed and foreign frames are refused, quarantined, and never written.

One Mosquitto plays both parts: the gateways' local broker (topics g1/..., g2/..., g3/...)
and the central broker (remotecal/v1/...).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.ingest.refused import RefusedFrame, RefusedFrames
from gateway.journal import Journal
from gateway.keys import load_key_file
from gateway.sinks.mqtt.frame import encode_frame, readings_topic, sign
from tests.gateway.harness import GatewayProcess, Publisher, SteadyStream
from tests.gateway.uplink.harness import (
    INGEST_FILTER,
    T0_MS,
    IngestProcess,
    Sniffer,
    gateway_config,
    ingest_config,
    make_key,
    state_message,
)
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

GATEWAYS = [("site 1", "gw,01", "g1"), ("site 2", "gw/02", "g2"), ("site 3", "gw 03", "g3")]


def wait_until(cond: Callable[[], Any], timeout: float, what: str, *logs: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(log()[-2500:] for log in logs))



def refused(tmp_path: Path, worker: str = "w1") -> list[RefusedFrame]:
    """The frames the worker refused and keeps whole, the latest first."""
    return RefusedFrames.read(tmp_path / worker / "data" / "refused.db", 100)[1]


def count_readings(influx: InfluxD) -> int:
    series = influx.query("SELECT COUNT(value) FROM reading", "calibration")[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def counters(log: str) -> dict[str, float]:
    """The worker's last line: its gateway's counters, the uplink source's among them."""
    line = [x for x in log.splitlines() if "gateway stopped:" in x][-1]
    return {k: float(v) for k, v in (p.split("=") for p in line.split("gateway stopped: ")[1].split(", "))}


def test_three_gateways_two_workers_one_sigkilled_every_reading_once(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    keys = tmp_path / "central-keys"
    gws = []
    for site, gw, local in GATEWAYS:
        key = make_key(keys, site, gw)
        cfg = gateway_config(tmp_path / local / "data", mosquitto.port, site, gw, local, key)
        gws.append(GatewayProcess(tmp_path / local, cfg))
    workers = [IngestProcess(tmp_path / w, ingest_config(tmp_path / w / "data", mosquitto.port, keys, influxd, w))
               for w in ("w1", "w2")]
    n = 9000  # messages, one reading each, 3000 per gateway

    def message(i: int) -> tuple[str, str]:
        return state_message(GATEWAYS[i % 3][2], f"s{i % 4}", i)

    all_logs = [g.log for g in gws] + [w.log for w in workers]
    try:
        # Gateways first: their first frames find no subscriber, the broker says so in the
        # PUBACK (0x10), and the sink keeps them in the journal until an ingest subscribes.
        for g in gws:
            g.start()
        for _, _, local in GATEWAYS:
            mosquitto.wait_subscribed(f"{local}/+/state")
        half = n // 2
        stream = SteadyStream(mosquitto.port, rate=1500, count=half, make=message)
        stream.start()
        wait_until(lambda: len(stream.sent) > 1000, 30, "the first messages")
        assert count_readings(influxd) == 0
        for w in workers:
            w.start()
        wait_until(lambda: count_readings(influxd) > 2500, 60, "readings through both workers", *all_logs)
        workers[0].kill()
        stream.join(60)
        assert stream.error is None and len(stream.sent) == half
        landed_at_kill = count_readings(influxd)
        # The live worker carries on alone with its share of what comes after the kill (the second
        # half is published only now: under load the first half could all have landed by then,
        # leaving w2 nothing new to show).
        rest = SteadyStream(mosquitto.port, rate=1500, count=n - half, make=lambda i: message(half + i))
        rest.start()
        wait_until(lambda: count_readings(influxd) > landed_at_kill + 1000, 60, "w2 alone", *all_logs)
        rest.join(60)
        assert rest.error is None and len(rest.sent) == n - half
        # Mosquitto 2.0 keeps the dead member's share in its session (SHARED_SUBSCRIPTION_NOTE):
        # some readings wait for w1.
        time.sleep(3.0)
        waiting = n - count_readings(influxd)
        workers[0].start()
        wait_until(lambda: count_readings(influxd) >= n, 90, "every reading", *all_logs)
        time.sleep(1.0)
        for g in gws:
            assert g.terminate() == 0, g.log()[-2000:]
        for w in workers:
            assert w.terminate() == 0, w.log()[-2000:]
    finally:
        for p in [*gws, *workers]:
            p.kill()

    assert count_readings(influxd) == n
    rows = influxd.rows("SELECT value FROM reading GROUP BY *", "calibration")
    got = {(r["site"], r["gateway"], r["channel"], r["time"]): r["value"] for r in rows}
    expected = {}
    for i in range(n):
        site, gw, _ = GATEWAYS[i % 3]
        expected[(site, gw, f"s{i % 4}", (T0_MS + i) * 10**6)] = json.loads(message(i)[1])["t"]
    assert got == expected
    assert {(r["run"], r["quantity"], r["unit"], r["role"]) for r in rows} == {("RUN-1", "temperature", "degC", "dut")}
    health = influxd.rows("SELECT journal_pending FROM gateway_health GROUP BY *", "calibration")
    assert {(h["site"], h["gateway"]) for h in health} == {(s, g) for s, g, _ in GATEWAYS} | {
        ("central", "ingest-w1"), ("central", "ingest-w2")}
    workers_health = influxd.rows("SELECT accepted_frames, rejected FROM gateway_health WHERE site = 'central' "
                                  "GROUP BY gateway ORDER BY time DESC LIMIT 1", "calibration")
    assert {h["gateway"]: h["accepted_frames"] for h in workers_health} == {
        "ingest-w1": counters(workers[0].log())["accepted_frames"],
        "ingest-w2": counters(workers[1].log())["accepted_frames"]}
    assert all(h["rejected"] == 0 for h in workers_health)
    c1, c2 = counters(workers[0].log()), counters(workers[1].log())
    assert c1["accepted_frames"] > 0 and c2["accepted_frames"] > 0
    assert sum(v for k, v in {**c1, **c2}.items() if k.startswith("rejected")) == 0
    assert "no ingest subscribes" in "".join(g.log() for g in gws)
    for g in gws:
        assert "gateway stopped:" in g.log()
    print(f"\nlanded at SIGKILL: {landed_at_kill}; waiting for w1's session: {waiting}; "
          f"w1 {c1}; w2 {c2}")


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    pub = Publisher(port, "attacker")
    pub.publish_all(messages)
    pub.close()


def test_tampered_unsigned_replayed_and_foreign_frames_are_refused(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    keys = tmp_path / "central-keys"
    (a_site, a_gw, a_local), (b_site, b_gw, _) = GATEWAYS[0], GATEWAYS[1]
    a_key = make_key(keys, a_site, a_gw)
    make_key(keys, b_site, b_gw)
    rogue_key = make_key(tmp_path / "rogue", "site 9", "gw 9")  # not registered centrally
    a_secret = load_key_file(a_key).secret
    n = 600
    gw = GatewayProcess(tmp_path / "a", gateway_config(tmp_path / "a" / "data", mosquitto.port, a_site, a_gw,
                                                       a_local, a_key))
    worker = IngestProcess(tmp_path / "w1", ingest_config(tmp_path / "w1" / "data", mosquitto.port, keys,
                                                          influxd, "w1"))
    sniffer = Sniffer(mosquitto.port)
    a_topic, b_topic = readings_topic("remotecal/v1", a_site, a_gw), readings_topic("remotecal/v1", b_site, b_gw)
    try:
        worker.start()
        mosquitto.wait_subscribed(INGEST_FILTER)
        gw.start()
        pub = Publisher(mosquitto.port)
        mosquitto.wait_subscribed(f"{a_local}/+/state")
        pub.publish_all([state_message(a_local, "s0", i) for i in range(n)])
        pub.close()
        wait_until(lambda: count_readings(influxd) >= n, 60, "A's readings", gw.log, worker.log)
        assert gw.terminate() == 0
        genuine = next(p for t, p in sniffer.frames if t == a_topic and b"s0" in p)

        def forged(secret: bytes, site: str, g: str, seq: int, rec_site: str | None = None) -> bytes:
            from gateway.reading import Reading
            r = Reading(rec_site or site, g, "RUN-1", "evil", "temperature", "degC", "dut", 666.0, T0_MS * 10**6)
            return sign(secret, encode_frame(seq, time.time_ns(), site, g, [r]))

        tampered = bytearray(genuine)
        tampered[-40] ^= 0x01  # the last reading's value
        attacks = [
            (a_topic, genuine),                                           # replayed as is
            (a_topic, bytes(tampered)),                                   # tampered
            (a_topic, genuine[:-32]),                                     # unsigned (signature cut off)
            (a_topic, genuine[:-32] + bytes(32)),                         # unsigned (zero signature)
            (b_topic, genuine),                                           # A's frame on B's topic
            (b_topic, forged(a_secret, b_site, b_gw, 10**9)),             # A's key signing as B
            (a_topic, forged(a_secret, a_site, a_gw, 10**9, b_site)),     # A signs a record of site 2
            (readings_topic("remotecal/v1", "site 9", "gw 9"),
             forged(load_key_file(rogue_key).secret, "site 9", "gw 9", 1)),  # unknown gateway
            (a_topic, b'{"t": 666.0}'),                                   # not a frame at all
        ]
        _publish(mosquitto.port, attacks)
        wait_until(lambda: "refused a frame" in worker.log() and len(refused(tmp_path)) >= len(attacks),
                   30, "the refused frames", worker.log)
        assert worker.terminate() == 0
        # A replay after a restart of the worker is still a replay: the window is on disk.
        worker.start()
        wait_until(lambda: worker.log().count("): connected") >= 2, 20, "ingest reconnected", worker.log)
        _publish(mosquitto.port, [(a_topic, genuine)])
        wait_until(lambda: len(refused(tmp_path)) > len(attacks), 30, "the second replay", worker.log)
        time.sleep(1.0)
        assert worker.terminate() == 0
    finally:
        sniffer.close()
        gw.kill()
        worker.kill()

    assert count_readings(influxd) == n
    assert influxd.rows("SELECT value FROM reading WHERE value = 666.0 OR channel = 'evil'", "calibration") == []
    assert {r["site"] for r in influxd.rows("SELECT value FROM reading GROUP BY site", "calibration")} == {a_site}
    rows = refused(tmp_path)
    kinds = [r.reason.split(":")[0] for r in rows]
    assert kinds == [r.kind for r in rows] == [  # the latest first
        "replayed", "malformed", "unknown gateway", "foreign", "bad signature", "bad signature",
        "bad signature", "bad signature", "bad signature", "replayed"], kinds
    assert Journal.read_quarantine(tmp_path / "w1" / "data" / "journal.db")[0] == 0
    assert rows[0].payload == genuine  # a refused frame is kept whole
    c = counters(worker.log())
    assert c["rejected_replayed"] == 1 and c["rejected_bad_signature"] == 0  # the second run only
    assert c["accepted_frames"] == 0
    proc = subprocess.run([sys.executable, "-m", "remotecal", "ingest", "-c", str(worker.config_path),
                           "--quarantine"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(attacks) + 1} refused frame(s)" in proc.stdout and "bad signature" in proc.stdout


def test_central_broker_outage_and_gateway_sigkill_lose_nothing(tmp_path: Path, mosquitto: Mosquitto,
                                                                 influxd: InfluxD) -> None:
    """The local broker is `mosquitto`; the central one is a second Mosquitto, stopped for a while."""
    site, gw_id, local = GATEWAYS[0]
    keys = tmp_path / "central-keys"
    key = make_key(keys, site, gw_id)
    central = Mosquitto(tmp_path / "central")
    central.start()
    gw = GatewayProcess(tmp_path / "gw", gateway_config(tmp_path / "gw" / "data", mosquitto.port, site, gw_id,
                                                        local, key, central_port=central.port))
    worker = IngestProcess(tmp_path / "w1", ingest_config(tmp_path / "w1" / "data", central.port, keys,
                                                          influxd, "w1"))
    n = 6000
    logs = (gw.log, worker.log, central.log_tail)
    try:
        worker.start()
        central.wait_subscribed(INGEST_FILTER)
        gw.start()
        mosquitto.wait_subscribed(f"{local}/+/state")
        stream = SteadyStream(mosquitto.port, rate=1000, count=n, make=lambda i: state_message(local, "s0", i))
        stream.start()
        wait_until(lambda: count_readings(influxd) > 1000, 30, "the first readings", *logs)
        central.stop()  # the central site goes away: the gateway's journal holds the readings
        time.sleep(2.0)
        gw.kill()  # ... and the gateway dies with frames in flight
        stopped_at = count_readings(influxd)
        gw.start()
        time.sleep(1.0)
        central.start()
        stream.join(60)
        assert stream.error is None and len(stream.sent) == n
        wait_until(lambda: count_readings(influxd) >= n, 90, "every reading", *logs)
        time.sleep(1.0)
        assert gw.terminate() == 0
        assert worker.terminate() == 0
    finally:
        gw.kill()
        worker.kill()
        central.stop()
    assert stopped_at < n
    rows = influxd.rows("SELECT value FROM reading", "calibration")
    assert sorted((r["time"], r["value"]) for r in rows) == [
        ((T0_MS + i) * 10**6, json.loads(state_message(local, "s0", i)[1])["t"]) for i in range(n)]
    assert "unreachable" in gw.log() or "not connected" in gw.log()


@pytest.mark.integration
def test_a_gateway_provisioned_while_the_ingest_runs_needs_no_restart(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    """The ingest starts with one gateway's key; a second gateway's key is added to its folder
    afterwards, as deploy/README.md provisions one: its readings land without a restart."""
    (site1, gw1, local1), (site2, gw2, local2) = GATEWAYS[:2]
    keys = tmp_path / "central-keys"
    key1 = make_key(keys, site1, gw1)
    worker = IngestProcess(tmp_path / "w1", ingest_config(tmp_path / "w1" / "data", mosquitto.port, keys,
                                                          influxd, "w1"))
    worker.start()
    gateways: list[GatewayProcess] = []
    logs = (worker.log,)
    try:
        mosquitto.wait_subscribed(INGEST_FILTER)
        assert "1 gateway key(s)" in worker.log()
        key2 = make_key(tmp_path / "gw2-keys", site2, gw2)  # made elsewhere, then installed
        (keys / key2.name).write_bytes(key2.read_bytes())
        for (site, gw, local), key in (((site1, gw1, local1), key1), ((site2, gw2, local2), key2)):
            g = GatewayProcess(tmp_path / local, gateway_config(tmp_path / local / "data", mosquitto.port,
                                                                site, gw, local, key))
            g.start()
            gateways.append(g)
        for local in (local1, local2):
            mosquitto.wait_subscribed(f"{local}/+/state")
        pub = Publisher(mosquitto.port)
        pub.publish_all([state_message(local, "s0", i) for local in (local1, local2) for i in range(200)])
        pub.close()
        wait_until(lambda: count_readings(influxd) >= 400, 30, "every reading", *logs)
        for g in gateways:
            assert g.terminate() == 0
        assert worker.terminate() == 0
    finally:
        for g in gateways:
            g.kill()
        worker.kill()
    assert count_readings(influxd) == 400
    assert counters(worker.log())["rejected_unknown_gateway"] == 0
    assert f"new {site2}/{gw2}" in worker.log()


@pytest.mark.integration
def test_frames_that_came_before_their_gateway_s_key_are_taken_back(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    """A gateway sends before the institute installed its key: its frames are refused
    ("unknown gateway") and acknowledged, so the gateway forgets them - but the ingest keeps
    them whole, and journals them once the key is there.  Not one reading is lost."""
    site, gw, local = GATEWAYS[1]
    keys = tmp_path / "central-keys"
    keys.mkdir()
    key = make_key(tmp_path / "gw-keys", site, gw)
    worker = IngestProcess(tmp_path / "w1", ingest_config(tmp_path / "w1" / "data", mosquitto.port, keys,
                                                          influxd, "w1"))
    gateway = GatewayProcess(tmp_path / local, gateway_config(tmp_path / local / "data", mosquitto.port,
                                                              site, gw, local, key))
    logs = (worker.log, gateway.log)
    try:
        worker.start()
        mosquitto.wait_subscribed(INGEST_FILTER)
        gateway.start()
        mosquitto.wait_subscribed(f"{local}/+/state")
        pub = Publisher(mosquitto.port)
        pub.publish_all([state_message(local, "s0", i) for i in range(300)])
        wait_until(lambda: "unknown gateway" in worker.log(), 20, "the frames refused", *logs)
        time.sleep(1.0)  # the gateway lets them go once the broker has them: nothing to resend
        assert count_readings(influxd) == 0
        (keys / key.name).write_bytes(key.read_bytes())  # the key arrives at the institute
        pub.publish_all([state_message(local, "s0", i) for i in range(300, 400)])
        pub.close()
        wait_until(lambda: count_readings(influxd) >= 400, 30, "every reading", *logs)
        assert gateway.terminate() == 0
        assert worker.terminate() == 0
    finally:
        gateway.kill()
        worker.kill()
    rows = influxd.rows("SELECT value FROM reading", "calibration")
    assert sorted((r["time"], r["value"]) for r in rows) == [
        ((T0_MS + i) * 10**6, json.loads(state_message(local, "s0", i)[1])["t"]) for i in range(400)]
    c = counters(worker.log())
    assert c["rejected_unknown_gateway"] >= 1 and c["requeued_frames"] == c["rejected_unknown_gateway"]
    health = influxd.rows("SELECT last(requeued_frames) FROM gateway_health WHERE gateway = 'ingest-w1'",
                          "calibration")
    assert health[0]["last"] == c["requeued_frames"]  # the Fleet dashboard sees it too
    total, quarantined = Journal.read_quarantine(tmp_path / "w1" / "data" / "journal.db")
    assert total == 0, quarantined


def test_a_reprovisioned_gateway_loses_no_frame(tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    """Issue 11, item 5: a gateway whose data_dir is lost (a new SD card, a re-install) numbers
    its frames from 1 again; the ingest refused them as replays ("replayed", "too old") and
    every later reading was lost.  The frames carry the epoch of the gateway's uplink state:
    a new data_dir is a new epoch with a replay window of its own."""
    site, gw, local = GATEWAYS[0]
    keys = tmp_path / "central-keys"
    key = make_key(keys, site, gw)
    data = tmp_path / local / "data"
    worker = IngestProcess(tmp_path / "w1", ingest_config(tmp_path / "w1" / "data", mosquitto.port, keys,
                                                          influxd, "w1"))
    gateway = GatewayProcess(tmp_path / local, gateway_config(data, mosquitto.port, site, gw, local, key))
    logs = (worker.log, gateway.log)
    pub = Publisher(mosquitto.port)
    try:
        worker.start()
        mosquitto.wait_subscribed(INGEST_FILTER)
        gateway.start()
        mosquitto.wait_subscribed(f"{local}/+/state")
        pub.publish_all([state_message(local, "s0", i) for i in range(300)])
        wait_until(lambda: count_readings(influxd) >= 300, 30, "the first readings", *logs)
        assert gateway.terminate() == 0
        shutil.rmtree(data)  # re-provisioned: the journal, the uplink's sequence file, all gone
        gateway.start()  # its source's session stays at the broker: what is published now waits for it
        pub.publish_all([state_message(local, "s0", i) for i in range(300, 600)])
        wait_until(lambda: count_readings(influxd) >= 600, 30, "the readings after the re-provisioning", *logs)
        assert gateway.terminate() == 0
        assert worker.terminate() == 0
    finally:
        pub.close()
        gateway.kill()
        worker.kill()
    rows = influxd.rows("SELECT value FROM reading", "calibration")
    assert sorted((r["time"], r["value"]) for r in rows) == [
        ((T0_MS + i) * 10**6, json.loads(state_message(local, "s0", i)[1])["t"]) for i in range(600)]
    c = counters(worker.log())
    assert c["rejected_replayed"] == c["rejected_too_old"] == 0
