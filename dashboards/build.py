"""Write the dashboards as sorted, stable JSON, with Grafana's provisioning files.

    OUT/dashboards/remotecal-live-run.json      one file per dashboard, named by uid
    OUT/dashboards/remotecal-fleet.json
    OUT/provisioning/datasources/remotecal.yaml
    OUT/provisioning/dashboards/remotecal.yaml
    OUT/provisioning/alerting/remotecal.yaml     alert rules (dashboards/alerts.py)

The same bytes for the same code: keys sorted, panel ids numbered in order, nothing taken
from the clock.  The output is checked in under dashboards/json/ (mounted by
deploy/compose), and a test rebuilds it and fails when it is stale:

    python -m dashboards.build            # regenerate dashboards/json/
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import fleet, live_run
from dashboards.alerts import alerting_yaml
from dashboards.provisioning import dashboard_provider_yaml, datasource_yaml

__all__ = ["CHECKED_IN", "DASHBOARDS", "build", "dashboard_json", "dashboard_models"]

CHECKED_IN = Path(__file__).resolve().parent / "json"

DASHBOARDS: tuple[Callable[[], Dashboard], ...] = (live_run.dashboard, fleet.dashboard)


def dashboard_models() -> list[dict[str, Any]]:
    """Each dashboard as the JSON object Grafana stores, panel ids numbered from 1."""
    models = []
    for make in DASHBOARDS:
        model: dict[str, Any] = json.loads(json.dumps(make().build(), cls=JSONEncoder))
        for number, panel in enumerate(model.get("panels", []), start=1):
            panel["id"] = number
        models.append(model)
    return models


def dashboard_json(model: dict[str, Any]) -> str:
    return json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def build(out_dir: Path | str) -> list[Path]:
    """Write every file under `out_dir`; return their paths."""
    out = Path(out_dir)
    files: dict[Path, str] = {
        out / "dashboards" / f"{model['uid']}.json": dashboard_json(model) for model in dashboard_models()
    }
    files[out / "provisioning" / "datasources" / "remotecal.yaml"] = datasource_yaml()
    files[out / "provisioning" / "dashboards" / "remotecal.yaml"] = dashboard_provider_yaml()
    files[out / "provisioning" / "alerting" / "remotecal.yaml"] = alerting_yaml()
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)


if __name__ == "__main__":
    for written in build(sys.argv[1] if len(sys.argv) > 1 else CHECKED_IN):
        print(written)
