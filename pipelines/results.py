"""Issue a run's results: corrections.csv and `calibration_point` points (SPEC sections 4, 5).

corrections.csv starts with the SPEC's columns, in the SPEC's order,

    run,channel,quantity,point,setpoint,t_start,t_end,n,reference_mean,dut_mean,correction,
    u_combined,U,k,dof_eff

followed by `unit`, `reference`, `reference_correction` (the mean certificate correction
applied to the reference), `flags` (`extrapolated` when the reference's certificate was
extrapolated, `cmc` when U was raised to the laboratory's CMC, `outside_cmc`), `decision` and
`mpe` (the statement of conformity, `pipelines.conformity`, and the MPE it was made against;
empty without [conformity]), `curve_residual` (correction minus the channel's correction curve
at dut_mean; empty without [curve]), then
`n_dut` (the DUT's own readings in the point), `n_eff` (the effective number of independent
samples of the Type A, dof = n_eff - 1), `plateau_start` (the reference's plateau; t_start
is later where the DUT settled later), `direction` (up / down) and `hysteresis`
(|C_up - C_down| at the setpoint; empty without both), `gas_temperature`, `dew_point` [degC]
and `pressure_pa`, `pressure_ratio` (humidity against a dew point; empty otherwise),
`references` (the ids of the [references.<id>] behind the point, space-separated), and
`error` (DUT - reference = -correction), `cmc` (the CMC at the point, empty without one),
`U_budget` (the budget's U before the CMC floor and rounding) and `probability_outside` (with a
decision: probability that the true error lies outside +-MPE).

The values of the SPEC's columns are those the certificate states
(`pipelines.certificate.reported`, GUM 7.2.6): U to two significant digits rounded up and never
below the CMC; reference_mean, dut_mean, correction, error, reference_correction and
curve_residual to U's decimal place; u_combined to two significant digits; k to two decimals;
dof_eff as the integer below (EA-4/02), `inf` when infinite.  The setpoint is the nominal value
(nearest 0.5).  `U_budget` keeps 10 significant digits for a machine that recomputes.

curve.csv (with [curve]) has one row per DUT channel with a curve (`pipelines.curve`):

    run,channel,quantity,unit,degree,n_points,dof,chi2,x_min,x_max,a0..ad,u_a0..u_ad,
    cov_a0_a1,...   (the covariances c_ij, i < j, row by row)

where correction(x) = a0 + a1 x + ... for a DUT indication x (valid from x_min to x_max, the
points' DUT means), u_ai = sqrt(c_ii).

Times are ISO 8601 UTC ("2026-11-20T10:40:00Z", with milliseconds when the
sample time has a fraction); curve.csv's numbers are written with 10 significant digits.

`calibration_point` points go to InfluxDB 1.x (POST /write, precision ns): tags run, channel,
quantity, point; fields setpoint, reference_mean, dut_mean, correction, u_combined, U, k,
n (integer), dof_eff, and beyond the SPEC's: n_dut (integer), n_eff, gas_temperature
(humidity against a dew point only); timestamp = the plateau's last sample.  An infinite dof_eff has no
spelling in line protocol and is left out (read a missing dof_eff as infinite).  Running the
pipeline again replaces the run's points: `write_points` with the run first deletes its
calibration_point points within the run's bounds (InfluxQL DELETE, the WRITE right), so the
points of plateaus a changed [stability] no longer finds do not stay beside the new ones.
A server that refuses the DELETE (InfluxDB 2's v1 API) gets a warning naming `influx delete`.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx

from gateway.errors import RemotecalError
from gateway.sinks.influxdb.lineprotocol import escape_key, escape_measurement
from pipelines.certificate.reported import Reported
from pipelines.certificate.rounding import round_to, round_uncertainty, text
from pipelines.config import RunConfig, SourceConfig
from pipelines.curve import Curve
from pipelines.point import PointResult
from pipelines.source import influx_client, run_condition

__all__ = [
    "CSV_COLUMNS",
    "EXTRA_COLUMNS",
    "csv_row",
    "curve_columns",
    "curve_row",
    "encode_points",
    "format_number",
    "format_time",
    "write_corrections_csv",
    "write_curve_csv",
    "write_points",
]

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "run", "channel", "quantity", "point", "setpoint", "t_start", "t_end", "n",
    "reference_mean", "dut_mean", "correction", "u_combined", "U", "k", "dof_eff",
)
"""The SPEC's columns, in its order."""

