"""A pipeline run: `run_pipeline(config, out_dir)` computes a run's corrections into a folder.

`remotecal pipeline run -c PIPELINE.toml [--out DIR]` (remotecal.cli) calls it; so do the demo
and the tests.  It raises ConfigError (one line per config problem) and RemotecalError (one
line: unreachable server, unknown database, a channel with no readings, a reference outside
its certificate, an unwritable DIR), which the command turns into exits 2 and 1.

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

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import RemotecalError

__all__ = ["NoCalibrationPoint", "PipelineOutput", "RunStillRecording", "run_pipeline",
           "uncalibrated_channels"]

if TYPE_CHECKING:
    from pipelines.certificate.issue import Issued
    from pipelines.config import PipelineConfig
    from pipelines.curve import Curve
    from pipelines.run import PointResult, StabilityDiagnosis
    from pipelines.source import ChannelData, RunOrigin

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
    pdf_path: Path | None = None
    """The printable certificate, certificate.pdf (None without Chromium)."""
    findings: list[str] = field(default_factory=list)
    """What the evaluation found that cost a point or contradicts the run as recorded
    (`pipelines.run.compute`), one sentence each: report.html lists them."""


RESULT_FILES = ("corrections.csv", "curve.csv", "certificate.xml", "certificate.html", "certificate.pdf")
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
    config: str | Path, out_dir: str | Path, *, write_results: bool | None = None, provisional: bool = False
) -> PipelineOutput:
    """Load the config, read the run, compute, write corrections.csv into ``out_dir`` and
    (unless ``write_results`` is False, or the config's ``source.write_results`` is) the
    `calibration_point` points.  Raises ConfigError / RemotecalError, RunStillRecording when
    the run is still recording (unless ``provisional``: then a provisional certificate, no
    number, no points), and NoCalibrationPoint (a RemotecalError) when the run has no
    calibration point, after writing its diagnosis."""
    from pipelines.config import load_pipeline_config
    from pipelines.results import write_corrections_csv, write_points
    from pipelines.run import compute
    from pipelines.source import live_windows, load_run

    cfg = load_pipeline_config(config)
    data = load_run(cfg)
    if not data:
        raise _no_readings(cfg)
    origins = _origins(cfg)
    provisional = _still_recording(cfg, origins, provisional)
    # a remote run's windows recorded live are its calibration points (SPEC section 8)
    findings: list[str] = []
    results = compute(cfg, data, live_windows=live_windows(cfg) or None, findings=findings)
    out = Path(out_dir)
    if not results:
        raise _no_calibration_point(cfg, data, Path(config), out)
    from pipelines.staging import staged_results

    curves: dict[str, Curve] = {}
    written = 0
    wanted = cfg.source.write_results if write_results is None else write_results
    with staged_results(out, (*RESULT_FILES, "report.html")) as stage:
        if cfg.curve is not None:
            from pipelines.curve import fit_curves
            from pipelines.results import write_curve_csv

            curves = fit_curves(results, cfg.curve.degree)
            write_curve_csv(curves, cfg.curve.degree, stage / "curve.csv")
        issued = _issue(cfg, results, data, curves, Path(config), provisional, origins)
        write_corrections_csv(issued.content.points, stage / "corrections.csv", curves=curves)
        output = PipelineOutput(results, out / "corrections.csv", 0, cfg, data, curves=curves,
                                curve_path=out / "curve.csv" if cfg.curve is not None else None,
                                findings=findings)
        _certificate_and_report(output, issued, Path(config), stage)
        if wanted and cfg.source.kind == "influxdb" and not provisional:
            # last: the points go out only once every file is written
            written = write_points(results, cfg.source, cfg.run)
    output.points_written = written
    output.certificate_path, output.report_path = out / "certificate.xml", out / "report.html"
    if output.pdf_path is not None:
        output.pdf_path = out / "certificate.pdf"
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


def _issue(cfg: PipelineConfig, results: list[PointResult], data: dict[str, ChannelData],
           curves: dict[str, Curve], config: Path, provisional: bool, origins: list[RunOrigin]) -> Issued:
    """The run's certificate: numbered, validated, signed when configured (`pipelines.certificate.issue`)."""
    from importlib.metadata import version

    from pipelines.certificate.issue import issue_certificate

    _warn_unstated(cfg, results, config)
    return issue_certificate(results, cfg, config_path=config, software_version=version("remotecal"),
                             data=data, curves=curves, provisional=provisional,
                             origins=[f"{o.site}/{o.gateway}" for o in origins])


# --- is the run there, whole and finished? (issue 14) -----------------------------------------


class RunStillRecording(RemotecalError):
    """The run is still recording: no certificate (`pipeline run --provisional` for a preview)."""


def _bounds(cfg: PipelineConfig) -> str:
    parts = []
    if cfg.run.start is not None:
        parts.append(f"from {cfg.run.start.isoformat()}")
    if cfg.run.end is not None:
        parts.append(f"before {cfg.run.end.isoformat()}")
    if cfg.source.site is not None:
        parts.append(f"at site {cfg.source.site!r}")
    if cfg.source.gateway is not None:
        parts.append(f"from gateway {cfg.source.gateway!r}")
    return (" " + " ".join(parts)) if parts else ""


def _no_readings(cfg: PipelineConfig) -> RemotecalError:
    """A run id without readings: the one line names the runs the source does hold."""
    from pipelines.source import known_runs

    runs = known_runs(cfg)
    shown = ", ".join(runs[:20]) + (f" (and {len(runs) - 20} more)" if len(runs) > 20 else "")
    return RemotecalError(f"run {cfg.run.id!r} has no readings in the source{_bounds(cfg)}; runs there: "
                          f"{shown or 'none'}")


def _origins(cfg: PipelineConfig) -> list[RunOrigin]:
    from pipelines.source import run_origins

    origins = run_origins(cfg)
    if len(origins) > 1:
        names = ", ".join(f"{o.site}/{o.gateway}" for o in origins)
        log.warning("run %s was recorded by %d gateways: %s (narrow with [source] site / gateway if that is "
                    "not meant)", cfg.run.id, len(origins), names)
    return origins


def _still_recording(cfg: PipelineConfig, origins: list[RunOrigin], provisional: bool) -> bool:
    """Whether the certificate is provisional; RunStillRecording when the run is still recording
    (no [run] end in the past, and a reading younger than source.quiet_s) and ``provisional`` is
    not asked for."""
    import time
    from datetime import UTC, datetime

    now = time.time()
    if not origins or (cfg.run.end is not None and cfg.run.end.timestamp() <= now):
        return provisional
    newest = max(origins, key=lambda o: o.newest_s)
    age = now - newest.newest_s
    if age >= cfg.source.quiet_s:
        return provisional
    when = datetime.fromtimestamp(newest.newest_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if provisional:
        log.warning("run %s is still recording (newest reading %s): the certificate is PROVISIONAL",
                    cfg.run.id, when)
        return True
    raise RunStillRecording(
        f"run {cfg.run.id!r} is still recording: its newest reading ({newest.site}/{newest.gateway}, "
        f"{when}) is {age:.0f} s old, under source.quiet_s = {cfg.source.quiet_s:g} s, and [run] has no "
        "end in the past; "
        "wait, give [run] end, or run with --provisional for a provisional report")


def _certificate_and_report(output: PipelineOutput, issued: Issued, config: Path, out: Path) -> None:
    """certificate.xml, report.html, and the printable certificate.html and certificate.pdf."""
    from pipelines.certificate.printable import PrintError, print_pdf, render_certificate
    from pipelines.report import build_report

    html = build_report(issued, output.data, output.config, config_text=config.read_text(),
                        findings=output.findings)
    try:
        (out / "certificate.xml").write_bytes(issued.xml)
        (out / "report.html").write_text(html, encoding="utf-8")
        (out / "certificate.html").write_text(render_certificate(issued), encoding="utf-8")
        (out / "certificate.pdf").unlink(missing_ok=True)
    except OSError as exc:
        raise RemotecalError(f"{out}: cannot write the results: {exc.strerror}") from None
    try:
        output.pdf_path = print_pdf(out / "certificate.html", out / "certificate.pdf")
    except PrintError as exc:
        log.warning("%s", exc)
    output.certificate_path, output.report_path, output.certificate_id = (
        out / "certificate.xml", out / "report.html", issued.content.issue.identifier)


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


def uncalibrated_channels(output: PipelineOutput) -> list[str]:
    """The DUT channels a comparison covers that got no calibration point: certified without
    them (the summary says so, not only the log)."""
    from pipelines.run import dut_channels

    cfg = output.config
    compared = {ch for i, c in enumerate(cfg.comparisons) for ch in dut_channels(c, output.data, i)}
    return sorted(compared - {r.channel for r in output.results})
