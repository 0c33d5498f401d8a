"""Chaos soak: good and bad MQTT input through a gateway into influxd while everything is killed.

    python -m bench.soak [--seconds 1800] [--quick] [--seed N] [--folder DIR]

Real Mosquitto, real influxd 1.x and `remotecal gateway run` on free 127.0.0.1 ports, the
gateway's data_dir on a small tmpfs of its own (64 MiB, journal max_size 32 MiB).  For
`--seconds` (30 min; `--quick`: 2 min):

- good input: 2 publishers x 50 messages/s, QoS 1, each a JSON object {"t", "rh", "ts"} of one
  of 4 sensors with its own time stamp (2 readings a message, each reading unique by channel
  and time);
- garbage beside it on the same topics: 10 messages/s of malformed JSON, arrays, wrong types,
  NaN, numbers of 5,000 digits, binary bytes, time stamps out of range or missing, and now and
  then a payload over max_payload - none of which may yield a reading;
- every 5-25 s (random, `--seed`) one of: SIGKILL of the gateway (restarted 0.5-5 s later),
  SIGKILL of the broker (restarted 0.5-3 s later), SIGKILL of influxd (restarted 1-10 s
  later), or a disk-full episode (a filler file takes every free byte of the tmpfs for 2-10 s).
  A gateway that exits by itself is restarted after 1 s, as systemd would (its exits and any
  traceback are reported).

Then the publishers stop, the chaos stops, the gateway drains, and the readings published are
compared with the points in InfluxDB: count and identity (channel, time, value), EXACT.

"Published" is what the broker acknowledged.  Mosquitto keeps its queue on disk only every
second (autosave_interval 1), so a SIGKILL of the broker loses what it acknowledged since its
last save: after each broker kill the publishers publish again what the broker acknowledged
in the 10 s before it - the readings carry their sensor's time, so a copy is the same point
(InfluxDB keeps one per series and time).  That is the broker's durability, not the
gateway's: the gateway's claim under test is that nothing the broker handed it is lost or
doubled.

Modbus is left out: a polled reading has no publisher-side truth to compare with.
The soak uses both CPUs for its whole duration: run it alone (`flock /work/.suite.lock`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main"]

_SENSORS = 4
_GOOD_PUBLISHERS = 2
_GOOD_RATE = 50.0  # messages/s per good publisher
_GARBAGE_RATE = 10.0
_REPUBLISH_S = 10.0
_DISK = "64m"
_MAX_SIZE = "32MiB"
_DRAIN_S = 600.0
_QUICK_S = 120.0


def _good(p: int, i: int, base_ms: int) -> tuple[str, str, dict[tuple[str, int], float]]:
    """Message i of good publisher p: topic, payload, and its readings {(channel, time_ns): value}."""
    sensor = f"p{p}s{i % _SENSORS}"
    ts_ms = base_ms + i // _SENSORS  # each sensor's messages 1 ms apart: unique per channel
    t, rh = round(20 + (i % 997) * 0.001, 3), round(40 + (i % 991) * 0.01, 2)
    payload = json.dumps({"t": t, "rh": rh, "ts": ts_ms})
    ns = ts_ms * 10**6
    return f"lab/{sensor}/state", payload, {(f"{sensor}-t", ns): t, (f"{sensor}-rh", ns): rh}


def _garbage(i: int, rng: random.Random, now_ms: int) -> tuple[str, bytes]:
    """A message on a mapped topic that must yield no reading at all."""
    topic = f"lab/g{i % 8}/state"
    kinds: list[Callable[[], bytes]] = [
        lambda: b'{"t": 21.0, "rh": ',
        lambda: b"[1, 2, 3]",
        lambda: json.dumps({"t": "warm", "rh": "wet", "ts": now_ms}).encode(),
        lambda: f'{{"t": NaN, "rh": Infinity, "ts": {now_ms}}}'.encode(),
        lambda: f'{{"t": 1{"7" * 5000}, "rh": 1{"3" * 5000}, "ts": {now_ms}}}'.encode(),
        lambda: rng.randbytes(rng.randint(1, 200)),
        lambda: json.dumps({"t": 20.5, "rh": 40.5, "ts": now_ms + 10 * 365 * 86400_000}).encode(),
        lambda: json.dumps({"t": 20.5, "rh": 40.5}).encode(),
    ]
    if i % 50 == 49:
        return topic, b"{" + b" " * 300_000 + b"}"  # beyond max_payload
    return topic, kinds[i % len(kinds)]()


class _Publisher(threading.Thread):
    """Publishes messages from `make(i)` at `rate`/s, QoS 1, until stopped; remembers when the
    broker acknowledged each one, so that what a killed broker may have lost can go again."""

    def __init__(self, port: int, name: str, rate: float, make: Callable[[int], tuple[str, bytes | str]]):
        super().__init__(daemon=True, name=name)
        import paho.mqtt.client as mqtt

        self.rate, self.make = rate, make
        self.acked: dict[int, float] = {}  # message index -> monotonic time of its PUBACK
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._mids: dict[int, int] = {}
        self._early: dict[int, float] = {}  # mid -> PUBACK time, acknowledged before it was filed
        self._lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-{name}", clean_session=False)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, 2)
        c.on_publish = self._on_publish
        c.connect_async("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_publish(self, _c: Any, _u: Any, mid: int, *_: Any) -> None:
        with self._lock:
            i = self._mids.pop(mid, None)
            if i is None:  # acknowledged before publish() filed its mid
                self._early[mid] = time.monotonic()
            else:
                self.acked[i] = time.monotonic()

    def publish(self, i: int) -> None:
        topic, payload = self.make(i)
        # Not under self._lock: paho calls on_publish holding its own message lock, which
        # publish() needs too - holding ours across it deadlocked the publisher and the chaos
        # thread (seen after a broker kill in a 30-minute soak: publishing and chaos stopped).
        info = self.client.publish(topic, payload, qos=1)
        with self._lock:
            acked = self._early.pop(info.mid, None)
            if acked is None:
                self._mids[info.mid] = i
            else:
                self.acked[i] = acked

    def run(self) -> None:
        try:
            t0 = time.monotonic()
            i = 0
            while not self._halt.is_set():
                self.publish(i)
                i += 1
                self.sent = i
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    self._halt.wait(delay)
        except BaseException as exc:  # reported by the soak
            self.error = exc

    def republish_since(self, since: float) -> int:
        """Publish again every message the broker acknowledged after `since` (monotonic)."""
        with self._lock:
            again = [i for i, t in self.acked.items() if t >= since]
        for i in again:
            self.publish(i)
        return len(again)

    def halt(self) -> None:
        self._halt.set()

    def settle(self, timeout: float) -> bool:
        """Wait until every message sent so far is acknowledged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._mids:
                    return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class _Tally:
    gateway_kills: int = 0
    broker_kills: int = 0
    influx_kills: int = 0
    disk_full: int = 0
    recoveries: list[float] = field(default_factory=list)
    episodes_without_failed_commit: int = 0
    self_exits: list[str] = field(default_factory=list)
    republished: int = 0


