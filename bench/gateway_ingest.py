"""JSON sensor messages through one gateway into influxd, beside a bare subscriber and a naive script.

    python -m bench.gateway_ingest [--seconds 5] [--sensors 10] [--publishers 2]

One real Mosquitto and one real influxd 1.x on free 127.0.0.1 ports.  Each consumer is measured
on a backlog, so that it is measured and not the publisher (one Python paho publisher manages
only ~6-7k messages/s, less than the gateway and the bare subscriber take):

1. its persistent session is created (its stable client id, clean_session=False, SUBSCRIBE
   QoS 1, DISCONNECT; the gateway is started once until it logs "connected", then SIGTERMed);
2. while it is away, `--publishers` processes publish its N JSON messages
   {"t": .., "rh": .., "ts": ..} (two readings each) on <prefix>/s<k>/state, QoS 1, each
   waiting for every PUBACK; the broker queues them for the session (the test broker allows
   1,000,000 queued and 1000 inflight messages a client);
3. the consumer starts again and drains the backlog, timed from its session being resumed
   (CONNACK; for the gateway the timestamp of its "connected" log line) to

    ceiling   a bare paho subscriber (its own process, QoS 1) that only counts messages:
              the Nth message counted
    link      the bare subscriber on the gateway's own MQTT 5 link (`MqttLink`), counting and
              acking at once: what the broker gives a consumer that reads like the gateway
              (reported beside the rest, no target)
    gateway   `remotecal gateway run` (a child process; one MQTT source, QoS 1; journal
              fsync = "full"; one InfluxDB v1 sink): influxd holding every reading
              (SHOW STATS, then SELECT COUNT), which must be exactly 2 per message
    naive     a paho callback that builds influxdb-client `Point`s and POSTs them to /write,
              one HTTP request per message (influxdb-client's write API speaks only v2, so
              the lines come from `Point.to_line_protocol()` and go out with httpx), twice:
              on one kept-alive connection (the fair baseline: influxdb-client's own write
              API keeps its connection too) and with `httpx.post` (a new connection per
              message, as a script would); fewer messages and a time limit, as it is slow;
              the last /write answered, then influxd must hold every reading it wrote

Each consumer has its own topic prefix and only its own backlog is queued while it runs.
readings/s = 2 x messages / elapsed.  Targets (issue 6): the gateway at least half the
ceiling and at least 20x the naive script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import platform
import queue
import sys
import tempfile
import threading
import time
from datetime import datetime
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

__all__ = ["main"]

T0_MS = 1_795_000_000_000
_FIELDS = (("t", "temperature", "degC"), ("rh", "relative_humidity", "%rh"))
_MSG_PER_SECOND = 25_000  # a first guess of the ceiling's drain rate, to size the run from --seconds
_NAIVE_MSG_PER_SECOND = 800  # likewise for the kept-alive naive script


def _messages(prefix: str, start: int, stop: int, sensors: int) -> list[tuple[str, str]]:
    return [(f"{prefix}/s{i % sensors}/state",
             json.dumps({"t": round(20 + (i % 1000) * 0.001, 3), "rh": round(40 + (i % 1000) * 0.01, 2),
                         "ts": T0_MS + i}))
            for i in range(start, stop)]


def _publisher(port: int, prefix: str, start: int, stop: int, sensors: int, q: Queue[Any]) -> None:
    """Child process: publish messages start..stop-1, QoS 1, wait for every PUBACK; report
    (first, last) monotonic times (CLOCK_MONOTONIC: comparable across processes on Linux)."""
    import paho.mqtt.client as mqtt

    msgs = _messages(prefix, start, stop, sensors)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{prefix}-{start}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        q.put(("ready",))
        t_first = time.monotonic()
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


def _client_id(prefix: str) -> str:
    return f"bench-sub-{prefix}"


def _make_session(port: int, prefix: str) -> None:
    """The consumer's persistent session: connect (clean_session=False), SUBSCRIBE QoS 1, leave."""
    import paho.mqtt.client as mqtt

    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=_client_id(prefix), clean_session=False,
                    protocol=mqtt.MQTTv311)
    c.on_connect = lambda cl, *_: cl.subscribe(f"{prefix}/+/state", qos=1)
    c.on_subscribe = lambda *_: subscribed.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        if not subscribed.wait(20):
            raise RuntimeError(f"{prefix}: no SUBACK within 20 s")
    finally:
        c.disconnect()
        c.loop_stop()


