"""The `pipeline` subcommand: `remotecal pipeline run -c PIPELINE.toml [--out DIR]`.

gateway.cli adds it through its list of extensions (`register`).  `main` runs it on its own
(`python -m pipelines.cli pipeline run -c ...`) with the same exits: 2 with one line per
config problem, 1 with one line for any other user error (unreachable server, unknown
database, a channel with no readings, a reference outside its certificate, an unwritable DIR)
and for a run without a calibration point.

A run without a calibration point (no plateau met the stability criteria on any reference,
or no DUT had readings in one) certifies nothing: `run_pipeline` raises
`NoCalibrationPoint`, whose one line names the run, each reference with its criteria and how
near it came (the steadiest window's std and slope, or the longest stable stretch).  DIR then
holds no corrections.csv, curve.csv or certificate.xml - those an earlier run left there are
removed (and logged), so that nothing in DIR can be taken for this run's results - and its
report.html is a diagnosis: the criteria and each reference's trace with its windows' std
and slope against the limits, titled "No calibration point".  Nothing is written to InfluxDB.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import ConfigError, RemotecalError

__all__ = ["NoCalibrationPoint", "PipelineOutput", "cmd_pipeline_run", "main", "register", "run_pipeline"]

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig
    from pipelines.curve import Curve
    from pipelines.run import PointResult, StabilityDiagnosis
    from pipelines.source import ChannelData

log = logging.getLogger(__name__)


@dataclass
class PipelineOutput:
    """What `run_pipeline` did, with what a report or certificate writer needs next."""

    results: list[PointResult]
    """The calibration points, sorted by DUT channel, reference and point."""
    csv_path: Path
    points_written: int
    """`calibration_point` points written to InfluxDB (0 for the local store or --no-points)."""
    config: PipelineConfig
    data: dict[str, ChannelData]
    """The run's readings, by channel (for plots)."""
    certificate_path: Path | None = None
    report_path: Path | None = None
    certificate_id: str = ""
    curves: dict[str, Curve] = field(default_factory=dict)
    """The correction curves by DUT channel ([curve]; empty without it)."""
    curve_path: Path | None = None


RESULT_FILES = ("corrections.csv", "curve.csv", "certificate.xml")
"""What a run writes into DIR besides report.html, and a run without a point removes."""


class NoCalibrationPoint(RemotecalError):
    """The run gives no calibration point: nothing to certify (module docstring)."""

    def __init__(self, message: str, diagnoses: list[StabilityDiagnosis], report_path: Path):
        super().__init__(message)
        self.diagnoses = diagnoses
        """Per reference, why it gave no point (`pipelines.run.diagnose_stability`)."""
        self.report_path = report_path
        """The diagnosis, report.html."""


def run_pipeline(
    config: str | Path, out_dir: str | Path, *, write_results: bool | None = None
) -> PipelineOutput:
    """Load the config, read the run, compute, write corrections.csv into ``out_dir`` and
    (unless ``write_results`` is False, or the config's ``source.write_results`` is) the
    `calibration_point` points.  Raises ConfigError / RemotecalError, and NoCalibrationPoint
    (a RemotecalError) when the run has no calibration point, after writing its diagnosis."""
    from pipelines.config import load_pipeline_config
    from pipelines.results import write_corrections_csv, write_points
    from pipelines.run import compute
    from pipelines.source import load_run

    cfg = load_pipeline_config(config)
    data = load_run(cfg)
    if not data:
        raise RemotecalError(
            f"run {cfg.run.id!r} has no readings in the source"
            + (f" between {cfg.run.start.isoformat()} and {cfg.run.end.isoformat()}"
               if cfg.run.start and cfg.run.end else "")
        )
    results = compute(cfg, data)
    out = Path(out_dir)
    if not results:
        raise _no_calibration_point(cfg, data, Path(config), out)
    curves: dict[str, Curve] = {}
    curve_path = None
    if cfg.curve is not None:
        from pipelines.curve import fit_curves
        from pipelines.results import write_curve_csv

        curves = fit_curves(results, cfg.curve.degree)
        curve_path = write_curve_csv(curves, cfg.curve.degree, out / "curve.csv")
    elif (out / "curve.csv").is_file():
        # An earlier run's curve must not pass for this run's, which fits none.
        (out / "curve.csv").unlink()
        log.warning("%s: removed curve.csv of an earlier run: this config has no [curve]", out)
    csv_path = write_corrections_csv(results, out / "corrections.csv", curves=curves)
    written = 0
    wanted = cfg.source.write_results if write_results is None else write_results
    if wanted and cfg.source.kind == "influxdb":
        written = write_points(results, cfg.source, cfg.run)
    output = PipelineOutput(results, csv_path, written, cfg, data, curves=curves, curve_path=curve_path)
    _certificate_and_report(output, Path(config), out)
    return output


