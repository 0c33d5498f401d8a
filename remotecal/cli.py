"""`remotecal` command line (SPEC section 2): every subcommand's parser, in one place.

    remotecal gateway run|check|status|quarantine -c SITE.toml   remotecal.commands.gateway_*
    remotecal simulate -c SIM.toml                          virtual devices (firmware_bridge)
    remotecal pipeline run -c PIPELINE.toml [--out DIR] [--provisional]   pipelines.pipeline.run_pipeline
    remotecal certificate sign|verify CERTIFICATE.xml ...    pipelines.certificate.cli
    remotecal demo [--out DIR] [--speed X] [--influx URL]   remotecal.demo
    remotecal dashboards build|push                         dashboards.build / dashboards.push
    remotecal ingest -c CENTRAL.toml [--quarantine|--requeue] gateway.runtime + gateway.sources.uplink
    remotecal keys new --site S --gateway G --out DIR       gateway.keys
    remotecal keys new --institute NAME --out DIR           gateway.control.keys (command key pair)
    remotecal run start|pause|resume|skip|abort|status ...  gateway.control (signed remote commands,
                                                            or --local through the control socket)

User errors (bad config, unreachable server, bad file) print one line naming the cause and
the key or file, and exit non-zero: 2 for a config problem, 1 for anything else.  Commands
translate the errors they expect into RemotecalError; as a backstop, an OSError a user can
cause (a path that cannot be written, a port in use, a host that cannot be reached) becomes
one line too.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import logging
import socket
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.errors import ConfigError, RemotecalError, os_error_text
from remotecal import commands
from remotecal.demo.plan import DEFAULT_SPEED, MAX_SPEED, influx_url_arg, speed_arg
from remotecal.logs import error_prefix, setup_logging

__all__ = ["main", "parser"]

_LOG_LEVELS = ["debug", "info", "warning", "error"]

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


def _error(line: str) -> None:
    """An error line on stderr; under systemd with its syslog priority, like the log's."""
    print(f"{error_prefix()}{line}", file=sys.stderr)


def _config_problems(exc: ConfigError, path: str | None) -> int:
    """One line per problem, prefixed with the config file unless the line names it already;
    a command without a config (`keys new`) prints its lines as they are: they name their file."""
    for line in exc.problems:
        _error(f"{path}: {line}" if path and not line.startswith(path) else line)
    return 2


# What each extra brings (pyproject.toml): a command that needs one of these modules and does
# not find it names the extra to install instead of a traceback.
_EXTRAS = {
    "pipeline": ("scipy", "matplotlib", "qrcode", "PIL", "lxml", "jinja2", "signxml", "cryptography",
                 "zxingcpp"),
    "dashboards": ("grafana_foundation_sdk", "grafana_client", "niquests"),
    "demo": ("rich", "amqtt", "scipy", "matplotlib", "qrcode", "PIL", "lxml", "jinja2", "signxml",
             "cryptography", "zxingcpp"),
}


