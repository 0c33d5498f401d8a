"""report.html: one self-contained page a person reads to check a run before signing it, laid
out as a calibration certificate is (ISO/IEC 17025:2017 7.8, EA-4/01), from the same
`pipelines.certificate.content.Certificate` as certificate.xml, so both state the same digits.

Rendered from Jinja2 templates (``pipelines/templates/report.html.j2``, ``diagnosis.html.j2``,
``report.css``; autoescaped).  Everything is inline - plots as base64 PNG drawn with
matplotlib's Agg canvas (no pyplot: no global state, no display), the QR code as base64 PNG,
the CSS in a <style> element - so the file can be mailed, archived next to certificate.xml
and opened offline; nothing in it refers to the network.

Sections, in order: a banner when the data is simulated (the demo) or the run was still
recording (provisional); the certificate number, revision, software and the QR code with the
certificate's content SHA-256 (`pipelines.dcc.read.content_sha256`, unchanged by signing); the
laboratory, customer, authorised signatory and dates; the items (manufacturer, model,
serial); the reference standards with their certificate numbers and traceability; the
ambient conditions; the results per item with units in every column (error = DUT -
reference, the one sign convention of tables and plots, and the correction = -error beside
it, labelled); the statements (ISO/IEC 17025 7.8.4.3, EA-4/02 uncertainty, CMC); the flags;
the run overview against elapsed time; the errors against setpoint; with [conformity] the
decision rule, its risk and the decisions; with [curve] the curves; the uncertainty budgets
(EA-4/02 layout); the config, verbatim.

Numbers are the stated ones (`pipelines.certificate.reported`: U to two significant digits
rounded up and never below the CMC, values to U's decimal place, k to two decimals,
nu_eff as an integer, ">100" or "inf").

A run without a calibration point gets `build_diagnosis` instead: no certificate to name,
and per reference the stability criteria, how near it came (the steadiest window, the
longest stable stretch) and its trace over the run with the windows' standard deviation
and slope against their limits, the config verbatim; plainly titled as no calibration.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import qrcode
import qrcode.constants
from markupsafe import Markup
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MultipleLocator

from pipelines.certificate.reported import FLAG_TEXT, Reported
from pipelines.certificate.rounding import dof_text, round_significant, round_to, round_uncertainty, text
from pipelines.config import PipelineConfig
from pipelines.conformity import DECISIONS, RULE_TEXT, acceptance_limit
from pipelines.curve import Curve
from pipelines.run import PointResult, StabilityDiagnosis
from pipelines.source import ChannelData

if TYPE_CHECKING:
    from pipelines.certificate.issue import Issued

__all__ = [
    "FLAG_TEXT",
    "budget_table_id",
    "build_diagnosis",
    "build_report",
    "difference_unit",
    "display_unit",
    "fmt",
    "qr_matrix",
    "qr_payload",
    "qr_png",
    "templates",
]

_UNITS = {"degC": "°C", "degF": "°F", "%rh": "%rh", "1": ""}
_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                 172800, 604800)
"""Elapsed-time ticks fall on whole minutes, quarters, hours, days."""


def display_unit(unit: str) -> str:
    return _UNITS.get(unit, unit)


def difference_unit(unit: str) -> str:
    """The unit of a difference of two values: K for temperatures in °C."""
    return "K" if unit in ("degC", "K") else display_unit(unit)


def fmt(x: float | None, digits: int = 4) -> str:
    """A number that is not a stated result (criteria, estimates): ``digits`` significant
    digits, fixed point where that is short."""
    if x is None:
        return ""
    if not np.isfinite(x):
        return "inf" if x > 0 else "-inf" if x < 0 else "nan"
    return format(x, f".{digits}g")


@cache
def templates() -> jinja2.Environment:
    """The Jinja2 environment of ``pipelines/templates`` (autoescaped HTML)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipelines", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["unit"] = display_unit
    env.filters["dunit"] = difference_unit
    env.filters["utc"] = _time
    env.filters["hms"] = lambda t: datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")
    env.filters["fmt"] = fmt
    env.filters["dof"] = dof_text
    env.filters["sig2"] = lambda x: text(round_significant(x, 2)) if x else "0"
    env.filters["sig3"] = lambda x: text(round_significant(x, 3)) if x else "0"
    env.filters["quantity"] = lambda q: q.replace("_", " ")
    env.filters["css_string"] = _css_string
    env.tests["contains"] = lambda seq, item: item in seq
    env.globals.update(DECISIONS=DECISIONS, FLAG_TEXT=FLAG_TEXT, RULE_TEXT=RULE_TEXT)
    return env


