"""The ingest is a gateway whose source is the uplink (issue 12): a central site config with
`[[sources.uplink]]` runs under `remotecal gateway run`; a CENTRAL.toml still runs under
`remotecal ingest` as the site config that does what it did, and `gateway run` names the
change it needs; relayed frames keep their own site, gateway and run tags."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.ingest.config import central_site_config, load_ingest_config
from gateway.keys import load_key_file, new_key_file
from gateway.mqtt.message import Message
from gateway.reading import Reading
from gateway.run import RunEngine
from gateway.runtime import Gateway
from gateway.sinks.mqtt.frame import encode_frame, readings_topic, sign
from gateway.sources.uplink.plugin import state_dir
from remotecal.cli import main
from tests.gateway.harness import CommandProcess, GatewayProcess, Publisher, config_text
from tests.gateway.run.fakes import Chamber, FakeController, procedure
from tests.gateway.uplink.harness import (
    INGEST_FILTER,
    T0_MS,
    IngestProcess,
    gateway_config,
    ingest_config,
    make_key,
    pumping,
    state_message,
    until,
)
from tests.gateway.uplink.test_uplink_end_to_end import count_readings, wait_until
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[3]
SITE, GW = "lab 1", "gw,01"


def central_config(data_dir: Path, broker_port: int, keys: Path, influx: InfluxD, worker: str) -> str:
    """A central site in the site config's own form: [gateway], [[sources.uplink]], [[sinks.influxdb]]."""
    return config_text({
        "gateway": {"site": "central", "id": f"ingest-{worker}", "run": "central", "data_dir": data_dir,
                    "health_interval": "1s", "shutdown_grace": "20s"},
        "sources": {"uplink": [{"name": "uplink", "worker": worker, "keys": keys, "group": "central",
                                "url": f"mqtt://127.0.0.1:{broker_port}", "reconnect_min": "100ms",
                                "reconnect_max": "1s", "max_inflight": 20}]},
        "sinks": {"influxdb": [{"name": "influx", "url": influx.url, "database": "calibration",
                                "batch_size": 2000, "flush_interval": "200ms", "max_retry_interval": "1s"}]},
    })


def test_a_central_toml_is_the_site_config_that_does_what_it_did(tmp_path: Path) -> None:
    """Same journal, replay state and refused frames (data_dir), broker session (worker), sink
    cursors (an unnamed sink keeps `influxdb-N`), health tags and redelivery keys (`uplink`)."""
    (tmp_path / "pw").write_text("secret")
    text = (ROOT / "gateway" / "ingest" / "sample.toml").read_text().replace(
        "/etc/remotecal/ingest-broker.pw", str(tmp_path / "pw"))
    (tmp_path / "central.toml").write_text(
        text.replace('data_dir = "/var/lib/remotecal-ingest/w1"', 'data_dir = "w1"')
        + '\n[[sinks.influxdb]]\nurl = "http://127.0.0.1:8087"\ndatabase = "second"\n')
    cfg = load_ingest_config(tmp_path / "central.toml")
    g = cfg.gateway
    assert (g.site, g.id, g.data_dir, g.health_interval, g.shutdown_grace) == (
        "central", "ingest-w1", tmp_path / "w1", 10.0, 10.0)
    (uplink,) = cfg.sources.blocks("uplink")
    assert (uplink.name, uplink.worker, uplink.group, uplink.topic_prefix, uplink.keys) == (
        "uplink", "w1", "remotecal-ingest", "remotecal/v1", Path("/etc/remotecal/keys"))
    assert (uplink.url, uplink.username, uplink.session_expiry, uplink.max_inflight) == (
        "mqtts://central.example.org:8883", "ingest", 7 * 86400.0, 100)
    assert uplink.password is not None and uplink.password.get() == "secret"
    assert state_dir(uplink, g.data_dir) == tmp_path / "w1"
    assert cfg.sink_names() == ["influx", "influxdb-2"]
    assert cfg.journal.fsync == "full"
    # The site config form of it loads as it is, under `gateway run` too.
    (tmp_path / "site.toml").write_text(config_text(central_site_config(
        tomllib.loads((tmp_path / "central.toml").read_text()))))
    (again,) = load_config(tmp_path / "site.toml").sources.blocks("uplink")
    assert again.model_dump(exclude={"password"}) == uplink.model_dump(exclude={"password"})