def _influx_readings(influx: Any, channels: list[str]) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], float] = {}
    for ch in channels:
        for r in influx.rows(f"SELECT value FROM reading WHERE channel = '{ch}'", "calibration"):
            out[(ch, r["time"])] = r["value"]
    return out


def _count(influx: Any) -> int:
    res = influx.query("SELECT COUNT(value) FROM reading", "calibration")[0]
    series = res.get("series")
    return int(series[0]["values"][0][1]) if series else 0


def _sink(url: str) -> str:
    return f"""
[[sinks.influxdb]]
name = "influx"
url = "{url}"
database = "calibration"
batch_size = 5000
flush_interval = "200ms"
timeout = "5s"
max_retry_interval = "2s"

[journal]
max_size = "{_MAX_SIZE}"
"""


class _Soak:
    def __init__(self, folder: Path, seconds: float, seed: int) -> None:
        self.folder, self.seconds, self.rng = folder, seconds, random.Random(seed)
        self.tally = _Tally()
        self.base_ms = int(time.time() * 1000) - 3_600_000
        self.lock = threading.Lock()  # one chaos action or supervision step at a time
        self.stop = threading.Event()

    def run(self) -> dict[str, Any]:
        from tests.gateway.harness import GatewayProcess, site_config
        from tests.servers.influx import InfluxD
        from tests.servers.mosquitto import Mosquitto
        from tests.servers.tmpfs import SmallDisk

        disk = SmallDisk(self.folder / "disk", _DISK)
        try:
            disk.mount()
            data = disk.path / "data"
            self.disk: SmallDisk | None = disk
        except (PermissionError, FileNotFoundError) as exc:
            print(f"(no disk-full episodes: {exc})")
            data = self.folder / "data"
            self.disk = None
        try:
            with Mosquitto(self.folder / "broker") as broker, InfluxD(self.folder / "influxd") as influx:
                influx.create_database("calibration")
                cfg = site_config(data, broker.port, _sink(influx.url), run="SOAK", health="5s")
                gw = GatewayProcess(self.folder / "gw", cfg)
                self.broker, self.influx, self.gw = broker, influx, gw
                gw.start()
                self._wait(lambda: "): connected" in gw.log(), 30, "the gateway's first connection")
                time.sleep(1.5)  # the broker's autosave keeps the gateway's session and subscription
                return self._soak()
        finally:
            disk.unmount()

    def _wait(self, cond: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}\n{self.gw.log()[-3000:]}")
            time.sleep(0.05)

    def _soak(self) -> dict[str, Any]:
        good = [_Publisher(self.broker.port, f"good{p}", _GOOD_RATE, self._good_maker(p))
                for p in range(_GOOD_PUBLISHERS)]
        grng = random.Random(self.rng.random())
        garbage = _Publisher(self.broker.port, "garbage", _GARBAGE_RATE,
                             lambda i: _garbage(i, grng, int(time.time() * 1000)))
        publishers = [*good, garbage]
        for p in publishers:
            p.start()
        supervisor = threading.Thread(target=self._supervise, daemon=True)
        supervisor.start()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < self.seconds:
                pause = self.rng.uniform(5, 25)
                if time.monotonic() - t0 + pause >= self.seconds:
                    time.sleep(max(0.0, self.seconds - (time.monotonic() - t0)))
                    break
                time.sleep(pause)
                self._chaos(publishers)
        finally:
            for p in publishers:
                p.halt()
            for p in publishers:
                p.join(30)
        soaked = time.monotonic() - t0
        for p in publishers:
            if not p.settle(120):
                raise RuntimeError(f"publisher {p.name}: the broker did not acknowledge everything")
        self.stop.set()
        supervisor.join(10)
        expected: dict[tuple[str, int], float] = {}
        for k, pub in enumerate(good):
            for i in pub.acked:
                expected.update(_good(k, i, self.base_ms)[2])
        t_drain = time.monotonic()
        _progress(f"published {len(expected):,} readings; the gateway drains")
        deadline = t_drain + _DRAIN_S
        while _count(self.influx) < len(expected) and time.monotonic() < deadline:
            if self.gw.proc is None or self.gw.proc.poll() is not None:
                self.gw.start()
            time.sleep(1.0)
        drained = time.monotonic() - t_drain
        code = self.gw.terminate(120) if self.gw.proc is not None else None
        channels = sorted({ch for ch, _ in expected})
        got = _influx_readings(self.influx, channels)
        stray = _count(self.influx) - len(got)
        log = self.gw.log()
        return {
            "soaked": soaked, "drained": drained, "expected": expected, "got": got, "stray": stray,
            "garbage": len(garbage.acked), "good_messages": sum(len(p.acked) for p in good),
            "final_exit": code, "tracebacks": log.count("Traceback"),
            "health": _last_stop_counters(log), "errors": [p.error for p in publishers if p.error],
        }

    def _good_maker(self, p: int) -> Callable[[int], tuple[str, bytes | str]]:
        def make(i: int) -> tuple[str, bytes | str]:
            topic, payload, _ = _good(p, i, self.base_ms)
            return topic, payload
        return make

    def _supervise(self) -> None:
        """Restart a gateway that exited by itself (not one of our kills), as systemd would."""
        while not self.stop.is_set():
            time.sleep(0.2)
            with self.lock:
                proc = self.gw.proc
                if proc is not None and proc.poll() is not None:
                    tail = [ln for ln in self.gw.log().splitlines() if ln.strip()][-1:]
                    self.tally.self_exits.append(f"exit {proc.returncode}: {tail[0][:200] if tail else ''}")
                    _progress(f"the gateway exited by itself: {self.tally.self_exits[-1]}")
                    time.sleep(1.0)
                    self.gw.start()

    def _chaos(self, publishers: list[_Publisher]) -> None:
        what = self.rng.choice(["gateway", "broker", "influxd", "disk"] if self.disk else
                               ["gateway", "broker", "influxd"])
        _progress(f"{what} ({sum(p.sent for p in publishers):,} messages published so far, "
                  f"{len(self.tally.self_exits)} gateway exits by itself)")
        with self.lock:
            if what == "gateway":
                self.tally.gateway_kills += 1
                self.gw.kill()
                time.sleep(self.rng.uniform(0.5, 5))
                self.gw.start()
            elif what == "broker":
                self.tally.broker_kills += 1
                killed = time.monotonic()
                self.broker.kill()
                time.sleep(self.rng.uniform(0.5, 3))
                self.broker.start()
                for p in publishers:
                    self.tally.republished += p.republish_since(killed - _REPUBLISH_S)
            elif what == "influxd":
                self.tally.influx_kills += 1
                self.influx.kill()
                time.sleep(self.rng.uniform(1, 10))
                self.influx.start()
            else:
                assert self.disk is not None
                self.tally.disk_full += 1
                log = self.gw.log()
                failed_before, worked_before = log.count("commit failed"), log.count("commits work again")
                self.disk.fill()
                time.sleep(self.rng.uniform(2, 10))
                failed = self.gw.log().count("commit failed") > failed_before
                freed = time.monotonic()
                self.disk.free()
                if not failed:
                    self.tally.episodes_without_failed_commit += 1
                    return
                with contextlib.suppress(RuntimeError):
                    self._wait(lambda: self.gw.log().count("commits work again") > worked_before, 30,
                               "commits working again")
                    self.tally.recoveries.append(time.monotonic() - freed)