def _missing_extra(extra: str | None) -> str | None:
    """The line for a command whose extra is not (wholly) installed, checked before it starts:
    the demo would otherwise fail after a minute of running, at its pipeline step."""
    if extra is None:
        return None
    missing = [m for m in _EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (f"needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install 'remotecal[{extra}]'")


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one worth saying (not None,
    not a flag's False) and the text does not state it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (action.option_strings and default not in (None, False, argparse.SUPPRESS, [])
                and "%(default)" not in text and "default" not in text):
            text += " (default: %(default)s)"
        return text


class _Version(argparse.Action):
    """-V/--version: the version and the commit (found only when asked: it may run git)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from remotecal.version import version_line

        print(version_line())
        parser.exit()


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _gateway(sub: argparse._SubParsersAction) -> None:
    gw = sub.add_parser("gateway", help="run or inspect an edge gateway")
    gws = gw.add_subparsers(dest="action", required=True)
    run = gws.add_parser("run", help="run until SIGTERM/SIGINT, then flush and exit 0")
    run.add_argument("-c", "--config", required=True, help="site config (TOML)")
    run.add_argument("--log-level", choices=_LOG_LEVELS,
                     help="debug, info, warning or error (default: [gateway] log_level, itself info)")
    run.set_defaults(func=commands.gateway_run)
    chk = gws.add_parser("check", help="validate a config; exit 2 on error")
    chk.add_argument("-c", "--config", required=True, help="site config (TOML)")
    chk.set_defaults(func=commands.gateway_check)
    st = gws.add_parser("status", help="what the running gateway is doing: sources, sinks, journal, "
                                       "clock offset (asked over DATA_DIR/control.sock); exit 1 if none runs")
    st.add_argument("-c", "--config", required=True,
                    help="site config (TOML); only [gateway] data_dir is read")
    st.add_argument("--watch", nargs="?", type=_positive_seconds, const=2.0, metavar="SECONDS",
                    help="show it again every SECONDS (default 2) until Ctrl-C")
    st.add_argument("--json", action="store_true", help="the gateway's answer as one JSON object per line")
    st.add_argument("--timeout", type=_positive_seconds, default=5.0,
                    help="seconds to wait for the gateway's answer (default 5)")
    st.set_defaults(func=commands.gateway_status)
    q = gws.add_parser("quarantine", help="list rejected input kept in the journal")
    q.add_argument("-c", "--config", required=True, help="site config (TOML)")
    q.add_argument("--limit", type=int, default=50, help="how many of the latest rejected inputs")
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.set_defaults(func=commands.gateway_quarantine)


def _simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run virtual devices (a chamber and instruments in it)")
    p.add_argument("-c", "--config", required=True, help="SIM.toml")
    p.set_defaults(func=commands.simulate)


def _pipeline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="compute the corrections of a calibration run")
    ps = p.add_subparsers(dest="action", required=True)
    run = ps.add_parser("run", help="read a run, find plateaus, compute corrections and budgets")
    run.add_argument("-c", "--config", required=True, help="PIPELINE.toml")
    run.add_argument("--out", default=".", help="folder for the results (default: the current one)")
    run.add_argument("--no-points", action="store_true",
                     help="do not write calibration_point points back to InfluxDB")
    run.add_argument("--provisional", action="store_true",
                     help="compute a run that is still recording: a PROVISIONAL report and certificate "
                          "(no certificate number, no calibration_point points); default: refuse such a run")
    run.set_defaults(func=commands.pipeline_run, extra="pipeline")


def _certificate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certificate", help="sign a certificate.xml (XAdES) or verify one")
    ps = p.add_subparsers(dest="action", required=True)
    sign = ps.add_parser(
        "sign", help="sign certificate.xml with the main signer's X.509 key (enveloped XAdES)")
    sign.add_argument("certificate", help="the DCC to sign (validated before and after)")
    sign.add_argument("--key", required=True, help="the signer's private key (PEM, RSA or EC)")
    sign.add_argument("--cert", required=True, help="the signer's X.509 certificate (PEM)")
    sign.add_argument("--chain", action="append", default=[], metavar="CA.pem",
                      help="intermediate CA certificate(s) to include; repeat for more")
    pw = sign.add_mutually_exclusive_group()
    pw.add_argument("--password-file",
                    help="file whose first line is the key's password (default: the key is not encrypted)")
    pw.add_argument("--password-env", metavar="NAME", help="environment variable holding the key's password")
    sign.add_argument("--out", help="where to write the signed certificate (default: in place)")
    sign.set_defaults(func=commands.certificate_sign, extra="pipeline")

    verify = ps.add_parser(
        "verify", help="check schema, signature (against a trust store) and printed QR codes")
    verify.add_argument("certificate", help="the DCC to verify")
    verify.add_argument("--trust", help="trusted CA certificate(s): a PEM file or a folder of *.pem/*.crt "
                                        "(default: none; required unless --unsigned)")
    verify.add_argument("--unsigned", action="store_true",
                        help="check an unsigned certificate (no signature check)")
    verify.add_argument("--printed", action="append", default=[], metavar="FILE",
                        help="a printed copy whose QR code must name this certificate: certificate.pdf, "
                             "report.html, certificate.html or a PNG/JPEG scan; repeat for more")
    verify.set_defaults(func=commands.certificate_verify, extra="pipeline")


def _demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole chain on this machine, no outside service")
    p.add_argument("--out", default="out/demo", help="where the results go (default out/demo)")
    p.add_argument("--speed", type=speed_arg, default=DEFAULT_SPEED,
                   help=f"chamber time per wall-clock time, > 0 and at most {MAX_SPEED:g} "
                        f"(default {DEFAULT_SPEED:g})")
    p.add_argument("--influx", metavar="URL", type=influx_url_arg,
                   help="also write to this InfluxDB 1.x (database 'calibration')")
    p.set_defaults(func=commands.demo, extra="demo")


def _dashboards(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboards", help="Grafana dashboards: build JSON and provisioning, or push")
    actions = p.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="write dashboard JSON and Grafana provisioning files")
    build.add_argument("--out", required=True, help="output folder (dashboards/, provisioning/)")
    build.set_defaults(func=commands.dashboards_build, extra="dashboards")
    push = actions.add_parser(
        "push", help=f"save the dashboards in Grafana through its HTTP API (token: ${commands.GRAFANA_TOKEN})"
    )
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    push.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    push.set_defaults(func=commands.dashboards_push, extra="dashboards")


def _ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="central ingest: signed uplink frames from MQTT into InfluxDB")
    p.add_argument("-c", "--config", required=True,
                   help="CENTRAL.toml, or a site config with [[sources.uplink]] (gateway/ingest/README.md)")
    p.add_argument("--log-level", choices=_LOG_LEVELS,
                   help="debug, info, warning or error (default: the config's log_level, itself info)")
    p.add_argument("--quarantine", action="store_true",
                   help="list the refused frames (kept whole) and the quarantined records, and exit")
    p.add_argument("--limit", type=int, default=50, help="with --quarantine: how many of each")
    p.add_argument("--requeue", action="store_true",
                   help="have the ingest check the refused frames again (those that verify now are "
                        "journalled; running or at its next start), and exit")
    p.add_argument("--kind", action="append", default=[], metavar="KIND",
                   choices=["malformed", "unknown gateway", "bad signature", "foreign", "replayed",
                            "too old"],
                   help="with --requeue: only the frames refused as KIND (repeatable; default: all)")
    p.set_defaults(func=commands.ingest)


def _keys(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("keys", help="uplink signing keys; remote run control's key pairs")
    ks = k.add_subparsers(dest="action", required=True)
    new = ks.add_parser("new", help="write a random 32-byte uplink key file (mode 0600) for one gateway "
                                    "(--site, --gateway); or an Ed25519 key pair for remote run control: "
                                    "the institute's command key (--institute) or a gateway's answer key "
                                    "(--site, --gateway, --control)")
    new.add_argument("--site", help="the gateway's [gateway] site")
    new.add_argument("--gateway", help="the gateway's [gateway] id")
    new.add_argument("--institute", metavar="NAME",
                     help="make the institute's command key pair NAME.institute.key (private, stays at the "
                          "institute) and NAME.institute.pub (install on the gateways: [control] keys)")
    new.add_argument("--control", action="store_true",
                     help="with --site/--gateway: the gateway's answer key pair for remote run control "
                          "(SITE+GATEWAY.control.key for [control] answer_key, .pub for the institute), "
                          "instead of an uplink key")
    new.add_argument("--out", required=True, help="folder to write the key file(s) into")
    new.set_defaults(func=commands.keys_new)


_RUN_HELP = {
    "start": "start a procedure as a new run",
    "pause": "hold the run in its step (setpoints stay)",
    "resume": "resume a paused run: the step starts settling again",
    "skip": "end the current step as skipped and go on",
    "abort": "abort the run (then the procedure's safe setpoints); a local abort always works",
    "status": "state, step, time in it, stability against the criteria, last command and who sent it",
}


def _run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="remote calibration runs: a procedure executed at the edge, commands "
                                   "signed by the institute (SPEC section 8)")
    rs = r.add_subparsers(dest="action", required=True)
    for action, what in _RUN_HELP.items():
        p = rs.add_parser(action, help=what)
        p.add_argument("-c", "--config", required=True,
                       help="the institute's CONTROL.toml (remote: with --site and --gateway), or with "
                            "--local the gateway's SITE.toml")
        p.add_argument("--local", action="store_true",
                       help="on the gateway's host: through its control socket (works with allow_remote = "
                            "false; a local abort wins over remote commands)")
        p.add_argument("--site", help="remote: the gateway's site")
        p.add_argument("--gateway", help="remote: the gateway's id")
        p.add_argument("--actor",
                       help="who sends it (default: CONTROL.toml actor, $REMOTECAL_ACTOR or user@host)")
        p.add_argument("--timeout", type=float,
                       help="seconds to wait for the gateway's answer (default: CONTROL.toml timeout; "
                            "locally 10)")
        if action == "start":
            p.add_argument("--run", required=True, help="the new run's id (tags every reading of the run)")
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--procedure", metavar="FILE",
                               help="the procedure file (validated here first; its text is sent)")
            which.add_argument("--procedure-sha256", metavar="HEX",
                               help="the SHA-256 of a procedure the gateway holds already (sent before, or "
                                    "in its [control] procedures folder)")
        else:
            p.add_argument("--run", help="refuse unless this is the gateway's current run")
        if action in ("pause", "skip", "abort"):
            p.add_argument("--reason", help="why (in the journal, the run_event point and the status)")
        if action == "status":
            p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
            p.add_argument("--interval", type=float, default=2.0,
                           help="with --watch: seconds between refreshes (default 2)")
            p.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")
        p.set_defaults(func=commands.run_command)
    log = rs.add_parser("log", help="the commands this gateway took or refused, newest first, from its "
                                    "journal (read-only; works with the gateway stopped too)")
    log.add_argument("-c", "--config", required=True, help="the gateway's SITE.toml")
    log.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    log.add_argument("--json", action="store_true", help="one JSON object per line")
    log.set_defaults(func=commands.run_log)


def _procedure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("procedure", help="remote-run procedures (TOML): validate and expand")
    ps = p.add_subparsers(dest="action", required=True)
    chk = ps.add_parser("check", help="validate a procedure and print its expanded steps; exit 2 on error")
    chk.add_argument("config", metavar="FILE", help="procedure file (TOML)")
    chk.add_argument("-c", "--site", metavar="SITE.toml",
                     help="also check it against a site config: its reference channels are read there, "
                          "a controller writes each setpoint, within its min/max")
    chk.set_defaults(func=commands.procedure_check)


def _help_everywhere(p: argparse.ArgumentParser) -> None:
    """Every (sub)command's help formatted by _Help."""
    p.formatter_class = _Help
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _help_everywhere(sub)


def parser() -> argparse.ArgumentParser:
    """The whole `remotecal` command line."""
    p = argparse.ArgumentParser(prog="remotecal", description="Remote-calibration gateway and data logger")
    p.add_argument("-V", "--version", action=_Version,
                   help=f"print the version ({__version__}) and the commit it was installed from, and exit")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_gateway, _simulate, _pipeline, _certificate, _demo, _dashboards, _ingest, _keys, _run,
                _procedure):
        add(sub)
    _help_everywhere(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if missing := _missing_extra(getattr(args, "extra", None)):
        _error(f"remotecal {args.command}: {missing}")
        return 1
    if not logging.getLogger().handlers:
        setup_logging("info")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        return _config_problems(exc, getattr(args, "config", None))
    except RemotecalError as exc:
        _error(f"remotecal: {exc}")
        return 1
    except OSError as exc:  # the backstop: a path or port a command did not expect to fail
        if not _user_caused(exc):
            raise
        _error(f"remotecal: {os_error_text(exc)}")
        return 1
    except KeyboardInterrupt:  # Ctrl-C: what ran was cleaned up on the way out
        print(f"remotecal {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
