"""The `simulate` subcommand; gateway.cli adds it through its `_EXTENSIONS` list."""

from __future__ import annotations

import argparse
import asyncio
import sys

__all__ = ["register"]


def cmd_simulate(args: argparse.Namespace) -> int:
    from firmware_bridge.simulate import SimulationError, load_sim_config, run_simulation

    cfg = load_sim_config(args.config)
    try:
        asyncio.run(run_simulation(cfg))
    except SimulationError as exc:  # a port in use, a serial device that is not there
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("simulate", help="run virtual devices (a chamber and instruments in it)")
    p.add_argument("-c", "--config", required=True, help="SIM.toml")
    p.set_defaults(func=cmd_simulate)