def _subscriber(port: int, prefix: str, n: int, naive_db_url: str | None, keepalive: bool, limit: float,
                q: Queue[Any]) -> None:
    """Child process: resume the session of `prefix` (created by `_make_session`, its backlog
    queued by the broker), take messages until n or `limit` s after the CONNACK; report
    (messages handled, monotonic time of the CONNACK, of the first message, of the last one).

    Without `naive_db_url` it only counts (the ceiling).  With it, each message becomes two
    influxdb-client Points, POSTed to influxd's /write in one request per message (the naive script),
    on one kept-alive connection (`keepalive`) or with `httpx.post`, a new connection each time."""
    import httpx
    import paho.mqtt.client as mqtt
    from influxdb_client import Point, WritePrecision

    http = httpx.Client(trust_env=False, timeout=30)
    lock = threading.Lock()
    done = threading.Event()
    connected = threading.Event()
    state: dict[str, Any] = {"count": 0, "first": 0.0, "last": 0.0, "stopped": False, "connack": 0.0,
                             "session_present": False}

    def on_connect(_c: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, *_: object) -> None:
        state["connack"] = time.monotonic()
        state["session_present"] = bool(flags.session_present)
        connected.set()

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
            if state["count"] == 1:
                state["first"] = state["last"]
            if state["count"] >= n:
                state["stopped"] = True
                done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=_client_id(prefix), clean_session=False,
                    protocol=mqtt.MQTTv311)
    c.on_connect = on_connect
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        if not connected.wait(20):
            q.put(("error", "no CONNACK within 20 s"))
            return
        if not state["session_present"]:
            q.put(("error", "the broker did not resume the session"))
            return
        done.wait(max(0.0, state["connack"] + limit - time.monotonic()))
        with lock:
            state["stopped"] = True
            q.put(("done", state["count"], state["connack"], state["first"], state["last"]))
    finally:
        c.disconnect()
        c.loop_stop()
        http.close()


