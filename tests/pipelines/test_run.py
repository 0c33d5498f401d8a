"""The pipeline end to end, on a synthetic run with a known truth, against a real influxd.

The chamber steps 10 -> 20 -> 30 degC (40 min plateaus at 1 Hz, 10 min ramps, a small
ripple). The reference reads the chamber's true temperature minus its certificate correction
(so that reference + correction is the truth again), with noise; DUT 1 reads 0.15 degC high,
DUT 2 reads 0.08 degC low plus a 0.002/degC slope, both with noise and 0.01 degC digits, half
a second after the reference; DUT 2 misses 15 minutes in the middle of the second plateau.
"""

from __future__ import annotations

import csv
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import ConfigError, RemotecalError
from gateway.reading import Reading
from gateway.sinks.influxdb.lineprotocol import encode_batch
from pipelines.config import CertificateConfig, load_pipeline_config, parse_pipeline_config
from pipelines.pipeline import run_pipeline
from pipelines.results import CSV_COLUMNS, write_points
from pipelines.run import apply_certificate, compute, interpolate_onto, round_setpoint
from pipelines.source import ChannelData, query_readings
from remotecal.cli import main
from tests.servers.influx import InfluxD

HERE = Path(__file__).parent
RUN = "RC-TEST-0001"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC).timestamp()
PLATEAU_S = 2400
RAMP_S = 600
SETPOINTS = (10.0, 20.0, 30.0)
CERT = [[0.0, 0.07, 0.02, 2.0], [10.0, 0.05, 0.02, 2.0], [20.0, 0.03, 0.02, 2.0], [30.0, 0.02, 0.02, 2.0], [40.0, 0.01, 0.02, 2.0]]
GAP = (T0 + PLATEAU_S + RAMP_S + 1000.0, T0 + PLATEAU_S + RAMP_S + 1900.0)  # in plateau 2


def dut1_error(t: np.ndarray) -> np.ndarray:
    return np.full_like(t, 0.15)


def dut2_error(t: np.ndarray) -> np.ndarray:
    return -0.08 + 0.002 * (t - 20.0)


def chamber(t_s: np.ndarray) -> np.ndarray:
    """The true temperature: plateaus joined by linear ramps, plus a 0.004 degC ripple."""
    knots_t, knots_v = [T0], [SETPOINTS[0]]
    t = T0
    for i, sp in enumerate(SETPOINTS):
        t += PLATEAU_S
        knots_t.append(t)
        knots_v.append(sp)
        if i + 1 < len(SETPOINTS):
            t += RAMP_S
            knots_t.append(t)
            knots_v.append(SETPOINTS[i + 1])
    return np.interp(t_s, knots_t, knots_v) + 0.004 * np.sin(2 * np.pi * (t_s - T0) / 300.0)


def indication_for(true_t: np.ndarray) -> np.ndarray:
    """The reference's indication I with I + correction(I) = true_t (fixed point)."""
    rows = np.asarray(CERT)
    x = true_t.copy()
    for _ in range(6):
        x = true_t - np.interp(x, rows[:, 0], rows[:, 1])
    return x


def synthetic_run(seed: int = 1) -> list[Reading]:
    rng = np.random.default_rng(seed)
    end = T0 + len(SETPOINTS) * PLATEAU_S + (len(SETPOINTS) - 1) * RAMP_S
    t_ref = np.arange(T0, end, 1.0)
    t_dut = t_ref + 0.5
    ref = indication_for(chamber(t_ref)) + rng.normal(0, 0.003, t_ref.size)
    true_at_dut = chamber(t_dut)
    dut1 = np.round((true_at_dut + dut1_error(true_at_dut) + rng.normal(0, 0.01, t_dut.size)) / 0.01) * 0.01
    dut2 = np.round((true_at_dut + dut2_error(true_at_dut) + rng.normal(0, 0.01, t_dut.size)) / 0.01) * 0.01
    rh = 40 + rng.normal(0, 0.1, t_dut.size)

    def readings(channel: str, quantity: str, unit: str, role: str, t: np.ndarray, v: np.ndarray,
                 run: str = RUN) -> list[Reading]:
        return [
            Reading("lab1", "gw01", run, channel, quantity, unit, role, float(x), round(ts * 1e9))
            for ts, x in zip(t, v, strict=True)
        ]

    keep2 = (t_dut < GAP[0]) | (t_dut >= GAP[1])
    out = readings("ref-t", "temperature", "degC", "reference", t_ref, ref)
    out += readings("dut1-t", "temperature", "degC", "dut", t_dut, dut1)
    out += readings("dut2-t", "temperature", "degC", "dut", t_dut[keep2], dut2[keep2])
    out += readings("dut1-rh", "relative_humidity", "%rh", "dut", t_dut, rh)
    # Another run in the same database, which must not leak into this one.
    out += readings("dut1-t", "temperature", "degC", "dut", t_dut[:600], dut1[:600] + 5.0, run="RC-OTHER")
    return out


