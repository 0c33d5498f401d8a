"""JSON sensor messages through one gateway into influxd, beside a bare subscriber and a naive script.

    python -m bench.gateway_ingest [--seconds 5] [--sensors 10]

One real Mosquitto and one real influxd 1.x on free 127.0.0.1 ports.  A publisher process
publishes JSON messages {"t": .., "rh": .., "ts": ..} (two readings each) on
<prefix>/s<k>/state, QoS 1, as fast as the broker acknowledges them, once for each consumer
in turn (each on its own topic prefix, so no consumer sees another's messages):

    ceiling   a bare paho subscriber (its own process, QoS 1) that only counts messages:
              from the first publish to the last message received
    gateway   `remotecal gateway run` (a child process; one MQTT source, QoS 1; journal
              fsync = "full"; one InfluxDB v1 sink): from the first publish until influxd
              holds every reading (SELECT COUNT), which must be exactly 2 per message
    naive     a paho callback that builds influxdb-client `Point`s and POSTs them to /write,
              one HTTP request per message (influxdb-client's write API speaks only v2, so
              the lines come from `Point.to_line_protocol()` and go out with httpx), twice:
              `httpx.post` (a new connection per message, as a script would) and one kept-alive
              connection (the stronger baseline); fewer messages and a time limit, as it is slow

readings/s = 2 x messages / elapsed.  Targets (issue 6): the gateway at least half the
ceiling and at least 20x the naive script.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import queue
import sys
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

__all__ = ["main"]

T0_MS = 1_795_000_000_000
_FIELDS = (("t", "temperature", "degC"), ("rh", "relative_humidity", "%rh"))
_MSG_PER_SECOND = 4000  # a first guess of the ceiling, to size the run from --seconds


def _messages(prefix: str, n: int, sensors: int) -> list[tuple[str, str]]:
    return [(f"{prefix}/s{i % sensors}/state",
             json.dumps({"t": round(20 + (i % 1000) * 0.001, 3), "rh": round(40 + (i % 1000) * 0.01, 2),
                         "ts": T0_MS + i}))
            for i in range(n)]


def _publisher(port: int, prefix: str, n: int, sensors: int, q: Queue[Any]) -> None:
    """Child process: publish n messages, QoS 1, wait for every PUBACK; report (first, last) times."""
    import paho.mqtt.client as mqtt

    msgs = _messages(prefix, n, sensors)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{prefix}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        t_first = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on Linux
        infos = [c.publish(t, p, qos=1) for t, p in msgs]
        for info in infos:
            info.wait_for_publish(120)
            if not info.is_published():
                q.put(("error", "the broker did not acknowledge a publish within 120 s"))
                return
        q.put(("published", t_first, time.monotonic()))
    finally:
        c.disconnect()
        c.loop_stop()


def _subscriber(port: int, prefix: str, n: int, naive_db_url: str | None, keepalive: bool, limit: float,
                q: Queue[Any]) -> None:
    """Child process: subscribe to prefix/+/state (QoS 1), report "ready", then take messages until n
    or `limit` s after the first; report (messages handled, monotonic time of the last one).

    Without `naive_db_url` it only counts (the ceiling).  With it, each message becomes two
    influxdb-client Points, POSTed to influxd's /write in one request per message (the naive script),
    on one kept-alive connection (`keepalive`) or with `httpx.post`, a new connection each time."""
    import httpx
    import paho.mqtt.client as mqtt
    from influxdb_client import Point, WritePrecision

    http = httpx.Client(trust_env=False, timeout=30)
    lock = threading.Lock()
    done = threading.Event()
    state = {"count": 0, "last": 0.0, "stopped": False}

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            if state["stopped"]:
                return
            if naive_db_url is not None:
                doc = json.loads(msg.payload)
                sensor = msg.topic.split("/")[1]
                lines = [
                    Point("reading").tag("site", "lab 1").tag("channel", f"{sensor}-{key}")
                    .tag("quantity", quantity).tag("unit", unit).field("value", float(doc[key]))
                    .time(doc["ts"], WritePrecision.MS).to_line_protocol()
                    for key, quantity, unit in _FIELDS]
                body = "\n".join(lines).encode()
                r = (http.post(naive_db_url, content=body) if keepalive
                     else httpx.post(naive_db_url, content=body, trust_env=False, timeout=30))
                r.raise_for_status()
            state["count"] += 1
            state["last"] = time.monotonic()
            if state["count"] >= n:
                state["stopped"] = True
                done.set()

    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{prefix}")
    c.on_connect = lambda cl, *_: cl.subscribe(f"{prefix}/+/state", qos=1)
    c.on_subscribe = lambda *_: subscribed.set()
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        if not subscribed.wait(20):
            q.put(("error", "no SUBACK within 20 s"))
            return
        q.put(("ready",))
        deadline = time.monotonic() + limit + 120  # the first message comes within a few s
        first_seen = False
        while not done.wait(0.05) and time.monotonic() < deadline:
            with lock:
                if not first_seen and state["count"]:
                    first_seen = True
                    deadline = time.monotonic() + limit
        with lock:
            state["stopped"] = True
            q.put(("done", state["count"], state["last"]))
    finally:
        c.disconnect()
        c.loop_stop()
        http.close()


def _get(child: tuple[Queue[Any], BaseProcess], what: str, timeout: float) -> tuple[Any, ...]:
    """The next report of a child process; an error if it reports one, dies or says nothing in time."""
    q, proc = child
    deadline = time.monotonic() + timeout
    while True:
        try:
            item: tuple[Any, ...] = q.get(timeout=0.2)
            break
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{what}: the process exited ({proc.exitcode})") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: nothing within {timeout:g} s") from None
    if item[0] == "error":
        raise RuntimeError(f"{what}: {item[1]}")
    return item


class InfluxProbe:
    """Watches influxd fill up, cheaply: `SHOW STATS` (points written since it started) while
    waiting, `SELECT COUNT` (which costs influxd ~0.1 s per million points) only to confirm.
    One kept-alive client: a new httpx client per query would cost this process ~30 ms each."""

    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, trust_env=False, timeout=60)

    def _query(self, q: str, db: str | None = None) -> list[Any]:
        r = self.http.post("/query", data={"q": q, **({"db": db} if db else {})})
        r.raise_for_status()
        series: list[Any] = r.json()["results"][0].get("series", [])
        return series

    def points_written(self) -> int:
        s = self._query("SHOW STATS FOR 'write'")[0]
        return int(dict(zip(s["columns"], s["values"][0], strict=True))["pointReq"])

    def count(self, db: str) -> int:
        series = self._query("SELECT COUNT(value) FROM reading", db)
        return int(series[0]["values"][0][1]) if series else 0

    def wait_for(self, db: str, target: int, since: int, timeout: float,
                 every: float = 0.05) -> tuple[float, list[tuple[float, int]]]:
        """Poll until `db` holds `target` readings; (monotonic time it was seen, samples of
        (time, points written since `since`)); the time is NaN on a timeout."""
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now, written = time.monotonic(), self.points_written() - since
            samples.append((now, written))
            if written >= target and self.count(db) >= target:
                return now, samples
            time.sleep(every)
        return float("nan"), samples

    def close(self) -> None:
        self.http.close()


def _config_sink(influx_url: str) -> str:
    return f"""