def _last_stop_counters(log: str) -> dict[str, str]:
    lines = re.findall(r"gateway stopped: (.*)", log)
    if not lines:
        return {}
    return dict(kv.split("=", 1) for kv in lines[-1].split(", ") if "=" in kv)


def _progress(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} soak: {text}", file=sys.stderr, flush=True)


def _terminate_as_exit(*_: object) -> None:
    raise SystemExit(143)  # SIGTERM: unwind, so that the servers stop and the tmpfs is unmounted


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate_as_exit)
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=1800.0, help="soak duration (default 1800 s)")
    p.add_argument("--quick", action="store_true", help=f"a short soak ({_QUICK_S:.0f} s) to try it")
    p.add_argument("--seed", type=int, default=None, help="the chaos' random seed (default: a new one)")
    p.add_argument("--folder", type=Path, default=None, help="keep the servers' and gateway's files here")
    args = p.parse_args(argv)
    seconds = _QUICK_S if args.quick else args.seconds
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    try:
        import tests.servers.influx  # noqa: F401 - the test servers are this soak's servers
    except ImportError as exc:
        print(f"needs the test servers (tests/servers): {exc}", file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        folder = args.folder or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-soak-")))
        folder.mkdir(parents=True, exist_ok=True)
        soak = _Soak(folder, seconds, seed)
        r = soak.run()
    return _report(soak.tally, r, seconds, seed)


def _report(t: _Tally, r: dict[str, Any], seconds: float, seed: int) -> int:
    expected, got = r["expected"], r["got"]
    missing = {k: v for k, v in expected.items() if k not in got}
    wrong = {k: (v, got[k]) for k, v in expected.items() if k in got and got[k] != v}
    extra = {k: v for k, v in got.items() if k not in expected}
    print(f"Soak of {r['soaked']:.0f} s (asked {seconds:.0f} s), seed {seed}: {_GOOD_PUBLISHERS} publishers "
          f"x {_GOOD_RATE:.0f} good messages/s ({_GOOD_PUBLISHERS * _SENSORS} sensors, 2 readings a message) "
          f"and {_GARBAGE_RATE:.0f} garbage messages/s, QoS 1, on real Mosquitto -> `remotecal gateway run` "
          f"(journal on a {_DISK} tmpfs, max_size {_MAX_SIZE}) -> real influxd; a chaos event every 5-25 s; "
          f"then the gateway drained for {r['drained']:.0f} s.\n")
    rec = t.recoveries
    print("| chaos | count |\n|---|---:|")
    print(f"| SIGKILL of the gateway (restarted 0.5-5 s later) | {t.gateway_kills} |")
    print(f"| SIGKILL of Mosquitto (restarted 0.5-3 s later) | {t.broker_kills} |")
    print(f"| SIGKILL of influxd (restarted 1-10 s later) | {t.influx_kills} |")
    print(f"| disk full for 2-10 s | {t.disk_full} |")
    if rec:
        print(f"| ... of them with failed commits; recovery, space freed -> commits work again | {len(rec)}: "
              f"median {statistics.median(rec):.2f} s, max {max(rec):.2f} s |")
    print(f"| gateway exits by itself (restarted 1 s later) | {len(t.self_exits)} |")
    print(f"| messages published again after a broker kill | {t.republished} |")
    print()
    print("| input and output | count |\n|---|---:|")
    print(f"| good messages acknowledged by the broker | {r['good_messages']:,} |")
    print(f"| readings in them (distinct: channel, time) | {len(expected):,} |")
    print(f"| garbage messages acknowledged by the broker | {r['garbage']:,} |")
    print(f"| points of those channels in InfluxDB | {len(got):,} |")
    print(f"| missing / wrong value / not published | {len(missing)} / {len(wrong)} / {len(extra)} |")
    print(f"| other points in InfluxDB (garbage that became a reading) | {r['stray']} |")
    h = r["health"]
    if h:
        print(f"| last run's counters at its stop | received {h.get('received')}, "
              f"rejected {h.get('rejected')}, duplicates {h.get('duplicates')}, refused {h.get('refused')}, "
              f"quarantine_dropped {h.get('quarantine_dropped')}, journal_lost {h.get('journal_lost')} |")
    print()
    for line in t.self_exits[:5]:
        print(f"- gateway exit: {line}")
    for diff in list(missing.items())[:3] + list(extra.items())[:3]:
        print(f"- difference: {diff}")
    checks = [
        (not missing and not wrong and not extra and r["stray"] == 0,
         f"every published reading is exactly one point in InfluxDB: {len(expected):,} published, "
         f"{len(got):,} points, identical (channel, time, value)"),
        (r["tracebacks"] == 0, f"no traceback in the gateway's log ({r['tracebacks']})"),
        (r["final_exit"] == 0, f"the last gateway run stopped with exit 0 ({r['final_exit']})"),
        (not r["errors"], f"the publishers ran without error ({r['errors'][:1]})"),
    ]
    for ok, text in checks:
        print(f"- {'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
