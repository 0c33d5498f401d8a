"""`remotecal` command line (SPEC section 2).

User errors (bad config, unreachable server, bad file) print one line naming the cause and
the key or file, and exit non-zero: 2 for a config problem, 1 for anything else.  Commands
translate the errors they expect into RemotecalError; as a backstop, an OSError a user can
cause (a path that cannot be written, a port in use, a host that cannot be reached) becomes
one line too.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from gateway import __version__
from gateway.errors import ConfigError, RemotecalError, os_error_text

__all__ = ["main"]

log = logging.getLogger("remotecal")


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z")


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UTCFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# What a user's path, port or network causes; other errnos (EBADF, EINVAL...) are bugs.
_USER_ERRNOS = frozenset({
    errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
    errno.ENOTEMPTY, errno.ENAMETOOLONG, errno.ELOOP, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
    errno.EXDEV, errno.EBUSY, errno.ETXTBSY, errno.ENODEV, errno.ENXIO,
    errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.ECONNREFUSED, errno.ECONNRESET,
    errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.ETIMEDOUT,
})


def _user_caused(exc: OSError) -> bool:
    return isinstance(exc, socket.gaierror) or exc.errno in _USER_ERRNOS


def _config_problems(exc: ConfigError, path: str | None) -> int:
    """One line per problem, prefixed with the config file unless the line names it already;
    a command without a config (`keys new`) prints its lines as they are: they name their file."""
    for line in exc.problems:
        print(f"{path}: {line}" if path and not line.startswith(path) else line, file=sys.stderr)
    return 2


def cmd_gateway_check(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    cfg = load_config(args.config)
    g = cfg.gateway
    print(f"{args.config}: ok - gateway {g.site}/{g.id}, run {g.run}, "
          f"{len(cfg.sources.mqtt)} MQTT, {len(cfg.sources.modbus)} Modbus and "
          f"{len(cfg.sources.instrument)} instrument source(s), sinks {', '.join(cfg.sink_names())}, "
          f"journal in {g.data_dir}")
    return 0


def cmd_gateway_run(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.runtime import Gateway

    cfg = load_config(args.config)
    setup_logging(args.log_level or cfg.gateway.log_level)
    asyncio.run(Gateway(cfg).run())
    return 0


def cmd_gateway_quarantine(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.journal import Journal

    cfg = load_config(args.config)
    total, rows = Journal.read_quarantine(cfg.gateway.data_dir / "journal.db", args.limit)
    if args.json:
        for r in rows:
            print(json.dumps({
                "id": r.id,
                "time": datetime.fromtimestamp(r.time_ns / 1e9, UTC).isoformat(),
                "source": r.source, "topic": r.topic, "reason": r.reason,
                "payload": r.payload.decode("utf-8", "backslashreplace"),
            }))
        return 0
    print(f"{total} quarantined input(s); the latest {len(rows)}:")
    for r in rows:
        t = datetime.fromtimestamp(r.time_ns / 1e9, UTC).isoformat(timespec="milliseconds")
        payload = r.payload[:80].decode("utf-8", "backslashreplace")
        print(f"{t}  {r.source}  {r.topic}  {r.reason}  | {payload}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remotecal", description="Remote-calibration gateway and data logger")
    p.add_argument("--version", action="version", version=f"remotecal {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    gw = sub.add_parser("gateway", help="run or inspect an edge gateway")
    gws = gw.add_subparsers(dest="action", required=True)
    run = gws.add_parser("run", help="run until SIGTERM/SIGINT, then flush and exit 0")
    run.add_argument("-c", "--config", required=True, help="site config (TOML)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_gateway_run)
    chk = gws.add_parser("check", help="validate a config; exit 2 on error")
    chk.add_argument("-c", "--config", required=True)
    chk.set_defaults(func=cmd_gateway_check)
    q = gws.add_parser("quarantine", help="list rejected input kept in the journal")
    q.add_argument("-c", "--config", required=True)
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.set_defaults(func=cmd_gateway_quarantine)

    for register in _extensions():
        register(sub)
    return p


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommands that live with their own package (one folder per concern)."""
    from dashboards.cli import register as dashboards
    from firmware_bridge.cli import register as simulate
    from gateway.demo import register as demo
    from gateway.ingest.cli import register as ingest
    from pipelines.cli import register as pipeline

    return [simulate, pipeline, demo, dashboards, ingest]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        setup_logging("info")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        return _config_problems(exc, getattr(args, "config", None))
    except RemotecalError as exc:
        print(f"remotecal: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the backstop: a path or port a command did not expect to fail
        if not _user_caused(exc):
            raise
        print(f"remotecal: {os_error_text(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
