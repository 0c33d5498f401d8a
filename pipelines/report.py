"""report.html: one self-contained page a person reads to check a run before signing it.

Everything is inline - plots as base64 PNG drawn with matplotlib's Agg canvas (no pyplot, so
no global state and no display), the QR code as base64 PNG, the CSS in a <style> element -
so the file can be mailed, archived next to certificate.xml and opened offline; nothing in
it refers to the network.

Sections, in order:

1. the run, the software version, the certificate's unique identifier and the SHA-256 of
   certificate.xml, printed and as a QR code (`qr_payload`) so that a printed page can be
   matched with its certificate;
2. the corrections, one row per DUT channel and point, with U, k and flags;
3. the flags, explained;
4. per reference, the run overview: the reference and the DUTs compared with it over time,
   the plateaus shaded and numbered;
5. per quantity, the error of each DUT (DUT - reference = -correction) against the
   setpoint, with U as error bars (hollow markers: flagged points);
6. with [conformity], the statements of conformity: the decision rule (ILAC-G8:09/2019),
   the MPE, and per point the error, U and the decision;
7. with [curve], per DUT channel the correction curve: its coefficients with their standard
   uncertainties and correlations, chi^2, and the residual of every point;
8. per point, the uncertainty budget (EA-4/02 layout) with u_c, nu_eff, k and U;
9. the config that produced the run, verbatim.

A run without a calibration point gets `build_diagnosis` instead: no certificate to name,
and per reference the stability criteria, how near it came (the steadiest window, the
longest stable stretch) and its trace over the run with the windows' standard deviation
and slope against their limits, the config verbatim; plainly titled as no calibration.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import qrcode
import qrcode.constants
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.config import PipelineConfig
from pipelines.conformity import DECISIONS, RULE_TEXT
from pipelines.curve import Curve
from pipelines.dcc import DccError, certificate_identifier
from pipelines.run import PointResult, StabilityDiagnosis
from pipelines.source import ChannelData

__all__ = [
    "FLAG_TEXT",
    "budget_table_id",
    "build_diagnosis",
    "build_report",
    "display_unit",
    "fmt",
    "fmt_dof",
    "qr_matrix",
    "qr_payload",
]

FLAG_TEXT = {
    "extrapolated": (
        "the reference's indication lay outside the rows of its calibration certificate; its "
        "correction was extrapolated linearly and its uncertainty held at the outermost row's"
    ),
}

_UNITS = {"degC": "°C", "degF": "°F", "%rh": "%rh", "1": ""}

_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 24px auto; max-width: 1200px;
       color: #111; font-size: 14px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 18px; border-bottom: 1px solid #999; margin-top: 32px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; }
td.text, th.text { text-align: left; }
tr.total td { font-weight: bold; background: #f6f6f6; }
tr.flagged td { background: #fff3cd; }
td.pass { color: #0a6b0a; font-weight: bold; }
td.fail { color: #b00020; font-weight: bold; }
td.conditionalPass, td.conditionalFail { color: #8a5a00; font-weight: bold; }
.header { display: flex; justify-content: space-between; align-items: flex-start; gap: 24px; }
.ident { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-all; }
.qr { text-align: center; }
.qr img { width: 180px; height: 180px; image-rendering: pixelated; }
img.plot { max-width: 100%; }
pre { background: #f6f6f6; border: 1px solid #ccc; padding: 8px; overflow-x: auto; font-size: 12px; }
.flag { color: #8a5a00; font-weight: bold; }
"""


def display_unit(unit: str) -> str:
    return _UNITS.get(unit, unit)


def fmt(x: float | None, digits: int = 4) -> str:
    """Numbers as the report prints them: ``digits`` significant digits, inf as ∞."""
    if x is None:
        return ""
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if math.isnan(x):
        return "nan"
    return format(x, f".{digits}g")


def fmt_dof(x: float) -> str:
    """Degrees of freedom as the report prints them: ∞, 4 significant digits, or e-notation."""
    return "∞" if math.isinf(x) else format(x, ".4g") if x < 1e6 else format(x, ".2e")


