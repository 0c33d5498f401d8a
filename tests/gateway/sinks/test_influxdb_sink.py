"""InfluxDBSink: config, what each server answer becomes (httpx.MockTransport), and real
writes to influxd 1.x (/write) and VictoriaMetrics (/api/v2/write)."""

from __future__ import annotations

import base64
import gzip
import logging
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from gateway.errors import PermanentError, RetryableError, ThrottledError
from gateway.reading import HealthSample, Reading
from gateway.sinks import Sink
from gateway.sinks.influxdb.config import InfluxDBSinkConfig
from gateway.sinks.influxdb.lineprotocol import encode_batch
from gateway.sinks.influxdb.sink import InfluxDBSink
from tests.servers.influx import InfluxD, VictoriaMetrics, free_port

SAMPLE = Path(__file__).parents[3] / "gateway" / "sinks" / "influxdb" / "sample.toml"
T0 = 1_795_433_084_624_000_000


def readings(
    n: int, *, t0: int = T0, step_ns: int = 1_000_000, channels: int = 10
) -> list[Reading]:
    """n readings over `channels` series; values with at most 12 significant digits."""
    return [
        Reading(
            site="nmc-lab1", gateway="gw01", run="RC-2026-0042", channel=f"dut{i % channels}-t",
            quantity="temperature", unit="degC", role="dut",
            value=round(20.0 + (i * 7919 % 10_007) * 1e-4 - 0.5, 4), time_ns=t0 + i * step_ns,
        )
        for i in range(n)
    ]


def v1(url: str = "http://influx.test:8086", **kw: Any) -> InfluxDBSinkConfig:
    return InfluxDBSinkConfig.model_validate(
        {"url": url, "api": "v1", "database": "calibration", **kw}
    )


def v2(url: str = "http://influx.test:8086", **kw: Any) -> InfluxDBSinkConfig:
    return InfluxDBSinkConfig.model_validate(
        {"url": url, "api": "v2", "org": "nmc", "bucket": "calibration",
         "token": "s3cret-token", **kw}
    )


Handler = Callable[[httpx.Request], httpx.Response]


def mocked(config: InfluxDBSinkConfig, handler: Handler) -> InfluxDBSink:
    return InfluxDBSink(config, transport=httpx.MockTransport(handler))


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, text=body or "", headers=headers)

    return handler


# --- config -----------------------------------------------------------------------------


def test_sample_config_is_valid() -> None:
    blocks = tomllib.loads(SAMPLE.read_text())["sinks"]["influxdb"]
    configs = [
        InfluxDBSinkConfig.model_validate(b)
        for b in blocks
        if not str(b.get("token", "")).startswith("env:")
    ]
    assert configs[0].api == "v1"
    assert configs[0].flush_interval == 1.0
    assert configs[0].timeout == 10.0


def test_sample_v2_block_reads_its_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", "from-env")
    block = tomllib.loads(SAMPLE.read_text())["sinks"]["influxdb"][1]
    config = InfluxDBSinkConfig.model_validate(block)
    assert config.token is not None and config.token.get() == "from-env"
    assert "from-env" not in repr(config)


def test_spec_example_and_defaults() -> None:
    c = InfluxDBSinkConfig.model_validate(
        {"url": "http://127.0.0.1:8086", "api": "v1", "database": "calibration"}
    )
    assert (c.name, c.batch_size, c.flush_interval, c.timeout, c.gzip, c.max_retry_interval) == (
        None, 5000, 1.0, 10.0, True, 30.0,
    )
    sink = InfluxDBSink(c, name="influxdb-1")
    assert (sink.name, sink.batch_size, sink.flush_interval_s) == ("influxdb-1", 5000, 1.0)
    assert isinstance(sink, InfluxDBSink)
    _: Sink = sink


def test_durations_parse() -> None:
    c = v1(flush_interval="500ms", timeout="2m", max_retry_interval="1s")
    assert (c.flush_interval, c.timeout, c.max_retry_interval) == (0.5, 120.0, 1.0)