def test_gateway_run_names_the_change_a_central_toml_needs(tmp_path: Path) -> None:
    (tmp_path / "central.toml").write_text(
        '[ingest]\nworker = "w"\ndata_dir = "data"\nkeys = "keys"\n[broker]\nurl = "mqtt://127.0.0.1:1"\n'
        '[[sinks.influxdb]]\nurl = "http://127.0.0.1:1"\ndatabase = "db"\n')
    proc = subprocess.run([sys.executable, "-m", "remotecal", "gateway", "run", "-c", str(tmp_path / "central.toml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{tmp_path / 'central.toml'}: ingest: this is a CENTRAL.toml of `remotecal ingest`: run it with "
        f"`remotecal ingest -c {tmp_path / 'central.toml'}`, or write it as [gateway] and [[sources.uplink]] "
        "(gateway/sources/uplink/sample.toml)"], proc.stderr


def test_gateway_check_says_which_gateway_keys_the_worker_can_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A worker starts without the keys it cannot read (their frames wait whole in refused.db):
    `gateway check` says which ones it has, and what is wrong with the others."""
    site = tmp_path / "site.toml"
    keys = tmp_path / "keys"
    site.write_text(config_text({
        "gateway": {"site": "central", "id": "ingest-w1", "run": "central", "data_dir": tmp_path / "data"},
        "sources": {"uplink": [{"name": "uplink", "worker": "w1", "keys": keys, "url": "mqtt://127.0.0.1:1"}]},
        "sinks": {"local": [{"name": "store", "path": tmp_path / "store.db"}]},
    }))
    assert main(["gateway", "check", "-c", str(site)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"{site}: uplink 'uplink': 0 gateway key(s) in {keys}: every frame waits whole in refused.db until its "
        "gateway's key is there",
        f"{site}: uplink 'uplink': {keys}: cannot read the key file: No such file or directory"]
    keys.mkdir()
    new_key_file(SITE, GW, keys)
    (keys / "broken.key").write_text("not a key")
    assert main(["gateway", "check", "-c", str(site)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines[0] == f"{site}: uplink 'uplink': 1 gateway key(s) in {keys} ({SITE}/{GW})"
    assert len(lines) == 2 and lines[1].startswith(f"{site}: uplink 'uplink': {keys / 'broken.key'}: not a key file")


def test_remotecal_ingest_takes_a_site_config_with_an_uplink_source_only(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text(
        '[gateway]\nsite = "s"\nid = "g"\nrun = "R"\ndata_dir = "d"\n'
        '[[sources.mqtt]]\nname = "m"\nurl = "mqtt://127.0.0.1:1"\n[[sources.mqtt.topics]]\ntopic = "a/+"\nformat = "value"\n'
        '[[sources.mqtt.topics.fields]]\nchannel = "{1}"\nquantity = "temperature"\nunit = "degC"\nrole = "dut"\n'
        '[[sinks.local]]\npath = "s.db"\n')
    with pytest.raises(ConfigError, match=r"sources.uplink: `remotecal ingest` runs a central site"):
        load_ingest_config(tmp_path / "site.toml")


async def test_relayed_frames_keep_their_own_tags_while_a_local_run_goes_on(tmp_path: Path) -> None:
    """The runtime tags this gateway's readings with the run going on (RunEngine.tag); a frame
    from another gateway carries its own site, gateway and run, and must never be retagged -
    nor fed to this gateway's stability trackers."""
    secret = load_key_file(new_key_file(SITE, GW, tmp_path / "keys")).secret
    (tmp_path / "central.toml").write_text(
        '[ingest]\nworker = "w"\ndata_dir = "data"\nkeys = "keys"\n[broker]\nurl = "mqtt://127.0.0.1:1"\n'
        '[[sinks.influxdb]]\nname = "influx"\nurl = "http://127.0.0.1:1"\ndatabase = "db"\n')
    theirs = [Reading(SITE, GW, "THEIR-RUN", "ref-t", "temperature", "degC", "reference", 20.0 + i, 10**18 + i)
              for i in range(3)]
    frame = sign(secret, encode_frame(1, 0, SITE, GW, theirs))
    chamber = Chamber()
    observed: list[Reading] = []

    async def local_run(gw: Gateway) -> None:
        engine = RunEngine(gw.journal, {"chamber": FakeController(chamber)}, site="central", gateway="ingest-w",
                           idle_run="ingest", clock=lambda: chamber.t_ns)
        await engine.open()
        await engine.start(procedure(20.0), "LOCAL-RUN", "alice@nmc")
        engine.observe = observed.extend  # type: ignore[method-assign]
        gw.run_engine = engine

    async with pumping(tmp_path / "central.toml", prepare=local_run) as (gw, ingest, acked):
        assert gw.run_engine is not None and gw.run_engine.run_tag == "LOCAL-RUN"
        ingest.on_message(Message(readings_topic("remotecal/v1", SITE, GW), frame, 1, 1, False, 0, 1))
        await until(lambda: acked == [1], "the frame acked")
        batch = await gw.journal.next_batch("influx", 100)
    assert batch is not None
    relayed = [r for r in batch.records if isinstance(r, Reading)]
    assert relayed == theirs
    assert {(r.site, r.gateway, r.run) for r in relayed} == {(SITE, GW, "THEIR-RUN")}
    assert observed == []


GATEWAY = ("site 1", "gw,01", "g1")


def relay(worker: CommandProcess, key: Path, tmp_path: Path, mosquitto: Mosquitto, influxd: InfluxD, n: int,
          while_running: Callable[[], None] = lambda: None) -> None:
    """One gateway's `n` readings through its uplink and `worker` into influxd; both stopped
    with exit 0 after `while_running`."""
    site, gw, local = GATEWAY
    gateway = GatewayProcess(tmp_path / local, gateway_config(tmp_path / local / "data", mosquitto.port, site, gw,
                                                              local, key))
    logs = (worker.log, gateway.log)
    try:
        worker.start()
        mosquitto.wait_subscribed(INGEST_FILTER)
        gateway.start()
        mosquitto.wait_subscribed(f"{local}/+/state")
        pub = Publisher(mosquitto.port)
        pub.publish_all([state_message(local, "s0", i) for i in range(n)])
        pub.close()
        wait_until(lambda: count_readings(influxd) >= n, 60, "every reading", *logs)
        while_running()
        assert gateway.terminate() == 0, gateway.log()[-2000:]
        assert worker.terminate() == 0, worker.log()[-2000:]
    finally:
        gateway.kill()
        worker.kill()
    assert count_readings(influxd) == n
    assert "Traceback" not in worker.log()


def status_shows_the_uplink(worker: CommandProcess) -> None:
    """`remotecal gateway status -c` on the worker's config: its uplink source and counters."""
    proc = subprocess.run([sys.executable, "-m", "remotecal", "gateway", "status", "-c", str(worker.config_path),
                           "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["health"]["accepted_frames"] >= 1 and st["health"]["rejected_unknown_gateway"] == 0
    assert [s["name"] for s in st["sources"]] == ["uplink"]


@pytest.mark.integration
def test_a_central_site_config_runs_under_gateway_run(tmp_path: Path, mosquitto: Mosquitto,
                                                      influxd: InfluxD) -> None:
    """End to end: a gateway's uplink -> Mosquitto -> `remotecal gateway run -c central.toml`
    ([[sources.uplink]]) -> influxd; the readings keep the gateway's tags, the worker's health
    point and `gateway status` carry the uplink's counters."""
    site, gw, local = GATEWAY
    keys = tmp_path / "central-keys"
    key = make_key(keys, site, gw)
    central = GatewayProcess(tmp_path / "central", central_config(tmp_path / "central" / "data", mosquitto.port,
                                                                  keys, influxd, "w1"))

    relay(central, key, tmp_path, mosquitto, influxd, 300, lambda: status_shows_the_uplink(central))
    rows = influxd.rows("SELECT value FROM reading GROUP BY *", "calibration")
    assert sorted((r["site"], r["gateway"], r["run"], r["time"], r["value"]) for r in rows) == sorted(
        (site, gw, "RUN-1", (T0_MS + i) * 10**6, json.loads(state_message(local, "s0", i)[1])["t"])
        for i in range(300))
    health = influxd.rows("SELECT last(accepted_frames) FROM gateway_health WHERE gateway = 'ingest-w1'",
                          "calibration")
    assert health and health[0]["last"] >= 1
    assert "gateway stopped:" in central.log() and "accepted_frames=" in central.log()


@pytest.mark.integration
def test_an_old_central_toml_still_runs_under_remotecal_ingest(tmp_path: Path, mosquitto: Mosquitto,
                                                               influxd: InfluxD) -> None:
    """`remotecal ingest -c CENTRAL.toml` (the systemd unit's command line) runs the same worker:
    its journal, replay.db and refused.db in [ingest] data_dir, its health point
    central/ingest-WORKER; `gateway status -c CENTRAL.toml` asks it."""
    keys = tmp_path / "central-keys"
    key = make_key(keys, *GATEWAY[:2])
    data = tmp_path / "w1" / "data"
    worker = IngestProcess(tmp_path / "w1", ingest_config(data, mosquitto.port, keys, influxd, "w1"))
    relay(worker, key, tmp_path, mosquitto, influxd, 100, lambda: status_shows_the_uplink(worker))
    assert {p.name for p in data.iterdir()} >= {"journal.db", "replay.db", "refused.db"}
    health = influxd.rows("SELECT last(accepted_frames) FROM gateway_health WHERE site = 'central' "
                          "AND gateway = 'ingest-w1'", "calibration")
    assert health and health[0]["last"] >= 1
