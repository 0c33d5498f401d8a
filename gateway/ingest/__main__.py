"""`python -m gateway.ingest ingest -c CENTRAL.toml` / `... keys new ...`: the same commands
as `remotecal ingest` and `remotecal keys`, usable before (and besides) gateway.cli."""

from __future__ import annotations

import argparse
import logging
import sys

from gateway.cli import _config_problems, setup_logging
from gateway.errors import ConfigError, RemotecalError
from gateway.ingest.cli import register


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.ingest")
    register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    if not logging.getLogger().handlers:
        setup_logging("info")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        return _config_problems(exc, getattr(args, "config", "") or "config")
    except RemotecalError as exc:
        print(f"remotecal: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
