"""The `ingest` and `keys` subcommands; gateway.cli adds them through `_extensions()`.

    remotecal ingest -c CENTRAL.toml                 run one ingest worker until SIGTERM
    remotecal ingest -c CENTRAL.toml --quarantine    list the frames it refused, and why
    remotecal keys new --site S --gateway G --out DIR
                                                     a fresh 32-byte key file (mode 0600) for one
                                                     gateway: its [[sinks.mqtt]] key_file, and
                                                     one of the ingest's [ingest] keys
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

__all__ = ["register"]


def cmd_ingest(args: argparse.Namespace) -> int:
    from gateway.cli import setup_logging
    from gateway.ingest.config import load_central_config
    from gateway.ingest.runtime import Ingest
    from gateway.journal import Journal

    cfg = load_central_config(args.config)
    if args.quarantine:
        total, rows = Journal.read_quarantine(cfg.ingest.data_dir / "journal.db", args.limit)
        print(f"{total} refused frame(s); the latest {len(rows)}:")
        for r in rows:
            t = datetime.fromtimestamp(r.time_ns / 1e9, UTC).isoformat(timespec="milliseconds")
            print(f"{t}  {r.topic}  {r.reason}  ({len(r.payload)} bytes kept)")
        return 0
    setup_logging(args.log_level or cfg.ingest.log_level)
    asyncio.run(Ingest(cfg).run())
    return 0


def cmd_keys_new(args: argparse.Namespace) -> int:
    from gateway.keys import new_key_file

    path = new_key_file(args.site, args.gateway, args.out)
    print(f"{path}: new key for {args.site}/{args.gateway} (mode 0600); copy it to the gateway "
          "([[sinks.mqtt]] key_file) and to the ingest's keys folder")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ingest", help="central ingest: signed uplink frames from MQTT into InfluxDB")
    p.add_argument("-c", "--config", required=True, help="CENTRAL.toml")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--quarantine", action="store_true", help="list refused frames and exit")
    p.add_argument("--limit", type=int, default=50, help="with --quarantine: how many")
    p.set_defaults(func=cmd_ingest)

    k = subparsers.add_parser("keys", help="uplink signing keys")
    ks = k.add_subparsers(dest="action", required=True)
    new = ks.add_parser("new", help="write a random 32-byte key file (mode 0600) for one gateway")
    new.add_argument("--site", required=True)
    new.add_argument("--gateway", required=True)
    new.add_argument("--out", required=True, help="folder to write the key file into")
    new.set_defaults(func=cmd_keys_new)
