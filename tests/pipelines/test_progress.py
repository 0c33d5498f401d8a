"""Reading a run from InfluxDB shows its progress on a terminal, and nothing elsewhere."""

from __future__ import annotations

import io
import json
import tomllib

import httpx
import pytest

import pipelines.source
from pipelines.config import PipelineConfig, SourceConfig, parse_pipeline_config
from pipelines.source import query_readings
from tests.pipelines.test_run import CERT, PIPELINE_TOML, RUN


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _answer(chunks: int = 5, per_chunk: int = 100) -> bytes:
    lines = []
    for c in range(chunks):
        values = [[(c * per_chunk + i) * 1_000_000_000, 20.0 + i * 1e-3] for i in range(per_chunk)]
        series = {"name": "reading", "tags": {"channel": "ref-t", "quantity": "temperature", "unit": "degC",
                                               "role": "reference"},
                  "columns": ["time", "value"], "values": values, "partial": c + 1 < chunks}
        lines.append(json.dumps({"results": [{"statement_id": 0, "series": [series],
                                              "partial": c + 1 < chunks}]}))
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def fake_influx(monkeypatch: pytest.MonkeyPatch) -> None:
    def client(source: SourceConfig) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=_answer())))

    monkeypatch.setattr(pipelines.source, "influx_client", client)


def _cfg() -> PipelineConfig:
    return parse_pipeline_config(tomllib.loads(PIPELINE_TOML.format(
        run=RUN, url="http://127.0.0.1:1", database="calibration", cert=CERT)))


@pytest.mark.usefixtures("fake_influx")
def test_progress_on_a_terminal() -> None:
    term = _Terminal()
    data = query_readings(_cfg(), progress_to=term, progress_after_s=0.0)
    assert data["ref-t"].t_s.size == 500
    out = term.getvalue()
    assert f"reading run {RUN} from InfluxDB" in out and "readings in 1 series" in out


@pytest.mark.usefixtures("fake_influx")
def test_nothing_when_not_a_terminal_or_a_short_read() -> None:
    pipe = io.StringIO()
    assert query_readings(_cfg(), progress_to=pipe, progress_after_s=0.0)["ref-t"].t_s.size == 500
    assert pipe.getvalue() == ""
    term = _Terminal()
    query_readings(_cfg(), progress_to=term, progress_after_s=3600.0)
    assert term.getvalue() == ""