PIPELINE_TOML = """\
[run]
id = "{run}"
start = "2026-11-20T07:00:00Z"
end = "2026-11-20T12:00:00Z"

[source]
kind = "influxdb"
url = "{url}"
api = "v1"
database = "{database}"
chunk_size = 1000

[stability]
window_s = 600
max_std = 0.02
max_slope_per_min = 0.005
min_duration_s = 900

[[comparisons]]
dut = "dut*"
reference = "ref-t"
quantity = "temperature"

[reference_certificate.ref-t]
points = {cert}

[uncertainty]
reference_drift = 0.01
dut_resolution = 0.01
chamber_inhomogeneity = 0.03
self_heating = 0.002
"""


def write_config(tmp_path: Path, url: str, database: str = "calibration", run: str = RUN) -> Path:
    p = tmp_path / "pipeline.toml"
    p.write_text(PIPELINE_TOML.format(run=run, url=url, database=database, cert=CERT))
    return p


# --- config ---------------------------------------------------------------------------------


def test_spec_example_is_accepted_as_is() -> None:
    cfg = load_pipeline_config(HERE / "pipeline_example.toml")
    assert cfg.run.id == "RC-2026-0042"
    assert cfg.run.start == datetime(2026, 11, 20, 8, tzinfo=UTC)
    assert cfg.source.kind == "influxdb" and cfg.source.database == "calibration"
    assert cfg.stability.window_s == 600 and cfg.stability.min_duration_s == 900
    assert cfg.comparisons[0].dut == "dut*-t"
    assert cfg.reference_certificate["ref-t"].points[1] == (20.0, 0.03, 0.02, 2.0)
    assert cfg.reference_certificate["ref-t"].extrapolate is False
    assert cfg.uncertainty.chamber_inhomogeneity == 0.03
    assert cfg.uncertainty.extra_half_widths == {}
    assert cfg.certificate is None and cfg.items == {}  # the optional [certificate], [items.*]


def test_deploy_example_is_accepted() -> None:
    cfg = load_pipeline_config(HERE.parent.parent / "deploy" / "examples" / "pipeline.toml")
    assert cfg.comparisons


def _example() -> str:
    return (HERE / "pipeline_example.toml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('kind = "influxdb"', 'kind = "sqlite"', "source.kind"),
        ('database = "calibration"', "", "source.database"),
        ("window_s = 600", "window_s = -1", "stability.window_s"),
        ("min_duration_s = 900", "min_duration = 900", "stability.min_duration"),
        ('quantity = "temperature"', 'quantity = "temprature"', "comparisons[0].quantity"),
        ('reference = "ref-t"', 'reference = "ref-x"', "comparisons[0].reference"),
        ("[20.0, 0.03, 0.02, 2.0]", "[5.0, 0.03, 0.02, 2.0]", "reference_certificate.ref-t.points"),
        ("[20.0, 0.03, 0.02, 2.0]", "[20.0, 0.03, 0.02]", "reference_certificate.ref-t.points"),
        ("reference_drift = 0.01", "reference_drift = -0.01", "uncertainty.reference_drift"),
        ("chamber_inhomogeneity = 0.03", "", "uncertainty.chamber_inhomogeneity"),
        ('end = "2026-11-20T20:00:00Z"', 'end = "2026-11-20T07:00:00Z"', "run.end"),
        ('start = "2026-11-20T08:00:00Z"', 'start = "2026-11-20T08:00:00"', "run.start"),
    ],
)
def test_broken_config_names_its_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    text = _example()
    assert old in text
    p = tmp_path / "p.toml"
    p.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_pipeline_config(p)
    assert any(line.startswith(f"{key}:") for line in e.value.problems), e.value.problems
    assert len(e.value.problems) == 1, e.value.problems


