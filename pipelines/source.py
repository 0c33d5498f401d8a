"""Read a run's readings back: InfluxDB 1.x over InfluxQL (SPEC sections 4 and 5).

One query per run,

    SELECT "value" FROM "reading" WHERE "run" = '...' AND time >= '...' AND time < '...'
        GROUP BY "channel", "quantity", "unit", "role"

asked with ``epoch=ns`` and ``chunked=true``: the server answers with one JSON document per
line, each holding up to ``chunk_size`` points of one series (a series may span several
chunks, marked ``partial``).  Every chunk is parsed with `json.loads` and its ``values`` go
straight into numpy arrays, so memory stays near 16 bytes a point plus one chunk of JSON.

The same query works against InfluxDB 2.x/3.x through their v1 compatibility API (with a
token); it needs a server that speaks InfluxQL.

``kind = "local"`` reads the demo's SQLite store instead (`gateway.sinks.local.read_run`).

``[source] site`` and ``gateway`` narrow the readings to one site and/or gateway (InfluxDB tags
`site`, `gateway`).  `run_origins` says which (site, gateway) recorded the run and each one's
newest reading (a run spanning several is named, and a run still recording is recognised);
`known_runs` lists the runs a source holds (for a run id that has no readings).

`live_windows` reads the stable windows a remote run recorded at the edge (measurement
`run_window`, README "Remote runs": tag `channel`, fields `start` and `end` in ns), by
channel, for `pipelines.run.compute(live_windows=...)`: the calibration points are then the
ones the engineer saw accepted live.

While a long read goes on (more than ``PROGRESS_AFTER_S``), a progress display (rich) on
stderr shows the readings and series read so far, their rate and the time elapsed; the
answer is streamed without a total, so the bar pulses rather than fills.  Only when stderr
is a terminal: in a pipe, a log file or under systemd nothing is drawn, and the display
is removed when the read ends (the log line stays).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TextIO

import httpx
import numpy as np
import numpy.typing as npt

from gateway.errors import RemotecalError
from pipelines.config import PipelineConfig, RunConfig, SourceConfig

__all__ = [
    "PROGRESS_AFTER_S",
    "ChannelData",
    "RunOrigin",
    "influx_client",
    "influxql_string",
    "known_runs",
    "live_windows",
    "load_run",
    "query_readings",
    "read_local",
    "run_condition",
    "run_origins",
]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PROGRESS_AFTER_S = 1.0
"""A read that takes longer than this shows its progress (on a terminal)."""


class ChannelData(NamedTuple):
    """All readings of one channel in a run, in time order."""

    t_s: FloatArray
    """Sample times [s since the Unix epoch, UTC]."""
    values: FloatArray
    """Readings [unit]."""
    quantity: str
    unit: str
    role: str


def influxql_string(text: str) -> str:
    """An InfluxQL string literal, quotes included."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc3339(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def influx_client(source: SourceConfig) -> httpx.Client:
    """An HTTP client with the source's credentials (basic auth, or a v2-style token)."""
    headers = {"Accept": "application/json"}
    auth: httpx.BasicAuth | None = None
    if source.token is not None:
        headers["Authorization"] = f"Token {source.token.get()}"
    elif source.username and source.password is not None:
        auth = httpx.BasicAuth(source.username, source.password.get())
    return httpx.Client(
        timeout=httpx.Timeout(source.timeout, connect=min(source.timeout, 10.0)),
        headers=headers,
        auth=auth,
        trust_env=False,
    )


def run_condition(run: RunConfig) -> str:
    """InfluxQL condition of a run: its tag `run`, and its bounds [start, end) when given."""
    where = [f'"run" = {influxql_string(run.id)}']
    if run.start is not None:
        where.append(f"time >= {influxql_string(_rfc3339(run.start))}")
    if run.end is not None:
        where.append(f"time < {influxql_string(_rfc3339(run.end))}")
    return " AND ".join(where)


def _measurement(cfg: PipelineConfig) -> str:
    measurement = _identifier("reading")
    if cfg.source.retention_policy:
        measurement = f"{_identifier(cfg.source.retention_policy)}.{measurement}"
    return measurement