[journal]
fsync = "full"

[[sinks.influxdb]]
name = "influx"
url = "{influx_url}"
database = "gateway"
batch_size = 5000
flush_interval = "200ms"
"""


class _Run:
    """Every child process of one benchmark run, all ended by `close()`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ctx = mp.get_context("spawn")
        self.procs: list[BaseProcess] = []

    def spawn(self, target: Any, *args: Any) -> tuple[Queue[Any], BaseProcess]:
        q: Queue[Any] = self.ctx.Queue()
        p = self.ctx.Process(target=target, args=(*args, q), daemon=True)
        p.start()
        self.procs.append(p)
        return q, p

    def publish(self, prefix: str, n: int, sensors: int) -> tuple[Queue[Any], BaseProcess]:
        return self.spawn(_publisher, self.port, prefix, n, sensors)

    def close(self) -> None:
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()


def _ceiling(run: _Run, n: int, sensors: int) -> float:
    sub = run.spawn(_subscriber, run.port, "ceiling", n, None, True, 120.0)
    _get(sub, "bare subscriber", 30)
    pub = run.publish("ceiling", n, sensors)
    _, t_first, _ = _get(pub, "publisher", 300)
    _, count, last = _get(sub, "bare subscriber", 300)
    if count != n:
        raise RuntimeError(f"the bare subscriber got {count} of {n} messages")
    return float(last - t_first)


def _gateway(run: _Run, folder: Path, influx: Any, probe: InfluxProbe, n: int,
             sensors: int) -> tuple[float, int, int, float]:
    """(elapsed to the last reading in influxd, readings there at the end, exit code, publish time)."""
    from tests.gateway.harness import GatewayProcess, site_config

    influx.create_database("gateway")
    gw = GatewayProcess(folder / "gw", site_config(folder / "gw" / "data", run.port, _config_sink(influx.url),
                                                   run="BENCH", health="10s"))
    try:
        gw.start()
        deadline = time.monotonic() + 30
        while "): connected" not in gw.log():
            if time.monotonic() > deadline or (gw.proc is not None and gw.proc.poll() is not None):
                raise RuntimeError(f"the gateway did not connect:\n{gw.log()[-2000:]}")
            time.sleep(0.05)
        time.sleep(1.0)  # its SUBSCRIBE is through
        since = probe.points_written()
        pub = run.publish("lab", n, sensors)
        _, t_first, t_acked = _get(pub, "publisher", 300)
        t_done, _ = probe.wait_for("gateway", 2 * n, since, 300)
        elapsed = t_done - t_first
        time.sleep(1.0)  # anything more (a duplicate would overwrite, not add, in influxd)
        code = gw.terminate()
        landed = probe.count("gateway")
    finally:
        gw.kill()
    return elapsed, landed, code, t_acked - t_first