EXTRA_COLUMNS = (
    "unit", "reference", "reference_correction", "flags", "decision", "mpe", "curve_residual",
    "n_dut", "n_eff", "plateau_start", "direction", "hysteresis", "gas_temperature", "dew_point",
    "pressure_pa", "pressure_ratio", "references", "error", "cmc", "U_budget", "probability_outside",
)

_MEASUREMENT = escape_measurement("calibration_point")


def format_number(x: float) -> str:
    """10 significant digits; 'inf', '-inf', 'nan' as such."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if math.isnan(x):
        return "nan"
    return format(x, ".10g")


def format_time(t: datetime) -> str:
    """ISO 8601 UTC with a 'Z'; milliseconds only when there is a fraction of a second."""
    spec = "seconds" if t.microsecond == 0 else "milliseconds"
    return t.isoformat(timespec=spec).replace("+00:00", "Z")


def csv_row(p: Reported, curve_residual: float | None = None) -> dict[str, str]:
    """One row of corrections.csv: the point as stated (module docstring)."""
    r = p.result
    return {
        "run": r.run,
        "channel": r.channel,
        "quantity": r.quantity,
        "point": str(r.point),
        "setpoint": format_number(r.setpoint),
        "t_start": format_time(r.t_start),
        "t_end": format_time(r.t_end),
        "n": str(r.n),
        "reference_mean": p.reference_mean_text,
        "dut_mean": p.dut_mean_text,
        "correction": p.correction_text,
        "u_combined": p.u_combined_text,
        "U": p.U_text,
        "k": p.k_text,
        "dof_eff": "inf" if math.isinf(r.dof_eff) else str(math.floor(r.dof_eff + 1e-9)),
        "unit": r.unit,
        "reference": r.reference,
        "reference_correction": text(round_to(r.reference_correction, p.U_dec)),
        "flags": " ".join(p.flags),
        "decision": p.decision,
        "mpe": "" if p.mpe is None else format_number(p.mpe),
        "curve_residual": "" if curve_residual is None else text(round_to(curve_residual, p.U_dec)),
        "n_dut": str(r.n_dut),
        "n_eff": format_number(r.n_eff),
        "plateau_start": format_time(datetime.fromtimestamp(r.plateau_start_s, UTC)),
        "direction": r.direction,
        "hysteresis": _optional(r.hysteresis),
        "gas_temperature": _optional(r.gas_temperature),
        "dew_point": _optional(r.dew_point),
        "pressure_pa": _optional(r.pressure_pa),
        "pressure_ratio": _optional(r.pressure_ratio),
        "references": " ".join(i.id for i in r.references),
        "error": p.error_text,
        "cmc": "" if p.cmc is None else text(round_uncertainty(p.cmc)),
        "U_budget": format_number(r.U),
        "probability_outside": "" if p.probability_outside is None else format(p.probability_outside, ".2g"),
    }


def _optional(x: float | None) -> str:
    return "" if x is None else format_number(x)


def _write_csv(path: str | Path, columns: Sequence[str], rows: Sequence[dict[str, str]]) -> Path:
    """Write a CSV file (header even when there are no rows) to a temporary file and rename
    it, so a reader never sees half a file; return its path."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        tmp.replace(p)
    except OSError as exc:
        raise RemotecalError(f"cannot write {p}: {exc.strerror or exc}") from None
    return p


def write_corrections_csv(
    points: Sequence[Reported], path: str | Path, *, curves: Mapping[str, Curve] | None = None
) -> Path:
    """Write corrections.csv (header even when there are no rows); return its path.

    With ``curves`` (by channel), each point of a channel with a curve gets its residual.
    """
    curves = curves or {}
    rows = []
    for p in points:
        r = p.result
        curve = curves.get(r.channel)
        residual = curve.residual_of(r.point) if curve is not None and r.point in curve.points else None
        rows.append(csv_row(p, residual))
    return _write_csv(path, [*CSV_COLUMNS, *EXTRA_COLUMNS], rows)


def curve_columns(degree: int) -> list[str]:
    """The columns of curve.csv for curves of ``degree``."""
    terms = range(degree + 1)
    return [
        "run", "channel", "quantity", "unit", "degree", "n_points", "dof", "chi2", "x_min", "x_max",
        *(f"a{i}" for i in terms), *(f"u_a{i}" for i in terms),
        *(f"cov_a{i}_a{j}" for i in terms for j in terms if i < j),
    ]