@pytest.mark.parametrize(
    ("kw", "field", "words"),
    [
        ({"url": "ftp://x", "database": "d"}, "url", "http"),
        ({"url": "http://u:pw@x", "database": "d"}, "url", "credentials"),
        ({"url": "http://x"}, "database", "required"),
        ({"url": "http://x", "api": "v2", "org": "o", "bucket": "b"}, "token", "required"),
        ({"url": "http://x", "api": "v2", "token": "t", "bucket": "b"}, "org", "required"),
        ({"url": "http://x", "api": "v2", "token": "t", "org": "o"}, "bucket", "required"),
        ({"url": "http://x", "api": "v2", "token": "t", "org": "o", "bucket": "b",
          "database": "d"}, "database", "v1"),
        ({"url": "http://x", "database": "d", "bucket": "b"}, "bucket", "v2"),
        ({"url": "http://x", "database": "d", "username": "u"}, "password", "required"),
        ({"url": "http://x", "database": "d", "username": "u", "password": "p",
          "token": "t"}, "token", "exclude"),
        ({"url": "http://x", "database": "d", "batch_size": 0}, "batch_size", "1"),
        ({"url": "http://x", "database": "d", "batch_size": 100_001}, "batch_size", "100000"),
        ({"url": "http://x", "database": "d", "flush_interval": "soon"}, "flush_interval",
         "duration"),
        ({"url": "http://x", "database": "d", "colour": "red"}, "colour", "extra"),
    ],
)
def test_bad_config_names_the_field(kw: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        InfluxDBSinkConfig.model_validate(kw)
    errors = {e["loc"][0]: e["msg"] for e in info.value.errors()}
    assert field in errors, errors
    assert words.lower() in errors[field].lower()


def test_secrets_never_show() -> None:
    c = v1(username="gw", password="hunter2")
    assert "hunter2" not in repr(c) and "hunter2" not in str(c.model_dump())
    assert "s3cret-token" not in repr(v2())
    assert "s3cret-token" not in repr(InfluxDBSink(v2()))


# --- requests ---------------------------------------------------------------------------


class Recorder:
    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status)

    def body(self, i: int = -1) -> bytes:
        request = self.requests[i]
        if request.headers.get("Content-Encoding") == "gzip":
            return gzip.decompress(request.content)
        return request.content


async def test_v1_request_gzip_basic_auth_rp() -> None:
    rec = Recorder()
    sink = mocked(v1(username="gw", password="hunter2", retention_policy="one_year"), rec)
    records = readings(3)
    await sink.write(records)
    (req,) = rec.requests
    assert req.method == "POST"
    assert req.url.path == "/write"
    assert dict(req.url.params) == {"db": "calibration", "rp": "one_year", "precision": "ns"}
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"gw:hunter2").decode()
    assert rec.body() == encode_batch(records)
    await sink.aclose()


async def test_v1_without_gzip_or_auth_and_with_a_token() -> None:
    rec = Recorder()
    sink = mocked(v1(gzip=False), rec)
    await sink.write(readings(2))
    assert "Content-Encoding" not in rec.requests[0].headers
    assert "Authorization" not in rec.requests[0].headers
    assert rec.requests[0].content == encode_batch(readings(2))

    sink = mocked(v1(token="tok"), rec)
    await sink.write(readings(1))
    assert rec.requests[-1].headers["Authorization"] == "Token tok"


async def test_v2_request() -> None:
    rec = Recorder()
    sink = mocked(v2(url="https://influx.test/prefix/"), rec)
    await sink.write(readings(2))
    (req,) = rec.requests
    assert str(req.url).startswith("https://influx.test/prefix/api/v2/write?")
    assert dict(req.url.params) == {"org": "nmc", "bucket": "calibration", "precision": "ns"}
    assert req.headers["Authorization"] == "Token s3cret-token"


async def test_an_empty_batch_sends_nothing() -> None:
    rec = Recorder()
    await mocked(v1(), rec).write([])
    assert rec.requests == []


async def test_large_batches_are_compressed_off_the_event_loop_and_still_exact() -> None:
    rec = Recorder()
    records = readings(20_000)
    await mocked(v1(batch_size=20_000), rec).write(records)
    assert len(encode_batch(records)) > 1 << 20
    assert rec.body() == encode_batch(records)


# --- classification ---------------------------------------------------------------------