def test_extra_uncertainty_keys_are_half_widths() -> None:
    import tomllib

    data = tomllib.loads(_example())
    data["uncertainty"]["self_heating"] = 0.005
    assert parse_pipeline_config(data).uncertainty.extra_half_widths == {"self_heating": 0.005}
    data["uncertainty"]["self_heating"] = "a lot"
    with pytest.raises(ConfigError) as e:
        parse_pipeline_config(data)
    assert e.value.problems[0].startswith("uncertainty.self_heating:")


def test_cli_config_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.toml"
    p.write_text(_example().replace("max_std = 0.02", "max_std = 'x'"))
    assert main(["pipeline", "run", "-c", str(p), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "stability.max_std:" in err and "Traceback" not in err


# --- math pieces ----------------------------------------------------------------------------


def test_certificate_interpolation_and_range() -> None:
    cert = CertificateConfig(points=[(10.0, 0.05, 0.02, 2.0), (20.0, 0.03, 0.04, 2.0)])
    cc = apply_certificate("ref-t", cert, [15.0, 15.0])
    assert cc.correction == pytest.approx([0.04, 0.04])
    assert cc.u == pytest.approx(0.015)
    assert not cc.extrapolated
    with pytest.raises(RemotecalError, match=r"'ref-t' reads 25\b.*extrapolate = true"):
        apply_certificate("ref-t", cert, [19.0, 25.0])
    cc = apply_certificate("ref-t", cert.model_copy(update={"extrapolate": True}), [25.0])
    assert cc.extrapolated
    assert cc.correction == pytest.approx([0.02])
    assert cc.u == pytest.approx(0.02)  # held at the last row, never extrapolated


def test_interpolation_never_crosses_a_gap() -> None:
    t_dut = np.array([0.0, 1.0, 2.0, 10.0, 11.0])
    v_dut = np.array([0.0, 1.0, 2.0, 10.0, 11.0])
    t_ref = np.array([-0.5, 0.0, 0.5, 1.5, 5.0, 10.5, 11.0, 11.5])
    v, ok = interpolate_onto(t_ref, t_dut, v_dut, max_gap_s=5.0)
    assert ok.tolist() == [False, True, True, True, False, True, True, False]
    assert v[ok] == pytest.approx([0.0, 0.5, 1.5, 10.5, 11.0])


def test_setpoint_rounding() -> None:
    assert [round_setpoint(x) for x in (19.74, 19.76, 20.24, 20.25, -0.2, 0.3)] == [19.5, 20.0, 20.0, 20.5, 0.0, 0.5]


def test_compute_on_arrays_without_a_server() -> None:
    by_channel: dict[str, list[Reading]] = {}
    for r in synthetic_run():
        if r.run == RUN:
            by_channel.setdefault(r.channel, []).append(r)
    data = {
        ch: ChannelData(np.array([r.time_ns / 1e9 for r in rs]), np.array([r.value for r in rs]),
                        rs[0].quantity, rs[0].unit, rs[0].role)
        for ch, rs in by_channel.items()
    }
    import tomllib

    cfg = parse_pipeline_config(tomllib.loads(PIPELINE_TOML.format(
        run=RUN, url="http://127.0.0.1:1", database="calibration", cert=CERT)))
    results = compute(cfg, data)
    assert [(r.channel, r.point) for r in results] == [
        (ch, p) for ch in ("dut1-t", "dut2-t") for p in (1, 2, 3)
    ]
    twice = cfg.model_copy(update={"comparisons": [*cfg.comparisons, cfg.comparisons[0].model_copy(
        update={"dut": "dut2-t"})]})
    with pytest.raises(RemotecalError, match=r"comparisons\[1\]\.dut: channel 'dut2-t' is already compared"):
        compute(twice, data)
    wrong_unit = {**data, "dut1-t": data["dut1-t"]._replace(unit="K")}
    with pytest.raises(RemotecalError, match="'dut1-t' is in K but 'ref-t' in degC"):
        compute(cfg, wrong_unit)
    no_ref = {k: v for k, v in data.items() if k != "ref-t"}
    with pytest.raises(RemotecalError, match=r"comparisons\[0\]\.reference: channel 'ref-t' has no readings"):
        compute(cfg, no_ref)


def local_run_config(tmp_path: Path, more: str = "") -> Path:
    """`tmp_path/pipeline.toml` (PIPELINE_TOML, `more` appended) on a local store
    `tmp_path/store.db` holding `synthetic_run()`."""
    import asyncio

    from gateway.sinks.local.store import LocalStoreConfig, LocalStoreSink

    sink = LocalStoreSink(LocalStoreConfig(path=tmp_path / "store.db"))

    async def fill() -> None:
        await sink.write(synthetic_run())
        await sink.aclose()

    asyncio.run(fill())
    text = PIPELINE_TOML.format(run=RUN, url="x", database="x", cert=CERT)
    source = text[text.index("[source]"):text.index("[stability]")]
    config = tmp_path / "pipeline.toml"
    config.write_text(text.replace(source, '[source]\nkind = "local"\npath = "store.db"\n\n') + more)
    return config


def test_pipeline_on_the_local_store(tmp_path: Path) -> None:
    config = local_run_config(tmp_path)
    result = run_pipeline(config, tmp_path / "out")
    assert result.points_written == 0
    assert [(r.channel, r.point, r.setpoint) for r in result.results] == [
        (ch, p, sp) for ch in ("dut1-t", "dut2-t") for p, sp in zip((1, 2, 3), SETPOINTS, strict=True)
    ]
    for r in result.results:
        truth = -float((dut1_error if r.channel == "dut1-t" else dut2_error)(np.array([r.setpoint]))[0])
        assert abs(r.correction - truth) < 0.003
    assert (tmp_path / "out" / "corrections.csv").read_text().count("\n") == 7


# --- end to end against influxd -------------------------------------------------------------


@pytest.mark.integration
def test_pipeline_end_to_end(influxd: InfluxD, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = encode_batch(synthetic_run())
    r = influxd.write_raw(body, "calibration")
    assert r.status_code == 204, r.text
    config = write_config(tmp_path, influxd.url)
    out = tmp_path / "out"

    assert main(["pipeline", "run", "-c", str(config), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "6 calibration point(s) for 2 DUT channel(s)" in summary
    assert re.search(r"\(in \d+\.\d s\)", summary), summary  # how long the run took

    with open(out / "corrections.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames is not None
        assert tuple(reader.fieldnames[: len(CSV_COLUMNS)]) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 6
    assert [(row["channel"], row["point"]) for row in rows] == [
        (ch, str(p)) for ch in ("dut1-t", "dut2-t") for p in (1, 2, 3)
    ]
    errors = {"dut1-t": dut1_error, "dut2-t": dut2_error}
    for row in rows:
        assert row["run"] == RUN and row["quantity"] == "temperature"
        sp = float(row["setpoint"])
        assert sp == SETPOINTS[int(row["point"]) - 1]
        truth = -float(errors[row["channel"]](np.array([sp]))[0])
        c, u, big_u, k = (float(row[x]) for x in ("correction", "u_combined", "U", "k"))
        assert abs(c - truth) < 3 * u, row
        # Tighter: the noise averages out, the truth is within a few thousandths.
        assert abs(c - truth) < 0.003, row
        # stated values (GUM 7.2.6): U rounded up to two digits, the budget's U kept unrounded
        assert float(row["U_budget"]) <= big_u <= float(row["U_budget"]) * 1.1
        assert float(row["U_budget"]) == pytest.approx(k * u, rel=0.03)
        assert 2.0 <= k < 2.1 and float(row["dof_eff"]) > 1000
        assert float(row["reference_mean"]) == pytest.approx(sp, abs=0.005)
        assert float(row["correction"]) == pytest.approx(
            float(row["reference_mean"]) - float(row["dut_mean"]), abs=0.0011)
        t_start = datetime.fromisoformat(row["t_start"].replace("Z", "+00:00"))
        t_end = datetime.fromisoformat(row["t_end"].replace("Z", "+00:00"))
        assert row["t_start"].endswith("Z") and t_start.tzinfo is not None
        duration = (t_end - t_start).total_seconds()
        assert 900 <= duration <= PLATEAU_S + 60  # the criteria tolerate the first seconds of a ramp
        assert row["flags"] == ""
    n = {(row["channel"], row["point"]): int(row["n"]) for row in rows}
    assert n[("dut2-t", "1")] == n[("dut1-t", "1")]
    # The 900 s gap (more than window_s) drops the reference samples inside it.
    assert n[("dut1-t", "2")] - n[("dut2-t", "2")] == pytest.approx(900, abs=2)

    points = influxd.rows('SELECT * FROM calibration_point ORDER BY time', "calibration")
    assert len(points) == 6
    by_key = {(p["channel"], p["point"]): p for p in points}
    for row in rows:
        p = by_key[(row["channel"], row["point"])]
        assert p["run"] == RUN and p["quantity"] == "temperature"
        assert p["n"] == int(row["n"]) and isinstance(p["n"], int)
        # InfluxDB keeps full precision (README "Rounding"); the CSV states rounded values.
        half_digit = 0.5 * 10.0 ** -len(row["U"].split(".")[-1])
        for field in ("setpoint", "reference_mean", "dut_mean", "correction"):
            assert p[field] == pytest.approx(float(row[field]), abs=half_digit * 1.001), field
        assert p["U"] == pytest.approx(float(row["U_budget"]), rel=1e-9)
        assert p["u_combined"] == pytest.approx(float(row["u_combined"]), rel=0.05)
        assert p["k"] == pytest.approx(float(row["k"]), abs=0.005)
        assert int(p["dof_eff"]) == int(row["dof_eff"])
        t_end_ns = round(datetime.fromisoformat(row["t_end"].replace("Z", "+00:00")).timestamp() * 1e9)
        assert abs(p["time"] - t_end_ns) < 1_000_000

    # The run's bounds reach the query: nothing before start or from end on.
    cfg = load_pipeline_config(config)
    end = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    start = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    bounded = cfg.model_copy(update={"run": cfg.run.model_copy(update={"start": start, "end": end})})
    data = query_readings(bounded)
    assert set(data) == {"ref-t", "dut1-t", "dut2-t", "dut1-rh"}
    assert data["ref-t"].t_s[0] == start.timestamp() and data["ref-t"].t_s[-1] == end.timestamp() - 1
    assert data["ref-t"].t_s.size == 1800 and data["ref-t"].role == "reference"
    whole = query_readings(cfg)
    assert whole["dut1-t"].t_s.size == whole["ref-t"].t_s.size  # RC-OTHER's readings stay out
    assert whole["dut1-t"].values[:600].max() < 10.5

    # Again: the run's points are replaced, not joined by the new ones - also a point an
    # earlier computation left at another time (other criteria find other plateau ends).
    # Another run's points, and this run's outside its [run] bounds, are not touched.
    def point(run: str, when: str) -> bytes:
        t_ns = round(datetime.fromisoformat(when).timestamp() * 1e9)
        return f"calibration_point,channel=dut1-t,point=9,quantity=temperature,run={run} correction=1.0 {t_ns}".encode()

    stale, other, outside = point(RUN, "2026-11-20T08:00:00+00:00"), point("RC-OTHER", "2026-11-20T08:00:00+00:00"), \
        point(RUN, "2026-11-20T06:00:00+00:00")
    assert influxd.write_raw(b"\n".join([stale, other, outside]), "calibration").status_code == 204
    assert len(influxd.rows("SELECT * FROM calibration_point", "calibration")) == 9
    result = run_pipeline(config, out)
    assert len(result.results) == 6 and result.points_written == 6
    left = influxd.rows("SELECT * FROM calibration_point", "calibration")
    assert len(left) == 8
    assert sorted(p["run"] for p in left if p["point"] == "9") == sorted([RUN, "RC-OTHER"])
    assert [p["time"] for p in left if p["run"] == RUN and p["point"] == "9"] == [
        round(datetime(2026, 11, 20, 6, tzinfo=UTC).timestamp() * 1e9)]
    budget = result.results[0].budget
    assert [c.name for c in budget.components] == [
        "repeatability (Type A)", "chamber temporal instability", "DUT short-term stability",
        "reference calibration", "reference interpolation", "reference drift", "DUT resolution",
        "chamber inhomogeneity", "self_heating",
    ]
    assert budget.components[3].u == pytest.approx(0.01)
    assert math.isclose(budget.u_combined, math.sqrt(sum(c.contribution**2 for c in budget.components)))


@pytest.mark.integration
def test_unknown_database_and_unreachable_server(influxd: InfluxD, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, influxd.url, database="nosuchdb")
    assert main(["pipeline", "run", "-c", str(config), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and influxd.url in err and "nosuchdb" in err

    config = write_config(tmp_path, "http://127.0.0.1:1")
    assert main(["pipeline", "run", "-c", str(config), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "http://127.0.0.1:1" in err and "Traceback" not in err

    config = write_config(tmp_path, influxd.url, run="RC-NOTHING")
    assert main(["pipeline", "run", "-c", str(config), "--out", str(tmp_path)]) == 1
    assert "RC-NOTHING" in capsys.readouterr().err


@pytest.mark.integration
def test_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with InfluxD(tmp_path / "influxd", auth=True) as influx:
        influx.create_database("calibration")
        assert influx.write_raw(encode_batch(synthetic_run()), "calibration").status_code == 204
        config = write_config(tmp_path, influx.url)
        text = config.read_text().replace(
            'database = "calibration"\n',
            f'database = "calibration"\nusername = "{influx.admin_user}"\npassword = "env:TEST_INFLUX_PW"\n',
        )
        config.write_text(text)
        monkeypatch.setenv("TEST_INFLUX_PW", "wrong")
        assert main(["pipeline", "run", "-c", str(config), "--out", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert "refused the credentials" in err and "wrong" not in err
        monkeypatch.setenv("TEST_INFLUX_PW", influx.admin_password)
        assert main(["pipeline", "run", "-c", str(config), "--out", str(tmp_path)]) == 0
        assert len(influx.rows("SELECT * FROM calibration_point", "calibration")) == 6


def test_a_comparison_may_carry_its_own_stability_and_uncertainty() -> None:
    """A hygrometer's plateaus are judged in %rh, not by the thermometers' criteria."""
    import tomllib

    rng = np.random.default_rng(5)
    t = np.arange(0.0, 7200.0, 1.0)
    rh = np.where(t < 3600, 40.0, 60.0) + rng.normal(0.0, 0.1, t.size)
    data = {
        "ref-rh": ChannelData(t, rh, "relative_humidity", "%rh", "reference"),
        "dut-rh": ChannelData(t, rh - 1.0, "relative_humidity", "%rh", "dut"),
    }
    doc = tomllib.loads(PIPELINE_TOML.format(run=RUN, url="http://127.0.0.1:1", database="calibration", cert=CERT))
    doc["comparisons"] = [{"dut": "dut-rh", "reference": "ref-rh", "quantity": "relative_humidity"}]
    doc["reference_certificate"] = {"ref-rh": {"points": [[0.0, 0.0, 1.0, 2.0], [100.0, 0.0, 1.0, 2.0]]}}
    assert compute(parse_pipeline_config(doc), data) == []  # 0.1 %rh noise fails max_std = 0.02
    doc["comparisons"][0]["stability"] = {"window_s": 600, "max_std": 0.3, "max_slope_per_min": 0.05,
                                          "min_duration_s": 900}
    doc["comparisons"][0]["uncertainty"] = {"reference_drift": 0.3, "dut_resolution": 0.1,
                                            "chamber_inhomogeneity": 0.5}
    results = compute(parse_pipeline_config(doc), data)
    assert [r.point for r in results] == [1, 2]
    assert all(abs(r.correction - 1.0) < 0.05 for r in results)
    drift = next(c for c in results[0].budget.components if c.name == "reference drift")
    assert drift.u == pytest.approx(0.3 / np.sqrt(3))


def test_interpolation_on_a_plateau_slice_equals_the_whole_series() -> None:
    """compute() interpolates each plateau on the DUT readings around it only (_onto_plateau):
    the values and validity must be those of interpolate_onto over the whole DUT series."""
    from pipelines.run import _onto_plateau, interpolate_onto

    rng = np.random.default_rng(11)
    for case in range(300):
        n = int(rng.integers(1, 60))
        t_dut = np.cumsum(rng.choice([0.5, 1.0, 1.0, 2.0, 30.0], size=n)) + rng.uniform(0, 5)
        if case % 3 == 0:
            t_dut = np.round(t_dut)  # shared clocks, duplicate-free: the exact-time path
            t_dut = np.unique(t_dut)
        v_dut = rng.normal(20, 1, t_dut.size)
        t_all = np.unique(np.round(np.sort(rng.uniform(-5, t_dut[-1] + 5, 80)), 1))
        if case % 3 == 0:
            t_all = np.unique(np.concatenate([t_all, t_dut]))
        a = int(rng.integers(0, t_all.size))
        b = int(rng.integers(a + 1, t_all.size + 1))
        t_ref = t_all[a:b]
        lo = int(np.searchsorted(t_dut, t_ref[0], side="left"))
        hi = int(np.searchsorted(t_dut, t_ref[-1], side="right"))
        got_v, got_ok = _onto_plateau(t_ref, t_dut, v_dut, 10.0, lo, hi, True)
        want_v, want_ok = interpolate_onto(t_ref, t_dut, v_dut, 10.0)
        ok = np.ones(t_ref.size, dtype=bool) if got_ok is None else got_ok
        np.testing.assert_array_equal(ok, want_ok, err_msg=f"case {case}")
        np.testing.assert_array_equal(np.asarray(got_v)[ok], want_v[want_ok], err_msg=f"case {case}")


@pytest.mark.parametrize("answer", [
    (400, '{"error": "error parsing query: found DELETE, expected SELECT, SHOW"}'),  # InfluxDB 2, v1 API
    (200, '{"results": [{"statement_id": 0, "error": "unauthorized"}]}'),
])
def test_a_refused_delete_is_a_warning_and_the_points_are_still_written(
        answer: tuple[int, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import tomllib

    import httpx

    import pipelines.results

    by_channel: dict[str, list[Reading]] = {}
    for r in synthetic_run():
        if r.run == RUN:
            by_channel.setdefault(r.channel, []).append(r)
    data = {ch: ChannelData(np.array([r.time_ns / 1e9 for r in rs]), np.array([r.value for r in rs]),
                            rs[0].quantity, rs[0].unit, rs[0].role) for ch, rs in by_channel.items()}
    cfg = parse_pipeline_config(tomllib.loads(PIPELINE_TOML.format(
        run=RUN, url="http://influx.test:8086", database="calibration", cert=CERT)))
    results = compute(cfg, data)
    seen: list[tuple[str, bytes]] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.content))
        if request.url.path == "/query":
            return httpx.Response(answer[0], text=answer[1])
        return httpx.Response(204)

    monkeypatch.setattr(pipelines.results, "influx_client",
                        lambda source: httpx.Client(transport=httpx.MockTransport(server)))
    with caplog.at_level(logging.WARNING, logger="pipelines.results"):
        assert write_points(results, cfg.source, cfg.run) == 6
    assert [path for path, _ in seen] == ["/query", "/write"]
    assert b"DELETE+FROM+%22calibration_point%22+WHERE+%22run%22+%3D+%27RC-TEST-0001%27" in seen[0][1]
    assert seen[1][1].count(b"\n") == 5
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "did not delete the earlier calibration_point points" in warning[0]
    assert "influx delete" in warning[0]
