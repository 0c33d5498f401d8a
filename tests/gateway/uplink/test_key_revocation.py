"""Revoking a gateway's key on a running ingest, on real servers (issue 11, item 8).

Removing a key file from the ingest's keys folder is the revocation (deploy/README.md): from
the next frame on, that gateway's frames are refused and wait ("unknown gateway", kept
whole), whatever else the folder holds - a malformed key file beside it, or no other key at
all.  Putting the key back takes the waiting frames back: nothing is lost either way.
The waiting frames are kept whole in their own table (gateway.ingest.refused).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.ingest.refused import RefusedFrames
from gateway.keys import load_key_file
from gateway.reading import Reading
from gateway.sinks.mqtt.frame import encode_frame, readings_topic, sign
from tests.gateway.harness import Publisher
from tests.gateway.uplink.harness import INGEST_FILTER, IngestProcess, ingest_config, make_key
from tests.gateway.uplink.test_ingest_poison import count_readings, wait_until
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

PREFIX = "remotecal/v1"
A, B = ("site A", "gw-a"), ("site B", "gw-b")
T0_NS = 1_795_000_000_000 * 10**6


def frame(secret: bytes, gw: tuple[str, str], seq: int) -> tuple[str, bytes]:
    """Frame `seq` of gateway `gw`: one reading on channel 'f{seq}'."""
    r = Reading(*gw, "RUN-1", f"f{seq}", "temperature", "degC", "dut", 20.0 + seq, T0_NS + seq)
    return readings_topic(PREFIX, *gw), sign(secret, encode_frame(seq, 0, *gw, [r]))


def landed(influx: InfluxD, gw: tuple[str, str]) -> set[str]:
    rows = influx.rows(f"SELECT value, channel FROM reading WHERE gateway = '{gw[1]}'", "calibration")
    return {r["channel"] for r in rows}


def waiting(data_dir: Path) -> list[str]:
    """The topics of the frames refused for want of a key."""
    _, rows = RefusedFrames.read(data_dir / "refused.db")
    return [r.topic for r in rows if r.kind == "unknown gateway"]


def test_a_removed_key_stops_verifying_at_the_next_frame_whatever_else_the_folder_holds(
        tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    keys = tmp_path / "keys"
    a_file, b_file = make_key(keys, *A), make_key(keys, *B)
    sa, sb = load_key_file(a_file).secret, load_key_file(b_file).secret
    a_text = a_file.read_bytes()
    data = tmp_path / "w1" / "data"
    worker = IngestProcess(tmp_path / "w1", ingest_config(data, mosquitto.port, keys, influxd, "w1"))
    pub = Publisher(mosquitto.port, "gateways")
    try:
        worker.start()
        mosquitto.wait_subscribed(INGEST_FILTER)
        pub.publish_all([frame(sa, A, 1), frame(sb, B, 1)])
        wait_until(lambda: count_readings(influxd) >= 2, 30, "both gateways' first frames", worker.log)

        # A malformed key file appears beside the others, and A's key is revoked.
        (keys / "broken.key").write_text("not a key file")
        a_file.unlink()
        pub.publish_all([frame(sa, A, 2), frame(sb, B, 2)])
        wait_until(lambda: "f2" in landed(influxd, B), 30, "B's second frame", worker.log)
        wait_until(lambda: waiting(data), 30, "A's second frame refused", worker.log)
        assert landed(influxd, A) == {"f1"}  # frame 2 of A came after its key was removed
        assert waiting(data) == [readings_topic(PREFIX, *A)]

        # The last good key removed (the malformed file stays): B is revoked too.
        b_file.unlink()
        pub.publish_all([frame(sb, B, 3)])
        wait_until(lambda: len(waiting(data)) == 2 or "f3" in landed(influxd, B), 30, "B's third frame",
                   worker.log)
        assert landed(influxd, B) == {"f1", "f2"}

        # A's key back: its waiting frame is taken back, nothing was lost.
        (keys / a_file.name).write_bytes(a_text)
        wait_until(lambda: "f2" in landed(influxd, A), 30, "A's waiting frame taken back", worker.log)
        assert waiting(data) == [readings_topic(PREFIX, *B)]
        assert worker.terminate() == 0, worker.log()[-3000:]
    finally:
        pub.close()
        worker.kill()
    log = worker.log()
    assert "broken.key" in log and "Traceback" not in log


def test_refused_frames_are_requeued_on_request(tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD) -> None:
    """A key replaced at the institute before the gateway has the new one: its frames fail the
    new key's signature and are kept whole; put right, `remotecal ingest --requeue` takes them
    back (issue 11, item 5: a refused frame is always kept whole, and can be requeued)."""
    keys = tmp_path / "keys"
    a_file = make_key(keys, *A)
    old = load_key_file(a_file).secret
    data = tmp_path / "w1" / "data"
    worker = IngestProcess(tmp_path / "w1", ingest_config(data, mosquitto.port, keys, influxd, "w1"))
    pub = Publisher(mosquitto.port, "gateways")
    try:
        worker.start()
        mosquitto.wait_subscribed(INGEST_FILTER)
        text = a_file.read_bytes()
        a_file.unlink()
        make_key(keys, *A)  # the new key, which the gateway does not have yet
        pub.publish_all([frame(old, A, 1), frame(old, A, 2)])
        wait_until(lambda: RefusedFrames.read(data / "refused.db")[0].get("bad signature") == 2, 30,
                   "two frames refused", worker.log)
        assert count_readings(influxd) == 0
        a_file.write_bytes(text)  # back to the old key, until the gateway has the new one
        proc = subprocess.run([sys.executable, "-m", "remotecal", "ingest", "-c", str(worker.config_path),
                               "--requeue", "--kind", "bad signature"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "2 refused frame(s)" in proc.stdout, proc.stdout + proc.stderr
        wait_until(lambda: landed(influxd, A) == {"f1", "f2"}, 30, "the requeued frames", worker.log)
        assert RefusedFrames.read(data / "refused.db")[0] == {}
        assert worker.terminate() == 0, worker.log()[-3000:]
    finally:
        pub.close()
        worker.kill()