async def test_429_with_retry_after_seconds_is_throttled() -> None:
    sink = mocked(v1(), answer(429, {"error": "slow down"}, {"Retry-After": "7"}))
    with pytest.raises(ThrottledError) as info:
        await sink.write(readings(1))
    assert info.value.retry_after == 7
    assert "slow down" in str(info.value)


async def test_429_without_retry_after_waits_a_few_seconds() -> None:
    sink = mocked(v1(), answer(429))
    with pytest.raises(ThrottledError) as info:
        await sink.write(readings(1))
    assert 1 <= info.value.retry_after <= 10


async def test_503_with_http_date_retry_after_is_throttled() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    sink = mocked(v2(), answer(503, "busy", {"Retry-After": when}))
    with pytest.raises(ThrottledError) as info:
        await sink.write(readings(1))
    assert 110 <= info.value.retry_after <= 121


async def test_503_with_a_past_date_means_now() -> None:
    sink = mocked(v1(), answer(503, "", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    with pytest.raises(ThrottledError) as info:
        await sink.write(readings(1))
    assert info.value.retry_after == 0


async def test_503_without_retry_after_is_retryable() -> None:
    sink = mocked(v1(), answer(503, "starting"))
    with pytest.raises(RetryableError) as info:
        await sink.write(readings(1))
    assert not isinstance(info.value, ThrottledError)


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_5xx_is_retryable_with_the_servers_reason(status: int) -> None:
    sink = mocked(v1(), answer(status, {"error": "retention policy not found: norp"}))
    with pytest.raises(RetryableError, match="retention policy not found") as info:
        await sink.write(readings(1))
    assert not isinstance(info.value, ThrottledError)


async def test_400_is_permanent_and_carries_the_servers_text() -> None:
    reason = (
        "partial write: field type conflict: input field \"value\" on measurement "
        "\"reading\" is type float, already exists as type string dropped=1"
    )
    sink = mocked(v1(), answer(400, {"error": reason}))
    with pytest.raises(PermanentError) as info:
        await sink.write(readings(1))
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (422, {"code": "unprocessable entity", "message": "failure writing points"},
         "failure writing points"),
        (413, {"code": "request too large", "message": "max 50MB"}, "max 50MB"),
        (400, "plain text reason", "plain text reason"),
    ],
)
async def test_other_refusals_are_permanent(status: int, body: Any, reason: str) -> None:
    sink = mocked(v2(), answer(status, body))
    with pytest.raises(PermanentError) as info:
        await sink.write(readings(4))
    assert reason in info.value.reason