def _readings_condition(cfg: PipelineConfig) -> str:
    """The run's condition, narrowed to [source] site / gateway when given."""
    where = [run_condition(cfg.run)]
    if cfg.source.site is not None:
        where.append(f'"site" = {influxql_string(cfg.source.site)}')
    if cfg.source.gateway is not None:
        where.append(f'"gateway" = {influxql_string(cfg.source.gateway)}')
    return " AND ".join(where)


def _readings_query(cfg: PipelineConfig) -> str:
    return (
        f'SELECT "value" FROM {_measurement(cfg)} WHERE {_readings_condition(cfg)} '
        'GROUP BY "channel", "quantity", "unit", "role"'
    )


def _server_error(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:200]
    if isinstance(data, dict):
        if "error" in data:
            return str(data["error"])
        for result in data.get("results", []):
            if isinstance(result, dict) and "error" in result:
                return str(result["error"])
    return body.strip()[:200]


class _Series:
    """Chunks of one series, joined at the end."""

    __slots__ = ("t", "v")

    def __init__(self) -> None:
        self.t: list[npt.NDArray[np.int64]] = []
        self.v: list[FloatArray] = []

    def add(self, values: list[list[Any]], t_col: int, v_col: int) -> None:
        n = len(values)
        t = np.fromiter((row[t_col] for row in values), dtype=np.int64, count=n)
        v = np.fromiter(
            (np.nan if row[v_col] is None else row[v_col] for row in values), dtype=np.float64, count=n
        )
        self.t.append(t)
        self.v.append(v)


@contextmanager
def _progress(run: str, stream: TextIO | None, after_s: float) -> Iterator[Callable[[int, int], None]]:
    """A callback ``update(readings, series)``; draws on ``stream`` (rich, transient) once
    ``after_s`` have passed, and only when ``stream`` is a terminal."""
    if stream is None or not stream.isatty():
        yield lambda readings, n_series: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("reading run {task.fields[run]} from InfluxDB"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} readings in {task.fields[series]} series"),
        TextColumn("({task.fields[rate]:,.0f}/s)"),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
    )
    task = progress.add_task("read", total=None, run=run, series=0, rate=0.0)
    began = time.monotonic()
    started = False

    def update(readings: int, n_series: int) -> None:
        nonlocal started
        elapsed = time.monotonic() - began
        if not started:
            if elapsed < after_s:
                return
            progress.start()
            started = True
        progress.update(task, completed=readings, series=n_series, rate=readings / max(elapsed, 1e-9))

    try:
        yield update
    finally:
        if started:
            progress.stop()


def query_readings(
    cfg: PipelineConfig,
    *,
    progress_to: TextIO | None = None,
    progress_after_s: float = PROGRESS_AFTER_S,
) -> dict[str, ChannelData]:
    """Every reading of run ``cfg.run.id`` within its bounds, by channel.

    A read longer than ``progress_after_s`` shows its progress on ``progress_to`` (default:
    sys.stderr) when that is a terminal (module docstring).

    Raises RemotecalError (one line, naming the URL) when the server cannot be reached,
    refuses the credentials, does not know the database, or answers with an error; and when
    one channel appears under two quantities, units or roles.
    """
    source = cfg.source
    if source.url is None or source.database is None:
        raise RemotecalError("source: kind = 'influxdb' needs url and database")
    url = f"{source.url}/query"
    params = {
        "db": source.database,
        "q": _readings_query(cfg),
        "epoch": "ns",
        "chunked": "true",
        "chunk_size": str(source.chunk_size),
    }
    series: dict[tuple[str, str, str, str], _Series] = {}
    points = 0
    stream = sys.stderr if progress_to is None else progress_to
    try:
        with (
            _progress(cfg.run.id, stream, progress_after_s) as show,
            influx_client(source) as client,
            client.stream("POST", url, data=params) as r,
        ):
            if r.status_code == 401 or r.status_code == 403:
                raise RemotecalError(f"InfluxDB at {source.url} refused the credentials ({r.status_code})")
            if r.status_code != 200:
                r.read()
                raise RemotecalError(
                    f"InfluxDB at {source.url} answered {r.status_code}: {_server_error(r.text)}"
                )
            for line in r.iter_lines():
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    raise RemotecalError(
                        f"InfluxDB at {source.url} sent something that is not JSON: {line[:80]!r}"
                    ) from None
                if "error" in doc:
                    raise RemotecalError(f"InfluxDB at {source.url}: {doc['error']}")
                for result in doc.get("results", []):
                    if "error" in result:
                        raise RemotecalError(
                            f"InfluxDB at {source.url}, database {source.database!r}: {result['error']}"
                        )
                    for s in result.get("series", []):
                        tags = s.get("tags", {})
                        key = tuple(tags.get(k, "") for k in ("channel", "quantity", "unit", "role"))
                        columns = s["columns"]
                        values = s.get("values") or []
                        series.setdefault(key, _Series()).add(
                            values, columns.index("time"), columns.index("value")
                        )
                        points += len(values)
                show(points, len(series))
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise RemotecalError(f"cannot read from InfluxDB at {source.url}: {reason}") from None
    log.info("read %d readings of run %s in %d series from %s", points, cfg.run.id, len(series), source.url)
    return _assemble(series)