def _bare_mqtt5(port: int, prefix: str, n: int, subscribe_only: bool, q: Queue[Any]) -> None:
    """Child process: the bare subscriber on the gateway's own MQTT 5 link
    (`gateway.mqtt.MqttLink` as the MQTT source makes it: the same session, parsing and batched PUBACKs),
    counting messages and acknowledging each at once instead of after a journal commit.
    With `subscribe_only` it makes its persistent session and leaves.  Reports like
    `_subscriber`: (count, CONNACK time, first message, last message); the CONNACK time is
    when the link says it is connected, polled every millisecond."""
    import asyncio

    from gateway.sources.mqtt.config import MqttSourceConfig
    from gateway.sources.mqtt.source import mqtt5_link

    async def run() -> tuple[Any, ...]:
        cfg = MqttSourceConfig.model_validate({
            "name": "bare", "url": f"mqtt://127.0.0.1:{port}", "client_id": _client_id(prefix) + "-5",
            "topics": [{"topic": f"{prefix}/+/state", "format": "value", "fields": [
                {"channel": "c", "quantity": "temperature", "unit": "degC", "role": "dut"}]}]})
        wake = asyncio.Event()
        link = mqtt5_link(cfg, cfg.client_id or "", buffer=10_000, wake=wake.set)
        await link.start()
        try:
            deadline = time.monotonic() + 20
            while not link.connected:
                if time.monotonic() > deadline:
                    return ("error", "no CONNACK within 20 s")
                await asyncio.sleep(0.001)
            connack, first, last, count = time.monotonic(), 0.0, 0.0, 0
            if subscribe_only:
                await asyncio.sleep(0.5)  # its SUBSCRIBE reaches the broker
                return ("done", 0, connack, 0.0, 0.0)
            deadline = connack + 120
            while count < n and time.monotonic() < deadline:
                wake.clear()
                got = link.take()
                if not got:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), 0.5)
                    continue
                for m in got:
                    link.ack(m)
                count += len(got)
                last = time.monotonic()
                first = first or last
            return ("done", count, connack, first, last)
        finally:
            await link.stop()

    q.put(asyncio.run(run()))


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
                 every: float = 0.05) -> float:
        """Poll until `db` holds `target` readings; the monotonic time it was seen (NaN on a timeout)."""
        return self.wait_for_samples(db, target, since, timeout, every)[0]

    def wait_for_samples(self, db: str, target: int, since: int, timeout: float,
                         every: float = 0.05) -> tuple[float, list[tuple[float, int]]]:
        """As `wait_for`, with the samples of (time, points written since `since`) it saw."""
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

    def __init__(self, port: int, sensors: int, publishers: int) -> None:
        self.port = port
        self.sensors = sensors
        self.publishers = publishers
        self.ctx = mp.get_context("spawn")
        self.procs: list[BaseProcess] = []

    def spawn(self, target: Any, *args: Any) -> tuple[Queue[Any], BaseProcess]:
        q: Queue[Any] = self.ctx.Queue()
        p = self.ctx.Process(target=target, args=(*args, q), daemon=True)
        p.start()
        self.procs.append(p)
        return q, p

    def backlog(self, prefix: str, n: int) -> float:
        """Publish n messages on prefix/s<k>/state from `publishers` processes in parallel, every
        one acknowledged by the broker; the seconds from the first publish to the last PUBACK."""
        k = min(self.publishers, n)
        pubs = [self.spawn(_publisher, self.port, prefix, n * j // k, n * (j + 1) // k, self.sensors)
                for j in range(k)]
        for pub in pubs:
            _get(pub, "publisher", 30)  # connected, its messages built
        reports = [_get(pub, "publisher", 300) for pub in pubs]
        for _, p in pubs:
            p.join(10)
        return float(max(r[2] for r in reports) - min(r[1] for r in reports))

    def close(self) -> None:
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()


def _ceiling(run: _Run, n: int) -> tuple[float, float, float]:
    """(seconds from the CONNACK to the Nth message, seconds to the first message, fill seconds)."""
    _make_session(run.port, "ceiling")
    fill_s = run.backlog("ceiling", n)
    _, count, connack, first, last = _get(run.spawn(_subscriber, run.port, "ceiling", n, None, True, 120.0),
                                          "bare subscriber", 150)
    if count != n:
        raise RuntimeError(f"the bare subscriber got {count} of {n} messages")
    return float(last - connack), float(first - connack), fill_s


def _ceiling_mqtt5(run: _Run, n: int) -> tuple[float, float, float]:
    """As `_ceiling`, for the bare subscriber on the gateway's own MQTT 5 link."""
    _get(run.spawn(_bare_mqtt5, run.port, "ceiling5", 0, True), "bare MQTT 5 subscriber (session)", 30)
    fill_s = run.backlog("ceiling5", n)
    _, count, connack, first, last = _get(run.spawn(_bare_mqtt5, run.port, "ceiling5", n, False),
                                          "bare MQTT 5 subscriber", 150)
    if count != n:
        raise RuntimeError(f"the bare MQTT 5 subscriber got {count} of {n} messages")
    return float(last - connack), float(first - connack), fill_s


def _connected_at(log: str, start: int) -> tuple[float, str] | None:
    """The monotonic time of the "connected" line of the gateway's `start`-th run, and the line."""
    section = log.split(f"--- start {start}\n", 1)[-1] if f"--- start {start}\n" in log else ""
    for line in section.splitlines():
        if "): connected" in line:
            stamp = datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()
            return stamp - time.time() + time.monotonic(), line
    return None


def _wait_connected(gw: Any, start: int) -> tuple[float, str]:
    deadline = time.monotonic() + 30
    while (found := _connected_at(gw.log(), start)) is None:
        if time.monotonic() > deadline or (gw.proc is not None and gw.proc.poll() is not None):
            raise RuntimeError(f"the gateway did not connect:\n{gw.log()[-2000:]}")
        time.sleep(0.02)
    return found


def _gateway(run: _Run, folder: Path, influx: Any, probe: InfluxProbe, n: int) -> dict[str, Any]:
    """Elapsed from the resumed session to the last reading in influxd, and what else the table needs."""
    from tests.gateway.harness import GatewayProcess, site_config

    influx.create_database("gateway")
    gw = GatewayProcess(folder / "gw", site_config(folder / "gw" / "data", run.port, _config_sink(influx.url),
                                                   run="BENCH", health="10s"))
    try:
        gw.start()  # creates the session: connect, SUBSCRIBE lab/+/state QoS 1 ...
        _wait_connected(gw, 1)
        time.sleep(0.5)  # ... whose SUBSCRIBE goes out before the DISCONNECT of a SIGTERM anyway
        first_code = gw.terminate()
        if first_code != 0:
            raise RuntimeError(f"the gateway's first run exited {first_code}:\n{gw.log()[-2000:]}")
        fill_s = run.backlog("lab", n)
        since = probe.points_written()
        t_start = time.monotonic()
        gw.start()
        t_connected, line = _wait_connected(gw, 2)
        if "resumed session" not in line:
            raise RuntimeError(f"the gateway did not resume its session: {line}")
        t_done = probe.wait_for("gateway", 2 * n, since, 300)
        time.sleep(1.0)  # anything more (a duplicate would overwrite, not add, in influxd)
        code = gw.terminate()
        landed = probe.count("gateway")
    finally:
        gw.kill()
    return {"elapsed": t_done - t_connected, "startup": t_connected - t_start, "landed": landed, "code": code,
            "fill": fill_s}


def _naive(run: _Run, influx: Any, probe: InfluxProbe, n: int, limit: float,
           keepalive: bool) -> tuple[float, int, int, float]:
    """(elapsed from the CONNACK to the last /write answered, messages handled, readings in influxd,
    fill seconds)."""
    db = "naive_keepalive" if keepalive else "naive_connect"
    influx.create_database(db)
    url = f"{influx.url}/write?db={db}&precision=ms"
    _make_session(run.port, db)
    fill_s = run.backlog(db, n)
    sub = run.spawn(_subscriber, run.port, db, n, url, keepalive, limit)
    _, count, connack, _, last = _get(sub, "naive script", limit + 60)
    return float(last - connack), int(count), probe.count(db), fill_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway_ingest", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0,
                   help="sizes the backlogs: about this long for the ceiling and the kept-alive naive script "
                        "to drain; the naive script is cut off at 2x")
    p.add_argument("--sensors", type=int, default=10)
    p.add_argument("--publishers", type=int, default=2, help="publisher processes filling each backlog")
    p.add_argument("--messages", type=int, default=None, help="messages (default: from --seconds)")
    args = p.parse_args(argv)
    try:
        from tests.servers.influx import InfluxD
        from tests.servers.mosquitto import Mosquitto
    except ImportError as exc:
        print(f"needs the test servers (tests/servers): {exc}", file=sys.stderr)
        return 1
    n = args.messages or max(1000, int(_MSG_PER_SECOND * args.seconds))
    n_naive = max(200, min(n, int(_NAIVE_MSG_PER_SECOND * args.seconds)))
    limit = 2 * args.seconds
    with tempfile.TemporaryDirectory(prefix="bench-gateway-ingest-") as tmp:
        folder = Path(tmp)
        with Mosquitto(folder / "broker") as broker, InfluxD(folder / "influxd") as influx:
            run = _Run(broker.port, args.sensors, args.publishers)
            probe = InfluxProbe(influx.url)
            try:
                ceiling_s, ceiling_first_s, ceiling_fill = _ceiling(run, n)
                link_s, _, link_fill = _ceiling_mqtt5(run, n)
                gw = _gateway(run, folder, influx, probe, n)
                naives = {keep: _naive(run, influx, probe, n_naive, limit, keep) for keep in (True, False)}
            finally:
                probe.close()
                run.close()
    ceiling = 2 * n / ceiling_s
    link_ceiling = 2 * n / link_s
    gw_s, landed, code = gw["elapsed"], gw["landed"], gw["code"]
    gateway = min(landed, 2 * n) / gw_s if gw_s == gw_s else 0.0
    print(f"{n:,} JSON messages (2 readings each: t and rh) from {args.sensors} sensors, QoS 1, queued by "
          f"the broker for each consumer's persistent session while it was away ({args.publishers} publisher "
          f"processes), then drained; Mosquitto and influxd 1.x on 127.0.0.1; Python "
          f"{platform.python_version()} on {platform.machine()}, {mp.cpu_count()} CPUs shared by the broker, "
          f"influxd and the consumer\n")
    print("| consumer | messages | readings | backlog filled in s | drain s | readings/s "
          "| landed in influxd |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| ceiling: bare paho subscriber, counts only | {n:,} | {2 * n:,} | {ceiling_fill:.2f} | "
          f"{ceiling_s:.2f} | {ceiling:,.0f} | - |")
    print(f"| bare subscriber on the gateway's own MQTT 5 link (`MqttLink`), counts and acks only "
          f"| {n:,} | {2 * n:,} | {link_fill:.2f} | {link_s:.2f} | {link_ceiling:,.0f} | - |")
    print(f"| **gateway**: MQTT source -> journal (fsync = full) -> InfluxDB v1 sink | {n:,} | {2 * n:,} | "
          f"{gw['fill']:.2f} | {gw_s:.2f} | **{gateway:,.0f}** | {landed:,} |")
    rates = {}
    for keep, (naive_s, msgs, naive_landed, naive_fill) in naives.items():
        rates[keep] = 2 * msgs / naive_s
        how = "one kept-alive connection" if keep else "`httpx.post`, a connection per message"
        print(f"| naive: paho callback + influxdb-client Point + one /write per message, {how} | {msgs:,} of "
              f"{n_naive:,} | {2 * msgs:,} | {naive_fill:.2f} | {naive_s:.2f} | {rates[keep]:,.0f} | "
              f"{naive_landed:,} |")
    fills = [(n, ceiling_fill), (n, link_fill), (n, gw["fill"])] + [(n_naive, v[3]) for v in naives.values()]
    pub_rate = sum(m for m, _ in fills) / sum(s for _, s in fills)
    print(f"\nDrain time runs from the consumer's session being resumed (its CONNACK; for the gateway the "
          f"timestamp of its \"connected - resumed session\" log line, {gw['startup']:.2f} s after its "
          f"process started, not counted) to the Nth message counted (ceiling; its first message came "
          f"{ceiling_first_s * 1000:.0f} ms after the CONNACK), to influxd holding every reading (gateway: "
          f"influxd's SHOW STATS polled every 50 ms, then SELECT COUNT), to the last /write answered (naive: "
          f"{n_naive:,} messages or {limit:g} s, whichever comes first; influxd then holds exactly what it "
          f"wrote). Only the consumer under test has a backlog while it drains. The live-stream figures "
          f"of earlier runs are dropped: a live stream measured the publishers, whose rate is here the "
          f"backlog fill, {pub_rate:,.0f} messages/s ({2 * pub_rate:,.0f} readings/s) with "
          f"{args.publishers} Python paho processes at QoS 1. "
          f"influxdb-client's write API is v2-only, so the naive script takes "
          f"`Point(...).to_line_protocol()` and POSTs it with httpx to influxd's v1 /write (precision=ms). "
          f"`httpx.post` builds a new client per call (its SSL context included) and opens a new "
          f"connection: that is most of its cost; the kept-alive row is the fair baseline "
          f"(influxdb-client's own write API keeps its connection too).\n")
    checks = [
        (landed == 2 * n and code == 0,
         f"gateway: zero loss, influxd holds exactly {landed:,} of {2 * n:,} readings; exit code {code}"),
        (gateway >= 0.5 * ceiling, f"gateway / ceiling (the bare paho subscriber) = {gateway / ceiling:.2f} "
                                   f"(target >= 0.5)"),
        (gateway >= 20 * rates[True],
         f"gateway / naive on a kept-alive connection = {gateway / rates[True]:.1f}x (target >= 20x)"),
        (gateway >= 20 * rates[False],
         f"gateway / naive with httpx.post = {gateway / rates[False]:.1f}x (target >= 20x; a weaker "
         f"baseline)"),
        (all(lnd == 2 * m for _, m, lnd, _ in naives.values()),
         "naive: influxd holds every reading it wrote"),
    ]
    for ok, text in checks:
        print(f"- {'PASS' if ok else 'FAIL'}: {text}")
    print(f"- INFO (no target): gateway / the bare subscriber on its own MQTT 5 link = "
          f"{gateway / link_ceiling:.2f}; "
          f"that subscriber takes {link_ceiling / ceiling:.1f}x what the bare paho one does, so the broker "
          f"is not what limits the gateway: the journal, the delivery and influxd, on the same "
          f"{mp.cpu_count()} CPUs, are")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
