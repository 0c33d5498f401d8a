"""`remotecal dashboards build --out DIR` and `remotecal dashboards push --url URL`.

gateway.cli adds these through `register(subparsers)`.  The push takes its API token from
the environment variable GRAFANA_TOKEN (a service-account token with the Editor role), so
it never appears in a process list or shell history; `http://user:password@host:3000`
works too.
"""

from __future__ import annotations

import argparse
import os

from gateway.errors import RemotecalError

__all__ = ["register"]

TOKEN_VARIABLE = "GRAFANA_TOKEN"


def cmd_build(args: argparse.Namespace) -> int:
    from dashboards.build import build

    try:
        written = build(args.out)
    except OSError as exc:
        raise RemotecalError(f"{args.out}: cannot write the dashboards: {exc.strerror or exc}") from exc
    for path in written:
        print(path)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from dashboards.push import push

    for url in push(args.url, os.environ.get(TOKEN_VARIABLE) or None, timeout=args.timeout):
        print(f"pushed {url}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dashboards", help="Grafana dashboards: build JSON and provisioning, or push")
    actions = p.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="write dashboard JSON and Grafana provisioning files")
    build.add_argument("--out", required=True, help="output folder")
    build.set_defaults(func=cmd_build)
    push = actions.add_parser(
        "push", help=f"save the dashboards in Grafana through its HTTP API (token: ${TOKEN_VARIABLE})"
    )
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    push.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    push.set_defaults(func=cmd_push)
