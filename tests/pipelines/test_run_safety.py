"""The pipeline is safe to run (issue 14): an unknown run id lists the runs there; a run still
recording is refused (or, asked for, provisional); a run from several gateways is named; [source]
narrows by site and gateway."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.reading import Reading
from remotecal.cli import main
from tests.pipelines.test_run import CERT, PIPELINE_TOML, RUN, T0, synthetic_run

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not


def _store(tmp_path: Path, readings: list[Reading], extra: str = "", run: str = RUN) -> Path:
    from gateway.sinks.local.store import LocalStoreConfig, LocalStoreSink

    sink = LocalStoreSink(LocalStoreConfig(path=tmp_path / "store.db"))

    async def fill() -> None:
        await sink.write(readings)
        await sink.aclose()

    asyncio.run(fill())
    text = PIPELINE_TOML.format(run=run, url="x", database="x", cert=CERT)
    source = text[text.index("[source]"):text.index("[stability]")]
    config = tmp_path / "pipeline.toml"
    config.write_text(text.replace(source, f'[source]\nkind = "local"\npath = "store.db"\n{extra}\n'))
    return config


def _shifted_to_now(readings: list[Reading]) -> list[Reading]:
    """The synthetic run moved so that it ends 30 s ago: a run still recording."""
    shift = round((time.time() - 30.0) * 1e9) - max(r.time_ns for r in readings)
    return [replace(r, time_ns=r.time_ns + shift) for r in readings]


def _no_bounds(config: Path) -> None:
    text = config.read_text()
    config.write_text("\n".join(line for line in text.splitlines() if not line.startswith(("start =", "end ="))))


def test_unknown_run_lists_the_runs_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _store(tmp_path, synthetic_run(), run="RC-TYPO-0001")
    assert main(["pipeline", "run", "-c", str(config), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["remotecal: run 'RC-TYPO-0001' has no readings in the source from 2026-11-20T07:00:00+00:00 "
                   "before 2026-11-20T12:00:00+00:00; runs there: RC-OTHER, RC-TEST-0001"]


def test_a_run_still_recording_is_refused_or_provisional(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _store(tmp_path, _shifted_to_now(synthetic_run()))
    _no_bounds(config)
    out = tmp_path / "out"
    assert main(["pipeline", "run", "-c", str(config), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"run {RUN!r} is still recording: its newest reading (lab1/gw01, " in err
    assert "--provisional" in err and not out.exists()

    assert main(["pipeline", "run", "-c", str(config), "--out", str(out), "--provisional"]) == 0
    assert f"(id {RUN}-PROVISIONAL)" in capsys.readouterr().out
    assert "PROVISIONAL" in (out / "report.html").read_text()
    assert b"PROVISIONAL: the run was still recording" in (out / "certificate.xml").read_bytes()
    assert not (tmp_path / "certificates.db").exists()  # a provisional certificate takes no number

    # quiet long enough: finished
    config.write_text(config.read_text().replace('path = "store.db"', 'path = "store.db"\nquiet_s = 10'))
    assert main(["pipeline", "run", "-c", str(config), "--out", str(out)]) == 0
    assert f"(id {RUN})" in capsys.readouterr().out


def test_a_run_from_several_gateways_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    readings = synthetic_run()
    readings = [replace(r, site="lab2", gateway="gw07") if r.channel == "dut2-t" else r for r in readings]
    config = _store(tmp_path, readings)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="pipelines"):
        assert main(["pipeline", "run", "-c", str(config), "--out", str(out)]) == 0
    assert any(f"run {RUN} was recorded by 2 gateways: lab1/gw01, lab2/gw07" in r.getMessage()
               for r in caplog.records)
    assert "lab1/gw01, lab2/gw07" in (out / "report.html").read_text()
    assert b"<dcc:value>lab2/gw07</dcc:value>" in (out / "certificate.xml").read_bytes()


def test_source_narrows_by_site_and_gateway() -> None:
    import tomllib

    from gateway.errors import ConfigError
    from pipelines.config import parse_pipeline_config
    from pipelines.source import _readings_query

    text = PIPELINE_TOML.format(run=RUN, url="http://127.0.0.1:8086", database="calibration", cert=CERT)
    cfg = parse_pipeline_config(tomllib.loads(text.replace('database = "calibration"',
                                                           'database = "calibration"\nsite = "lab1"\ngateway = "gw01"')))
    q = _readings_query(cfg)
    assert """"site" = 'lab1'""" in q and """"gateway" = 'gw01'""" in q and f""""run" = '{RUN}'""" in q
    local = text[text.index("[source]"):text.index("[stability]")]
    with pytest.raises(ConfigError) as e:
        parse_pipeline_config(tomllib.loads(text.replace(local, '[source]\nkind = "local"\npath = "x.db"\n'
                                                               'site = "lab1"\n\n')))
    assert e.value.problems[0].startswith("source.site: "), e.value.problems


@pytest.mark.integration
def test_influxdb_site_gateway_filter_and_origins(influxd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from gateway.sinks.influxdb.lineprotocol import encode_batch
    from pipelines.config import load_pipeline_config
    from pipelines.source import known_runs, load_run, run_origins
    from tests.pipelines.test_run import write_config

    readings = synthetic_run()
    readings += [replace(r, site="lab2", gateway="gw07", value=r.value + 1.0) for r in readings
                 if r.channel == "dut1-t" and r.run == RUN]
    assert influxd.write_raw(encode_batch(readings), "calibration").status_code == 204
    cfg = load_pipeline_config(write_config(tmp_path, influxd.url))
    assert [(o.site, o.gateway) for o in run_origins(cfg)] == [("lab1", "gw01"), ("lab2", "gw07")]
    assert known_runs(cfg) == ["RC-OTHER", RUN]
    narrowed = cfg.model_copy(update={"source": cfg.source.model_copy(update={"gateway": "gw07"})})
    assert sorted(load_run(narrowed)) == ["dut1-t"]
    assert [(o.site, o.gateway) for o in run_origins(narrowed)] == [("lab2", "gw07")]
    assert run_origins(narrowed)[0].newest_s > T0