def _assemble(series: dict[tuple[str, str, str, str], _Series]) -> dict[str, ChannelData]:
    out: dict[str, ChannelData] = {}
    for (channel, quantity, unit, role), s in series.items():
        if channel in out:
            other = out[channel]
            raise RemotecalError(
                f"channel {channel!r} appears as {other.quantity}/{other.unit}/{other.role} and as "
                f"{quantity}/{unit}/{role} in the same run; give each channel one meaning"
            )
        t_ns = np.concatenate(s.t) if s.t else np.zeros(0, dtype=np.int64)
        v = np.concatenate(s.v) if s.v else np.zeros(0)
        keep = np.isfinite(v)
        if not keep.all():
            t_ns, v = t_ns[keep], v[keep]
        if t_ns.size > 1 and np.any(np.diff(t_ns) < 0):
            order = np.argsort(t_ns, kind="stable")
            t_ns, v = t_ns[order], v[order]
        # Epoch seconds as float64 keep sub-microsecond resolution for centuries around now.
        out[channel] = ChannelData(t_ns.astype(np.float64) / 1e9, v, quantity, unit, role)
    return out


def _ns(t: datetime | None) -> int | None:
    if t is None:
        return None
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000


def read_local(cfg: PipelineConfig) -> dict[str, ChannelData]:
    """The run's readings from the demo's local store (`gateway.sinks.local`)."""
    from gateway.sinks.local.store import read_run

    if cfg.source.path is None:
        raise RemotecalError("source: kind = 'local' needs path")
    channels = read_run(cfg.source.path, cfg.run.id, _ns(cfg.run.start), _ns(cfg.run.end))
    out = {}
    for name, ch in channels.items():
        t = np.asarray(ch.t_s, dtype=np.float64)
        v = np.asarray(ch.values, dtype=np.float64)
        keep = np.isfinite(v)
        out[name] = ChannelData(t[keep], v[keep], ch.quantity, ch.unit, ch.role)
    log.info("read %d channel(s) of run %s from %s", len(out), cfg.run.id, cfg.source.path)
    return out


class RunOrigin(NamedTuple):
    """One (site, gateway) that recorded readings of the run, and its newest one."""

    site: str
    gateway: str
    newest_s: float
    """Time of its newest reading of the run [s since the epoch, UTC]."""


def _influx_series(cfg: PipelineConfig, q: str) -> list[dict[str, Any]]:
    """The series of one (small, unchunked) InfluxQL answer; RemotecalError as query_readings."""
    source = cfg.source
    try:
        with influx_client(source) as client:
            r = client.post(f"{source.url}/query", data={"db": source.database or "", "q": q, "epoch": "ns"})
    except httpx.HTTPError as exc:
        why = str(exc) or type(exc).__name__
        raise RemotecalError(f"cannot read from InfluxDB at {source.url}: {why}") from None
    if r.status_code != 200:
        raise RemotecalError(f"InfluxDB at {source.url} answered {r.status_code}: {_server_error(r.text)}")
    out: list[dict[str, Any]] = []
    for result in r.json().get("results", []):
        if "error" in result:
            raise RemotecalError(f"InfluxDB at {source.url}, database {source.database!r}: {result['error']}")
        out += result.get("series", [])
    return out