def _naive(run: _Run, influx: Any, probe: InfluxProbe, n: int, sensors: int, limit: float,
           keepalive: bool) -> tuple[float, int, int]:
    """(elapsed, messages handled, readings in influxd)."""
    db = "naive_keepalive" if keepalive else "naive_connect"
    influx.create_database(db)
    url = f"{influx.url}/write?db={db}&precision=ms"
    sub = run.spawn(_subscriber, run.port, db, n, url, keepalive, limit)
    _get(sub, "naive script", 30)
    pub = run.publish(db, n, sensors)
    _, t_first, _ = _get(pub, "publisher", 300)
    _, count, last = _get(sub, "naive script", limit + 150)
    return float(last - t_first), int(count), probe.count(db)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway_ingest", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0,
                   help="sizes the run: about this long for the ceiling, the naive script is cut off at 3x")
    p.add_argument("--sensors", type=int, default=10)
    p.add_argument("--messages", type=int, default=None, help="messages (default: from --seconds)")
    args = p.parse_args(argv)
    try:
        from tests.servers.influx import InfluxD
        from tests.servers.mosquitto import Mosquitto
    except ImportError as exc:
        print(f"needs the test servers (tests/servers): {exc}", file=sys.stderr)
        return 1
    n = args.messages or max(1000, int(_MSG_PER_SECOND * args.seconds))
    n_naive = max(200, n // 10)
    limit = 3 * args.seconds
    with tempfile.TemporaryDirectory(prefix="bench-gateway-ingest-") as tmp:
        folder = Path(tmp)
        with Mosquitto(folder / "broker") as broker, InfluxD(folder / "influxd") as influx:
            run = _Run(broker.port)
            probe = InfluxProbe(influx.url)
            try:
                ceiling_s = _ceiling(run, n, args.sensors)
                gw_s, landed, code, pub_s = _gateway(run, folder, influx, probe, n, args.sensors)
                naives = {keep: _naive(run, influx, probe, n_naive, args.sensors, limit, keep)
                          for keep in (False, True)}
            finally:
                probe.close()
                run.close()
    ceiling = 2 * n / ceiling_s
    gateway = min(landed, 2 * n) / gw_s if gw_s == gw_s else 0.0
    print(f"{n:,} JSON messages (2 readings each: t and rh) from {args.sensors} sensors, QoS 1, one "
          f"publisher process; Mosquitto and influxd 1.x on 127.0.0.1; Python {platform.python_version()} on "
          f"{platform.machine()}, {mp.cpu_count()} CPUs shared by the broker, influxd, the publisher and the "
          f"consumer\n")
    print("| consumer | messages | readings | elapsed s | readings/s | landed in influxd |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| ceiling: bare paho subscriber, counts only | {n:,} | {2 * n:,} | {ceiling_s:.2f} | "
          f"{ceiling:,.0f} | - |")
    print(f"| **gateway**: MQTT source -> journal (fsync = full) -> InfluxDB v1 sink | {n:,} | {2 * n:,} | "
          f"{gw_s:.2f} | **{gateway:,.0f}** | {landed:,} |")
    rates = {}
    for keep, (naive_s, msgs, naive_landed) in naives.items():
        rates[keep] = 2 * msgs / naive_s
        how = "one kept-alive connection" if keep else "`httpx.post`, a connection per message"
        print(f"| naive: paho callback + influxdb-client Point + one /write per message, {how} | {msgs:,} of "
              f"{n_naive:,} | {2 * msgs:,} | {naive_s:.2f} | {rates[keep]:,.0f} | {naive_landed:,} |")
    print(f"\nElapsed runs from the publisher's first publish to the last message counted (ceiling), to "
          f"influxd holding every reading (gateway: influxd's SHOW STATS polled every 50 ms, then SELECT "
          f"COUNT), to the last /write answered (naive: {n_naive:,} messages or {limit:g} s after the "
          f"first, whichever comes first). "
          f"The publisher (Python paho, QoS 1) had every PUBACK for the gateway's messages {pub_s:.2f} s "
          f"after its first publish ({n / pub_s:,.0f} messages/s): it bounds the ceiling too. "
          f"influxdb-client's write API is v2-only, so the naive script takes "
          f"`Point(...).to_line_protocol()` and POSTs it with httpx to influxd's v1 /write (precision=ms). "
          f"`httpx.post` builds a new client per call (its SSL context included) and opens a new "
          f"connection: that is most of its cost; the kept-alive row is the stronger baseline.\n")
    checks = [
        (landed == 2 * n and code == 0,
         f"gateway: zero loss, influxd holds exactly {landed:,} of {2 * n:,} readings; exit code {code}"),
        (gateway >= 0.5 * ceiling, f"gateway / ceiling = {gateway / ceiling:.2f} (target >= 0.5)"),
        (gateway >= 20 * rates[False],
         f"gateway / naive with httpx.post = {gateway / rates[False]:.1f}x (target >= 20x)"),
        (gateway >= 20 * rates[True],
         f"gateway / naive on a kept-alive connection = {gateway / rates[True]:.1f}x (target >= 20x)"),
        (all(lnd == 2 * m for _, m, lnd in naives.values()), "naive: influxd holds every reading it wrote"),
    ]
    for ok, text in checks:
        print(f"- {'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
