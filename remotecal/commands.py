"""What each `remotecal` subcommand does (remotecal.cli parses the arguments).

Each command calls into its package's functions (gateway, pipelines, dashboards,
firmware_bridge, remotecal.demo) and imports them when it runs, so `remotecal gateway run`
on an edge gateway never loads the pipeline's or the dashboards' libraries.  Errors a user
can cause reach remotecal.cli.main as ConfigError / RemotecalError.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.errors import RemotecalError
from remotecal.logs import setup_logging

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = [
    "GRAFANA_TOKEN",
    "certificate_sign",
    "certificate_verify",
    "dashboards_build",
    "dashboards_push",
    "demo",
    "gateway_check",
    "gateway_quarantine",
    "gateway_run",
    "gateway_status",
    "ingest",
    "keys_new",
    "pipeline_run",
    "procedure_check",
    "run_command",
    "run_log",
    "simulate",
]

GRAFANA_TOKEN = "GRAFANA_TOKEN"
"""The environment variable `dashboards push` takes its API token from (a service-account token
with the Editor role), so it never appears in a process list or shell history;
`http://user:password@host:3000` works too."""


def _time(time_ns: int, timespec: str = "auto") -> str:
    return datetime.fromtimestamp(time_ns / 1e9, UTC).isoformat(timespec=timespec)


def gateway_check(args: argparse.Namespace) -> int:
    from gateway import registry
    from gateway.config import load_config
    from gateway.preflight import preflight

    cfg = load_config(args.config)
    control = None
    if cfg.control is not None:
        from gateway.control import check_control

        control = check_control(cfg)
    preflight(cfg)  # what `gateway run` would refuse at its start: data_dir, key and TLS files
    g = cfg.gateway
    counts = [f"{len(cfg.sources.blocks(k.name))} {k.title}" for k in registry.SOURCES.values()]
    controllers = [f"{c.name} ({k.name}: {', '.join(sorted(c.quantities()))})"
                   for k in registry.CONTROLLERS.values() for c in cfg.controllers.blocks(k.name)]
    print(f"{args.config}: ok - gateway {g.site}/{g.id}, run {g.run}, "
          f"{', '.join(counts[:-1])}{' and ' if len(counts) > 1 else ''}{counts[-1]} source(s), "
          f"sinks {', '.join(cfg.sink_names())}, "
          + (f"controllers {', '.join(controllers)}, " if controllers else "")
          + f"journal in {g.data_dir}")
    for kind in registry.SOURCES.values():
        for block in cfg.sources.blocks(kind.name):
            for line in kind.describe(block):
                print(f"{args.config}: {line}")
    if control is not None:
        print(f"{args.config}: {control}")
    return 0


def procedure_check(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.errors import ConfigError
    from gateway.procedure import load_procedure, site_problems

    p = load_procedure(args.config)
    if args.site is not None:
        try:
            site = load_config(args.site)
        except ConfigError as exc:  # the site's own problems name the site's file
            for line in exc.problems:
                print(line if line.startswith(args.site) else f"{args.site}: {line}", file=sys.stderr)
            return 2
        problems = site_problems(p, site)
        if problems:
            raise ConfigError([f"{line} (on {args.site})" for line in problems])
    recorded = sum(1 for s in p.steps if not s.final)
    refs = "; ".join(f"{q}: {', '.join(c)}" for q, c in p.references.items()) or "none named"
    print(f"{args.config}: ok - {p.name!r}, {len(p.steps)} step(s) ({recorded} recorded"
          f"{', then a final return' if p.final else ''}), at most {p.total_max_s / 3600:.3g} h; "
          f"references {refs}; sha256 {p.sha256}"
          + (f"; runs on {args.site}" if args.site is not None else ""))
    for s in p.steps:
        print(s.describe())
    return 0


def gateway_run(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    return _run_gateway(load_config(args.config), args.log_level)


def _run_gateway(cfg: GatewayConfig, log_level: str | None) -> int:
    """`gateway run` (and `ingest`, a central site's gateway): run it until SIGTERM/SIGINT."""
    import ssl

    from gateway.errors import ConfigError
    from gateway.preflight import preflight
    from gateway.runtime import Gateway

    setup_logging(log_level or cfg.gateway.log_level)
    preflight(cfg, build=False)  # data_dir, key and TLS files: exit 2 with the reason, not at the first write
    try:
        gateway = Gateway(cfg)
    except ssl.SSLError as exc:
        raise ConfigError(f"TLS: {exc.reason or exc}: a ca_file, cert_file or key_file is not what it "
                          "should be") from None
    asyncio.run(gateway.run())
    return 0


def gateway_status(args: argparse.Namespace) -> int:
    """Ask the running gateway (its control socket in data_dir) what it is doing; with --watch,
    again every few seconds until Ctrl-C.  No gateway there: one line, exit 1."""
    from gateway.ingest.config import load_site_section
    from gateway.localcontrol import GatewayNotRunning, request_sync
    from gateway.status import format_status

    data_dir = load_site_section(args.config).data_dir  # a CENTRAL.toml's too

    def show() -> None:
        st = request_sync(data_dir, "status", timeout=args.timeout)
        print(json.dumps(st) if args.json else format_status(st), flush=True)

    if args.watch is None:
        show()
        return 0
    show()  # the first must answer: no gateway there is an error, not an empty screen
    clear = sys.stdout.isatty() and not args.json
    try:
        while True:
            time.sleep(args.watch)
            if clear:
                print("\033[H\033[2J", end="")
            try:
                show()
            except GatewayNotRunning as exc:  # stopped or restarting: say so, keep watching
                print(f"{_time(time.time_ns(), 'seconds')}: {exc}", flush=True)
    except KeyboardInterrupt:
        return 0


def gateway_quarantine(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.journal import Journal

    cfg = load_config(args.config)
    total, rows = Journal.read_quarantine(cfg.gateway.data_dir / "journal.db", args.limit)
    if args.json:
        for r in rows:
            print(json.dumps({
                "id": r.id, "time": _time(r.time_ns), "source": r.source, "topic": r.topic,
                "reason": r.reason,
                "payload": r.payload.decode("utf-8", "backslashreplace"),
            }))
        return 0
    print(f"{total} quarantined input(s); the latest {len(rows)}:")
    for r in rows:
        payload = r.payload[:80].decode("utf-8", "backslashreplace")
        print(f"{_time(r.time_ns, 'milliseconds')}  {r.source}  {r.topic}  {r.reason}  | {payload}")
    return 0


def simulate(args: argparse.Namespace) -> int:
    from firmware_bridge.simulate import SimulationError, load_sim_config, run_simulation

    cfg = load_sim_config(args.config)
    try:
        asyncio.run(run_simulation(cfg))
    except SimulationError as exc:  # a port in use, a serial device that is not there
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 1
    return 0


def pipeline_run(args: argparse.Namespace) -> int:
    from pipelines.pipeline import run_pipeline, uncalibrated_channels

    began = time.monotonic()
    out = run_pipeline(args.config, args.out, write_results=False if args.no_points else None,
                       provisional=args.provisional)
    channels = sorted({r.channel for r in out.results})
    print(
        f"{len(out.results)} calibration point(s) for {len(channels)} DUT channel(s) -> {out.csv_path}"
        + (f"; {out.points_written} calibration_point point(s) written" if out.points_written else "")
        + f" (in {time.monotonic() - began:.1f} s)"
    )
    missing = uncalibrated_channels(out)
    if missing:
        # Certified without them: say so where the summary is read, not only in the log.
        print(f"no calibration point for {len(missing)} DUT channel(s): {', '.join(missing)} "
              "(not on the certificate; see the warnings)")
    if out.curve_path is not None:
        print(f"correction curves of {len(out.curves)} channel(s) -> {out.curve_path}")
    if out.report_path is not None:
        print(f"report {out.report_path}\ncertificate {out.certificate_path} (id {out.certificate_id})")
    if out.pdf_path is not None:
        print(f"printable certificate {out.pdf_path}")
    return 0


def certificate_sign(args: argparse.Namespace) -> int:
    from pipelines.certificate.cli import cmd_sign

    return cmd_sign(args)


def certificate_verify(args: argparse.Namespace) -> int:
    from pipelines.certificate.cli import cmd_verify

    return cmd_verify(args)


def demo(args: argparse.Namespace) -> int:
    from remotecal.demo.live import run_with_display

    return run_with_display(args.out, args.speed, args.influx)


def dashboards_build(args: argparse.Namespace) -> int:
    from dashboards.build import build

    try:
        written = build(args.out)
    except OSError as exc:
        raise RemotecalError(f"{args.out}: cannot write the dashboards: {exc.strerror or exc}") from exc
    for path in written:
        print(path)
    return 0


def dashboards_push(args: argparse.Namespace) -> int:
    from dashboards.push import push

    for url in push(args.url, os.environ.get(GRAFANA_TOKEN) or None, timeout=args.timeout):
        print(f"pushed {url}")
    return 0


def ingest(args: argparse.Namespace) -> int:
    """A central site: a CENTRAL.toml, or a site config with [[sources.uplink]] (gateway.ingest.config)."""
    from gateway.errors import ConfigError
    from gateway.ingest.config import load_ingest_config
    from gateway.ingest.refused import RefusedFrames
    from gateway.journal import Journal
    from gateway.sources.uplink.plugin import state_dir

    cfg = load_ingest_config(args.config)
    data_dir = cfg.gateway.data_dir
    refused_dbs = [state_dir(b, data_dir) / "refused.db" for b in cfg.sources.blocks("uplink")]
    if args.requeue:
        for db in refused_dbs:
            n = RefusedFrames.request_requeue(db, args.kind)
            print(f"{n} refused frame(s) to be checked again by the ingest of {db.parent} (within a "
                  "second while it runs, else at its start); `--quarantine` shows those still refused")
        return 0
    if args.kind:
        raise ConfigError("--kind: only with --requeue")
    if args.quarantine:
        for db in refused_dbs:
            counts, frames = RefusedFrames.read(db, args.limit)
            print(f"{sum(counts.values())} refused frame(s) kept whole"
                  + (f" ({', '.join(f'{k}: {n}' for k, n in counts.items())})" if counts else "")
                  + (f" in {db}" if len(refused_dbs) > 1 else "") + f"; the latest {len(frames)}:")
            for f in frames:
                print(f"{_time(f.time_ns, 'milliseconds')}  {f.topic}  {f.reason}  ({len(f.payload)} bytes)"
                      + ("  [requeue asked]" if f.requeue else ""))
        total, rows = Journal.read_quarantine(data_dir / "journal.db", args.limit)
        print(f"{total} quarantined record(s) (of accepted frames, e.g. a value that is not finite); "
              f"the latest {len(rows)}:")
        for r in rows:
            payload = r.payload[:80].decode(errors="replace")
            print(f"{_time(r.time_ns, 'milliseconds')}  {r.topic}  {r.reason}  | {payload}")
        return 0
    return _run_gateway(cfg, args.log_level)


def keys_new(args: argparse.Namespace) -> int:
    from gateway.errors import ConfigError

    if args.institute is not None:
        if args.site is not None or args.gateway is not None or args.control:
            raise ConfigError("--institute: the institute's command key names no site or gateway "
                              "(--site/--gateway make a gateway's key)")
        from gateway.control.keys import new_key_pair

        key, pub = new_key_pair("institute", args.out, institute=args.institute)
        print(f"{key}: the institute's command key (mode 0600): keep it at the institute (CONTROL.toml "
              f"key_file), readable only by those who may steer runs\n{pub}: its public half: install it "
              "on each gateway ([control] keys)")
        return 0
    if args.site is None or args.gateway is None:
        raise ConfigError("--site and --gateway: required (or --institute NAME for the institute's "
                          "command key)")
    if args.control:
        from gateway.control.keys import new_key_pair

        key, pub = new_key_pair("gateway", args.out, site=args.site, gateway=args.gateway)
        print(f"{key}: the answer key of {args.site}/{args.gateway} (mode 0600): on the gateway ([control] "
              f"answer_key)\n{pub}: its public half: give it to the institute (CONTROL.toml gateway_keys)")
        return 0
    from gateway.keys import new_key_file

    path = new_key_file(args.site, args.gateway, args.out)
    print(f"{path}: new key for {args.site}/{args.gateway} (mode 0600); copy it to the gateway "
          "([[sinks.mqtt]] key_file) and to the ingest's keys folder")
    return 0


def run_log(args: argparse.Namespace) -> int:
    """`remotecal run log -c SITE.toml`: the journal's command log (gateway.journal.control)."""
    from gateway.config import load_gateway_section
    from gateway.journal.control import read_command_log

    g = load_gateway_section(args.config)
    path = g.data_dir / "journal.db"
    if not path.exists():
        raise RemotecalError(f"{path}: no journal there (has this gateway ever run?)")
    rows = read_command_log(path, args.limit)
    for r in rows:
        if args.json:
            print(json.dumps({"time": _time(r.time_ns), "origin": r.origin, "command": r.command,
                              "run": r.run, "actor": r.actor, "accepted": r.accepted,
                              "refusal": r.refusal or None, "reason": r.reason, "seq": r.seq, "key": r.key}))
            continue
        verdict = "accepted" if r.accepted else f"REFUSED {r.refusal}"
        print(f"{_time(r.time_ns, 'milliseconds')}  {r.origin:<6}  {r.command:<7} run {r.run}  by {r.actor}  "
              f"{verdict}" + (f": {r.reason}" if r.reason else ""))
    if not args.json:
        print(f"{len(rows)} command(s), newest first", file=sys.stderr)
    return 0


def run_command(args: argparse.Namespace) -> int:
    """`remotecal run ACTION`: remote (signed, through the central broker) or --local."""
    from remotecal import runcmd

    return runcmd.run(args)
