"""The checked-in dashboards/json/ is what the code builds, and what it builds is sound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboards.build import CHECKED_IN, build, dashboard_models
from dashboards.variables import DATASOURCE_UID


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_checked_in_json_is_up_to_date(tmp_path: Path) -> None:
    build(tmp_path)
    fresh, checked_in = _tree(tmp_path), _tree(CHECKED_IN)
    stale = sorted(name for name in fresh.keys() | checked_in.keys() if fresh.get(name) != checked_in.get(name))
    assert not stale, f"dashboards/json is stale in {stale}: run `python -m dashboards.build`"


def test_build_is_stable(tmp_path: Path) -> None:
    build(tmp_path / "a")
    build(tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


def test_every_panel_and_variable_uses_the_datasource_variable() -> None:
    for model in dashboard_models():
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert variables["datasource"]["current"]["value"] == DATASOURCE_UID
        assert {"site", "gateway"} <= variables.keys()
        ids = [p["id"] for p in model["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        for panel in model["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "influxdb", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["rawQuery"] is True
                assert target["datasource"]["uid"] == "${datasource}"
        for variable in variables.values():
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == "${datasource}"
                assert variable["query"].startswith("SHOW TAG VALUES")


def test_live_run_offers_site_gateway_run_channel() -> None:
    live = next(m for m in dashboard_models() if m["uid"] == "remotecal-live-run")
    names = [v["name"] for v in live["templating"]["list"]]
    assert names[:4] == ["datasource", "site", "gateway", "run"]
    assert "channel" in names
    error = next(p for p in live["panels"] if p.get("repeat") == "dut")
    (target,) = error["targets"]
    assert target["alias"] == "error ($tag_unit)" and not error.get("transformations")
    assert {o["matcher"]["options"] for o in error["fieldConfig"]["overrides"]} >= {r".*\(degC\)$", r".*\(%rh\)$"}
    (annotation,) = live["annotations"]["list"]
    # Grafana's InfluxDB prepareAnnotation keeps a target that has a query; it runs it as
    # an annotation query only with fromAnnotations.
    assert annotation["target"]["fromAnnotations"] is True
    assert annotation["target"]["query"] == annotation["query"]


def test_provisioning_files() -> None:
    yaml = pytest.importorskip("yaml")
    datasource = yaml.safe_load((CHECKED_IN / "provisioning/datasources/remotecal.yaml").read_text())
    (ds,) = datasource["datasources"]
    assert ds["type"] == "influxdb" and ds["uid"] == DATASOURCE_UID
    assert ds["jsonData"]["version"] == "InfluxQL"
    provider = yaml.safe_load((CHECKED_IN / "provisioning/dashboards/remotecal.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    for path in (CHECKED_IN / "dashboards").glob("*.json"):
        assert json.loads(path.read_text())["uid"] == path.stem


def test_each_config_from_query_has_its_own_query() -> None:
    """Grafana drops a config query's frame once a "config from query results" used it: two
    transformations reading one query would leave the second without its limits."""
    for model in dashboard_models():
        for panel in model["panels"]:
            configs = [t["options"]["configRefId"] for t in panel.get("transformations", [])
                       if t["id"] == "configFromData"]
            assert len(configs) == len(set(configs)), panel["title"]
            assert set(configs) <= {t["refId"] for t in panel.get("targets", [])}, panel["title"]
