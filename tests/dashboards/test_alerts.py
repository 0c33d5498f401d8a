"""The alert rules as code: Grafana's file-provisioning YAML that `dashboards build` writes, and
every rule's query proven on a real influxd - evaluated as Grafana does (the query over the
rule's relative time range, reduced to its last value per series, against the threshold) on
a run where exactly one thing is wrong for each rule (tests/dashboards/data.py): the rule
fires for that series and no other.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboards.alerts import alerting_yaml
from dashboards.build import CHECKED_IN
from dashboards.variables import DATASOURCE_UID
from tests.dashboards.data import REMOTE_RUN_2, STALE_CHANNEL, make_run
from tests.servers.influx import InfluxD

DB = "calibration"
ALERTING = CHECKED_IN / "provisioning" / "alerting" / "remotecal.yaml"

_EVALUATORS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt, "lt": operator.lt, "gte": operator.ge, "lte": operator.le}


def _rules() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    # Grafana reads `$$` in provisioning files as a literal `$` (a lone `$NAME` is an
    # environment variable): what it loads is the text with `$$` -> `$`.
    document = yaml.safe_load(ALERTING.read_text().replace("$$", "$"))
    assert document["apiVersion"] == 1
    (group,) = document["groups"]
    assert (group["folder"], group["name"], group["interval"], group["orgId"]) == ("remotecal", "remotecal", "1m", 1)
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def test_the_file_is_what_build_writes_and_escapes_every_dollar() -> None:
    assert ALERTING.read_text() == alerting_yaml()
    text = ALERTING.read_text()
    assert re.findall(r"(?<!\$)\$(?!\$)", text.replace("$$", "")) == []  # no lone $ Grafana would expand


def test_one_rule_for_each_thing_to_watch() -> None:
    rules = _rules()
    assert [r["title"] for r in rules] == [
        "Step not stable within its time", "Gateway offline", "Journal growing", "Readings stale"]
    assert len({r["uid"] for r in rules}) == len(rules)
    for rule in rules:
        query, reduce, threshold = rule["data"]
        assert rule["condition"] == threshold["refId"] == "C"
        assert query["datasourceUid"] == query["model"]["datasource"]["uid"] == DATASOURCE_UID
        assert query["model"]["rawQuery"] is True and "$timeFilter" in query["model"]["query"]
        assert (reduce["datasourceUid"], reduce["model"]["type"], reduce["model"]["expression"]) == (
            "__expr__", "reduce", "A")
        assert (threshold["model"]["type"], threshold["model"]["expression"]) == ("threshold", "B")
        assert rule["noDataState"] == "OK" and rule["execErrState"] == "Error"
        assert rule["annotations"]["summary"] and rule["labels"]["severity"] in ("warning", "critical")


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxD]:
    server = InfluxD(Path(tmp_path_factory.mktemp("influxd")))
    server.start()
    try:
        server.create_database(DB)
        response = server.write_raw(make_run().body, DB)
        assert response.status_code == 204, response.text
        yield server
    finally:
        server.stop()


def _firing(influx: InfluxD, rule: dict[str, Any]) -> set[tuple[tuple[str, str], ...]]:
    """The series (as sorted tag pairs) for which the rule's condition holds, evaluated now."""
    query, _, threshold = rule["data"]
    now_ms = int(time.time() * 1000)
    span = query["relativeTimeRange"]
    text = query["model"]["query"].replace(
        "$timeFilter", f"time >= {now_ms - span['from'] * 1000}ms and time <= {now_ms - span['to'] * 1000}ms")
    assert "$" not in text, text
    (result,) = influx.query(text, DB)
    assert "error" not in result, result
    (condition,) = threshold["model"]["conditions"]
    check = _EVALUATORS[condition["evaluator"]["type"]]
    (limit,) = condition["evaluator"]["params"]
    firing = set()
    for series in result.get("series", []):
        last = [v for row in series["values"] for v in row[1:] if v is not None][-1]  # reducer "last"
        if check(float(last), float(limit)):
            firing.add(tuple(sorted(series["tags"].items())))
    return firing


@pytest.mark.integration
def test_every_rule_fires_for_its_fault_and_nothing_else(influx: InfluxD) -> None:
    rules = {r["uid"]: r for r in _rules()}
    assert _firing(influx, rules["remotecal-step-not-stable"]) == {
        (("gateway", "gw02"), ("run", REMOTE_RUN_2), ("site", "lab2"))}
    assert _firing(influx, rules["remotecal-gateway-offline"]) == {(("gateway", "gw03"), ("site", "lab2"))}
    assert _firing(influx, rules["remotecal-journal-growing"]) == {(("gateway", "gw02"), ("site", "lab2"))}
    assert _firing(influx, rules["remotecal-readings-stale"]) == {
        (("channel", STALE_CHANNEL), ("gateway", "gw01"), ("run", "RC-2026-0042"), ("site", "lab1"))}