def _css_string(text_: str) -> str:
    """``text_`` inside a CSS string literal (quotes included): backslash, quotes and ``<``
    escaped, so a value can end neither the string nor the <style> element."""
    escaped = "".join(f"\\{ord(ch):x} " if ch in '\\"<>\n\r' else ch for ch in text_)
    return f'"{escaped}"'


def _time(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def budget_table_id(r: PointResult) -> str:
    """The HTML id of a point's budget table."""
    return "budget-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in r.channel) + f"-{r.point}"


def qr_payload(certificate_id: str, sha256_hex: str) -> str:
    """What the QR codes carry: compact JSON ``{"dcc":ID,"sha256":HEX}``, HEX the certificate's
    content SHA-256 (`pipelines.dcc.read.content_sha256`)."""
    return json.dumps({"dcc": certificate_id, "sha256": sha256_hex}, separators=(",", ":"))


def _qr(payload: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=4, border=4)
    qr.add_data(payload)
    qr.make(fit=True)
    return qr


def qr_matrix(payload: str) -> list[list[bool]]:
    """The QR code's modules (True = dark), without the quiet zone, as drawn in the report."""
    border = 4
    m = _qr(payload).get_matrix()
    return [row[border:-border] for row in m[border:-border]]


def qr_png(payload: str) -> str:
    """The QR code as base64 PNG."""
    img = _qr(payload).make_image()
    buf = io.BytesIO()
    img.save(buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _elapsed_axis(ax: Any, t0: float) -> None:
    """An x axis of elapsed time since ``t0`` (its start stated in UTC): h:mm, or m:ss for a run
    shorter than an hour (the demo's time-compressed one), ticks on whole units."""
    lo, hi = ax.get_xlim()
    short = hi - lo < 3600
    if short:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{int(x // 60)}:{int(x % 60):02d}"))
    else:
        ax.xaxis.set_major_formatter(
            FuncFormatter(lambda x, _: f"{int(x // 3600)}:{int(x % 3600 // 60):02d}"))
    step = next((s for s in _TICK_STEPS_S if (hi - lo) / s <= 12), _TICK_STEPS_S[-1])
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.set_xlabel(f"elapsed time [{'m:ss' if short else 'h:mm'}] since {_time(t0)} UTC")


def _overview(reference: str, points: Sequence[PointResult], data: Mapping[str, ChannelData]) -> str | None:
    ref = data.get(reference)
    if ref is None or ref.t_s.size == 0:
        return None
    t0 = float(ref.t_s[0])
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.add_subplot()
    equipment = sorted({ch for r in points for ch, _ in r.equipment} - {reference})
    ax.plot(ref.t_s - t0, ref.values, color="black", lw=1.2, label=f"{reference} (reference)")
    for name in equipment:  # the thermometer beside a dew-point mirror
        other = data.get(name)
        if other is not None and other.unit == ref.unit:
            ax.plot(other.t_s - t0, other.values, color="dimgray", lw=1.0, ls="--",
                    label=f"{name} (reference)")
    dut_ax = ax
    if any(r.unit != ref.unit for r in points):
        # DUTs in another unit than the reference channel (%rh against a dew point): own axis.
        dut_ax = ax.twinx()
        dut_ax.set_ylabel(f"{points[0].quantity.replace('_', ' ')} [{display_unit(points[0].unit)}]")
    for channel in sorted({r.channel for r in points}):
        ch = data.get(channel)
        if ch is not None:
            dut_ax.plot(ch.t_s - t0, ch.values, lw=0.8, label=channel)
    if dut_ax is not ax:
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = dut_ax.get_legend_handles_labels()
        dut_ax.legend(lines + more, labels + more_labels, loc="best", fontsize=8)
    plateaus = {r.point: (r.t_start_s, r.t_end_s) for r in points}
    for number, (a, b) in sorted(plateaus.items()):
        ax.axvspan(a - t0, b - t0, color="tab:green", alpha=0.15, lw=0)
        ax.annotate(f"P{number}", xy=((a + b) / 2 - t0, 1.0), xycoords=("data", "axes fraction"),
                    ha="center", va="bottom", fontsize=9)
    _elapsed_axis(ax, t0)
    quantities = [ref.quantity.replace("_", " ")]
    quantities += [data[name].quantity.replace("_", " ") for name in equipment
                   if name in data and data[name].unit == ref.unit]
    ax.set_ylabel(f"{', '.join(dict.fromkeys(quantities))} [{display_unit(ref.unit)}]")
    ax.grid(True, alpha=0.3)
    if dut_ax is ax:
        ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _errors(quantity: str, points: Sequence[Reported]) -> str:
    """Error = DUT - reference (as the tables state it) against setpoint, with U as error bars."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.add_subplot()
    channels = sorted({p.result.channel for p in points})
    setpoints = [p.result.setpoint for p in points]
    spread = 0.04 * (max(setpoints) - min(setpoints) or 1.0)
    for i, channel in enumerate(channels):
        mine = sorted((p for p in points if p.result.channel == channel), key=lambda p: p.result.setpoint)
        offset = (i - (len(channels) - 1) / 2) * spread / max(len(channels), 1)
        x = np.array([p.result.setpoint + offset for p in mine])
        y = np.array([float(p.error_dec) for p in mine])
        u = np.array([float(p.U_dec) for p in mine])
        line = ax.errorbar(x, y, yerr=u, marker="o", capsize=4, lw=1, label=channel)
        flagged = np.array([bool(p.flags) for p in mine])
        if flagged.any():
            color = line.lines[0].get_color()
            ax.plot(x[flagged], y[flagged], "o", ms=10, mfc="white", mec=color, mew=1.5)
    ax.axhline(0.0, color="black", lw=0.8)
    mpes = {p.mpe for p in points if p.mpe is not None}
    if len(mpes) == 1:
        mpe = mpes.pop()
        for sign in (-1, 1):
            ax.axhline(sign * mpe, color="tab:red", lw=1, ls="--", label="±MPE" if sign > 0 else None)
    unit = points[0].result.unit
    ax.set_xlabel(f"setpoint [{display_unit(unit)}]")
    ax.set_ylabel(f"error = DUT − reference [{difference_unit(unit)}]")
    ax.set_title(f"{quantity.replace('_', ' ')}: error with its expanded uncertainty U (95 %); "
                 "hollow: flagged points", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _curve_view(c: Curve) -> dict[str, Any]:
    u = c.standard_uncertainties
    rows = []
    for i, a in enumerate(c.coefficients):
        corr = " ".join(fmt(float(c.covariance[i, j] / (u[i] * u[j])), 3) for j in range(c.degree + 1))
        rows.append({"i": i, "value": fmt(float(a), 6), "u": fmt(float(u[i]), 2), "power": 1 - i,
                     "corr": corr})
    residuals = [{"point": p, "x": fmt(float(x), 6), "y": fmt(float(y), 4), "u": fmt(float(uj), 2),
                  "f": fmt(float(f), 4), "res": fmt(float(res), 2), "z": f"{float(res / uj):+.2f}"}
                 for p, x, y, uj, f, res in zip(c.points, c.x, c.y, c.u, c(c.x), c.residuals, strict=True)]
    return {"c": c, "rows": rows, "residuals": residuals, "x_min": fmt(float(c.x.min())),
            "x_max": fmt(float(c.x.max())), "birge": fmt(c.birge_ratio, 3) if c.dof else None}


def _conformity_rows(points: Sequence[Reported], rule: str) -> list[dict[str, Any]]:
    rows = []
    for p in points:
        if not p.decision or p.mpe is None:
            continue
        al = acceptance_limit(float(p.U_dec), p.mpe, rule)  # type: ignore[arg-type]
        rows.append({"p": p, "mpe": text(round_to(p.mpe, p.U_dec)), "al": text(round_to(al, p.U_dec)),
                     "risk": f"{100 * (p.probability_outside or 0.0):.2g} %"})
    return rows


def build_report(
    issued: Issued,
    data: Mapping[str, ChannelData],
    cfg: PipelineConfig,
    *,
    config_text: str,
    findings: Sequence[str] = (),
) -> str:
    """report.html of an issued certificate (module docstring): one self-contained HTML page.
    ``findings``: what the evaluation found that cost a point or contradicts the run as
    recorded (`pipelines.run.compute`), listed under "Findings of the evaluation"."""
    from pipelines.dcc.write import STATEMENT_17025, STATEMENT_UNCERTAINTY, cmc_text, traceability_text

    c = issued.content
    payload = qr_payload(c.issue.identifier, issued.sha256)
    points = c.points
    results = [p.result for p in points]
    overviews = []
    for reference in sorted({r.reference for r in results}):
        png = _overview(reference, [r for r in results if r.reference == reference], data)
        if png is not None:
            overviews.append((reference, png))
    errors = [(q, _errors(q, [p for p in points if p.result.quantity == q]))
              for q in sorted({r.quantity for r in results})]
    rule = c.conformity_rule
    return templates().get_template("report.html.j2").render(
        c=c, issued=issued, payload=payload, qr=qr_png(payload), overviews=overviews, errors=errors,
        conformity=_conformity_rows(points, rule) if rule else None, rule=rule,
        curves=[_curve_view(curve) for curve in c.curves.values()],
        cmc_of=lambda p: text(round_uncertainty(p.cmc)) if p.cmc is not None else "",
        ref_correction=lambda p: text(round_to(p.result.reference_correction, p.U_dec)),
        budget_table_id=budget_table_id, config_text=config_text, findings=findings,
        statement_17025=STATEMENT_17025, statement_uncertainty=STATEMENT_UNCERTAINTY,
        statement_cmc=cmc_text(c), statement_traceability=traceability_text(c),
        css=Markup(templates().get_template("report.css").render()),
    )


def _stability_plot(d: StabilityDiagnosis) -> str:
    """The reference over the run, and its windows' std and |slope| against the limits: stable
    stretches shaded green, the steadiest window orange."""
    ref, st, stats = d.reference, d.stability, d.stats
    unit = display_unit(ref.unit)
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    ax_v, ax_s, ax_b = fig.subplots(3, 1, sharex=True)
    t0 = float(ref.t_s[0]) if ref.t_s.size else 0.0
    t = ref.t_s - t0
    ax_v.plot(t, ref.values, color="black", lw=1.0, label=d.label)
    ax_v.set_ylabel(f"reference [{unit}]")
    ax_s.plot(t, stats.std, color="tab:blue", lw=1.0, label=f"std over {st.window_s:g} s")
    ax_s.axhline(st.max_std, color="tab:red", ls="--", lw=1.0, label=f"max_std {st.max_std:g}")
    ax_s.set_ylabel(f"std [{difference_unit(ref.unit)}]")
    ax_b.plot(t, np.abs(stats.slope_per_min), color="tab:purple", lw=1.0,
              label=f"|slope| over {st.window_s:g} s")
    ax_b.axhline(st.max_slope_per_min, color="tab:red", ls="--", lw=1.0,
                 label=f"max_slope_per_min {st.max_slope_per_min:g}")
    ax_b.set_ylabel(f"|slope| [{difference_unit(ref.unit)}/min]")
    for ax, y in ((ax_s, stats.std), (ax_b, np.abs(stats.slope_per_min))):
        if np.any(y > 0):
            ax.set_yscale("log", nonpositive="mask")
    for a, b in d.stretches:
        for ax in (ax_v, ax_s, ax_b):
            ax.axvspan(t[a], t[b - 1], color="tab:green", alpha=0.15, lw=0)
    if d.steadiest is not None:
        j = d.steadiest
        for ax in (ax_v, ax_s, ax_b):
            ax.axvspan(t[j] - st.window_s, t[j], color="tab:orange", alpha=0.3, lw=0,
                       label="steadiest window" if ax is ax_v else None)
    for ax in (ax_v, ax_s, ax_b):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    _elapsed_axis(ax_b, t0)
    return _png(fig)


def build_diagnosis(
    diagnoses: Sequence[StabilityDiagnosis],
    cfg: PipelineConfig,
    *,
    config_text: str,
    software_version: str,
) -> str:
    """report.html for a run without a calibration point: why no plateau held (module
    docstring).  Names no certificate: there is none."""
    views = []
    for d in diagnoses:
        st, ref = d.stability, d.reference
        unit = display_unit(ref.unit)
        dunit = difference_unit(ref.unit)
        rows = [
            ("window_s", f"{st.window_s:g} s", ""),
            ("max_std", f"{fmt(st.max_std)} {dunit}",
             "" if d.steadiest is None else f"{fmt(float(d.stats.std[d.steadiest]))} {dunit}"),
            ("max_slope_per_min", f"{fmt(st.max_slope_per_min)} {dunit}/min",
             "" if d.steadiest is None
             else f"{fmt(abs(float(d.stats.slope_per_min[d.steadiest])))} {dunit}/min"),
            ("min_duration_s", f"{st.min_duration_s:g} s", f"longest stable stretch {d.longest_s:.0f} s"),
        ]
        views.append({
            "d": d, "unit": unit, "rows": rows, "plot": _stability_plot(d),
            "end": "" if d.steadiest is None else f", ending {_time(float(ref.t_s[d.steadiest]))} UTC",
            "span": (f" from {_time(float(ref.t_s[0]))} to {_time(float(ref.t_s[-1]))} UTC"
                     if ref.t_s.size else ""),
        })
    return templates().get_template("diagnosis.html.j2").render(
        cfg=cfg, diagnoses=diagnoses, views=views, config_text=config_text, software_version=software_version,
        css=Markup(templates().get_template("report.css").render()),
    )