def _local(cfg: PipelineConfig, q: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """A query of the demo's local store (table `reading` of `gateway.sinks.local.store`)."""
    import sqlite3

    path = cfg.source.path
    if path is None or not path.exists():
        raise RemotecalError(f"{path}: no local store here")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(q, args).fetchall()
    except sqlite3.Error as exc:
        raise RemotecalError(f"{path}: cannot read the local store: {exc}") from None
    finally:
        db.close()


def run_origins(cfg: PipelineConfig) -> list[RunOrigin]:
    """Each (site, gateway) with readings of the run (within its bounds and [source] filters),
    with its newest reading's time; sorted."""
    if cfg.source.kind == "influxdb":
        series = _influx_series(cfg, f'SELECT last("value") FROM {_measurement(cfg)} WHERE '
                                     f'{_readings_condition(cfg)} GROUP BY "site", "gateway"')
        origins = [RunOrigin(s.get("tags", {}).get("site", ""), s.get("tags", {}).get("gateway", ""),
                             s["values"][0][0] / 1e9) for s in series if s.get("values")]
        return sorted(origins)
    start, end = _ns(cfg.run.start), _ns(cfg.run.end)
    rows = _local(cfg, "SELECT site, gateway, max(time_ns) FROM reading WHERE run = ? AND time_ns >= ? "
                       "AND time_ns < ? GROUP BY site, gateway ORDER BY site, gateway",
                  (cfg.run.id, -(2**63) if start is None else start, 2**63 - 1 if end is None else end))
    return [RunOrigin(str(site or ""), str(gw or ""), t / 1e9) for site, gw, t in rows
            if (cfg.source.site is None or site == cfg.source.site)
            and (cfg.source.gateway is None or gw == cfg.source.gateway)]


def known_runs(cfg: PipelineConfig) -> list[str]:
    """Every run id the source holds readings of, sorted."""
    if cfg.source.kind == "influxdb":
        series = _influx_series(cfg, f'SHOW TAG VALUES FROM {_measurement(cfg)} WITH KEY = "run"')
        return sorted({str(v[1]) for s in series for v in s.get("values", [])})
    return sorted(str(r[0]) for r in _local(cfg, "SELECT DISTINCT run FROM reading", ()))


Windows = dict[str, list[tuple[float, float]]]


def live_windows(cfg: PipelineConfig) -> Windows:
    """The run's live windows (`run_window` points within the run's bounds and [source]
    filters) by channel, as (start, end) [s since the epoch], in time order; {} when the run
    recorded none (not a remote run, or `[source] live_windows = false`)."""
    if not cfg.source.live_windows:
        return {}
    out: Windows = {}
    if cfg.source.kind == "influxdb":
        measurement = _identifier("run_window")
        if cfg.source.retention_policy:
            measurement = f"{_identifier(cfg.source.retention_policy)}.{measurement}"
        q = f'SELECT "start", "end" FROM {measurement} WHERE {_readings_condition(cfg)} GROUP BY "channel"'
        for s in _influx_series(cfg, q):
            channel = s.get("tags", {}).get("channel", "")
            cols = s["columns"]
            i0, i1 = cols.index("start"), cols.index("end")
            out.setdefault(channel, []).extend((int(v[i0]) / 1e9, int(v[i1]) / 1e9)
                                               for v in s.get("values") or []
                                               if v[i0] is not None and v[i1] is not None)
    else:
        start, end = _ns(cfg.run.start), _ns(cfg.run.end)
        try:
            rows = _local(cfg, "SELECT site, gateway, tags, fields FROM point WHERE measurement = "
                               "'run_window' AND run = ? AND time_ns >= ? AND time_ns < ? ORDER BY time_ns",
                          (cfg.run.id, -(2**63) if start is None else start,
                           2**63 - 1 if end is None else end))
        except RemotecalError as exc:
            if "no such table" in str(exc):  # a store written before points existed
                return {}
            raise
        for site, gw, tags, fields in rows:
            if (cfg.source.site is not None and site != cfg.source.site) or \
                    (cfg.source.gateway is not None and gw != cfg.source.gateway):
                continue
            f = json.loads(fields)
            out.setdefault(json.loads(tags).get("channel", ""), []).append((f["start"] / 1e9, f["end"] / 1e9))
    for channel, windows in out.items():
        windows.sort()
        log.info("run %s: %d window(s) of %s recorded live", cfg.run.id, len(windows), channel)
    return out


def load_run(cfg: PipelineConfig) -> dict[str, ChannelData]:
    """The run's readings from the configured source, by channel."""
    if cfg.source.kind == "influxdb":
        return query_readings(cfg)
    return read_local(cfg)
