"""What answers at a host:port that did not speak the protocol we expected - the usual cause is
a port of another service (InfluxDB's 8086 on an MQTT URL, the broker's 1883 on an InfluxDB
URL), and the log line should say so instead of guessing at protocol versions.

`http_server(host, port, ssl)` asks with one `HEAD / HTTP/1.0` and says whether an HTTP server
answered; `looks_like_http(data)` judges the first bytes a server sent unasked.  Hints name
the usual ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as ssl_module

__all__ = ["MQTT_PORTS", "http_server", "http_server_sync", "looks_like_http", "not_mqtt"]

MQTT_PORTS = "MQTT brokers listen on 1883, or 8883 with TLS"
_PROBE = b"HEAD / HTTP/1.0\r\nHost: remotecal\r\n\r\n"


def looks_like_http(data: bytes) -> bool:
    return data[:5] == b"HTTP/"


def not_mqtt(status: str) -> str:
    """The detail for an HTTP server where a broker was expected (the line names host:port)."""
    return f"an HTTP server answers there ({status}): is the port right? ({MQTT_PORTS})"


def _status(data: bytes) -> str | None:
    if not looks_like_http(data):
        return None
    return data.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("latin-1", "replace")[:80]


async def http_server(host: str, port: int, ssl: ssl_module.SSLContext | None = None,
                      timeout: float = 3.0) -> str | None:
    """The status line of the HTTP server at host:port, or None (no answer, or not HTTP)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
            writer.write(_PROBE)
            await writer.drain()
            return _status(await reader.read(256))
    except (OSError, TimeoutError, ssl_module.SSLError, EOFError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def http_server_sync(host: str, port: int, ssl: ssl_module.SSLContext | None = None,
                     timeout: float = 3.0) -> str | None:
    """`http_server` for a thread without an event loop (paho's)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = ssl.wrap_socket(raw, server_hostname=host) if ssl is not None else raw
            sock.settimeout(timeout)
            sock.sendall(_PROBE)
            return _status(sock.recv(256))
    except (OSError, ssl_module.SSLError):
        return None