async def test_records_that_cannot_be_encoded_are_permanent() -> None:
    rec = Recorder()
    bad = Reading(
        site="s", gateway="g", run="r", channel="ends in \\", quantity="temperature",
        unit="degC", role="dut", value=1.0, time_ns=T0,
    )
    with pytest.raises(PermanentError, match="line protocol"):
        await mocked(v1(), rec).write([bad])
    assert rec.requests == []


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_configuration_trouble_is_retryable_and_logged_once(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    state = {"status": status}

    def handler(request: httpx.Request) -> httpx.Response:
        if state["status"] == 204:
            return httpx.Response(204)
        return httpx.Response(state["status"], json={"error": "nope"})

    sink = mocked(v1(username="gw", password="hunter2"), handler)
    with caplog.at_level(logging.INFO, logger="gateway.sinks.influxdb.sink"):
        for _ in range(3):
            with pytest.raises(RetryableError, match=str(status)):
                await sink.write(readings(1))
        state["status"] = 204
        await sink.write(readings(1))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert str(status) in messages[0] and "journal" in messages[0]
    assert "again" in messages[1]
    assert "hunter2" not in caplog.text


async def test_unexpected_answers_are_retryable() -> None:
    sink = mocked(v1(), answer(307, "", {"Location": "https://elsewhere/"}))
    with pytest.raises(RetryableError, match="307"):
        await sink.write(readings(1))


async def test_connection_refused_is_retryable() -> None:
    sink = InfluxDBSink(v1(url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(RetryableError, match="cannot reach") as info:
        await sink.write(readings(1))
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    with pytest.raises(RetryableError):
        await sink.ping()
    await sink.aclose()


async def test_timeouts_are_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(RetryableError, match="timed out after 10 s"):
        await mocked(v1(), handler).write(readings(1))


async def test_ping_returns_the_version() -> None:
    sink = mocked(v1(), answer(204, None, {"X-Influxdb-Version": "1.6.7"}))
    assert await sink.ping() == "1.6.7"
    with pytest.raises(RetryableError, match="ping answered 502"):
        await mocked(v1(), answer(502)).ping()


# --- influxd 1.x ------------------------------------------------------------------------


def stored(influxd: InfluxD, db: str = "calibration") -> dict[tuple[str, int], float]:
    rows = influxd.rows('SELECT "value", "channel" FROM "reading"', db)
    return {(row["channel"], row["time"]): float(row["value"]) for row in rows}


def expected(records: list[Reading]) -> dict[tuple[str, int], float]:
    return {(r.channel, r.time_ns): r.value for r in records}


@pytest.mark.integration
@pytest.mark.parametrize("use_gzip", [True, False], ids=["gzip", "plain"])
async def test_v1_writes_10k_readings_exactly(influxd: InfluxD, use_gzip: bool) -> None:
    sink = InfluxDBSink(v1(influxd.url, gzip=use_gzip, batch_size=1000))
    records = readings(10_000, step_ns=1_000_123)
    for i in range(0, len(records), sink.batch_size):
        await sink.write(records[i : i + sink.batch_size])
    await sink.aclose()

    (count,) = influxd.rows('SELECT count("value") FROM "reading"', "calibration")
    assert count["count"] == 10_000
    assert stored(influxd) == expected(records)
    (tags,) = influxd.rows(
        'SELECT "value", site, gateway, run, quantity, unit, role FROM "reading" LIMIT 1',
        "calibration",
    )
    assert {k: tags[k] for k in ("site", "gateway", "run", "quantity", "unit", "role")} == {
        "site": "nmc-lab1", "gateway": "gw01", "run": "RC-2026-0042",
        "quantity": "temperature", "unit": "degC", "role": "dut",
    }


@pytest.mark.integration
async def test_v1_health_samples(influxd: InfluxD) -> None:
    sink = InfluxDBSink(v1(influxd.url))
    h = HealthSample("nmc-lab1", "gw01", T0, {"journal_pending": 0, "received": 5,
                                             "rejected": 1, "delivered": 4})
    await sink.write([*readings(2), h])
    await sink.aclose()
    (row,) = influxd.rows('SELECT * FROM "gateway_health"', "calibration")
    assert row["delivered"] == 4 and row["rejected"] == 1


@pytest.mark.integration
async def test_v1_ping(influxd: InfluxD) -> None:
    sink = InfluxDBSink(v1(influxd.url))
    assert (await sink.ping()).startswith("1.")
    await sink.aclose()


@pytest.mark.integration
async def test_v1_basic_auth(tmp_path: Path) -> None:
    with InfluxD(tmp_path / "influxd", auth=True) as influxd:
        influxd.create_database("calibration")
        influxd.create_user("gw", "gw-password")
        records = readings(100)

        writer = InfluxDBSink(v1(influxd.url, username="gw", password="gw-password"))
        with pytest.raises(RetryableError, match="403"):  # no grant yet
            await writer.write(records)
        influxd.grant("WRITE", "calibration", "gw")
        await writer.write(records)
        await writer.aclose()

        anonymous = InfluxDBSink(v1(influxd.url))
        with pytest.raises(RetryableError, match="401"):
            await anonymous.write(records)
        await anonymous.aclose()

        wrong = InfluxDBSink(v1(influxd.url, username="gw", password="wrong"))
        with pytest.raises(RetryableError, match="401") as info:
            await wrong.write(records)
        assert "wrong" not in str(info.value)
        await wrong.aclose()

        assert stored(influxd) == expected(records)


@pytest.mark.integration
async def test_v1_unknown_database_is_retryable_until_created(influxd: InfluxD) -> None:
    sink = InfluxDBSink(v1(influxd.url).model_copy(update={"database": "later"}))
    with pytest.raises(RetryableError, match="404"):
        await sink.write(readings(5))
    influxd.create_database("later")
    await sink.write(readings(5))
    await sink.aclose()
    assert len(stored(influxd, "later")) == 5


@pytest.mark.integration
async def test_v1_field_type_conflict_is_permanent_with_influxds_reason(influxd: InfluxD) -> None:
    r = influxd.write_raw(f'reading,channel=x value="text" {T0}'.encode(), "calibration")
    assert r.status_code == 204, r.text
    sink = InfluxDBSink(v1(influxd.url))
    with pytest.raises(PermanentError) as info:
        await sink.write(readings(3))
    await sink.aclose()
    assert "field type conflict" in info.value.reason
    assert "already exists as type string" in info.value.reason
    # A field's type belongs to the measurement (per shard), not to the series: every
    # float of the batch was dropped, in whichever series.
    rows = influxd.rows('SELECT "value" FROM "reading"', "calibration")
    assert [row["value"] for row in rows] == ["text"]


@pytest.mark.integration
async def test_v1_partial_write_keeps_the_good_points(influxd: InfluxD) -> None:
    """influxd 1.6 answers 400 "partial write" yet stores the points it could: here those
    inside a one-hour retention policy, while the older ones are dropped.  Writing the
    good ones again (as the runner does when it splits the batch) changes nothing."""
    influxd.query('CREATE RETENTION POLICY "hour" ON "calibration" DURATION 1h REPLICATION 1')
    now = time.time_ns()
    old = readings(3, t0=now - 3 * 3600 * 10**9)
    new = readings(4, t0=now - 10**9)
    sink = InfluxDBSink(v1(influxd.url, retention_policy="hour"))
    with pytest.raises(PermanentError) as info:
        await sink.write([*old, *new])
    assert info.value.reason == "partial write: points beyond retention policy dropped=3"

    rows = influxd.rows('SELECT "value", "channel" FROM "hour"."reading"', "calibration")
    assert {(row["channel"], row["time"]): row["value"] for row in rows} == expected(new)
    await sink.write(new)
    rows = influxd.rows('SELECT "value", "channel" FROM "hour"."reading"', "calibration")
    assert len(rows) == len(new)
    await sink.aclose()


@pytest.mark.integration
async def test_v1_survives_influxd_being_killed_and_restarted(influxd: InfluxD) -> None:
    sink = InfluxDBSink(v1(influxd.url, timeout="2s"))
    first, second = readings(50), readings(50, t0=T0 + 10**12)
    await sink.write(first)
    influxd.kill()
    with pytest.raises(RetryableError):
        await sink.write(second)
    influxd.start()
    await sink.write(second)  # a fresh connection: the pooled one died with the server
    await sink.aclose()
    assert stored(influxd) == expected(first + second)


# --- VictoriaMetrics (/api/v2/write) ----------------------------------------------------


def exported(victoria: VictoriaMetrics, n: int) -> dict[tuple[str, int], float]:
    series = victoria.export('{__name__="reading_value"}', min_samples=n)
    out = {}
    for s in series:
        for value, ms in zip(s["values"], s["timestamps"], strict=True):
            out[(s["metric"]["channel"], ms * 1_000_000)] = float(value)
    return out


@pytest.mark.integration
@pytest.mark.parametrize("use_gzip", [True, False], ids=["gzip", "plain"])
async def test_v2_writes_to_victoria_metrics_exactly(
    victoria: VictoriaMetrics, use_gzip: bool
) -> None:
    # VictoriaMetrics keeps milliseconds, about 12 significant digits, and refuses
    # samples outside its retention: recent, whole-ms readings with 4 decimals.
    t0 = time.time_ns() // 1_000_000 * 1_000_000 - 3600 * 10**9
    records = readings(5000, t0=t0, step_ns=1_000_000)
    sink = InfluxDBSink(v2(victoria.url, gzip=use_gzip, batch_size=1000))
    for i in range(0, len(records), sink.batch_size):
        await sink.write(records[i : i + sink.batch_size])
    assert (await sink.ping()) != ""
    await sink.aclose()

    assert exported(victoria, len(records)) == expected(records)
    (labels,) = victoria.export('{__name__="reading_value", channel="dut0-t"}')[:1]
    assert labels["metric"] == {
        "__name__": "reading_value", "site": "nmc-lab1", "gateway": "gw01",
        "run": "RC-2026-0042", "channel": "dut0-t", "quantity": "temperature",
        "unit": "degC", "role": "dut",
    }