def _time(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def budget_table_id(r: PointResult) -> str:
    """The HTML id of a point's budget table."""
    return "budget-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in r.channel) + f"-{r.point}"


def qr_payload(certificate_id: str, sha256_hex: str) -> str:
    """What the QR code carries: compact JSON ``{"dcc":ID,"sha256":HEX}``."""
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


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _qr_png(payload: str) -> str:
    img = _qr(payload).make_image()
    buf = io.BytesIO()
    img.save(buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _dt64(t_s: np.ndarray) -> np.ndarray:
    return (np.asarray(t_s, dtype=np.float64) * 1e6).astype("datetime64[us]")


def _overview(reference: str, points: Sequence[PointResult], data: Mapping[str, ChannelData]) -> str | None:
    ref = data.get(reference)
    if ref is None or ref.t_s.size == 0:
        return None
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.add_subplot()
    equipment = sorted({ch for r in points for ch, _ in r.equipment} - {reference})
    ax.plot(_dt64(ref.t_s), ref.values, color="black", lw=1.2, label=f"{reference} (reference)")
    for name in equipment:  # the thermometer beside a dew-point mirror
        other = data.get(name)
        if other is not None and other.unit == ref.unit:
            ax.plot(_dt64(other.t_s), other.values, color="dimgray", lw=1.0, ls="--",
                    label=f"{name} (reference)")
    dut_ax = ax
    if any(r.unit != ref.unit for r in points):
        # DUTs in another unit than the reference channel (%rh against a dew point): own axis.
        dut_ax = ax.twinx()
        dut_ax.set_ylabel(f"{points[0].quantity.replace('_', ' ')} [{display_unit(points[0].unit)}]")
    for channel in sorted({r.channel for r in points}):
        ch = data.get(channel)
        if ch is not None:
            dut_ax.plot(_dt64(ch.t_s), ch.values, lw=0.8, label=channel)
    if dut_ax is not ax:
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = dut_ax.get_legend_handles_labels()
        dut_ax.legend(lines + more, labels + more_labels, loc="best", fontsize=8)
    plateaus = {r.point: (r.t_start_s, r.t_end_s) for r in points}
    for number, (a, b) in sorted(plateaus.items()):
        ax.axvspan(_dt64(np.array([a]))[0], _dt64(np.array([b]))[0], color="tab:green", alpha=0.15, lw=0)
        middle = _dt64(np.array([(a + b) / 2]))[0]
        ax.annotate(f"P{number}", xy=(middle, 1.0), xycoords=("data", "axes fraction"),
                    ha="center", va="bottom", fontsize=9)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    ax.set_xlabel("time (UTC)")
    quantities = [ref.quantity.replace("_", " ")]
    quantities += [data[name].quantity.replace("_", " ") for name in equipment
                   if name in data and data[name].unit == ref.unit]
    ax.set_ylabel(f"{', '.join(dict.fromkeys(quantities))} [{display_unit(ref.unit)}]")
    ax.grid(True, alpha=0.3)
    if dut_ax is ax:
        ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _errors(quantity: str, points: Sequence[PointResult]) -> str:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.add_subplot()
    channels = sorted({r.channel for r in points})
    spread = 0.04 * (max(r.setpoint for r in points) - min(r.setpoint for r in points) or 1.0)
    for i, channel in enumerate(channels):
        mine = sorted((r for r in points if r.channel == channel), key=lambda r: r.setpoint)
        offset = (i - (len(channels) - 1) / 2) * spread / max(len(channels), 1)
        x = np.array([r.setpoint + offset for r in mine])
        y = np.array([-r.correction for r in mine])
        u = np.array([r.U for r in mine])
        line = ax.errorbar(x, y, yerr=u, marker="o", capsize=4, lw=1, label=channel)
        flagged = np.array([bool(r.flags) for r in mine])
        if flagged.any():
            color = line.lines[0].get_color()
            ax.plot(x[flagged], y[flagged], "o", ms=10, mfc="white", mec=color, mew=1.5)
    ax.axhline(0.0, color="black", lw=0.8)
    mpes = {r.mpe for r in points if r.mpe is not None}
    if len(mpes) == 1:
        mpe = mpes.pop()
        for sign in (-1, 1):
            ax.axhline(sign * mpe, color="tab:red", lw=1, ls="--", label="±MPE" if sign > 0 else None)
    unit = display_unit(points[0].unit)
    ax.set_xlabel(f"setpoint [{unit}]")
    ax.set_ylabel(f"error = DUT - reference [{unit}]")
    ax.set_title(f"{quantity.replace('_', ' ')}: error with expanded uncertainty U (k as in the tables)",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _references(r: PointResult) -> str:
    """The reference instruments of a point: one channel, or a dew-point mirror + a thermometer."""
    return " + ".join(channel for channel, _ in r.equipment)


def _summary(results: Sequence[PointResult]) -> str:
    head: tuple[str, ...] = ("channel", "reference", "point", "setpoint", "start (UTC)", "end (UTC)", "n",
                             "reference mean", "DUT mean", "correction", "U", "k", "flags")
    decisions = any(r.decision for r in results)
    if decisions:
        head += ("decision",)
    rows = []
    for r in results:
        unit = html.escape(display_unit(r.unit))
        cells = [
            f'<td class="text">{html.escape(r.channel)}</td>',
            f'<td class="text">{html.escape(_references(r))}</td>',
            f"<td>{r.point}</td>",
            f"<td>{fmt(r.setpoint)} {unit}</td>",
            f'<td class="text">{_time(r.t_start_s)}</td>',
            f'<td class="text">{_time(r.t_end_s)}</td>',
            f"<td>{r.n}</td>",
            f"<td>{r.reference_mean:.4f}</td>",
            f"<td>{r.dut_mean:.4f}</td>",
            f"<td>{r.correction:+.4f}</td>",
            f"<td>{r.U:#.3g}</td>",
            f"<td>{r.k:#.3g}</td>",
            f'<td class="text flag">{html.escape(", ".join(r.flags))}</td>',
        ]
        if decisions:
            cells.append(f'<td class="text {r.decision}">{html.escape(DECISIONS.get(r.decision, ""))}</td>')
        cls = ' class="flagged"' if r.flags else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table id="corrections"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _budget(r: PointResult) -> str:
    unit = html.escape(display_unit(r.unit))
    title = (f"{html.escape(r.channel)}, point {r.point}: setpoint {fmt(r.setpoint)} {unit}, reference "
             f"{html.escape(_references(r))}, {_time(r.t_start_s)} to {_time(r.t_end_s)} UTC, n = {r.n}")
    if r.flags:
        title += f' <span class="flag">[{html.escape(", ".join(r.flags))}]</span>'
    head = ("input quantity", "distribution", "estimate", f"u(x<sub>i</sub>) [{unit}]",
            "sensitivity c<sub>i</sub>", f"contribution u<sub>i</sub>(y) [{unit}]", "dof ν<sub>i</sub>")
    rows = []
    for c in r.budget.components:
        value, u, sensitivity = fmt(c.value), fmt(c.u), fmt(c.sensitivity)
        if c.unit is not None and c.unit != r.unit:
            # An input in its own unit (a dew point in a budget of %rh).
            x_unit = html.escape(display_unit(c.unit))
            value = f"{value} {x_unit}" if value else ""
            u, sensitivity = f"{u} {x_unit}", f"{sensitivity} {unit}/{x_unit}"
        rows.append(
            '<tr class="component">'
            f'<td class="text">{html.escape(c.name)}</td><td class="text">{html.escape(c.distribution)}</td>'
            f"<td>{value}</td><td>{u}</td><td>{sensitivity}</td>"
            f"<td>{fmt(c.contribution)}</td><td>{fmt_dof(c.dof)}</td></tr>"
        )
    totals = (
        ("combined standard uncertainty u<sub>c</sub>", f"{fmt(r.u_combined)} {unit}"),
        ("effective degrees of freedom ν<sub>eff</sub>", fmt_dof(r.dof_eff)),
        ("coverage factor k (95.45 %)", f"{r.k:#.3g}"),
        ("expanded uncertainty U = k u<sub>c</sub>", f"{fmt(r.U)} {unit}"),
    )
    for label, value in totals:
        rows.append(
            f'<tr class="total"><td class="text" colspan="5">{label}</td><td colspan="2">{value}</td></tr>'
        )
    ths = "".join(f"<th>{h}</th>" for h in head)
    return (f'<h3>{title}</h3><table class="budget" id="{budget_table_id(r)}"><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            f"<p>correction = {r.correction:+.4f} {unit} ± {r.U:#.3g} {unit} (k = {r.k:#.3g}, "
            f"ν<sub>eff</sub> = {fmt_dof(r.dof_eff)})</p>")


def _conformity(results: Sequence[PointResult], cfg: PipelineConfig) -> str:
    assert cfg.conformity is not None
    decided = [r for r in results if r.decision]
    parts = [f'<p id="decision-rule">{html.escape(RULE_TEXT[cfg.conformity.rule])} '
             "The error is DUT - reference = -correction.</p>"]
    if not decided:
        return parts[0] + "<p>No point has an MPE for its quantity: no decisions.</p>"
    head = ("channel", "point", "setpoint", "error", "U", "MPE", "decision")
    rows = []
    for r in decided:
        unit = html.escape(display_unit(r.unit))
        rows.append(
            f'<tr><td class="text">{html.escape(r.channel)}</td><td>{r.point}</td>'
            f"<td>{fmt(r.setpoint)} {unit}</td><td>{r.error:+.4f} {unit}</td><td>{r.U:#.3g} {unit}</td>"
            f"<td>{fmt(r.mpe)} {unit}</td>"
            f'<td class="text {r.decision}">{html.escape(DECISIONS[r.decision])}</td></tr>'
        )
    ths = "".join(f"<th>{h}</th>" for h in head)
    counts = ", ".join(f"{sum(r.decision == d for r in decided)} {text}" for d, text in DECISIONS.items())
    return (parts[0] + f'<table id="conformity"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table><p>{len(decided)} point(s): {counts}.</p>")


def _curve(c: Curve) -> str:
    unit = html.escape(display_unit(c.unit))
    terms = " + ".join(["a<sub>0</sub>"] + [f"a<sub>{i}</sub> x" + (f"<sup>{i}</sup>" if i > 1 else "")
                                              for i in range(1, c.degree + 1)])
    u = c.standard_uncertainties
    rows = []
    for i, a in enumerate(c.coefficients):
        power = 1 - i
        a_unit = "" if power == 0 else unit if power == 1 else f"{unit}<sup>{power}</sup>"
        corr = " ".join(fmt(float(c.covariance[i, j] / (u[i] * u[j])), 3) for j in range(c.degree + 1))
        rows.append(f"<tr><td class=\"text\">a<sub>{i}</sub></td><td>{fmt(float(a), 6)} {a_unit}</td>"
                    f"<td>{fmt(float(u[i]), 3)} {a_unit}</td><td class=\"text\">{corr}</td></tr>")
    coef = ('<table class="curve"><thead><tr><th>coefficient</th><th>value</th><th>standard uncertainty</th>'
            f'<th>correlations</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    res_rows = "".join(
        f"<tr><td>{p}</td><td>{x:.4f} {unit}</td><td>{y:+.4f} {unit}</td><td>{fmt(float(uj), 3)} {unit}</td>"
        f"<td>{float(f):+.4f} {unit}</td><td>{float(res):+.4f} {unit}</td>"
        f"<td>{float(res / uj):+.2f}</td></tr>"
        for p, x, y, uj, f, res in zip(c.points, c.x, c.y, c.u, c(c.x), c.residuals, strict=True)
    )
    residuals = ('<table class="curve-residuals"><thead><tr><th>point</th><th>DUT mean x</th>'
                 "<th>correction</th><th>u<sub>c</sub></th><th>curve</th><th>residual</th>"
                 f"<th>residual / u<sub>c</sub></th></tr></thead><tbody>{res_rows}</tbody></table>")
    birge = "" if c.dof == 0 else f", Birge ratio √(χ²/dof) = {c.birge_ratio:.3g}"
    return (f'<h3 id="curve-{html.escape(c.channel)}">{html.escape(c.channel)}: correction(x) = {terms}</h3>'
            f"<p>x is the DUT's indication [{unit}], valid from {c.x.min():.4g} to {c.x.max():.4g} {unit}; "
            f"χ² = {c.chi2:.3g} with {c.dof} degree(s) of freedom{birge}.</p>" + coef + residuals)


def build_report(
    results: Sequence[PointResult],
    data: Mapping[str, ChannelData],
    cfg: PipelineConfig,
    *,
    config_text: str,
    software_version: str,
    certificate_xml: bytes,
    certificate_id: str,
    curves: Mapping[str, Curve] | None = None,
) -> str:
    """report.html for a run's results (module docstring): one self-contained HTML page.

    ``data`` are the run's readings by channel (for the overview plots); ``certificate_xml``
    the exact bytes of certificate.xml, whose SHA-256 the page prints and encodes in its QR
    code together with ``certificate_id``; ``curves`` the correction curves by channel.
    Raises DccError when the certificate states another uniqueIdentifier than
    ``certificate_id``.
    """
    if certificate_xml:
        stated = certificate_identifier(certificate_xml)
        if stated != certificate_id:
            raise DccError(
                f"certificate.xml is {stated!r}, not {certificate_id!r}: "
                "the report would name another certificate"
            )
    sha = hashlib.sha256(certificate_xml).hexdigest()
    payload = qr_payload(certificate_id, sha)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Calibration report {esc(cfg.run.id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        '<div class="header"><div>',
        f"<h1>Calibration report, run {esc(cfg.run.id)}</h1>",
    ]
    if results:
        begin = min(r.t_start_s for r in results)
        end = max(r.t_end_s for r in results)
        parts.append(f"<p>Plateaus from {_time(begin)} to {_time(end)} UTC; "
                     f"{len(results)} calibration point(s) of {len({r.channel for r in results})} "
                     "DUT channel(s).</p>")
    parts += [
        f'<p>Produced by remotecal <span id="software-version">{esc(software_version)}</span>.</p>',
        '<table class="ident-table">',
        f'<tr><th class="text">certificate (DCC uniqueIdentifier)</th>'
        f'<td class="text ident" id="certificate-id">{esc(certificate_id)}</td></tr>',
        f'<tr><th class="text">SHA-256 of certificate.xml</th>'
        f'<td class="text ident" id="certificate-sha256">{sha}</td></tr>',
        "</table></div>",
        f'<div class="qr">{_img(_qr_png(payload), "QR code: certificate id and SHA-256", "qr")}'
        f'<div class="ident" id="qr-payload">{esc(payload)}</div></div>',
        "</div>",
        "<h2>Corrections</h2>",
        "<p>correction = reference mean (certificate correction applied) - DUT mean: add it to the DUT's "
        "reading. U is the expanded uncertainty of the correction for 95.45 % coverage.</p>",
        _summary(results) if results else "<p>No calibration points: no plateau held on any reference.</p>",
    ]

    flagged = [r for r in results if r.flags]
    parts.append('<h2>Flags</h2><ul id="flags">')
    if flagged:
        for r in flagged:
            for flag in r.flags:
                parts.append(f'<li><span class="flag">{esc(flag)}</span>: {esc(r.channel)}, point {r.point} '
                             f"(setpoint {fmt(r.setpoint)} {esc(display_unit(r.unit))}): "
                             f"{esc(FLAG_TEXT.get(flag, flag))}</li>")
    else:
        parts.append("<li>none</li>")
    parts.append("</ul>")

    parts.append("<h2>Run overview</h2>")
    for reference in sorted({r.reference for r in results}):
        png = _overview(reference, [r for r in results if r.reference == reference], data)
        if png is not None:
            parts.append(f"<h3>Reference {esc(reference)}</h3>"
                         + _img(png, f"run overview, reference {reference}, plateaus shaded"))

    parts.append("<h2>Errors against setpoint</h2>")
    for quantity in sorted({r.quantity for r in results}):
        mine = [r for r in results if r.quantity == quantity]
        parts.append(_img(_errors(quantity, mine), f"error of each DUT against setpoint, {quantity}"))

    if cfg.conformity is not None:
        parts.append("<h2>Statements of conformity</h2>")
        parts.append(_conformity(results, cfg))

    if curves:
        parts.append("<h2>Correction curves</h2>")
        parts.append("<p>Weighted least squares (weights 1/u<sub>c</sub><sup>2</sup>) of the correction "
                     "against the DUT's indication; the coefficients' uncertainties from their unscaled "
                     "covariance, the points taken as uncorrelated (their common Type B contributions are "
                     "not): use the curve between points, with each point's own U.</p>")
        parts += [_curve(c) for c in curves.values()]

    parts.append("<h2>Uncertainty budgets</h2>")
    parts.append("<p>Uncorrelated input quantities (JCGM 100:2008 eq. 10), contributions "
                 "u<sub>i</sub>(y) = |c<sub>i</sub>| u(x<sub>i</sub>), ν<sub>eff</sub> by "
                 "Welch-Satterthwaite, k from Student's t for 95.45 % coverage (EA-4/02 M:2013).</p>")
    parts += [_budget(r) for r in results]

    parts += _footer(config_text, software_version)
    return "\n".join(parts) + "\n"


def _footer(config_text: str, software_version: str) -> list[str]:
    """The end of every page: the config as run, and the software that ran it."""
    return ["<h2>Configuration</h2>", f'<pre id="config">{html.escape(config_text)}</pre>',
            f"<p>remotecal {html.escape(software_version)}</p>", "</body></html>"]


def _stability_plot(d: StabilityDiagnosis) -> str:
    """The reference over the run, and its windows' std and |slope| against the limits: stable
    stretches shaded green, the steadiest window orange."""
    ref, st, stats = d.reference, d.stability, d.stats
    unit = display_unit(ref.unit)
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    ax_v, ax_s, ax_b = fig.subplots(3, 1, sharex=True)
    t = _dt64(ref.t_s)
    ax_v.plot(t, ref.values, color="black", lw=1.0, label=d.label)
    ax_v.set_ylabel(f"reference [{unit}]")
    ax_s.plot(t, stats.std, color="tab:blue", lw=1.0, label=f"std over {st.window_s:g} s")
    ax_s.axhline(st.max_std, color="tab:red", ls="--", lw=1.0, label=f"max_std {st.max_std:g}")
    ax_s.set_ylabel(f"std [{unit}]")
    ax_b.plot(t, np.abs(stats.slope_per_min), color="tab:purple", lw=1.0,
              label=f"|slope| over {st.window_s:g} s")
    ax_b.axhline(st.max_slope_per_min, color="tab:red", ls="--", lw=1.0,
                 label=f"max_slope_per_min {st.max_slope_per_min:g}")
    ax_b.set_ylabel(f"|slope| [{unit}/min]")
    for ax, y in ((ax_s, stats.std), (ax_b, np.abs(stats.slope_per_min))):
        if np.any(y > 0):
            ax.set_yscale("log", nonpositive="mask")
    for a, b in d.stretches:
        for ax in (ax_v, ax_s, ax_b):
            ax.axvspan(t[a], t[b - 1], color="tab:green", alpha=0.15, lw=0)
    if d.steadiest is not None:
        j = d.steadiest
        lo = _dt64(np.array([ref.t_s[j] - st.window_s]))[0]
        for ax in (ax_v, ax_s, ax_b):
            ax.axvspan(lo, t[j], color="tab:orange", alpha=0.3, lw=0,
                       label="steadiest window" if ax is ax_v else None)
    for ax in (ax_v, ax_s, ax_b):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    ax_b.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    ax_b.set_xlabel("time (UTC)")
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
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>No calibration point: run {esc(cfg.run.id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1 id="no-calibration">No calibration point: run {esc(cfg.run.id)}</h1>',
        "<p><b>Nothing was calibrated and nothing is certified:</b> no DUT could be compared at a "
        "plateau of its reference, so this run has no corrections, no certificate.xml and no "
        "calibration_point points. This page shows why, for the engineer; it is not a calibration "
        "report.</p>",
        f'<p>Produced by remotecal <span id="software-version">{esc(software_version)}</span>.</p>',
        '<ul id="reasons">',
        *(f"<li><b>{esc(d.label)}</b>: {esc(d.summary())}</li>" for d in diagnoses),
        "</ul>",
    ]
    for d in diagnoses:
        st, ref = d.stability, d.reference
        unit = esc(display_unit(ref.unit))
        rows = [
            ("window_s", f"{st.window_s:g} s", ""),
            ("max_std", f"{fmt(st.max_std)} {unit}",
             "" if d.steadiest is None else f"{fmt(float(d.stats.std[d.steadiest]))} {unit}"),
            ("max_slope_per_min", f"{fmt(st.max_slope_per_min)} {unit}/min",
             "" if d.steadiest is None
             else f"{fmt(abs(float(d.stats.slope_per_min[d.steadiest])))} {unit}/min"),
            ("min_duration_s", f"{st.min_duration_s:g} s", f"longest stable stretch {d.longest_s:.0f} s"),
        ]
        end = "" if d.steadiest is None else f", ending {_time(float(ref.t_s[d.steadiest]))} UTC"
        parts += [
            f"<h2>Reference {esc(d.label)}</h2>",
            f"<p>Criteria from {esc(d.section)}; {ref.t_s.size} readings"
            + (f" from {_time(float(ref.t_s[0]))} to {_time(float(ref.t_s[-1]))} UTC" if ref.t_s.size else "")
            + f"; {len(d.plateaus)} plateau(s).</p>",
            '<table class="criteria">',
            f'<tr><th class="text">criterion</th><th>limit</th><th>steadiest window{end}</th></tr>',
            *(f'<tr><td class="text">{name}</td><td>{limit}</td><td>{got}</td></tr>'
              for name, limit, got in rows),
            "</table>",
            _img(_stability_plot(d), f"reference {d.label}: readings, and each window's std and |slope| "
                 "against the limits"),
        ]
    parts += _footer(config_text, software_version)
    return "\n".join(parts) + "\n"
