"""Writes batches of records to InfluxDB over HTTP, and says how a failure should be handled.

Every outcome of a write is one of four, for the delivery runner to act on:

    2xx                                   delivered
    connection error, timeout, 5xx,       RetryableError: the same batch later
      401/403/404 (credentials, database),
      any other unexpected answer
    429, or 503 with Retry-After          ThrottledError: the same batch after `retry_after` s
    400, 413, 422                         PermanentError: the server refuses (some of) these
                                          points; the runner splits the batch to find them
      ... "field type conflict"           SchemaConflictError: it refuses every point of the
                                          series in that shard (a field of another type); the
                                          runner holds the series instead of quarantining it

401, 403 and 404 are configuration trouble an operator can fix (a password, a grant, a
database to create); retrying keeps the readings in the journal until then, where refusing
them would lose them.  The sink logs such trouble once, and once more when it clears.

InfluxDB 1.x answers 400 "partial write" after writing the points it could; writing those
again when the runner retries the rest is harmless, as a point with the same series and time
replaces the stored one.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime

import httpx

from gateway.errors import PermanentError, RetryableError, SchemaConflictError, SinkError, ThrottledError
from gateway.reading import Record
from gateway.sinks.influxdb.config import InfluxDBSinkConfig
from gateway.sinks.influxdb.lineprotocol import LineEncoder

__all__ = ["DEFAULT_RETRY_AFTER_S", "InfluxDBSink"]

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 5.0
"""How long to wait after a 429 that does not say (InfluxDB Cloud always does)."""

_SECONDS = re.compile(r"\d+(?:\.\d*)?")
_GZIP_LEVEL = 1  # 5000 readings: 17x smaller in 1.5 ms; level 6 gives 22x in 4.4 ms
_GZIP_IN_THREAD_BYTES = 1 << 20  # zlib lets go of the GIL: big bodies do not stall the loop
_MAX_REASON_CHARS = 1000
_PERMANENT = frozenset({400, 413, 422})
_TYPE_CONFLICT = "field type conflict"
"""InfluxDB 1.x, 2.x and 3.x all say so when a field has another type in the shard."""
_CONFIG_TROUBLE = {
    401: "the server refuses the credentials (check username/password or token)",
    403: "the credentials may not write here (check the grants)",
    404: "the database, bucket or org does not exist, or the URL is wrong",
}


class InfluxDBSink:
    """The `Sink` for InfluxDB (1.x /write, 2.x /api/v2/write, and compatible servers).

    `transport` replaces the network, for tests (`httpx.MockTransport`).
    """

    def __init__(
        self,
        config: InfluxDBSinkConfig,
        *,
        name: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.name = name or config.name or "influxdb"
        self.batch_size = config.batch_size
        self.flush_interval_s = config.flush_interval
        self.max_retry_interval_s = config.max_retry_interval
        self._encoder = LineEncoder()
        self._trouble: str | None = None

        headers = {"Content-Type": "text/plain; charset=utf-8"}
        auth: httpx.BasicAuth | None = None
        if config.token is not None:
            headers["Authorization"] = f"Token {config.token.get()}"
        elif config.username is not None and config.password is not None:
            auth = httpx.BasicAuth(config.username, config.password.get())
        if config.api == "v1":
            self._write_path = "/write"
            self._params = {"db": config.database or "", "precision": "ns"}
            if config.retention_policy:
                self._params["rp"] = config.retention_policy
        else:
            self._write_path = "/api/v2/write"
            self._params = {
                "org": config.org or "",
                "bucket": config.bucket or "",
                "precision": "ns",
            }
        self._client = httpx.AsyncClient(
            base_url=config.url,
            headers=headers,
            auth=auth,
            timeout=config.timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"InfluxDBSink(name={self.name!r}, url={self.config.url!r}, api={self.config.api!r})"

    async def write(self, records: Sequence[Record]) -> None:
        """Deliver every record, or raise a `SinkError` subclass (see the module docstring)."""
        if not records:
            return
        try:
            body = self._encoder.encode_batch(records)
        except (ValueError, TypeError) as exc:
            raise PermanentError(f"cannot encode as line protocol: {exc}") from None
        headers = {}
        if self.config.gzip:
            if len(body) >= _GZIP_IN_THREAD_BYTES:
                body = await asyncio.to_thread(gzip.compress, body, _GZIP_LEVEL)
            else:
                body = gzip.compress(body, _GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        response = await self._request(
            "POST", self._write_path, params=self._params, content=body, headers=headers
        )
        self._raise_for_outcome(response, len(records))

    async def ping(self) -> str:
        """Check that the server answers; return its version ("unknown" if it does not say).

        Only reachability: credentials and the database are first tried by a write.
        """
        response = await self._request("GET", "/ping")
        if not response.is_success:
            raise RetryableError(
                f"{self.name}: {self.config.url}/ping answered "
                f"{response.status_code} {_reason(response)}"
            )
        return response.headers.get("X-Influxdb-Version", "unknown")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One HTTP exchange, with httpx's exceptions translated into ours."""
        try:
            return await self._client.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise RetryableError(
                f"{self.name}: {self.config.url} timed out after {self.config.timeout:g} s "
                f"({type(exc).__name__})"
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:  # often: another protocol's port
            raise RetryableError(
                f"{self.name}: {self.config.url} ended the connection without an HTTP answer "
                f"({str(exc) or type(exc).__name__}): is the port right? InfluxDB listens on 8086; an MQTT "
                "broker (1883) does this"
            ) from exc
        except httpx.HTTPError as exc:
            raise RetryableError(
                f"{self.name}: cannot reach {self.config.url}: {str(exc) or type(exc).__name__}"
            ) from exc

    def _raise_for_outcome(self, response: httpx.Response, n: int) -> None:
        status = response.status_code
        if response.is_success:
            if self._trouble is not None:
                log.info("%s: writes succeed again", self.name)
                self._trouble = None
            return
        reason = _reason(response)
        where = f"{self.name}: {response.request.method} {response.request.url.path}"
        if status == 429 or (status == 503 and "Retry-After" in response.headers):
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise ThrottledError(f"{where} throttled ({status}): {reason}", retry_after)
        if status in _PERMANENT:
            if status == 413:
                reason = f"request too large ({n} records): {reason}"
            if _TYPE_CONFLICT in reason:
                raise SchemaConflictError(reason)
            raise PermanentError(reason)
        error: SinkError
        if status in _CONFIG_TROUBLE:
            error = RetryableError(f"{where}: {status}, {_CONFIG_TROUBLE[status]}: {reason}")
            if self._trouble != str(error):
                log.error("%s; keeping the readings in the journal until it is fixed", error)
                self._trouble = str(error)
        elif status >= 500:
            error = RetryableError(f"{where}: server error {status}: {reason}")
        else:
            error = RetryableError(f"{where}: unexpected answer {status}: {reason}")
        raise error


def _reason(response: httpx.Response) -> str:
    """The server's own words: InfluxDB 1.x `{"error": ...}`, 2.x `{"message": ...}`."""
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])[:_MAX_REASON_CHARS]
    header = response.headers.get("X-Influxdb-Error")
    if header:
        return header[:_MAX_REASON_CHARS]
    return text[:_MAX_REASON_CHARS] or response.reason_phrase


def _retry_after(value: str | None) -> float:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110, 10.2.3)."""
    if value is None:
        return DEFAULT_RETRY_AFTER_S
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return DEFAULT_RETRY_AFTER_S
    if when.tzinfo is None:
        return DEFAULT_RETRY_AFTER_S
    return max(0.0, when.timestamp() - time.time())
