"""Push the dashboards to a running Grafana through its HTTP API (grafana-client).

Each dashboard is saved with `POST /api/dashboards/db` (overwrite, by uid) into the folder
"remotecal", created when missing.  The dashboards read the datasource whose uid is
`remotecal-influxdb` (their `datasource` variable's default): provision it
(provisioning/datasources/remotecal.yaml) or create one with that uid.

Errors are translated here, at the edge, into `PushError`, whose message is one line:
an unreachable Grafana, a refused token, a rejected dashboard.
"""

from __future__ import annotations

from typing import Any

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.build import dashboard_models
from dashboards.provisioning import FOLDER
from gateway.errors import RemotecalError

__all__ = ["PushError", "push"]

FOLDER_UID = "remotecal"


class PushError(RemotecalError):
    """Grafana could not be reached or refused a dashboard."""


def _ensure_folder(api: GrafanaApi) -> None:
    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(FOLDER, uid=FOLDER_UID)


def push(url: str, token: str | None, *, timeout: float = 10.0) -> list[str]:
    """Save every dashboard in Grafana at `url`; return the URLs Grafana gives them."""
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    saved: list[str] = []
    try:
        _ensure_folder(api)
        for model in dashboard_models():
            answer: dict[str, Any] = api.dashboard.update_dashboard(
                {
                    "dashboard": model,
                    "folderUid": FOLDER_UID,
                    "overwrite": True,
                    "message": "remotecal dashboards push",
                }
            )
            saved.append(str(answer.get("url") or model["uid"]))
    except GrafanaException as exc:
        status = f"HTTP {exc.status_code}: " if exc.status_code else ""
        raise PushError(f"Grafana at {url} refused the push: {status}{_one_line(exc.message)}") from exc
    except (niquests.exceptions.RequestException, OSError) as exc:
        raise PushError(f"Grafana at {url} is unreachable: {_one_line(str(exc))}") from exc
    return saved


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]