def _no_calibration_point(
    cfg: PipelineConfig, data: dict[str, ChannelData], config: Path, out: Path
) -> NoCalibrationPoint:
    """Remove an earlier run's results from ``out``, write the diagnosis as report.html, and
    return the error that says why, in one line."""
    from importlib.metadata import version

    from pipelines.report import build_diagnosis
    from pipelines.run import diagnose_stability

    diagnoses = diagnose_stability(cfg, data)
    report = out / "report.html"
    html = build_diagnosis(diagnoses, cfg, config_text=config.read_text(),
                           software_version=version("remotecal"))
    removed = []
    try:
        for name in RESULT_FILES:
            if (out / name).is_file() or (out / name).is_symlink():
                (out / name).unlink()
                removed.append(name)
        out.mkdir(parents=True, exist_ok=True)
        report.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise RemotecalError(
            f"{out}: cannot write the diagnosis of run {cfg.run.id!r}: {exc.strerror}") from None
    if removed:
        log.warning("%s: removed %s of an earlier run: run %s has no calibration point", out,
                    ", ".join(removed), cfg.run.id)
    reasons = "; ".join(f"{d.label} with {d.criteria}: {d.summary()}" for d in diagnoses)
    return NoCalibrationPoint(
        f"run {cfg.run.id!r} has no calibration point, nothing to certify (no certificate.xml): "
        f"{reasons}; diagnosis in {report}",
        diagnoses, report,
    )


def _certificate_and_report(output: PipelineOutput, config: Path, out: Path) -> None:
    """certificate.xml (DCC 3.3.0, validated when the schema is at hand) and report.html."""
    from importlib.metadata import version

    from pipelines.dcc import (
        Parties,
        build_dcc,
        certificate_identifier,
        channels_meta_from_config,
        dcc_dir,
        validate_dcc,
    )
    from pipelines.report import build_report

    software = version("remotecal")
    cfg = output.config
    _warn_unstated(cfg, output.results, config)
    xml = build_dcc(output.results, cfg, software_version=software, curves=output.curves,
                    parties=Parties.from_config(cfg.certificate),
                    channels_meta=channels_meta_from_config(cfg.items),
                    certificate_id=cfg.certificate.identifier if cfg.certificate else None)
    if (dcc_dir() / "dcc.xsd").exists():
        validate_dcc(xml)
    else:
        log.warning("certificate.xml not validated: no DCC schema at %s (set REMOTECAL_DCC_DIR)", dcc_dir())
    cid = certificate_identifier(xml)
    html = build_report(output.results, output.data, output.config, config_text=config.read_text(),
                        software_version=software, certificate_xml=xml, certificate_id=cid,
                        curves=output.curves)
    try:
        (out / "certificate.xml").write_bytes(xml)
        (out / "report.html").write_text(html, encoding="utf-8")
    except OSError as exc:
        raise RemotecalError(f"{out}: cannot write the results: {exc.strerror}") from None
    output.certificate_path, output.report_path, output.certificate_id = (
        out / "certificate.xml", out / "report.html", cid)


def _warn_unstated(cfg: PipelineConfig, results: list[PointResult], config: Path) -> None:
    """One line for each thing a real certificate must state and this one will not."""
    if cfg.certificate is None:
        log.warning("certificate.xml states no calibration laboratory, customer or responsible person "
                    "('not stated', country ZZ): add a [certificate] section to %s", config)
    channels = sorted({r.channel for r in results})
    bare = [ch for ch in channels if ch not in cfg.items]
    if bare:
        log.warning("certificate.xml states no manufacturer, model or serial number of DUT channel(s) %s: "
                    "add [items.<channel>] sections to %s", ", ".join(bare), config)
    absent = sorted(set(cfg.items) - set(channels))
    if absent:
        log.warning("items: channel(s) %s have no calibration point in run %s: not on the certificate",
                    ", ".join(absent), cfg.run.id)


def cmd_pipeline_run(args: argparse.Namespace) -> int:
    out = run_pipeline(args.config, args.out, write_results=False if args.no_points else None)
    channels = sorted({r.channel for r in out.results})
    print(
        f"{len(out.results)} calibration point(s) for {len(channels)} DUT channel(s) -> {out.csv_path}"
        + (f"; {out.points_written} calibration_point point(s) written" if out.points_written else "")
    )
    from pipelines.run import dut_channels

    compared = {ch for i, c in enumerate(out.config.comparisons) for ch in dut_channels(c, out.data, i)}
    missing = sorted(compared - set(channels))
    if missing:
        # Certified without them: say so where the summary is read, not only in the log.
        print(f"no calibration point for {len(missing)} DUT channel(s): {', '.join(missing)} "
              "(not on the certificate; see the warnings)")
    if out.curve_path is not None:
        print(f"correction curves of {len(out.curves)} channel(s) -> {out.curve_path}")
    if out.report_path is not None:
        print(f"report {out.report_path}\ncertificate {out.certificate_path} (id {out.certificate_id})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pipeline", help="compute the corrections of a calibration run")
    ps = p.add_subparsers(dest="action", required=True)
    run = ps.add_parser("run", help="read a run, find plateaus, compute corrections and budgets")
    run.add_argument("-c", "--config", required=True, help="PIPELINE.toml")
    run.add_argument("--out", default=".", help="folder for corrections.csv (default: the current one)")
    run.add_argument("--no-points", action="store_true",
                     help="do not write calibration_point points back to InfluxDB")
    run.set_defaults(func=cmd_pipeline_run)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `pipeline` command on its own, with remotecal's exits (2 config, 1 other)."""
    parser = argparse.ArgumentParser(prog="remotecal")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        for line in exc.problems:
            print(line if line.startswith(str(args.config)) else f"{args.config}: {line}", file=sys.stderr)
        return 2
    except RemotecalError as exc:
        print(f"remotecal: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