def curve_row(c: Curve) -> dict[str, str]:
    terms = range(c.degree + 1)
    row = {
        "run": c.run, "channel": c.channel, "quantity": c.quantity, "unit": c.unit,
        "degree": str(c.degree), "n_points": str(c.x.size), "dof": str(c.dof),
        "chi2": format_number(c.chi2), "x_min": format_number(float(c.x.min())),
        "x_max": format_number(float(c.x.max())),
    }
    row.update({f"a{i}": format_number(float(c.coefficients[i])) for i in terms})
    row.update({f"u_a{i}": format_number(float(c.standard_uncertainties[i])) for i in terms})
    row.update({f"cov_a{i}_a{j}": format_number(float(c.covariance[i, j]))
                for i in terms for j in terms if i < j})
    return row


def write_curve_csv(curves: Mapping[str, Curve], degree: int, path: str | Path) -> Path:
    """Write curve.csv, one row per channel with a curve; return its path."""
    return _write_csv(path, curve_columns(degree), [curve_row(c) for c in curves.values()])


def _field(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"{x!r} cannot be written in line protocol")
    return repr(float(x))


def _delete_points_of(client: httpx.Client, source: SourceConfig, run: RunConfig) -> None:
    """DELETE the calibration_point points of ``run`` (within its bounds); warn if refused."""
    q = f'DELETE FROM "calibration_point" WHERE {run_condition(run)}'
    r = client.post(f"{source.url}/query", data={"db": source.database or "", "q": q})
    error = None
    if r.status_code != 200:
        error = f"{r.status_code} {r.text.strip()[:200]}"
    else:
        results = r.json().get("results") or [{}]
        error = results[0].get("error")
    if error:
        log.warning("InfluxDB at %s did not delete the earlier calibration_point points of run %s (%s): "
                    "points of an earlier computation may stay beside these (InfluxDB 2: `influx delete "
                    "--bucket BUCKET --start ... --stop ... --predicate '_measurement=\"calibration_point\" "
                    "AND run=\"%s\"'`)", source.url, run.id, error, run.id)


def encode_points(results: Sequence[PointResult]) -> bytes:
    """The results as `calibration_point` line protocol, one line each."""
    lines = []
    for r in results:
        tags = ",".join(
            f"{k}={escape_key(v, 'tag value')}"
            for k, v in (("channel", r.channel), ("point", str(r.point)),
                         ("quantity", r.quantity), ("run", r.run))
        )
        fields = [
            f"U={_field(r.U)}",
            f"correction={_field(r.correction)}",
            *([f"dof_eff={_field(r.dof_eff)}"] if math.isfinite(r.dof_eff) else []),
            f"dut_mean={_field(r.dut_mean)}",
            *([f"gas_temperature={_field(r.gas_temperature)}"] if r.gas_temperature is not None else []),
            f"k={_field(r.k)}",
            f"n={r.n:d}i",
            f"n_dut={r.n_dut:d}i",
            f"n_eff={_field(r.n_eff)}",
            f"reference_mean={_field(r.reference_mean)}",
            f"setpoint={_field(r.setpoint)}",
            f"u_combined={_field(r.u_combined)}",
        ]
        lines.append(f"{_MEASUREMENT},{tags} {','.join(fields)} {r.t_end_ns:d}")
    return "\n".join(lines).encode()


def write_points(results: Sequence[PointResult], source: SourceConfig, run: RunConfig | None = None) -> int:
    """POST the results to the source's InfluxDB (v1 /write); return the points written.

    With ``run``, the run's earlier calibration_point points (within its bounds) are deleted
    first: a run computed again replaces its points instead of leaving the earlier ones
    beside them (their plateaus, hence their times, may differ).  If the server refuses the
    deletion (a user without the right), a warning says so and the new points are written.

    Raises RemotecalError (one line, naming the URL) when the server cannot be reached or
    refuses the points.
    """
    if not results:
        return 0
    if source.url is None or source.database is None:
        raise RemotecalError("source: writing calibration_point needs url and database")
    params = {"db": source.database, "precision": "ns"}
    if source.retention_policy:
        params["rp"] = source.retention_policy
    body = encode_points(results)
    try:
        with influx_client(source) as client:
            if run is not None:
                _delete_points_of(client, source, run)
            r = client.post(f"{source.url}/write", params=params, content=body)
    except httpx.HTTPError as exc:
        raise RemotecalError(
            f"cannot write calibration_point to InfluxDB at {source.url}: {str(exc) or type(exc).__name__}"
        ) from None
    if r.status_code != 204:
        text = r.text.strip()[:200]
        raise RemotecalError(
            f"InfluxDB at {source.url} refused the calibration_point points ({r.status_code}): {text}"
        )
    log.info("wrote %d calibration_point point(s) to %s, database %s", len(results), source.url,
             source.database)
    return len(results)
